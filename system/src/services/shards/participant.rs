//! A shard's state machine: its part of the transactional key space, and the
//! lock table of the transactions prepared on it. Every step is a command in
//! the shard's log, so a prepare is durable on a majority of the group before
//! its vote is answered, and a new leader knows every lock the old one held.
//!
//! Locks are strict two-phase: a prepared transaction holds shared locks on
//! what it read and exclusive locks on what it writes until its decision is
//! applied. A prepare that meets a conflicting lock is refused with the
//! holders' ages, and the coordinator applies wait-die (an older transaction
//! waits and retries, a younger one aborts), so no cycle of waits can form.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::bugs::{Bug, Bugs};
use crate::http::ApiState;
use crate::services::kv::KvStore;
use crate::services::txn::{parse_op, TxnService};
use crate::services::Service;

/// A transaction's age for wait-die: its start time in ms, then its id to
/// break ties; smaller is older.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Age(pub u64, pub String);

/// A transaction prepared here, holding its locks until it is decided.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Prepared {
    age: Age,
    reads: BTreeSet<String>,
    /// The values its writes leave, installed if it commits.
    writes: BTreeMap<String, Value>,
    /// Its micro-ops on this shard with their results (its vote's answer).
    ops: Value,
    /// Three-phase commit: every shard it spans, which a participant asks
    /// when the coordinator falls silent.
    #[serde(default)]
    shards: Vec<u32>,
    /// Three-phase commit: pre-committed (every shard voted yes), so a
    /// participant that times out commits instead of aborting.
    #[serde(default)]
    precommitted: bool,
}

/// Locks one transaction needs: the keys it reads and the keys it writes.
struct Wants {
    reads: BTreeSet<String>,
    writes: BTreeSet<String>,
}

/// One shard's transactional state.
#[derive(Debug, Default)]
pub struct ShardService {
    data: BTreeMap<String, Value>,
    prepared: BTreeMap<String, Prepared>,
    /// Decided transactions (true: committed), so a prepare arriving after its
    /// transaction was aborted cannot take locks no one will release.
    decided: BTreeMap<String, bool>,
    /// Planted: reads neither take locks nor wait for them.
    read_without_lock: bool,
    /// Planted: the leader answers a prepare before it is committed.
    prepare_not_durable: bool,
}

impl ShardService {
    /// A shard's service, with its planted bugs if switched on.
    pub fn new(bugs: &Bugs) -> Self {
        ShardService {
            read_without_lock: bugs.has(Bug::ReadWithoutLock),
            prepare_not_durable: bugs.has(Bug::PrepareNotDurable),
            ..ShardService::default()
        }
    }

    fn wants(&self, ops: &[Value]) -> Result<Wants, String> {
        let mut w = Wants {
            reads: BTreeSet::new(),
            writes: BTreeSet::new(),
        };
        for (i, op) in ops.iter().enumerate() {
            let (f, key, _) = parse_op(op).map_err(|e| format!("micro-op {i}: {e}"))?;
            if f == "r" {
                if !self.read_without_lock {
                    w.reads.insert(key.to_string());
                }
            } else {
                w.writes.insert(key.to_string());
            }
        }
        Ok(w)
    }

    /// Ages of the prepared transactions (other than `txn`) whose locks
    /// conflict with `wants`.
    fn holders(&self, txn: &str, wants: &Wants) -> Vec<Age> {
        self.prepared
            .iter()
            .filter(|(id, p)| {
                id.as_str() != txn
                    && (wants.reads.iter().any(|k| p.writes.contains_key(k))
                        || wants
                            .writes
                            .iter()
                            .any(|k| p.writes.contains_key(k) || p.reads.contains(k)))
            })
            .map(|(_, p)| p.age.clone())
            .collect()
    }

