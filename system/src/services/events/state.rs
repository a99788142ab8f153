//! The event store's replicated state: streams of events with dense per-stream
//! versions, one global log that orders every event, per-stream snapshots of
//! the aggregate fold, subscription checkpoints and one projection.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A stream's aggregate is snapshotted each time its length reaches a
/// multiple of this.
pub const SNAPSHOT_EVERY: u64 = 8;
/// The event type the projection counts, by `data.customer`.
pub const ORDER_PLACED: &str = "order-placed";
/// Most events one read returns.
pub const MAX_READ: u64 = 1000;

/// A command of the event store.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum EventCommand {
    /// Appends `events` to `stream`, if it holds exactly `expected` events
    /// (any length when `None`).
    EsAppend {
        stream: String,
        expected: Option<u64>,
        events: Vec<NewEvent>,
        /// The proposer's clock (`now_ms`, the field PBFT lets differ
        /// between replicas within a bound).
        #[serde(rename = "now_ms")]
        at_ms: u64,
    },
    /// Creates subscription `name` delivering from global position `from`;
    /// an existing one is left as it is.
    EsSubscribe { name: String, from: u64 },
    /// The subscriber has handled every event up to `position`.
    EsAck { name: String, position: u64 },
}

impl EventCommand {
    /// Whether `command` is the event store's.
    pub fn owns(command: &Value) -> bool {
        matches!(
            command.get("op").and_then(Value::as_str),
            Some("es-append" | "es-subscribe" | "es-ack")
        )
    }
}

/// An event as a client hands it over.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NewEvent {
    /// What happened (`order-placed`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Its payload.
    #[serde(default)]
    pub data: Value,
}

/// An event as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Stored {
    stream: String,
    version: u64,
    #[serde(rename = "type")]
    kind: String,
    data: Value,
    at_ms: u64,
}

/// A snapshot of a stream's aggregate after its first `version` events.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Snapshot {
    version: u64,
    state: Value,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Subscription {
    /// The next global position to deliver.
    next: u64,
    /// Whether the subscriber has acknowledged anything yet.
    acked: bool,
}

/// The event store.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EventStore {
    /// Every event in the order appends committed: its index is its position.
    log: Vec<Stored>,
    /// Each stream's events' global positions, by version.
    streams: BTreeMap<String, Vec<u64>>,
    snapshots: BTreeMap<String, Snapshot>,
    subscriptions: BTreeMap<String, Subscription>,
    /// Orders placed per customer, kept up to date by every append.
    projection: BTreeMap<String, u64>,
    /// Planted bug `no-version-check`.
    #[serde(skip)]
    pub ignore_expected: bool,
    /// Planted bug `subscription-skips`.
    #[serde(skip)]
    pub skip_on_resume: bool,
}

/// The aggregate of a stream with `event` folded in: how many events, how
/// many of each type, and the sum of the integer `data.amount`s.
pub fn fold(state: &Value, event_type: &str, data: &Value) -> Value {
    let events = state["events"].as_u64().unwrap_or(0) + 1;
    let mut types = state["types"].as_object().cloned().unwrap_or_default();
    let n = types.get(event_type).and_then(Value::as_u64).unwrap_or(0);
    types.insert(event_type.to_string(), json!(n + 1));
    let total = state["total"]
        .as_i64()
        .unwrap_or(0)
        .saturating_add(data["amount"].as_i64().unwrap_or(0));
    json!({"events": events, "types": types, "total": total})
}

/// The aggregate of no events.
pub fn empty_aggregate() -> Value {
    json!({"events": 0, "types": {}, "total": 0})
}

/// The customer an `order-placed` event counts for in the projection.
pub fn projected_customer<'a>(event_type: &str, data: &'a Value) -> Option<&'a str> {
    (event_type == ORDER_PLACED)
        .then(|| data["customer"].as_str())
        .flatten()
}

