//! `--target maelstrom` with nodes that misbehave before the run starts: the
//! harness says what the node did, and quotes at most a bounded piece of it.

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
    assert!(err.contains("n1 did not answer init within 10 s"), "{err}");
    assert!(!err.contains("None"), "{err}");
}

#[test]
fn a_node_that_exits_or_answers_init_wrongly_is_named() {
    let out = run_node("exit 3");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("n1 exited (exit status: 3) before answering init"),
        "{err}"
    );
    let answer = r#"{"src":"n1","dest":"c0","body":{"type":"error","code":13,"in_reply_to":1}}"#;
    let out = run_node(&format!("read init; echo '{answer}'; cat > /dev/null"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            r#"n1 answered init with {"code":13,"in_reply_to":1,"type":"error"} instead of init_ok"#
        ),
        "{err}"
    );
}
