//! Target `builtin`: Faultline's own node (`faultline-node`), on local
//! processes or in Docker containers, every workload and planted bug.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::time::Instant;
use workloads::BoxFut;

use super::{Start, Started, Target};

/// The protocols `--consensus` picks from (faultline-node's own list), with
/// what each is, for `harness list`.
pub const PROTOCOLS: &[(&str, &str)] = &[
    (
        "raft",
        "Raft: pre-vote, check-quorum, snapshots, membership changes (default)",
    ),
    (
        "paxos",
        "Multi-Paxos: ballots, one phase 1 per leadership, pipelined phase 2, fixed members",
    ),
    (
        "pbft",
        "PBFT: 3f+1 replicas (4 by default) tolerate f Byzantine ones; clients need f+1 matching replies",
    ),
];
use crate::net::Net;
use crate::run::{BadInput, TestConfig};
use crate::runtime::docker::{DockerPlan, DockerRuntime};
use crate::runtime::process::{Launch, NodePlan, ProcessRuntime};
use crate::runtime::{node_binary, NodeAddrs, Runtime};

/// How long one node may take to say whether it leads; a paused or cut-off
/// node must not hold up the nemesis.
const ASK: Duration = Duration::from_secs(1);

/// The lease a mesh instance registers with: it drops out of the registry this
/// long after it stops renewing.
const INSTANCE_LEASE_MS: u64 = 2_000;

/// The Faultline reference system.
pub struct Builtin;

