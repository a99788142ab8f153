//! Workload `kafka`: a replicated log per key. Clients `send` unique integers
//! to a key and get each one's offset, `poll` from their own position in
//! several keys, commit offsets and list committed ones. The checker finds
//! offsets that hold two messages, messages stored at two offsets, a client's
//! sends whose offsets go back, polls whose offsets go back, and polls that
//! skip a message acknowledged before they began (a lost write when no poll
//! ever returned it).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use checker::history::Outcome;
use checker::{CheckOptions, CheckerResult, History, Validity};
use serde_json::{json, Map, Value};

use super::client::{field, MaelstromClient, Protocol};
use crate::{
    Checked, Client, Completion, Endpoint, Generator, Invocation, Rng, Workload, WorkloadOptions,
};

/// Keys a poll or a commit names at most.
const KEYS_PER_POLL: u64 = 3;

/// The `kafka` workload.
pub struct Kafka;

impl Workload for Kafka {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn generator(&self, options: &WorkloadOptions) -> Box<dyn Generator> {
        Box::new(Logs {
            keys: options.keys.max(1),
            next: 0,
            positions: HashMap::new(),
            nodes: options.nodes,
        })
    }

    fn client(&self, nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client> {
        MaelstromClient::for_nodes(Arc::new(KafkaProtocol), nodes, options)
    }

    fn model(&self) -> &'static str {
        "none"
    }

    fn check(&self, history: &History, _options: &CheckOptions) -> Result<Checked, String> {
        let mut checked = Checked::default();
        checked.add("kafka", check(history));
        Ok(checked)
    }
}

/// The ops, each process polling from where its last poll of a key ended.
struct Logs {
    keys: usize,
    next: i64,
    positions: HashMap<u64, BTreeMap<String, i64>>,
    nodes: usize,
}

impl Logs {
    fn some_keys(&self, rng: &mut Rng) -> Vec<String> {
        let mut keys: Vec<String> = (0..1 + rng.below(KEYS_PER_POLL))
            .map(|_| rng.below(self.keys as u64).to_string())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

impl Generator for Logs {
    fn next(&mut self, process: u64, rng: &mut Rng) -> Option<Invocation> {
        let roll = rng.below(10);
        let (f, value) = if roll < 5 {
            self.next += 1;
            let key = rng.below(self.keys as u64).to_string();
            ("send", json!([key, self.next]))
        } else if roll < 8 {
            let keys = self.some_keys(rng);
            let at = self.positions.entry(process).or_default();
            let offsets: Map<String, Value> = keys
                .into_iter()
                .map(|k| {
                    let p = at.get(&k).copied().unwrap_or(0);
                    (k, json!(p))
                })
                .collect();
            ("poll", json!({"offsets": offsets}))
        } else if roll < 9 {
            let at = self.positions.get(&process).cloned().unwrap_or_default();
            if at.is_empty() {
                return self.next(process, rng);
            }
            // The last offset consumed in each key polled.
            let offsets: Map<String, Value> =
                at.iter().map(|(k, p)| (k.clone(), json!(p - 1))).collect();
            ("commit_offsets", json!(offsets))
        } else {
            ("list_committed_offsets", json!(self.some_keys(rng)))
        };
        Some(Invocation {
            f: f.into(),
            key: None,
            value,
        })
    }

    fn completed(&mut self, process: u64, op: &Invocation, done: &Completion) {
        let (Completion::Ok(msgs), "poll") = (done, op.f.as_str()) else {
            return;
        };
        let at = self.positions.entry(process).or_default();
        for (key, list) in msgs.as_object().into_iter().flatten() {
            let last = list
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|pair| pair.get(0).and_then(Value::as_i64))
                .max();
            if let Some(last) = last {
                let p = at.entry(key.clone()).or_insert(0);
                *p = (*p).max(last + 1);
            }
        }
    }

    /// A poll of every key from its start, on every node.
    fn final_ops(&self) -> Vec<Invocation> {
        let offsets: Map<String, Value> =
            (0..self.keys).map(|k| (k.to_string(), json!(0))).collect();
        (0..self.nodes)
            .map(|i| Invocation {
                f: "poll".into(),
                key: None,
                value: json!({"offsets": offsets, "node": i, "final": true}),
            })
            .collect()
    }
}

struct KafkaProtocol;

impl Protocol for KafkaProtocol {
    fn body(&self, op: &Invocation) -> Value {
        match op.f.as_str() {
            "send" => json!({"type": "send", "key": op.value[0], "msg": op.value[1]}),
            "poll" => json!({"type": "poll", "offsets": op.value["offsets"]}),
            "commit_offsets" => json!({"type": "commit_offsets", "offsets": op.value}),
            _ => json!({"type": "list_committed_offsets", "keys": op.value}),
        }
    }

