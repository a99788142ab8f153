//! Nodes that speak Maelstrom's protocol: the workloads only they run (one
//! module each: [`echo`], [`unique_ids`], [`broadcast`] and g-set, [`counter`],
//! [`kafka`]) and the client of the `kv` and `txn` workloads for them (the
//! `lin-kv` workload's read, write, cas; the txn workloads' `txn`). The harness
//! routes every message; clients reach nodes through a [`Rpc`] it provides.
//! Maelstrom error codes say whether an operation certainly did not happen.

pub mod broadcast;
pub mod client;
pub mod counter;
pub mod echo;
pub mod kafka;
pub mod set_full;
pub mod unique_ids;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::{BoxFut, Client, Completion, Endpoint, Invocation, Session};

/// Sends a client's request to a node and waits for the reply.
pub trait Rpc: Send + Sync {
    /// Sends `body` (a `msg_id` is added) from client `client` to `node`;
    /// answers the reply's body, or `None` if none came within `timeout`.
    fn call<'a>(
        &'a self,
        client: &'a str,
        node: &'a str,
        body: Value,
        timeout: Duration,
    ) -> BoxFut<'a, Option<Value>>;
}

/// The router's client side, as a workload option.
#[derive(Clone)]
pub struct Link {
    /// Carries requests.
    pub rpc: Arc<dyn Rpc>,
    /// The broadcast topology asked for (`--topology`), if any.
    pub topology: Option<String>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("maelstrom::Link")
    }
}

/// Whether a Maelstrom error code means the operation certainly did not
/// happen: the codes Maelstrom defines as definite (node not found, not
/// supported, temporarily unavailable, malformed request, abort, key does not
/// exist, key already exists, precondition failed, txn conflict). Timeouts
/// (0), crashes (13), custom codes (1000 and up) and any other are not.
pub fn definite(code: i64) -> bool {
    matches!(code, 1 | 10 | 11 | 12 | 14 | 20 | 21 | 22 | 30)
}

/// Maelstrom keys are often integers: `k12` travels as 12.
fn wire_key(key: &str) -> Value {
    key.strip_prefix('k')
        .and_then(|n| n.parse::<i64>().ok())
        .map_or(json!(key), |n| json!(n))
}

/// Makes sessions whose clients are `c<process>`.
pub struct MaelstromKvClient {
    link: Link,
    nodes: Arc<Vec<Endpoint>>,
    timeout: Duration,
}

impl MaelstromKvClient {
    /// A client for `nodes` through `link`.
    pub fn new(link: Link, nodes: Vec<Endpoint>, timeout: Duration) -> Self {
        MaelstromKvClient {
            link,
            nodes: Arc::new(nodes),
            timeout,
        }
    }
}

impl Client for MaelstromKvClient {
    fn open(&self, process: u64) -> Box<dyn Session> {
        Box::new(MaelstromSession {
            link: self.link.clone(),
            nodes: self.nodes.clone(),
            client: format!("c{}", process + 1),
            target: process as usize % self.nodes.len().max(1),
            timeout: self.timeout,
        })
    }
}

struct MaelstromSession {
    link: Link,
    nodes: Arc<Vec<Endpoint>>,
    client: String,
    target: usize,
    timeout: Duration,
}

impl MaelstromSession {
    async fn attempt(&mut self, op: &Invocation) -> (Completion, Option<String>) {
        let key = wire_key(&op.key.clone().unwrap_or_default());
        let body = match op.f.as_str() {
            "read" => json!({"type": "read", "key": key}),
            "write" => json!({"type": "write", "key": key, "value": op.value}),
            "cas" => {
                let pair = op.value.as_array().cloned().unwrap_or_default();
                json!({"type": "cas", "key": key,
                       "from": pair.first().cloned().unwrap_or(Value::Null),
                       "to": pair.get(1).cloned().unwrap_or(Value::Null)})
            }
            "txn" => json!({"type": "txn", "txn": op.value}),
            other => return (Completion::Fail(format!("kv has no op `{other}`")), None),
        };
        let node = self.nodes[self.target].id.clone();
        let reply = self
            .link
            .rpc
            .call(&self.client, &node, body, self.timeout)
            .await;
        let is_read = op.f == "read";
        let done = match reply {
            None if is_read => Completion::Fail("no reply".into()),
            None => Completion::Info("no reply".into()),
            Some(r) if r["type"] == "error" => {
                let code = r["code"].as_i64().unwrap_or(13);
                let detail = r["text"].as_str().unwrap_or("");
                let text = if code == 22 {
                    // The cas did not match: an answer, named as our clients name it.
                    format!("precondition-failed: error 22: {detail}")
                } else {
                    format!("error {code}: {detail}")
                };
                if code == 20 && is_read {
                    Completion::Ok(Value::Null) // key-does-not-exist
                } else if definite(code) || is_read {
                    Completion::Fail(text)
                } else {
                    Completion::Info(text)
                }
            }
            Some(r) if is_read => Completion::Ok(r.get("value").cloned().unwrap_or(Value::Null)),
            Some(r) if op.f == "txn" => {
                Completion::Ok(r.get("txn").cloned().unwrap_or(Value::Null))
            }
            Some(_) => Completion::Ok(op.value.clone()),
        };
        if !matches!(done, Completion::Ok(_)) {
            self.target = (self.target + 1) % self.nodes.len().max(1);
        }
        (done, Some(node))
    }
}

impl Session for MaelstromSession {
    fn invoke<'a>(&'a mut self, op: &'a Invocation) -> BoxFut<'a, (Completion, Option<String>)> {
        Box::pin(self.attempt(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_error_codes_map_as_maelstrom_defines_them() {
        assert_eq!(wire_key("k12"), json!(12));
        assert_eq!(wire_key("x"), json!("x"));
        assert!(!definite(0), "timeout");
        assert!(!definite(13), "crash");
        assert!(definite(20) && definite(22) && definite(11) && definite(30));
        assert!(!definite(1000) && !definite(42), "custom and unknown codes");
    }
}
