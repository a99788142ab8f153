//! Target `etcd`: Debian's etcd-server (3.4) as local processes. Every member
//! listens for peers on its own port but advertises a proxy's; the proxy into a
//! member learns each connection's sender from etcd's `X-Server-From` header.
//! The `kv` workload talks to the v3 HTTP/JSON gateway.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use workloads::BoxFut;

use super::{Start, Started, Target};
use crate::net::{proxy::Announce, Net};
use crate::run::TestConfig;
use crate::runtime::process::{Launch, ProcessRuntime};
use crate::runtime::{NodeAddrs, Runtime};

/// How long one member may take to answer who leads.
const ASK: Duration = Duration::from_secs(1);

/// etcd.
pub struct Etcd;

impl Target for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn about(&self) -> &'static str {
        "Debian's etcd-server (3.4): members with their own data dirs, peers through per-receiver proxies that learn the sender from X-Server-From; workloads kv, and txn, txn-rw-register and bank (reads in one txn, writes in a txn comparing mod revisions) through the v3 JSON gateway; --reads serializable"
    }

    fn faults(&self) -> &'static [&'static str] {
        super::PROCESS_TARGET_FAULTS
    }

    fn workloads(&self) -> &'static [&'static str] {
        &["kv", "txn", "txn-rw-register", "bank"]
    }

    fn takes_node_args(&self) -> bool {
        true
    }

    fn reads(&self) -> &'static [&'static str] {
        &["linearizable", "serializable"]
    }

    fn binary(&self, _cfg: &TestConfig, _quiet: bool) -> anyhow::Result<PathBuf> {
        super::on_path("etcd", "etcd-server", self.name())
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
            let peers: Vec<(String, Vec<String>)> = ids
                .iter()
                .zip(ports)
                .map(|(id, p)| (id.clone(), vec![format!("127.0.0.1:{}", p.1)]))
                .collect();
            let net =
                Net::start_announced(&peers, "127.0.0.1", Announce::Header("X-Server-From"), rng)
                    .await
                    .context("cannot start link proxies")?;
            let mut at = std::collections::HashMap::new();
            for (id, p) in ids.iter().zip(ports) {
                // Every member is advertised at the one proxy into it.
                let other = ids.iter().find(|o| *o != id).unwrap_or(id);
                let advertised = net.port(other, id).unwrap_or(p.1);
                at.insert(id.as_str(), (p.0, p.1, advertised));
            }
            let launches = launches(dir, ids, |id| at[id]);
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
        http: &'a reqwest::Client,
        nodes: &'a [NodeAddrs],
        net: &'a Net,
    ) -> BoxFut<'a, anyhow::Result<workloads::Target>> {
        Box::pin(async move {
            let urls: Vec<(String, String)> = nodes
                .iter()
                .map(|n| (n.id.clone(), n.client_url.clone()))
                .collect();
            await_etcd(http, &urls, net).await?;
            Ok(workloads::Target::Etcd {
                serializable: cfg.reads == "serializable",
            })
        })
    }

    /// The member whose maintenance status names itself as leader.
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
                        .post(format!("{}/v3/maintenance/status", n.client_url))
                        .json(&json!({}))
                        .timeout(ASK)
                        .send()
                        .await
                        .ok()?;
                    r.json::<Value>().await.ok()
                };
                if status.await.is_some_and(|s| {
                    s["leader"].is_string() && s["leader"] == s["header"]["member_id"]
                }) {
                    return Some(n.id.clone());
                }
            }
            None
        })
    }
}

/// Launches for etcd members: each serves clients on `ports(id).0`, listens for
/// peers on `.1` and advertises `.2` (its proxy), so every peer connection crosses one.
fn launches(
    run_dir: &Path,
    ids: &[String],
    ports: impl Fn(&str) -> (u16, u16, u16),
) -> Vec<Launch> {
    let client = |id: &str| ports(id).0;
    let peer = |id: &str| ports(id).1;
    let advertised = |id: &str| ports(id).2;
    let cluster: Vec<String> = ids
        .iter()
        .map(|id| format!("{id}=http://127.0.0.1:{}", advertised(id)))
        .collect();
    ids.iter()
        .map(|id| {
            let dir = run_dir.join("nodes").join(id);
            let c = format!("http://127.0.0.1:{}", client(id));
            let args: Vec<String> = [
                "--name",
                id,
                "--data-dir",
                &dir.join("data").display().to_string(),
                "--listen-client-urls",
                &c,
                "--advertise-client-urls",
                &c,
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", peer(id)),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", advertised(id)),
                "--initial-cluster",
                &cluster.join(","),
                "--initial-cluster-token",
                "faultline",
                "--initial-cluster-state",
                "new",
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            Launch {
                id: id.clone(),
                client_url: c,
                data: Some(dir.join("data")),
                dir,
                args,
            }
        })
        .collect()
}

/// Waits until a write through the first member succeeds, then teaches the
/// network which member id each node announces.
async fn await_etcd(
    http: &reqwest::Client,
    urls: &[(String, String)],
    net: &crate::net::Net,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let probe = serde_json::json!({"key": "ZmF1bHRsaW5l", "value": "MQ=="});
    let mut members = None;
    while Instant::now() < deadline && members.is_none() {
        for (_, url) in urls {
            let put = http
                .post(format!("{url}/v3/kv/put"))
                .json(&probe)
                .send()
                .await;
            if !put.is_ok_and(|r| r.status().is_success()) {
                continue;
            }
            let list = http
                .post(format!("{url}/v3/cluster/member/list"))
                .json(&serde_json::json!({}))
                .send()
                .await;
            if let Ok(r) = list {
                members = r.json::<serde_json::Value>().await.ok();
            }
            break;
        }
        if members.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let Some(members) = members else {
        bail!("etcd accepted no write within 30 s (see nodes/*/node.log)")
    };
    for m in members["members"].as_array().into_iter().flatten() {
        // The gateway writes 64-bit ids as decimal strings; peers announce hex.
        let id = m["ID"].as_str().and_then(|s| s.parse::<u64>().ok());
        if let (Some(id), Some(name)) = (id, m["name"].as_str()) {
            net.learn_id(&format!("{id:x}"), name);
        }
    }
    Ok(())
}
