//! Starting and stopping a cluster of any target, shared by `run` and `bench`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::Mutex as AsyncMutex;
use workloads::{Endpoint, Rng};

use super::config::{BadInput, TestConfig};
use crate::net::Net;
use crate::runtime::{NodeAddrs, Runtime};
use crate::targets::{Start, Target};

/// A running cluster: the system under test, its nodes and the network between them.
pub struct Cluster {
    /// What runs on the nodes.
    pub target: &'static dyn Target,
    /// Starts, kills and pauses the nodes (shared with the nemesis).
    pub runtime: Arc<AsyncMutex<Box<dyn Runtime>>>,
    /// The link proxies (or router).
    pub net: Arc<Net>,
    /// Where each node is reached.
    pub nodes: Vec<NodeAddrs>,
    /// The application-service instances beside the nodes (the mesh's backends).
    pub instances: Vec<NodeAddrs>,
}

/// `count` node ids numbered from `first` (Maelstrom's start at `n0`).
pub fn ids_from(first: usize, count: usize) -> Vec<String> {
    (first..first + count).map(|i| format!("n{i}")).collect()
}

/// Ids of the instances of `services`, with their service: `api1`, `api2`...
pub fn instance_ids(services: &[(&str, usize)]) -> Vec<(String, String)> {
    services
        .iter()
        .flat_map(|(name, n)| (1..=*n).map(move |i| (name.to_string(), format!("{name}{i}"))))
        .collect()
}

/// Checks what `cfg` asks of its target, before anything starts.
pub fn validate(cfg: &TestConfig) -> Result<&'static dyn Target, BadInput> {
    let target =
        crate::targets::get(&cfg.target).map_err(|e| BadInput(format!("--target: {e}")))?;
    let faults = target.faults();
    if let Some(f) = cfg.nemesis.iter().find(|f| !faults.contains(&f.as_str())) {
        return Err(BadInput(format!(
            "--nemesis {f} does not apply to --target {} (applicable: {})",
            target.name(),
            faults.join(", ")
        )));
    }
    if let Some(a) = &cfg.availability {
        required_availability(a).map_err(BadInput)?;
    }
    if target.name() == "maelstrom" {
        if let Some(t) = &cfg.topology {
            workloads::maelstrom::broadcast::topology(t, &["n1".to_string()])
                .map_err(|e| BadInput(format!("--topology: {e}")))?;
        }
        crate::targets::maelstrom::router::LatencyDist::parse(&cfg.latency_dist)
            .map_err(|e| BadInput(format!("--latency-dist: {e}")))?;
    } else if cfg.topology.is_some() || cfg.latency_ms > 0.0 {
        return Err(BadInput(format!(
            "--topology and --latency shape the Maelstrom router; --target {} has none",
            target.name()
        )));
    }
    let reads = target.reads();
    if !reads.contains(&cfg.reads.as_str()) {
        return Err(BadInput(format!(
            "--reads {} with --target {}: accepted: {}",
            cfg.reads,
            target.name(),
            reads.join(", ")
        )));
    }
    if cfg.bin.is_some() && !target.takes_bin() {
        return Err(BadInput(format!(
            "--bin: --target {} runs no command of yours (targets that do: {})",
            target.name(),
            names_where(|t| t.takes_bin())
        )));
    }
    if cfg.shards > 0 && target.name() != crate::targets::DEFAULT {
        return Err(BadInput(format!(
            "--shards: --target {} is not the builtin system, which alone is sharded here",
            target.name()
        )));
    }
    if cfg.target_config.is_some() && !target.takes_config() {
        return Err(BadInput(format!(
            "--target-config: --target {} takes no configuration file (targets that do: {})",
            target.name(),
            names_where(|t| t.takes_config())
        )));
    }
    for f in &cfg.nemesis {
        let fault = crate::nemesis::get(f).map_err(BadInput)?;
        if !fault.runtimes().contains(&cfg.runtime.as_str()) {
            return Err(BadInput(format!(
                "--nemesis {f} does not work on --runtime {} (it does on: {})",
                cfg.runtime,
                fault.runtimes().join(", ")
            )));
        }
    }
    if cfg.runtime != "process" && cfg.runtime != "docker" {
        return Err(BadInput(format!(
            "--runtime {}: known runtimes are `process` and `docker`",
            cfg.runtime
        )));
    }
    target.validate(cfg).map_err(BadInput)?;
    Ok(target)
}

