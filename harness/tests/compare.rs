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