    /// Runs `ops` on a copy of the keys they touch: the filled-in ops and the
    /// values the writes leave.
    fn evaluate(
        &self,
        ops: &[Value],
        write: bool,
    ) -> Result<(Value, BTreeMap<String, Value>), String> {
        let mut scratch = BTreeMap::new();
        for op in ops {
            if let Ok((_, key, _)) = parse_op(op) {
                let k = key.to_string();
                if let Some(v) = self.data.get(&k) {
                    scratch.insert(k, v.clone());
                }
            }
        }
        let done = TxnService::run(&mut scratch, ops, write)?;
        let writes = self.wants(ops)?.writes;
        scratch.retain(|k, _| writes.contains(k));
        Ok((done, scratch))
    }

    /// The vote a prepare gets now (and, for a yes, what to hold).
    fn vote(
        &self,
        txn: &str,
        age: &Age,
        ops: &[Value],
        shards: Vec<u32>,
    ) -> (Value, Option<Prepared>) {
        if let Some(committed) = self.decided.get(txn) {
            return (
                json!({"ok": false, "error": "decided", "committed": committed}),
                None,
            );
        }
        if let Some(p) = self.prepared.get(txn) {
            return (json!({"ok": true, "ops": p.ops}), None);
        }
        let wants = match self.wants(ops) {
            Ok(w) => w,
            Err(e) => return (json!({"ok": false, "error": e}), None),
        };
        let holders = self.holders(txn, &wants);
        if !holders.is_empty() {
            return (
                json!({"ok": false, "error": "locked", "holders": holders}),
                None,
            );
        }
        match self.evaluate(ops, true) {
            Ok((done, writes)) => (
                json!({"ok": true, "ops": done}),
                Some(Prepared {
                    age: age.clone(),
                    reads: wants.reads,
                    writes,
                    ops: done,
                    shards,
                    precommitted: false,
                }),
            ),
            Err(e) => (json!({"ok": false, "error": e}), None),
        }
    }

    fn prepare(&mut self, command: &Value) -> Value {
        let Some((txn, age, ops)) = prepare_parts(command) else {
            return json!({"ok": false, "error": "malformed prepare"});
        };
        let shards = serde_json::from_value(command["shards"].clone()).unwrap_or_default();
        let (vote, hold) = self.vote(&txn, &age, &ops, shards);
        if let Some(p) = hold {
            self.prepared.insert(txn, p);
        }
        vote
    }

    fn decide(&mut self, command: &Value) -> Value {
        let (Some(txn), Some(commit)) = (command["txn"].as_str(), command["commit"].as_bool())
        else {
            return json!({"ok": false, "error": "malformed decision"});
        };
        // The first decision stands: a late or conflicting one changes nothing.
        if let Some(first) = self.decided.get(txn) {
            return json!({"ok": true, "applied": false, "committed": first});
        }
        let held = self.prepared.remove(txn);
        let applied = held.is_some();
        if let (Some(p), true) = (held, commit) {
            self.data.extend(p.writes);
        }
        self.decided.insert(txn.to_string(), commit);
        json!({"ok": true, "applied": applied, "committed": commit})
    }

    /// Three-phase commit's second phase: a prepared transaction becomes
    /// pre-committed.
    fn precommit(&mut self, command: &Value) -> Value {
        let Some(txn) = command["txn"].as_str() else {
            return json!({"ok": false, "error": "malformed pre-commit"});
        };
        if let Some(p) = self.prepared.get_mut(txn) {
            p.precommitted = true;
            return json!({"ok": true});
        }
        match self.decided.get(txn) {
            Some(c) => json!({"ok": false, "error": "decided", "committed": c}),
            None => json!({"ok": false, "error": "not prepared"}),
        }
    }

