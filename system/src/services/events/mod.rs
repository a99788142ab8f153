//! The event store: streams with optimistic concurrency, a global log,
//! aggregate snapshots, catch-up subscriptions and a projection (`state.rs`),
//! and their routes (`api.rs`).

pub mod api;
mod state;

pub use state::{
    empty_aggregate, fold, projected_customer, EventCommand, EventStore, NewEvent, MAX_READ,
    ORDER_PLACED, SNAPSHOT_EVERY,
};

use std::sync::Arc;

use axum::Router;
use serde_json::{json, Map, Value};

use super::kv::KvStore;
use super::Service;
use crate::bugs::{Bug, Bugs};
use crate::http::ApiState;

/// The event store as a service, with the planted bugs that live in it.
#[derive(Debug, Default)]
pub struct EventService {
    store: EventStore,
    /// Planted bug `no-version-check`.
    ignore_expected: bool,
    /// Planted bug `subscription-skips`.
    skip_on_resume: bool,
}

impl EventService {
    /// An empty store with the planted bugs that concern it.
    pub fn new(bugs: &Bugs) -> Self {
        let mut s = EventService {
            ignore_expected: bugs.has(Bug::NoVersionCheck),
            skip_on_resume: bugs.has(Bug::SubscriptionSkips),
            ..EventService::default()
        };
        s.set_bugs();
        s
    }

    /// Bug switches are not replicated state: put them back after a restore.
    fn set_bugs(&mut self) {
        self.store.ignore_expected = self.ignore_expected;
        self.store.skip_on_resume = self.skip_on_resume;
    }
}

impl Service for EventService {
    fn owns(&self, command: &Value) -> bool {
        EventCommand::owns(command)
    }

    fn apply(&mut self, command: &Value, _keys: &mut KvStore) -> Value {
        match serde_json::from_value::<EventCommand>(command.clone()) {
            Ok(cmd) => self.store.apply(cmd),
            Err(e) => json!({"ok": false, "error": format!("not an event store command: {e}")}),
        }
    }

    fn query(&self, query: &Value, _keys: &KvStore) -> Option<Value> {
        self.store.query(query)
    }

    fn snapshot(&self, snapshot: &mut Map<String, Value>) {
        snapshot.insert(
            "events".into(),
            serde_json::to_value(&self.store).unwrap_or(Value::Null),
        );
    }

    /// A snapshot from before the event store existed has none: start empty.
    fn restore(&mut self, snapshot: &Value) -> Result<(), String> {
        self.store = match snapshot.get("events") {
            Some(s) => serde_json::from_value(s.clone())
                .map_err(|e| format!("event store snapshot: {e}"))?,
            None => EventStore::default(),
        };
        self.set_bugs();
        Ok(())
    }

    fn routes(&self) -> Router<Arc<ApiState>> {
        api::routes()
    }
}
