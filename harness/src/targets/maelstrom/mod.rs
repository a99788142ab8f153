//! `--target maelstrom`: one process per node speaking Maelstrom's protocol
//! (newline-delimited JSON on stdin and stdout). The harness is the network: the
//! [`Router`] reads every line a node prints and delivers it, so partitions,
//! loss, delay and duplication apply per message; it answers the services
//! nodes may call ([`services`]) and carries the clients' requests. Kill, pause
//! and restart act on the processes; a restarted node is sent `init` again
//! (and the topology it was given).

pub mod lines;
pub mod router;
pub mod services;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use workloads::BoxFut;

use super::{Start, Started, Target};
use crate::net::Net;
use crate::run::{BadInput, TestConfig};
use crate::runtime::{NodeAddrs, Runtime};
use lines::{excerpt, next_line, MAX_LINE_BYTES};
pub use router::Router;

/// Nodes speaking Maelstrom's protocol, the harness their network.
pub struct Maelstrom;

/// The workloads, under Faultline's names (`kv` is Maelstrom's lin-kv, `txn`
/// its txn-list-append).
pub const WORKLOADS: &[&str] = &[
    "echo",
    "unique-ids",
    "broadcast",
    "g-set",
    "g-counter",
    "pn-counter",
    "kafka",
    "kv",
    "txn",
    "txn-rw-register",
];

/// The workloads only Maelstrom nodes speak: the first seven above.
pub const ONLY_HERE: &[&str] = WORKLOADS.split_at(7).0;

impl Target for Maelstrom {
    fn name(&self) -> &'static str {
        "maelstrom"
    }

    fn about(&self) -> &'static str {
        "processes speaking Maelstrom's protocol (--bin 'CMD ARGS'), every message routed by the harness; every Maelstrom workload (kv is lin-kv, txn is txn-list-append); services lin-kv, seq-kv, lww-kv, lin-tso; also `harness maelstrom test` with Maelstrom's flags"
    }

    fn faults(&self) -> &'static [&'static str] {
        &["partition", "kill", "pause", "delay", "loss"]
    }

    fn takes_bin(&self) -> bool {
        true
    }

    /// Maelstrom names nodes `n0`, `n1`, ...
    fn first_node(&self) -> usize {
        0
    }

    fn workloads(&self) -> &'static [&'static str] {
        WORKLOADS
    }

    /// Nodes run through `sh -c`; the command itself is checked at start.
    fn binary(&self, cfg: &TestConfig, _quiet: bool) -> anyhow::Result<PathBuf> {
        match &cfg.bin {
            Some(_) => Ok(PathBuf::from("sh")),
            None => bail!(BadInput(
                "--target maelstrom needs --bin 'COMMAND ARGS' for each node".into()
            )),
        }
    }

    fn start<'a>(&'a self, s: Start<'a>) -> BoxFut<'a, anyhow::Result<Started>> {
        Box::pin(async move {
            let router = Router::new(s.ids, s.rng.fork(77));
            let dist = router::LatencyDist::parse(&s.cfg.latency_dist).map_err(BadInput)?;
            router.set_latency(Duration::from_secs_f64(s.cfg.latency_ms / 1e3), dist);
            let command = s.cfg.bin.clone().unwrap_or_default();
            let mut rt = MaelstromRuntime::new(&command, s.dir, s.ids, router.clone())?;
            rt.log_stderr = s.cfg.log_stderr;
            Ok((Box::new(rt) as Box<dyn Runtime>, Net::routed(router)))
        })
    }

    /// Every node answered `init` when it started.
    fn ready<'a>(
        &'a self,
        cfg: &'a TestConfig,
        _http: &'a reqwest::Client,
        _nodes: &'a [NodeAddrs],
        net: &'a Net,
    ) -> BoxFut<'a, anyhow::Result<workloads::Target>> {
        Box::pin(async move {
            let router = net
                .router()
                .context("the maelstrom network has no router")?;
            Ok(workloads::Target::Maelstrom(workloads::maelstrom::Link {
                rpc: Arc::new(router::RouterLink(router)),
                topology: cfg.topology.clone(),
            }))
        })
    }

    /// Maelstrom nodes do not say who leads.
    fn leader<'a>(
        &'a self,
        _cfg: &'a TestConfig,
        _http: &'a reqwest::Client,
        _nodes: &'a [NodeAddrs],
    ) -> BoxFut<'a, Option<String>> {
        Box::pin(async { None })
    }
}