fn names_where(keep: impl Fn(&dyn Target) -> bool) -> String {
    let names: Vec<&str> = crate::targets::TARGETS
        .iter()
        .filter(|t| keep(**t))
        .map(|t| t.name())
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Starts every node of `target` with a proxy on every link; on failure
/// nothing is left running.
pub async fn start(
    cfg: &TestConfig,
    target: &'static dyn Target,
    bin: &Path,
    dir: &Path,
    rng: &Rng,
    node_args: &[String],
    services: &[(&'static str, usize)],
) -> anyhow::Result<Cluster> {
    let ids = ids_from(target.first_node(), cfg.nodes);
    let instance_ids = instance_ids(services);
    // The protocol goes with every cluster a config starts (runs, and the
    // bench's failover trials alike), ahead of the caller's arguments.
    let mut args = Vec::new();
    if cfg.consensus != "raft" {
        args.push(format!("--consensus={}", cfg.consensus));
    }
    if cfg.shards > 0 {
        args.push(format!("--shards={}", cfg.shards));
        args.push(format!("--replicas={}", cfg.replicas));
        args.push(format!("--txn={}", cfg.txn));
    }
    args.extend(node_args.iter().cloned());
    let node_args = &args[..];
    // Ports held until the nodes bind them, so no other process takes one.
    let mut reserved = crate::runtime::ports::Reserved::new();
    let mut ports = Vec::new();
    for _ in &ids {
        ports.push((reserved.take()?, reserved.take()?, reserved.take()?));
    }
    let mut instance_ports = Vec::new();
    for _ in &instance_ids {
        instance_ports.push(reserved.take()?);
    }
    reserved.release();
    let (mut runtime, net) = target
        .start(Start {
            cfg,
            bin,
            dir,
            ids: &ids,
            ports: &ports,
            rng,
            node_args,
            instances: &instance_ids,
            instance_ports: &instance_ports,
        })
        .await
        .with_context(|| format!("cannot start the {} cluster", target.name()))?;
    for id in ids.iter().chain(instance_ids.iter().map(|(_, id)| id)) {
        if let Err(e) = runtime.start(id).await {
            let _ = runtime.teardown().await;
            return Err(e);
        }
    }
    let (instances, nodes) = runtime
        .nodes()
        .into_iter()
        .partition(|n| instance_ids.iter().any(|(_, id)| *id == n.id));
    Ok(Cluster {
        target,
        runtime: Arc::new(AsyncMutex::new(runtime)),
        net: Arc::new(net),
        nodes,
        instances,
    })
}

impl Cluster {
    /// The nodes as clients see them.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.nodes
            .iter()
            .map(|n| Endpoint {
                id: n.id.clone(),
                url: n.client_url.clone(),
            })
            .collect()
    }

    /// Stops every node and releases what the runtime holds.
    pub async fn teardown(&self) -> anyhow::Result<()> {
        self.runtime.lock().await.teardown().await
    }
}

/// The share of operations `--availability` asks to succeed: `total` is all
/// of them, else a fraction in (0, 1].
pub fn required_availability(text: &str) -> Result<f64, String> {
    if text == "total" {
        return Ok(1.0);
    }
    match text.parse::<f64>() {
        Ok(x) if x > 0.0 && x <= 1.0 => Ok(x),
        _ => Err(format!(
            "--availability {text}: give `total` or a fraction between 0 and 1, such as 0.99"
        )),
    }
}
