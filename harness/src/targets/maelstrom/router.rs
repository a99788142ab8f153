//! The network of a Maelstrom test: every line a node prints comes here and is
//! delivered (or dropped, delayed, duplicated) to a node, a client or a
//! service. The router also keeps what the run's report needs: message counts
//! for the `net` checker, a sample of messages for the Lamport diagram, and
//! every way a node broke the protocol.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use workloads::{BoxFut, Rng};

use super::lines::excerpt;
use super::services::{Services, NAMES};
use crate::net::proxy::LinkPolicy;

/// How message latency is drawn (Maelstrom's `--latency-dist`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LatencyDist {
    /// Always the mean.
    Constant,
    /// Uniform between zero and twice the mean.
    Uniform,
    /// Exponential with the mean (Maelstrom's default).
    Exponential,
}

impl LatencyDist {
    /// Parses `constant`, `uniform` or `exponential`.
    pub fn parse(text: &str) -> Result<LatencyDist, String> {
        match text {
            "constant" => Ok(LatencyDist::Constant),
            "uniform" => Ok(LatencyDist::Uniform),
            "exponential" => Ok(LatencyDist::Exponential),
            other => Err(format!(
                "unknown latency distribution `{other}` (known: constant, uniform, exponential)"
            )),
        }
    }
}

/// Messages kept per second of the run for the Lamport diagram.
const JOURNAL_PER_SECOND: usize = 300;
/// Characters of a message body kept for the diagram.
const JOURNAL_BODY: usize = 300;
/// Protocol problems kept (all are counted).
const PROBLEMS_KEPT: usize = 50;

/// One message as the diagram draws it.
#[derive(Clone, Debug, Serialize)]
pub struct Journaled {
    /// Sender.
    pub from: String,
    /// Receiver.
    pub to: String,
    /// When it was sent, ms since the router started.
    pub sent_ms: f64,
    /// When it arrived, if it did.
    pub recv_ms: Option<f64>,
    /// Its body, cut short.
    pub body: String,
}

/// One way a node broke the protocol.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// The node.
    pub node: String,
    /// Seconds since the router started.
    pub at_s: f64,
    /// What was wrong.
    pub what: String,
    /// The line it printed, cut short.
    pub line: String,
}

/// Sent and delivered messages of one kind.
#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    recv: AtomicU64,
}

impl Counts {
    fn value(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.recv.load(Ordering::Relaxed),
        )
    }
}

/// Faults and latency on links between nodes.
struct Links {
    cut: BTreeSet<(String, String)>,
    shape: LinkPolicy,
    latency: Duration,
    dist: LatencyDist,
    rng: Rng,
}

impl Links {
    /// The delays of the copies of one message; none when it is dropped.
    fn copies(&mut self, from: &str, to: &str, faulty: bool) -> Vec<Duration> {
        let base = |l: &mut Links| -> Duration {
            let mean = l.latency.as_secs_f64();
            let secs = match l.dist {
                LatencyDist::Constant => mean,
                LatencyDist::Uniform => 2.0 * mean * l.rng.unit(),
                LatencyDist::Exponential => -mean * (1.0 - l.rng.unit()).max(1e-12).ln(),
            };
            Duration::from_secs_f64(secs.min(60.0))
        };
        if !faulty {
            return vec![base(self)];
        }
        if self.cut.contains(&(from.to_string(), to.to_string()))
            || (self.shape.loss > 0.0 && self.rng.chance(self.shape.loss))
        {
            return Vec::new();
        }
        let n = if self.shape.duplicate > 0.0 && self.rng.chance(self.shape.duplicate) {
            2
        } else {
            1
        };
        (0..n)
            .map(|_| base(self) + self.shape.delay + self.shape.jitter.mul_f64(self.rng.unit()))
            .collect()
    }
}