    /// Where `txn` stands here: `committed`, `aborted`, `precommitted`,
    /// `uncertain` (prepared) or `unknown` (never seen).
    fn state(&self, txn: &str) -> &'static str {
        match (self.decided.get(txn), self.prepared.get(txn)) {
            (Some(true), _) => "committed",
            (Some(false), _) => "aborted",
            (None, Some(p)) if p.precommitted => "precommitted",
            (None, Some(_)) => "uncertain",
            (None, None) => "unknown",
        }
    }

    /// A single-shard transaction: one command, all or nothing, unless a
    /// prepared transaction holds a lock it needs.
    fn single(&mut self, command: &Value, write: bool) -> Value {
        let ops = command["ops"].as_array().cloned().unwrap_or_default();
        let wants = match self.wants(&ops) {
            Ok(w) => w,
            Err(e) => return json!({"ok": false, "error": e}),
        };
        let holders = self.holders("", &wants);
        if !holders.is_empty() {
            return json!({"ok": false, "error": "locked", "holders": holders});
        }
        match self.evaluate(&ops, write) {
            Ok((done, writes)) => {
                self.data.extend(writes);
                json!({"ok": true, "ops": done})
            }
            Err(e) => json!({"ok": false, "error": e}),
        }
    }
}

fn prepare_parts(command: &Value) -> Option<(String, Age, Vec<Value>)> {
    let txn = command["txn"].as_str()?.to_string();
    let age: Age = serde_json::from_value(command["age"].clone()).ok()?;
    let ops = command["ops"].as_array()?.clone();
    Some((txn, age, ops))
}

impl Service for ShardService {
    fn owns(&self, command: &Value) -> bool {
        matches!(
            command.get("op").and_then(Value::as_str),
            Some("shard-txn" | "shard-prepare" | "shard-precommit" | "shard-decide")
        )
    }

    fn apply(&mut self, command: &Value, _keys: &mut KvStore) -> Value {
        match command["op"].as_str() {
            Some("shard-txn") => self.single(command, true),
            Some("shard-prepare") => self.prepare(command),
            Some("shard-precommit") => self.precommit(command),
            Some("shard-decide") => self.decide(command),
            _ => json!({"ok": false, "error": "not a shard command"}),
        }
    }

    fn query(&self, query: &Value, _keys: &KvStore) -> Option<Value> {
        if let Some(ops) = query.get("shard-read") {
            // A read-only single-shard transaction: nothing to keep, but a
            // key another transaction may be about to change must wait.
            let mut copy = ShardService {
                data: BTreeMap::new(),
                prepared: self.prepared.clone(),
                decided: BTreeMap::new(),
                read_without_lock: self.read_without_lock,
                prepare_not_durable: false,
            };
            let ops = ops.as_array().cloned().unwrap_or_default();
            for op in &ops {
                if let Ok((_, key, _)) = parse_op(op) {
                    let k = key.to_string();
                    if let Some(v) = self.data.get(&k) {
                        copy.data.insert(k, v.clone());
                    }
                }
            }
            return Some(copy.single(&json!({ "ops": ops }), false));
        }
        if query.get("shard-prepared").is_some() {
            return Some(json!(self.prepared.keys().collect::<Vec<_>>()));
        }
        if query.get("shard-in-doubt").is_some() {
            let all: Vec<Value> = self
                .prepared
                .iter()
                .map(|(t, p)| json!({"txn": t, "precommitted": p.precommitted, "shards": p.shards}))
                .collect();
            return Some(Value::Array(all));
        }
        if let Some(txn) = query.get("shard-state").and_then(Value::as_str) {
            return Some(json!({"state": self.state(txn)}));
        }
        None
    }

    fn snapshot(&self, snapshot: &mut Map<String, Value>) {
        snapshot.insert(
            "shard".into(),
            json!({"data": self.data, "prepared": self.prepared, "decided": self.decided}),
        );
    }

    fn restore(&mut self, snapshot: &Value) -> Result<(), String> {
        let Some(s) = snapshot.get("shard") else {
            *self = ShardService {
                read_without_lock: self.read_without_lock,
                prepare_not_durable: self.prepare_not_durable,
                ..ShardService::default()
            };
            return Ok(());
        };
        let field = |name: &str| s.get(name).cloned().unwrap_or_else(|| json!({}));
        self.data = serde_json::from_value(field("data"))
            .map_err(|e| format!("shard snapshot data: {e}"))?;
        self.prepared = serde_json::from_value(field("prepared"))
            .map_err(|e| format!("shard snapshot prepared: {e}"))?;
        self.decided = serde_json::from_value(field("decided"))
            .map_err(|e| format!("shard snapshot decided: {e}"))?;
        Ok(())
    }

