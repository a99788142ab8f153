//! Maelstrom nodes: ours, in Python and Rust, correct and broken, for every
//! workload (`harness maelstrom test` with Maelstrom's flags), and nodes that
//! misbehave before or during the run: the harness says what the node did,
//! quotes at most a bounded piece of it, and the run ends.

use std::process::{Command, Output};

/// `harness run` on one Maelstrom node started as `sh -c NODE`.
fn run_node(node: &str) -> Output {
    let store = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "run",
            "--workload",
            "kv",
            "--target",
            "maelstrom",
            "--quiet",
        ])
        .args(["--nodes", "1", "--nemesis", "none", "--time-limit", "1"])
        .arg("--store")
        .arg(store.path())
        .arg("--bin")
        .arg(node)
        .output()
        .expect("run harness")
}

#[test]
fn a_node_silent_after_a_huge_line_is_quoted_briefly_and_timed_out() {
    // 20 MB of output that is not JSON, then nothing: init is never answered.
    let out = run_node("head -c 20000000 /dev/zero | tr '\\0' x; echo; cat > /dev/null");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.len() < 4096, "echoed {} bytes of stderr", err.len());
    assert!(
        err.contains(&format!("{}... (20000000 bytes)", "x".repeat(512))),
        "{err}"
    );
    assert!(err.contains("n0 did not answer init within 10 s"), "{err}");
    assert!(!err.contains("None"), "{err}");
}

#[test]
fn a_node_that_exits_or_answers_init_wrongly_is_named() {
    let out = run_node("exit 3");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("n0 exited (exit status: 3) before answering init"),
        "{err}"
    );
    let answer = r#"{"src":"n0","dest":"c0","body":{"type":"error","code":13,"in_reply_to":1}}"#;
    let out = run_node(&format!("read init; echo '{answer}'; cat > /dev/null"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            r#"n0 answered init with {"code":13,"in_reply_to":1,"type":"error"} instead of init_ok"#
        ),
        "{err}"
    );
}

/// The folder of our own Maelstrom test nodes.
fn nodes_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/maelstrom")
}

/// Our Rust test node, built by cargo as an example beside the harness.
fn rust_node() -> String {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_harness"));
    let node = exe
        .parent()
        .expect("target dir")
        .join("examples/maelstrom_node");
    assert!(node.is_file(), "{} is not built", node.display());
    node.display().to_string()
}

/// `harness maelstrom test` with Maelstrom's flags; answers the output and
/// the run's results.
fn maelstrom_test(workload: &str, bin: &str, extra: &[&str]) -> (Output, serde_json::Value) {
    let store = tempfile::tempdir().unwrap();
    let mut flags = vec![
        ("--node-count", "3"),
        ("--time-limit", "4"),
        ("--rate", "60"),
        ("--nemesis", "partition"),
        ("--nemesis-interval", "1"),
        ("--recovery", "2"),
        ("--seed", "5"),
    ];
    // A flag in `extra` replaces its default.
    for pair in extra.chunks(2) {
        flags.retain(|(f, _)| *f != pair[0]);
        flags.push((pair[0], pair[1]));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["maelstrom", "test", "-w", workload, "--bin", bin, "--quiet"])
        .args(flags.iter().flat_map(|(f, v)| [*f, *v]))
        .arg("--store")
        .arg(store.path())
        .output()
        .expect("run harness");
    let results = std::fs::read(store.path().join("latest/results.json"))
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or_default();
    (out, results)
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The correct node is valid; with `--bug` the named checker fails and its
/// summary names `anomaly`.
fn correct_and_broken(workload: &str, bin: &str, checker: &str, anomaly: &str, extra: &[&str]) {
    let (out, r) = maelstrom_test(workload, bin, extra);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{workload} {bin}: {}\n{r}",
        describe(&out)
    );
    assert_eq!(r["checkers"][checker]["valid"], true, "{r}");
    assert_eq!(r["checkers"]["protocol"]["valid"], true, "{r}");
    assert!(
        r["checkers"]["net"]["all"]["msgs_per_op"].as_f64().unwrap() >= 2.0,
        "{r}"
    );
    let broken = format!("{bin} --bug");
    let (out, r) = maelstrom_test(workload, &broken, extra);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{workload} {broken}: {}\n{r}",
        describe(&out)
    );
    assert_eq!(r["checkers"][checker]["valid"], false, "{r}");
    let summary = r["checkers"][checker]["summary"].as_str().unwrap_or("");
    assert!(summary.contains(anomaly), "{workload}: {summary}");
}

fn python(node: &str) -> String {
    format!("python3 {}", nodes_dir().join(node).display())
}

