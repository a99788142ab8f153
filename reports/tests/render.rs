//! Reports rendered from fixed histories whose answers are known.

use std::path::Path;

use checker::{check_named, CheckOptions};
use serde_json::json;

/// Writes a run folder: the history, a results.json from the real checker, test.json.
fn run_dir(root: &Path, name: &str, history: &str) -> std::path::PathBuf {
    let dir = root.join("kv").join(name);
    std::fs::create_dir_all(dir.join("nodes/n1")).unwrap();
    std::fs::write(dir.join("nodes/n1/node.log"), "log\n").unwrap();
    std::fs::write(dir.join("history.jsonl"), history).unwrap();
    let h = checker::format::jsonl::read(history.as_bytes()).unwrap();
    let lin = check_named("kv", &h, &CheckOptions::default()).unwrap();
    let lost = checker::lost_writes::check(&h);
    let results = json!({
        "valid": lin.valid.merge(lost.valid),
        "checkers": {"linearizable": lin, "lost-writes": lost, "perf": {"valid": true, "ok_per_second": 3.0, "availability": 1.0, "latency_ms": {}}},
    });
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec(&results).unwrap(),
    )
    .unwrap();
    let test = json!({"workload": "kv", "seed": 42, "nemesis": ["partition"], "bugs": [], "command": "cargo run --release --bin harness -- run --workload kv --seed 42"});
    std::fs::write(dir.join("test.json"), serde_json::to_vec(&test).unwrap()).unwrap();
    dir
}

const VALID: &str = r#"{"type":"invoke","process":0,"f":"write","key":"a","value":1,"time":1000000}
{"type":"ok","process":0,"f":"write","key":"a","value":1,"time":2000000}
{"type":"info","process":"nemesis","f":"start-partition","value":{"shape":"one"},"time":2500000}
{"type":"invoke","process":1,"f":"read","key":"a","value":null,"time":3000000}
{"type":"ok","process":1,"f":"read","key":"a","value":1,"time":4000000}
{"type":"info","process":"nemesis","f":"stop-partition","value":null,"time":5000000}
{"type":"invoke","process":2,"f":"cas","key":"a","value":[1,2],"time":5500000}
{"type":"fail","process":2,"f":"cas","key":"a","value":[1,2],"time":6000000}
"#;

const INVALID: &str = r#"{"type":"invoke","process":0,"f":"write","key":"a","value":1,"time":1000000}
{"type":"ok","process":0,"f":"write","key":"a","value":1,"time":2000000}
{"type":"invoke","process":0,"f":"write","key":"a","value":2,"time":3000000}
{"type":"ok","process":0,"f":"write","key":"a","value":2,"time":4000000}
{"type":"invoke","process":1,"f":"read","key":"a","value":null,"time":5000000}
{"type":"ok","process":1,"f":"read","key":"a","value":1,"time":6000000}
"#;

#[test]
fn valid_run_report_shows_verdicts_plots_faults_and_logs() {
    let root = tempfile::tempdir().unwrap();
    let dir = run_dir(root.path(), "20260101T000000.000Z", VALID);
    let html = std::fs::read_to_string(reports::render_run(&dir).unwrap()).unwrap();
    assert!(html.contains("verdict valid"), "verdict badge");
    assert!(!html.contains("verdict invalid"));
    assert!(html.matches("<svg").count() >= 3, "three plots inline");
    assert!(html.contains("Latency of every operation"));
    assert!(html.contains("Latency quantiles per second"));
    assert!(html.contains("Throughput by outcome"));
    assert!(html.contains(">partition<"), "fault window labelled");
    assert!(html.contains("--seed 42"), "replay command");
    assert!(html.contains("href=\"nodes/n1/node.log\""));
    assert!(html.contains("id=\"timeline\""));
    assert!(!html.contains("Counterexample"));
    assert!(!html.contains("<h2>Lost writes</h2>"));
    // Self-contained: nothing fetched from elsewhere.
    assert!(!html.contains("src=\"http"));
    assert!(!html.contains("<link"));
}