    fn routes(&self) -> Router<Arc<ApiState>> {
        Router::new()
    }

    fn speculate(&self, command: &Value) -> Option<Value> {
        if !self.prepare_not_durable || command["op"] != "shard-prepare" {
            return None;
        }
        let (txn, age, ops) = prepare_parts(command)?;
        Some(self.vote(&txn, &age, &ops, Vec::new()).0)
    }
}

/// The transaction decisions, kept in the main group: set once, the first
/// proposal for a transaction wins and every later one learns it. The
/// coordinator proposes commit only once every participant voted yes; a
/// participant left in doubt proposes abort.
#[derive(Debug, Default)]
pub struct DecisionService {
    decisions: BTreeMap<String, bool>,
}

impl Service for DecisionService {
    fn owns(&self, command: &Value) -> bool {
        command.get("op").and_then(Value::as_str) == Some("txn-decide")
    }

    fn apply(&mut self, command: &Value, _keys: &mut KvStore) -> Value {
        let (Some(txn), Some(commit)) = (command["txn"].as_str(), command["commit"].as_bool())
        else {
            return json!({"ok": false, "error": "malformed decision"});
        };
        let recorded = *self.decisions.entry(txn.to_string()).or_insert(commit);
        json!({"ok": true, "commit": recorded})
    }

    fn query(&self, query: &Value, _keys: &KvStore) -> Option<Value> {
        let txn = query.get("txn-decision")?.as_str()?;
        Some(json!({"commit": self.decisions.get(txn)}))
    }

    fn snapshot(&self, snapshot: &mut Map<String, Value>) {
        snapshot.insert("txn-decisions".into(), json!(self.decisions));
    }

