//! Workload `kv`: read, write and cas on independent keys of the Raft KV, checked
//! for linearizability key by key (model `kv`).
//!
//! A few keys are live at once so processes contend on them; each key takes a
//! bounded number of ops and is then retired for a fresh one, which keeps every
//! key's history small enough to check exhaustively.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    BoxFut, Client, Completion, Endpoint, Generator, Invocation, Rng, Session, Workload,
    WorkloadOptions,
};

/// The `kv` workload.
pub struct Kv;

impl Workload for Kv {
    fn name(&self) -> &'static str {
        "kv"
    }

    fn generator(&self, options: &WorkloadOptions) -> Box<dyn Generator> {
        Box::new(KvGenerator {
            live: Vec::new(),
            keys: options.keys.max(1),
            ops_per_key: options.ops_per_key.max(1),
            next_key: 0,
        })
    }

    fn client(&self, nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client> {
        let http = reqwest::Client::builder()
            .timeout(options.op_timeout)
            .connect_timeout(std::time::Duration::from_millis(500))
            .pool_max_idle_per_host(256)
            .build()
            .unwrap_or_default();
        Arc::new(KvClient {
            http,
            nodes: Arc::new(nodes),
        })
    }

    fn model(&self) -> &'static str {
        "kv"
    }
}

/// Ops over a sliding set of live keys.
pub struct KvGenerator {
    live: Vec<(u64, usize)>,
    keys: usize,
    ops_per_key: usize,
    next_key: u64,
}

impl Generator for KvGenerator {
    fn next(&mut self, rng: &mut Rng) -> Option<Invocation> {
        while self.live.len() < self.keys {
            self.live.push((self.next_key, self.ops_per_key));
            self.next_key += 1;
        }
        let slot = rng.below(self.live.len() as u64) as usize;
        let key = self.live[slot].0;
        self.live[slot].1 -= 1;
        if self.live[slot].1 == 0 {
            self.live.swap_remove(slot);
        }
        let roll = rng.below(10);
        let (f, value) = if roll < 4 {
            ("read", Value::Null)
        } else if roll < 7 {
            ("write", json!(rng.below(5)))
        } else {
            ("cas", json!([rng.below(5), rng.below(5)]))
        };
        Some(Invocation {
            f: f.to_string(),
            key: Some(format!("k{key}")),
            value,
        })
    }

    fn final_ops(&self) -> Vec<Invocation> {
        (0..self.next_key)
            .map(|k| Invocation {
                f: "read".into(),
                key: Some(format!("k{k}")),
                value: Value::Null,
            })
            .collect()
    }
}

struct KvClient {
    http: reqwest::Client,
    nodes: Arc<Vec<Endpoint>>,
}

impl Client for KvClient {
    fn open(&self, process: u64) -> Box<dyn Session> {
        let target = (process as usize) % self.nodes.len().max(1);
        Box::new(KvSession {
            http: self.http.clone(),
            nodes: self.nodes.clone(),
            target,
        })
    }
}

struct KvSession {
    http: reqwest::Client,
    nodes: Arc<Vec<Endpoint>>,
    target: usize,
}

/// Redirects followed within one op (the op's interval covers them all).
const REDIRECTS: usize = 2;

impl KvSession {
    fn rotate(&mut self) {
        self.target = (self.target + 1) % self.nodes.len().max(1);
    }

    async fn attempt(&mut self, op: &Invocation) -> (Completion, Option<String>) {
        let key = op.key.clone().unwrap_or_default();
        for _ in 0..=REDIRECTS {
            let node = &self.nodes[self.target];
            let id = Some(node.id.clone());
            let url = format!("{}/kv/{key}", node.url);
            let request = match op.f.as_str() {
                "read" => self.http.get(&url),
                "write" => self.http.put(&url).json(&json!({"value": op.value})),
                "cas" => {
                    let pair = op.value.as_array().cloned().unwrap_or_default();
                    let (a, b) = (
                        pair.first().cloned().unwrap_or(Value::Null),
                        pair.get(1).cloned().unwrap_or(Value::Null),
                    );
                    self.http
                        .post(format!("{url}/cas"))
                        .json(&json!({"expected": a, "new": b}))
                }
                other => return (Completion::Fail(format!("kv has no op `{other}`")), None),
            };
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) if e.is_connect() => {
                    // Nothing was sent: a definite failure; try another node next time,
                    // after a pause so a dead cluster is not hammered.
                    self.rotate();
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    return (Completion::Fail("connect failed".into()), id);
                }
                Err(e) if e.is_timeout() => return (Completion::Info("timeout".into()), id),
                Err(e) => return (Completion::Info(format!("request failed: {e}")), id),
            };
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let definite = body.get("definite").and_then(Value::as_bool);
            match status {
                StatusCode::OK => {
                    let out = if op.f == "read" {
                        body.get("value").cloned().unwrap_or(Value::Null)
                    } else {
                        op.value.clone()
                    };
                    return (Completion::Ok(out), id);
                }
                StatusCode::MISDIRECTED_REQUEST => {
                    let leader = body.get("leader").and_then(Value::as_str);
                    match leader.and_then(|l| self.nodes.iter().position(|n| n.id == l)) {
                        Some(i) if i != self.target => {
                            self.target = i;
                            continue;
                        }
                        _ => {
                            self.rotate();
                            return (Completion::Fail("not-leader".into()), id);
                        }
                    }
                }
                StatusCode::CONFLICT => {
                    return (Completion::Fail("precondition-failed".into()), id)
                }
                s => {
                    let code = body
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("error")
                        .to_string();
                    let definite = definite
                        .unwrap_or(s.is_client_error() || s == StatusCode::SERVICE_UNAVAILABLE);
                    if s == StatusCode::SERVICE_UNAVAILABLE {
                        self.rotate();
                    }
                    return if definite {
                        (Completion::Fail(code), id)
                    } else {
                        (Completion::Info(code), id)
                    };
                }
            }
        }
        (Completion::Fail("not-leader".into()), None)
    }
}

impl Session for KvSession {
    fn invoke<'a>(&'a mut self, op: &'a Invocation) -> BoxFut<'a, (Completion, Option<String>)> {
        Box::pin(self.attempt(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_bounds_ops_per_key_and_replays_from_the_seed() {
        let opts = WorkloadOptions {
            keys: 3,
            ops_per_key: 10,
            op_timeout: std::time::Duration::from_secs(1),
        };
        let run = |seed| {
            let mut g = Kv.generator(&opts);
            let mut rng = Rng::new(seed);
            (0..100)
                .map(|_| g.next(&mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        let ops = run(5);
        assert_eq!(ops, run(5));
        let mut per_key = std::collections::BTreeMap::new();
        for op in &ops {
            *per_key.entry(op.key.clone().unwrap()).or_insert(0) += 1;
        }
        assert!(per_key.values().all(|&n| n <= 10), "{per_key:?}");
        assert!(per_key.len() >= 10, "{per_key:?}");
        let fs: std::collections::BTreeSet<&str> = ops.iter().map(|o| o.f.as_str()).collect();
        assert_eq!(fs.len(), 3);
    }
}