#[test]
fn invalid_run_report_draws_the_counterexample_naming_its_ops() {
    let root = tempfile::tempdir().unwrap();
    let dir = run_dir(root.path(), "20260101T000001.000Z", INVALID);
    let html = std::fs::read_to_string(reports::render_run(&dir).unwrap()).unwrap();
    assert!(html.contains("verdict invalid"));
    assert!(html.contains("Counterexample"));
    // The same read shows write 2 lost: a row naming it, its lines and the value read.
    assert!(html.contains("<h2>Lost writes</h2>"));
    assert!(
        html.contains("<td>write 2</td><td>?</td><td>0.004</td><td>1</td><td>?</td><td>0.005</td><td>3, 5</td><td>lost</td>"),
        "{}",
        &html[html.find("Lost writes").unwrap_or(0)..][..1500.min(html.len() - html.find("Lost writes").unwrap_or(0))]
    );
    // The stale read (line 5) is the op that cannot be linearized; the state after
    // the prefix (both writes) is 2.
    assert!(
        html.contains("p1 read null → 1 (line 5)"),
        "{}",
        &html[html.find("Counterexample").unwrap()..][..600]
    );
    assert!(html.contains("model state is <code>2</code>"));
    assert!(html.contains("prefix p0 write 2 → 2 (line 3)"));
}

#[test]
fn index_lists_runs_newest_first_and_compare_flags_a_correctness_regression() {
    let root = tempfile::tempdir().unwrap();
    let old = run_dir(root.path(), "20260101T000000.000Z", VALID);
    let new = run_dir(root.path(), "20260101T000001.000Z", INVALID);
    let index = std::fs::read_to_string(reports::index::render(root.path()).unwrap()).unwrap();
    let (a, b) = (
        index.find("20260101T000001").unwrap(),
        index.find("20260101T000000").unwrap(),
    );
    assert!(a < b, "newest first");
    assert!(index.contains("kv/20260101T000001.000Z/report.html"));
    let t = reports::compare::Thresholds {
        max_throughput_drop_pct: 10.0,
        max_p99_rise_pct: 10.0,
    };
    let c = reports::compare::compare(&old, &new, t).unwrap();
    assert!(c.failed());
    assert!(c.markdown().contains("correctness regression"));
    assert!(c.junit().contains("<failure"));
    let same = reports::compare::compare(&old, &old, t).unwrap();
    assert!(!same.failed(), "{}", same.markdown());
}

#[test]
fn a_missing_or_broken_history_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let e = reports::render_run(root.path()).unwrap_err();
    assert!(e.to_string().contains("history.jsonl"), "{e}");
    std::fs::write(
        root.path().join("history.jsonl"),
        "{\"type\":\"invoke\"}\nnot json\n",
    )
    .unwrap();
    let e = reports::render_run(root.path()).unwrap_err();
    assert!(
        e.to_string().contains(":1:") || e.to_string().contains(":2:"),
        "{e}"
    );
}

#[test]
fn index_links_each_bench_that_has_its_page() {
    let root = tempfile::tempdir().unwrap();
    let bench = root.path().join("bench").join("20260102T000000.000Z");
    std::fs::create_dir_all(&bench).unwrap();
    std::fs::write(
        bench.join("bench.json"),
        r#"{"targets": ["builtin:raft", "builtin:paxos"], "concurrency": [1, 16], "rows": []}"#,
    )
    .unwrap();
    std::fs::write(bench.join("bench.html"), "<html></html>").unwrap();
    // A bench without its page (an older one) is not linked.
    let old = root.path().join("bench").join("20250101T000000.000Z");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("bench.json"), "{}").unwrap();
    let index = std::fs::read_to_string(reports::index::render(root.path()).unwrap()).unwrap();
    assert!(
        index.contains("bench/20260102T000000.000Z/bench.html"),
        "{index}"
    );
    assert!(index.contains("targets: builtin:raft,builtin:paxos"));
    assert!(index.contains("<td>1,16</td>"));
    assert!(!index.contains("20250101T000000"));
}