impl EventStore {
    /// Applies a committed command.
    pub fn apply(&mut self, cmd: EventCommand) -> Value {
        match cmd {
            EventCommand::EsAppend {
                stream,
                expected,
                events,
                at_ms,
            } => self.append(stream, expected, events, at_ms),
            EventCommand::EsSubscribe { name, from } => {
                let s = self.subscriptions.entry(name).or_insert(Subscription {
                    next: from,
                    acked: false,
                });
                json!({"ok": true, "next": s.next})
            }
            EventCommand::EsAck { name, position } => {
                let end = self.log.len() as u64;
                let Some(s) = self.subscriptions.get_mut(&name) else {
                    return json!({"ok": false, "error": "unknown-subscription"});
                };
                if position >= end {
                    return json!({"ok": false, "error": "beyond-log", "end": end});
                }
                s.next = s.next.max(position + 1);
                s.acked = true;
                json!({"ok": true, "next": s.next})
            }
        }
    }

    fn append(
        &mut self,
        stream: String,
        expected: Option<u64>,
        events: Vec<NewEvent>,
        at_ms: u64,
    ) -> Value {
        let current = self.streams.get(&stream).map_or(0, |s| s.len() as u64);
        if let Some(e) = expected {
            if e != current && !self.ignore_expected {
                return json!({"ok": false, "error": "wrong-expected-version", "current": current});
            }
        }
        // The bug writes where the client expected, over what is there.
        let first = match expected {
            Some(e) if self.ignore_expected => e.min(current),
            _ => current,
        };
        let positions = self.streams.entry(stream.clone()).or_default();
        positions.truncate(first as usize);
        let mut out = Vec::new();
        for (i, e) in events.into_iter().enumerate() {
            let position = self.log.len() as u64;
            if let Some(c) = projected_customer(&e.kind, &e.data) {
                *self.projection.entry(c.to_string()).or_default() += 1;
            }
            self.log.push(Stored {
                stream: stream.clone(),
                version: first + i as u64,
                kind: e.kind,
                data: e.data,
                at_ms,
            });
            positions.push(position);
            out.push(position);
        }
        let length = positions.len() as u64;
        self.snapshot_if_due(&stream, length);
        json!({"ok": true, "first_version": first, "version": length, "positions": out})
    }

    /// Snapshots the stream's aggregate when its length crossed a multiple of
    /// [`SNAPSHOT_EVERY`], folding on from the last snapshot.
    fn snapshot_if_due(&mut self, stream: &str, length: u64) {
        let last = self.snapshots.get(stream).map_or(0, |s| s.version);
        let due = length / SNAPSHOT_EVERY * SNAPSHOT_EVERY;
        if due <= last || due == 0 {
            return;
        }
        let state = self.fold_from(stream, self.snapshots.get(stream).cloned(), due);
        self.snapshots.insert(
            stream.to_string(),
            Snapshot {
                version: due,
                state,
            },
        );
    }

    /// The aggregate of the stream's first `upto` events, from `from` on.
    fn fold_from(&self, stream: &str, from: Option<Snapshot>, upto: u64) -> Value {
        let Snapshot { version, state } = from.unwrap_or(Snapshot {
            version: 0,
            state: empty_aggregate(),
        });
        let positions = self.streams.get(stream).map(Vec::as_slice).unwrap_or(&[]);
        let upto = (upto as usize).min(positions.len());
        positions[(version as usize).min(upto)..upto]
            .iter()
            .map(|p| &self.log[*p as usize])
            .fold(state, |s, e| fold(&s, &e.kind, &e.data))
    }

    fn event(&self, position: u64) -> Value {
        let e = &self.log[position as usize];
        json!({"position": position, "stream": e.stream, "version": e.version,
               "type": e.kind, "data": e.data, "at_ms": e.at_ms})
    }

