//! The patterns the node runs on the replicated log, one folder each: its state
//! machine, its HTTP routes and any protocol of its own between nodes. Each is a
//! [`Service`]; the node lists the ones it runs, and [`Registry`] offers every
//! command and query to them in turn, so nothing else asks a command's name.

pub mod broker;
pub mod cache;
pub mod events;
pub mod kv;
pub mod locks;
pub mod mailbox;
pub mod mesh;
pub mod proposals;
pub mod registry;
pub mod saga;
pub mod shards;
pub mod txn;

use std::sync::Arc;

use axum::Router;
use serde_json::{json, Map, Value};

use crate::consensus::StateMachine;
use crate::http::ApiState;
use kv::KvStore;

/// Marks a snapshot written by [`Registry`] (older ones hold the KV map alone).
const FORMAT: &str = "services-v1";

/// One pattern on the replicated log: the commands it owns, what they do to its
/// state, the queries it answers, its part of a snapshot and its client routes.
/// Its commands' `op`s and its queries' fields are its own: no other service
/// claims them.
pub trait Service: Send + 'static {
    /// Whether `command` (by its `op`) is one of its own.
    fn owns(&self, command: &Value) -> bool;
    /// Applies one of its own committed commands and answers its result. `keys`
    /// is the key space every service may share (the KV store's).
    fn apply(&mut self, command: &Value, keys: &mut KvStore) -> Value;
    /// Answers `query` if it is one of its own.
    fn query(&self, query: &Value, keys: &KvStore) -> Option<Value>;
    /// Puts its part of a snapshot into `snapshot`, under its own fields.
    fn snapshot(&self, snapshot: &mut Map<String, Value>);
    /// Takes its part back from a snapshot (its fields may be missing in an
    /// older one).
    fn restore(&mut self, snapshot: &Value) -> Result<(), String>;
    /// Its client routes.
    fn routes(&self) -> Router<Arc<ApiState>>;
    /// The result one of its commands would have if applied now, without
    /// applying it; only planted bugs that answer before committing say more
    /// than `None`.
    fn speculate(&self, _command: &Value) -> Option<Value> {
        None
    }
}

/// A service whose client routes another layer serves (the sharded node's
/// KV routes go to the key's shard, not to the main group's store).
pub struct Unrouted(pub Box<dyn Service>);

impl Service for Unrouted {
    fn owns(&self, command: &Value) -> bool {
        self.0.owns(command)
    }
    fn apply(&mut self, command: &Value, keys: &mut KvStore) -> Value {
        self.0.apply(command, keys)
    }
    fn query(&self, query: &Value, keys: &KvStore) -> Option<Value> {
        self.0.query(query, keys)
    }
    fn snapshot(&self, snapshot: &mut Map<String, Value>) {
        self.0.snapshot(snapshot)
    }
    fn restore(&mut self, snapshot: &Value) -> Result<(), String> {
        self.0.restore(snapshot)
    }
    fn routes(&self) -> Router<Arc<ApiState>> {
        Router::new()
    }
    fn speculate(&self, command: &Value) -> Option<Value> {
        self.0.speculate(command)
    }
}

/// The node's state machine: its services and the key space they share.
pub struct Registry {
    keys: KvStore,
    services: Vec<Box<dyn Service>>,
}

impl Registry {
    /// The given services, each command and query offered to them in this order.
    pub fn new(services: Vec<Box<dyn Service>>) -> Self {
        Registry {
            keys: KvStore::default(),
            services,
        }
    }

    /// Every service's client routes.
    pub fn routes(&self) -> Router<Arc<ApiState>> {
        self.services
            .iter()
            .fold(Router::new(), |all, s| all.merge(s.routes()))
    }

    fn owner(&self, command: &Value) -> Option<&dyn Service> {
        self.services
            .iter()
            .find(|s| s.owns(command))
            .map(|s| s.as_ref())
    }
}

impl StateMachine for Registry {
    fn apply(&mut self, command: &Value) -> Value {
        match self.services.iter_mut().find(|s| s.owns(command)) {
            Some(s) => s.apply(command, &mut self.keys),
            None => json!({"ok": false, "error": "no service owns this command"}),
        }
    }

    fn query(&self, query: &Value) -> Value {
        self.services
            .iter()
            .find_map(|s| s.query(query, &self.keys))
            .unwrap_or(Value::Null)
    }

    fn snapshot(&self) -> Value {
        let mut snapshot = Map::new();
        snapshot.insert("format".into(), json!(FORMAT));
        snapshot.insert("kv".into(), self.keys.snapshot());
        for s in &self.services {
            s.snapshot(&mut snapshot);
        }
        Value::Object(snapshot)
    }

