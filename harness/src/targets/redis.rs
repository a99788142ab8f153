//! Target `redis`: Debian's redis-server, `n1` the primary (AOF, fsync
//! always) and the others its replicas, each replicating through a
//! byte-stream proxy. Writes go to the primary; `--reads replica` reads from
//! the replicas, which the checker catches as not linearizable.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use workloads::redis::{encode, read_reply, Reply};
use workloads::BoxFut;

use super::{Start, Started, Target};
use crate::net::Net;
use crate::run::TestConfig;
use crate::runtime::process::{Launch, ProcessRuntime};
use crate::runtime::{NodeAddrs, Runtime};

/// Redis with a fixed primary.
pub struct Redis;

impl Target for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn about(&self) -> &'static str {
        "Debian's redis-server: n1 primary (AOF, fsync always), the rest replicas through byte-stream proxies; workload kv; --reads replica reads from them"
    }

    fn faults(&self) -> &'static [&'static str] {
        super::PROCESS_TARGET_FAULTS
    }

    fn takes_node_args(&self) -> bool {
        true
    }

    fn reads(&self) -> &'static [&'static str] {
        &["linearizable", "replica"]
    }

    fn binary(&self, _cfg: &TestConfig, _quiet: bool) -> anyhow::Result<PathBuf> {
        super::on_path("redis-server", "redis-server", self.name())
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
                ..
            } = s;
            // Each replica reaches the primary through its own byte-stream proxy.
            let addrs: Vec<(String, String)> = ids
                .iter()
                .zip(ports)
                .map(|(id, p)| (id.clone(), format!("127.0.0.1:{}", p.0)))
                .collect();
            let net = Net::start_streams(&addrs, "127.0.0.1", rng)
                .await
                .context("cannot start link proxies")?;
            let mut plan = std::collections::HashMap::new();
            for (i, (id, p)) in ids.iter().zip(ports).enumerate() {
                let via = if i == 0 {
                    0
                } else {
                    net.port(id, &ids[0])
                        .with_context(|| format!("no proxy on the link {id} -> {}", ids[0]))?
                };
                plan.insert(id.as_str(), (p.0, via));
            }
            let launches = launches(dir, ids, |id| plan[id].0, |id| plan[id].1);
            let mut launches = launches;
            for l in &mut launches {
                l.args.extend(cfg.node_args.iter().cloned());
            }
            let mut rt = ProcessRuntime::from_launches(bin.to_path_buf(), launches)?;
            super::lazy_disks_if_asked(cfg, &mut rt)?;
            Ok((Box::new(rt) as Box<dyn Runtime>, net))
        })
    }

    fn ready<'a>(
        &'a self,
        cfg: &'a TestConfig,
        _http: &'a reqwest::Client,
        nodes: &'a [NodeAddrs],
        _net: &'a Net,
    ) -> BoxFut<'a, anyhow::Result<workloads::Target>> {
        Box::pin(async move {
            await_redis(&addresses(nodes)).await?;
            Ok(workloads::Target::Redis {
                replica_reads: cfg.reads == "replica",
                sentinels: None,
            })
        })
    }

    /// `n1`: the primary never changes.
    fn leader<'a>(
        &'a self,
        _cfg: &'a TestConfig,
        _http: &'a reqwest::Client,
        nodes: &'a [NodeAddrs],
    ) -> BoxFut<'a, Option<String>> {
        Box::pin(async move { nodes.first().map(|n| n.id.clone()) })
    }

    /// One primary and no election: nothing fails over.
    fn fails_over(&self) -> bool {
        false
    }
}

/// The nodes' Redis `host:port` addresses.
pub(super) fn addresses(nodes: &[NodeAddrs]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| n.client_url.trim_start_matches("redis://").to_string())
        .collect()
}

/// Launches for a Redis primary (`ids[0]`) and its replicas; `port(id)` is each
/// node's client port and `via(replica)` the proxy port through which a
/// replica reaches the primary.
fn launches(
    run_dir: &Path,
    ids: &[String],
    port: impl Fn(&str) -> u16,
    via: impl Fn(&str) -> u16,
) -> Vec<Launch> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let dir = run_dir.join("nodes").join(id);
            let mut args: Vec<String> = [
                "--port",
                &port(id).to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
                &dir.join("data").display().to_string(),
                "--daemonize",
                "no",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--protected-mode",
                "no",
                "--repl-timeout",
                "5",
                "--repl-ping-replica-period",
                "1",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if i > 0 {
                args.extend([
                    "--replicaof".into(),
                    "127.0.0.1".into(),
                    via(id).to_string(),
                ]);
            }
            Launch {
                id: id.clone(),
                client_url: format!("redis://127.0.0.1:{}", port(id)),
                data: Some(dir.join("data")),
                dir,
                args,
            }
        })
        .collect()
}

/// Sends one command on a fresh connection; `None` if no reply came in time.
pub(super) async fn command(addr: &str, args: &[&[u8]]) -> Option<Reply> {
    let stream = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let mut stream = BufReader::new(stream);
    stream.get_mut().write_all(&encode(args)).await.ok()?;
    tokio::time::timeout(Duration::from_secs(1), read_reply(&mut stream))
        .await
        .ok()?
        .ok()
}

/// Waits until every node answers and every replica's link to the primary is up.
pub(super) async fn await_redis(addrs: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    'poll: while Instant::now() < deadline {
        for (i, a) in addrs.iter().enumerate() {
            let ready = match command(a, &[b"INFO", b"replication"]).await {
                Some(Reply::Bulk(Some(info))) => {
                    i == 0 || String::from_utf8_lossy(&info).contains("master_link_status:up")
                }
                _ => false,
            };
            if !ready {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue 'poll;
            }
        }
        return Ok(());
    }
    bail!(
        "redis nodes not ready (replicas linked to the primary) within 30 s (see nodes/*/node.log)"
    )
}