/// How long a started node has to answer `init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

struct Proc {
    id: String,
    child: Option<Child>,
    log: PathBuf,
}

/// Maelstrom node processes, each started with `sh -c COMMAND`.
pub struct MaelstromRuntime {
    command: String,
    ids: Vec<String>,
    procs: Vec<Proc>,
    router: Arc<Router>,
    /// Copy each node's stderr to ours too (Maelstrom's `--log-stderr`).
    pub log_stderr: bool,
}

impl MaelstromRuntime {
    /// Plans one process per id, logs under `run_dir/nodes/ID/node.log`.
    pub fn new(
        command: &str,
        run_dir: &std::path::Path,
        ids: &[String],
        router: Arc<Router>,
    ) -> anyhow::Result<Self> {
        let mut procs = Vec::new();
        for id in ids {
            let dir = run_dir.join("nodes").join(id);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            procs.push(Proc {
                id: id.clone(),
                child: None,
                log: dir.join("node.log"),
            });
        }
        Ok(MaelstromRuntime {
            command: command.to_string(),
            ids: ids.to_vec(),
            procs,
            router,
            log_stderr: false,
        })
    }

    fn proc_mut(&mut self, id: &str) -> anyhow::Result<&mut Proc> {
        self.procs
            .iter_mut()
            .find(|p| p.id == id)
            .with_context(|| format!("no node `{id}`"))
    }

    fn signal(&mut self, id: &str, sig: libc::c_int) -> anyhow::Result<()> {
        let p = self.proc_mut(id)?;
        if let Some(child) = &p.child {
            signal_group(child, sig);
        }
        Ok(())
    }
}

/// Signals a node's whole process group: `sh -c` and interpreter shims put
/// the real node process below the one we spawned.
fn signal_group(child: &Child, sig: libc::c_int) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on the process group of a child we spawned as its
        // leader; no memory involved.
        unsafe { libc::kill(-(pid as libc::pid_t), sig) };
    }
}

impl Drop for MaelstromRuntime {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if let Some(child) = p.child.take() {
                signal_group(&child, libc::SIGKILL);
            }
        }
    }
}

impl Runtime for MaelstromRuntime {
    fn nodes(&self) -> Vec<NodeAddrs> {
        self.ids
            .iter()
            .map(|id| NodeAddrs {
                id: id.clone(),
                client_url: format!("maelstrom://{id}"),
                admin_url: String::new(),
            })
            .collect()
    }

