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
        "redis",
        "Debian's redis-server: n1 primary (AOF, fsync always), the rest replicas through byte-stream proxies; workload kv; --reads replica reads from them",
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
            format!(
                "unknown target `{target}` (known: {}; etcd and maelstrom are not built yet)",
                names.join(", ")
            )
        })
}

/// Finds `redis-server` on the PATH.
pub fn locate_redis() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
        let candidate = dir.join("redis-server");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("--target redis needs redis-server on the PATH (apt-get install -y redis-server)")
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

async fn command(addr: &str, args: &[&[u8]]) -> Option<Reply> {
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
