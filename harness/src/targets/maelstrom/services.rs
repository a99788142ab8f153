//! The services Maelstrom offers its nodes, each with the consistency it
//! promises and no more: `lin-kv` is linearizable; `seq-kv` is sequentially
//! consistent (each caller sees a prefix of one global order that only moves
//! forward, so its reads may be stale); `lww-kv` keeps replicas that merge by
//! last write wins (reads may be stale and go backwards, racing writes may be
//! lost); `lin-tso` hands out strictly increasing timestamps. A node that
//! leans on more than a service promises is caught by its workload's checker.

use std::collections::HashMap;

use serde_json::{json, Value};
use workloads::Rng;

/// The names nodes address the services by.
pub const NAMES: [&str; 4] = ["lin-kv", "seq-kv", "lww-kv", "lin-tso"];

/// Replicas behind `lww-kv`.
const LWW_REPLICAS: usize = 3;
/// Chance that `lww-kv`'s replicas merge after an operation.
const LWW_MERGE: f64 = 0.3;

/// Every service's state.
pub struct Services {
    lin: HashMap<String, Value>,
    seq: SeqKv,
    lww: Vec<HashMap<String, (u64, Value)>>,
    lww_clock: u64,
    tso: u64,
    rng: Rng,
}

/// `seq-kv`: one log of writes; each caller's view is a prefix of it that
/// only grows; a write or cas is applied at the end and moves its caller there.
#[derive(Default)]
struct SeqKv {
    /// Length of the log.
    len: usize,
    /// Per key: (log position, value) in log order.
    versions: HashMap<String, Vec<(usize, Value)>>,
    /// Per caller: how much of the log its view includes.
    seen: HashMap<String, usize>,
}

impl SeqKv {
    fn value_at(&self, key: &str, upto: usize) -> Option<&Value> {
        let versions = self.versions.get(key)?;
        let i = versions.partition_point(|(at, _)| *at < upto);
        versions[..i].last().map(|(_, v)| v)
    }

    fn append(&mut self, key: String, value: Value) {
        self.versions
            .entry(key)
            .or_default()
            .push((self.len, value));
        self.len += 1;
    }
}

impl Services {
    /// Empty stores; `rng` decides staleness.
    pub fn new(rng: Rng) -> Services {
        Services {
            lin: HashMap::new(),
            seq: SeqKv::default(),
            lww: vec![HashMap::new(); LWW_REPLICAS],
            lww_clock: 0,
            tso: 0,
            rng,
        }
    }

    /// The reply body to `body`, sent by node `caller` to service `name`.
    pub fn answer(&mut self, name: &str, caller: &str, body: &Value) -> Value {
        let reply_to = body["msg_id"].clone();
        let mut reply = match name {
            "lin-tso" => match body["type"].as_str() {
                Some("ts") => {
                    self.tso += 1;
                    json!({"type": "ts_ok", "ts": self.tso - 1})
                }
                _ => error(10, "lin-tso supports ts"),
            },
            "lin-kv" => {
                let lin = &mut self.lin;
                let mut wrote = None;
                let reply = kv_op(
                    body,
                    |key| lin.get(key).cloned(),
                    |key, v| {
                        wrote = Some((key.to_string(), v));
                    },
                );
                if let Some((key, v)) = wrote {
                    lin.insert(key, v);
                }
                reply
            }
            "seq-kv" => {
                let upto = {
                    let seen = self.seq.seen.get(caller).copied().unwrap_or(0);
                    // A read may see anything from its last view to the end.
                    let ahead = (self.seq.len - seen) as u64;
                    let upto = if self.rng.chance(0.5) {
                        self.seq.len
                    } else {
                        seen + self.rng.below(ahead + 1) as usize
                    };
                    self.seq.seen.insert(caller.to_string(), upto);
                    upto
                };
                let writes = !matches!(body["type"].as_str(), Some("read"));
                let seq = &mut self.seq;
                let upto = if writes { seq.len } else { upto };
                let mut wrote = None;
                let reply = kv_op(
                    body,
                    |key| seq.value_at(key, upto).cloned(),
                    |key, v| {
                        wrote = Some((key.to_string(), v));
                    },
                );
                if let Some((key, v)) = wrote {
                    seq.append(key, v);
                }
                if writes {
                    seq.seen.insert(caller.to_string(), seq.len);
                }
                reply
            }
            "lww-kv" => {
                let r = self.rng.below(LWW_REPLICAS as u64) as usize;
                self.lww_clock += 1;
                let (clock, replica) = (self.lww_clock, &mut self.lww[r]);
                let mut wrote = None;
                let reply = kv_op(
                    body,
                    |key| replica.get(key).map(|(_, v)| v.clone()),
                    |key, v| {
                        wrote = Some((key.to_string(), v));
                    },
                );
                if let Some((key, v)) = wrote {
                    replica.insert(key, (clock, v));
                }
                if self.rng.chance(LWW_MERGE) {
                    self.merge_lww();
                }
                reply
            }
            _ => error(10, "no such service"),
        };
        reply["in_reply_to"] = reply_to;
        reply
    }

    /// Brings every `lww-kv` replica to the newest write of each key.
    fn merge_lww(&mut self) {
        let mut newest: HashMap<String, (u64, Value)> = HashMap::new();
        for replica in &self.lww {
            for (k, (t, v)) in replica {
                if newest.get(k).is_none_or(|(t0, _)| t > t0) {
                    newest.insert(k.clone(), (*t, v.clone()));
                }
            }
        }
        for replica in &mut self.lww {
            replica.clone_from(&newest);
        }
    }
}

