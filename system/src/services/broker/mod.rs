//! The message broker: partitioned topics with consumer groups and at-least-once
//! delivery (`state.rs`), and their routes (`api.rs`).

pub mod api;
mod state;

pub use state::{partition_of, Broker, BrokerCommand, MAX_DELIVERIES, PARTITIONS};

use std::sync::Arc;

use axum::Router;
use serde_json::{json, Map, Value};

use super::kv::KvStore;
use super::Service;
use crate::bugs::{Bug, Bugs};
use crate::http::ApiState;

/// The broker as a service, with the planted bugs that live in it.
#[derive(Debug, Default)]
pub struct BrokerService {
    broker: Broker,
    /// Planted bug `skip-redelivery`.
    skip_redelivery: bool,
    /// Planted bug `ack-before-persist`: the leader answers a produce from its
    /// own state before the command commits.
    ack_before_persist: bool,
}

impl BrokerService {
    /// An empty broker with the planted bugs that concern it.
    pub fn new(bugs: &Bugs) -> Self {
        let mut s = BrokerService {
            skip_redelivery: bugs.has(Bug::SkipRedelivery),
            ack_before_persist: bugs.has(Bug::AckBeforePersist),
            ..BrokerService::default()
        };
        s.set_bugs();
        s
    }

    /// Bug switches are not replicated state: put them back after a restore.
    fn set_bugs(&mut self) {
        self.broker.skip_redelivery = self.skip_redelivery;
    }
}

impl Service for BrokerService {
    fn owns(&self, command: &Value) -> bool {
        BrokerCommand::owns(command)
    }

    fn apply(&mut self, command: &Value, _keys: &mut KvStore) -> Value {
        match serde_json::from_value::<BrokerCommand>(command.clone()) {
            Ok(cmd) => self.broker.apply(cmd),
            Err(e) => json!({"ok": false, "error": format!("not a broker command: {e}")}),
        }
    }

    fn query(&self, query: &Value, _keys: &KvStore) -> Option<Value> {
        self.broker.query(query)
    }

    fn snapshot(&self, snapshot: &mut Map<String, Value>) {
        snapshot.insert(
            "broker".into(),
            serde_json::to_value(&self.broker).unwrap_or(Value::Null),
        );
    }

    /// A snapshot from before the broker existed has none: start empty.
    fn restore(&mut self, snapshot: &Value) -> Result<(), String> {
        self.broker = match snapshot.get("broker") {
            Some(b) => {
                serde_json::from_value(b.clone()).map_err(|e| format!("broker snapshot: {e}"))?
            }
            None => Broker::default(),
        };
        self.set_bugs();
        Ok(())
    }

    fn routes(&self) -> Router<Arc<ApiState>> {
        api::routes()
    }

    fn speculate(&self, command: &Value) -> Option<Value> {
        if !self.ack_before_persist {
            return None;
        }
        let cmd = serde_json::from_value::<BrokerCommand>(command.clone()).ok()?;
        self.broker.speculate(&cmd)
    }
}