    fn done(&self, op: &Invocation, reply: &Value) -> Completion {
        match op.f.as_str() {
            "send" => field(reply, "offset"),
            "poll" => field(reply, "msgs"),
            "commit_offsets" => Completion::Ok(op.value.clone()),
            _ => field(reply, "offsets"),
        }
    }

    fn harmless(&self, op: &Invocation) -> bool {
        matches!(op.f.as_str(), "poll" | "list_committed_offsets")
    }
}

/// Entries of an object value.
fn entries(v: &checker::value::Value) -> &[(Box<str>, checker::value::Value)] {
    match v {
        checker::value::Value::Map(e) => e,
        _ => &[],
    }
}

/// Items of a list value.
fn items(v: &checker::value::Value) -> &[checker::value::Value] {
    match v {
        checker::value::Value::List(e) => e,
        _ => &[],
    }
}

/// An acknowledged send.
struct Sent {
    value: i64,
    ret: u64,
    line: u64,
}

/// Runs every kafka check over `history`.
pub fn check(history: &History) -> CheckerResult {
    // (key, offset) -> values seen there; value -> (key, offset)s it was seen at.
    let mut at: BTreeMap<(&str, i64), Vec<i64>> = BTreeMap::new();
    let mut placed: BTreeMap<i64, Vec<(&str, i64)>> = BTreeMap::new();
    let mut sent: BTreeMap<&str, BTreeMap<i64, Sent>> = BTreeMap::new();
    let mut polled: std::collections::HashSet<i64> = std::collections::HashSet::new();
    let mut see: Vec<(&str, i64, i64)> = Vec::new();
    let mut nonmonotonic_send = Vec::new();
    let mut nonmonotonic_poll = Vec::new();
    let mut last_send: HashMap<(i64, String), i64> = HashMap::new();
    let (mut sends, mut polls) = (0u64, 0u64);
    for op in &history.ops {
        let Outcome::Ok(out) = &op.output else {
            continue;
        };
        match &*op.f {
            "send" => {
                let (Some((k, v)), Some(o)) = (op.input.as_pair(), out.as_i64()) else {
                    continue;
                };
                let (Some(k), Some(v)) = (k.as_str(), v.as_i64()) else {
                    continue;
                };
                sends += 1;
                see.push((k, o, v));
                sent.entry(k).or_default().insert(
                    o,
                    Sent {
                        value: v,
                        ret: op.ret,
                        line: op.ret_line.unwrap_or(op.line),
                    },
                );
                if let Some(prev) = last_send.insert((op.process, k.to_string()), o) {
                    if o <= prev {
                        nonmonotonic_send.push(json!({"key": k, "process": op.process, "offsets": [prev, o], "line": op.ret_line}));
                    }
                }
            }
            "poll" => {
                polls += 1;
                for (k, list) in entries(out) {
                    let mut prev: Option<i64> = None;
                    let start = op
                        .input
                        .get("offsets")
                        .and_then(|o| o.get(k))
                        .and_then(|p| p.as_i64());
                    for pair in items(list) {
                        let (Some(o), Some(v)) = (
                            items(pair).first().and_then(|o| o.as_i64()),
                            items(pair).get(1).and_then(|v| v.as_i64()),
                        ) else {
                            continue;
                        };
                        see.push((&**k, o, v));
                        polled.insert(v);
                        let back = prev.is_some_and(|p| o <= p) || start.is_some_and(|s| o < s);
                        if back {
                            nonmonotonic_poll.push(json!({"key": &**k, "offset": o, "after": prev, "from": start, "line": op.ret_line}));
                        }
                        prev = Some(o);
                    }
                }
            }
            _ => {}
        }
    }
    for (k, o, v) in see {
        let vs = at.entry((k, o)).or_default();
        if !vs.contains(&v) {
            vs.push(v);
        }
        let ps = placed.entry(v).or_default();
        if !ps.contains(&(k, o)) {
            ps.push((k, o));
        }
    }
    // Polls that skipped a message acknowledged before they began.
    let (mut lost, mut skipped) = (Vec::new(), Vec::new());
    let mut lost_seen = std::collections::HashSet::new();
    for op in &history.ops {
        let (Outcome::Ok(out), "poll") = (&op.output, &*op.f) else {
            continue;
        };
        for (k, list) in entries(out) {
            let Some(start) = op
                .input
                .get("offsets")
                .and_then(|o| o.get(k))
                .and_then(|p| p.as_i64())
            else {
                continue;
            };
            let returned: Vec<i64> = items(list)
                .iter()
                .filter_map(|pair| items(pair).first().and_then(|o| o.as_i64()))
                .collect();
            let Some(&top) = returned.iter().max() else {
                continue;
            };
            let Some(log) = sent.get(&**k) else { continue };
            for (&o, s) in log.range(start..top) {
                if s.ret < op.call && !returned.contains(&o) {
                    let item = json!({"key": &**k, "offset": o, "value": s.value, "sent_line": s.line, "poll_line": op.ret_line, "poll_from": start});
                    if polled.contains(&s.value) {
                        skipped.push(item);
                    } else if lost_seen.insert(s.value) {
                        lost.push(item);
                    }
                }
            }
        }
    }
    let inconsistent: Vec<Value> = at
        .iter()
        .filter(|(_, vs)| vs.len() > 1)
        .map(|((k, o), vs)| json!({"key": k, "offset": o, "values": vs}))
        .collect();
    let duplicates: Vec<Value> = placed
        .iter()
        .filter(|(_, ps)| ps.len() > 1)
        .map(|(v, ps)| json!({"value": v, "at": ps}))
        .collect();
    let unseen = sent
        .values()
        .flat_map(|l| l.values())
        .filter(|s| !polled.contains(&s.value))
        .count();
    let anomalies = [
        ("inconsistent-offsets", &inconsistent),
        ("duplicate", &duplicates),
        ("lost-write", &lost),
        ("poll-skip", &skipped),
        ("nonmonotonic-send", &nonmonotonic_send),
        ("nonmonotonic-poll", &nonmonotonic_poll),
    ];
    let found: Vec<String> = anomalies
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(name, v)| format!("{} {name}", v.len()))
        .collect();
    let valid = if found.is_empty() {
        Validity::Valid
    } else {
        Validity::Invalid
    };
    let summary = if found.is_empty() {
        format!(
            "{sends} sends acknowledged, {polls} polls: no anomaly ({unseen} sends never polled)"
        )
    } else {
        format!(
            "{sends} sends acknowledged, {polls} polls: {}",
            found.join(", ")
        )
    };
    let mut details = Map::new();
    details.insert("sends".into(), json!(sends));
    details.insert("polls".into(), json!(polls));
    details.insert("unseen".into(), json!(unseen));
    for (name, v) in anomalies {
        details.insert(format!("{name}-count"), json!(v.len()));
        details.insert(name.into(), json!(v.iter().take(20).collect::<Vec<_>>()));
    }
    CheckerResult::new(valid, summary, Value::Object(details))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sequential ops: (process, f, value, result).
    fn history(ops: &[(u64, &str, Value, Value)]) -> History {
        let mut lines = Vec::new();
        for (p, f, v, out) in ops {
            lines.push(format!(
                r#"{{"type":"invoke","process":{p},"f":"{f}","value":{v}}}"#
            ));
            lines.push(format!(
                r#"{{"type":"ok","process":{p},"f":"{f}","value":{out}}}"#
            ));
        }
        checker::format::jsonl::read(lines.join("\n").as_bytes()).unwrap()
    }

