//! `harness maelstrom test` takes Maelstrom's own flags (`-w broadcast --bin
//! ./node --node-count 5 --rate 10 --latency 100 --nemesis partition ...`) and
//! runs the same test as `harness run --target maelstrom`, so a node and the
//! habits built around Maelstrom carry over unchanged. `harness maelstrom
//! bench` measures the router: messages per second through N nodes.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::json;

use crate::cmd::RunArgs;
use crate::runtime::Runtime;
use crate::targets::maelstrom::{MaelstromRuntime, Router};
use crate::{EXIT_BAD_INPUT, EXIT_INTERNAL};

/// `harness maelstrom ...`.
#[derive(Subcommand, Debug)]
pub enum MaelstromCommand {
    /// Run a Maelstrom workload against your node, with Maelstrom's flags.
    Test(Box<TestArgs>),
    /// Measure the router: echo requests through N nodes as fast as they go.
    Bench(BenchArgs),
}

/// Maelstrom's `test` flags, with its defaults, plus Faultline's faults.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// The workload: echo, unique-ids, broadcast, g-set, g-counter,
    /// pn-counter, lin-kv, txn-list-append, txn-rw-register, kafka.
    #[arg(short = 'w', long)]
    pub workload: String,
    /// Your node: a path, or a command with its arguments, run through `sh -c`.
    #[arg(long)]
    pub bin: String,
    /// Number of nodes.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub node_count: u16,
    /// Seconds of workload.
    #[arg(long, default_value_t = 10.0)]
    pub time_limit: f64,
    /// Operations per second, over all clients.
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Clients: a number, or `Nn` for N per node (Maelstrom's default is 1n).
    #[arg(long, default_value = "1n")]
    pub concurrency: String,
    /// Mean message latency, ms.
    #[arg(long, default_value_t = 0.0)]
    pub latency: f64,
    /// Latency distribution: constant, uniform or exponential.
    #[arg(long, default_value = "constant")]
    pub latency_dist: String,
    /// Faults, comma-separated: partition (Maelstrom's), and Faultline's
    /// kill, pause, loss, delay (with duplication); default none.
    #[arg(long, default_value = "none")]
    pub nemesis: String,
    /// Seconds between faults.
    #[arg(long, default_value_t = 10.0)]
    pub nemesis_interval: f64,
    /// Broadcast topology: grid, line, total, tree2, tree3, tree4.
    #[arg(long, default_value = "grid")]
    pub topology: String,
    /// Share of operations that must succeed: `total` or a fraction.
    #[arg(long)]
    pub availability: Option<String>,
    /// Copy your nodes' stderr to the console.
    #[arg(long)]
    pub log_stderr: bool,
    /// Keys (lin-kv, txn, kafka).
    #[arg(long, default_value_t = 6)]
    pub key_count: u32,
    /// Writes per key before a fresh key replaces it (lin-kv, txn).
    #[arg(long, default_value_t = 16)]
    pub max_writes_per_key: u32,
    /// Maelstrom's consistency models for the txn workloads: taken, not yet
    /// used (transactions are checked as strict serializable, the strongest).
    #[arg(long)]
    pub consistency_models: Option<String>,
    /// Maelstrom's longest transaction: taken, not used (ours are 1-4 ops).
    #[arg(long)]
    pub max_txn_length: Option<u32>,
    /// Maelstrom's logging of sent messages: taken, not needed (every message
    /// is sampled into messages.jsonl).
    #[arg(long)]
    pub log_net_send: bool,
    /// As `--log-net-send`, for received messages.
    #[arg(long)]
    pub log_net_recv: bool,
    /// Seconds of calm after the last fault, before the final reads.
    #[arg(long, default_value_t = 5.0)]
    pub recovery: f64,
    /// Client timeout per operation, ms.
    #[arg(long, default_value_t = 5000)]
    pub op_timeout_ms: u64,
    /// Seed of every random choice (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Root of the run store.
    #[arg(long, default_value = "store")]
    pub store: std::path::PathBuf,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// `harness maelstrom bench` flags.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A node that answers `echo` (e.g. `target/release/examples/maelstrom_node echo`).
    #[arg(long)]
    pub bin: String,
    /// Number of nodes.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub node_count: u16,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 200)]
    pub concurrency: u32,
    /// Seconds of load.
    #[arg(long, default_value_t = 5.0)]
    pub time_limit: f64,
}

/// Faultline's name for a Maelstrom workload.
pub fn workload_name(maelstrom: &str) -> &str {
    match maelstrom {
        "lin-kv" => "kv",
        "txn-list-append" => "txn",
        other => other,
    }
}

