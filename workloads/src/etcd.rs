//! The `kv` workload against etcd, through its v3 HTTP/JSON gateway (no gRPC
//! stack): reads are `range` (linearizable by default; serializable reads, an
//! option, may be served from a stale member), writes `put`, cas a `txn` that
//! compares the value. Keys and values travel base64-encoded, as the gateway
//! wants.
//!
//! The transactional workloads (`txn`, `txn-rw-register`, `bank`) run as
//! etcd users write them: one `txn` of ranges reads every key at one
//! revision; the micro-ops run on that snapshot; a second `txn` writes the
//! results only if no key's `mod_revision` moved since, and on a conflict the
//! transaction starts over (optimistic concurrency). A read-only transaction
//! is the first `txn` alone.

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
                if e.is_connect() {
                    // Every member may be down: do not spin on refused connections.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
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

/// Makes sessions running micro-op transactions on etcd.
pub struct EtcdTxnClient(EtcdKvClient);

impl EtcdTxnClient {
    /// A client for `nodes`.
    pub fn new(nodes: Vec<Endpoint>, timeout: Duration) -> Self {
        EtcdTxnClient(EtcdKvClient::new(nodes, false, timeout))
    }
}

impl Client for EtcdTxnClient {
    fn open(&self, process: u64) -> Box<dyn Session> {
        Box::new(EtcdTxnSession {
            http: self.0.http.clone(),
            nodes: self.0.nodes.clone(),
            target: process as usize % self.0.nodes.len().max(1),
        })
    }
}

struct EtcdTxnSession {
    http: reqwest::Client,
    nodes: Arc<Vec<Endpoint>>,
    target: usize,
}

/// Optimistic tries before a transaction is given up as aborted.
const TRIES: usize = 20;

/// How one call to the gateway ended.
enum Called {
    Ok(Value),
    /// Certainly no effect (nothing sent, or refused before applying).
    NotDone(String),
    /// Maybe applied.
    Unknown(String),
}

/// A micro-op's key as the etcd key holding it.
fn txn_key(key: &Value) -> String {
    b64(&format!("txn/{key}"))
}

/// The etcd value of a micro-op key: its JSON text, absent as null.
fn txn_value(kv: Option<&Value>) -> (Value, String) {
    let Some(kv) = kv else {
        return (Value::Null, "0".into());
    };
    let text = kv["value"]
        .as_str()
        .and_then(|s| B64.decode(s).ok())
        .map(|b| String::from_utf8_lossy(&b).to_string())
        .unwrap_or_default();
    let rev = match &kv["mod_revision"] {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    (serde_json::from_str(&text).unwrap_or(Value::Null), rev)
}

/// Runs `ops` on `seen` (key text to value): the filled-in ops, or why a
/// micro-op cannot run. `add` keeps a balance at or above zero.
fn run_ops(
    seen: &mut std::collections::BTreeMap<String, Value>,
    ops: &[Value],
) -> Result<Vec<Value>, String> {
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let f = op[0].as_str().unwrap_or_default();
        let (key, arg) = (&op[1], &op[2]);
        let slot = key.to_string();
        let current = seen.get(&slot).cloned().unwrap_or(Value::Null);
        let next = match f {
            "r" => {
                out.push(json!(["r", key, current]));
                continue;
            }
            "w" => arg.clone(),
            "append" => match current {
                Value::Null => json!([arg]),
                Value::Array(mut list) => {
                    list.push(arg.clone());
                    Value::Array(list)
                }
                other => return Err(format!("micro-op {i}: cannot append to {other}")),
            },
            "add" => {
                let have = current.as_i64().unwrap_or(0);
                match have.checked_add(arg.as_i64().unwrap_or(0)) {
                    Some(n) if n >= 0 => json!(n),
                    _ => return Err(format!("micro-op {i}: insufficient: holds {have}")),
                }
            }
            other => return Err(format!("micro-op {i}: unknown `{other}`")),
        };
        seen.insert(slot, next);
        out.push(op.clone());
    }
    Ok(out)
}

impl EtcdTxnSession {
    async fn txn(&mut self, body: &Value) -> (Called, String) {
        let node = &self.nodes[self.target];
        let id = node.id.clone();
        let sent = self
            .http
            .post(format!("{}/v3/kv/txn", node.url))
            .json(body)
            .send()
            .await;
        let called = match sent {
            Err(e) if e.is_connect() => {
                // Every member may be down: do not spin on refused connections.
                tokio::time::sleep(Duration::from_millis(100)).await;
                Called::NotDone(format!("request failed: {e}"))
            }
            Err(e) => Called::Unknown(format!("request failed: {e}")),
            Ok(r) if r.status().is_success() => Called::Ok(r.json().await.unwrap_or(Value::Null)),
            Ok(r) => {
                let answer: Value = r.json().await.unwrap_or(Value::Null);
                Called::Unknown(answer["error"].as_str().unwrap_or("error").to_string())
            }
        };
        if !matches!(called, Called::Ok(_)) {
            self.target = (self.target + 1) % self.nodes.len().max(1);
        }
        (called, id)
    }

    async fn attempt(&mut self, op: &Invocation) -> (Completion, Option<String>) {
        let ops = op.value.as_array().cloned().unwrap_or_default();
        let mut keys: Vec<Value> = ops.iter().map(|m| m[1].clone()).collect();
        keys.sort_by_key(|k| k.to_string());
        keys.dedup();
        let read_only = ops.iter().all(|m| m[0] == "r");
        let mut node = None;
        for _ in 0..TRIES {
            // Every key at one revision.
            let ranges: Vec<Value> = keys
                .iter()
                .map(|k| json!({"requestRange": {"key": txn_key(k)}}))
                .collect();
            let (called, id) = self.txn(&json!({ "success": ranges })).await;
            node = Some(id);
            let answer = match called {
                Called::Ok(a) => a,
                // A read changes nothing, whatever became of it.
                Called::NotDone(m) | Called::Unknown(m) => return (Completion::Fail(m), node),
            };
            let mut seen = std::collections::BTreeMap::new();
            let mut revs = Vec::new();
            for (i, k) in keys.iter().enumerate() {
                let kvs = &answer["responses"][i]["response_range"]["kvs"];
                let (value, rev) = txn_value(kvs.get(0));
                seen.insert(k.to_string(), value);
                revs.push(rev);
            }
            let done = match run_ops(&mut seen, &ops) {
                Ok(d) => d,
                Err(e) => return (Completion::Fail(format!("txn-failed: {e}")), node),
            };
            if read_only {
                return (Completion::Ok(Value::Array(done)), node);
            }
            // Write only if nothing moved since the reads.
            let compare: Vec<Value> = keys
                .iter()
                .zip(&revs)
                .map(|(k, rev)| json!({"key": txn_key(k), "target": "MOD", "result": "EQUAL", "mod_revision": rev}))
                .collect();
            let puts: Vec<Value> = keys
                .iter()
                .filter(|k| ops.iter().any(|m| m[0] != "r" && m[1] == **k))
                .map(|k| {
                    let v = seen.get(&k.to_string()).cloned().unwrap_or(Value::Null);
                    json!({"requestPut": {"key": txn_key(k), "value": b64(&v.to_string())}})
                })
                .collect();
            match self
                .txn(&json!({"compare": compare, "success": puts}))
                .await
                .0
            {
                Called::Ok(a) if a["succeeded"] == json!(true) => {
                    return (Completion::Ok(Value::Array(done)), node)
                }
                Called::Ok(_) => continue,
                Called::NotDone(m) => return (Completion::Fail(m), node),
                Called::Unknown(m) => return (Completion::Info(m), node),
            }
        }
        (
            Completion::Fail(format!("aborted: {TRIES} tries met conflicting writes")),
            node,
        )
    }
}

impl Session for EtcdTxnSession {
    fn invoke<'a>(&'a mut self, op: &'a Invocation) -> BoxFut<'a, (Completion, Option<String>)> {
        Box::pin(self.attempt(op))
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
    fn micro_ops_run_on_a_snapshot_as_the_node_runs_them() {
        let mut seen = std::collections::BTreeMap::new();
        seen.insert("1".to_string(), json!([3]));
        seen.insert("2".to_string(), json!(5));
        let done = run_ops(
            &mut seen,
            &[
                json!(["append", 1, 4]),
                json!(["r", 1, null]),
                json!(["add", 2, -5]),
                json!(["r", 2, null]),
            ],
        )
        .unwrap();
        assert_eq!(done[1], json!(["r", 1, [3, 4]]));
        assert_eq!(done[3], json!(["r", 2, 0]));
        assert!(run_ops(&mut seen, &[json!(["add", 2, -1])])
            .unwrap_err()
            .contains("insufficient"));
        assert!(run_ops(&mut seen, &[json!(["append", 2, 1])]).is_err());
        let (v, rev) = txn_value(Some(&json!({"value": b64("[1,2]"), "mod_revision": "17"})));
        assert_eq!((v, rev.as_str()), (json!([1, 2]), "17"));
        assert_eq!(txn_value(None), (Value::Null, "0".to_string()));
    }

    #[test]
    fn values_round_trip_through_base64() {
        assert_eq!(decode(&json!(b64("42"))), json!(42));
        assert_eq!(decode(&json!(b64("x"))), json!("x"));
        assert_eq!(b64("k1"), "azE=");
    }
}