    fn send(p: u64, k: &str, v: i64, o: i64) -> (u64, &'static str, Value, Value) {
        (p, "send", json!([k, v]), json!(o))
    }

    fn poll(p: u64, k: &str, from: i64, got: Value) -> (u64, &'static str, Value, Value) {
        (p, "poll", json!({"offsets": {k: from}}), json!({k: got}))
    }

    fn anomalies(ops: &[(u64, &str, Value, Value)]) -> Vec<String> {
        let r = check(&history(ops));
        let names = [
            "inconsistent-offsets",
            "duplicate",
            "lost-write",
            "poll-skip",
            "nonmonotonic-send",
            "nonmonotonic-poll",
        ];
        let found: Vec<String> = names
            .iter()
            .filter(|n| r.details[&format!("{n}-count")] != json!(0))
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            r.valid == Validity::Valid,
            found.is_empty(),
            "{}",
            r.summary
        );
        found
    }

    #[test]
    fn each_anomaly_is_named_and_a_sound_log_passes() {
        let good = [
            send(0, "k1", 1, 0),
            send(0, "k1", 2, 1),
            send(1, "k2", 3, 0),
            poll(2, "k1", 0, json!([[0, 1], [1, 2]])),
            poll(2, "k1", 2, json!([])),
            // Offsets may have gaps.
            send(1, "k2", 4, 5),
            poll(3, "k2", 1, json!([[5, 4]])),
        ];
        assert!(anomalies(&good).is_empty());
        // Two messages at one offset (and so each is skipped by the other's poll? no:
        // the poll returned offset 0).
        let reused = [
            send(0, "k1", 1, 0),
            send(1, "k1", 2, 0),
            poll(2, "k1", 0, json!([[0, 1]])),
        ];
        assert_eq!(anomalies(&reused), vec!["inconsistent-offsets"]);
        let twice = [
            send(0, "k1", 1, 0),
            poll(2, "k1", 0, json!([[0, 1], [1, 1]])),
        ];
        assert_eq!(anomalies(&twice), vec!["duplicate"]);
        let lost = [
            send(0, "k1", 1, 0),
            send(0, "k1", 2, 1),
            poll(2, "k1", 0, json!([[1, 2]])),
        ];
        assert_eq!(anomalies(&lost), vec!["lost-write"]);
        let skip = [
            send(0, "k1", 1, 0),
            send(0, "k1", 2, 1),
            poll(2, "k1", 0, json!([[0, 1], [1, 2]])),
            send(0, "k1", 3, 2),
            poll(3, "k1", 0, json!([[0, 1], [2, 3]])),
        ];
        assert_eq!(anomalies(&skip), vec!["poll-skip"]);
        let back = [send(0, "k1", 1, 5), send(0, "k1", 2, 3)];
        assert_eq!(anomalies(&back), vec!["nonmonotonic-send"]);
        let unordered = [
            send(0, "k1", 1, 0),
            send(0, "k1", 2, 1),
            poll(2, "k1", 0, json!([[1, 2], [0, 1]])),
        ];
        assert_eq!(anomalies(&unordered), vec!["nonmonotonic-poll"]);
    }

    #[test]
    fn a_poll_concurrent_with_a_send_may_miss_it() {
        // The send of 1 at offset 0 completes after the poll began.
        let lines = [
            r#"{"type":"invoke","process":0,"f":"send","value":["k1",1]}"#,
            r#"{"type":"invoke","process":1,"f":"send","value":["k1",2]}"#,
            r#"{"type":"ok","process":1,"f":"send","value":1}"#,
            r#"{"type":"invoke","process":2,"f":"poll","value":{"offsets":{"k1":0}}}"#,
            r#"{"type":"ok","process":0,"f":"send","value":0}"#,
            r#"{"type":"ok","process":2,"f":"poll","value":{"k1":[[1,2]]}}"#,
        ];
        let h = checker::format::jsonl::read(lines.join("\n").as_bytes()).unwrap();
        assert_eq!(check(&h).valid, Validity::Valid, "{}", check(&h).summary);
    }
}
