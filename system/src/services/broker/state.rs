//! The message broker, a state machine on the Raft log: topics split into
//! partitions (a message's key picks its partition on a consistent-hash ring with
//! virtual nodes), each partition an append-only log that is durable once the
//! Raft entry carrying the message commits (so a producer is acknowledged only
//! after a majority has fsynced it), and consumer groups that each see every
//! message (pub/sub fan-out) with at-least-once delivery: a delivered message is
//! in flight until acknowledged, delivered again once its visibility timeout
//! passes, and moved to the group's dead-letter queue after too many deliveries.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ring::Ring;

/// Partitions per topic.
pub const PARTITIONS: u32 = 4;
/// Ring points per partition.
const VNODES: usize = 64;
/// Deliveries without an ack after which a message goes to the dead-letter queue.
pub const MAX_DELIVERIES: u32 = 3;
/// Messages a poll returns at most.
const MAX_BATCH: usize = 100;

/// A broker command as it travels in the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum BrokerCommand {
    /// Append a message to the partition its key hashes to.
    Produce {
        /// Topic.
        topic: String,
        /// Partitioning key.
        key: String,
        /// Payload.
        value: Value,
    },
    /// Deliver up to `max` messages to `consumer` of `group`.
    Poll {
        /// Topic.
        topic: String,
        /// Consumer group.
        group: String,
        /// Consumer within the group.
        consumer: String,
        /// Batch size.
        max: usize,
        /// How long the messages stay invisible to others before redelivery.
        visibility_ms: u64,
        /// The proposer's clock.
        now_ms: u64,
    },
    /// Acknowledge a delivered message.
    Ack {
        /// Topic.
        topic: String,
        /// Consumer group.
        group: String,
        /// Partition.
        partition: u32,
        /// Offset in the partition.
        offset: u64,
    },
}

