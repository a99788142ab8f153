//! The key-value store: read, write, cas and delete on string keys. Its map is
//! the key space the services share (the cache writes through to it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A KV command as it travels in the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum KvCommand {
    /// Set `key` to `value`.
    Put {
        /// Key.
        key: String,
        /// New value.
        value: Value,
    },
    /// Set `key` to `new` if it holds `expected` (null: absent).
    Cas {
        /// Key.
        key: String,
        /// Expected current value.
        expected: Value,
        /// New value.
        new: Value,
    },
    /// Remove `key`.
    Delete {
        /// Key.
        key: String,
    },
}

/// What a command did: `{"ok": true}` or `{"ok": false, "current": V}` for a cas.
pub fn command_ok(result: &Value) -> bool {
    result.get("ok").and_then(Value::as_bool).unwrap_or(false)
}

/// The store: keys to JSON values; absent keys read as null.
#[derive(Debug, Default)]
pub struct KvStore {
    data: BTreeMap<String, Value>,
}

impl KvStore {
    /// Applies a KV command; `{"ok": false, ...}` for anything else.
    pub fn apply(&mut self, command: &Value) -> Value {
        let Ok(cmd) = serde_json::from_value::<KvCommand>(command.clone()) else {
            return json!({"ok": false, "error": "not a kv command"});
        };
        match cmd {
            KvCommand::Put { key, value } => {
                if value.is_null() {
                    self.data.remove(&key);
                } else {
                    self.data.insert(key, value);
                }
                json!({"ok": true})
            }
            KvCommand::Cas { key, expected, new } => {
                let current = self.data.get(&key).cloned().unwrap_or(Value::Null);
                if current != expected {
                    return json!({"ok": false, "current": current});
                }
                if new.is_null() {
                    self.data.remove(&key);
                } else {
                    self.data.insert(key, new);
                }
                json!({"ok": true})
            }
            KvCommand::Delete { key } => {
                self.data.remove(&key);
                json!({"ok": true})
            }
        }
    }

    /// The value of `query`'s `key` (null when absent).
    pub fn query(&self, query: &Value) -> Value {
        let key = query.get("key").and_then(Value::as_str).unwrap_or("");
        self.data.get(key).cloned().unwrap_or(Value::Null)
    }

    /// The whole map, for a snapshot.
    pub fn snapshot(&self) -> Value {
        serde_json::to_value(&self.data).unwrap_or(Value::Null)
    }

    /// Replaces the map with a snapshot's.
    pub fn restore(&mut self, snapshot: &Value) -> Result<(), String> {
        self.data =
            serde_json::from_value(snapshot.clone()).map_err(|e| format!("kv snapshot: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_applies_only_on_match_and_snapshots_round_trip() {
        let mut kv = KvStore::default();
        let put = serde_json::to_value(KvCommand::Put {
            key: "a".into(),
            value: json!(1),
        })
        .unwrap();
        assert!(command_ok(&kv.apply(&put)));
        let bad = serde_json::to_value(KvCommand::Cas {
            key: "a".into(),
            expected: json!(2),
            new: json!(3),
        })
        .unwrap();
        assert_eq!(kv.apply(&bad), json!({"ok": false, "current": 1}));
        let good = serde_json::to_value(KvCommand::Cas {
            key: "a".into(),
            expected: json!(1),
            new: json!(3),
        })
        .unwrap();
        assert!(command_ok(&kv.apply(&good)));
        let mut copy = KvStore::default();
        copy.restore(&kv.snapshot()).unwrap();
        assert_eq!(copy.query(&json!({"key": "a"})), json!(3));
        assert_eq!(copy.query(&json!({"key": "b"})), Value::Null);
    }
}
