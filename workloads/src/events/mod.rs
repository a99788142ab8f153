//! Workload `events`: appenders race on a few streams with the expected
//! version each last saw (so conflicts happen), readers read streams,
//! subscribers consume the global log through catch-up subscriptions and
//! acknowledge what they handled. At the end: every stream, the global log,
//! each stream's aggregate (snapshot plus tail) and the projection are read,
//! and each subscription drained. The checkers are in [`checks`].

pub mod checks;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use checker::{CheckOptions, History};
use serde_json::{json, Value};

use crate::http::Nodes;
use crate::{
    BoxFut, Checked, Client, Completion, Endpoint, Generator, Invocation, Rng, Session, Workload,
    WorkloadOptions,
};

/// Customers the events name (the projection counts orders per customer).
const CUSTOMERS: u64 = 5;
/// Events one read of a stream asks for, newest first.
const READ_MAX: u64 = 10;
/// Events one consume asks for.
const BATCH: u64 = 20;
/// How long a consume waits for new events.
const WAIT_MS: u64 = 200;
/// A drain ends at an empty poll, or after this long.
const DRAIN_MAX: Duration = Duration::from_secs(20);
/// Every so many processes, one subscribes instead of appending.
const SUBSCRIBER_EVERY: u64 = 5;

/// The `events` workload.
pub struct EventsWorkload;

