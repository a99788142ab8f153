//! The `kv` workload against etcd, through its v3 HTTP/JSON gateway (no gRPC
//! stack): reads are `range` (linearizable by default; serializable reads, an
//! option, may be served from a stale member), writes `put`, cas a `txn` that
//! compares the value. Keys and values travel base64-encoded, as the gateway
//! wants.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::{BoxFut, Client, Completion, Endpoint, Invocation, Session};

/// Makes sessions that talk to etcd members.
pub struct EtcdKvClient {
    http: reqwest::Client,
    nodes: Arc<Vec<Endpoint>>,
    serializable: bool,
}

impl EtcdKvClient {
    /// A client for `nodes`; `serializable` reads skip the quorum check.
    pub fn new(nodes: Vec<Endpoint>, serializable: bool, timeout: Duration) -> Self {
        EtcdKvClient {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(Duration::from_millis(500))
                .build()
                .unwrap_or_default(),
            nodes: Arc::new(nodes),
            serializable,
        }
    }
}

impl Client for EtcdKvClient {
    fn open(&self, process: u64) -> Box<dyn Session> {
        Box::new(EtcdSession {
            http: self.http.clone(),
            nodes: self.nodes.clone(),
            target: process as usize % self.nodes.len().max(1),
            serializable: self.serializable,
        })
    }
}

struct EtcdSession {
    http: reqwest::Client,
    nodes: Arc<Vec<Endpoint>>,
    target: usize,
    serializable: bool,
}

fn b64(text: &str) -> String {
    B64.encode(text.as_bytes())
}

/// A gateway value (base64 of a decimal) as the history's integer.
fn decode(v: &Value) -> Value {
    let text = v
        .as_str()
        .and_then(|s| B64.decode(s).ok())
        .map(|b| String::from_utf8_lossy(&b).to_string())
        .unwrap_or_default();
    text.parse::<i64>().map_or(json!(text), |i| json!(i))
}

impl EtcdSession {
    async fn attempt(&mut self, op: &Invocation) -> (Completion, Option<String>) {
        let key = b64(&op.key.clone().unwrap_or_default());
        let int = |v: Option<&Value>| {
            v.and_then(Value::as_i64)
                .map(|i| i.to_string())
                .unwrap_or_default()
        };
        let (path, body) = match op.f.as_str() {
            "read" => (
                "range",
                json!({"key": key, "serializable": self.serializable}),
            ),
            "write" => (
                "put",
                json!({"key": key, "value": b64(&int(Some(&op.value)))}),
            ),
            "cas" => {
                let pair = op.value.as_array().cloned().unwrap_or_default();
                let (a, b) = (int(pair.first()), int(pair.get(1)));
                (
                    "txn",
                    json!({"compare": [{"key": key, "target": "VALUE", "result": "EQUAL", "value": b64(&a)}],
                           "success": [{"requestPut": {"key": key, "value": b64(&b)}}]}),
                )
            }
            other => return (Completion::Fail(format!("kv has no op `{other}`")), None),
        };
        let node = &self.nodes[self.target];
        let id = Some(node.id.clone());
        let sent = self
            .http
            .post(format!("{}/v3/kv/{path}", node.url))
            .json(&body)
            .send()
            .await;
        let is_read = op.f == "read";
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                self.target = (self.target + 1) % self.nodes.len().max(1);
                // Nothing sent, or a read: certainly no effect.
                return if e.is_connect() || is_read {
                    (Completion::Fail(format!("request failed: {e}")), id)
                } else {
                    (Completion::Info(format!("request failed: {e}")), id)
                };
            }
        };
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            self.target = (self.target + 1) % self.nodes.len().max(1);
            let why = answer["error"].as_str().unwrap_or("error").to_string();
            // etcd's errors do not say whether a proposal was applied.
            return if is_read {
                (Completion::Fail(why), id)
            } else {
                (Completion::Info(why), id)
            };
        }
        let done = match op.f.as_str() {
            "read" => Completion::Ok(
                answer["kvs"]
                    .get(0)
                    .map_or(Value::Null, |kv| decode(&kv["value"])),
            ),
            "cas" if answer["succeeded"] != json!(true) => {
                Completion::Fail("precondition-failed".into())
            }
            _ => Completion::Ok(op.value.clone()),
        };
        (done, id)
    }
}

impl Session for EtcdSession {
    fn invoke<'a>(&'a mut self, op: &'a Invocation) -> BoxFut<'a, (Completion, Option<String>)> {
        Box::pin(self.attempt(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_base64() {
        assert_eq!(decode(&json!(b64("42"))), json!(42));
        assert_eq!(decode(&json!(b64("x"))), json!("x"));
        assert_eq!(b64("k1"), "azE=");
    }
}
