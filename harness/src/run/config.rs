//! The one configuration of a run (written to `test.json`, enough to replay
//! it) and the two ways a run ends early: bad input (exit 254), interruption.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole configuration of a run: written to `test.json`, enough to replay it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TestConfig {
    /// Workload name.
    pub workload: String,
    /// System under test.
    pub target: String,
    /// Where reads go on targets with replicas: `primary` or `replica`.
    #[serde(default = "linearizable")]
    pub reads: String,
    /// The command each node runs, for targets that run the user's (`--bin`).
    #[serde(default, alias = "maelstrom_bin")]
    pub bin: Option<String>,
    /// The target's own configuration file, for targets that take one.
    #[serde(default)]
    pub target_config: Option<PathBuf>,
    /// Where nodes run.
    pub runtime: String,
    /// Cluster size.
    pub nodes: usize,
    /// Logical client processes.
    pub concurrency: usize,
    /// Total ops/s (open loop), or as fast as clients go.
    pub rate: Option<f64>,
    /// Seconds of workload.
    pub time_limit: f64,
    /// Fault kinds.
    pub nemesis: Vec<String>,
    /// Seconds a fault lasts, and the calm after it.
    pub nemesis_interval: f64,
    /// Partition shapes to draw from (empty: all).
    #[serde(default)]
    pub partitions: Vec<String>,
    /// The builtin target's consensus protocol.
    #[serde(default = "raft")]
    pub consensus: String,
    /// Shards of the builtin system's keys (0: unsharded).
    #[serde(default)]
    pub shards: usize,
    /// Nodes in each shard's group.
    #[serde(default = "three")]
    pub replicas: usize,
    /// Atomic commit across shards: `2pc` or `3pc`.
    #[serde(default = "two_pc")]
    pub txn: String,
    /// The byzantine nemesis's one behaviour (none: the seed picks each time).
    #[serde(default)]
    pub byzantine: Option<String>,
    /// Planted bugs passed to the nodes.
    pub bugs: Vec<String>,
    /// Extra node arguments (builtin target), after the workload's own.
    #[serde(default)]
    pub node_args: Vec<String>,
    /// Seed of every random choice.
    pub seed: u64,
    /// Store root.
    pub store: PathBuf,
    /// Keys live at once.
    pub keys: usize,
    /// Ops per key.
    pub ops_per_key: usize,
    /// Client timeout per op, ms.
    pub op_timeout_ms: u64,
    /// Seconds of calm after healing, before the final reads.
    pub recovery: f64,
    /// Seconds the checker may take before answering unknown.
    pub check_time_limit: f64,
    /// Node binary, if given explicitly.
    pub node_bin: Option<PathBuf>,
    /// Maelstrom's broadcast topology: grid, line, total, tree2, tree3, tree4
    /// (default: tree4, as Maelstrom's).
    #[serde(default)]
    pub topology: Option<String>,
    /// Mean latency of every routed message, ms (Maelstrom's `--latency`).
    #[serde(default)]
    pub latency_ms: f64,
    /// How that latency is drawn: constant, uniform or exponential.
    #[serde(default = "exponential")]
    pub latency_dist: String,
    /// Share of operations that must succeed: `total` (all) or a fraction;
    /// none: availability is measured, not judged.
    #[serde(default)]
    pub availability: Option<String>,
    /// Copy the nodes' stderr to the harness's.
    #[serde(default)]
    pub log_stderr: bool,
    /// The command line that replays this run.
    pub command: String,
    /// Where to serve the live dashboard during the run (not part of the
    /// test: left out of test.json).
    #[serde(skip)]
    pub dashboard: Option<String>,
}

fn exponential() -> String {
    "exponential".into()
}

fn two_pc() -> String {
    "2pc".into()
}

fn three() -> usize {
    3
}

fn raft() -> String {
    "raft".into()
}

fn linearizable() -> String {
    "linearizable".into()
}

/// A problem with the user's request (exit 254) as opposed to a failure (255).
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// The run was stopped by SIGINT or SIGTERM (after tearing the cluster down).
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Resolves at the first SIGINT or SIGTERM.
pub(crate) async fn interrupted() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
