//! Transactions over the replicated log: a transaction is a list of micro-ops
//! (`["append", k, v]`, `["w", k, v]`, `["r", k, null]`) applied as one log
//! entry, so every replica runs it whole, in log order: strictly serializable.
//! Its keys are its own (not the KV store's), so the two never mix.

mod api;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use serde_json::{json, Map, Value};

use super::kv::KvStore;
use super::Service;
use crate::bugs::{Bug, Bugs};
use crate::http::ApiState;

/// The transaction service's state: each key's value (a list for append, any
/// JSON for write), keyed by the key's JSON text.
#[derive(Debug, Default)]
pub struct TxnService {
    data: BTreeMap<String, Value>,
    /// Planted: micro-ops run one at a time, each its own entry or read.
    nonatomic: bool,
}

impl TxnService {
    /// The service, with its planted bug if switched on.
    pub fn new(bugs: &Bugs) -> Self {
        TxnService {
            data: BTreeMap::new(),
            nonatomic: bugs.has(Bug::TxnNonatomic),
        }
    }

    /// Runs `ops` against `data` (writes only when `write` is true), answering
    /// each micro-op with its result filled in.
    pub(crate) fn run(
        data: &mut BTreeMap<String, Value>,
        ops: &[Value],
        write: bool,
    ) -> Result<Value, String> {
        let mut out = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let (f, key, arg) = parse_op(op).map_err(|e| format!("micro-op {i}: {e}"))?;
            let slot = key.to_string();
            let current = data.get(&slot).cloned().unwrap_or(Value::Null);
            if f == "r" {
                out.push(json!(["r", key, current]));
                continue;
            }
            if !write {
                return Err(format!("micro-op {i}: `{f}` in a read-only transaction"));
            }
            let next = next_value(f, &current, arg).map_err(|e| format!("micro-op {i}: {e}"))?;
            data.insert(slot, next);
            out.push(op.clone());
        }
        Ok(Value::Array(out))
    }
}

/// What write micro-op `f` with argument `arg` makes of a key holding
/// `current` (null: absent), or why it cannot run. `add` keeps a balance: it
/// refuses to take an integer below zero.
pub(crate) fn next_value(f: &str, current: &Value, arg: &Value) -> Result<Value, String> {
    match f {
        "w" => Ok(arg.clone()),
        "append" => match current {
            Value::Null => Ok(json!([arg])),
            Value::Array(list) => {
                let mut list = list.clone();
                list.push(arg.clone());
                Ok(Value::Array(list))
            }
            other => Err(format!("cannot append to {other}")),
        },
        "add" => {
            let have = match current {
                Value::Null => 0,
                v => v.as_i64().ok_or_else(|| format!("cannot add to {v}"))?,
            };
            let delta = arg.as_i64().ok_or("`add` needs an integer")?;
            match have.checked_add(delta) {
                Some(n) if n >= 0 => Ok(json!(n)),
                _ => Err(format!("insufficient: holds {have}, cannot add {delta}")),
            }
        }
        _ => Err(format!("`{f}` does not write")),
    }
}

/// A micro-op's parts: `[f, key, value]` with `f` one of `r`, `append`, `w`,
/// `add` (an integer).
pub(crate) fn parse_op(op: &Value) -> Result<(&str, &Value, &Value), String> {
    let parts = op
        .as_array()
        .filter(|p| p.len() == 3)
        .ok_or("expected [f, key, value]")?;
    let f = parts[0].as_str().unwrap_or_default();
    if !matches!(f, "r" | "append" | "w" | "add") {
        return Err(format!(
            "unknown micro-op `{}` (r, append, w, add)",
            parts[0]
        ));
    }
    if f == "add" && !parts[2].is_i64() {
        return Err("`add` needs an integer".into());
    }
    if !(parts[1].is_string() || parts[1].is_i64() || parts[1].is_u64()) {
        return Err("the key must be a string or an integer".into());
    }
    if f != "r" && parts[2].is_null() {
        return Err(format!("`{f}` needs a value"));
    }
    Ok((f, &parts[1], &parts[2]))
}

impl Service for TxnService {
    fn owns(&self, command: &Value) -> bool {
        command.get("op").and_then(Value::as_str) == Some("txn")
    }

    fn apply(&mut self, command: &Value, _keys: &mut KvStore) -> Value {
        let ops = command["ops"].as_array().cloned().unwrap_or_default();
        // All or nothing: run on a copy of what it touches, keep it if it all worked.
        let mut scratch = self.data.clone();
        match Self::run(&mut scratch, &ops, true) {
            Ok(done) => {
                self.data = scratch;
                json!({"ok": true, "ops": done})
            }
            Err(e) => json!({"ok": false, "error": e}),
        }
    }

    fn query(&self, query: &Value, _keys: &KvStore) -> Option<Value> {
        let ops = query.get("txn-read")?.as_array()?;
        let mut data = self.data.clone();
        Some(match Self::run(&mut data, ops, false) {
            Ok(done) => json!({"ok": true, "ops": done}),
            Err(e) => json!({"ok": false, "error": e}),
        })
    }

    fn snapshot(&self, snapshot: &mut Map<String, Value>) {
        snapshot.insert("txn".into(), json!(self.data));
    }

    fn restore(&mut self, snapshot: &Value) -> Result<(), String> {
        self.data = match snapshot.get("txn") {
            Some(v) => {
                serde_json::from_value(v.clone()).map_err(|e| format!("txn snapshot: {e}"))?
            }
            None => BTreeMap::new(),
        };
        Ok(())
    }

    fn routes(&self) -> Router<Arc<ApiState>> {
        api::routes(self.nonatomic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_txn_applies_whole_or_not_at_all_and_survives_a_snapshot() {
        let mut s = TxnService::default();
        let mut keys = KvStore::default();
        let r = s.apply(
            &json!({"op": "txn", "ops": [["append", 1, 5], ["r", 1, null], ["w", "x", 2], ["r", "x", null]]}),
            &mut keys,
        );
        assert_eq!(
            r["ops"],
            json!([
                ["append", 1, 5],
                ["r", 1, [5]],
                ["w", "x", 2],
                ["r", "x", 2]
            ])
        );
        // Appending to a register fails the whole txn: the first append is undone.
        let r = s.apply(
            &json!({"op": "txn", "ops": [["append", 1, 6], ["append", "x", 1]]}),
            &mut keys,
        );
        assert_eq!(r["ok"], false);
        let read = s
            .query(&json!({"txn-read": [["r", 1, null]]}), &keys)
            .unwrap();
        assert_eq!(read["ops"], json!([["r", 1, [5]]]));
        let mut copy = TxnService::default();
        let mut snap = Map::new();
        s.snapshot(&mut snap);
        copy.restore(&Value::Object(snap)).unwrap();
        assert_eq!(
            copy.query(&json!({"txn-read": [["r", "x", null]]}), &keys)
                .unwrap()["ops"],
            json!([["r", "x", 2]])
        );
        assert!(parse_op(&json!(["frob", 1, 2])).is_err());
        assert!(parse_op(&json!(["append", [1], 2])).is_err());
    }
}
