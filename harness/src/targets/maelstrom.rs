//! `--target maelstrom`: one process per node speaking Maelstrom's protocol
//! (newline-delimited JSON on stdin and stdout). The harness is the network: the
//! [`Router`] reads every line a node prints and delivers it, so partitions,
//! loss, delay and duplication apply per message; it answers the `lin-kv`,
//! `seq-kv` and `lww-kv` services nodes may call, and carries the clients'
//! requests. Kill, pause and restart act on the processes; a restarted node is
//! sent `init` again.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use workloads::{BoxFut, Rng};

use super::maelstrom_lines::{excerpt, next_line, MAX_LINE_BYTES};
use super::{Start, Started, Target};
use crate::net::proxy::LinkPolicy;
use crate::net::Net;
use crate::run::{BadInput, TestConfig};
use crate::runtime::{NodeAddrs, Runtime};

/// Nodes speaking Maelstrom's protocol, the harness their network.
pub struct Maelstrom;

impl Target for Maelstrom {
    fn name(&self) -> &'static str {
        "maelstrom"
    }

    fn about(&self) -> &'static str {
        "processes speaking Maelstrom's protocol (--bin 'CMD ARGS'), every message routed by the harness; workloads kv (lin-kv), txn (txn-list-append), txn-rw-register; services lin-kv, seq-kv, lww-kv"
    }

    fn faults(&self) -> &'static [&'static str] {
        &["partition", "kill", "pause", "delay", "loss"]
    }

    fn takes_bin(&self) -> bool {
        true
    }

    /// `kv` as Maelstrom's lin-kv; `txn` and `txn-rw-register` as its
    /// txn-list-append and txn-rw-register (the `txn` message).
    fn workloads(&self) -> &'static [&'static str] {
        &["kv", "txn", "txn-rw-register"]
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
            let router = Router::new(s.rng.fork(77));
            let command = s.cfg.bin.clone().unwrap_or_default();
            let rt = MaelstromRuntime::new(&command, s.dir, s.ids, router.clone())?;
            Ok((Box::new(rt) as Box<dyn Runtime>, Net::routed(router)))
        })
    }

    /// Every node answered `init` when it started.
    fn ready<'a>(
        &'a self,
        _cfg: &'a TestConfig,
        _http: &'a reqwest::Client,
        _nodes: &'a [NodeAddrs],
        net: &'a Net,
    ) -> BoxFut<'a, anyhow::Result<workloads::Target>> {
        Box::pin(async move {
            let router = net
                .router()
                .context("the maelstrom network has no router")?;
            Ok(workloads::Target::Maelstrom(workloads::maelstrom::Link(
                router,
            )))
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

/// The services a node may call, each a key-value store.
const SERVICES: [&str; 3] = ["lin-kv", "seq-kv", "lww-kv"];

/// How long a started node has to answer `init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Routes messages between Maelstrom nodes, clients and services.
pub struct Router {
    stdin: Mutex<HashMap<String, mpsc::UnboundedSender<String>>>,
    waiting: Mutex<HashMap<(String, u64), oneshot::Sender<Value>>>,
    next_msg: AtomicU64,
    cut: Mutex<BTreeSet<(String, String)>>,
    shape: Mutex<LinkPolicy>,
    rng: Mutex<Rng>,
    services: Mutex<HashMap<String, HashMap<String, Value>>>,
    /// Messages between nodes delivered and dropped.
    counters: Mutex<(u64, u64)>,
}

impl Router {
    /// An empty router.
    pub fn new(rng: Rng) -> Arc<Router> {
        Arc::new(Router {
            stdin: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            next_msg: AtomicU64::new(1),
            cut: Mutex::new(BTreeSet::new()),
            shape: Mutex::new(LinkPolicy::default()),
            rng: Mutex::new(rng),
            services: Mutex::new(HashMap::new()),
            counters: Mutex::new((0, 0)),
        })
    }

    /// Drops every message from `a` to `b` for each pair given, and no other.
    pub fn set_cut(&self, cut: BTreeSet<(String, String)>) {
        *self.cut.lock().unwrap_or_else(|e| e.into_inner()) = cut;
    }

    /// Loss, delay, jitter and duplication for messages between nodes.
    pub fn set_shape(&self, shape: LinkPolicy) {
        *self.shape.lock().unwrap_or_else(|e| e.into_inner()) = shape;
    }

    /// Messages between nodes dropped so far.
    pub fn dropped(&self) -> u64 {
        self.counters.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    fn write(&self, node: &str, msg: &Value) {
        if let Some(tx) = self
            .stdin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
        {
            let _ = tx.send(msg.to_string());
        }
    }

    /// Handles one line a node printed.
    fn deliver(self: &Arc<Self>, from: &str, line: &str) {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            eprintln!(
                "maelstrom: {from} printed a line that is not JSON: {}",
                excerpt(line, line.len())
            );
            return;
        };
        let dest = msg["dest"].as_str().unwrap_or("").to_string();
        if msg["src"].as_str() != Some(from) {
            let src = msg["src"].to_string();
            eprintln!(
                "maelstrom: {from} sent a message with src {}",
                excerpt(&src, src.len())
            );
        }
        if dest.starts_with('c') {
            if let Some(id) = msg["body"]["in_reply_to"].as_u64() {
                let waiter = self
                    .waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&(dest, id));
                if let Some(tx) = waiter {
                    let _ = tx.send(msg["body"].clone());
                }
            }
            return;
        }
        if SERVICES.contains(&dest.as_str()) {
            let reply = self.service(&dest, &msg["body"]);
            self.write(from, &json!({"src": dest, "dest": from, "body": reply}));
            return;
        }
        let (copies, delays) = {
            let cut = self
                .cut
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&(from.to_string(), dest.clone()));
            let shape = self.shape.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            let lost = cut || (shape.loss > 0.0 && rng.chance(shape.loss));
            let copies = if lost {
                0
            } else if shape.duplicate > 0.0 && rng.chance(shape.duplicate) {
                2
            } else {
                1
            };
            let delays: Vec<Duration> = (0..copies)
                .map(|_| shape.delay + shape.jitter.mul_f64(rng.unit()))
                .collect();
            let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
            if lost {
                c.1 += 1;
            } else {
                c.0 += 1;
            }
            (copies, delays)
        };
        for d in delays.into_iter().take(copies) {
            if d.is_zero() {
                self.write(&dest, &msg);
            } else {
                let (me, dest, msg) = (self.clone(), dest.clone(), msg.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    me.write(&dest, &msg);
                });
            }
        }
    }

    /// Answers a request to a key-value service (all three are served
    /// linearizably, which `seq-kv` and `lww-kv` allow).
    fn service(&self, name: &str, body: &Value) -> Value {
        let mut all = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let kv = all.entry(name.to_string()).or_default();
        let key = body["key"].to_string();
        let reply_to = body["msg_id"].clone();
        let error = |code: i64, text: &str| json!({"type": "error", "code": code, "text": text, "in_reply_to": reply_to});
        match body["type"].as_str() {
            Some("read") => match kv.get(&key) {
                Some(v) => json!({"type": "read_ok", "value": v, "in_reply_to": reply_to}),
                None => error(20, "key does not exist"),
            },
            Some("write") => {
                kv.insert(key, body["value"].clone());
                json!({"type": "write_ok", "in_reply_to": reply_to})
            }
            Some("cas") => match kv.get(&key) {
                None if body["create_if_not_exists"] == json!(true) => {
                    kv.insert(key, body["to"].clone());
                    json!({"type": "cas_ok", "in_reply_to": reply_to})
                }
                None => error(20, "key does not exist"),
                Some(v) if *v == body["from"] => {
                    kv.insert(key, body["to"].clone());
                    json!({"type": "cas_ok", "in_reply_to": reply_to})
                }
                Some(v) => error(22, &format!("expected {}, found {v}", body["from"])),
            },
            _ => error(10, "this service supports read, write and cas"),
        }
    }

    /// Sends `body` from `client` to `node` and waits for the reply.
    async fn request(
        &self,
        client: &str,
        node: &str,
        mut body: Value,
        timeout: Duration,
    ) -> Option<Value> {
        let id = self.next_msg.fetch_add(1, Ordering::Relaxed);
        body["msg_id"] = json!(id);
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((client.to_string(), id), tx);
        self.write(node, &json!({"src": client, "dest": node, "body": body}));
        let reply = tokio::time::timeout(timeout, rx)
            .await
            .ok()
            .and_then(Result::ok);
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(client.to_string(), id));
        reply
    }
}

