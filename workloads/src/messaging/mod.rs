//! Workload `messaging`: each process is bound to one member and sends
//! messages from it to a member it picks (`POST /cluster/send`) or broadcasts
//! to all (`POST /cluster/broadcast`). At the end it waits until no member has
//! a delivery in flight (or a bound passes), then reads every member's inbox.
//! The checkers are in [`checks`].

pub mod checks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use checker::{CheckOptions, History};
use serde_json::{json, Value};

use crate::{
    BoxFut, Checked, Client, Completion, Endpoint, Generator, Invocation, Rng, Session, Workload,
    WorkloadOptions,
};

/// Members a send may pick from (the client maps the index onto its nodes).
const MEMBERS: u64 = 64;
/// Out of 4 ops, how many are broadcasts.
const BROADCASTS_IN_4: u64 = 1;
/// The final wait for deliveries in flight ends here at the latest.
const SETTLE_MAX: Duration = Duration::from_secs(40);
/// How long a process waits after finding its member down.
const CONNECT_PAUSE: Duration = Duration::from_millis(50);
/// Deliveries one inbox read asks for.
const PAGE: u64 = 1_000;

/// The `messaging` workload.
pub struct MessagingWorkload;

impl Workload for MessagingWorkload {
    fn name(&self) -> &'static str {
        "messaging"
    }

    fn generator(&self, _options: &WorkloadOptions) -> Box<dyn Generator> {
        Box::new(MessagingGenerator::default())
    }

    fn client(&self, nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client> {
        // A member acknowledges a delivery or the sender gives up within the
        // op's time, so most sends end with a definite answer.
        let deadline = (options.op_timeout.as_millis() as u64 * 3 / 4).clamp(50, 60_000);
        Arc::new(MessagingClient {
            http: crate::http::client(options).raw(),
            nodes: Arc::new(nodes),
            deadline_ms: deadline,
        })
    }

    fn model(&self) -> &'static str {
        "none"
    }

    fn check(&self, history: &History, _options: &CheckOptions) -> Result<Checked, String> {
        Ok(checks::check(history))
    }
}

/// Numbers the messages.
#[derive(Default)]
pub struct MessagingGenerator {
    next: u64,
}

impl Generator for MessagingGenerator {
    fn next(&mut self, process: u64, rng: &mut Rng) -> Option<Invocation> {
        self.next += 1;
        let n = self.next;
        let body = json!({"p": process, "n": n});
        Some(if rng.below(4) < BROADCASTS_IN_4 {
            Invocation {
                f: "broadcast".into(),
                key: None,
                value: json!({"id": format!("b{n}"), "body": body}),
            }
        } else {
            Invocation {
                f: "send".into(),
                key: None,
                value: json!({"id": format!("m{n}"), "to": rng.below(MEMBERS), "body": body}),
            }
        })
    }

    fn final_ops(&self) -> Vec<Invocation> {
        vec![Invocation {
            f: "inboxes".into(),
            key: None,
            value: Value::Null,
        }]
    }
}

struct MessagingClient {
    http: reqwest::Client,
    nodes: Arc<Vec<Endpoint>>,
    deadline_ms: u64,
}

impl Client for MessagingClient {
    fn open(&self, process: u64) -> Box<dyn Session> {
        let n = self.nodes.len().max(1);
        Box::new(MessagingSession {
            http: self.http.clone(),
            nodes: self.nodes.clone(),
            home: process as usize % n,
            deadline_ms: self.deadline_ms,
        })
    }
}

/// One process: bound to its home member, moving on to the next when the
/// home cannot be reached (nothing was sent then).
struct MessagingSession {
    http: reqwest::Client,
    nodes: Arc<Vec<Endpoint>>,
    home: usize,
    deadline_ms: u64,
}

/// An answer: the body of a 200, or how the op ended.
type Answer = Result<Value, Completion>;

impl MessagingSession {
    /// The member a send's `to` index names (indexes wrap round the nodes).
    fn member(&self, k: &Value) -> Option<&Endpoint> {
        let k = k.as_u64()? as usize;
        self.nodes.get(k % self.nodes.len().max(1))
    }

    async fn post(&mut self, path: &str, body: Value) -> (Answer, Option<String>) {
        let node = &self.nodes[self.home];
        let id = Some(node.id.clone());
        let sent = self
            .http
            .post(format!("{}{path}", node.url))
            .json(&body)
            .send()
            .await;
        (self.decide(sent).await, id)
    }

    async fn get(&self, node: &Endpoint, path: &str) -> Answer {
        let sent = self.http.get(format!("{}{path}", node.url)).send().await;
        self.decide_at(sent).await
    }

