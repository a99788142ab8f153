//! End to end: `harness run` on real node processes with real faults; the correct
//! system comes out valid, planted bugs come out invalid, bad input exits 254.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn harness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_harness"))
}

/// The node binary cargo built beside the harness, when it is there.
fn node_bin() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_BIN_EXE_harness"))
        .parent()?
        .join("faultline-node");
    p.is_file().then_some(p)
}

fn run(store: &Path, args: &[&str]) -> (Output, PathBuf) {
    run_workload("kv", store, args)
}

fn run_workload(workload: &str, store: &Path, args: &[&str]) -> (Output, PathBuf) {
    let mut cmd = harness();
    cmd.args(["run", "--workload", workload, "--quiet", "--store"])
        .arg(store)
        .args(args);
    if let Some(bin) = node_bin() {
        cmd.arg("--node-bin").arg(bin);
    }
    let out = cmd.output().expect("run harness");
    (out, store.join("latest"))
}

fn results(run: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(run.join("results.json")).expect("results.json")).unwrap()
}

/// Asserts the verdict of checker `name` in the results `r`.
fn assert_verdict(r: &Value, name: &str, valid: bool) {
    assert_eq!(
        r["checkers"][name]["valid"],
        Value::Bool(valid),
        "{name}: {r}"
    );
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn correct_system_under_partitions_and_kills_is_valid_and_the_run_is_stored() {
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run(
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
    let r = results(&latest);
    assert_eq!(r["valid"], Value::Bool(true), "{r}");
    assert_verdict(&r, "linearizable", true);
    // One leader per term, read from the node logs, which had elections to show.
    assert_verdict(&r, "election-safety", true);
    assert!(
        r["checkers"]["election-safety"]["elections"].as_u64() >= Some(1),
        "{r}"
    );
    assert!(r["faults"].as_u64().unwrap() >= 2, "{r}");
    assert!(
        r["checkers"]["perf"]["latency_ms"]["read"]["p99"]
            .as_f64()
            .is_some(),
        "{r}"
    );
    // docs/run-store.md: the run folder's contents.
    for f in [
        "test.json",
        "history.jsonl",
        "results.json",
        "nodes/n1/node.log",
        "nodes/n5/node.log",
    ] {
        assert!(latest.join(f).exists(), "missing {f}");
    }
    let test: Value =
        serde_json::from_slice(&std::fs::read(latest.join("test.json")).unwrap()).unwrap();
    assert_eq!(test["seed"], Value::from(7));
    assert!(test["command"].as_str().unwrap().contains("--seed 7"));
    // The history checks the same way from the command line.
    let check = harness()
        .args(["check", "--model", "kv"])
        .arg(latest.join("history.jsonl"))
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", describe(&check));
}

/// Multi-Paxos under the same faults as Raft: the correct protocol is valid,
/// its two planted bugs are caught, and the run records the protocol.
#[test]
fn paxos_is_valid_under_faults_and_its_planted_bugs_are_caught() {
    let store = tempfile::tempdir().unwrap();
    let base = ["--consensus", "paxos", "--time-limit", "10", "--seed", "5"];
    let (out, latest) = run(
        store.path(),
        &[&base[..], &["--nemesis", "partition,kill,pause"]].concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let test: Value =
        serde_json::from_slice(&std::fs::read(latest.join("test.json")).unwrap()).unwrap();
    assert_eq!(test["consensus"], "paxos");
    assert!(
        test["command"]
            .as_str()
            .unwrap()
            .contains("--consensus paxos"),
        "{test}"
    );
    for (bug, nemesis) in [
        ("skip-prepare", "partition,kill,pause"),
        ("accept-lower-ballot", "partition"),
    ] {
        // Overlapping majorities, cut and healed often: a deposed leader and
        // its successor both reach some acceptors.
        let shapes = [
            "--partitions",
            "majority,ring,bridge",
            "--nemesis-interval",
            "1.5",
        ];
        let (out, latest) = run(
            store.path(),
            &[
                &base[..],
                &["--nemesis", nemesis, "--bug", bug],
                &shapes[..],
            ]
            .concat(),
        );
        assert_eq!(out.status.code(), Some(1), "{bug}: {}", describe(&out));
        assert_verdict(&results(&latest), "linearizable", false);
    }
}

#[test]
fn pbft_is_valid_under_crashes_partitions_and_a_lying_replica_and_its_planted_bugs_are_caught() {
    let store = tempfile::tempdir().unwrap();
    let base = ["--consensus", "pbft", "--time-limit", "10", "--seed", "5"];
    let (out, latest) = run(
        store.path(),
        &[&base[..], &["--nemesis", "partition,kill,pause,byzantine"]].concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let test: Value =
        serde_json::from_slice(&std::fs::read(latest.join("test.json")).unwrap()).unwrap();
    assert_eq!(
        (test["consensus"].as_str(), test["nodes"].as_u64()),
        (Some("pbft"), Some(4))
    );
    let history = std::fs::read_to_string(latest.join("history.jsonl")).unwrap();
    assert!(
        history.contains("start-byzantine"),
        "the liar's window is in the history"
    );
    for (bug, faults) in [
        // A primary forging its batches under the real digest.
        (
            "trust-primary",
            &["--nemesis", "byzantine", "--byzantine", "wrong-digest"][..],
        ),
        // Two halves that each think two replicas make a quorum.
        (
            "small-quorum",
            &["--nemesis", "partition", "--partitions", "halves"][..],
        ),
    ] {
        let (out, latest) = run(store.path(), &[&base[..], faults, &["--bug", bug]].concat());
        assert_eq!(out.status.code(), Some(1), "{bug}: {}", describe(&out));
        assert_verdict(&results(&latest), "linearizable", false);
    }
    // A liar needs a protocol that tolerates one, and PBFT needs n = 3f+1.
    for (args, says) in [
        (&["--nemesis", "byzantine"][..], "needs --consensus pbft"),
        (
            &["--consensus", "pbft", "--nemesis", "corrupt"][..],
            "refuses damaged files",
        ),
        (
            &["--consensus", "pbft", "--nodes", "3"][..],
            "at least 4 nodes",
        ),
        (
            &[
                "--consensus",
                "pbft",
                "--nemesis",
                "byzantine",
                "--byzantine",
                "lie",
            ][..],
            "--byzantine lie: known: equivocate",
        ),
    ] {
        let (out, _) = run(store.path(), &[&["--time-limit", "1"][..], args].concat());
        assert_eq!(out.status.code(), Some(254), "{args:?}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{args:?}: {}",
            describe(&out)
        );
    }
}

#[test]
fn bench_failover_trials_run_the_protocol_they_are_named_for() {
    let store = tempfile::tempdir().unwrap();
    let mut cmd = harness();
    cmd.args(["bench", "--consensus", "paxos", "--concurrency", "1"])
        .args(["--time-limit", "1", "--failover-trials", "1", "--store"])
        .arg(store.path());
    if let Some(bin) = node_bin() {
        cmd.arg("--node-bin").arg(bin);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // The trial's nodes said which protocol they recovered with.
    let bench = std::fs::read_dir(store.path().join("bench"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let log = bench.join("failover-builtin:paxos-0/nodes/n1/node.log");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("recovered (paxos)"),
        "{}: {text}",
        log.display()
    );
}

#[test]
fn stale_read_under_partitions_is_caught() {
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run(
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
    let r = results(&latest);
    assert_verdict(&r, "linearizable", false);
    assert!(!r["checkers"]["linearizable"]["failures"]
        .as_array()
        .unwrap()
        .is_empty());
}

/// `orphan-change` strands a membership change on a cut-off leader. The correct
/// node drops it with the truncated entry; `keep-config-on-truncate` keeps it,
/// and `membership-agreement` names the node that disagrees.
#[test]
fn an_orphaned_membership_change_is_undone_and_keeping_it_is_caught() {
    let args = [
        "--nodes",
        "3",
        "--nemesis",
        "orphan-change",
        "--nemesis-interval",
        "1.5",
        "--time-limit",
        "5",
    ];
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run(store.path(), &[&args[..], &["--seed", "2"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = results(&latest);
    assert_verdict(&r, "membership-agreement", true);
    // Caught in 10 of 10 seeds on a quiet machine; under a loaded CI the cut
    // can land after the leader already stepped down, so allow three seeds.
    let mut outcomes = Vec::new();
    for seed in ["2", "3", "4"] {
        let bugged = [
            &args[..],
            &["--seed", seed, "--bug", "keep-config-on-truncate"],
        ]
        .concat();
        let (out, latest) = run(store.path(), &bugged);
        if out.status.code() == Some(1) {
            let r = results(&latest);
            if r["checkers"]["membership-agreement"]["valid"] == Value::Bool(false) {
                let first = &r["checkers"]["membership-agreement"]["disagree"][0];
                assert!(first["at"].as_str().unwrap().contains("node.log:"), "{r}");
                return;
            }
        }
        outcomes.push(describe(&out));
    }
    panic!(
        "keep-config-on-truncate not caught in 3 seeds:\n{}",
        outcomes.join("\n")
    );
}

/// `lose-unsynced`: power losses on lazy disks. The correct node syncs what it
/// acknowledges and comes back; `no-fsync` leaves a zero-length `meta.json` (or
/// a log missing acknowledged entries), and the node cannot come back.
#[test]
fn a_power_loss_loses_nothing_acknowledged_and_no_fsync_is_caught() {
    let args = [
        "--nodes",
        "3",
        "--nemesis",
        "lose-unsynced",
        "--nemesis-interval",
        "1.5",
        "--time-limit",
        "5",
        "--seed",
        "1",
    ];
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run(store.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = results(&latest);
    assert_verdict(&r, "recovery", true);
    assert_verdict(&r, "lost-writes", true);
    let (out, latest) = run(store.path(), &[&args[..], &["--bug", "no-fsync"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = results(&latest);
    let caught = ["recovery", "lost-writes", "linearizable"]
        .iter()
        .filter(|c| r["checkers"][**c]["valid"] == Value::Bool(false))
        .count();
    assert!(caught > 0, "{r}");
    // What was lost is recorded with the fault.
    let history = std::fs::read_to_string(latest.join("history.jsonl")).unwrap();
    assert!(
        history.contains("\"start-lose-unsynced\""),
        "no power loss recorded"
    );
    assert!(history.contains("lost_bytes"));
}

/// `comeback`: the leader restarts, leads again, and is cut off while its
/// peers' old replies still reach it. The correct node stops serving reads it
/// cannot confirm; `echo-read-seq` lets those replies vouch for its reads.
#[test]
fn a_leader_back_from_a_restart_and_cut_off_serves_no_stale_reads() {
    let args = [
        "--nodes",
        "3",
        "--nemesis",
        "comeback",
        "--nemesis-interval",
        "1.5",
        "--time-limit",
        "30",
        "--op-timeout-ms",
        "100",
    ];
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run(store.path(), &[&args[..], &["--seed", "1"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_verdict(&results(&latest), "linearizable", true);
    // The README measures the catch rate over 10 seeds; on a loaded machine
    // a timing-dependent miss on one seed is expected now and then, four in a
    // row is not.
    let mut outcomes = Vec::new();
    for seed in ["1", "2", "3", "4"] {
        let (out, latest) = run(
            store.path(),
            &[&args[..], &["--seed", seed, "--bug", "echo-read-seq"]].concat(),
        );
        let caught = out.status.code() == Some(1)
            && results(&latest)["checkers"]["linearizable"]["valid"] == Value::Bool(false);
        outcomes.push(describe(&out));
        if caught {
            return;
        }
    }
    panic!(
        "echo-read-seq not caught in 4 seeds:\n{}",
        outcomes.join("\n")
    );
}

#[test]
fn no_fsync_under_kills_loses_acknowledged_writes_and_is_caught() {
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run(
        store.path(),
        &[
            "--time-limit",
            "10",
            "--nemesis",
            "kill",
            "--nemesis-interval",
            "1.5",
            "--seed",
            "1",
            "--bug",
            "no-fsync",
            "--recovery",
            "2",
        ],
    );
    // Seed 1's first fault kills every node at once (checked, so a change to the
    // schedule fails here rather than silently testing less).
    let history = std::fs::read_to_string(latest.join("history.jsonl")).unwrap();
    assert!(history.contains(r#""f":"start-kill","process":"nemesis""#));
    assert!(
        history.contains(r#"["n1","n2","n3","n4","n5"]"#),
        "no kill of every node in this schedule"
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}

#[test]
fn lock_workload_is_valid_under_partitions_kills_and_pauses() {
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run_workload(
        "lock",
        store.path(),
        &[
            "--time-limit",
            "8",
            "--nemesis",
            "partition,kill,pause",
            "--nemesis-interval",
            "1.5",
            "--seed",
            "2",
            "--recovery",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = results(&latest);
    let c = &r["checkers"];
    for checker in [
        "linearizable",
        "fencing-tokens",
        "fenced-writes",
        "deadlocks",
        "final-reads",
    ] {
        assert_verdict(&r, checker, true);
    }
    assert_eq!(c["linearizable"]["model"], "mutex");
    // The checkers had something to check.
    assert!(c["fencing-tokens"]["grants"].as_u64().unwrap() > 20, "{r}");
    assert!(
        c["fenced-writes"]["accepted_writes"].as_u64().unwrap() > 20,
        "{r}"
    );
    assert!(c["deadlocks"]["waits"].as_u64().unwrap() > 0, "{r}");
    assert!(r["faults"].as_u64().unwrap() >= 2, "{r}");
    let report = std::fs::read_to_string(latest.join("report.html")).unwrap();
    assert!(report.contains("Lock holders over time"));
}

/// Each planted lock-manager bug, in a short run without faults (the pauses are the
/// clients' own), and the checker that must catch it.
#[test]
fn planted_lock_bugs_are_caught_by_their_checkers() {
    for (bug, checker) in [
        ("lease-no-fence", "fenced-writes"),
        ("lock-no-quorum", "linearizable"),
        ("no-deadlock-check", "deadlocks"),
    ] {
        let store = tempfile::tempdir().unwrap();
        let (out, latest) = run_workload(
            "lock",
            store.path(),
            &[
                "--time-limit",
                "6",
                "--nemesis",
                "none",
                "--seed",
                "1",
                "--bug",
                bug,
                "--recovery",
                "0.5",
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{bug}: {}", describe(&out));
        let r = results(&latest);
        assert_verdict(&r, checker, false);
    }
}

#[test]
fn queue_workload_is_valid_under_partitions_kills_and_pauses() {
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run_workload(
        "queue",
        store.path(),
        &[
            "--time-limit",
            "8",
            "--nemesis",
            "partition,kill,pause",
            "--nemesis-interval",
            "1.5",
            "--seed",
            "2",
            "--recovery",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = results(&latest);
    let c = &r["checkers"];
    assert_verdict(&r, "acknowledged-messages", true);
    assert_verdict(&r, "delivery", true);
    assert!(
        c["acknowledged-messages"]["sent_ok"].as_u64().unwrap() > 100,
        "{r}"
    );
    for group in ["g1", "g2"] {
        let g = &c["delivery"]["groups"][group];
        assert_eq!(g["drained"], Value::Bool(true), "{r}");
        // Poison messages reach the dead letters; crashed consumers cause redeliveries.
        assert!(g["dead_letters"].as_u64().unwrap() > 0, "{r}");
        assert!(g["redeliveries"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(g["lost"], 0, "{r}");
    }
    let report = std::fs::read_to_string(latest.join("report.html")).unwrap();
    assert!(report.contains("Queue depth per group"));
}

#[test]
fn planted_broker_bugs_are_caught_by_their_checkers() {
    for (bug, checker) in [
        ("ack-before-persist", "acknowledged-messages"),
        ("skip-redelivery", "delivery"),
    ] {
        let store = tempfile::tempdir().unwrap();
        let (out, latest) = run_workload(
            "queue",
            store.path(),
            &[
                "--time-limit",
                "5",
                "--nemesis",
                "none",
                "--seed",
                "1",
                "--bug",
                bug,
                "--recovery",
                "0.5",
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{bug}: {}", describe(&out));
        let r = results(&latest);
        assert_verdict(&r, checker, false);
    }
}

#[test]
fn cache_workload_is_valid_under_partitions_kills_and_pauses() {
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run_workload(
        "cache",
        store.path(),
        &[
            "--time-limit",
            "8",
            "--nemesis",
            "partition,kill,pause",
            "--nemesis-interval",
            "1.5",
            "--seed",
            "2",
            "--recovery",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = results(&latest);
    let c = &r["checkers"];
    for checker in ["stale-reads", "ttl", "eviction", "convergence"] {
        assert_verdict(&r, checker, true);
    }
    // Reads hit cached copies, and the small capacity forced evictions.
    assert!(c["stale-reads"]["hits"].as_u64().unwrap() > 100, "{r}");
    let evictions: u64 = c["eviction"]["nodes"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n["stats"]["evictions"].as_u64().unwrap_or(0))
        .sum();
    assert!(evictions > 0, "{r}");
    let report = std::fs::read_to_string(latest.join("report.html")).unwrap();
    assert!(report.contains("Cache hit ratio"));
}

#[test]
fn skip_invalidate_is_caught_as_stale_reads() {
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run_workload(
        "cache",
        store.path(),
        &[
            "--time-limit",
            "5",
            "--nemesis",
            "none",
            "--seed",
            "1",
            "--bug",
            "skip-invalidate",
            "--recovery",
            "0.5",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = results(&latest);
    assert_verdict(&r, "stale-reads", false);
}

/// A third-party target on three nodes running the kv workload with `args`.
fn run_third_party(target: &str, store: &Path, args: &[&str]) -> (Output, PathBuf) {
    let mut cmd = harness();
    cmd.args(["run", "--workload", "kv", "--target", target])
        .args(["--quiet", "--nodes", "3", "--store"])
        .arg(store)
        .args(args);
    let out = cmd.output().expect("run harness");
    (out, store.join("latest"))
}

/// Partitions that cut off the leader (the Redis primary): the others fall
/// behind at once, so stale reads show on slow machines too.
const LEADER_CUT_OFF: [&str; 2] = ["--partitions", "leader"];

/// A third-party target (for redis: n1 primary, n2 and n3 replicas) under
/// short faults; `extra` adds flags.
fn run_target(
    target: &str,
    store: &Path,
    reads: &str,
    nemesis: &str,
    extra: &[&str],
) -> (Output, PathBuf) {
    let faults = [
        "--nemesis-interval",
        "1.5",
        "--time-limit",
        "6",
        "--seed",
        "3",
    ];
    let args = [
        &["--reads", reads, "--nemesis", nemesis][..],
        &faults[..],
        extra,
    ]
    .concat();
    run_third_party(target, store, &args)
}

#[test]
fn etcd_linearizable_reads_are_valid_under_partitions_and_kills() {
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run_target("etcd", store.path(), "linearizable", "partition,kill", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = results(&latest);
    assert_verdict(&r, "linearizable", true);
    assert!(
        r["checkers"]["stats"]["history"]["ok"].as_u64().unwrap() > 100,
        "{r}"
    );
}

#[test]
fn etcd_serializable_reads_are_caught_stale_under_partitions() {
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run_target(
        "etcd",
        store.path(),
        "serializable",
        "partition",
        &LEADER_CUT_OFF,
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = results(&latest);
    assert_verdict(&r, "linearizable", false);
}

#[test]
fn redis_primary_reads_are_linearizable_under_partitions_kills_and_pauses() {
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run_target(
        "redis",
        store.path(),
        "linearizable",
        "partition,kill,pause",
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = results(&latest);
    assert_verdict(&r, "linearizable", true);
    assert!(
        r["checkers"]["stats"]["history"]["ok"].as_u64().unwrap() > 500,
        "{r}"
    );
}

#[test]
fn redis_replica_reads_are_caught_stale() {
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run_target(
        "redis",
        store.path(),
        "replica",
        "partition",
        &LEADER_CUT_OFF,
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = results(&latest);
    assert_verdict(&r, "linearizable", false);
    // A fault the target cannot take is refused up front.
    let mut cmd = harness();
    let bad = cmd
        .args([
            "run",
            "--workload",
            "kv",
            "--target",
            "redis",
            "--nemesis",
            "clock",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(254), "{}", describe(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("does not apply"));
}

/// Redis's AOF under power losses: `appendfsync always` (our default) keeps
/// every acknowledged write; `everysec` acknowledges before syncing, and the
/// lost writes are named.
#[test]
fn redis_loses_acknowledged_writes_under_power_loss_only_with_appendfsync_everysec() {
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run_target("redis", store.path(), "linearizable", "lose-unsynced", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_verdict(&results(&latest), "lost-writes", true);
    // A loss must hit the primary while it holds unsynced acknowledged
    // writes; seeds 1 and 2 do, and a third is allowed for a loaded machine.
    let mut outcomes = Vec::new();
    for seed in ["1", "2", "4"] {
        let (out, latest) = run_third_party(
            "redis",
            store.path(),
            &[
                "--nemesis",
                "lose-unsynced",
                "--nemesis-interval",
                "2",
                "--time-limit",
                "12",
                "--seed",
                seed,
                "--node-arg=--appendfsync",
                "--node-arg=everysec",
            ],
        );
        if out.status.code() == Some(1) {
            let r = results(&latest);
            assert_verdict(&r, "lost-writes", false);
            assert!(
                r["checkers"]["lost-writes"]["summary"]
                    .as_str()
                    .unwrap()
                    .contains("acknowledged write"),
                "{r}"
            );
            return;
        }
        outcomes.push(describe(&out));
    }
    panic!("everysec never lost a write:\n{}", outcomes.join("\n"));
}

/// Redis with Sentinel on three nodes; `extra` picks the faults.
fn run_sentinel(store: &Path, extra: &[&str]) -> (Output, PathBuf) {
    run_third_party(
        "redis-sentinel",
        store,
        &[&["--seed", "1"][..], extra].concat(),
    )
}

#[test]
fn redis_sentinel_without_faults_is_valid() {
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run_sentinel(store.path(), &["--nemesis", "none", "--time-limit", "4"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = results(&latest);
    assert_verdict(&r, "lost-writes", true);
    assert_verdict(&r, "linearizable", true);
    assert!(
        r["checkers"]["stats"]["history"]["ok"].as_u64().unwrap() > 500,
        "{r}"
    );
    // Without faults every op is answered: a cas that does not match is an
    // answer too (about a quarter of the ops), not unavailability.
    let cas_failed = r["checkers"]["stats"]["by_f"]["cas"]["fail"].as_u64();
    assert!(cas_failed > Some(100), "{r}");
    let availability = r["checkers"]["perf"]["availability"].as_f64().unwrap();
    assert!(availability > 0.99, "{r}");
}

#[test]
fn redis_sentinel_failover_away_from_a_cut_off_primary_loses_acknowledged_writes() {
    // Cut off the primary: the sentinels with the majority promote a replica
    // while clients that still hold the old primary keep writing to it; when
    // it rejoins it is made a replica and drops what it acknowledged.
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run_sentinel(
        store.path(),
        &[
            "--nemesis",
            "partition",
            "--partitions",
            "leader",
            "--nemesis-interval",
            "4",
            "--time-limit",
            "9",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = results(&latest);
    let lost = &r["checkers"]["lost-writes"];
    assert_eq!(lost["valid"], Value::Bool(false), "{r}");
    assert!(lost["lost"].as_u64().unwrap() > 0, "{lost}");
    let first = &lost["examples"][0];
    assert_eq!(first["lost"], Value::Bool(true), "{first}");
    // n1 was the primary the partition cut off.
    assert_eq!(first["write_node"], "n1", "{first}");
    let switched = std::fs::read_dir(latest.join("nodes"))
        .unwrap()
        .filter_map(|d| std::fs::read_to_string(d.unwrap().path().join("sentinel/node.log")).ok())
        .any(|log| log.contains("+switch-master"));
    assert!(switched, "no sentinel logged a failover");
    // An unknown partition shape is refused up front.
    let (bad, _) = run_sentinel(store.path(), &["--partitions", "square"]);
    assert_eq!(bad.status.code(), Some(254), "{}", describe(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown partition shape `square`"));
}

#[test]
fn bench_runs_each_target_at_each_client_count_and_times_failover() {
    let store = tempfile::tempdir().unwrap();
    let mut cmd = harness();
    cmd.args(["bench", "--targets", "builtin,etcd", "--concurrency", "1,4"])
        .args(["--time-limit", "2", "--failover-trials", "1", "--store"])
        .arg(store.path());
    if let Some(bin) = node_bin() {
        cmd.arg("--node-bin").arg(bin);
    }
    let out = cmd.output().expect("run harness bench");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let dir = std::fs::read_dir(store.path().join("bench"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let b: Value = serde_json::from_slice(&std::fs::read(dir.join("bench.json")).unwrap()).unwrap();
    let rows = b["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{b}");
    // The page of plots beside it, linked from the store's index.
    let page = std::fs::read_to_string(dir.join("bench.html")).unwrap();
    assert!(page.matches("<svg").count() >= 2, "throughput and an op");
    let index = std::fs::read_to_string(store.path().join("index.html")).unwrap();
    assert!(index.contains("/bench.html"), "{index}");
    for r in rows {
        assert!(r["ok_per_second"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["valid"], "valid", "{r}");
        assert!(r["ops"]["write"]["p99_ms"].as_f64().unwrap() > 0.0, "{r}");
    }
    for t in ["builtin", "etcd"] {
        let ms = b["failover_ms"][t][0].as_f64().unwrap();
        assert!(ms > 0.0, "{b}");
    }
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("| 4 | etcd |") && table.contains("x) |"),
        "{table}"
    );
    // Bad lists are refused before anything starts.
    let bad = harness()
        .args(["bench", "--concurrency", "1,zero"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(254), "{}", describe(&bad));
}

#[test]
fn a_bench_suite_reports_each_workload_as_a_median_with_its_spread() {
    let store = tempfile::tempdir().unwrap();
    let mut cmd = harness();
    cmd.args(["bench", "--suite", "kv,lock", "--concurrency", "2"])
        .args([
            "--repeat",
            "2",
            "--time-limit",
            "1",
            "--nodes",
            "3",
            "--store",
        ])
        .arg(store.path());
    if let Some(bin) = node_bin() {
        cmd.arg("--node-bin").arg(bin);
    }
    let out = cmd.output().expect("run harness bench --suite");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let dir = std::fs::read_dir(store.path().join("bench"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let b: Value = serde_json::from_slice(&std::fs::read(dir.join("bench.json")).unwrap()).unwrap();
    let rows = b["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{b}");
    for (r, op) in rows.iter().zip(["write", "acquire"]) {
        assert_eq!(r["runs"], 2, "{r}");
        assert_eq!(r["run_dirs"].as_array().unwrap().len(), 2, "{r}");
        let t = &r["ok_per_second"];
        let (lo, m, hi) = (
            t["min"].as_f64().unwrap(),
            t["median"].as_f64().unwrap(),
            t["max"].as_f64().unwrap(),
        );
        assert!(0.0 < lo && lo <= m && m <= hi, "{r}");
        assert!(
            r["ops"][op]["p99_ms"]["median"].as_f64().unwrap() > 0.0,
            "{r}"
        );
    }
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("| lock | - | 2 |") && table.contains(" [") && table.contains("/2 |"),
        "{table}"
    );
    // And one fault run per repeat and workload: valid, with heals measured.
    let faults = b["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "{b}");
    for (f, w) in faults.iter().zip(["kv", "lock"]) {
        assert_eq!(f["workload"], w, "{f}");
        assert_eq!(f["errors"].as_array().unwrap().len(), 0, "{f}");
        assert_eq!(
            (f["runs"].as_u64(), f["valid_runs"].as_u64()),
            (Some(2), Some(2)),
            "{f}"
        );
        // Faults were injected; whether a 1 s run under CI load also has a
        // heal with ops waiting varies (reports/src/recovery.rs tests the
        // measure on histories with known answers).
        assert!(f["fault_stretches"].as_u64().unwrap() > 0, "{f}");
        assert!(
            f["heals"].as_u64().unwrap() <= f["fault_stretches"].as_u64().unwrap(),
            "{f}"
        );
        if let Some(ok) = f["ok_percent_under_faults"]["median"].as_f64() {
            assert!((0.0..=100.0).contains(&ok), "{f}");
        }
    }
    assert!(table.contains("| kv | - | 2 | partition,kill |"), "{table}");
    // An unknown workload is refused before anything starts.
    let bad = harness()
        .args(["bench", "--suite", "kv,nosuch", "--store"])
        .arg(store.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(254), "{}", describe(&bad));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("nosuch"),
        "{}",
        describe(&bad)
    );
}

/// `--target maelstrom` with one of our Maelstrom-protocol nodes in tests/maelstrom.
fn run_maelstrom(store: &Path, node: &str, nemesis: &str) -> (Output, PathBuf) {
    run_maelstrom_workload("kv", store, node, nemesis)
}

/// As [`run_maelstrom`], for any workload the Maelstrom target speaks.
fn run_maelstrom_workload(
    workload: &str,
    store: &Path,
    node: &str,
    nemesis: &str,
) -> (Output, PathBuf) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/maelstrom")
        .join(node);
    let mut cmd = harness();
    cmd.args([
        "run",
        "--workload",
        workload,
        "--target",
        "maelstrom",
        "--quiet",
    ])
    .arg("--bin")
    .arg(format!("python3 {}", script.display()))
    .arg("--store")
    .arg(store)
    .args([
        "--nodes",
        "3",
        "--nemesis",
        nemesis,
        "--nemesis-interval",
        "1.5",
    ])
    .args(["--time-limit", "5", "--seed", "4"]);
    let out = cmd.output().expect("run harness");
    (out, store.join("latest"))
}

#[test]
fn maelstrom_nodes_are_routed_and_checked() {
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run_maelstrom(store.path(), "lin_kv_proxy.py", "partition,kill,pause,loss");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = results(&latest);
    assert_verdict(&r, "linearizable", true);
    assert!(
        r["checkers"]["stats"]["history"]["ok"].as_u64().unwrap() > 500,
        "{r}"
    );
    // The node that answers reads from its own memory is caught.
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run_maelstrom(store.path(), "stale_cache.py", "none");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = results(&latest);
    assert_verdict(&r, "linearizable", false);
    // No command, no run.
    let bad = harness()
        .args(["run", "--workload", "kv", "--target", "maelstrom"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(254), "{}", describe(&bad));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--bin"),
        "{}",
        describe(&bad)
    );
}

#[test]
fn bad_input_exits_254_and_says_what_is_accepted() {
    let store = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (vec!["--workload", "nope"], "known: kv"),
        (
            vec!["--workload", "broadcast"],
            "speaks Maelstrom's protocol",
        ),
        (
            vec!["--workload", "kv", "--nemesis", "kill,meteor"],
            "accepted: partition",
        ),
        (vec!["--workload", "kv", "--time-limit=0"], "positive"),
        (vec!["--workload", "kv", "--nodes", "zero"], "zero"),
        (
            vec!["--workload", "kv", "--bug", "typo", "--time-limit", "1"],
            "known: stale-read",
        ),
        (
            vec![
                "--workload",
                "kv",
                "--consensus",
                "zab",
                "--time-limit",
                "1",
            ],
            "known: raft, paxos, pbft",
        ),
        (
            vec![
                "--workload",
                "kv",
                "--consensus",
                "paxos",
                "--nemesis",
                "membership",
            ],
            "only --consensus raft",
        ),
    ] {
        let mut cmd = harness();
        cmd.arg("run").args(&args).arg("--store").arg(store.path());
        if let Some(bin) = node_bin() {
            cmd.arg("--node-bin").arg(bin);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(254), "{args:?}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = harness()
        .args(["check", "--model", "kv", "/no/such/file"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/file"));
}

#[test]
fn check_names_lost_writes_next_to_linearizability() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lost.jsonl");
    let lines = [
        r#"{"process":0,"type":"invoke","f":"write","key":"a","value":1}"#,
        r#"{"process":0,"type":"ok","f":"write","key":"a","value":1,"node":"n1"}"#,
        r#"{"process":0,"type":"invoke","f":"write","key":"a","value":2}"#,
        r#"{"process":0,"type":"ok","f":"write","key":"a","value":2,"node":"n1"}"#,
        r#"{"process":1,"type":"invoke","f":"read","key":"a","value":null}"#,
        r#"{"process":1,"type":"ok","f":"read","key":"a","value":1,"node":"n2"}"#,
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = harness()
        .args(["check", "--model", "kv", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lost = &r["checkers"]["lost-writes"];
    assert_eq!(
        (lost["lost"].as_u64(), lost["reads"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    assert_eq!(lost["examples"][0]["write_node"], "n1", "{r}");
    let out = harness()
        .args(["check", "--model", "kv"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("lost-writes: INVALID: 1 acknowledged write(s) lost"));
}

#[test]
fn membership_changes_under_kills_keep_the_kv_valid() {
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run(
        store.path(),
        &[
            "--time-limit",
            "8",
            "--nemesis",
            "membership,kill",
            "--nemesis-interval",
            "1",
            "--seed",
            "2",
            "--recovery",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // A member really left through the leader and came back.
    let history = std::fs::read_to_string(latest.join("history.jsonl")).unwrap();
    let removals: Vec<Value> = history
        .lines()
        .filter(|l| l.contains(r#""f":"start-membership""#))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        removals.iter().any(|r| r["value"]["status"] == 200),
        "no removal was accepted: {removals:?}"
    );
    assert!(history.contains(r#""f":"stop-membership""#));
}

#[test]
fn txn_workload_is_strictly_serializable_and_a_nonatomic_store_is_caught() {
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run_workload(
        "txn",
        store.path(),
        &[
            "--time-limit",
            "6",
            "--nemesis",
            "partition,kill",
            "--nemesis-interval",
            "1.5",
            "--seed",
            "3",
            "--recovery",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = results(&latest);
    assert_eq!(r["checkers"]["txn"]["valid"], true);
    assert!(
        r["checkers"]["txn"]["ok"].as_u64().unwrap() > 100,
        "{}",
        r["checkers"]["txn"]
    );

    let (out, latest) = run_workload(
        "txn",
        store.path(),
        &[
            "--time-limit",
            "4",
            "--nemesis",
            "none",
            "--seed",
            "3",
            "--bug",
            "txn-nonatomic",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = results(&latest);
    assert_eq!(r["checkers"]["txn"]["valid"], false);
    // The report explains and draws the cycles.
    let html = std::fs::read_to_string(latest.join("report.html")).unwrap();
    assert!(html.contains("<svg class=\"cycle\""), "no cycle drawn");
}

#[test]
fn maelstrom_txn_nodes_are_checked_for_isolation() {
    // One compare-and-set of the whole database per transaction: strictly
    // serializable, also under partitions and crashes.
    for workload in ["txn", "txn-rw-register"] {
        let store = tempfile::tempdir().unwrap();
        let (out, latest) =
            run_maelstrom_workload(workload, store.path(), "txn_root_cas.py", "partition,kill");
        assert_eq!(out.status.code(), Some(0), "{workload}: {}", describe(&out));
        let r = results(&latest);
        assert_eq!(r["checkers"]["txn"]["valid"], true, "{workload}");
        assert!(
            r["checkers"]["txn"]["ok"].as_u64().unwrap() > 100,
            "{}",
            r["checkers"]["txn"]
        );
        // Micro-ops one key at a time: not isolated, and the checker names how.
        let store = tempfile::tempdir().unwrap();
        let (out, latest) =
            run_maelstrom_workload(workload, store.path(), "txn_per_key.py", "none");
        assert_eq!(out.status.code(), Some(1), "{workload}: {}", describe(&out));
        let r = results(&latest);
        let kinds = r["checkers"]["txn"]["anomaly_types"].as_array().unwrap();
        assert!(
            kinds.iter().any(|k| k.as_str().unwrap().starts_with("G")),
            "{workload}: {kinds:?}"
        );
    }
}

#[test]
fn leases_stay_safe_when_clocks_jump_and_strobe() {
    let store = tempfile::tempdir().unwrap();
    let (out, latest) = run_workload(
        "lock",
        store.path(),
        &[
            "--time-limit",
            "8",
            "--nemesis",
            "clock-bump,clock-strobe",
            "--nemesis-interval",
            "1",
            "--seed",
            "1",
            "--recovery",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let history = std::fs::read_to_string(latest.join("history.jsonl")).unwrap();
    let strobe = history
        .lines()
        .find(|l| l.contains(r#""f":"start-clock-strobe""#))
        .expect("a strobe in this schedule");
    let strobe: Value = serde_json::from_str(strobe).unwrap();
    assert!(strobe["value"]["flips"].as_u64().unwrap() > 10, "{strobe}");
    assert!(
        history.contains(r#""f":"start-clock-bump""#),
        "no bump in this schedule"
    );
}

#[test]
fn sharded_bank_is_valid_under_crash_points_and_kills_and_a_planted_2pc_bug_is_caught() {
    let store = tempfile::tempdir().unwrap();
    let base = [
        "--shards",
        "3",
        "--time-limit",
        "8",
        "--nemesis-interval",
        "1.5",
        "--seed",
        "3",
    ];
    let (out, latest) = run_workload(
        "bank",
        store.path(),
        &[&base[..], &["--nemesis", "crash-points,kill"]].concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = results(&latest);
    assert_verdict(&r, "bank", true);
    // Nodes that exited at a crash point came back for the final reads.
    assert_verdict(&r, "final-reads", true);
    let test: Value =
        serde_json::from_slice(&std::fs::read(latest.join("test.json")).unwrap()).unwrap();
    assert_eq!(
        (test["shards"].as_u64(), test["txn"].as_str()),
        (Some(3), Some("2pc"))
    );
    assert!(test["command"]
        .as_str()
        .unwrap()
        .contains("--shards 3 --replicas 3"));
    let history = std::fs::read_to_string(latest.join("history.jsonl")).unwrap();
    assert!(
        history.contains("start-crash-points"),
        "the crash points are in the history"
    );
    let (out, latest) = run_workload(
        "bank",
        store.path(),
        &[
            &base[..],
            &["--nemesis", "none", "--bug", "commit-without-all-votes"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_verdict(&results(&latest), "bank", false);
    // Crash points live in the coordinator of sharded transactions.
    let (out, _) = run_workload("bank", store.path(), &["--nemesis", "crash-points"]);
    assert_eq!(out.status.code(), Some(254), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --shards"));
}

#[test]
fn events_and_sagas_are_valid_under_faults_and_their_planted_bugs_are_caught() {
    let store = tempfile::tempdir().unwrap();
    let base = [
        "--time-limit",
        "8",
        "--nemesis-interval",
        "1.5",
        "--seed",
        "2",
    ];
    let (out, latest) = run_workload(
        "events",
        store.path(),
        &[&base[..], &["--nemesis", "partition,kill"]].concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = results(&latest);
    for c in [
        "appends",
        "expected-version",
        "global-order",
        "subscriptions",
        "projection",
        "snapshots",
    ] {
        assert_verdict(&r, c, true);
    }
    let (out, latest) = run_workload(
        "saga",
        store.path(),
        &[&base[..], &["--nemesis", "crash-points,pause"]].concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = results(&latest);
    for c in ["outcomes", "partial", "conservation"] {
        assert_verdict(&r, c, true);
    }
    let history = std::fs::read_to_string(latest.join("history.jsonl")).unwrap();
    assert!(
        history.contains("saga-"),
        "the saga crash points are in the history"
    );
    for (workload, bug, checker) in [
        ("events", "no-version-check", "expected-version"),
        ("events", "subscription-skips", "subscriptions"),
        ("saga", "skip-compensation", "partial"),
        ("saga", "non-idempotent-charge", "conservation"),
    ] {
        let (out, latest) = run_workload(
            workload,
            store.path(),
            &[&base[..], &["--nemesis", "none", "--bug", bug]].concat(),
        );
        assert_eq!(out.status.code(), Some(1), "{bug}: {}", describe(&out));
        assert_verdict(&results(&latest), checker, false);
    }
}

/// `messaging`: sends and broadcasts through the members' mailboxes stay
/// valid under partitions, kills and pauses; an inbox kept in memory loses
/// acknowledged deliveries to a kill, and one that does not deduplicate
/// delivers a retried message twice once a pause delays acknowledgements.
#[test]
fn messaging_is_valid_under_faults_and_its_planted_bugs_are_caught() {
    let store = tempfile::tempdir().unwrap();
    let base = ["--time-limit", "10", "--nemesis-interval", "1.5"];
    let (out, latest) = run_workload(
        "messaging",
        store.path(),
        &[
            &base[..],
            &["--nemesis", "partition,kill,pause", "--seed", "3"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = results(&latest);
    for c in ["sends", "broadcasts", "once", "integrity"] {
        assert_verdict(&r, c, true);
    }
    for (bug, fault, checker) in [
        ("volatile-inbox", "kill", "sends"),
        ("deliver-twice", "pause", "once"),
    ] {
        let (out, latest) = run_workload(
            "messaging",
            store.path(),
            &[
                &base[..],
                &["--nemesis", fault, "--seed", "1", "--bug", bug],
            ]
            .concat(),
        );
        assert_eq!(out.status.code(), Some(1), "{bug}: {}", describe(&out));
        assert_verdict(&results(&latest), checker, false);
    }
}

/// `mesh`: requests through the sidecars stay valid while instances are
/// killed, paused, cut off, slowed and browned out, and each of the mesh's
/// planted bugs is caught by its own checker with the README's command.
#[test]
fn mesh_is_valid_under_faults_and_its_planted_bugs_are_caught() {
    let store = tempfile::tempdir().unwrap();
    let base = [
        "--time-limit",
        "20",
        "--nemesis-interval",
        "2",
        "--nemesis",
        "kill,pause,delay,partition,brownout",
    ];
    let (out, latest) = run_workload(
        "mesh",
        store.path(),
        &[&base[..], &["--seed", "3"]].concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = results(&latest);
    for c in ["breaker", "retries", "deadline", "health-routing", "traces"] {
        assert_verdict(&r, c, true);
    }
    for (bug, checker) in [
        ("breaker-never-opens", "breaker"),
        ("retry-storm", "retries"),
        ("lb-ignores-health", "health-routing"),
        ("no-deadline", "deadline"),
    ] {
        let (out, latest) = run_workload(
            "mesh",
            store.path(),
            &[&base[..], &["--seed", "1", "--bug", bug]].concat(),
        );
        assert_eq!(out.status.code(), Some(1), "{bug}: {}", describe(&out));
        assert_verdict(&results(&latest), checker, false);
    }
}
