//! The lock manager: leased locks with fencing tokens, deadlock detection and
//! protected registers (`state.rs`), and their routes (`api.rs`).

pub mod api;
mod state;

pub use state::{LockCommand, LockManager, Mode};

use std::sync::Arc;

use axum::Router;
use serde_json::{json, Map, Value};

use super::kv::KvStore;
use super::Service;
use crate::bugs::{Bug, Bugs};
use crate::http::ApiState;

/// The lock manager as a service, with the planted bugs that live in it.
#[derive(Debug, Default)]
pub struct LockService {
    manager: LockManager,
    /// Planted bug `lease-no-fence`.
    ignore_fence: bool,
    /// Planted bug `no-deadlock-check`.
    ignore_deadlocks: bool,
    /// Planted bug `lock-no-quorum`: the leader answers an acquire from its
    /// own state before the command commits.
    no_quorum: bool,
}

impl LockService {
    /// An empty lock manager with the planted bugs that concern it.
    pub fn new(bugs: &Bugs) -> Self {
        let mut s = LockService {
            ignore_fence: bugs.has(Bug::LeaseNoFence),
            ignore_deadlocks: bugs.has(Bug::NoDeadlockCheck),
            no_quorum: bugs.has(Bug::LockNoQuorum),
            ..LockService::default()
        };
        s.set_bugs();
        s
    }

    /// Bug switches are not replicated state: put them back after a restore.
    fn set_bugs(&mut self) {
        self.manager.ignore_fence = self.ignore_fence;
        self.manager.ignore_deadlocks = self.ignore_deadlocks;
    }
}

impl Service for LockService {
    fn owns(&self, command: &Value) -> bool {
        LockCommand::owns(command)
    }

    fn apply(&mut self, command: &Value, _keys: &mut KvStore) -> Value {
        match serde_json::from_value::<LockCommand>(command.clone()) {
            Ok(cmd) => self.manager.apply(cmd),
            Err(e) => json!({"ok": false, "error": format!("not a lock command: {e}")}),
        }
    }

    fn query(&self, query: &Value, _keys: &KvStore) -> Option<Value> {
        self.manager.query(query)
    }

    fn snapshot(&self, snapshot: &mut Map<String, Value>) {
        snapshot.insert(
            "locks".into(),
            serde_json::to_value(&self.manager).unwrap_or(Value::Null),
        );
    }

    fn restore(&mut self, snapshot: &Value) -> Result<(), String> {
        self.manager = serde_json::from_value(snapshot["locks"].clone())
            .map_err(|e| format!("lock manager snapshot: {e}"))?;
        self.set_bugs();
        Ok(())
    }

    fn routes(&self) -> Router<Arc<ApiState>> {
        api::routes()
    }

    fn speculate(&self, command: &Value) -> Option<Value> {
        if !self.no_quorum {
            return None;
        }
        let cmd = serde_json::from_value::<LockCommand>(command.clone()).ok()?;
        self.manager.speculate(&cmd)
    }
}
