//! The order saga: the services it calls, replicated with idempotency keys
//! and injectable faults (`steps.rs`), the orchestrator that drives each saga
//! from its event stream and takes over stalled ones (`orchestrator.rs`), and
//! their routes (`api.rs`).

pub mod api;
pub mod orchestrator;
pub mod steps;

pub use orchestrator::{Orchestrator, Order, Saga};
pub use steps::{Faults, Services, StepCommand};

use std::sync::Arc;

use axum::Router;
use serde_json::{json, Map, Value};

use super::kv::KvStore;
use super::Service;
use crate::bugs::{Bug, Bugs};
use crate::http::ApiState;

/// The saga's services as one replicated service, with the planted bug that
/// lives in them. Its routes come with the orchestrator ([`api::routes`]).
#[derive(Debug, Default)]
pub struct SagaServices {
    services: Services,
    /// Planted bug `non-idempotent-charge`.
    charge_again: bool,
}

impl SagaServices {
    /// Stockless services with the planted bugs that concern them.
    pub fn new(bugs: &Bugs) -> Self {
        let mut s = SagaServices {
            charge_again: bugs.has(Bug::NonIdempotentCharge),
            ..SagaServices::default()
        };
        s.services.charge_again = s.charge_again;
        s
    }
}

impl Service for SagaServices {
    fn owns(&self, command: &Value) -> bool {
        StepCommand::owns(command)
    }

    fn apply(&mut self, command: &Value, _keys: &mut KvStore) -> Value {
        match serde_json::from_value::<StepCommand>(command.clone()) {
            Ok(cmd) => self.services.apply(cmd),
            Err(e) => json!({"ok": false, "error": format!("not a saga service command: {e}")}),
        }
    }

    fn query(&self, query: &Value, _keys: &KvStore) -> Option<Value> {
        self.services.query(query)
    }

    fn snapshot(&self, snapshot: &mut Map<String, Value>) {
        snapshot.insert(
            "saga_services".into(),
            serde_json::to_value(&self.services).unwrap_or(Value::Null),
        );
    }

    /// A snapshot from before the saga services existed has none: start empty.
    fn restore(&mut self, snapshot: &Value) -> Result<(), String> {
        self.services = match snapshot.get("saga_services") {
            Some(s) => serde_json::from_value(s.clone())
                .map_err(|e| format!("saga services snapshot: {e}"))?,
            None => Services::default(),
        };
        self.services.charge_again = self.charge_again;
        Ok(())
    }

    fn routes(&self) -> Router<Arc<ApiState>> {
        Router::new()
    }
}
