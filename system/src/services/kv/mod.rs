//! The key-value store: string keys to JSON values, each command one entry in
//! the log. Its map is the key space the other services may share.

pub mod api;
mod state;

pub use state::{command_ok, KvCommand, KvStore};

use std::sync::Arc;

use axum::Router;
use serde_json::{Map, Value};

use super::Service;
use crate::http::ApiState;

/// The KV store as a service. It keeps nothing of its own: its data is the
/// registry's key space (snapshotted by the registry as `kv`).
#[derive(Debug, Default)]
pub struct KvService;

impl Service for KvService {
    fn owns(&self, command: &Value) -> bool {
        matches!(
            command.get("op").and_then(Value::as_str),
            Some("put" | "cas" | "delete")
        )
    }

    fn apply(&mut self, command: &Value, keys: &mut KvStore) -> Value {
        keys.apply(command)
    }

    fn query(&self, query: &Value, keys: &KvStore) -> Option<Value> {
        query.get("key").map(|_| keys.query(query))
    }

    fn snapshot(&self, _snapshot: &mut Map<String, Value>) {}

    fn restore(&mut self, _snapshot: &Value) -> Result<(), String> {
        Ok(())
    }

    fn routes(&self) -> Router<Arc<ApiState>> {
        api::routes()
    }
}
