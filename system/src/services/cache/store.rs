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
    /// When the value expires (ms since the epoch on the proposer's clock):
    /// a read from then on finds no value. `None` keeps it until replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

impl CachePut {
    /// Whether `command` is a cache write.
    pub fn owns(command: &Value) -> bool {
        command.get("op").and_then(Value::as_str) == Some("cache-put")
    }
}

/// The query for a key's value with its revisions, as of `now_ms` (the
/// reader's clock, which decides whether a value has expired).
pub fn read_query(key: &str, now_ms: u64) -> Value {
    json!({"cache_read": key, "now_ms": now_ms})
}

/// Revisions of the keys written through the cache.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Revisions {
    /// The store's revision: one more per cache write.
    pub revision: u64,
    /// Each key's revision of last change.
    pub keys: BTreeMap<String, u64>,
    /// When keys written with a time to live expire (ms since the epoch).
    #[serde(default)]
    pub expiry: BTreeMap<String, u64>,
}

impl Revisions {
    /// Records a write to `key`, expiring at `expires_at_ms` if given;
    /// answers its revision.
    pub fn bump(&mut self, key: &str, expires_at_ms: Option<u64>) -> u64 {
        self.revision += 1;
        self.keys.insert(key.to_string(), self.revision);
        match expires_at_ms {
            Some(at) => self.expiry.insert(key.to_string(), at),
            None => self.expiry.remove(key),
        };
        self.revision
    }

    /// The time `query` reads at (0, before any expiry, if it names none).
    pub fn read_time(query: &Value) -> u64 {
        query.get("now_ms").and_then(Value::as_u64).unwrap_or(0)
    }

    /// The key a cache read asks for, if `query` is one.
    pub fn read_key(query: &Value) -> Option<&str> {
        query.get("cache_read").and_then(Value::as_str)
    }

    /// A read at `now_ms`'s answer: the value (null once expired), its
    /// revision (0: never written through the cache), the store's revision
    /// now, and when the value expires, if it does.
    pub fn answer(&self, key: &str, value: Value, now_ms: u64) -> Value {
        let rev = self.keys.get(key).copied().unwrap_or(0);
        let mut answer = json!({"value": value, "rev": rev, "read_rev": self.revision});
        if let Some(at) = self.expiry.get(key) {
            if *at <= now_ms {
                answer["value"] = Value::Null;
            }
            answer["expires_at_ms"] = json!(at);
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_write_gets_the_next_revision_and_reads_report_both() {
        let mut r = Revisions::default();
        assert_eq!(r.bump("a", None), 1);
        assert_eq!(r.bump("b", None), 2);
        assert_eq!(r.bump("a", None), 3);
        assert_eq!(
            r.answer("a", json!(7), 0),
            json!({"value": 7, "rev": 3, "read_rev": 3})
        );
        assert_eq!(r.answer("z", Value::Null, 0)["rev"], 0);
        let put: CachePut =
            serde_json::from_value(json!({"op": "cache-put", "key": "a", "value": 1})).unwrap();
        assert_eq!(put.key, "a");
        assert!(CachePut::owns(&json!({"op": "cache-put"})));
        assert_eq!(Revisions::read_key(&read_query("k", 5)), Some("k"));
        assert_eq!(Revisions::read_time(&read_query("k", 5)), 5);
    }

    #[test]
    fn a_value_written_with_a_time_to_live_reads_as_null_from_then_on() {
        let mut r = Revisions::default();
        let rev = r.bump("a", Some(1_000));
        let before = r.answer("a", json!(1), 999);
        assert_eq!(
            before,
            json!({"value": 1, "rev": rev, "read_rev": rev, "expires_at_ms": 1000})
        );
        assert_eq!(r.answer("a", json!(1), 1_000)["value"], Value::Null);
        // A later write without one keeps its value until replaced.
        r.bump("a", None);
        assert_eq!(r.answer("a", json!(2), 5_000)["value"], 2);
        // Older snapshots have no expiry map.
        let old: Revisions =
            serde_json::from_value(json!({"revision": 1, "keys": {"a": 1}})).unwrap();
        assert!(old.expiry.is_empty());
    }
}
