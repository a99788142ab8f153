//! The cache's backing store on the Raft log: KV writes stamped with a
//! revision, as etcd stamps each key with the revision of its last change.
//! Revisions order the writes to a key, so a cache can tell an old copy from a
//! new one, and the store's current revision at a read bounds what that read saw.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A write through the cache, as it travels in the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename = "cache-put")]
pub struct CachePut {
    /// Key.
    pub key: String,
    /// New value (`null` deletes).
    pub value: Value,
}

impl CachePut {
    /// Whether `command` is a cache write.
    pub fn owns(command: &Value) -> bool {
        command.get("op").and_then(Value::as_str) == Some("cache-put")
    }
}

/// The query for a key's value with its revisions.
pub fn read_query(key: &str) -> Value {
    json!({"cache_read": key})
}

/// Revisions of the keys written through the cache.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Revisions {
    /// The store's revision: one more per cache write.
    pub revision: u64,
    /// Each key's revision of last change.
    pub keys: BTreeMap<String, u64>,
}

impl Revisions {
    /// Records a write to `key`; answers its revision.
    pub fn bump(&mut self, key: &str) -> u64 {
        self.revision += 1;
        self.keys.insert(key.to_string(), self.revision);
        self.revision
    }

    /// The key a cache read asks for, if `query` is one.
    pub fn read_key(query: &Value) -> Option<&str> {
        query.get("cache_read").and_then(Value::as_str)
    }

    /// A read's answer: the value, its revision (0: never written through the
    /// cache) and the store's revision now.
    pub fn answer(&self, key: &str, value: Value) -> Value {
        json!({"value": value, "rev": self.keys.get(key).copied().unwrap_or(0),
               "read_rev": self.revision})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_write_gets_the_next_revision_and_reads_report_both() {
        let mut r = Revisions::default();
        assert_eq!(r.bump("a"), 1);
        assert_eq!(r.bump("b"), 2);
        assert_eq!(r.bump("a"), 3);
        assert_eq!(
            r.answer("a", json!(7)),
            json!({"value": 7, "rev": 3, "read_rev": 3})
        );
        assert_eq!(r.answer("z", Value::Null)["rev"], 0);
        let put: CachePut =
            serde_json::from_value(json!({"op": "cache-put", "key": "a", "value": 1})).unwrap();
        assert_eq!(put.key, "a");
        assert!(CachePut::owns(&json!({"op": "cache-put"})));
        assert_eq!(Revisions::read_key(&read_query("k")), Some("k"));
    }
}