#[test]
fn a_bank_run_plots_every_total_read_and_names_the_wrong_ones() {
    let root = tempfile::tempdir().unwrap();
    let dir = run_dir(root.path(), "20260101T000000.000Z", VALID);
    let bank = json!({"valid": false, "summary": "1 of 2 reads are wrong (first: total 15, expected 20)",
                      "accounts": 2, "total": 20, "reads": 2, "bad_reads": 1,
                      "examples": [{"process": 1, "read": [["r", 0, 5], ["r", 1, 10]],
                                    "problems": ["total 15, expected 20"]}],
                      "totals": [[0.001, 20], [0.003, 15]]});
    let path = dir.join("results.json");
    let mut results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    results["checkers"]["bank"] = bank;
    std::fs::write(&path, serde_json::to_vec(&results).unwrap()).unwrap();
    let html = std::fs::read_to_string(reports::render_run(&dir).unwrap()).unwrap();
    assert!(html.contains("<h2>Bank</h2>"), "the bank panel");
    assert!(
        html.contains("Total of every read of all accounts"),
        "its plot"
    );
    assert!(html.contains("2 reads, 1 of them wrong"));
    assert!(
        html.contains("total 15, expected 20"),
        "the wrong read is shown"
    );
}

#[test]
fn event_store_and_saga_runs_get_their_panels_with_what_was_found() {
    let root = tempfile::tempdir().unwrap();
    let history = r#"{"type":"invoke","process":0,"f":"append","value":{"stream":"s0","expected":0,"events":[]},"time":1000000}
{"type":"ok","process":0,"f":"append","value":{"version":1},"time":2000000}
{"type":"invoke","process":1,"f":"append","value":{"stream":"s0","expected":0,"events":[]},"time":1500000}
{"type":"fail","process":1,"f":"append","value":{"stream":"s0","expected":0,"events":[]},"error":"wrong-expected-version: current 1","time":2500000}
{"type":"invoke","process":2,"f":"state","value":{"stream":"s0"},"time":3000000}
{"type":"ok","process":2,"f":"state","value":{"version":1,"snapshot_version":0},"time":3500000}
{"type":"invoke","process":3,"f":"order","value":{"order":"o1"},"time":4000000}
{"type":"ok","process":3,"f":"order","value":{"end":"completed"},"time":4500000}
"#;
    let dir = root.path().join("events").join("20260101T000000.000Z");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("history.jsonl"), history).unwrap();
    let test = json!({"workload": "events", "seed": 1, "nemesis": [], "bugs": [], "command": "harness run --workload events"});
    std::fs::write(dir.join("test.json"), serde_json::to_vec(&test).unwrap()).unwrap();
    let path = dir.join("results.json");
    let mut results = json!({"valid": false, "checkers": {"perf": {"valid": true, "ok_per_second": 3.0, "availability": 1.0, "latency_ms": {}}}});
    results["checkers"]["expected-version"] = json!({"valid": false, "summary": "1 of 2 conditional appends wrong",
        "found": 1, "examples": [{"stream": "s0", "expected": 0, "problem": "more than one append won at this expected version"}]});
    results["checkers"]["outcomes"] = json!({"valid": true, "summary": "1 sagas checked",
        "counts": {"by_end": {"completed": 1, "running": 2}}, "examples": []});
    results["checkers"]["partial"] = json!({"valid": false, "summary": "1 of 1 sagas wrong",
        "examples": [{"order": "o9", "problem": "charged more than once"}]});
    std::fs::write(&path, serde_json::to_vec(&results).unwrap()).unwrap();
    let html = std::fs::read_to_string(reports::render_run(&dir).unwrap()).unwrap();
    assert!(
        html.contains("<h2>Event store</h2><p>1 appends acknowledged, 1 refused"),
        "the events panel"
    );
    assert!(
        html.contains("Appends and conflicts per second"),
        "its plot"
    );
    assert!(
        html.contains("<tr><td>s0</td><td>1</td><td>0</td></tr>"),
        "stream lengths"
    );
    assert!(html.contains("more than one append won"), "its findings");
    assert!(
        html.contains("<h2>Sagas</h2><p>At the end: 1 completed, 0 compensated, 2 still running."),
        "the saga panel"
    );
    assert!(html.contains("Orders answered per second"), "its plot");
    assert!(
        html.contains("charged more than once"),
        "the partial sagas listed"
    );
}
