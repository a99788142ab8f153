//! `harness compare` on run folders whose results.json is or is not the shape
//! of docs/results.md: malformed input exits 254 naming the file and the field.

use std::path::Path;
use std::process::{Command, Output};

fn compare(base: &Path, current: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("compare")
        .args([base, current])
        .output()
        .expect("run harness compare")
}

fn run_dir(root: &Path, name: &str, results: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("results.json"), results).unwrap();
    dir
}

const GOOD: &str = r#"{"valid": true, "checkers": {"linearizable": {"valid": true},
  "perf": {"valid": true, "ok_per_second": 100.0, "availability": 1.0,
           "latency_ms": {"read": {"count": 3, "p50": 1.0, "p95": 2.0, "p99": 2.5, "max": 3.0}}}}}"#;

#[test]
fn malformed_results_exit_254_naming_the_file_and_the_field() {
    let root = tempfile::tempdir().unwrap();
    let good = run_dir(root.path(), "good", GOOD);
    let out = compare(&good, &good);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for (name, results, needle) in [
        (
            "array",
            "[]",
            "must be a JSON object with `valid` and `checkers`",
        ),
        ("scalar", "5", "must be a JSON object"),
        (
            "checkers-number",
            r#"{"checkers": 5}"#,
            "`valid` is missing",
        ),
        (
            "checkers-not-object",
            r#"{"valid": true, "checkers": 5}"#,
            "`checkers` must be an object of checker results, found 5",
        ),
        (
            "bad-verdict",
            r#"{"valid": "yes", "checkers": {}}"#,
            "`valid` must be a verdict (true, false or \"unknown\"), found \"yes\"",
        ),
        (
            "checker-not-object",
            r#"{"valid": true, "checkers": {"linearizable": [true]}}"#,
            "`checkers.linearizable` must be an object with `valid`",
        ),
        (
            "perf-text",
            r#"{"valid": true, "checkers": {"perf": {"valid": true, "ok_per_second": "fast"}}}"#,
            "`checkers.perf.ok_per_second` must be a number",
        ),
        (
            "latency-text",
            r#"{"valid": true, "checkers": {"perf": {"valid": true, "latency_ms": {"read": {"p99": "2"}}}}}"#,
            "`checkers.perf.latency_ms.read.p99` must be a number",
        ),
    ] {
        let bad = run_dir(root.path(), name, results);
        let file = bad.join("results.json").display().to_string();
        for (base, current) in [(&bad, &bad), (&good, &bad), (&bad, &good)] {
            let out = compare(base, current);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(254), "{name}: {err}");
            assert!(err.contains(&file) && err.contains(needle), "{name}: {err}");
            assert!(out.stdout.is_empty(), "{name}: no report on bad input");
        }
    }
}

/// The node binary cargo built beside the harness, when it is there (else the
/// harness builds it).
fn node_bin() -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_BIN_EXE_harness"))
        .parent()?
        .join("faultline-node");
    p.is_file().then_some(p)
}

/// Runs a small kv suite into `store` and returns its folder.
fn suite(store: &Path, node_args: &[&str]) -> std::path::PathBuf {
    let before: Vec<_> = std::fs::read_dir(store.join("bench"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
    cmd.args([
        "bench",
        "--suite",
        "kv",
        "--concurrency",
        "1",
        "--repeat",
        "2",
    ])
    .args(["--time-limit", "2", "--store"])
    .arg(store)
    .args(node_args);
    if let Some(bin) = node_bin() {
        cmd.arg("--node-bin").arg(bin);
    }
    let out = cmd.output().expect("run harness bench");
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_dir(store.join("bench"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| !before.contains(p))
        .expect("a new bench folder")
}

/// Two suite runs of one build compare as ok; a run whose nodes answer every
/// write 20 ms late (`--slow-writes-ms`, a planted slowdown) is a regression
/// named by its metrics. Thresholds are wide for the same-build pair: sub-
/// millisecond p99s on a busy 2-core machine move a lot, and the planted
/// slowdown moves them by orders of magnitude.
#[test]
fn a_planted_slowdown_is_a_regression_and_a_rerun_is_not() {
    let store = tempfile::tempdir().unwrap();
    let base = suite(store.path(), &[]);
    let again = suite(store.path(), &[]);
    let slow = suite(store.path(), &["--node-arg=--slow-writes-ms=20"]);
    let wide = ["--max-throughput-drop", "60", "--max-p99-rise", "400"];
    let run = |current: &Path| {
        Command::new(env!("CARGO_BIN_EXE_harness"))
            .arg("compare")
            .arg(&base)
            .arg(current)
            .args(wide)
            .output()
            .unwrap()
    };
    let same = run(&again);
    let text = String::from_utf8_lossy(&same.stdout);
    assert_eq!(same.status.code(), Some(0), "{text}");
    let slowed = run(&slow);
    let text = String::from_utf8_lossy(&slowed.stdout);
    assert_eq!(slowed.status.code(), Some(1), "{text}");
    for metric in ["throughput dropped", "write p99 rose", "cas p99 rose"] {
        assert!(text.contains(metric), "{metric} not named:\n{text}");
    }
}