    fn start<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let (command, ids, router) =
                (self.command.clone(), self.ids.clone(), self.router.clone());
            let log_stderr = self.log_stderr;
            let p = self.proc_mut(id)?;
            if p.child.is_some() {
                return Ok(());
            }
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p.log)
                .with_context(|| format!("cannot open {}", p.log.display()))?;
            let stderr = if log_stderr {
                Stdio::piped()
            } else {
                Stdio::from(log.try_clone()?)
            };
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(&command)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(stderr)
                .kill_on_drop(true)
                .process_group(0)
                .spawn()
                .with_context(|| format!("cannot start `{command}`"))?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                bail!("no pipes to {id}");
            };
            if let Some(err) = child.stderr.take() {
                tee_stderr(id.to_string(), err, log);
            }
            let (tx, rx) = mpsc::unbounded_channel::<String>();
            tokio::spawn(write_lines(stdin, rx));
            router
                .stdin
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.to_string(), tx);
            let (r, me) = (router.clone(), id.to_string());
            let incarnation = router.begin(id);
            tokio::spawn(async move {
                let mut out = BufReader::with_capacity(1 << 16, stdout);
                while let Ok(Some(line)) = next_line(&mut out, MAX_LINE_BYTES).await {
                    if line.len > MAX_LINE_BYTES {
                        let what = format!("printed a line over {MAX_LINE_BYTES} bytes, dropped");
                        r.note(&me, what, excerpt(&line.text, line.len));
                        continue;
                    }
                    r.deliver(&me, &line.text);
                }
                r.closed(&me, incarnation);
            });
            // `init`, as Maelstrom sends it, before anything else.
            let init = json!({"type": "init", "node_id": id, "node_ids": ids});
            let log = format!("see nodes/{id}/node.log");
            let reply = tokio::select! {
                reply = router.request("c0", id, init, INIT_TIMEOUT) => reply,
                status = child.wait() => {
                    router.expect_exit(id);
                    let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                    bail!("{id} exited ({status}) before answering init ({log})")
                }
            };
            p.child = Some(child);
            match reply {
                Some(r) if r["type"] == "init_ok" => router.started(id),
                Some(r) => {
                    let r = r.to_string();
                    bail!(
                        "{id} answered init with {} instead of init_ok ({log})",
                        excerpt(&r, r.len())
                    )
                }
                None => bail!(
                    "{id} did not answer init within {} s ({log})",
                    INIT_TIMEOUT.as_secs()
                ),
            }
            // A restarted node learns its neighbours again.
            if let Some(topology) = router.topology_of(id) {
                let reply = router.request("c0", id, topology, INIT_TIMEOUT).await;
                if reply.as_ref().is_none_or(|r| r["type"] != "topology_ok") {
                    bail!(
                        "{id} did not answer its topology with topology_ok after a restart ({log})"
                    );
                }
            }
            Ok(())
        })
    }

    fn kill<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.router.expect_exit(id);
            let p = self.proc_mut(id)?;
            if let Some(mut child) = p.child.take() {
                signal_group(&child, libc::SIGKILL);
                child
                    .wait()
                    .await
                    .with_context(|| format!("SIGKILL {id}"))?;
            }
            Ok(())
        })
    }

    fn pause<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>> {
        Box::pin(async move { self.signal(id, libc::SIGSTOP) })
    }

    fn resume<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>> {
        Box::pin(async move { self.signal(id, libc::SIGCONT) })
    }

    fn teardown(&mut self) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            for p in &mut self.procs {
                if let Some(mut child) = p.child.take() {
                    self.router.expect_exit(&p.id);
                    signal_group(&child, libc::SIGKILL);
                    let _ = child.wait().await;
                }
            }
            Ok(())
        })
    }
}

/// Writes the lines the router hands over to a node's stdin, flushing when no
/// more are waiting, so a busy node gets many lines per write.
async fn write_lines(stdin: tokio::process::ChildStdin, mut rx: mpsc::UnboundedReceiver<String>) {
    let mut out = BufWriter::with_capacity(1 << 16, stdin);
    while let Some(line) = rx.recv().await {
        let mut next = Some(line);
        while let Some(line) = next {
            if out.write_all(line.as_bytes()).await.is_err() || out.write_all(b"\n").await.is_err()
            {
                return;
            }
            next = rx.try_recv().ok();
        }
        if out.flush().await.is_err() {
            return;
        }
    }
}

/// Copies a node's stderr to its log and to ours, each line prefixed with the node.
fn tee_stderr(id: String, err: tokio::process::ChildStderr, log: std::fs::File) {
    tokio::spawn(async move {
        let mut log = tokio::fs::File::from_std(log);
        let mut lines = BufReader::new(err).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{id}: {line}");
            if log.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                return;
            }
        }
    });
}