    fn restore(&mut self, snapshot: &Value) -> Result<(), String> {
        if snapshot.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return self.keys.restore(snapshot);
        }
        self.keys.restore(&snapshot["kv"])?;
        for s in &mut self.services {
            s.restore(snapshot)?;
        }
        Ok(())
    }

    fn speculate(&self, command: &Value) -> Option<Value> {
        self.owner(command)?.speculate(command)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::bugs::{Bug, Bugs};
    use crate::consensus::raft::RaftHandle;
    use crate::services::broker::BrokerService;
    use crate::services::cache::{CacheConfig, CacheNode, CacheService};
    use crate::services::kv::KvService;
    use crate::services::locks::LockService;
    use crate::transport::Transport;

    /// The node's services, with a cache node that never sends.
    fn registry() -> Registry {
        registry_with(&Bugs::default())
    }

    fn registry_with(bugs: &Bugs) -> Registry {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let transport = Arc::new(Transport::new("n1".into(), runtime.handle().clone()));
        let (raft, _inbox) = RaftHandle::channel(1);
        let node = CacheNode::new(
            "n1".into(),
            CacheConfig::default(),
            BTreeMap::new(),
            transport,
            Arc::new(raft),
            Arc::new(crate::clock::Clock::default()),
        );
        Registry::new(vec![
            Box::new(KvService),
            Box::new(LockService::new(bugs)),
            Box::new(BrokerService::new(bugs)),
            Box::new(CacheService::new(Arc::new(node))),
        ])
    }

    #[test]
    fn commands_reach_their_service_and_snapshots_keep_both() {
        let mut s = registry();
        s.apply(&json!({"op": "put", "key": "a", "value": 1}));
        let r = s.apply(
            &json!({"op": "lock-acquire", "lock": "l", "owner": "o", "ttl_ms": 100, "now_ms": 1}),
        );
        assert_eq!(r["token"], 1);
        let mut copy = registry();
        copy.restore(&s.snapshot()).unwrap();
        assert_eq!(copy.query(&json!({"key": "a"})), json!(1));
        assert_eq!(copy.query(&json!({"lock": "l"}))["last_token"], 1);
        // A snapshot from before the lock manager existed is the KV map alone.
        let mut old = registry();
        old.restore(&json!({"a": 2})).unwrap();
        assert_eq!(old.query(&json!({"key": "a"})), json!(2));
        s.apply(&json!({"op": "cache-put", "key": "c", "value": 5}));
        let r = s.apply(&json!({"op": "cache-put", "key": "c", "value": 6}));
        assert_eq!(r["rev"], 2);
        let mut copy = registry();
        copy.restore(&s.snapshot()).unwrap();
        assert_eq!(
            copy.query(&crate::services::cache::store::read_query("c", 0)),
            json!({"value": 6, "rev": 2, "read_rev": 2})
        );
        let bad = s.apply(&json!({"op": "lock-acquire", "lock": "l"}));
        assert_eq!(bad["ok"], false);
    }

    #[test]
    fn service_bugs_reach_their_service_and_survive_a_restore() {
        let acquire =
            json!({"op": "lock-acquire", "lock": "l", "owner": "o", "ttl_ms": 100, "now_ms": 1});
        let produce = json!({"op": "produce", "topic": "t", "key": "k", "value": 1});
        let fenced = |token: u64| json!({"op": "fenced-write", "resource": "r", "token": token, "value": token, "now_ms": 1});
        let mut sound = registry();
        assert_eq!(sound.speculate(&acquire), None);
        assert_eq!(sound.speculate(&produce), None);
        assert_eq!(sound.apply(&fenced(5))["ok"], true);
        assert_eq!(sound.apply(&fenced(3))["error"], "stale-token");

        let bugs = Bugs::new([Bug::LockNoQuorum, Bug::AckBeforePersist, Bug::LeaseNoFence]);
        let mut broken = registry_with(&bugs);
        assert_eq!(broken.speculate(&acquire).unwrap()["token"], 1);
        assert_eq!(broken.speculate(&produce).unwrap()["offset"], 0);
        // Speculation changes nothing; bug switches are not in the snapshot, yet
        // a restored service keeps them.
        assert_eq!(broken.query(&json!({"lock": "l"}))["last_token"], 0);
        let mut restored = registry_with(&bugs);
        restored.restore(&sound.snapshot()).unwrap();
        assert_eq!(restored.apply(&fenced(3))["ok"], true);
        broken.restore(&sound.snapshot()).unwrap();
        assert_eq!(broken.speculate(&acquire).unwrap()["token"], 1);
    }
}