    /// Answers a query whose `events` field names it: `read` (a stream,
    /// forwards or backwards), `all` (the global log), `streams`, `state` (a
    /// stream's aggregate from its snapshot and tail), `projection`,
    /// `subscription` (its checkpoint and the events it delivers next).
    pub fn query(&self, query: &Value) -> Option<Value> {
        let kind = query.get("events").and_then(Value::as_str)?;
        let max = query["max"].as_u64().unwrap_or(MAX_READ).min(MAX_READ) as usize;
        let from = query["from"].as_u64();
        let stream = query["stream"].as_str().unwrap_or_default();
        Some(match kind {
            "read" => {
                let Some(positions) = self.streams.get(stream) else {
                    return Some(json!({"missing": format!("no stream `{stream}`")}));
                };
                let len = positions.len() as u64;
                let versions: Vec<u64> = if query["backwards"].as_bool().unwrap_or(false) {
                    // From the given version down, or from the newest.
                    match len.checked_sub(1) {
                        None => Vec::new(),
                        Some(newest) => (0..=from.unwrap_or(newest).min(newest))
                            .rev()
                            .take(max)
                            .collect(),
                    }
                } else {
                    (from.unwrap_or(0)..len).take(max).collect()
                };
                let events: Vec<Value> = versions
                    .iter()
                    .map(|v| self.event(positions[*v as usize]))
                    .collect();
                json!({"stream": stream, "version": len, "events": events})
            }
            "all" => {
                let end = self.log.len() as u64;
                let events: Vec<Value> = (from.unwrap_or(0)..end)
                    .take(max)
                    .map(|p| self.event(p))
                    .collect();
                json!({"end": end, "events": events})
            }
            "streams" => {
                let prefix = query["prefix"].as_str().unwrap_or_default();
                let streams: Vec<Value> = self
                    .streams
                    .range(prefix.to_string()..)
                    .take_while(|(name, _)| name.starts_with(prefix))
                    .map(|(name, positions)| {
                        let last = positions.last().map(|p| &self.log[*p as usize]);
                        json!({"stream": name, "version": positions.len(),
                               "last_type": last.map(|e| e.kind.clone()),
                               "last_at_ms": last.map(|e| e.at_ms)})
                    })
                    .collect();
                json!({"streams": streams})
            }
            "state" => {
                let Some(positions) = self.streams.get(stream) else {
                    return Some(json!({"missing": format!("no stream `{stream}`")}));
                };
                let snap = self.snapshots.get(stream).cloned();
                let snapshot_version = snap.as_ref().map_or(0, |s| s.version);
                let state = self.fold_from(stream, snap, positions.len() as u64);
                json!({"stream": stream, "version": positions.len(), "state": state,
                       "snapshot_version": snapshot_version})
            }
            "projection" => {
                let mut rebuilt: BTreeMap<&str, u64> = BTreeMap::new();
                for e in &self.log {
                    if let Some(c) = projected_customer(&e.kind, &e.data) {
                        *rebuilt.entry(c).or_default() += 1;
                    }
                }
                json!({"position": self.log.len(), "counts": self.projection, "rebuilt": rebuilt})
            }
            "subscription" => {
                let name = query["name"].as_str().unwrap_or_default();
                let Some(s) = self.subscriptions.get(name) else {
                    return Some(json!({"missing": format!("no subscription `{name}`")}));
                };
                // The bug resumes one past the checkpoint once anything was acked.
                let start = if self.skip_on_resume && s.acked {
                    s.next + 1
                } else {
                    s.next
                };
                let end = self.log.len() as u64;
                let events: Vec<Value> = (start..end).take(max).map(|p| self.event(p)).collect();
                json!({"name": name, "next": s.next, "end": end, "events": events})
            }
            _ => return None,
        })
    }