impl Workload for EventsWorkload {
    fn name(&self) -> &'static str {
        "events"
    }

    fn generator(&self, options: &WorkloadOptions) -> Box<dyn Generator> {
        Box::new(EventsGenerator::new(options.keys.clamp(1, 50)))
    }

    fn client(&self, nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client> {
        Arc::new(EventsClient {
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

/// The stream named by number.
pub fn stream(n: u64) -> String {
    format!("s{n}")
}

/// What each process knows of each stream's length, and the subscriptions made.
pub struct EventsGenerator {
    streams: u64,
    known: BTreeMap<(u64, u64), u64>,
    next_id: u64,
    subscribed: BTreeSet<u64>,
    /// Every subscription asked for (even with an unknown outcome).
    subscriptions: BTreeSet<String>,
}

impl EventsGenerator {
    /// Over `streams` streams.
    pub fn new(streams: usize) -> Self {
        EventsGenerator {
            streams: streams as u64,
            known: BTreeMap::new(),
            next_id: 0,
            subscribed: BTreeSet::new(),
            subscriptions: BTreeSet::new(),
        }
    }
}

fn subscription(process: u64) -> String {
    format!("sub-p{process}")
}

impl Generator for EventsGenerator {
    fn next(&mut self, process: u64, rng: &mut Rng) -> Option<Invocation> {
        // Process 1 is one, so two clients already have a subscriber, and
        // a single client only appends and reads (no conflicts at all).
        if process % SUBSCRIBER_EVERY == 1 {
            let name = subscription(process);
            if !self.subscribed.contains(&process) {
                self.subscriptions.insert(name.clone());
                return Some(Invocation {
                    f: "subscribe".into(),
                    key: None,
                    value: json!({"name": name, "from": 0}),
                });
            }
            return Some(Invocation {
                f: "consume".into(),
                key: None,
                value: json!({"name": name}),
            });
        }
        let s = rng.below(self.streams);
        if rng.below(4) == 0 {
            return Some(Invocation {
                f: "read".into(),
                key: None,
                value: json!({"stream": stream(s)}),
            });
        }
        // Mostly conditional on what this process last saw; a few blind.
        let expected = if rng.below(8) == 0 {
            Value::Null
        } else {
            json!(self.known.get(&(process, s)).copied().unwrap_or(0))
        };
        let events: Vec<Value> = (0..1 + rng.below(2))
            .map(|_| {
                self.next_id += 1;
                let kind = if rng.below(4) == 0 {
                    "order-paid"
                } else {
                    "order-placed"
                };
                json!({"type": kind, "data": {"id": format!("e{}", self.next_id),
                       "customer": format!("c{}", rng.below(CUSTOMERS)),
                       "amount": 1 + rng.below(10)}})
            })
            .collect();
        Some(Invocation {
            f: "append".into(),
            key: None,
            value: json!({"stream": stream(s), "expected": expected, "events": events}),
        })
    }

    fn completed(&mut self, process: u64, op: &Invocation, done: &Completion) {
        let s = op.value["stream"]
            .as_str()
            .and_then(|s| s.strip_prefix('s'))
            .and_then(|n| n.parse::<u64>().ok());
        match (op.f.as_str(), done) {
            ("subscribe", Completion::Ok(_)) => {
                self.subscribed.insert(process);
            }
            ("append" | "read", Completion::Ok(v)) => {
                if let (Some(s), Some(version)) = (s, v["version"].as_u64()) {
                    self.known.insert((process, s), version);
                }
            }
            ("append", Completion::Fail(e)) => {
                let current = e
                    .strip_prefix("wrong-expected-version: current ")
                    .and_then(|n| n.parse::<u64>().ok());
                if let (Some(s), Some(c)) = (s, current) {
                    self.known.insert((process, s), c);
                }
            }
            _ => {}
        }
    }

    fn final_ops(&self) -> Vec<Invocation> {
        let mut ops = vec![Invocation {
            f: "read-all".into(),
            key: None,
            value: Value::Null,
        }];
        for s in 0..self.streams {
            ops.push(Invocation {
                f: "state".into(),
                key: None,
                value: json!({"stream": stream(s)}),
            });
        }
        ops.push(Invocation {
            f: "projection".into(),
            key: None,
            value: Value::Null,
        });
        for name in &self.subscriptions {
            ops.push(Invocation {
                f: "drain".into(),
                key: None,
                value: json!({"name": name}),
            });
        }
        ops
    }
}

struct EventsClient {
    http: crate::http::Http,
    nodes: Arc<Vec<Endpoint>>,
}

impl Client for EventsClient {
    fn open(&self, process: u64) -> Box<dyn Session> {
        Box::new(EventsSession {
            nodes: Nodes::new(self.http.clone(), self.nodes.clone(), process),
        })
    }
}

struct EventsSession {
    nodes: Nodes,
}

/// An event as the history keeps it: [position, stream, version, id].
fn brief(e: &Value) -> Value {
    json!([e["position"], e["stream"], e["version"], e["data"]["id"]])
}

type Answer = (Result<Value, (Completion, Value)>, Option<String>);

impl EventsSession {
    async fn get(&mut self, path: String) -> Answer {
        self.nodes
            .call(|http, base| http.get(format!("{base}{path}")))
            .await
    }

    async fn post(&mut self, path: String, body: Value) -> Answer {
        self.nodes
            .call(|http, base| http.post(format!("{base}{path}")).json(&body))
            .await
    }

    /// One poll and the acknowledgement of what it delivered.
    async fn consume(&mut self, name: &str) -> (Completion, Option<String>) {
        let (poll, node) = self
            .post(
                format!("/events/subscriptions/{name}/poll"),
                json!({"max": BATCH, "wait_ms": WAIT_MS}),
            )
            .await;
        let body = match poll {
            Ok(b) => b,
            Err((done, _)) => return (done, node),
        };
        let events: Vec<Value> = body["events"]
            .as_array()
            .into_iter()
            .flatten()
            .map(brief)
            .collect();
        let Some(last) = events.last().map(|e| e[0].clone()) else {
            return (
                Completion::Ok(
                    json!({"events": [], "acked": null, "ack": null, "end": body["end"]}),
                ),
                node,
            );
        };
        let (ack, node) = self
            .post(
                format!("/events/subscriptions/{name}/ack"),
                json!({ "position": last }),
            )
            .await;
        let ack = match ack {
            Ok(_) => "ok",
            Err((Completion::Fail(_), _)) => "fail",
            Err(_) => "info",
        };
        (
            Completion::Ok(json!({"events": events, "acked": last, "ack": ack})),
            node,
        )
    }

    async fn drain(&mut self, name: &str) -> (Completion, Option<String>) {
        let started = Instant::now();
        let mut batches = Vec::new();
        let mut node = None;
        while started.elapsed() < DRAIN_MAX {
            let (done, n) = self.consume(name).await;
            node = n.or(node);
            match done {
                Completion::Ok(v) => {
                    let empty = v["events"].as_array().is_none_or(Vec::is_empty);
                    batches.push(v);
                    if empty {
                        return (Completion::Ok(json!({ "batches": batches })), node);
                    }
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        (
            Completion::Ok(json!({"batches": batches, "unfinished": true})),
            node,
        )
    }

    async fn read_all(&mut self) -> (Completion, Option<String>) {
        let mut events = Vec::new();
        let mut node = None;
        loop {
            let (answer, n) = self.get(format!("/events/all?from={}", events.len())).await;
            node = n.or(node);
            let page = match answer {
                Ok(b) => b["events"].as_array().cloned().unwrap_or_default(),
                Err((done, _)) => return (done, node),
            };
            if page.is_empty() {
                return (Completion::Ok(json!({ "events": events })), node);
            }
            events.extend(page.iter().map(|e| {
                json!([
                    e["position"],
                    e["stream"],
                    e["version"],
                    e["data"]["id"],
                    e["type"],
                    e["data"]["customer"],
                    e["data"]["amount"]
                ])
            }));
        }
    }

    /// A stream's aggregate and, right after, its events: the checker folds
    /// the events and compares.
    async fn state(&mut self, name: &str) -> (Completion, Option<String>) {
        let (state, node) = self.get(format!("/events/streams/{name}/state")).await;
        let state = match state {
            Ok(s) => s,
            Err((done, _)) => return (done, node),
        };
        let mut events = Vec::new();
        let read_version = loop {
            let (page, n) = self
                .get(format!("/events/streams/{name}?from={}", events.len()))
                .await;
            let page = match page {
                Ok(p) => p,
                Err((done, _)) => return (done, n.or(node)),
            };
            let got = page["events"].as_array().cloned().unwrap_or_default();
            if got.is_empty() {
                break page["version"].clone();
            }
            events.extend(got.iter().map(|e| {
                json!([
                    e["position"],
                    e["stream"],
                    e["version"],
                    e["data"]["id"],
                    e["type"],
                    e["data"]["amount"]
                ])
            }));
        };
        (
            Completion::Ok(json!({"state": state["state"], "version": state["version"],
                "snapshot_version": state["snapshot_version"],
                "read_version": read_version, "events": events})),
            node,
        )
    }
}

impl Session for EventsSession {
    fn invoke<'a>(&'a mut self, op: &'a Invocation) -> BoxFut<'a, (Completion, Option<String>)> {
        Box::pin(async move {
            let v = &op.value;
            let stream = v["stream"].as_str().unwrap_or_default().to_string();
            let name = v["name"].as_str().unwrap_or_default().to_string();
            let simple = |answer: Answer, keep: &dyn Fn(Value) -> Value| match answer {
                (Ok(b), node) => (Completion::Ok(keep(b)), node),
                (Err((done, _)), node) => (done, node),
            };
            match op.f.as_str() {
                "append" => {
                    let body = json!({"expected": v["expected"], "events": v["events"]});
                    match self
                        .post(format!("/events/streams/{stream}/append"), body)
                        .await
                    {
                        (Err((Completion::Fail(code), b)), node)
                            if code == "wrong-expected-version" =>
                        {
                            let current = b["current"].as_u64().unwrap_or(0);
                            (Completion::Fail(format!("{code}: current {current}")), node)
                        }
                        other => simple(other, &|b| b),
                    }
                }
                "read" => {
                    // The newest few, so the history stays small however
                    // long the streams grow.
                    let path =
                        format!("/events/streams/{stream}?direction=backwards&max={READ_MAX}");
                    let answer = self.get(path).await;
                    simple(answer, &|b| {
                        let events: Vec<Value> = b["events"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(brief)
                            .collect();
                        json!({"version": b["version"], "events": events, "backwards": true})
                    })
                }
                "subscribe" => {
                    let answer = self
                        .post(
                            format!("/events/subscriptions/{name}"),
                            json!({"from": v["from"]}),
                        )
                        .await;
                    simple(answer, &|b| b)
                }
                "consume" => self.consume(&name).await,
                "drain" => self.drain(&name).await,
                "read-all" => self.read_all().await,
                "state" => self.state(&stream).await,
                "projection" => {
                    let answer = self.get("/events/projections/orders".into()).await;
                    simple(answer, &|b| b)
                }
                other => (Completion::Fail(format!("unknown op `{other}`")), None),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_expect_what_the_process_last_saw_and_subscribers_subscribe_first() {
        let mut g = EventsGenerator::new(1);
        let mut rng = Rng::new(5);
        let sub = g.next(6, &mut rng).unwrap();
        assert_eq!(sub.f, "subscribe");
        g.completed(6, &sub, &Completion::Ok(json!({"next": 0})));
        assert_eq!(g.next(6, &mut rng).unwrap().f, "consume");
        let mut conditional = 0;
        for _ in 0..100 {
            let op = g.next(2, &mut rng).unwrap();
            if op.f != "append" {
                continue;
            }
            if let Some(e) = op.value["expected"].as_u64() {
                conditional += 1;
                assert_eq!(e, g.known.get(&(2, 0)).copied().unwrap_or(0));
            }
            g.completed(
                2,
                &op,
                &Completion::Fail("wrong-expected-version: current 7".into()),
            );
            assert_eq!(g.known[&(2, 0)], 7);
            g.completed(2, &op, &Completion::Ok(json!({"version": 9})));
            assert_eq!(g.known[&(2, 0)], 9);
        }
        assert!(conditional > 40, "{conditional}");
        let finals: Vec<String> = g.final_ops().into_iter().map(|o| o.f).collect();
        assert_eq!(finals, ["read-all", "state", "projection", "drain"]);
    }
}
