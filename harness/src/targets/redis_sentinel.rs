//! Target `redis-sentinel`: Redis with Sentinel failover. n1 starts as the
//! primary and every other node replicates it; a sentinel beside every node
//! watches the primary and, when a majority of sentinels lose it, promotes a
//! replica. Replication is asynchronous and the old primary keeps accepting
//! writes while it is cut off, so writes it acknowledges in that window are
//! lost when it rejoins as a replica: what the harness must find.
//!
//! Redis and Sentinel announce one address per node and discover each other
//! through those, so per-link proxies by address cannot work. Instead every
//! node binds (and connects from) its own loopback address, each announced
//! address is a proxy that learns the sender from the connection's source
//! address, and partitions cut Redis and Sentinel traffic alike. The sentinels
//! are the control plane: kills and pauses hit the Redis servers only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use workloads::redis::{Reply, Sentinels, MASTER};
use workloads::BoxFut;

use super::redis::{addresses, await_redis, command};
use super::{Start, Started, Target};
use crate::net::{proxy::Announce, Net};
use crate::run::TestConfig;
use crate::runtime::process::{Launch, ProcessRuntime};
use crate::runtime::{NodeAddrs, Runtime};

/// Redis with Sentinel failover.
pub struct RedisSentinel;

impl Target for RedisSentinel {
    fn name(&self) -> &'static str {
        "redis-sentinel"
    }

    fn about(&self) -> &'static str {
        "Debian's redis-server with a sentinel beside each node: n1 starts as primary, the sentinels fail over when a majority lose it; nodes bind their own loopback addresses and all Redis and Sentinel traffic between them crosses source-address proxies; clients ask their node's sentinel for the primary; kill and pause hit the servers"
    }

    fn faults(&self) -> &'static [&'static str] {
        &["partition", "kill", "pause", "delay"]
    }

    fn binary(&self, _cfg: &TestConfig, _quiet: bool) -> anyhow::Result<PathBuf> {
        super::on_path("redis-server", "redis-server", self.name())
    }

    fn start<'a>(&'a self, s: Start<'a>) -> BoxFut<'a, anyhow::Result<Started>> {
        Box::pin(async move {
            let (rt, net) = start(s.bin, s.dir, s.ids, s.ports, s.rng).await?;
            Ok((Box::new(rt) as Box<dyn Runtime>, net))
        })
    }

    fn ready<'a>(
        &'a self,
        _cfg: &'a TestConfig,
        _http: &'a reqwest::Client,
        nodes: &'a [NodeAddrs],
        net: &'a Net,
    ) -> BoxFut<'a, anyhow::Result<workloads::Target>> {
        Box::pin(async move {
            let sentinels = sentinels(nodes, net);
            await_ready(&addresses(nodes), &sentinels).await?;
            Ok(workloads::Target::Redis {
                replica_reads: false,
                sentinels: Some(sentinels),
            })
        })
    }

    /// The first node whose Redis says it is a primary.
    fn leader<'a>(
        &'a self,
        _cfg: &'a TestConfig,
        _http: &'a reqwest::Client,
        nodes: &'a [NodeAddrs],
    ) -> BoxFut<'a, Option<String>> {
        Box::pin(async move { primaries(nodes).await.into_iter().next() })
    }
}

/// Node `i`'s own loopback address (`i` from 0): it binds it and connects from it.
pub fn node_ip(i: usize) -> String {
    format!("127.0.100.{}", i + 1)
}

/// Where each service of a node listens and is announced.
struct Plan {
    id: String,
    ip: String,
    redis: u16,
    sentinel: u16,
    /// Proxy ports announced for this node's Redis and its sentinel.
    redis_public: u16,
    sentinel_public: u16,
}

/// The Redis servers of a run, with their sentinels running beside them.
pub struct SentinelRuntime {
    servers: ProcessRuntime,
    sentinels: ProcessRuntime,
}