    /// Every stream's length.
    #[cfg(test)]
    fn lengths(&self) -> serde_json::Map<String, Value> {
        self.streams
            .iter()
            .map(|(k, v)| (k.clone(), json!(v.len())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(s: &mut EventStore, stream: &str, expected: Option<u64>, n: usize) -> Value {
        let events = (0..n)
            .map(|i| NewEvent {
                kind: ORDER_PLACED.into(),
                data: json!({"customer": format!("c{}", i % 2), "amount": 10}),
            })
            .collect();
        s.apply(EventCommand::EsAppend {
            stream: stream.into(),
            expected,
            events,
            at_ms: 7,
        })
    }

    #[test]
    fn one_of_two_appends_at_the_same_expected_version_wins() {
        let mut s = EventStore::default();
        assert_eq!(append(&mut s, "a", Some(0), 2)["version"], 2);
        let lost = append(&mut s, "a", Some(0), 1);
        assert_eq!(lost["error"], "wrong-expected-version");
        assert_eq!(lost["current"], 2);
        let won = append(&mut s, "a", Some(2), 1);
        assert_eq!(won["first_version"], 2);
        assert_eq!(won["positions"], json!([2]));
        assert_eq!(append(&mut s, "b", None, 1)["positions"], json!([3]));
        let read = s
            .query(&json!({"events": "read", "stream": "a", "from": 1}))
            .unwrap();
        let versions: Vec<u64> = read["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["version"].as_u64().unwrap())
            .collect();
        assert_eq!(versions, [1, 2]);
        let back = s
            .query(&json!({"events": "read", "stream": "a", "backwards": true, "max": 2}))
            .unwrap();
        assert_eq!(back["events"][0]["version"], 2);
        assert_eq!(back["events"][1]["version"], 1);
        assert!(
            s.query(&json!({"events": "read", "stream": "zz"})).unwrap()["missing"].is_string()
        );
    }

    #[test]
    fn the_planted_bug_overwrites_where_the_client_expected() {
        let mut s = EventStore {
            ignore_expected: true,
            ..EventStore::default()
        };
        append(&mut s, "a", Some(0), 1);
        let second = append(&mut s, "a", Some(0), 1);
        assert_eq!(second["ok"], true);
        assert_eq!(second["first_version"], 0);
        assert_eq!(s.lengths()["a"], 1);
    }

    #[test]
    fn snapshot_and_tail_equal_a_full_replay_and_the_projection_a_rebuild() {
        let mut s = EventStore::default();
        for _ in 0..5 {
            append(&mut s, "a", None, 3);
        }
        let state = s.query(&json!({"events": "state", "stream": "a"})).unwrap();
        assert_eq!(state["snapshot_version"], 8);
        assert_eq!(state["state"]["events"], 15);
        assert_eq!(state["state"]["total"], 150);
        let full = s.fold_from("a", None, 15);
        assert_eq!(state["state"], full);
        let p = s.query(&json!({"events": "projection"})).unwrap();
        assert_eq!(p["counts"], p["rebuilt"]);
        assert_eq!(p["counts"]["c0"], 10);
    }

    #[test]
    fn subscriptions_resume_at_their_checkpoint_and_the_bug_skips_one() {
        for bug in [false, true] {
            let mut s = EventStore {
                skip_on_resume: bug,
                ..EventStore::default()
            };
            append(&mut s, "a", None, 5);
            s.apply(EventCommand::EsSubscribe {
                name: "sub".into(),
                from: 1,
            });
            let q = json!({"events": "subscription", "name": "sub", "max": 2});
            assert_eq!(s.query(&q).unwrap()["events"][0]["position"], 1);
            let r = s.apply(EventCommand::EsAck {
                name: "sub".into(),
                position: 2,
            });
            assert_eq!(r["next"], 3);
            let first = &s.query(&q).unwrap()["events"][0]["position"];
            assert_eq!(first, &json!(if bug { 4 } else { 3 }));
            let beyond = s.apply(EventCommand::EsAck {
                name: "sub".into(),
                position: 9,
            });
            assert_eq!(beyond["error"], "beyond-log");
            // An older acknowledgement does not move the checkpoint back.
            s.apply(EventCommand::EsAck {
                name: "sub".into(),
                position: 0,
            });
            assert_eq!(s.query(&q).unwrap()["next"], 3);
        }
    }
}
