//! The `queue` workload's checkers, in the spirit of Jepsen's total-queue and
//! Kafka checkers.
//!
//! - `acknowledged-messages`: every send the broker acknowledged is in the
//!   partition log at the (partition, offset) it was told, nothing is in the logs
//!   that no send carried, and no message is there twice.
//! - `delivery`: for each consumer group, every message in the logs ends
//!   acknowledged, dead-lettered, or still pending (none silently dropped);
//!   each delivery carries the message the log holds at its offset; first
//!   deliveries of a partition come in offset order; the dead-letter queue holds
//!   exactly the messages delivered the maximum number of times without an ack
//!   (all poison messages, and no acknowledged one). Redeliveries are counted:
//!   at-least-once allows them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use checker::history::{Op, Outcome};
use checker::{History, Validity};
use serde_json::{json, Value};

use crate::Checked;
use checker::CheckerResult;

/// At most this many findings are listed per checker.
const SHOW: usize = 20;
/// The broker's delivery limit before dead-lettering (`system::broker`).
const MAX_DELIVERIES: u64 = 3;

fn json_of(v: &checker::value::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn output(op: &Op) -> Option<Value> {
    match &op.output {
        Outcome::Ok(v) => Some(json_of(v)),
        Outcome::Unknown => None,
    }
}

/// (partition, offset).
type At = (u64, u64);

fn at(v: &Value) -> Option<At> {
    Some((v["partition"].as_u64()?, v["offset"].as_u64()?))
}

struct Findings {
    count: usize,
    examples: Vec<Value>,
}

impl Findings {
    fn new() -> Self {
        Findings {
            count: 0,
            examples: Vec::new(),
        }
    }
    fn add(&mut self, v: Value) {
        self.count += 1;
        if self.examples.len() < SHOW {
            self.examples.push(v);
        }
    }
}

/// Runs both checkers.
pub fn check(history: &History) -> Checked {
    // The logs as read at the end: (partition, offset) -> message.
    let mut log: BTreeMap<At, Value> = BTreeMap::new();
    let mut log_read = false;
    for op in history.ops.iter().filter(|o| &*o.f == "read-log") {
        if let Some(out) = output(op) {
            log_read = true;
            for (p, part) in out["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                for (o, m) in part.as_array().into_iter().flatten().enumerate() {
                    log.insert((p as u64, o as u64), m.clone());
                }
            }
        }
    }
    let acked_messages = acknowledged_messages(history, &log, log_read);
    let delivery = delivery(history, &log, log_read);
    let valid = if acked_messages["valid"] == json!(false) || delivery["valid"] == json!(false) {
        Validity::Invalid
    } else if !log_read || delivery["valid"] == json!("unknown") {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    let mut checked = Checked::default();
    let summary = format!(
        "{} sends acknowledged ({} indeterminate), {} messages in the logs, {} problem(s)",
        acked_messages["sent_ok"],
        acked_messages["sent_indeterminate"],
        acked_messages["in_log"],
        acked_messages["problems"]
    );
    checked.add(
        "acknowledged-messages",
        CheckerResult::from_json(summary, acked_messages),
    );
    let summary = format!(
        "{} consumer group(s), {} problem(s)",
        delivery["groups"].as_object().map_or(0, |g| g.len()),
        delivery["problems"]
    );
    checked.add("delivery", CheckerResult::from_json(summary, delivery));
    // Without the logs nothing can be judged valid.
    checked.valid = valid;
    checked
}

fn acknowledged_messages(history: &History, log: &BTreeMap<At, Value>, log_read: bool) -> Value {
    let mut problems = Findings::new();
    let (mut sent_ok, mut sent_info) = (0, 0);
    let mut sent: BTreeSet<u64> = BTreeSet::new();
    for op in history.ops.iter().filter(|o| &*o.f == "send") {
        let id = json_of(&op.input)["id"].as_u64().unwrap_or(0);
        sent.insert(id);
        let Some(out) = output(op) else {
            sent_info += 1;
            continue;
        };
        sent_ok += 1;
        let Some(place) = at(&out) else { continue };
        match log.get(&place) {
            Some(m) if m["id"].as_u64() == Some(id) => {}
            other if log_read => problems.add(json!({
                "problem": "an acknowledged message is not in the log where the broker said it was",
                "id": id, "partition": place.0, "offset": place.1, "log_holds": other,
            })),
            _ => {}
        }
    }
    let mut seen: HashMap<u64, At> = HashMap::new();
    for (place, m) in log {
        let id = m["id"].as_u64().unwrap_or(0);
        if !sent.contains(&id) {
            problems.add(json!({"problem": "the log holds a message nobody sent", "at": place, "message": m}));
        }
        if let Some(first) = seen.insert(id, *place) {
            problems.add(json!({"problem": "a message is in the log twice", "id": id, "first": first, "second": place}));
        }
    }
    json!({"valid": if log_read { json!(problems.count == 0) } else { json!("unknown") },
           "sent_ok": sent_ok, "sent_indeterminate": sent_info, "in_log": log.len(),
           "problems": problems.count, "examples": problems.examples})
}

/// One delivery to a group: where, what, the how-manyth, and when the poll ran.
struct Delivery {
    at: At,
    id: Option<u64>,
    nth: u64,
    call: u64,
    ret: u64,
}

/// Adds the messages an op (poll or drain) reports delivered.
fn record(into: &mut Vec<Delivery>, messages: &Value, op: &Op) {
    for m in messages.as_array().into_iter().flatten() {
        if let Some(place) = at(m) {
            into.push(Delivery {
                at: place,
                id: m["id"].as_u64(),
                nth: m["delivery"].as_u64().unwrap_or(1),
                call: op.call,
                ret: op.ret,
            });
        }
    }
}

fn delivery(history: &History, log: &BTreeMap<At, Value>, log_read: bool) -> Value {
    let mut problems = Findings::new();
    let mut deliveries: BTreeMap<String, Vec<Delivery>> = BTreeMap::new();
    let mut acks: BTreeMap<String, BTreeSet<At>> = BTreeMap::new();
    let mut acks_ok: BTreeMap<String, BTreeSet<At>> = BTreeMap::new();
    let mut finals: BTreeMap<String, Value> = BTreeMap::new();
    // Groups with a drain of unknown outcome: it may have acknowledged
    // messages its record does not list.
    let mut interrupted: BTreeSet<String> = BTreeSet::new();
    for op in &history.ops {
        let input = json_of(&op.input);
        let group = input["group"].as_str().unwrap_or("").to_string();
        let out = output(op);
        match &*op.f {
            "poll" => {
                let Some(out) = out else { continue };
                // A group that polled must be accounted for, deliveries or not.
                record(deliveries.entry(group).or_default(), &out["messages"], op);
            }
            // An ack that may have happened can settle a message; only one that
            // certainly happened rules out dead-lettering it.
            "ack" => {
                if let Some(place) = at(&input) {
                    if out.is_some() {
                        acks_ok.entry(group.clone()).or_default().insert(place);
                    }
                    acks.entry(group).or_default().insert(place);
                }
            }
            "drain" => {
                let Some(out) = out else {
                    interrupted.insert(group);
                    continue;
                };
                record(
                    deliveries.entry(group.clone()).or_default(),
                    &out["delivered"],
                    op,
                );
                for a in out["acked"].as_array().into_iter().flatten() {
                    if let (Some(p), Some(o)) = (a[0].as_u64(), a[1].as_u64()) {
                        acks.entry(group.clone()).or_default().insert((p, o));
                        acks_ok.entry(group.clone()).or_default().insert((p, o));
                    }
                }
                finals.insert(group, out["state"].clone());
            }
            _ => {}
        }
    }
    let groups: BTreeSet<String> = deliveries.keys().chain(finals.keys()).cloned().collect();
    let mut per_group = serde_json::Map::new();
    let mut undecided = false;
    for group in &groups {
        let ds = deliveries.get(group).map(Vec::as_slice).unwrap_or(&[]);
        let acked = acks.remove(group).unwrap_or_default();
        let acked_ok = acks_ok.remove(group).unwrap_or_default();
        // Each delivery names the message the log holds there.
        for d in ds {
            if let (Some(m), Some(id)) = (log.get(&d.at), d.id) {
                if m["id"].as_u64() != Some(id) {
                    problems.add(json!({"group": group, "problem": "a delivery carried another message than the log holds at its offset",
                        "at": d.at, "delivered": id, "log_holds": m}));
                }
            }
        }
        // First deliveries of a partition in offset order (polls that do not
        // overlap in time).
        let mut firsts: BTreeMap<u64, Vec<(u64, u64, u64)>> = BTreeMap::new();
        for d in ds.iter().filter(|d| d.nth == 1) {
            firsts
                .entry(d.at.0)
                .or_default()
                .push((d.call, d.ret, d.at.1));
        }
        for (partition, mut fs) in firsts {
            fs.sort_by_key(|f| f.1);
            let mut by_call = fs.clone();
            by_call.sort_by_key(|f| f.0);
            let (mut i, mut highest) = (0, None::<u64>);
            for b in by_call {
                while i < fs.len() && fs[i].1 < b.0 {
                    highest = highest.max(Some(fs[i].2));
                    i += 1;
                }
                if let Some(h) = highest.filter(|h| b.2 <= *h) {
                    problems.add(json!({"group": group, "problem": "a partition's messages were first delivered out of offset order",
                        "partition": partition, "offset": b.2, "after_offset": h}));
                }
            }
        }
        let redeliveries = ds.iter().filter(|d| d.nth > 1).count();
        let delivered_acked = ds
            .iter()
            .filter(|d| d.nth > 1 && acked.contains(&d.at))
            .count();
        let Some(state) = finals.get(group) else {
            undecided = true;
            per_group.insert(
                group.clone(),
                json!({"drained": false, "redeliveries": redeliveries}),
            );
            continue;
        };
        // Dead letters: delivered the maximum times, never acknowledged.
        let mut dead: BTreeSet<At> = BTreeSet::new();
        for d in state["dead_letters"].as_array().into_iter().flatten() {
            let Some(place) = at(d) else { continue };
            dead.insert(place);
            // The broker refuses to acknowledge a dead letter, so an ack that
            // succeeded came first: the message was settled, then dead-lettered.
            if acked_ok.contains(&place) {
                problems.add(json!({"group": group, "problem": "an acknowledged message was dead-lettered", "at": place}));
            }
            if d["deliveries"].as_u64() != Some(MAX_DELIVERIES) {
                problems.add(json!({"group": group, "problem": "a dead letter was not delivered the maximum number of times", "letter": d}));
            }
            if log.get(&place).map(|m| &m["id"]) != Some(&d["value"]["id"]) {
                problems.add(json!({"group": group, "problem": "a dead letter is not the message the log holds", "letter": d}));
            }
        }
        // Still pending at the end: never delivered, or in flight.
        let mut pending: BTreeSet<At> = BTreeSet::new();
        for c in state["cursors"].as_array().into_iter().flatten() {
            let p = c["partition"].as_u64().unwrap_or(0);
            let (next, end) = (
                c["next"].as_u64().unwrap_or(0),
                c["end"].as_u64().unwrap_or(0),
            );
            pending.extend((next..end).map(|o| (p, o)));
            for o in c["in_flight"].as_array().into_iter().flatten() {
                pending.extend(o.as_u64().map(|o| (p, o)));
            }
        }
        let mut lost = 0;
        let mut unaccounted = 0;
        for (place, m) in log {
            if acked.contains(place) || dead.contains(place) || pending.contains(place) {
                continue;
            }
            if interrupted.contains(group) {
                // An interrupted drain may have acknowledged it: not proof of a loss.
                unaccounted += 1;
                undecided = true;
                continue;
            }
            lost += 1;
            problems.add(json!({"group": group, "problem": "a message was neither acknowledged, dead-lettered nor pending: dropped",
                "at": place, "message": m}));
        }
        for (place, m) in log {
            if m["poison"] == json!(true) && !dead.contains(place) && !pending.contains(place) {
                problems.add(json!({"group": group, "problem": "a poison message did not end in the dead-letter queue", "at": place}));
            }
        }
        per_group.insert(
            group.clone(),
            json!({"drained": true, "acknowledged": acked.len(), "dead_letters": dead.len(),
                   "pending_at_end": pending.len(), "lost": lost, "deliveries": ds.len(),
                   "unaccounted_after_interrupted_drain": unaccounted,
                   "redeliveries": redeliveries, "redeliveries_of_acknowledged": delivered_acked}),
        );
    }
    let valid = if problems.count > 0 {
        json!(false)
    } else if undecided || !log_read {
        json!("unknown")
    } else {
        json!(true)
    };
    json!({"valid": valid, "groups": per_group, "problems": problems.count, "examples": problems.examples})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history from `(process, kind, f, value)` lines, one ms apart.
    fn history(events: &[(u64, &str, &str, Value)]) -> History {
        let mut text = String::new();
        for (t, (p, kind, f, value)) in events.iter().enumerate() {
            text.push_str(&format!(
                "{{\"type\":\"{kind}\",\"process\":{p},\"f\":\"{f}\",\"value\":{value},\"time\":{}}}\n",
                t * 1_000_000
            ));
        }
        checker::format::jsonl::read(text.as_bytes()).expect("test history parses")
    }

    fn msg(id: u64, poison: bool) -> Value {
        json!({"id": id, "poison": poison})
    }

    fn state(next: u64, end: u64, dead: Value) -> Value {
        json!({"cursors": [{"partition": 0, "next": next, "end": end, "in_flight": []}],
               "dead_letters": dead})
    }

    /// Two sends, one poll delivering both, an ack of the first, a read of the
    /// log, and a drain whose output the test chooses.
    fn run(log: Value, second_delivery: u64, drain: Value) -> Checked {
        let d = |id, off, nth| json!({"partition": 0, "offset": off, "id": id, "poison": id == 2, "delivery": nth});
        let h = history(&[
            (1, "invoke", "send", msg(1, false)),
            (
                1,
                "ok",
                "send",
                json!({"id": 1, "partition": 0, "offset": 0}),
            ),
            (1, "invoke", "send", msg(2, true)),
            (
                1,
                "ok",
                "send",
                json!({"id": 2, "partition": 0, "offset": 1}),
            ),
            (2, "invoke", "poll", json!({"group": "g"})),
            (
                2,
                "ok",
                "poll",
                json!({"messages": [d(1, 0, 1), d(2, 1, second_delivery)]}),
            ),
            (
                2,
                "invoke",
                "ack",
                json!({"group": "g", "partition": 0, "offset": 0}),
            ),
            (
                2,
                "ok",
                "ack",
                json!({"group": "g", "partition": 0, "offset": 0}),
            ),
            (3, "invoke", "read-log", Value::Null),
            (3, "ok", "read-log", log),
            (4, "invoke", "drain", json!({"group": "g"})),
            (4, "ok", "drain", drain),
        ]);
        check(&h)
    }

    #[test]
    fn every_message_accounted_for_is_valid() {
        let log = json!({"partitions": [[msg(1, false), msg(2, true)]]});
        let dead = json!([{"partition": 0, "offset": 1, "value": msg(2, true), "deliveries": 3}]);
        let c = run(
            log,
            1,
            json!({"delivered": [], "acked": [], "state": state(2, 2, dead)}),
        );
        assert_eq!(c.valid, Validity::Valid, "{:?}", c.checkers);
    }

    #[test]
    fn a_message_an_interrupted_drain_may_have_acked_is_not_called_dropped() {
        // Message 1 is polled, never acked by anyone on record; a first drain
        // ends `info` (it may have acked it); the second finds it settled.
        let h = history(&[
            (1, "invoke", "send", msg(1, false)),
            (
                1,
                "ok",
                "send",
                json!({"id": 1, "partition": 0, "offset": 0}),
            ),
            (2, "invoke", "poll", json!({"group": "g"})),
            (
                2,
                "ok",
                "poll",
                json!({"messages": [{"partition": 0, "offset": 0, "id": 1, "poison": false, "delivery": 1}]}),
            ),
            (3, "invoke", "read-log", Value::Null),
            (
                3,
                "ok",
                "read-log",
                json!({"partitions": [[msg(1, false)]]}),
            ),
            (4, "invoke", "drain", json!({"group": "g"})),
            (4, "info", "drain", json!({"group": "g"})),
            (5, "invoke", "drain", json!({"group": "g"})),
            (
                5,
                "ok",
                "drain",
                json!({"delivered": [], "acked": [], "state": state(1, 1, json!([]))}),
            ),
        ]);
        let c = check(&h);
        assert_eq!(
            c.checkers["delivery"]["valid"],
            json!("unknown"),
            "{:?}",
            c.checkers
        );
        assert_eq!(
            c.checkers["delivery"]["groups"]["g"]["unaccounted_after_interrupted_drain"],
            json!(1)
        );
    }

    #[test]
    fn a_dropped_message_and_a_lost_acknowledged_send_are_caught() {
        // The poison message vanished: not acked, not dead, not pending.
        let log = json!({"partitions": [[msg(1, false), msg(2, true)]]});
        let c = run(
            log,
            1,
            json!({"delivered": [], "acked": [], "state": state(2, 2, json!([]))}),
        );
        assert_eq!(c.checkers["delivery"]["valid"], json!(false));
        assert_eq!(c.checkers["delivery"]["groups"]["g"]["lost"], 1);
        // The log lost the second acknowledged send.
        let log = json!({"partitions": [[msg(1, false)]]});
        let c = run(
            log,
            1,
            json!({"delivered": [], "acked": [], "state": state(1, 1, json!([]))}),
        );
        assert_eq!(c.checkers["acknowledged-messages"]["valid"], json!(false));
        assert_eq!(c.valid, Validity::Invalid);
    }

    #[test]
    fn pending_messages_are_not_lost_and_a_missing_drain_leaves_it_unknown() {
        let log = json!({"partitions": [[msg(1, false), msg(2, true)]]});
        let mut s = state(2, 2, json!([]));
        s["cursors"][0]["in_flight"] = json!([1]);
        let c = run(log, 1, json!({"delivered": [], "acked": [], "state": s}));
        assert_eq!(c.valid, Validity::Valid, "{:?}", c.checkers);
        assert_eq!(c.checkers["delivery"]["groups"]["g"]["pending_at_end"], 1);
        let h = history(&[
            (3, "invoke", "read-log", Value::Null),
            (3, "ok", "read-log", json!({"partitions": [[]]})),
            (1, "invoke", "poll", json!({"group": "g"})),
            (1, "ok", "poll", json!({"messages": []})),
        ]);
        assert_eq!(check(&h).valid, Validity::Unknown);
    }

    #[test]
    fn a_dead_letter_acknowledged_for_certain_is_caught_and_an_uncertain_ack_is_not() {
        let log = json!({"partitions": [[msg(1, false)]]});
        let dead = json!([{"partition": 0, "offset": 0, "value": msg(1, false), "deliveries": 3}]);
        let verdict = |ack_outcome: &str| {
            let mut events = vec![
                (1, "invoke", "send", msg(1, false)),
                (
                    1,
                    "ok",
                    "send",
                    json!({"id": 1, "partition": 0, "offset": 0}),
                ),
                (
                    2,
                    "invoke",
                    "ack",
                    json!({"group": "g", "partition": 0, "offset": 0}),
                ),
            ];
            if ack_outcome == "ok" {
                events.push((
                    2,
                    "ok",
                    "ack",
                    json!({"group": "g", "partition": 0, "offset": 0}),
                ));
            } else {
                events.push((2, "info", "ack", Value::Null));
            }
            events.extend([
                (3, "invoke", "read-log", Value::Null),
                (3, "ok", "read-log", log.clone()),
                (4, "invoke", "drain", json!({"group": "g"})),
                (
                    4,
                    "ok",
                    "drain",
                    json!({"delivered": [], "acked": [], "state": state(1, 1, dead.clone())}),
                ),
            ]);
            check(&history(&events)).checkers["delivery"]["valid"].clone()
        };
        assert_eq!(verdict("ok"), json!(false));
        assert_eq!(verdict("info"), json!(true));
    }
}