    async fn decide(&mut self, sent: reqwest::Result<reqwest::Response>) -> Answer {
        if matches!(&sent, Err(e) if e.is_connect()) {
            // Nothing was sent. Move on, after a pause, so a cluster that is
            // all down is not hammered.
            self.home = (self.home + 1) % self.nodes.len().max(1);
            tokio::time::sleep(CONNECT_PAUSE).await;
        }
        self.decide_at(sent).await
    }

    async fn decide_at(&self, sent: reqwest::Result<reqwest::Response>) -> Answer {
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Err(Completion::Fail("connect failed".into())),
            Err(e) if e.is_timeout() => return Err(Completion::Info("timeout".into())),
            Err(e) => return Err(Completion::Info(format!("request failed: {e}"))),
        };
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        crate::http::decide(status, body).map_err(|(done, _)| done)
    }

    /// Waits until no reachable member has a delivery in flight, twice in a
    /// row, or [`SETTLE_MAX`] passes.
    async fn settle(&self) -> Completion {
        let started = Instant::now();
        let mut quiet = 0;
        let mut last = json!({});
        while started.elapsed() < SETTLE_MAX {
            let mut pending = 0;
            let mut seen = serde_json::Map::new();
            for node in self.nodes.iter() {
                if let Ok(s) = self.get(node, "/cluster/state").await {
                    let p = s["mailbox"]["pending"].as_u64().unwrap_or(0);
                    pending += p;
                    seen.insert(node.id.clone(), json!(p));
                }
            }
            last = Value::Object(seen);
            quiet = if pending == 0 { quiet + 1 } else { 0 };
            if quiet >= 2 {
                return Completion::Ok(json!({"settled": true, "pending": last}));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Completion::Ok(json!({"settled": false, "pending": last}))
    }

    /// Every delivery in `node`'s inbox, as [id, kind, origin, from, body].
    async fn inbox(&self, node: &Endpoint) -> Answer {
        let mut messages = Vec::new();
        loop {
            let path = format!("/cluster/inbox?from={}&max={PAGE}", messages.len());
            let page = self.get(node, &path).await?;
            let got = page["messages"].as_array().cloned().unwrap_or_default();
            if got.is_empty() {
                return Ok(json!(messages));
            }
            messages.extend(
                got.iter()
                    .map(|d| json!([d["id"], d["kind"], d["origin"], d["from"], d["body"]])),
            );
        }
    }

    /// After [`MessagingSession::settle`], every member's inbox; `members`
    /// lists them in the order a send's `to` index counts them.
    async fn inboxes(&self) -> Completion {
        let settled = self.settle().await;
        let mut inboxes = serde_json::Map::new();
        let mut unread = serde_json::Map::new();
        for node in self.nodes.iter() {
            match self.inbox(node).await {
                Ok(m) => {
                    inboxes.insert(node.id.clone(), m);
                }
                Err(Completion::Fail(e) | Completion::Info(e)) => {
                    unread.insert(node.id.clone(), json!(e));
                }
                Err(Completion::Ok(_)) => {}
            }
        }
        let members: Vec<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
        let settled = match settled {
            Completion::Ok(v) => v,
            _ => Value::Null,
        };
        Completion::Ok(json!({"members": members, "settle": settled,
                              "inboxes": inboxes, "unread": unread}))
    }
}

impl Session for MessagingSession {
    fn invoke<'a>(&'a mut self, op: &'a Invocation) -> BoxFut<'a, (Completion, Option<String>)> {
        Box::pin(async move {
            let v = &op.value;
            let deadline = self.deadline_ms;
            let (answer, node) = match op.f.as_str() {
                "send" => {
                    let Some(to) = self.member(&v["to"]).map(|e| e.id.clone()) else {
                        return (Completion::Fail("no members".into()), None);
                    };
                    let body = json!({"to": to, "id": v["id"], "body": v["body"],
                                      "deadline_ms": deadline});
                    self.post("/cluster/send", body).await
                }
                "broadcast" => {
                    let body = json!({"id": v["id"], "body": v["body"], "deadline_ms": deadline});
                    self.post("/cluster/broadcast", body).await
                }
                "inboxes" => return (self.inboxes().await, None),
                other => return (Completion::Fail(format!("unknown op {other}")), None),
            };
            match answer {
                Ok(b) if op.f == "send" => (Completion::Ok(json!({"to": b["to"]})), node),
                Ok(b) => (
                    Completion::Ok(
                        json!({"origin": b["origin"], "delivered_to": b["delivered_to"]}),
                    ),
                    node,
                ),
                Err(done) => (done, node),
            }
        })
    }
}