impl workloads::maelstrom::Rpc for Router {
    fn call<'a>(
        &'a self,
        client: &'a str,
        node: &'a str,
        body: Value,
        timeout: Duration,
    ) -> BoxFut<'a, Option<Value>> {
        Box::pin(self.request(client, node, body, timeout))
    }
}

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
            let p = self.proc_mut(id)?;
            if p.child.is_some() {
                return Ok(());
            }
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p.log)
                .with_context(|| format!("cannot open {}", p.log.display()))?;
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(&command)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(log)
                .kill_on_drop(true)
                .process_group(0)
                .spawn()
                .with_context(|| format!("cannot start `{command}`"))?;
            let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                bail!("no pipes to {id}");
            };
            let (tx, mut rx) = mpsc::unbounded_channel::<String>();
            tokio::spawn(async move {
                while let Some(line) = rx.recv().await {
                    if stdin
                        .write_all(format!("{line}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            router
                .stdin
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.to_string(), tx);
            let (r, me) = (router.clone(), id.to_string());
            tokio::spawn(async move {
                let mut out = BufReader::new(stdout);
                while let Ok(Some(line)) = next_line(&mut out, MAX_LINE_BYTES).await {
                    if line.len > MAX_LINE_BYTES {
                        eprintln!(
                            "maelstrom: {me} printed a line over {MAX_LINE_BYTES} bytes, dropped: {}",
                            excerpt(&line.text, line.len)
                        );
                        continue;
                    }
                    r.deliver(&me, &line.text);
                }
            });
            // `init`, as Maelstrom sends it, before anything else.
            let init = json!({"type": "init", "node_id": id, "node_ids": ids});
            let log = format!("see nodes/{id}/node.log");
            let reply = tokio::select! {
                reply = router.request("c0", id, init, INIT_TIMEOUT) => reply,
                status = child.wait() => {
                    let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                    bail!("{id} exited ({status}) before answering init ({log})")
                }
            };
            p.child = Some(child);
            match reply {
                Some(r) if r["type"] == "init_ok" => Ok(()),
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
        })
    }

    fn kill<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.router
                .stdin
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
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
                    signal_group(&child, libc::SIGKILL);
                    let _ = child.wait().await;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_answer_with_maelstrom_codes() {
        let r = Router::new(Rng::new(1));
        let ask = |body: Value| r.service("lin-kv", &body);
        let missing = ask(json!({"type": "read", "key": 1, "msg_id": 7}));
        assert_eq!(
            (missing["code"].clone(), missing["in_reply_to"].clone()),
            (json!(20), json!(7))
        );
        assert_eq!(
            ask(json!({"type": "write", "key": 1, "value": 5}))["type"],
            "write_ok"
        );
        assert_eq!(ask(json!({"type": "read", "key": 1}))["value"], 5);
        assert_eq!(
            ask(json!({"type": "cas", "key": 1, "from": 4, "to": 6}))["code"],
            22
        );
        assert_eq!(
            ask(json!({"type": "cas", "key": 1, "from": 5, "to": 6}))["type"],
            "cas_ok"
        );
        assert_eq!(
            ask(json!({"type": "cas", "key": 2, "from": 0, "to": 1, "create_if_not_exists": true}))
                ["type"],
            "cas_ok"
        );
        assert_eq!(ask(json!({"type": "append"}))["code"], 10);
        // Each service is its own store.
        assert_eq!(
            r.service("seq-kv", &json!({"type": "read", "key": 1}))["code"],
            20
        );
    }
}