/// `Nn` is N clients per node.
fn concurrency(text: &str, nodes: u16) -> Result<u16, String> {
    let parsed = match text.strip_suffix('n') {
        Some(per) => per.parse::<u16>().ok().map(|p| p.saturating_mul(nodes)),
        None => text.parse::<u16>().ok(),
    };
    parsed
        .filter(|&c| c > 0)
        .ok_or_else(|| format!("--concurrency {text}: give a number, or Nn for N per node"))
}

/// Runs `harness maelstrom`.
pub fn command(cmd: &MaelstromCommand) -> ExitCode {
    match cmd {
        MaelstromCommand::Test(args) => test(args),
        MaelstromCommand::Bench(args) => bench(args),
    }
}

fn test(a: &TestArgs) -> ExitCode {
    let concurrency = match concurrency(&a.concurrency, a.node_count) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("harness maelstrom test: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    if a.consistency_models.is_some() || a.max_txn_length.is_some() {
        eprintln!(
            "harness maelstrom test: --consistency-models and --max-txn-length are taken but not used: transactions are checked as strict serializable"
        );
    }
    let bin = a.bin.clone();
    let run = RunArgs {
        workload: workload_name(&a.workload).to_string(),
        target: "maelstrom".into(),
        bin: Some(bin),
        target_config: None,
        reads: "linearizable".into(),
        runtime: "process".into(),
        nodes: Some(a.node_count),
        concurrency,
        rate: Some(a.rate),
        time_limit: a.time_limit,
        nemesis: a.nemesis.clone(),
        nemesis_interval: a.nemesis_interval,
        partitions: "all".into(),
        consensus: "raft".into(),
        shards: 0,
        replicas: 3,
        txn: "2pc".into(),
        byzantine: None,
        bugs: Vec::new(),
        node_args: Vec::new(),
        seed: a.seed,
        store: a.store.clone(),
        keys: a.key_count,
        ops_per_key: a.max_writes_per_key,
        op_timeout_ms: a.op_timeout_ms,
        recovery: a.recovery,
        check_time_limit: 60.0,
        node_bin: None,
        dashboard: None,
        topology: Some(a.topology.clone()),
        latency: a.latency,
        latency_dist: a.latency_dist.clone(),
        availability: a.availability.clone(),
        log_stderr: a.log_stderr,
        quiet: a.quiet,
    };
    super::run::run(&run)
}

fn bench(a: &BenchArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("harness maelstrom bench: {e}");
            return ExitCode::from(EXIT_INTERNAL);
        }
    };
    match rt.block_on(measure(a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("harness maelstrom bench: {e:#}");
            ExitCode::from(EXIT_INTERNAL)
        }
    }
}

/// Starts the nodes, keeps `concurrency` echo requests in flight for the time
/// limit, and prints messages and requests per second with the router's figures.
async fn measure(a: &BenchArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let ids = crate::run::cluster::ids_from(0, a.node_count as usize);
    let router = Router::new(&ids, workloads::Rng::new(1));
    let mut rt = MaelstromRuntime::new(&a.bin, &dir, &ids, router.clone())?;
    for id in &ids {
        rt.start(id).await?;
    }
    let before = router.stats(1)["all"]["send_count"].as_u64().unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..a.concurrency {
        let (router, stop, done, failed, ids) = (
            router.clone(),
            stop.clone(),
            done.clone(),
            failed.clone(),
            ids.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let client = format!("c{}", c + 1);
            let mut i = c as usize;
            while !stop.load(Ordering::Relaxed) {
                let node = &ids[i % ids.len()];
                i += 1;
                let body = json!({"type": "echo", "echo": i});
                match router
                    .request(&client, node, body, Duration::from_secs(5))
                    .await
                {
                    Some(r) if r["type"] == "echo_ok" => done.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(a.time_limit)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let messages = router.stats(1)["all"]["send_count"].as_u64().unwrap_or(0) - before;
    for t in tasks {
        let _ = t.await;
    }
    let _ = rt.teardown().await;
    let ok = done.load(Ordering::Relaxed);
    println!(
        "{} nodes, {} in flight, {:.1} s: {:.0} messages/s, {:.0} echo requests/s ({} failed)",
        a.node_count,
        a.concurrency,
        elapsed,
        messages as f64 / elapsed,
        ok as f64 / elapsed,
        failed.load(Ordering::Relaxed)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A scratch folder for the nodes' logs.
fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("faultline-maelstrom-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maelstrom_flags_map_onto_a_run() {
        assert_eq!(concurrency("2n", 5), Ok(10));
        assert_eq!(concurrency("7", 5), Ok(7));
        assert!(concurrency("0", 5).is_err());
        assert!(concurrency("lots", 5).unwrap_err().contains("Nn"));
        assert_eq!(workload_name("lin-kv"), "kv");
        assert_eq!(workload_name("txn-list-append"), "txn");
        assert_eq!(workload_name("g-set"), "g-set");
    }
}
