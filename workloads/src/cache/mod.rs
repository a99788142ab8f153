//! Workload `cache`: a read-through cache over the Raft KV. Clients read keys
//! through any node (the key's owners serve cached copies or read the store),
//! write unique values through the cache (the store, then invalidation of every
//! copy), write a few keys without invalidation (as a writer bypassing the cache
//! would), and read cold keys that force evictions. At the end, after faults are
//! healed and one time to live has passed, every node's copies are compared
//! with the store.
//!
//! Checkers (see [`checks`]): no read older than a write whose invalidation was
//! acknowledged before the read began; none older than a bypassing write by more
//! than the time to live; every node within its capacity; all copies agreeing
//! with the store at the end.

pub mod checks;
mod generator;

use std::sync::Arc;
use std::time::Duration;

use checker::{CheckOptions, History};
use serde_json::{json, Map, Value};

use crate::http::Nodes;
use crate::{
    BoxFut, Checked, Client, Completion, Endpoint, Generator, Invocation, Session, Workload,
    WorkloadOptions,
};

pub use generator::CacheGenerator;

/// Entries per node in a run: small, so cold reads evict.
pub const CAPACITY: usize = 64;
/// Time to live of cached copies in a run.
pub const TTL_MS: u64 = 1500;

/// The `cache` workload.
pub struct CacheWorkload;

impl Workload for CacheWorkload {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn generator(&self, options: &WorkloadOptions) -> Box<dyn Generator> {
        Box::new(CacheGenerator::new(options.keys.max(1)))
    }

    fn client(&self, nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client> {
        Arc::new(CacheClient {
            http: crate::http::client(options),
            nodes: Arc::new(nodes),
        })
    }

    fn model(&self) -> &'static str {
        "none"
    }

    fn node_args(&self) -> Vec<String> {
        vec![
            "--cache-capacity".into(),
            CAPACITY.to_string(),
            "--cache-ttl-ms".into(),
            TTL_MS.to_string(),
        ]
    }

    fn check(&self, history: &History, _options: &CheckOptions) -> Result<Checked, String> {
        Ok(checks::check(history))
    }
}

struct CacheClient {
    http: crate::http::Http,
    nodes: Arc<Vec<Endpoint>>,
}

impl Client for CacheClient {
    fn open(&self, process: u64) -> Box<dyn Session> {
        Box::new(CacheSession {
            nodes: Nodes::new(self.http.clone(), self.nodes.clone(), process),
            http: self.http.raw(),
            all: self.nodes.clone(),
        })
    }
}

struct CacheSession {
    nodes: Nodes,
    http: reqwest::Client,
    all: Arc<Vec<Endpoint>>,
}

impl CacheSession {
    /// GET `path` from one node directly; `None` if it does not answer 200.
    async fn get_from(&self, node: &Endpoint, path: &str) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}{path}", node.url))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    /// Every node's counters; unreachable nodes are `null`.
    async fn stats(&self) -> Map<String, Value> {
        let mut out = Map::new();
        for n in self.all.iter() {
            out.insert(
                n.id.clone(),
                self.get_from(n, "/cache").await.unwrap_or(Value::Null),
            );
        }
        out
    }

    /// Waits one time to live (plus a margin) after the faults were healed,
    /// then reads each key from the store and from the cache through every
    /// node, and every node's own copy.
    async fn converge(&mut self, op: &Invocation) -> (Completion, Option<String>) {
        let before = self.stats().await;
        let ttl_ms = before
            .values()
            .find_map(|s| s.get("ttl_ms").and_then(Value::as_u64))
            .unwrap_or(TTL_MS);
        tokio::time::sleep(Duration::from_millis(ttl_ms + 500)).await;
        let mut keys = Map::new();
        let mut node = None;
        for key in op.value["keys"].as_array().into_iter().flatten() {
            let key = key.as_str().unwrap_or_default().to_string();
            let (store, n) = self
                .nodes
                .call(|http, base| http.get(format!("{base}/kv/{key}")))
                .await;
            node = n.or(node);
            let Ok(store) = store else {
                // Nothing changed; the harness tries the op again.
                return (Completion::Fail("store unreadable".into()), node);
            };
            let (mut reads, mut copies) = (Map::new(), Map::new());
            for n in self.all.iter() {
                let read = self.get_from(n, &format!("/cache/{key}")).await;
                reads.insert(n.id.clone(), read.unwrap_or(Value::Null));
                let copy = self.get_from(n, &format!("/cache/{key}/local")).await;
                copies.insert(n.id.clone(), copy.unwrap_or(Value::Null));
            }
            keys.insert(
                key,
                json!({"store": store["value"], "reads": reads, "copies": copies}),
            );
        }
        let after = self.stats().await;
        (
            Completion::Ok(json!({"ttl_ms": ttl_ms, "nodes": after, "keys": keys})),
            node,
        )
    }

    async fn attempt(&mut self, op: &Invocation) -> (Completion, Option<String>) {
        if op.f == "converge" {
            return self.converge(op).await;
        }
        let key = op.key.clone().unwrap_or_default();
        let (answer, node) = self
            .nodes
            .call(|http, base| match op.f.as_str() {
                "write" => http.put(format!("{base}/cache/{key}")).json(&op.value),
                _ => http.get(format!("{base}/cache/{key}")),
            })
            .await;
        let done = match (op.f.as_str(), answer) {
            ("write", Ok(body)) => Completion::Ok(json!({"rev": body["rev"]})),
            (_, Ok(body)) => Completion::Ok(json!({
                "value": body["value"], "rev": body["rev"], "hit": body["hit"], "node": body["node"]
            })),
            (_, Err((done, _))) => done,
        };
        (done, node)
    }
}

impl Session for CacheSession {
    fn invoke<'a>(&'a mut self, op: &'a Invocation) -> BoxFut<'a, (Completion, Option<String>)> {
        Box::pin(self.attempt(op))
    }
}