#[test]
fn python_nodes_for_echo_ids_and_counters_are_judged() {
    correct_and_broken("echo", &python("echo.py"), "echo", "came back changed", &[]);
    correct_and_broken(
        "unique-ids",
        &python("unique_ids.py"),
        "unique-ids",
        "more than once",
        &[],
    );
    correct_and_broken(
        "g-counter",
        &python("counter.py"),
        "counter",
        "outside",
        &[],
    );
    correct_and_broken(
        "pn-counter",
        &python("counter.py"),
        "counter",
        "outside",
        &[],
    );
}

#[test]
fn python_nodes_for_sets_and_logs_are_judged() {
    let line = ["--topology", "line"];
    correct_and_broken(
        "broadcast",
        &python("broadcast.py"),
        "set-full",
        "lost",
        &line,
    );
    correct_and_broken("g-set", &python("g_set.py"), "set-full", "lost", &[]);
    correct_and_broken(
        "kafka",
        &python("kafka.py"),
        "kafka",
        "inconsistent-offsets",
        &[],
    );
}

#[test]
fn rust_nodes_are_judged_alike() {
    let node = rust_node();
    correct_and_broken(
        "echo",
        &format!("{node} echo"),
        "echo",
        "came back changed",
        &[],
    );
    correct_and_broken(
        "unique-ids",
        &format!("{node} unique-ids"),
        "unique-ids",
        "more than once",
        &[],
    );
    correct_and_broken(
        "broadcast",
        &format!("{node} broadcast"),
        "set-full",
        "lost",
        &["--topology", "tree2"],
    );
    correct_and_broken(
        "pn-counter",
        &format!("{node} g-counter"),
        "counter",
        "outside",
        &[],
    );
    correct_and_broken("g-set", &format!("{node} g-set"), "set-full", "lost", &[]);
}

#[test]
fn a_node_that_breaks_the_protocol_mid_run_is_named_and_the_run_ends() {
    // Answers init, then prints a line that is not JSON, answers with an
    // in_reply_to nobody sent, and dies after its fifth echo.
    let node = r#"python3 -c '
import json, sys
n = 0
for line in sys.stdin:
    m = json.loads(line); b = m["body"]
    me = b.get("node_id", "n1") if b["type"] == "init" else m["dest"]
    kind = "init_ok" if b["type"] == "init" else "echo_ok"
    reply = {"type": kind, "in_reply_to": b["msg_id"], "echo": b.get("echo")}
    print(json.dumps({"src": m["dest"], "dest": m["src"], "body": reply}), flush=True)
    if kind == "echo_ok":
        n += 1
        if n == 2: print("hello, world", flush=True)
        if n == 3: print(json.dumps({"src": m["dest"], "dest": m["src"], "body": {"type": "echo_ok", "in_reply_to": 123456789}}), flush=True)
        if n == 5: sys.exit(0)
'"#;
    let (out, r) = maelstrom_test("echo", node, &["--nemesis", "none"]);
    assert_eq!(out.status.code(), Some(1), "{}\n{r}", describe(&out));
    let p = &r["checkers"]["protocol"];
    assert_eq!(p["valid"], false, "{r}");
    let all = p["problems"].to_string();
    assert!(
        all.contains("printed a line that is not JSON") && all.contains("hello, world"),
        "{all}"
    );
    assert!(
        all.contains("in_reply_to 123456789, which no client sent"),
        "{all}"
    );
    assert!(all.contains("exited on its own (see nodes/n"), "{all}");
    // The echoes that were answered are still judged.
    assert_eq!(r["checkers"]["echo"]["valid"], true, "{r}");
}

#[test]
fn maelstrom_flags_are_checked_before_anything_starts() {
    for (args, needle) in [
        (vec!["--topology", "star"], "unknown topology `star`"),
        (
            vec!["--latency-dist", "normal"],
            "unknown latency distribution",
        ),
        (vec!["--availability", "most"], "--availability most"),
        (vec!["--concurrency", "xn"], "--concurrency xn"),
        (vec!["--nemesis", "clock"], "--nemesis clock does not apply"),
    ] {
        let (out, _) = maelstrom_test("echo", "cat", &args);
        assert_eq!(out.status.code(), Some(254), "{args:?}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{args:?}: {}",
            describe(&out)
        );
    }
}

#[test]
fn a_node_that_leans_on_a_weaker_service_than_it_promises_is_caught() {
    let proxy = python("lin_kv_proxy.py");
    let none = ["--nemesis", "none", "--rate", "200", "--concurrency", "6"];
    let (out, r) = maelstrom_test("lin-kv", &proxy, &none);
    assert_eq!(out.status.code(), Some(0), "{}\n{r}", describe(&out));
    for service in ["seq-kv", "lww-kv"] {
        let (out, r) = maelstrom_test("lin-kv", &format!("{proxy} {service}"), &none);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{service}: {}\n{r}",
            describe(&out)
        );
        assert_eq!(
            r["checkers"]["linearizable"]["valid"], false,
            "{service}: {r}"
        );
    }
}
