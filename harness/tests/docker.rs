//! End to end on Docker: the cluster in `FROM scratch` containers on a private
//! network, partitions as iptables rules in the containers' namespaces, kills as
//! SIGKILL through the Docker API. Runs when `FAULTLINE_DOCKER_TESTS=1`
//! (scripts/test sets it when `docker info` answers); otherwise says why not.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::get_json;

fn enabled() -> bool {
    if std::env::var("FAULTLINE_DOCKER_TESTS").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("docker suite skipped: set FAULTLINE_DOCKER_TESTS=1 with a Docker engine and iptables (scripts/test does when `docker info` answers)");
    false
}

fn run(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", "--runtime", "docker", "--workload", "kv", "--quiet"])
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("run harness")
}

fn results(store: &Path) -> Value {
    let bytes = std::fs::read(store.join("latest").join("results.json")).expect("results.json");
    serde_json::from_slice(&bytes).unwrap()
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Containers or networks this test's runs left behind (they must leave none).
fn leftovers() -> String {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=faultline.owner",
            "--format",
            "{{.Names}}",
        ])
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Err(_) => String::new(),
    }
}

#[test]
fn docker_runs_are_valid_for_the_correct_system_and_catch_stale_reads() {
    if !enabled() {
        return;
    }
    // One test runs both, one after the other: two clusters at once would share
    // two cores and make both runs slow.
    let store = tempfile::tempdir().unwrap();
    let out = run(
        store.path(),
        &[
            "--time-limit",
            "8",
            "--nemesis",
            "partition,kill",
            "--nemesis-interval",
            "1.5",
            "--seed",
            "7",
            "--recovery",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = results(store.path());
    assert_eq!(
        r["checkers"]["linearizable"]["valid"],
        Value::Bool(true),
        "{r}"
    );
    assert_eq!(r["runtime"]["runtime"], "docker", "{r}");
    assert!(r["faults"].as_u64().unwrap() >= 2, "{r}");
    let run_dir = std::fs::canonicalize(store.path().join("latest")).unwrap();
    let log = std::fs::read_to_string(run_dir.join("nodes/n1/node.log")).unwrap();
    assert!(log.contains("listening"), "node log collected: {log}");
    assert_eq!(leftovers(), "", "containers left behind");

    let store = tempfile::tempdir().unwrap();
    let out = run(
        store.path(),
        &[
            "--time-limit",
            "10",
            "--nemesis",
            "partition",
            // The leader cut off keeps answering reads while a new one takes
            // writes: stale for seconds, so slow machines catch it too.
            "--partitions",
            "leader",
            "--nemesis-interval",
            "1.5",
            "--seed",
            "3",
            "--bug",
            "stale-read",
            "--recovery",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = results(store.path());
    assert_eq!(
        r["checkers"]["linearizable"]["valid"],
        Value::Bool(false),
        "{r}"
    );
    assert!(
        r["packets_dropped"].as_u64().unwrap() > 0,
        "partitions dropped packets: {r}"
    );
    assert_eq!(leftovers(), "", "containers left behind");
}

/// `docker-compose down -v` for the project, however the test ends.
struct ComposeDown(Vec<String>);

impl Drop for ComposeDown {
    fn drop(&mut self) {
        let _ = Command::new("docker-compose")
            .args(&self.0)
            .args(["down", "-v"])
            .output();
    }
}

/// What README tells a user: `harness image`, then `docker-compose up` starts
/// the three nodes and the dashboard, whose state names the cluster's leader.
#[test]
fn docker_compose_starts_the_cluster_and_its_dashboard() {
    if !enabled() {
        return;
    }
    if Command::new("docker-compose")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("docker-compose test skipped: no docker-compose (scripts/test installs it)");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("image")
        .output()
        .expect("run harness image");
    assert!(out.status.success(), "{}", describe(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("tagged faultline-node:latest")
            && said.contains("tagged faultline-harness:latest"),
        "{said}"
    );
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("docker-compose.yml");
    let project = vec![
        "-p".to_string(),
        "faultlinecompose".to_string(),
        "-f".to_string(),
        file.display().to_string(),
    ];
    let down = ComposeDown(project);
    let up = Command::new("docker-compose")
        .args(&down.0)
        .args(["up", "-d"])
        .output()
        .expect("run docker-compose up");
    assert!(up.status.success(), "{}", describe(&up));
    let started = std::time::Instant::now();
    let mut last = None;
    while started.elapsed() < std::time::Duration::from_secs(60) {
        last = get_json("127.0.0.1:18080", "/state");
        if last.as_ref().is_some_and(|v| v["leader"].is_string()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let state = last.expect("the dashboard container never answered /state");
    let leader = state["leader"].as_str().unwrap_or("none");
    assert!(["n1", "n2", "n3"].contains(&leader), "{state}");
    // A node's own answer agrees that the cluster has that leader.
    let status = get_json("127.0.0.1:18001", "/cluster/status").expect("n1 answers");
    assert!(status.to_string().contains(leader), "{status}");
    drop(down);
}
