//! The run itself: clients driven by the workload's generator, the nemesis on
//! its schedule, the recorder writing the history; then heal, recover and the
//! final ops (a read of every key) through fresh processes.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::time::Instant;
use workloads::{Completion, Generator, Rng, WorkloadOptions};

use super::cluster::Cluster;
use super::config::TestConfig;
use super::recorder::{Recorder, Summary};
use crate::nemesis::{self, Ctx};

struct Shared {
    generator: Mutex<(Box<dyn Generator>, Rng)>,
    client: Arc<dyn workloads::Client>,
    recorder: Recorder,
    next_process: AtomicU64,
    stop: AtomicBool,
}

/// What a driven run leaves for the verdict (the history is on disk).
pub struct Drove {
    /// Final ops run.
    pub finals: usize,
    /// Final ops never answered `ok`.
    pub unanswered: usize,
    /// The recorder's figures.
    pub summary: Summary,
    /// Faults the nemesis injected.
    pub faults: u64,
    /// Facts from the runtime.
    pub runtime: Value,
}

/// How long the final reads may take together, at least.
const FINAL_BUDGET: Duration = Duration::from_secs(30);

/// Drives the workload against `cluster` while the nemesis breaks it, heals,
/// waits for recovery and runs the final ops; answers what the verdict needs.
pub async fn drive(
    cfg: &TestConfig,
    dir: &Path,
    workload: &dyn workloads::Workload,
    cluster: &Cluster,
    http: reqwest::Client,
    root_rng: Rng,
    quiet: bool,
) -> anyhow::Result<Drove> {
    let nodes = &cluster.nodes;
    let target = cluster
        .target
        .ready(cfg, &http, nodes, &cluster.net)
        .await?;
    let options = WorkloadOptions {
        keys: cfg.keys,
        ops_per_key: cfg.ops_per_key,
        op_timeout: Duration::from_millis(cfg.op_timeout_ms),
        target,
        nodes: nodes.len(),
    };
    let endpoints = cluster.endpoints();
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
        runtime: cluster.runtime.clone(),
        net: cluster.net.clone(),
        recorder: recorder.clone(),
        nodes: nodes.iter().chain(&cluster.instances).cloned().collect(),
        instances: cluster.instances.iter().map(|n| n.id.clone()).collect(),
        http: http.clone(),
        in_force: in_force.clone(),
        shapes: cfg.partitions.clone(),
        target: cluster.target,
        cfg: cfg.clone(),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let nemesis = tokio::spawn(nemesis::run(
        ctx.clone(),
        cfg.nemesis.clone(),
        Duration::from_secs_f64(cfg.nemesis_interval),
        root_rng.fork(2),
        stop_rx,
    ));
    let progress = super::progress::start(
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
                    // A slot past the test (or past any clock, for a tiny rate) ends it.
                    let offset =
                        Duration::try_from_secs_f64((k * c as u64 + i as u64) as f64 / rate);
                    let Some(due) = offset.ok().and_then(|o| start.checked_add(o)) else {
                        break;
                    };
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
    // A cluster that never answers again (a planted bug can wedge one) must
    // not hold the run up for ever: the final reads share one budget.
    let op_timeout = Duration::from_millis(cfg.op_timeout_ms);
    let final_deadline = tokio::time::Instant::now() + FINAL_BUDGET.max(op_timeout * 20);
    let mut final_tasks = Vec::new();
    for chunk in finals.chunks(finals.len().div_ceil(cfg.concurrency.max(1)).max(1)) {
        let chunk = chunk.to_vec();
        let shared = shared.clone();
        final_tasks.push(tokio::spawn(async move {
            let mut unanswered = 0;
            for op in chunk {
                let mut done = false;
                for _ in 0..20 {
                    if tokio::time::Instant::now() >= final_deadline {
                        break;
                    }
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

    Ok(Drove {
        finals: finals.len(),
        unanswered,
        summary,
        faults,
        runtime: runtime_facts,
    })
}
