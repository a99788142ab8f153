//! The `queue` workload's generator: each process sends and polls at random,
//! acknowledges what it polled one message at a time, and now and then "crashes"
//! with acknowledgements outstanding (drops them), which the broker must make up
//! for by delivering again.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::{Completion, Generator, Invocation, Rng};

use super::GROUPS;

/// Share of sends that are poison (never acknowledged, so dead-lettered).
const POISON: f64 = 0.03;
/// Share of times a process holding unacknowledged messages drops them all.
const CRASH: f64 = 0.05;

#[derive(Debug, Default)]
struct Proc {
    /// Delivered messages still to acknowledge: (partition, offset).
    to_ack: Vec<(Value, Value)>,
}

/// Ops of the `queue` workload.
pub struct QueueGenerator {
    keys: usize,
    next_id: u64,
    procs: HashMap<u64, Proc>,
}

impl QueueGenerator {
    /// Messages spread over `keys` partitioning keys.
    pub fn new(keys: usize) -> Self {
        QueueGenerator {
            keys,
            next_id: 0,
            procs: HashMap::new(),
        }
    }
}

fn group_of(process: u64) -> &'static str {
    GROUPS[process as usize % GROUPS.len()]
}

impl Generator for QueueGenerator {
    fn next(&mut self, process: u64, rng: &mut Rng) -> Option<Invocation> {
        let p = self.procs.entry(process).or_default();
        if !p.to_ack.is_empty() && rng.chance(CRASH) {
            p.to_ack.clear();
        }
        if let Some((partition, offset)) = p.to_ack.pop() {
            return Some(Invocation {
                f: "ack".into(),
                key: None,
                value: json!({"group": group_of(process), "partition": partition, "offset": offset}),
            });
        }
        if rng.chance(0.5) {
            self.next_id += 1;
            return Some(Invocation {
                f: "send".into(),
                key: Some(format!("k{}", rng.below(self.keys as u64))),
                value: json!({"id": self.next_id, "poison": rng.chance(POISON)}),
            });
        }
        Some(Invocation {
            f: "poll".into(),
            key: None,
            value: json!({"group": group_of(process), "consumer": format!("p{process}")}),
        })
    }

    fn completed(&mut self, process: u64, op: &Invocation, done: &Completion) {
        if matches!(done, Completion::Info(_)) {
            self.procs.remove(&process);
            return;
        }
        let (Some(p), "poll", Completion::Ok(out)) =
            (self.procs.get_mut(&process), op.f.as_str(), done)
        else {
            return;
        };
        for m in out["messages"].as_array().into_iter().flatten() {
            if m["poison"] != json!(true) {
                p.to_ack.push((m["partition"].clone(), m["offset"].clone()));
            }
        }
    }

    fn final_ops(&self) -> Vec<Invocation> {
        let mut ops = vec![Invocation {
            f: "read-log".into(),
            key: None,
            value: Value::Null,
        }];
        ops.extend(GROUPS.iter().map(|g| Invocation {
            f: "drain".into(),
            key: None,
            value: json!({"group": g}),
        }));
        ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polled_messages_are_acknowledged_except_poison() {
        let mut g = QueueGenerator::new(4);
        let mut rng = Rng::new(9);
        let poll = loop {
            let op = g.next(3, &mut rng).unwrap();
            if op.f == "poll" {
                break op;
            }
            assert_eq!(op.f, "send");
            assert!(op.key.as_deref().unwrap().starts_with('k'));
        };
        assert_eq!(poll.value["group"], GROUPS[1]);
        let out = json!({"messages": [
            {"partition": 0, "offset": 5, "id": 1, "poison": false, "delivery": 1},
            {"partition": 2, "offset": 7, "id": 2, "poison": true, "delivery": 1},
        ]});
        g.completed(3, &poll, &Completion::Ok(out));
        // The next op acknowledges message 1 (unless the process "crashed"), and
        // the poison message is never acknowledged.
        let mut acks = Vec::new();
        for _ in 0..3 {
            let op = g.next(3, &mut rng).unwrap();
            if op.f == "ack" {
                acks.push((op.value["partition"].clone(), op.value["offset"].clone()));
            }
        }
        assert!(acks.len() <= 1);
        assert!(!acks.contains(&(json!(2), json!(7))));
        let finals = g.final_ops();
        assert_eq!(finals.len(), 1 + GROUPS.len());
    }
}
