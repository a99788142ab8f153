//! Systems under test besides the builtin node: how to find their binary, how
//! to launch each node, when the cluster is ready, and which faults apply.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use workloads::redis::{encode, read_reply, Reply};

use crate::runtime::process::Launch;

/// Every target: name, what it is, the faults that apply to it.
pub const TARGETS: &[(&str, &str, &[&str])] = &[
    (
        "builtin",
        "the Faultline reference system (faultline-node), every workload",
        &["partition", "kill", "pause", "clock", "delay", "loss"],
    ),
    (
        "etcd",
        "Debian's etcd-server (3.4): members with their own data dirs, peers through per-receiver proxies that learn the sender from X-Server-From; workload kv through the v3 JSON gateway; --reads serializable",
        &["partition", "kill", "pause", "delay"],
    ),
    (
        "maelstrom",
        "processes speaking Maelstrom's protocol (--bin 'CMD ARGS'), every message routed by the harness; workload kv as lin-kv; services lin-kv, seq-kv, lww-kv",
        &["partition", "kill", "pause", "delay", "loss"],
    ),
    (
        "redis",
        "Debian's redis-server: n1 primary (AOF, fsync always), the rest replicas through byte-stream proxies; workload kv; --reads replica reads from them",
        &["partition", "kill", "pause", "delay"],
    ),
    (
        "redis-sentinel",
        "Debian's redis-server with a sentinel beside each node: n1 starts as primary, the sentinels fail over when a majority lose it; nodes bind their own loopback addresses and all Redis and Sentinel traffic between them crosses source-address proxies; clients ask their node's sentinel for the primary; kill and pause hit the servers",
        &["partition", "kill", "pause", "delay"],
    ),
];

/// The faults `target` supports, or an error naming the known targets.
pub fn faults(target: &str) -> Result<&'static [&'static str], String> {
    TARGETS
        .iter()
        .find(|(n, _, _)| *n == target)
        .map(|(_, _, f)| *f)
        .ok_or_else(|| {
            let names: Vec<&str> = TARGETS.iter().map(|(n, _, _)| *n).collect();
            format!("unknown target `{target}` (known: {})", names.join(", "))
        })
}

/// The read modes each target accepts, the default first.
pub fn reads(target: &str) -> &'static [&'static str] {
    match target {
        "redis" => &["linearizable", "replica"],
        "etcd" => &["linearizable", "serializable"],
        _ => &["linearizable"],
    }
}

/// Finds a target's server binary on the PATH; the error says what to install.
pub fn locate(target: &str) -> anyhow::Result<PathBuf> {
    let (bin, package) = match target {
        "etcd" => ("etcd", "etcd-server"),
        "redis-sentinel" => ("redis-server", "redis-server"),
        _ => ("redis-server", "redis-server"),
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
        let candidate = dir.join(bin);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("--target {target} needs {bin} on the PATH (apt-get install -y {package})")
}

/// Launches for etcd members: each listens for peers on `peer(id)` but
/// advertises `advertised(id)` (its proxy), so every peer connection crosses one.
pub fn etcd_launches(
    run_dir: &Path,
    ids: &[String],
    client: impl Fn(&str) -> u16,
    peer: impl Fn(&str) -> u16,
    advertised: impl Fn(&str) -> u16,
) -> Vec<Launch> {
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
                dir,
                args,
            }
        })
        .collect()
}

/// Waits until a write through the first member succeeds, then teaches the
/// network which member id each node announces.
pub async fn await_etcd(
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

/// Launches for a Redis primary (`ids[0]`) and its replicas; `port(id)` is each
/// node's client port and `via(replica)` the proxy port through which a
/// replica reaches the primary.
pub fn redis_launches(
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
                &dir.display().to_string(),
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
                dir,
                args,
            }
        })
        .collect()
}

/// Sends one command on a fresh connection; `None` if no reply came in time.
pub(crate) async fn command(addr: &str, args: &[&[u8]]) -> Option<Reply> {
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
pub async fn await_redis(addrs: &[String]) -> anyhow::Result<()> {
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
