//! The replicated state machine every node runs: the KV store, the lock manager
//! and the message broker side by side on one Raft log, each command routed by
//! its `op`.

pub mod broker;
pub mod cache;
pub mod kv;
pub mod locks;

use serde_json::{json, Value};

use crate::bugs::{Bug, Bugs};
use crate::consensus::StateMachine;
use crate::services::broker::{Broker, BrokerCommand};
use crate::services::cache::store::{CachePut, Revisions};
use crate::services::kv::KvStore;
use crate::services::locks::{LockCommand, LockManager};

/// Marks a snapshot written by [`Services`] (older ones hold the KV map alone).
const FORMAT: &str = "services-v1";

/// The KV store, the lock manager and the broker.
#[derive(Debug, Default)]
pub struct Services {
    kv: KvStore,
    locks: LockManager,
    broker: Broker,
    revisions: Revisions,
    bugs: Bugs,
}

impl Services {
    /// Services with the planted bugs that live in the state machines.
    pub fn new(bugs: &Bugs) -> Self {
        let mut s = Services {
            bugs: bugs.clone(),
            ..Services::default()
        };
        s.set_bugs();
        s
    }

    /// Bug switches are not replicated state: put them back after a restore.
    fn set_bugs(&mut self) {
        self.locks.ignore_fence = self.bugs.has(Bug::LeaseNoFence);
        self.locks.ignore_deadlocks = self.bugs.has(Bug::NoDeadlockCheck);
        self.broker.skip_redelivery = self.bugs.has(Bug::SkipRedelivery);
    }
}

impl StateMachine for Services {
    fn apply(&mut self, command: &Value) -> Value {
        if LockCommand::owns(command) {
            return match serde_json::from_value::<LockCommand>(command.clone()) {
                Ok(cmd) => self.locks.apply(cmd),
                Err(e) => json!({"ok": false, "error": format!("not a lock command: {e}")}),
            };
        }
        if BrokerCommand::owns(command) {
            return match serde_json::from_value::<BrokerCommand>(command.clone()) {
                Ok(cmd) => self.broker.apply(cmd),
                Err(e) => json!({"ok": false, "error": format!("not a broker command: {e}")}),
            };
        }
        if CachePut::owns(command) {
            return match serde_json::from_value::<CachePut>(command.clone()) {
                Ok(put) => {
                    self.kv
                        .apply(&json!({"op": "put", "key": put.key, "value": put.value}));
                    json!({"ok": true, "rev": self.revisions.bump(&put.key)})
                }
                Err(e) => json!({"ok": false, "error": format!("not a cache write: {e}")}),
            };
        }
        self.kv.apply(command)
    }

    fn query(&self, query: &Value) -> Value {
        if let Some(key) = Revisions::read_key(query) {
            return self
                .revisions
                .answer(key, self.kv.query(&json!({"key": key})));
        }
        self.locks
            .query(query)
            .or_else(|| self.broker.query(query))
            .unwrap_or_else(|| self.kv.query(query))
    }

    fn snapshot(&self) -> Value {
        json!({"format": FORMAT, "kv": self.kv.snapshot(),
               "locks": serde_json::to_value(&self.locks).unwrap_or(Value::Null),
               "broker": serde_json::to_value(&self.broker).unwrap_or(Value::Null),
               "revisions": serde_json::to_value(&self.revisions).unwrap_or(Value::Null)})
    }

    fn restore(&mut self, snapshot: &Value) -> Result<(), String> {
        if snapshot.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return self.kv.restore(snapshot);
        }
        self.kv.restore(&snapshot["kv"])?;
        self.locks = serde_json::from_value(snapshot["locks"].clone())
            .map_err(|e| format!("lock manager snapshot: {e}"))?;
        self.broker = match snapshot.get("broker") {
            Some(b) => {
                serde_json::from_value(b.clone()).map_err(|e| format!("broker snapshot: {e}"))?
            }
            None => Broker::default(),
        };
        self.revisions = match snapshot.get("revisions") {
            Some(r) => serde_json::from_value(r.clone())
                .map_err(|e| format!("cache revisions snapshot: {e}"))?,
            None => Revisions::default(),
        };
        self.set_bugs();
        Ok(())
    }

    /// Only the bugs that answer before committing speculate.
    fn speculate(&self, command: &Value) -> Option<Value> {
        if self.bugs.has(Bug::LockNoQuorum) && LockCommand::owns(command) {
            let cmd = serde_json::from_value::<LockCommand>(command.clone()).ok()?;
            return self.locks.speculate(&cmd);
        }
        if self.bugs.has(Bug::AckBeforePersist) && BrokerCommand::owns(command) {
            let cmd = serde_json::from_value::<BrokerCommand>(command.clone()).ok()?;
            return self.broker.speculate(&cmd);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_reach_their_service_and_snapshots_keep_both() {
        let mut s = Services::new(&Bugs::default());
        s.apply(&json!({"op": "put", "key": "a", "value": 1}));
        let r = s.apply(
            &json!({"op": "lock-acquire", "lock": "l", "owner": "o", "ttl_ms": 100, "now_ms": 1}),
        );
        assert_eq!(r["token"], 1);
        let mut copy = Services::new(&Bugs::default());
        copy.restore(&s.snapshot()).unwrap();
        assert_eq!(copy.query(&json!({"key": "a"})), json!(1));
        assert_eq!(copy.query(&json!({"lock": "l"}))["last_token"], 1);
        // A snapshot from before the lock manager existed is the KV map alone.
        let mut old = Services::new(&Bugs::default());
        old.restore(&json!({"a": 2})).unwrap();
        assert_eq!(old.query(&json!({"key": "a"})), json!(2));
        s.apply(&json!({"op": "cache-put", "key": "c", "value": 5}));
        let r = s.apply(&json!({"op": "cache-put", "key": "c", "value": 6}));
        assert_eq!(r["rev"], 2);
        let mut copy = Services::new(&Bugs::default());
        copy.restore(&s.snapshot()).unwrap();
        assert_eq!(
            copy.query(&crate::services::cache::store::read_query("c")),
            json!({"value": 6, "rev": 2, "read_rev": 2})
        );
        let bad = s.apply(&json!({"op": "lock-acquire", "lock": "l"}));
        assert_eq!(bad["ok"], false);
    }
}