/// Routes messages between Maelstrom nodes, clients and services.
pub struct Router {
    start: Instant,
    nodes: HashSet<String>,
    pub(super) stdin: RwLock<HashMap<String, mpsc::UnboundedSender<String>>>,
    waiting: Mutex<HashMap<u64, (String, oneshot::Sender<Value>)>>,
    next_msg: AtomicU64,
    links: Mutex<Links>,
    services: Mutex<Services>,
    clients: Counts,
    servers: Counts,
    dropped: AtomicU64,
    journal: Mutex<HashMap<u64, Vec<Journaled>>>,
    problems: Mutex<(u64, Vec<Problem>)>,
    topology: Mutex<HashMap<String, Value>>,
    exiting: Mutex<HashSet<String>>,
    /// Nodes that answered `init` and have not been stopped since.
    running: Mutex<HashSet<String>>,
    /// Each node's process count: a closed pipe of an earlier process is old news.
    incarnations: Mutex<HashMap<String, u64>>,
}

impl Router {
    /// A router for the nodes `ids`.
    pub fn new(ids: &[String], rng: Rng) -> Arc<Router> {
        Arc::new(Router {
            start: Instant::now(),
            nodes: ids.iter().cloned().collect(),
            stdin: RwLock::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            next_msg: AtomicU64::new(1),
            links: Mutex::new(Links {
                cut: BTreeSet::new(),
                shape: LinkPolicy::default(),
                latency: Duration::ZERO,
                dist: LatencyDist::Exponential,
                rng: rng.fork(1),
            }),
            services: Mutex::new(Services::new(rng.fork(2))),
            clients: Counts::default(),
            servers: Counts::default(),
            dropped: AtomicU64::new(0),
            journal: Mutex::new(HashMap::new()),
            problems: Mutex::new((0, Vec::new())),
            topology: Mutex::new(HashMap::new()),
            exiting: Mutex::new(HashSet::new()),
            running: Mutex::new(HashSet::new()),
            incarnations: Mutex::new(HashMap::new()),
        })
    }

    /// Drops every message from `a` to `b` for each pair given, and no other.
    pub fn set_cut(&self, cut: BTreeSet<(String, String)>) {
        lock(&self.links).cut = cut;
    }

    /// Loss, delay, jitter and duplication for messages between nodes.
    pub fn set_shape(&self, shape: LinkPolicy) {
        lock(&self.links).shape = shape;
    }

    /// The latency of every message (Maelstrom's `--latency`).
    pub fn set_latency(&self, mean: Duration, dist: LatencyDist) {
        let mut l = lock(&self.links);
        l.latency = mean;
        l.dist = dist;
    }