impl Target for Builtin {
    fn name(&self) -> &'static str {
        "builtin"
    }

    fn about(&self) -> &'static str {
        "the Faultline reference system (faultline-node), every workload"
    }

    fn faults(&self) -> &'static [&'static str] {
        &[
            "partition",
            "kill",
            "pause",
            "clock",
            "clock-bump",
            "clock-strobe",
            "delay",
            "loss",
            "replay",
            "collide",
            "comeback",
            "membership",
            "orphan-change",
            "lose-unsynced",
            "slow-disk",
            "corrupt",
            "byzantine",
            "brownout",
            "crash-points",
        ]
    }

    fn takes_node_args(&self) -> bool {
        true
    }

    fn validate(&self, cfg: &TestConfig) -> Result<(), String> {
        if super::maelstrom::ONLY_HERE.contains(&cfg.workload.as_str()) {
            return Err(format!(
                "--workload {} speaks Maelstrom's protocol: run your node with --target maelstrom --bin NODE (or `harness maelstrom test -w {} --bin NODE`)",
                cfg.workload, cfg.workload
            ));
        }
        if !PROTOCOLS.iter().any(|(p, _)| *p == cfg.consensus) {
            let known: Vec<&str> = PROTOCOLS.iter().map(|(p, _)| *p).collect();
            return Err(format!(
                "--consensus {}: known: {}",
                cfg.consensus,
                known.join(", ")
            ));
        }
        if cfg.consensus != "raft" {
            if let Some(f) = cfg
                .nemesis
                .iter()
                .find(|f| crate::nemesis::CHANGE_MEMBERS.contains(&f.as_str()))
            {
                return Err(format!(
                    "--nemesis {f} changes membership, which only --consensus raft supports"
                ));
            }
        }
        if cfg.txn != "2pc" && cfg.txn != "3pc" {
            return Err(format!("--txn {}: known: 2pc, 3pc", cfg.txn));
        }
        if cfg.txn == "3pc" && cfg.shards == 0 {
            return Err("--txn 3pc needs --shards (it commits across shards)".into());
        }
        if cfg.shards == 0
            && cfg.workload != "saga"
            && cfg.nemesis.iter().any(|f| f == "crash-points")
        {
            return Err("--nemesis crash-points needs --shards or --workload saga: the crash points are in the coordinator of transactions across shards and in the saga orchestrator".into());
        }
        if cfg.consensus == "pbft" && matches!(cfg.workload.as_str(), "saga") {
            return Err("--workload saga needs --consensus raft or paxos: the orchestrator proposes from one node, which PBFT's clients may not".into());
        }
        if cfg.shards > 0 {
            if cfg.consensus == "pbft" {
                return Err("--shards needs --consensus raft or paxos".into());
            }
            if cfg.replicas == 0 || cfg.replicas > cfg.nodes {
                return Err(format!(
                    "--replicas {}: each shard's group needs between 1 and --nodes {} nodes",
                    cfg.replicas, cfg.nodes
                ));
            }
            if let Some(f) = cfg
                .nemesis
                .iter()
                .find(|f| crate::nemesis::CHANGE_MEMBERS.contains(&f.as_str()))
            {
                return Err(format!(
                    "--nemesis {f} changes membership; shard groups have fixed members"
                ));
            }
        }
        if cfg.consensus == "pbft" && cfg.nodes < 4 {
            return Err(format!(
                "--consensus pbft needs at least 4 nodes (n = 3f+1), got --nodes {}",
                cfg.nodes
            ));
        }
        if let Some(b) = &cfg.byzantine {
            if !crate::nemesis::byzantine::BEHAVIOURS.contains(&b.as_str()) {
                return Err(format!(
                    "--byzantine {b}: known: {}",
                    crate::nemesis::byzantine::BEHAVIOURS.join(", ")
                ));
            }
        }
        if cfg.consensus == "pbft" && cfg.nemesis.iter().any(|f| f == "corrupt") {
            return Err("--nemesis corrupt: a PBFT replica refuses damaged files (fail-stop) and does not yet repair from its peers, so damage would only take replicas down one by one until none is left to answer".into());
        }
        let instances = workloads::workload(&cfg.workload)
            .map(|w| !w.services().is_empty())
            .unwrap_or(false);
        if instances && cfg.runtime != "process" {
            return Err(format!(
                "--workload {} starts service instances, which only --runtime process does yet",
                cfg.workload
            ));
        }
        if !instances && cfg.nemesis.iter().any(|f| f == "brownout") {
            return Err(format!(
                "--nemesis brownout needs a workload with service instances (mesh), not {}",
                cfg.workload
            ));
        }
        if cfg.consensus != "pbft" && cfg.nemesis.iter().any(|f| f == "byzantine") {
            return Err(
                "--nemesis byzantine needs --consensus pbft (only PBFT tolerates lying nodes)"
                    .into(),
            );
        }
        Ok(())
    }

    fn binary(&self, cfg: &TestConfig, quiet: bool) -> anyhow::Result<PathBuf> {
        let bin = if cfg.runtime == "docker" {
            crate::runtime::docker::image::static_binary(cfg.node_bin.as_deref(), quiet)?
        } else {
            node_binary::locate(cfg.node_bin.as_deref(), quiet)?
        };
        let known = node_binary::bugs(&bin)?;
        if let Some(b) = cfg
            .bugs
            .iter()
            .find(|b| !known.iter().any(|(n, _)| n == *b))
        {
            let names: Vec<&str> = known.iter().map(|(n, _)| n.as_str()).collect();
            bail!(BadInput(format!(
                "unknown bug `{b}` (known: {})",
                names.join(", ")
            )));
        }
        Ok(bin)
    }

    fn start<'a>(&'a self, s: Start<'a>) -> BoxFut<'a, anyhow::Result<Started>> {
        Box::pin(async move {
            let Start {
                cfg,
                bin,
                dir,
                ids,
                ports,
                rng,
                node_args,
                instances,
                instance_ports,
            } = s;
            if cfg.runtime == "docker" {
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
                let (rt, net) =
                    DockerRuntime::create(dir, bin, plans, &cfg.bugs, node_args, rng).await?;
                return Ok((Box::new(rt) as Box<dyn Runtime>, net));
            }
            let peer_addrs: Vec<(String, String)> = ids
                .iter()
                .zip(ports)
                .map(|(id, p)| (id.clone(), format!("127.0.0.1:{}", p.1)))
                .collect();
            let mut net = Net::start(&peer_addrs, "127.0.0.1", rng)
                .await
                .context("cannot start link proxies")?;
            // Each sidecar reaches each instance through a byte-stream proxy
            // of its own, so partitions and delay hit the mesh's traffic too.
            let instance_addrs: Vec<(String, String)> = instances
                .iter()
                .zip(instance_ports)
                .map(|((_, id), port)| (id.clone(), format!("127.0.0.1:{port}")))
                .collect();
            net.add_stream_links(ids, &instance_addrs, "127.0.0.1", rng)
                .await
                .context("cannot start the mesh's link proxies")?;
            let registry: Vec<String> = ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{}", p.0))
                .collect();
            let mut plans = Vec::new();
            for (id, p) in ids.iter().zip(ports) {
                let mut peers = Vec::new();
                for o in ids.iter().filter(|o| *o != id) {
                    let port = net
                        .port(id, o)
                        .with_context(|| format!("no proxy on the link {id} -> {o}"))?;
                    peers.push((o.clone(), format!("127.0.0.1:{port}")));
                }
                let mut own_args = Vec::new();
                if !instances.is_empty() {
                    own_args.push(format!("--mesh-registry={}", registry.join(",")));
                    for (_, instance) in instances {
                        let port = net
                            .port(id, instance)
                            .with_context(|| format!("no proxy on the link {id} -> {instance}"))?;
                        own_args.push(format!("--mesh-route={instance}=127.0.0.1:{port}"));
                    }
                }
                plans.push(NodePlan {
                    id: id.clone(),
                    client: p.0,
                    peer: p.1,
                    admin: p.2,
                    peers,
                    own_args,
                });
            }
            let mut rt = ProcessRuntime::new(bin.to_path_buf(), dir, plans, &cfg.bugs, node_args)?;
            super::lazy_disks_if_asked(cfg, &mut rt)?;
            let launches = instances
                .iter()
                .zip(instance_ports)
                .map(|((service, id), port)| Launch {
                    id: id.clone(),
                    client_url: format!("http://127.0.0.1:{port}"),
                    dir: dir.join("nodes").join(id),
                    args: vec![
                        format!("--service={service}"),
                        format!("--id={id}"),
                        format!("--client=127.0.0.1:{port}"),
                        format!("--registry={}", registry.join(",")),
                        format!("--lease-ms={INSTANCE_LEASE_MS}"),
                    ],
                    data: None,
                })
                .collect();
            rt.add_launches(launches)?;
            Ok((Box::new(rt) as Box<dyn Runtime>, net))
        })
    }

    fn ready<'a>(
        &'a self,
        cfg: &'a TestConfig,
        http: &'a reqwest::Client,
        nodes: &'a [NodeAddrs],
        _net: &'a Net,
    ) -> BoxFut<'a, anyhow::Result<workloads::Target>> {
        Box::pin(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if self.leader(cfg, http, nodes).await.is_some() {
                    mesh_ready(cfg, http, nodes).await?;
                    return Ok(if cfg.consensus == "pbft" {
                        workloads::Target::Bft {
                            f: (nodes.len() - 1) / 3,
                        }
                    } else {
                        workloads::Target::Builtin
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            bail!("the cluster elected no leader within 30 s (see nodes/*/node.log)")
        })
    }

    /// The first node whose `/cluster/status` says it leads.
    fn leader<'a>(
        &'a self,
        _cfg: &'a TestConfig,
        http: &'a reqwest::Client,
        nodes: &'a [NodeAddrs],
    ) -> BoxFut<'a, Option<String>> {
        Box::pin(async move {
            for n in nodes {
                let status = async {
                    let r = http
                        .get(format!("{}/cluster/status", n.client_url))
                        .timeout(ASK)
                        .send()
                        .await
                        .ok()?;
                    r.json::<Value>().await.ok()
                };
                if status.await.is_some_and(|s| s["role"] == "leader") {
                    return Some(n.id.clone());
                }
            }
            None
        })
    }

    /// From Raft's node logs: `election-safety` (at most one leader per term)
    /// and `membership-agreement` (the newest leader's members hold its
    /// configuration).
    fn after_teardown(&self, dir: &Path) -> Vec<(String, checker::CheckerResult)> {
        let mut logs = Vec::new();
        for entry in std::fs::read_dir(dir.join("nodes"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = entry.file_name().to_string_lossy().into_owned();
            if let Ok(text) = std::fs::read_to_string(entry.path().join("node.log")) {
                logs.push((id, text));
            }
        }
        // Both read Raft's log lines (terms, configurations); a Paxos ballot
        // names its leader, and its membership is fixed.
        let raft = std::fs::read(dir.join("test.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<TestConfig>(&b).ok())
            .is_none_or(|c| c.consensus == "raft");
        if logs.is_empty() || !raft {
            return Vec::new();
        }
        logs.sort();
        vec![
            (
                "election-safety".to_string(),
                checker::election_safety::check_logs(&logs),
            ),
            (
                "membership-agreement".to_string(),
                checker::membership_agreement::check_logs(&logs),
            ),
        ]
    }
}

/// With service instances in the run, waits until every sidecar sees them all
/// (they register once the cluster has a leader).
async fn mesh_ready(
    cfg: &TestConfig,
    http: &reqwest::Client,
    nodes: &[NodeAddrs],
) -> anyhow::Result<()> {
    let services = workloads::workload(&cfg.workload)
        .map(|w| w.services())
        .unwrap_or(&[]);
    let wanted: usize = services.iter().map(|(_, n)| n).sum();
    if wanted == 0 {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Up instances each sidecar sees, the fewest of any.
        let mut seen = usize::MAX;
        for n in nodes {
            let state = async {
                let r = http
                    .get(format!("{}/mesh/state", n.client_url))
                    .timeout(ASK)
                    .send()
                    .await
                    .ok()?;
                r.json::<Value>().await.ok()
            };
            let count = state.await.map_or(0, |s| {
                s["services"].as_object().map_or(0, |m| {
                    m.values()
                        .flat_map(|v| v["instances"].as_array().cloned().unwrap_or_default())
                        .filter(|i| i["up"] == true)
                        .count()
                })
            });
            seen = seen.min(count);
        }
        if seen >= wanted {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the sidecars saw {seen} of {wanted} service instances after 20 s (see nodes/*/node.log)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
