//! The distributed cache: write-through over the KV key space, each key kept by
//! its owners on a consistent-hash ring. `store.rs` is its part of the replicated
//! state (revisions), `local.rs` one node's copies, `peer.rs` the calls between
//! owners, `api.rs` its routes (and sessions kept on it).

pub mod api;
pub mod local;
pub mod peer;
pub mod store;

pub use peer::{CacheConfig, CacheMessage, CacheNode};

use std::sync::Arc;

use axum::Router;
use serde_json::{json, Map, Value};

use super::kv::KvStore;
use super::Service;
use crate::http::ApiState;
use store::{CachePut, Revisions};

/// The cache as a service: its writes and revisions on the log, and the routes
/// of this node's part of the cache.
pub struct CacheService {
    revisions: Revisions,
    node: Arc<CacheNode>,
}

impl CacheService {
    /// The cache whose routes this node's `node` serves.
    pub fn new(node: Arc<CacheNode>) -> Self {
        CacheService {
            revisions: Revisions::default(),
            node,
        }
    }
}

impl Service for CacheService {
    fn owns(&self, command: &Value) -> bool {
        CachePut::owns(command)
    }

    /// A cache write is a KV write (the cache writes through) stamped with the
    /// key's next revision.
    fn apply(&mut self, command: &Value, keys: &mut KvStore) -> Value {
        match serde_json::from_value::<CachePut>(command.clone()) {
            Ok(put) => {
                keys.apply(&json!({"op": "put", "key": put.key, "value": put.value}));
                json!({"ok": true, "rev": self.revisions.bump(&put.key, put.expires_at_ms)})
            }
            Err(e) => json!({"ok": false, "error": format!("not a cache write: {e}")}),
        }
    }

    fn query(&self, query: &Value, keys: &KvStore) -> Option<Value> {
        let key = Revisions::read_key(query)?;
        let value = keys.query(&json!({ "key": key }));
        Some(
            self.revisions
                .answer(key, value, Revisions::read_time(query)),
        )
    }

    fn snapshot(&self, snapshot: &mut Map<String, Value>) {
        snapshot.insert(
            "revisions".into(),
            serde_json::to_value(&self.revisions).unwrap_or(Value::Null),
        );
    }

    /// A snapshot from before the cache existed has no revisions: start at 0.
    fn restore(&mut self, snapshot: &Value) -> Result<(), String> {
        self.revisions = match snapshot.get("revisions") {
            Some(r) => serde_json::from_value(r.clone())
                .map_err(|e| format!("cache revisions snapshot: {e}"))?,
            None => Revisions::default(),
        };
        Ok(())
    }

    fn routes(&self) -> Router<Arc<ApiState>> {
        api::routes(self.node.clone())
    }
}