fn error(code: i64, text: &str) -> Value {
    json!({"type": "error", "code": code, "text": text})
}

/// One read, write or cas against a store seen through `get` and `put`.
fn kv_op(
    body: &Value,
    get: impl FnOnce(&str) -> Option<Value>,
    put: impl FnOnce(&str, Value),
) -> Value {
    let key = body["key"].to_string();
    match body["type"].as_str() {
        Some("read") => match get(&key) {
            Some(v) => json!({"type": "read_ok", "value": v}),
            None => error(20, "key does not exist"),
        },
        Some("write") => {
            put(&key, body["value"].clone());
            json!({"type": "write_ok"})
        }
        Some("cas") => match get(&key) {
            None if body["create_if_not_exists"] == json!(true) => {
                put(&key, body["to"].clone());
                json!({"type": "cas_ok"})
            }
            None => error(20, "key does not exist"),
            Some(v) if v == body["from"] => {
                put(&key, body["to"].clone());
                json!({"type": "cas_ok"})
            }
            Some(v) => error(22, &format!("expected {}, found {v}", body["from"])),
        },
        _ => error(10, "this service supports read, write and cas"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lin_kv_answers_with_maelstrom_codes() {
        let mut s = Services::new(Rng::new(1));
        let mut ask = |body: Value| s.answer("lin-kv", "n1", &body);
        let missing = ask(json!({"type": "read", "key": 1, "msg_id": 7}));
        assert_eq!(
            (missing["code"].clone(), missing["in_reply_to"].clone()),
            (json!(20), json!(7))
        );
        assert_eq!(
            ask(json!({"type": "write", "key": 1, "value": 5}))["type"],
            "write_ok"
        );
        assert_eq!(ask(json!({"type": "read", "key": 1}))["value"], 5);
        assert_eq!(
            ask(json!({"type": "cas", "key": 1, "from": 4, "to": 6}))["code"],
            22
        );
        assert_eq!(
            ask(json!({"type": "cas", "key": 1, "from": 5, "to": 6}))["type"],
            "cas_ok"
        );
        assert_eq!(
            ask(json!({"type": "cas", "key": 2, "from": 0, "to": 1, "create_if_not_exists": true}))
                ["type"],
            "cas_ok"
        );
        assert_eq!(ask(json!({"type": "append"}))["code"], 10);
        // Each service is its own store.
        assert_eq!(
            s.answer("seq-kv", "n1", &json!({"type": "read", "key": 1}))["code"],
            20
        );
    }

    #[test]
    fn seq_kv_reads_are_stale_sometimes_but_never_go_back() {
        let mut s = Services::new(Rng::new(3));
        let (mut stale, mut last) = (0, 0);
        for i in 1..=400i64 {
            s.answer(
                "seq-kv",
                "n1",
                &json!({"type": "write", "key": "x", "value": i}),
            );
            let r = s.answer("seq-kv", "n2", &json!({"type": "read", "key": "x"}));
            let seen = r["value"].as_i64().unwrap_or(0);
            assert!(
                seen >= last && seen <= i,
                "read {seen} after {last}, latest {i}"
            );
            stale += usize::from(seen < i);
            last = seen;
        }
        assert!(stale > 50, "only {stale} stale reads");
        // The writer's own view includes its writes.
        let r = s.answer("seq-kv", "n1", &json!({"type": "read", "key": "x"}));
        assert_eq!(r["value"], 400);
        // A cas judges the latest value and moves its caller there.
        let r = s.answer(
            "seq-kv",
            "n3",
            &json!({"type": "cas", "key": "x", "from": 400, "to": 401}),
        );
        assert_eq!(r["type"], "cas_ok");
        assert_eq!(
            s.answer("seq-kv", "n3", &json!({"type": "read", "key": "x"}))["value"],
            401
        );
    }

    #[test]
    fn lww_kv_reads_go_back_and_racing_cas_both_win() {
        let mut s = Services::new(Rng::new(5));
        let mut backwards = 0;
        let mut last = 0;
        for i in 1..=300i64 {
            s.answer(
                "lww-kv",
                "n1",
                &json!({"type": "write", "key": "x", "value": i}),
            );
            let v = s.answer("lww-kv", "n2", &json!({"type": "read", "key": "x"}))["value"]
                .as_i64()
                .unwrap_or(0);
            backwards += usize::from(v < last);
            last = v;
        }
        assert!(backwards > 10, "reads went back only {backwards} times");
        let mut s = Services::new(Rng::new(9));
        let mut both = 0;
        for round in 0..200i64 {
            let cas = json!({"type": "cas", "key": "c", "from": Value::Null, "to": round, "create_if_not_exists": true});
            s.merge_lww();
            let a = s.answer("lww-kv", "n1", &cas)["type"] == "cas_ok";
            let b = s.answer("lww-kv", "n2", &cas)["type"] == "cas_ok";
            both += usize::from(a && b);
            s.lww.iter_mut().for_each(HashMap::clear);
        }
        assert!(both > 0, "two cas from the same value never both won");
    }

    #[test]
    fn lin_tso_is_strictly_increasing() {
        let mut s = Services::new(Rng::new(1));
        let a = s.answer("lin-tso", "n1", &json!({"type": "ts", "msg_id": 1}));
        let b = s.answer("lin-tso", "n2", &json!({"type": "ts"}));
        assert!(b["ts"].as_u64() > a["ts"].as_u64());
        assert_eq!(a["in_reply_to"], 1);
    }
}
