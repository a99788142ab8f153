//! `harness check`, the whole command with its exit code, gives every Porcupine
//! known-answer history the verdict its README lists: a false alarm from any
//! checker the command runs (lost-writes beside the search) fails here.

use std::path::{Path, PathBuf};
use std::process::Command;

fn anchors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../checker/tests/data/porcupine")
}

#[test]
fn harness_check_exits_with_every_anchors_listed_verdict() {
    let readme = std::fs::read_to_string(anchors().join("README.md")).expect("anchors README");
    let mut rows = 0;
    let mut wrong = Vec::new();
    for line in readme
        .lines()
        .filter(|l| l.starts_with("jepsen/") || l.starts_with("kv/"))
    {
        let mut cols = line.split('\t');
        let file = cols.next().unwrap();
        let want = match cols.next().unwrap() {
            "linearizable" => 0,
            "NOT linearizable" => 1,
            // The one empty log: nothing to judge is bad input, never `valid`.
            _ => 254,
        };
        rows += 1;
        let (format, model) = if file.starts_with("jepsen/") {
            ("jepsen-log", "cas-register")
        } else {
            ("jepsen-edn", "append-kv")
        };
        let out = Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["check", "--model", model, "--format", format])
            .arg(anchors().join(file))
            .output()
            .expect("run harness check");
        let got = out.status.code();
        if got != Some(want) {
            wrong.push(format!(
                "{file}: exit {got:?}, want {want}\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert_eq!(rows, 109, "README lists 109 files");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
