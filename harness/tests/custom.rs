//! `--target custom`: a system described in a TOML file. Our own node, driven
//! as if it were foreign (byte-stream proxies, templated HTTP), comes out
//! valid under partitions and kills; a broken description is a 254 naming
//! the field.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn harness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_harness"))
}

/// The node binary cargo built beside the harness.
fn node_bin() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_harness"))
        .parent()
        .unwrap()
        .join("faultline-node")
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Our node, described from the outside.
fn description(node: &Path) -> String {
    format!(
        r#"
[start]
command = "{}"
args = ["--id", "{{id}}", "--data-dir", "{{data_dir}}", "--client", "127.0.0.1:{{port}}",
        "--peer-listen", "127.0.0.1:{{peer_port}}", "--admin", "127.0.0.1:{{admin_port}}", "{{peers}}"]
peer = ["--peer", "{{peer_id}}={{peer_addr}}"]

[kv]
ok = [200]
fail = [400, 409, 503]
elsewhere = [421]
absent = [404]
value = "/value"
read = {{ method = "GET", path = "/kv/{{key}}" }}
write = {{ method = "PUT", path = "/kv/{{key}}", body = '{{"value": {{value}}}}' }}
cas = {{ method = "POST", path = "/kv/{{key}}/cas", body = '{{"expected": {{expected}}, "new": {{new}}}}' }}

[leader]
method = "GET"
path = "/cluster/status"
pointer = "/role"
equals = "leader"
"#,
        node.display()
    )
}

#[test]
fn our_node_described_in_toml_is_valid_under_partitions_and_kills() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("faultline.toml");
    std::fs::write(&file, description(&node_bin())).unwrap();
    let store = dir.path().join("store");
    let out = harness()
        .args(["run", "--workload", "kv", "--target", "custom", "--quiet"])
        .arg("--target-config")
        .arg(&file)
        .args([
            "--nodes",
            "3",
            "--nemesis",
            "partition,kill",
            "--partitions",
            "leader,halves",
        ])
        .args([
            "--nemesis-interval",
            "1.5",
            "--time-limit",
            "10",
            "--seed",
            "7",
        ])
        .arg("--store")
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("latest/results.json")).unwrap()).unwrap();
    for checker in ["linearizable", "lost-writes", "final-reads"] {
        assert_eq!(
            results["checkers"][checker]["valid"], true,
            "{checker}: {results}"
        );
    }
    assert!(results["faults"].as_u64() >= Some(2), "{results}");
    let ok = &results["checkers"]["stats"]["history"]["ok"];
    assert!(ok.as_u64() > Some(200), "too few ok ops: {results}");
}

#[test]
fn a_planted_stale_read_in_the_described_system_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stale.toml");
    let text =
        description(&node_bin()).replace("\"{peers}\"]", "\"{peers}\", \"--bug\", \"stale-read\"]");
    assert!(text.contains("stale-read"));
    std::fs::write(&file, text).unwrap();
    let store = dir.path().join("store");
    let out = harness()
        .args(["run", "--workload", "kv", "--target", "custom", "--quiet"])
        .arg("--target-config")
        .arg(&file)
        .args([
            "--nemesis",
            "partition",
            "--partitions",
            "leader",
            "--recovery",
            "1",
        ])
        .args([
            "--nemesis-interval",
            "1.5",
            "--time-limit",
            "10",
            "--seed",
            "3",
        ])
        .arg("--store")
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("latest/results.json")).unwrap()).unwrap();
    assert_eq!(
        results["checkers"]["linearizable"]["valid"], false,
        "{results}"
    );
}

#[test]
fn a_broken_description_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = description(&node_bin());
    let cases = [
        (good.replace("ok = [200]\n", ""), "missing field `ok`"),
        (
            good.replace("{value}}", "{valeu}}"),
            "kv.write.body: unknown placeholder {valeu}",
        ),
        (
            good.replace("/faultline-node\"", "/no-such-node\""),
            "start.command",
        ),
        (
            good.replace("pointer = \"/role\"", "pointer = \"role\""),
            "leader.pointer",
        ),
    ];
    for (text, needle) in cases {
        let file = dir.path().join("broken.toml");
        std::fs::write(&file, text).unwrap();
        let out = harness()
            .args([
                "run",
                "--workload",
                "kv",
                "--target",
                "custom",
                "--quiet",
                "--time-limit",
                "1",
            ])
            .arg("--target-config")
            .arg(&file)
            .arg("--store")
            .arg(dir.path().join("store"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(254), "{needle}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle) && err.contains("broken.toml"),
            "{needle}: {err}"
        );
    }
    // Without a description at all.
    let out = harness()
        .args([
            "run",
            "--workload",
            "kv",
            "--target",
            "custom",
            "--time-limit",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--target-config"));
}
