//! `harness run`: start a cluster, drive the workload's clients while the nemesis
//! breaks things, heal, let the cluster recover, run the final reads, check the
//! history and store the run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use checker::{CheckOptions, Validity};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex as AsyncMutex;
use tokio::time::Instant;
use workloads::{Completion, Endpoint, Generator, Rng, WorkloadOptions};

use crate::nemesis::{self, Ctx};
use crate::net::{proxy::Announce, Net};
use crate::recorder::Recorder;
use crate::runtime::docker::{DockerPlan, DockerRuntime};
use crate::runtime::process::{NodePlan, ProcessRuntime};
use crate::runtime::{node_binary, Runtime};
use crate::store;

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
    /// The command of each Maelstrom node (`--target maelstrom`).
    #[serde(default)]
    pub maelstrom_bin: Option<String>,
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
    /// Planted bugs passed to the nodes.
    pub bugs: Vec<String>,
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
    /// The command line that replays this run.
    pub command: String,
}

fn linearizable() -> String {
    "linearizable".into()
}

/// What a run produced.
pub struct RunOutcome {
    /// The merged verdict.
    pub valid: Validity,
    /// The run folder.
    pub dir: PathBuf,
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
async fn interrupted() {
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

struct Shared {
    generator: Mutex<(Box<dyn Generator>, Rng)>,
    client: Arc<dyn workloads::Client>,
    recorder: Recorder,
    next_process: AtomicU64,
    stop: AtomicBool,
}

/// Runs a whole test.
pub async fn run(cfg: TestConfig, quiet: bool) -> anyhow::Result<RunOutcome> {
    let workload = workloads::workload(&cfg.workload).map_err(BadInput)?;
    let faults =
        crate::targets::faults(&cfg.target).map_err(|e| BadInput(format!("--target: {e}")))?;
    if let Some(f) = cfg.nemesis.iter().find(|f| !faults.contains(&f.as_str())) {
        bail!(BadInput(format!(
            "--nemesis {f} does not apply to --target {} (applicable: {})",
            cfg.target,
            faults.join(", ")
        )));
    }
    let reads = crate::targets::reads(&cfg.target);
    if !reads.contains(&cfg.reads.as_str()) {
        bail!(BadInput(format!(
            "--reads {} with --target {}: accepted: {}",
            cfg.reads,
            cfg.target,
            reads.join(", ")
        )));
    }
    let third_party = cfg.target != "builtin";
    if third_party && (cfg.workload != "kv" || cfg.runtime != "process" || !cfg.bugs.is_empty()) {
        bail!(BadInput(format!(
            "--target {} runs the kv workload on the process runtime, without --bug",
            cfg.target
        )));
    }
    if cfg.runtime != "process" && cfg.runtime != "docker" {
        bail!(BadInput(format!(
            "--runtime {}: known runtimes are `process` and `docker`",
            cfg.runtime
        )));
    }
    let bin = binary(&cfg, quiet)?;
    if cfg.target == "builtin" {
        check_bugs(&bin, &cfg.bugs)?;
    }

    let dir = store::new_run(&cfg.store, &cfg.workload)?;
    std::fs::write(dir.join("test.json"), serde_json::to_vec_pretty(&cfg)?)?;
    let root_rng = Rng::new(cfg.seed);

    // Ports and proxies: node i reaches node j through the proxy on link i→j.
    let ids: Vec<String> = (1..=cfg.nodes).map(|i| format!("n{i}")).collect();
    let mut reserved = crate::runtime::ports::Reserved::new();
    let mut take = || reserved.take();
    let mut ports = Vec::new();
    for _ in &ids {
        ports.push((take()?, take()?, take()?));
    }
    reserved.release();
    // From here on an interrupt tears the cluster down before the process ends.
    let mut signal = Box::pin(interrupted());
    let node_args = workload.node_args();
    let (runtime, net) = tokio::select! {
        r = start_cluster(&cfg, &bin, &dir, &ids, &ports, &root_rng, &node_args) => r?,
        _ = &mut signal => bail!(Interrupted),
    };
    let nodes = runtime.nodes();
    let runtime = Arc::new(AsyncMutex::new(runtime));
    let net = Arc::new(net);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;

    let result = tokio::select! {
        r = drive(
        &cfg,
        &dir,
        workload.as_ref(),
        &nodes,
        runtime.clone(),
        net.clone(),
        http,
        root_rng,
        quiet,
        ) => r,
        _ = &mut signal => Err(Interrupted.into()),
    };
    let _ = runtime.lock().await.teardown().await;
    let mut valid = result?;
    if cfg.target == "builtin" {
        // After teardown: the Docker runtime copies the node logs out only then.
        valid = valid.merge(add_election_safety(&dir)?);
    }
    store::point_latest(&cfg.store, &dir)?;
    reports::render_run(&dir).context("cannot render report.html")?;
    reports::index::render(&cfg.store).context("cannot render the store index")?;
    Ok(RunOutcome { valid, dir })
}

/// The binary the nodes of `cfg.target` run (built first for the builtin system).
pub(crate) fn binary(cfg: &TestConfig, quiet: bool) -> anyhow::Result<PathBuf> {
    Ok(if cfg.target == "maelstrom" {
        // Nodes run through `sh -c`; the command itself is checked at start.
        match &cfg.maelstrom_bin {
            Some(_) => PathBuf::from("sh"),
            None => bail!(BadInput(
                "--target maelstrom needs --bin 'COMMAND ARGS' for each node".into()
            )),
        }
    } else if cfg.target != "builtin" {
        crate::targets::locate(&cfg.target).map_err(|e| BadInput(e.to_string()))?
    } else if cfg.runtime == "docker" {
        crate::runtime::docker::image::static_binary(cfg.node_bin.as_deref(), quiet)?
    } else {
        node_binary::locate(cfg.node_bin.as_deref(), quiet)?
    })
}

/// Waits until the cluster can take writes; answers how clients reach it.
pub(crate) async fn ready(
    cfg: &TestConfig,
    http: &reqwest::Client,
    nodes: &[crate::runtime::NodeAddrs],
    net: &Net,
) -> anyhow::Result<workloads::Target> {
    if let Some(router) = net.router() {
        // Every node answered `init` when it started.
        return Ok(workloads::Target::Maelstrom(workloads::maelstrom::Link(
            router,
        )));
    }
    let redis_addrs = || -> Vec<String> {
        nodes
            .iter()
            .map(|n| n.client_url.trim_start_matches("redis://").to_string())
            .collect()
    };
    Ok(if cfg.target == "redis" {
        crate::targets::await_redis(&redis_addrs()).await?;
        workloads::Target::Redis {
            replica_reads: cfg.reads == "replica",
            sentinels: None,
        }
    } else if cfg.target == "redis-sentinel" {
        let sentinels = crate::sentinel::sentinels(nodes, net);
        crate::sentinel::await_ready(&redis_addrs(), &sentinels).await?;
        workloads::Target::Redis {
            replica_reads: false,
            sentinels: Some(sentinels),
        }
    } else if cfg.target == "etcd" {
        let urls: Vec<(String, String)> = nodes
            .iter()
            .map(|n| (n.id.clone(), n.client_url.clone()))
            .collect();
        crate::targets::await_etcd(http, &urls, net).await?;
        workloads::Target::Etcd {
            serializable: cfg.reads == "serializable",
        }
    } else {
        await_leader(http, nodes).await?;
        workloads::Target::Builtin
    })
}

fn check_bugs(bin: &std::path::Path, bugs: &[String]) -> anyhow::Result<()> {
    let known = node_binary::bugs(bin)?;
    for b in bugs {
        if !known.iter().any(|(n, _)| n == b) {
            let names: Vec<&str> = known.iter().map(|(n, _)| n.as_str()).collect();
            bail!(BadInput(format!(
                "unknown bug `{b}` (known: {})",
                names.join(", ")
            )));
        }
    }
    Ok(())
}

/// Starts the nodes on the configured runtime with a proxy on every link; on
/// failure nothing is left running.
pub(crate) async fn start_cluster(
    cfg: &TestConfig,
    bin: &std::path::Path,
    dir: &std::path::Path,
    ids: &[String],
    ports: &[(u16, u16, u16)],
    rng: &Rng,
    node_args: &[String],
) -> anyhow::Result<(Box<dyn Runtime>, Net)> {
    let (mut runtime, net): (Box<dyn Runtime>, Net) = if cfg.target == "maelstrom" {
        let router = crate::maelstrom::Router::new(rng.fork(77));
        let command = cfg.maelstrom_bin.clone().unwrap_or_default();
        (
            Box::new(crate::maelstrom::MaelstromRuntime::new(
                &command,
                dir,
                ids,
                router.clone(),
            )?),
            Net::routed(router),
        )
    } else if cfg.target == "etcd" {
        let peers: Vec<(String, Vec<String>)> = ids
            .iter()
            .zip(ports)
            .map(|(id, p)| (id.clone(), vec![format!("127.0.0.1:{}", p.1)]))
            .collect();
        let net = Net::start_announced(&peers, "127.0.0.1", Announce::Header("X-Server-From"), rng)
            .await
            .context("cannot start link proxies")?;
        let at = |id: &str| {
            ids.iter()
                .position(|i| i == id)
                .map_or(ports[0], |i| ports[i])
        };
        let advertised = |id: &str| {
            ids.iter()
                .find(|o| *o != id)
                .and_then(|o| net.port(o, id))
                .unwrap_or(at(id).1)
        };
        let launches =
            crate::targets::etcd_launches(dir, ids, |id| at(id).0, |id| at(id).1, advertised);
        (
            Box::new(ProcessRuntime::from_launches(bin.to_path_buf(), launches)?),
            net,
        )
    } else if cfg.target == "redis-sentinel" {
        let (rt, net) = crate::sentinel::start(bin, dir, ids, ports, rng).await?;
        (Box::new(rt), net)
    } else if cfg.target == "redis" {
        // Each replica reaches the primary through its own byte-stream proxy.
        let addrs: Vec<(String, String)> = ids
            .iter()
            .zip(ports)
            .map(|(id, p)| (id.clone(), format!("127.0.0.1:{}", p.0)))
            .collect();
        let net = Net::start_streams(&addrs, "127.0.0.1", rng)
            .await
            .context("cannot start link proxies")?;
        let port = |id: &str| ids.iter().position(|i| i == id).map_or(0, |i| ports[i].0);
        let launches =
            crate::targets::redis_launches(dir, ids, port, |id| net.port(id, &ids[0]).unwrap_or(0));
        (
            Box::new(ProcessRuntime::from_launches(bin.to_path_buf(), launches)?),
            net,
        )
    } else if cfg.runtime == "docker" {
        let plans = ids
            .iter()
            .zip(ports)
            .map(|(id, p)| DockerPlan {
                id: id.clone(),
                client: p.0,
                peer: p.1,
                admin: p.2,
            })
            .collect();
        let (rt, net) = DockerRuntime::create(dir, bin, plans, &cfg.bugs, node_args, rng).await?;
        (Box::new(rt), net)
    } else {
        let peer_addrs: Vec<(String, String)> = ids
            .iter()
            .zip(ports)
            .map(|(id, p)| (id.clone(), format!("127.0.0.1:{}", p.1)))
            .collect();
        let net = Net::start(&peer_addrs, "127.0.0.1", rng)
            .await
            .context("cannot start link proxies")?;
        let plans = ids
            .iter()
            .zip(ports)
            .map(|(id, p)| NodePlan {
                id: id.clone(),
                client: p.0,
                peer: p.1,
                admin: p.2,
                peers: ids
                    .iter()
                    .filter(|o| *o != id)
                    .map(|o| {
                        (
                            o.clone(),
                            format!("127.0.0.1:{}", net.port(id, o).unwrap_or(0)),
                        )
                    })
                    .collect(),
            })
            .collect();
        (
            Box::new(ProcessRuntime::new(
                bin.to_path_buf(),
                dir,
                plans,
                &cfg.bugs,
                node_args,
            )?),
            net,
        )
    };
    for id in ids {
        if let Err(e) = runtime.start(id).await {
            let _ = runtime.teardown().await;
            return Err(e);
        }
    }
    Ok((runtime, net))
}

async fn await_leader(
    http: &reqwest::Client,
    nodes: &[crate::runtime::NodeAddrs],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for n in nodes {
            if let Ok(r) = http
                .get(format!("{}/cluster/status", n.client_url))
                .send()
                .await
            {
                if let Ok(s) = r.json::<serde_json::Value>().await {
                    if s["role"] == "leader" {
                        return Ok(());
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the cluster elected no leader within 30 s (see nodes/*/node.log)")
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    cfg: &TestConfig,
    dir: &std::path::Path,
    workload: &dyn workloads::Workload,
    nodes: &[crate::runtime::NodeAddrs],
    runtime: Arc<AsyncMutex<Box<dyn Runtime>>>,
    net: Arc<Net>,
    http: reqwest::Client,
    root_rng: Rng,
    quiet: bool,
) -> anyhow::Result<Validity> {
    let target = ready(cfg, &http, nodes, &net).await?;
    let options = WorkloadOptions {
        keys: cfg.keys,
        ops_per_key: cfg.ops_per_key,
        op_timeout: Duration::from_millis(cfg.op_timeout_ms),
        target,
    };
    let endpoints: Vec<Endpoint> = nodes
        .iter()
        .map(|n| Endpoint {
            id: n.id.clone(),
            url: n.client_url.clone(),
        })
        .collect();
    let start = Instant::now();
    let (recorder, writer) = Recorder::start(&dir.join("history.jsonl"), start)?;
    let shared = Arc::new(Shared {
        generator: Mutex::new((workload.generator(&options), root_rng.fork(1))),
        client: workload.client(endpoints, &options),
        recorder: recorder.clone(),
        next_process: AtomicU64::new(cfg.concurrency as u64),
        stop: AtomicBool::new(false),
    });
    let in_force = Arc::new(Mutex::new(String::new()));
    let ctx = Arc::new(Ctx {
        runtime,
        net: net.clone(),
        recorder: recorder.clone(),
        nodes: nodes.to_vec(),
        http: http.clone(),
        in_force: in_force.clone(),
        shapes: cfg.partitions.clone(),
        target: cfg.target.clone(),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let nemesis = tokio::spawn(nemesis::run(
        ctx.clone(),
        cfg.nemesis.clone(),
        Duration::from_secs_f64(cfg.nemesis_interval),
        root_rng.fork(2),
        stop_rx,
    ));
    let progress = crate::progress::start(
        recorder.live.clone(),
        in_force.clone(),
        cfg.time_limit,
        quiet,
    );

    let deadline = start + Duration::from_secs_f64(cfg.time_limit);
    let mut workers = Vec::new();
    for i in 0..cfg.concurrency {
        let shared = shared.clone();
        let rate = cfg.rate;
        let c = cfg.concurrency;
        workers.push(tokio::spawn(async move {
            let mut process = i as u64;
            let mut session = shared.client.open(process);
            let mut k: u64 = 0;
            while Instant::now() < deadline && !shared.stop.load(Ordering::Relaxed) {
                if let Some(rate) = rate {
                    // Open loop: this worker's slots are every c/rate seconds.
                    let due =
                        start + Duration::from_secs_f64((k * c as u64 + i as u64) as f64 / rate);
                    k += 1;
                    if due >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                }
                let op = {
                    let mut g = shared.generator.lock().unwrap_or_else(|e| e.into_inner());
                    let (gen, rng) = &mut *g;
                    gen.next(process, rng)
                };
                let Some(op) = op else { break };
                let invoked = shared.recorder.invoke(process, &op);
                let (done, node) = session.invoke(&op).await;
                shared.recorder.complete(process, &op, &done, node, invoked);
                shared
                    .generator
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .0
                    .completed(process, &op, &done);
                if matches!(done, Completion::Info(_)) {
                    // An indeterminate op may still happen: this process retires.
                    process = shared.next_process.fetch_add(1, Ordering::Relaxed);
                    session = shared.client.open(process);
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let _ = stop_tx.send(true);
    let faults = nemesis.await.context("nemesis task")??;
    ctx.heal_all().await?;
    tokio::time::sleep(Duration::from_secs_f64(cfg.recovery)).await;

    // Final reads: every key, through fresh processes, retried until answered.
    let finals = shared
        .generator
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .0
        .final_ops();
    let mut final_tasks = Vec::new();
    for chunk in finals.chunks(finals.len().div_ceil(cfg.concurrency.max(1)).max(1)) {
        let chunk = chunk.to_vec();
        let shared = shared.clone();
        final_tasks.push(tokio::spawn(async move {
            let mut unanswered = 0;
            for op in chunk {
                let mut done = false;
                for _ in 0..20 {
                    let process = shared.next_process.fetch_add(1, Ordering::Relaxed);
                    let mut session = shared.client.open(process);
                    let invoked = shared.recorder.invoke(process, &op);
                    let (c, node) = session.invoke(&op).await;
                    shared.recorder.complete(process, &op, &c, node, invoked);
                    if matches!(c, Completion::Ok(_)) {
                        done = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if !done {
                    unanswered += 1;
                }
            }
            unanswered
        }));
    }
    let mut unanswered = 0;
    for t in final_tasks {
        unanswered += t.await.unwrap_or(0);
    }
    let runtime_facts = ctx.runtime.lock().await.describe();
    drop(shared);
    drop(ctx);
    drop(recorder);
    progress.finish();
    let summary = writer.await.context("history writer")??;

    // Check.
    let history = checker::format::read_file(&dir.join("history.jsonl"), checker::Format::Jsonl)?;
    let options = CheckOptions {
        time_limit: Some(Duration::from_secs_f64(cfg.check_time_limit)),
        ..CheckOptions::default()
    };
    let checked = workload
        .check(&history, &options)
        .map_err(anyhow::Error::msg)?;
    let mut valid = checked.valid;
    let mut checkers = checked.checkers;
    let mut final_reads = json!({"valid": true, "keys": finals.len(), "unanswered": unanswered});
    if unanswered > 0 {
        // After healing, every key must be readable: a cluster that never recovers is a failure.
        final_reads["valid"] = json!(false);
        valid = valid.merge(Validity::Invalid);
    }
    checkers.insert("final-reads".into(), final_reads);
    checkers.insert(
        "stats".into(),
        json!({"valid": true, "by_f": summary.stats, "history": history.stats}),
    );
    checkers.insert(
        "perf".into(),
        json!({
            "valid": true,
            "latency_ms": summary.latency_ms,
            "throughput": summary.throughput,
            "availability": summary.availability,
            "ok_per_second": summary.ok_per_second,
        }),
    );
    let results = json!({
        "valid": valid,
        "checkers": checkers,
        "faults": faults,
        "nemesis_events": summary.nemesis_events,
        "frames_dropped": net.dropped(),
        "packets_dropped": net.packets_dropped(),
        "runtime": runtime_facts,
        "seed": cfg.seed,
    });
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    Ok(valid)
}

/// Adds the `election-safety` verdict (from the node logs) to results.json
/// and answers it; valid when there are no logs to read.
fn add_election_safety(dir: &Path) -> anyhow::Result<Validity> {
    let Some(verdict) = crate::election_safety::check(dir) else {
        return Ok(Validity::Valid);
    };
    let path = dir.join("results.json");
    let mut results: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    let split = verdict["valid"] == false;
    results["checkers"]["election-safety"] = verdict;
    if split {
        results["valid"] = json!(Validity::Invalid);
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&results)?)?;
    Ok(if split {
        Validity::Invalid
    } else {
        Validity::Valid
    })
}