/// Starts the proxies and lays out the servers and sentinels for `ids`;
/// `ports[i]` gives node i its Redis and Sentinel ports.
async fn start(
    bin: &Path,
    dir: &Path,
    ids: &[String],
    ports: &[(u16, u16, u16)],
    rng: &workloads::Rng,
) -> anyhow::Result<(SentinelRuntime, Net)> {
    let addrs: Vec<(String, Vec<String>)> = ids
        .iter()
        .zip(ports)
        .enumerate()
        .map(|(i, (id, p))| {
            let ip = node_ip(i);
            (
                id.clone(),
                vec![format!("{ip}:{}", p.0), format!("{ip}:{}", p.1)],
            )
        })
        .collect();
    let net = Net::start_announced(&addrs, "127.0.0.1", Announce::SourceIp, rng)
        .await
        .context("cannot start link proxies")?;
    let plans: Vec<Plan> = ids
        .iter()
        .zip(ports)
        .enumerate()
        .map(|(i, (id, p))| {
            net.learn_id(&node_ip(i), id);
            let public = net.inbound(id);
            Plan {
                id: id.clone(),
                ip: node_ip(i),
                redis: p.0,
                sentinel: p.1,
                redis_public: public.first().copied().unwrap_or(0),
                sentinel_public: public.get(1).copied().unwrap_or(0),
            }
        })
        .collect();
    let primary = plans.first().map_or(0, |p| p.redis_public);
    let quorum = ids.len() / 2 + 1;
    let mut servers = Vec::new();
    let mut sentinels = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let node_dir = dir.join("nodes").join(&plan.id);
        std::fs::create_dir_all(&node_dir)?;
        let mut conf = format!(
            "port {}\nbind {ip}\nbind-source-addr {ip}\nprotected-mode no\ndir {}\n\
             save \"\"\nappendonly yes\nappendfsync always\n\
             repl-timeout 5\nrepl-ping-replica-period 1\n\
             replica-announce-ip 127.0.0.1\nreplica-announce-port {}\n",
            plan.redis,
            node_dir.display(),
            plan.redis_public,
            ip = plan.ip,
        );
        if i > 0 {
            conf.push_str(&format!("replicaof 127.0.0.1 {primary}\n"));
        }
        let path = node_dir.join("redis.conf");
        std::fs::write(&path, conf).with_context(|| format!("cannot write {}", path.display()))?;
        servers.push(Launch {
            id: plan.id.clone(),
            client_url: format!("redis://{}:{}", plan.ip, plan.redis),
            dir: node_dir.clone(),
            args: vec![path.display().to_string()],
            data: None,
        });

        let sentinel_dir = node_dir.join("sentinel");
        std::fs::create_dir_all(&sentinel_dir)?;
        let conf = format!(
            "port {}\nbind {ip}\nbind-source-addr {ip}\nprotected-mode no\ndir {}\n\
             sentinel announce-ip 127.0.0.1\nsentinel announce-port {}\n\
             sentinel monitor {MASTER} 127.0.0.1 {primary} {quorum}\n\
             sentinel down-after-milliseconds {MASTER} 1000\n\
             sentinel failover-timeout {MASTER} 4000\n\
             sentinel parallel-syncs {MASTER} 1\n",
            plan.sentinel,
            sentinel_dir.display(),
            plan.sentinel_public,
            ip = plan.ip,
        );
        let path = sentinel_dir.join("sentinel.conf");
        std::fs::write(&path, conf).with_context(|| format!("cannot write {}", path.display()))?;
        sentinels.push(Launch {
            id: plan.id.clone(),
            client_url: format!("{}:{}", plan.ip, plan.sentinel),
            dir: sentinel_dir,
            args: vec![path.display().to_string(), "--sentinel".into()],
            data: None,
        });
    }
    let runtime = SentinelRuntime {
        servers: ProcessRuntime::from_launches(bin.to_path_buf(), servers)?,
        sentinels: ProcessRuntime::from_launches(bin.to_path_buf(), sentinels)?,
    };
    Ok((runtime, net))
}

/// How clients find the primary: each node's sentinel (its `admin_url`,
/// see [`SentinelRuntime`]), and which node each announced Redis address is.
fn sentinels(nodes: &[NodeAddrs], net: &Net) -> Sentinels {
    let addrs = nodes.iter().map(|n| n.admin_url.clone()).collect();
    let announced = nodes
        .iter()
        .filter_map(|n| {
            let port = net.inbound(&n.id).first().copied()?;
            Some((format!("127.0.0.1:{port}"), n.id.clone()))
        })
        .collect();
    Sentinels { addrs, announced }
}

impl Runtime for SentinelRuntime {
    /// The servers, each with its sentinel's `host:port` as the admin address.
    fn nodes(&self) -> Vec<NodeAddrs> {
        let sentinels = self.sentinels.nodes();
        self.servers
            .nodes()
            .into_iter()
            .zip(sentinels)
            .map(|(mut n, s)| {
                n.admin_url = s.client_url;
                n
            })
            .collect()
    }

    fn start<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.servers.start(id).await?;
            // A no-op once the node's sentinel runs: restarts are the server's.
            self.sentinels.start(id).await
        })
    }

    fn kill<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>> {
        self.servers.kill(id)
    }

    fn pause<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>> {
        self.servers.pause(id)
    }

    fn resume<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>> {
        self.servers.resume(id)
    }

    fn teardown(&mut self) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            self.sentinels.teardown().await?;
            self.servers.teardown().await
        })
    }
}

/// Waits until every replica is linked to the primary and every sentinel
/// sees the primary, all replicas and all other sentinels.
async fn await_ready(servers: &[String], sentinels: &Sentinels) -> anyhow::Result<()> {
    await_redis(servers).await?;
    let n = servers.len();
    let deadline = Instant::now() + Duration::from_secs(30);
    'poll: while Instant::now() < deadline {
        for s in &sentinels.addrs {
            let fields = match command(s, &[b"SENTINEL", b"MASTER", MASTER.as_bytes()]).await {
                Some(Reply::Array(items)) => pairs(&items),
                _ => BTreeMap::new(),
            };
            let count = |k: &str| fields.get(k).and_then(|v| v.parse::<usize>().ok());
            if count("num-slaves") != Some(n - 1) || count("num-other-sentinels") != Some(n - 1) {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue 'poll;
            }
        }
        return Ok(());
    }
    bail!(
        "sentinels did not all see the primary, its {} replicas and each other within 30 s \
         (see nodes/*/sentinel/node.log)",
        n - 1
    )
}

/// A flat array of name, value, name, value ... as a map.
fn pairs(items: &[Reply]) -> BTreeMap<String, String> {
    let text = |r: &Reply| match r {
        Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).to_string()),
        _ => None,
    };
    items
        .chunks(2)
        .filter_map(|c| Some((text(c.first()?)?, text(c.get(1)?)?)))
        .collect()
}

/// The nodes whose Redis says it is a primary, for the partition nemesis's
/// `leader` shape (during a split there may be two).
async fn primaries(nodes: &[NodeAddrs]) -> Vec<String> {
    let mut out = Vec::new();
    for n in nodes {
        let addr = n.client_url.trim_start_matches("redis://");
        if let Some(Reply::Bulk(Some(info))) = command(addr, &[b"INFO", b"replication"]).await {
            if String::from_utf8_lossy(&info).contains("role:master") {
                out.push(n.id.clone());
            }
        }
    }
    out
}
