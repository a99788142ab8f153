//! Workload `queue`: producers send unique messages (a few of them poison, which
//! no consumer ever acknowledges) to the broker; consumers in two groups poll,
//! acknowledge, and sometimes crash before acknowledging, so the broker must
//! deliver again after the visibility timeout and dead-letter the poison. At the
//! end each group drains what is left; the checkers then account for every
//! message (see [`checks`]).

pub mod checks;
mod generator;

use std::sync::Arc;
use std::time::{Duration, Instant};

use checker::{CheckOptions, History};
use serde_json::{json, Value};

use crate::http::Nodes;
use crate::{
    BoxFut, Checked, Client, Completion, Endpoint, Generator, Invocation, Session, Workload,
    WorkloadOptions,
};

pub use generator::QueueGenerator;

/// The topic every op uses.
pub const TOPIC: &str = "queue";
/// The consumer groups (each sees every message).
pub const GROUPS: [&str; 2] = ["g1", "g2"];
/// How long a delivered message stays invisible before redelivery.
pub const VISIBILITY_MS: u64 = 400;
/// A drain ends after this long without a message, or after [`DRAIN_MAX`].
const DRAIN_QUIET: Duration = Duration::from_millis(1500);
const DRAIN_MAX: Duration = Duration::from_secs(20);

/// The `queue` workload.
pub struct QueueWorkload;

impl Workload for QueueWorkload {
    fn name(&self) -> &'static str {
        "queue"
    }

    fn generator(&self, options: &WorkloadOptions) -> Box<dyn Generator> {
        Box::new(QueueGenerator::new(options.keys.max(1)))
    }

    fn client(&self, nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client> {
        Arc::new(QueueClient {
            http: crate::http::client(options),
            nodes: Arc::new(nodes),
        })
    }

    fn model(&self) -> &'static str {
        "none"
    }

    fn check(&self, history: &History, _options: &CheckOptions) -> Result<Checked, String> {
        Ok(checks::check(history))
    }
}

struct QueueClient {
    http: crate::http::Http,
    nodes: Arc<Vec<Endpoint>>,
}

impl Client for QueueClient {
    fn open(&self, process: u64) -> Box<dyn Session> {
        Box::new(QueueSession {
            nodes: Nodes::new(self.http.clone(), self.nodes.clone(), process),
            process,
        })
    }
}

struct QueueSession {
    nodes: Nodes,
    process: u64,
}

fn field(v: &Value, name: &str) -> Value {
    v.get(name).cloned().unwrap_or(Value::Null)
}

/// A delivered message as the history records it: where it sits, which message
/// it is, and the how-manyth delivery to its group.
fn delivered(m: &Value) -> Value {
    json!({"partition": field(m, "partition"), "offset": field(m, "offset"),
           "id": field(&field(m, "value"), "id"), "poison": field(&field(m, "value"), "poison"),
           "delivery": field(m, "delivery")})
}

impl QueueSession {
    async fn call(&mut self, op: &Invocation) -> (Result<Value, Completion>, Option<String>) {
        let v = &op.value;
        let (answer, node) = self
            .nodes
            .call(|http, base| {
                let topic = format!("{base}/topics/{TOPIC}");
                match op.f.as_str() {
                    "send" => http.post(format!("{topic}/produce")).json(&json!({
                        "key": op.key, "value": {"id": field(v, "id"), "poison": field(v, "poison")}
                    })),
                    "poll" => http.post(format!("{topic}/poll")).json(&json!({
                        "group": field(v, "group"), "consumer": field(v, "consumer"),
                        "max": 10, "visibility_ms": VISIBILITY_MS
                    })),
                    "ack" => http.post(format!("{topic}/ack")).json(&json!({
                        "group": field(v, "group"), "partition": field(v, "partition"),
                        "offset": field(v, "offset")
                    })),
                    "read-group" => http.get(format!(
                        "{topic}/groups/{}",
                        field(v, "group").as_str().unwrap_or("")
                    )),
                    _ => http.get(topic),
                }
            })
            .await;
        (answer.map_err(|(done, _)| done), node)
    }

    /// Polls and acknowledges (all but poison) until the group stays empty, then
    /// reads the group's state: one op whose output lists all it saw.
    async fn drain(&mut self, op: &Invocation) -> (Completion, Option<String>) {
        let group = field(&op.value, "group");
        let consumer = json!(format!("p{}-drain", self.process));
        let (mut seen, mut acked) = (Vec::new(), Vec::new());
        let started = Instant::now();
        let mut last = Instant::now();
        let mut node = None;
        while last.elapsed() < DRAIN_QUIET && started.elapsed() < DRAIN_MAX {
            let poll = Invocation {
                f: "poll".into(),
                key: None,
                value: json!({"group": group, "consumer": consumer}),
            };
            let (answer, n) = self.call(&poll).await;
            node = n.or(node);
            let messages = match answer {
                Ok(body) => body["messages"].as_array().cloned().unwrap_or_default(),
                // Deliveries it did not see come back after their visibility
                // timeout: try again while there is time.
                Err(_) if started.elapsed() < DRAIN_MAX => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(_) => return (Completion::Info("drain interrupted".into()), node),
            };
            if messages.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            last = Instant::now();
            for m in &messages {
                let d = delivered(m);
                seen.push(d.clone());
                if d["poison"] == json!(true) {
                    continue;
                }
                let ack = Invocation {
                    f: "ack".into(),
                    key: None,
                    value: json!({"group": group, "partition": d["partition"], "offset": d["offset"]}),
                };
                // Acks settle a message however often they are repeated.
                let mut tries = 0;
                loop {
                    match self.call(&ack).await.0 {
                        Ok(_) => {
                            acked.push(json!([d["partition"], d["offset"]]));
                            break;
                        }
                        // A refusal that answers (dead-lettered meanwhile) settles it too.
                        Err(Completion::Fail(e)) if crate::is_answer(&e) => break,
                        Err(_) if tries < 10 && started.elapsed() < DRAIN_MAX => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(_) => return (Completion::Info("drain interrupted".into()), node),
                    }
                }
            }
        }
        let read = Invocation {
            f: "read-group".into(),
            key: None,
            value: json!({"group": group}),
        };
        match self.call(&read).await.0 {
            Ok(state) => (
                Completion::Ok(json!({"delivered": seen, "acked": acked, "state": state})),
                node,
            ),
            Err(_) => (Completion::Info("drain interrupted".into()), node),
        }
    }

    async fn attempt(&mut self, op: &Invocation) -> (Completion, Option<String>) {
        if op.f == "drain" {
            return self.drain(op).await;
        }
        let (answer, node) = self.call(op).await;
        let done = match (op.f.as_str(), answer) {
            ("send", Ok(body)) => Completion::Ok(json!({
                "id": field(&op.value, "id"),
                "partition": field(&body, "partition"),
                "offset": field(&body, "offset"),
            })),
            ("poll", Ok(body)) => {
                let messages: Vec<Value> = body["messages"]
                    .as_array()
                    .map(|a| a.iter().map(delivered).collect())
                    .unwrap_or_default();
                Completion::Ok(json!({"messages": messages}))
            }
            ("ack", Ok(_)) => Completion::Ok(op.value.clone()),
            (_, Ok(body)) => Completion::Ok(body),
            (_, Err(done)) => done,
        };
        (done, node)
    }
}

impl Session for QueueSession {
    fn invoke<'a>(&'a mut self, op: &'a Invocation) -> BoxFut<'a, (Completion, Option<String>)> {
        Box::pin(self.attempt(op))
    }
}
