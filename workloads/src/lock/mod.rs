//! Workload `lock`: clients take leased locks on the lock manager, write to the
//! register each lock protects through their fencing token, and give the lock
//! back. Some take two locks in either order and wait for the second, so deadlocks
//! arise and must be refused; some pause past their lease before writing (a GC
//! pause), so a stale token must be refused.
//!
//! Checkers (see [`checks`]): mutual exclusion as linearizability against the
//! `mutex` model, fencing tokens increasing per lock, the protected registers
//! never accepting a stale token nor losing an acknowledged write, and no wait
//! that closed a cycle going unrefused.

pub mod checks;
mod generator;

use std::sync::Arc;
use std::time::Duration;

use checker::{CheckOptions, History};
use serde_json::{json, Value};

use crate::http::Nodes;
use crate::{
    BoxFut, Checked, Client, Completion, Endpoint, Generator, Invocation, Session, Workload,
    WorkloadOptions,
};

pub use generator::LockGenerator;

/// Lease length clients ask for.
pub const TTL_MS: u64 = 1000;
/// How long a client that was told `queued` waits before asking again.
pub const RETRY_MS: u64 = 25;

/// The `lock` workload.
pub struct LockWorkload;

impl Workload for LockWorkload {
    fn name(&self) -> &'static str {
        "lock"
    }

    fn generator(&self, options: &WorkloadOptions) -> Box<dyn Generator> {
        Box::new(LockGenerator::new(options.keys.max(1)))
    }

    fn client(&self, nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client> {
        Arc::new(LockClient {
            http: crate::http::client(options),
            nodes: Arc::new(nodes),
        })
    }

    fn model(&self) -> &'static str {
        "mutex"
    }

    fn check(&self, history: &History, options: &CheckOptions) -> Result<Checked, String> {
        checks::check(history, options)
    }
}

struct LockClient {
    http: crate::http::Http,
    nodes: Arc<Vec<Endpoint>>,
}

impl Client for LockClient {
    fn open(&self, process: u64) -> Box<dyn Session> {
        Box::new(LockSession {
            nodes: Nodes::new(self.http.clone(), self.nodes.clone(), process),
        })
    }
}

struct LockSession {
    nodes: Nodes,
}

fn field(v: &Value, name: &str) -> Value {
    v.get(name).cloned().unwrap_or(Value::Null)
}

impl LockSession {
    async fn attempt(&mut self, op: &Invocation) -> (Completion, Option<String>) {
        let key = op.key.clone().unwrap_or_default();
        if op.f == "write" {
            // A client stalled between taking its token and using it.
            if let Some(ms) = op.value.get("pause_ms").and_then(Value::as_u64) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        let v = &op.value;
        let (answer, node) = self
            .nodes
            .call(|http, base| match op.f.as_str() {
                "acquire" => http.post(format!("{base}/locks/{key}/acquire")).json(&json!({
                    "owner": field(v, "owner"), "ttl_ms": field(v, "ttl_ms"), "wait": field(v, "wait")
                })),
                "release" => http
                    .post(format!("{base}/locks/{key}/release"))
                    .json(&json!({"owner": field(v, "owner")})),
                "cancel" => http
                    .post(format!("{base}/locks/{key}/cancel"))
                    .json(&json!({"owner": field(v, "owner")})),
                "write" => http
                    .put(format!("{base}/fenced/{key}"))
                    .json(&json!({"token": field(v, "token"), "value": field(v, "value")})),
                _ => http.get(format!("{base}/fenced/{key}")),
            })
            .await;
        let done = match (op.f.as_str(), answer) {
            ("acquire", Ok(body)) => {
                let mut out = json!({
                    "token": field(&body, "token"),
                    "took_over": body.get("took_over").cloned().unwrap_or(json!(false)),
                });
                if body.get("renewed") == Some(&json!(true)) {
                    out["renewed"] = json!(true);
                }
                Completion::Ok(out)
            }
            ("read", Ok(body)) => Completion::Ok(body),
            ("write", Ok(_)) => Completion::Ok(op.value.clone()),
            (_, Ok(_)) => Completion::Ok(Value::Null),
            (_, Err((Completion::Fail(code), body))) if code == "queued" => {
                // The wait is registered: it took effect, so it is an `ok` op that
                // names the holders it waits for; ask again after a moment.
                tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
                Completion::Ok(json!({"queued": true, "holders": field(&body, "holders")}))
            }
            (_, Err((done, _))) => done,
        };
        (done, node)
    }
}

impl Session for LockSession {
    fn invoke<'a>(&'a mut self, op: &'a Invocation) -> BoxFut<'a, (Completion, Option<String>)> {
        Box::pin(self.attempt(op))
    }
}
