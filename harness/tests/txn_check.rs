//! `harness check --model list-append|rw-register`, the whole command: exit codes
//! for valid, invalid, bad and empty histories, `--consistency`, `--json`, and the
//! Jepsen EDN spelling of transactions.

use std::path::PathBuf;
use std::process::{Command, Output};

use checker::txn::generate::{list_append_history, Plant, Shape};

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faultline-txn-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn check(args: &[&str], file: &PathBuf) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("check")
        .args(args)
        .arg(file)
        .output()
        .expect("run harness check")
}

#[test]
fn verdicts_and_exit_codes() {
    let shape = Shape {
        txns: 5000,
        processes: 10,
        seed: 3,
        ..Shape::default()
    };
    let valid = write("valid.jsonl", &list_append_history(&shape));
    let out = check(&["--model", "list-append"], &valid);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid: strict-serializable"));

    let skew = write(
        "skew.jsonl",
        &list_append_history(&Shape {
            plant: vec![Plant::G2Item],
            ..shape.clone()
        }),
    );
    let out = check(&["--model", "list-append"], &skew);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("anomalies: G2-item (1)") && text.contains("not repeatable-read"),
        "{text}"
    );
    // Snapshot isolation allows write skew.
    let out = check(
        &[
            "--model",
            "list-append",
            "--consistency",
            "snapshot-isolation",
        ],
        &skew,
    );
    assert_eq!(out.status.code(), Some(0));
    // JSON: the txn entry with the anomaly and the models it rules out.
    let out = check(&["--model", "list-append", "--json"], &skew);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(
        v["checkers"]["txn"]["anomaly_types"],
        serde_json::json!(["G2-item"])
    );
    assert_eq!(
        v["checkers"]["txn"]["not"],
        serde_json::json!(["repeatable-read"])
    );
}

#[test]
fn bad_and_empty_input_exit_254_naming_where() {
    let bad = write(
        "bad.jsonl",
        "{\"type\":\"invoke\",\"process\":0,\"f\":\"txn\",\"value\":[[\"r\",1,null]]}\n{\"type\":\"ok\",\"process\":0,\"f\":\"txn\",\"value\":[[\"r\",1,7]]}\n",
    );
    let out = check(&["--model", "list-append"], &bad);
    assert_eq!(out.status.code(), Some(254));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.jsonl:2: field `value`") && err.contains("returns a list"),
        "{err}"
    );

    let empty = write(
        "empty.jsonl",
        "\n{\"type\":\"info\",\"process\":\"nemesis\",\"f\":\"kill\",\"value\":null}\n",
    );
    let out = check(&["--model", "rw-register"], &empty);
    assert_eq!(out.status.code(), Some(254));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no client operation")
            || String::from_utf8_lossy(&out.stderr).contains("no transaction")
    );

    // --linearizable-keys belongs to rw-register.
    let out = check(&["--model", "list-append", "--linearizable-keys"], &bad);
    assert_eq!(out.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rw-register only"));

    // --consistency belongs to the transactional models.
    let out = check(&["--model", "kv", "--consistency", "serializable"], &bad);
    assert_eq!(out.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--consistency applies"));
}

#[test]
fn jepsen_edn_transactions() {
    let edn = write(
        "h.edn",
        "{:type :invoke, :f :txn, :value [[:append 1 1] [:append 2 1]], :process 0, :index 0}\n\
         {:type :ok, :f :txn, :value [[:append 1 1] [:append 2 1]], :process 0, :index 1}\n\
         {:type :invoke, :f :txn, :value [[:r 1 nil] [:r 2 nil]], :process 1, :index 2}\n\
         {:type :ok, :f :txn, :value [[:r 1 []] [:r 2 [1]]], :process 1, :index 3}\n",
    );
    let out = check(&["--model", "list-append", "--format", "jepsen-edn"], &edn);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("G-single"));
}