impl BrokerCommand {
    /// Whether a command (as JSON) belongs to the broker.
    pub fn owns(command: &Value) -> bool {
        matches!(
            command.get("op").and_then(Value::as_str),
            Some("produce" | "poll" | "ack")
        )
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Flight {
    consumer: String,
    deadline_ms: u64,
    deliveries: u32,
}

/// A group's progress through one partition.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Cursor {
    /// Next offset never delivered to the group.
    next: u64,
    /// Every offset below is acknowledged or dead-lettered.
    committed: u64,
    /// Offsets at or above `committed` that are resolved.
    resolved: BTreeSet<u64>,
    /// Delivered and not yet acknowledged.
    in_flight: BTreeMap<u64, Flight>,
}

impl Cursor {
    fn resolve(&mut self, offset: u64) {
        self.in_flight.remove(&offset);
        if offset >= self.committed {
            self.resolved.insert(offset);
        }
        while self.resolved.remove(&self.committed) {
            self.committed += 1;
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Dead {
    partition: u32,
    offset: u64,
    value: Value,
    deliveries: u32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Group {
    cursors: Vec<Cursor>,
    dead: Vec<Dead>,
    redeliveries: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Topic {
    /// Per partition: (key, value) by offset.
    logs: Vec<Vec<(String, Value)>>,
    groups: BTreeMap<String, Group>,
}

/// Topics and their consumer groups.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Broker {
    topics: BTreeMap<String, Topic>,
    clock_ms: u64,
    /// Planted bug `skip-redelivery`: a message whose visibility timeout passes is
    /// dropped as if acknowledged. Not replicated state.
    #[serde(skip)]
    pub skip_redelivery: bool,
}

/// The partition a key belongs to.
pub fn partition_of(key: &str) -> u32 {
    thread_local! {
        static RING: Ring = Ring::with(VNODES, (0..PARTITIONS).map(|p| p.to_string()));
    }
    RING.with(|r| r.owner(key).and_then(|p| p.parse().ok()).unwrap_or(0))
}

impl Broker {
    fn topic(&mut self, name: &str) -> &mut Topic {
        self.topics
            .entry(name.to_string())
            .or_insert_with(|| Topic {
                logs: vec![Vec::new(); PARTITIONS as usize],
                groups: BTreeMap::new(),
            })
    }

    /// Applies a command; results are `{"ok": true, ...}` or `{"ok": false, "error": E}`.
    pub fn apply(&mut self, cmd: BrokerCommand) -> Value {
        match cmd {
            BrokerCommand::Produce { topic, key, value } => {
                let partition = partition_of(&key);
                let log = &mut self.topic(&topic).logs[partition as usize];
                log.push((key, value));
                json!({"ok": true, "partition": partition, "offset": log.len() - 1})
            }
            BrokerCommand::Poll {
                topic,
                group,
                consumer,
                max,
                visibility_ms,
                now_ms,
            } => {
                self.clock_ms = self.clock_ms.max(now_ms);
                let now = self.clock_ms;
                let skip = self.skip_redelivery;
                let t = self.topic(&topic);
                let g = t.groups.entry(group).or_insert_with(|| Group {
                    cursors: vec![Cursor::default(); PARTITIONS as usize],
                    ..Group::default()
                });
                let max = max.clamp(1, MAX_BATCH);
                let deadline_ms = now.saturating_add(visibility_ms);
                let mut out = Vec::new();
                for (p, c) in g.cursors.iter_mut().enumerate() {
                    let log = &t.logs[p];
                    // Lapsed deliveries first: again, or to the dead letters.
                    let lapsed: Vec<u64> = c
                        .in_flight
                        .iter()
                        .filter(|(_, f)| f.deadline_ms <= now)
                        .map(|(o, _)| *o)
                        .collect();
                    for offset in lapsed {
                        let deliveries = c.in_flight[&offset].deliveries;
                        if skip {
                            c.resolve(offset);
                        } else if deliveries >= MAX_DELIVERIES {
                            c.resolve(offset);
                            g.dead.push(Dead {
                                partition: p as u32,
                                offset,
                                value: log[offset as usize].1.clone(),
                                deliveries,
                            });
                        } else if out.len() < max {
                            let f = c.in_flight.get_mut(&offset).expect("listed above");
                            f.deliveries += 1;
                            f.deadline_ms = deadline_ms;
                            f.consumer = consumer.clone();
                            g.redeliveries += 1;
                            out.push(json!({"partition": p, "offset": offset,
                                "key": log[offset as usize].0, "value": log[offset as usize].1,
                                "delivery": f.deliveries}));
                        }
                    }
                    while out.len() < max && (c.next as usize) < log.len() {
                        let offset = c.next;
                        c.next += 1;
                        c.in_flight.insert(
                            offset,
                            Flight {
                                consumer: consumer.clone(),
                                deadline_ms,
                                deliveries: 1,
                            },
                        );
                        out.push(json!({"partition": p, "offset": offset,
                            "key": log[offset as usize].0, "value": log[offset as usize].1,
                            "delivery": 1}));
                    }
                }
                json!({"ok": true, "messages": out})
            }
            BrokerCommand::Ack {
                topic,
                group,
                partition,
                offset,
            } => {
                let t = self.topic(&topic);
                let Some(g) = t.groups.get_mut(&group) else {
                    return json!({"ok": false, "error": "not-delivered"});
                };
                if g.dead
                    .iter()
                    .any(|d| d.partition == partition && d.offset == offset)
                {
                    return json!({"ok": false, "error": "dead-lettered"});
                }
                let Some(c) = g.cursors.get_mut(partition as usize) else {
                    return json!({"ok": false, "error": "not-delivered"});
                };
                if offset >= c.next {
                    return json!({"ok": false, "error": "not-delivered"});
                }
                // A late ack of a message since redelivered still settles it.
                c.resolve(offset);
                json!({"ok": true})
            }
        }
    }

    /// `{"topic": T}`: every partition's log; `{"topic": T, "group": G}`: the
    /// group's cursors, in-flight messages and dead letters.
    pub fn query(&self, query: &Value) -> Option<Value> {
        if query.get("broker").and_then(Value::as_str) == Some("summary") {
            return Some(self.summary());
        }
        let name = query.get("topic").and_then(Value::as_str)?;
        let empty = Topic::default();
        let t = self.topics.get(name).unwrap_or(&empty);
        let Some(group) = query.get("group").and_then(Value::as_str) else {
            let logs: Vec<Vec<&Value>> = (0..PARTITIONS as usize)
                .map(|p| {
                    t.logs
                        .get(p)
                        .map(|l| l.iter().map(|(_, v)| v).collect())
                        .unwrap_or_default()
                })
                .collect();
            return Some(json!({"partitions": logs}));
        };
        let g = t.groups.get(group).cloned().unwrap_or_default();
        let cursors: Vec<Value> = (0..PARTITIONS as usize)
            .map(|p| {
                let c = g.cursors.get(p).cloned().unwrap_or_default();
                let end = t.logs.get(p).map_or(0, Vec::len);
                json!({"partition": p, "end": end, "next": c.next, "committed": c.committed,
                       "depth": end as u64 - c.committed - c.resolved.len() as u64,
                       "in_flight": c.in_flight.keys().collect::<Vec<_>>()})
            })
            .collect();
        Some(json!({"cursors": cursors, "dead_letters": g.dead, "redeliveries": g.redeliveries}))
    }

    /// Every topic with its message count, and per consumer group what is left to
    /// acknowledge (`depth`), delivered and unacknowledged (`in_flight`),
    /// delivered again, and dead-lettered: what a queue view shows.
    fn summary(&self) -> Value {
        let topics: Vec<Value> = self
            .topics
            .iter()
            .map(|(name, t)| {
                let ends: Vec<u64> = t.logs.iter().map(|l| l.len() as u64).collect();
                let groups: Vec<Value> = t
                    .groups
                    .iter()
                    .map(|(g, group)| {
                        let mut depth = 0;
                        let mut in_flight = 0;
                        for (p, end) in ends.iter().enumerate() {
                            let c = group.cursors.get(p);
                            let settled = c.map_or(0, |c| c.committed + c.resolved.len() as u64);
                            depth += end.saturating_sub(settled);
                            in_flight += c.map_or(0, |c| c.in_flight.len());
                        }
                        json!({"group": g, "depth": depth, "in_flight": in_flight,
                               "redeliveries": group.redeliveries, "dead_letters": group.dead.len()})
                    })
                    .collect();
                json!({"topic": name, "messages": ends.iter().sum::<u64>(), "groups": groups})
            })
            .collect();
        json!({"topics": topics})
    }

    /// What a produce would answer if applied now (planted bug `ack-before-persist`).
    pub fn speculate(&self, cmd: &BrokerCommand) -> Option<Value> {
        matches!(cmd, BrokerCommand::Produce { .. }).then(|| self.clone().apply(cmd.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produce(b: &mut Broker, key: &str, v: i64) -> Value {
        b.apply(BrokerCommand::Produce {
            topic: "t".into(),
            key: key.into(),
            value: json!(v),
        })
    }

    fn poll(b: &mut Broker, group: &str, max: usize, now: u64) -> Vec<Value> {
        let r = b.apply(BrokerCommand::Poll {
            topic: "t".into(),
            group: group.into(),
            consumer: "c".into(),
            max,
            visibility_ms: 100,
            now_ms: now,
        });
        r["messages"].as_array().unwrap().clone()
    }

    fn ack(b: &mut Broker, group: &str, m: &Value) -> Value {
        b.apply(BrokerCommand::Ack {
            topic: "t".into(),
            group: group.into(),
            partition: m["partition"].as_u64().unwrap() as u32,
            offset: m["offset"].as_u64().unwrap(),
        })
    }

    #[test]
    fn a_key_keeps_its_partition_and_order_and_every_group_sees_everything() {
        let mut b = Broker::default();
        for v in 0..10 {
            let r = produce(&mut b, "same-key", v);
            assert_eq!(r["offset"], v, "one key, one partition, offsets in order");
        }
        for group in ["g1", "g2"] {
            let got = poll(&mut b, group, 100, 0);
            let values: Vec<i64> = got.iter().map(|m| m["value"].as_i64().unwrap()).collect();
            assert_eq!(values, (0..10).collect::<Vec<_>>(), "{group}");
        }
        let spread: BTreeSet<u32> = (0..100).map(|i| partition_of(&format!("k{i}"))).collect();
        assert_eq!(spread.len(), PARTITIONS as usize);
    }

    #[test]
    fn unacked_messages_come_back_then_go_to_the_dead_letters() {
        let mut b = Broker::default();
        produce(&mut b, "k", 1);
        produce(&mut b, "k", 2);
        let first = poll(&mut b, "g", 10, 0);
        assert_eq!(first.len(), 2);
        assert_eq!(ack(&mut b, "g", &first[1])["ok"], true);
        assert!(poll(&mut b, "g", 10, 50).is_empty(), "still invisible");
        // Message 1 lapses: delivered again, then a third time, then dead.
        let again = poll(&mut b, "g", 10, 100);
        assert_eq!((again.len(), again[0]["delivery"].clone()), (1, json!(2)));
        assert_eq!(poll(&mut b, "g", 10, 200)[0]["delivery"], 3);
        assert!(poll(&mut b, "g", 10, 300).is_empty());
        let state = b.query(&json!({"topic": "t", "group": "g"})).unwrap();
        assert_eq!(state["dead_letters"][0]["value"], 1);
        assert_eq!(state["dead_letters"][0]["deliveries"], 3);
        let p = first[0]["partition"].as_u64().unwrap() as usize;
        assert_eq!(state["cursors"][p]["committed"], 2);
        assert_eq!(state["cursors"][p]["depth"], 0);
        // Too late: a dead letter cannot be acknowledged any more.
        assert_eq!(ack(&mut b, "g", &first[0])["error"], "dead-lettered");
    }

    #[test]
    fn the_summary_counts_depth_in_flight_redeliveries_and_dead_letters() {
        let mut b = Broker::default();
        for v in 0..5 {
            produce(&mut b, &format!("k{v}"), v);
        }
        let got = poll(&mut b, "g", 3, 0);
        ack(&mut b, "g", &got[0]);
        let summary = b.query(&json!({"broker": "summary"})).unwrap();
        let t = &summary["topics"][0];
        assert_eq!(
            (t["topic"].clone(), t["messages"].clone()),
            (json!("t"), json!(5))
        );
        let g = &t["groups"][0];
        assert_eq!(g["depth"], 4, "five produced, one acknowledged");
        assert_eq!(g["in_flight"], 2);
        assert_eq!(
            (g["redeliveries"].clone(), g["dead_letters"].clone()),
            (json!(0), json!(0))
        );
        // At 100 the two in flight come back (2 redeliveries) with the two never
        // delivered; at 200 all four come back (4); at 300 the first two, on their
        // third delivery, lapse into the dead letters and the other two come back
        // a third time (2).
        poll(&mut b, "g", 10, 100);
        poll(&mut b, "g", 10, 200);
        poll(&mut b, "g", 10, 300);
        let g = &b.query(&json!({"broker": "summary"})).unwrap()["topics"][0]["groups"][0];
        assert_eq!(g["redeliveries"], 8, "{g}");
        assert_eq!(g["dead_letters"], 2, "{g}");
        assert_eq!(g["in_flight"], 2, "{g}");
        assert_eq!(g["depth"], 2, "dead letters count as settled: {g}");
        assert_eq!(
            Broker::default()
                .query(&json!({"broker": "summary"}))
                .unwrap(),
            json!({"topics": []})
        );
    }

    #[test]
    fn skipping_redelivery_loses_the_message() {
        let mut b = Broker {
            skip_redelivery: true,
            ..Broker::default()
        };
        produce(&mut b, "k", 1);
        assert_eq!(poll(&mut b, "g", 10, 0).len(), 1);
        assert!(poll(&mut b, "g", 10, 500).is_empty());
        let state = b.query(&json!({"topic": "t", "group": "g"})).unwrap();
        assert_eq!(state["dead_letters"], json!([]));
    }

    #[test]
    fn acks_of_undelivered_offsets_are_refused_and_speculation_changes_nothing() {
        let mut b = Broker::default();
        let cmd = BrokerCommand::Produce {
            topic: "t".into(),
            key: "k".into(),
            value: json!(1),
        };
        assert_eq!(b.speculate(&cmd).unwrap()["offset"], 0);
        assert_eq!(
            b.speculate(&cmd).unwrap()["offset"],
            0,
            "nothing was appended"
        );
        produce(&mut b, "k", 1);
        let m = json!({"partition": partition_of("k"), "offset": 0});
        assert_eq!(ack(&mut b, "g", &m)["error"], "not-delivered");
        let copy: Broker = serde_json::from_value(serde_json::to_value(&b).unwrap()).unwrap();
        assert_eq!(
            copy.query(&json!({"topic": "t"})),
            b.query(&json!({"topic": "t"}))
        );
    }
}