    /// Messages between nodes dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1e3
    }

    /// Notes that a node broke the protocol with `line`.
    pub fn problem(&self, node: &str, what: String, line: &str) {
        self.note(node, what, excerpt(line, line.len()));
    }

    /// Notes a problem whose line is already cut short (`shown`).
    pub fn note(&self, node: &str, what: String, shown: String) {
        let at_s = self.start.elapsed().as_secs_f64();
        eprintln!("maelstrom: {node} {what}: {shown}");
        let mut p = lock(&self.problems);
        p.0 += 1;
        if p.1.len() < PROBLEMS_KEPT {
            p.1.push(Problem {
                node: node.to_string(),
                at_s,
                what,
                line: shown,
            });
        }
    }

    /// Every protocol problem seen (the count, and the first ones).
    pub fn problems(&self) -> (u64, Vec<Problem>) {
        lock(&self.problems).clone()
    }

    /// The harness is about to stop `node` (kill, teardown): its end is no news.
    pub fn expect_exit(&self, node: &str) {
        lock(&self.exiting).insert(node.to_string());
        lock(&self.running).remove(node);
        write_lock(&self.stdin).remove(node);
    }

    /// A new process of `node` starts: its number, for [`Router::closed`].
    pub fn begin(&self, node: &str) -> u64 {
        lock(&self.exiting).remove(node);
        let mut all = lock(&self.incarnations);
        let n = all.entry(node.to_string()).or_default();
        *n += 1;
        *n
    }

    /// `node` answered `init`: from now on its exit is news.
    pub fn started(&self, node: &str) {
        lock(&self.running).insert(node.to_string());
    }

    /// The node's output ended: a problem unless the harness stopped it (a
    /// node that never answered `init` is reported by its start instead).
    pub fn closed(&self, node: &str, incarnation: u64) {
        if lock(&self.incarnations).get(node) != Some(&incarnation) {
            return;
        }
        let exiting = lock(&self.exiting).remove(node);
        let running = lock(&self.running).remove(node);
        write_lock(&self.stdin).remove(node);
        if !exiting && running {
            self.problem(
                node,
                format!("exited on its own (see nodes/{node}/node.log)"),
                "",
            );
        }
    }

    /// The topology a client gave `node`, to give it again after a restart.
    pub fn topology_of(&self, node: &str) -> Option<Value> {
        lock(&self.topology).get(node).cloned()
    }

    fn journal(&self, from: &str, to: &str, body: &Value, delay: Option<Duration>) {
        let sent_ms = self.now_ms();
        let second = (sent_ms / 1e3) as u64;
        let mut j = lock(&self.journal);
        let bucket = j.entry(second).or_default();
        if bucket.len() >= JOURNAL_PER_SECOND {
            return;
        }
        let text = body.to_string();
        bucket.push(Journaled {
            from: from.to_string(),
            to: to.to_string(),
            sent_ms,
            recv_ms: delay.map(|d| sent_ms + d.as_secs_f64() * 1e3),
            body: excerpt_chars(&text, JOURNAL_BODY),
        });
    }

    /// The sampled messages, in order of sending.
    pub fn journaled(&self) -> Vec<Journaled> {
        let j = lock(&self.journal);
        let mut seconds: Vec<&u64> = j.keys().collect();
        seconds.sort();
        seconds
            .into_iter()
            .flat_map(|s| j[s].iter().cloned())
            .collect()
    }

    /// Maelstrom's `net` statistics: sent and received messages for all,
    /// clients (to or from a client) and servers (between nodes and services),
    /// and messages per operation.
    pub fn stats(&self, ops: u64) -> Value {
        let (cs, cr) = self.clients.value();
        let (ss, sr) = self.servers.value();
        let per_op = |n: u64| {
            if ops == 0 {
                Value::Null
            } else {
                json!((n as f64 / ops as f64 * 100.0).round() / 100.0)
            }
        };
        let group = |s: u64, r: u64| json!({"send_count": s, "recv_count": r, "msg_count": s, "msgs_per_op": per_op(s)});
        json!({
            "all": group(cs + ss, cr + sr),
            "clients": group(cs, cr),
            "servers": group(ss, sr),
            "dropped": self.dropped(),
        })
    }

    fn counts(&self, client: bool) -> &Counts {
        if client {
            &self.clients
        } else {
            &self.servers
        }
    }

    fn push(&self, node: &str, line: String) -> bool {
        match read_lock(&self.stdin).get(node) {
            Some(tx) => tx.send(line).is_ok(),
            None => false,
        }
    }

    /// Writes `line` to `node` after `delay`, counting it in `counts` if it arrives.
    fn send_later(self: &Arc<Self>, node: String, line: String, delay: Duration, client: bool) {
        if delay.is_zero() {
            if self.push(&node, line) {
                self.counts(client).recv.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if me.push(&node, line) {
                me.counts(client).recv.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    /// Handles one line `from` printed.
    pub fn deliver(self: &Arc<Self>, from: &str, line: &str) {
        let msg = match serde_json::from_str::<Value>(line) {
            Ok(m) => m,
            Err(e) => {
                return self.problem(from, format!("printed a line that is not JSON ({e})"), line)
            }
        };
        let (Some(dest), Some(body)) = (msg["dest"].as_str(), msg.get("body")) else {
            let missing = if msg["dest"].is_string() {
                "body"
            } else {
                "dest"
            };
            return self.problem(
                from,
                format!("printed a message without a `{missing}`"),
                line,
            );
        };
        if !body.is_object() {
            return self.problem(
                from,
                "printed a message whose body is not an object".into(),
                line,
            );
        }
        // A node may forward a client's request with the client's `src` (as
        // Maelstrom allows): any known node or client will do.
        let src = msg["src"].as_str().unwrap_or("");
        let client = src
            .strip_prefix('c')
            .is_some_and(|n| n.parse::<u64>().is_ok());
        if src != from && !client && !self.nodes.contains(src) {
            self.problem(
                from,
                format!("sent a message with src {}, no node or client", msg["src"]),
                line,
            );
        }
        if self.nodes.contains(dest) {
            self.servers.sent.fetch_add(1, Ordering::Relaxed);
            let delays = lock(&self.links).copies(from, dest, true);
            if delays.is_empty() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.journal(from, dest, body, None);
            }
            for d in delays {
                self.journal(from, dest, body, Some(d));
                self.send_later(dest.to_string(), line.to_string(), d, false);
            }
        } else if NAMES.contains(&dest) {
            self.servers.sent.fetch_add(1, Ordering::Relaxed);
            self.servers.recv.fetch_add(1, Ordering::Relaxed);
            let reply = lock(&self.services).answer(dest, from, body);
            let d = lock(&self.links).copies(dest, from, false)[0];
            self.journal(from, dest, body, Some(Duration::ZERO));
            self.journal(dest, from, &reply, Some(d));
            self.servers.sent.fetch_add(1, Ordering::Relaxed);
            let line = json!({"src": dest, "dest": from, "body": reply}).to_string();
            self.send_later(from.to_string(), line, d, false);
        } else if dest.starts_with('c') {
            self.clients.sent.fetch_add(1, Ordering::Relaxed);
            let Some(id) = body["in_reply_to"].as_u64() else {
                return self.problem(
                    from,
                    format!("sent client {dest} a message without in_reply_to"),
                    line,
                );
            };
            if id == 0 || id >= self.next_msg.load(Ordering::Relaxed) {
                return self.problem(
                    from,
                    format!("answered {dest} with in_reply_to {id}, which no client sent"),
                    line,
                );
            }
            let waiter = {
                let mut w = lock(&self.waiting);
                match w.get(&id) {
                    Some((c, _)) if c == dest => w.remove(&id),
                    Some(_) => {
                        drop(w);
                        return self.problem(
                            from,
                            format!("answered {dest} with in_reply_to {id}, a request of another client"),
                            line,
                        );
                    }
                    // A reply after the client gave up waiting: late, not wrong.
                    None => None,
                }
            };
            let d = lock(&self.links).copies(from, dest, false)[0];
            self.journal(from, dest, body, Some(d));
            if let Some((_, tx)) = waiter {
                let reply = body.clone();
                if d.is_zero() {
                    let _ = tx.send(reply);
                    self.clients.recv.fetch_add(1, Ordering::Relaxed);
                } else {
                    let me = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(d).await;
                        if tx.send(reply).is_ok() {
                            me.clients.recv.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            }
        } else {
            self.problem(
                from,
                format!("sent a message to `{dest}`, which is no node, client or service"),
                line,
            );
        }
    }

    /// Sends `body` from `client` to `node` and waits for the reply.
    pub async fn request(
        self: &Arc<Self>,
        client: &str,
        node: &str,
        mut body: Value,
        timeout: Duration,
    ) -> Option<Value> {
        let id = self.next_msg.fetch_add(1, Ordering::Relaxed);
        body["msg_id"] = json!(id);
        if body["type"] == "topology" {
            lock(&self.topology).insert(node.to_string(), body.clone());
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(id, (client.to_string(), tx));
        self.clients.sent.fetch_add(1, Ordering::Relaxed);
        let d = lock(&self.links).copies(client, node, false)[0];
        self.journal(client, node, &body, Some(d));
        let line = json!({"src": client, "dest": node, "body": body}).to_string();
        self.send_later(node.to_string(), line, d, true);
        let reply = tokio::time::timeout(timeout, rx)
            .await
            .ok()
            .and_then(Result::ok);
        lock(&self.waiting).remove(&id);
        reply
    }
}

/// The router as the workloads' clients see it.
pub struct RouterLink(pub Arc<Router>);

impl workloads::maelstrom::Rpc for RouterLink {
    fn call<'a>(
        &'a self,
        client: &'a str,
        node: &'a str,
        body: Value,
        timeout: Duration,
    ) -> BoxFut<'a, Option<Value>> {
        Box::pin(self.0.request(client, node, body, timeout))
    }
}

/// `text` cut to `max` characters.
fn excerpt_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_lock<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Arc<Router> {
        Router::new(&["n1".to_string(), "n2".to_string()], Rng::new(1))
    }

    /// Plugs a fake node into the router; answers what it is sent.
    fn plug(r: &Router, id: &str) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        write_lock(&r.stdin).insert(id.to_string(), tx);
        rx
    }

    #[tokio::test]
    async fn messages_between_nodes_are_cut_and_counted() {
        let r = router();
        let mut n2 = plug(&r, "n2");
        let m = r#"{"src":"n1","dest":"n2","body":{"type":"gossip"}}"#;
        r.deliver("n1", m);
        assert_eq!(n2.recv().await.as_deref(), Some(m));
        r.set_cut([("n1".to_string(), "n2".to_string())].into());
        r.deliver("n1", m);
        assert!(n2.try_recv().is_err());
        let s = r.stats(2);
        assert_eq!(s["servers"]["send_count"], 2);
        assert_eq!(s["servers"]["recv_count"], 1);
        assert_eq!(s["all"]["msgs_per_op"], 1.0);
        assert_eq!(r.dropped(), 1);
        assert_eq!(r.journaled().len(), 2);
    }

    #[tokio::test]
    async fn a_client_gets_its_reply_and_bad_replies_are_named() {
        let r = router();
        let mut n1 = plug(&r, "n1");
        let (r2, ask) = (
            r.clone(),
            tokio::spawn({
                let r = r.clone();
                async move {
                    r.request(
                        "c3",
                        "n1",
                        json!({"type": "echo", "echo": 1}),
                        Duration::from_secs(5),
                    )
                    .await
                }
            }),
        );
        let sent: Value = serde_json::from_str(&n1.recv().await.unwrap()).unwrap();
        let id = sent["body"]["msg_id"].as_u64().unwrap();
        r2.deliver("n1", &format!(r#"{{"src":"n1","dest":"c3","body":{{"type":"echo_ok","echo":1,"in_reply_to":{id}}}}}"#));
        assert_eq!(ask.await.unwrap().unwrap()["type"], "echo_ok");
        r.deliver(
            "n1",
            r#"{"src":"n1","dest":"c3","body":{"type":"echo_ok","in_reply_to":999}}"#,
        );
        r.deliver("n1", "hello");
        r.deliver("n1", r#"{"src":"n1","dest":"x9","body":{}}"#);
        r.deliver("n1", r#"{"src":"n1","body":{}}"#);
        let (count, problems) = r.problems();
        assert_eq!(count, 4);
        assert!(
            problems[0]
                .what
                .contains("in_reply_to 999, which no client sent"),
            "{problems:?}"
        );
        assert!(problems[1].what.contains("not JSON") && problems[1].line == "hello");
        assert!(problems[2].what.contains("`x9`"));
        assert!(problems[3].what.contains("without a `dest`"));
        // A late reply to a request given up on is no problem.
        r.deliver(
            "n1",
            &format!(
                r#"{{"src":"n1","dest":"c3","body":{{"type":"echo_ok","in_reply_to":{id}}}}}"#
            ),
        );
        assert_eq!(r.problems().0, 4);
        // Received: the request by n1 and the reply by c3; the late reply
        // reached no one.
        assert_eq!(r.stats(1)["clients"]["recv_count"], 2);
    }

    #[tokio::test]
    async fn services_answer_the_node_that_asked() {
        let r = router();
        let mut n1 = plug(&r, "n1");
        r.deliver(
            "n1",
            r#"{"src":"n1","dest":"lin-tso","body":{"type":"ts","msg_id":4}}"#,
        );
        let reply: Value = serde_json::from_str(&n1.recv().await.unwrap()).unwrap();
        assert_eq!(reply["src"], "lin-tso");
        assert_eq!(reply["body"]["in_reply_to"], 4);
        assert_eq!(r.stats(0)["servers"]["send_count"], 2);
    }

    #[test]
    fn latency_follows_its_distribution() {
        let mut l = Links {
            cut: BTreeSet::new(),
            shape: LinkPolicy::default(),
            latency: Duration::from_millis(100),
            dist: LatencyDist::Exponential,
            rng: Rng::new(4),
        };
        let n = 20_000;
        let mean = (0..n)
            .map(|_| l.copies("a", "b", false)[0].as_secs_f64())
            .sum::<f64>()
            / n as f64;
        assert!((mean - 0.1).abs() < 0.005, "mean {mean}");
        l.dist = LatencyDist::Constant;
        assert_eq!(l.copies("a", "b", true), vec![Duration::from_millis(100)]);
        assert!(LatencyDist::parse("gaussian")
            .unwrap_err()
            .contains("exponential"));
    }
}