    fn restore(&mut self, snapshot: &Value) -> Result<(), String> {
        self.decisions = match snapshot.get("txn-decisions") {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| format!("txn-decisions snapshot: {e}"))?,
            None => BTreeMap::new(),
        };
        Ok(())
    }

    fn routes(&self) -> Router<Arc<ApiState>> {
        Router::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(s: &mut ShardService, c: Value) -> Value {
        s.apply(&c, &mut KvStore::default())
    }

    fn prepare(txn: &str, age: u64, ops: Value) -> Value {
        json!({"op": "shard-prepare", "txn": txn, "age": [age, txn], "ops": ops})
    }

    #[test]
    fn prepared_locks_hold_off_conflicts_until_the_decision() {
        let mut s = ShardService::default();
        let v = apply(
            &mut s,
            prepare("t1", 1, json!([["r", 1, null], ["add", 2, 5]])),
        );
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["ops"][0], json!(["r", 1, null]));
        // Again: the same vote, no second hold.
        assert_eq!(
            apply(&mut s, prepare("t1", 1, json!([["add", 2, 5]])))["ok"],
            true
        );
        // A write to what t1 read, and a read of what t1 writes, both wait.
        let w = apply(&mut s, prepare("t2", 2, json!([["w", 1, 9]])));
        assert_eq!(w["error"], "locked");
        assert_eq!(w["holders"], json!([[1, "t1"]]));
        let r = s.query(
            &json!({"shard-read": [["r", 2, null]]}),
            &KvStore::default(),
        );
        assert_eq!(r.unwrap()["error"], "locked");
        // Reads share: another reader of key 1 goes ahead.
        assert_eq!(
            apply(&mut s, prepare("t3", 3, json!([["r", 1, null]])))["ok"],
            true
        );
        assert_eq!(
            s.query(&json!({"shard-prepared": true}), &KvStore::default()),
            Some(json!(["t1", "t3"]))
        );
        apply(
            &mut s,
            json!({"op": "shard-decide", "txn": "t1", "commit": true}),
        );
        apply(
            &mut s,
            json!({"op": "shard-decide", "txn": "t3", "commit": false}),
        );
        let r = apply(
            &mut s,
            json!({"op": "shard-txn", "ops": [["r", 2, null], ["add", 2, -6]]}),
        );
        assert_eq!(r["ok"], false, "a balance never goes below zero: {r}");
        let r = apply(
            &mut s,
            json!({"op": "shard-txn", "ops": [["add", 2, -5], ["r", 2, null]]}),
        );
        assert_eq!(r["ops"][1], json!(["r", 2, 0]));
        // A prepare after its transaction was aborted takes no lock.
        apply(
            &mut s,
            json!({"op": "shard-decide", "txn": "t4", "commit": false}),
        );
        assert_eq!(
            apply(&mut s, prepare("t4", 4, json!([["w", 1, 1]])))["error"],
            "decided"
        );
        assert_eq!(
            apply(&mut s, prepare("t5", 5, json!([["w", 1, 1]])))["ok"],
            true
        );
    }

    #[test]
    fn a_snapshot_keeps_data_locks_and_decisions() {
        let mut s = ShardService::default();
        apply(
            &mut s,
            json!({"op": "shard-txn", "ops": [["append", "k", 1]]}),
        );
        apply(&mut s, prepare("t1", 1, json!([["append", "k", 2]])));
        apply(
            &mut s,
            json!({"op": "shard-decide", "txn": "t0", "commit": false}),
        );
        let mut snap = Map::new();
        s.snapshot(&mut snap);
        let mut copy = ShardService::default();
        copy.restore(&Value::Object(snap)).unwrap();
        assert_eq!(
            apply(&mut copy, prepare("t2", 2, json!([["r", "k", null]])))["error"],
            "locked"
        );
        assert_eq!(
            apply(&mut copy, prepare("t0", 0, json!([["r", "k", null]])))["error"],
            "decided"
        );
        apply(
            &mut copy,
            json!({"op": "shard-decide", "txn": "t1", "commit": true}),
        );
        let r = copy.query(
            &json!({"shard-read": [["r", "k", null]]}),
            &KvStore::default(),
        );
        assert_eq!(r.unwrap()["ops"], json!([["r", "k", [1, 2]]]));
    }

    #[test]
    fn three_phase_states_move_from_uncertain_to_precommitted_to_decided() {
        let mut s = ShardService::default();
        let state = |s: &ShardService, t: &str| {
            s.query(&json!({"shard-state": t}), &KvStore::default())
                .unwrap()["state"]
                .clone()
        };
        assert_eq!(state(&s, "t1"), "unknown");
        let mut p = prepare("t1", 1, json!([["w", "k", 1]]));
        p["shards"] = json!([1, 2]);
        apply(&mut s, p);
        assert_eq!(state(&s, "t1"), "uncertain");
        assert_eq!(
            apply(&mut s, json!({"op": "shard-precommit", "txn": "t1"}))["ok"],
            true
        );
        assert_eq!(state(&s, "t1"), "precommitted");
        let doubt = s
            .query(&json!({"shard-in-doubt": true}), &KvStore::default())
            .unwrap();
        assert_eq!(
            doubt,
            json!([{"txn": "t1", "precommitted": true, "shards": [1, 2]}])
        );
        apply(
            &mut s,
            json!({"op": "shard-decide", "txn": "t1", "commit": true}),
        );
        assert_eq!(state(&s, "t1"), "committed");
        assert_eq!(
            apply(&mut s, json!({"op": "shard-precommit", "txn": "t1"}))["committed"],
            true
        );
        assert_eq!(
            apply(&mut s, json!({"op": "shard-precommit", "txn": "t9"}))["ok"],
            false
        );
    }

    #[test]
    fn the_first_decision_stands() {
        let mut d = DecisionService::default();
        let mut keys = KvStore::default();
        let a = d.apply(
            &json!({"op": "txn-decide", "txn": "t", "commit": false}),
            &mut keys,
        );
        let b = d.apply(
            &json!({"op": "txn-decide", "txn": "t", "commit": true}),
            &mut keys,
        );
        assert_eq!(
            (a["commit"].clone(), b["commit"].clone()),
            (json!(false), json!(false))
        );
        assert_eq!(
            d.query(&json!({"txn-decision": "u"}), &keys),
            Some(json!({"commit": null}))
        );
    }
}
