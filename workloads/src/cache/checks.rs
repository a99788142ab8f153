//! The `cache` workload's checkers.
//!
//! - `stale-reads`: no read returns a value older (by store revision) than a
//!   write to its key whose invalidation was acknowledged before the read
//!   began; every value read was written by a write that began before the read
//!   ended, with the revision that write was given.
//! - `ttl`: no read returns a value older than a bypassing write (one that
//!   skipped invalidation) acknowledged more than the time to live, plus
//!   [`TTL_SLACK_MS`], before the read began.
//! - `eviction`: at the end every node holds at most its capacity.
//! - `convergence`: at the end, one time to live after the faults healed, every
//!   node reads each key as the store holds it, and every valid copy agrees.

use std::collections::BTreeMap;

use checker::history::{Op, Outcome};
use checker::History;
use serde_json::{json, Value};

use crate::Checked;

/// Allowance on the time to live for delivery delays of replica copies and
/// for scheduling, in ms.
pub const TTL_SLACK_MS: i64 = 1000;
/// At most this many findings are listed per checker.
const SHOW: usize = 20;

fn json_of(v: &checker::value::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn output(op: &Op) -> Option<Value> {
    match &op.output {
        Outcome::Ok(v) => Some(json_of(v)),
        Outcome::Unknown => None,
    }
}

#[derive(Default)]
struct Findings {
    count: usize,
    examples: Vec<Value>,
}

impl Findings {
    fn add(&mut self, v: Value) {
        self.count += 1;
        if self.examples.len() < SHOW {
            self.examples.push(v);
        }
    }
    fn report(self, mut extra: Value) -> Value {
        extra["valid"] = json!(self.count == 0);
        extra["problems"] = json!(self.count);
        extra["examples"] = json!(self.examples);
        extra
    }
}

struct Write {
    value: u64,
    invalidate: bool,
    /// Revision, when acknowledged.
    rev: Option<u64>,
    call: u64,
    ret: u64,
    ret_time: Option<i64>,
}

struct Read {
    value: Value,
    rev: u64,
    hit: bool,
    call: u64,
    ret: u64,
    call_time: Option<i64>,
    line: u64,
    node: Value,
}

/// Runs the four checkers.
pub fn check(history: &History) -> Checked {
    let mut writes: BTreeMap<String, Vec<Write>> = BTreeMap::new();
    let mut reads: BTreeMap<String, Vec<Read>> = BTreeMap::new();
    let mut converge = None;
    for op in &history.ops {
        let key = op.key.map(|k| history.keys[k as usize].to_string());
        match (&*op.f, key) {
            ("write", Some(key)) => {
                let input = json_of(&op.input);
                writes.entry(key).or_default().push(Write {
                    value: input["value"].as_u64().unwrap_or(0),
                    invalidate: input["invalidate"] != json!(false),
                    rev: output(op).and_then(|o| o["rev"].as_u64()),
                    call: op.call,
                    ret: op.ret,
                    ret_time: op.ret_time,
                });
            }
            ("read", Some(key)) => {
                if let Some(out) = output(op) {
                    reads.entry(key).or_default().push(Read {
                        value: out["value"].clone(),
                        rev: out["rev"].as_u64().unwrap_or(0),
                        hit: out["hit"] == json!(true),
                        call: op.call,
                        ret: op.ret,
                        call_time: op.call_time,
                        line: op.line,
                        node: out["node"].clone(),
                    });
                }
            }
            ("converge", _) => converge = output(op).or(converge),
            _ => {}
        }
    }
    let ttl_ms = converge.as_ref().and_then(|c| c["ttl_ms"].as_i64());
    let stale = stale_reads(&writes, &reads);
    let ttl = ttl_bound(&writes, &reads, ttl_ms);
    let (eviction, convergence) = match &converge {
        Some(c) => (eviction(c), convergence(c)),
        None => {
            let missing =
                json!({"valid": "unknown", "why": "the final converge op did not complete"});
            (missing.clone(), missing)
        }
    };
    let results = [
        ("stale-reads", stale),
        ("ttl", ttl),
        ("eviction", eviction),
        ("convergence", convergence),
    ];
    let mut checked = Checked::default();
    for (name, r) in results {
        checked.add(name, checker::CheckerResult::from_json(summary(&r), r));
    }
    checked
}

/// One line from a cache checker's result: why it could not judge, or its
/// counts (`reads 812, writes 97`) and problems.
fn summary(r: &Value) -> String {
    if let Some(why) = r["why"].as_str() {
        return why.to_string();
    }
    let mut parts: Vec<String> = r
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| v.is_u64() && *k != "problems")
        .map(|(k, v)| format!("{} {v}", k.replace('_', " ")))
        .collect();
    parts.push(format!(
        "{} problem(s)",
        r["problems"].as_u64().unwrap_or(0)
    ));
    parts.join(", ")
}

fn stale_reads(
    writes: &BTreeMap<String, Vec<Write>>,
    reads: &BTreeMap<String, Vec<Read>>,
) -> Value {
    let mut problems = Findings::default();
    let (mut total, mut hits) = (0u64, 0u64);
    let none = Vec::new();
    for (key, rs) in reads {
        let ws = writes.get(key).unwrap_or(&none);
        let by_value: BTreeMap<u64, &Write> = ws.iter().map(|w| (w.value, w)).collect();
        // Acknowledged invalidating writes by completion, with the highest
        // revision acknowledged so far at each.
        let mut acked: Vec<(u64, u64, u64)> = ws
            .iter()
            .filter(|w| w.invalidate)
            .filter_map(|w| Some((w.ret, w.rev?, w.value)))
            .collect();
        acked.sort_unstable();
        let mut best: Vec<(u64, u64, u64)> = Vec::with_capacity(acked.len());
        for (ret, rev, value) in acked {
            let keep = best.last().filter(|b| b.1 >= rev).copied();
            best.push(keep.map_or((ret, rev, value), |b| (ret, b.1, b.2)));
        }
        for r in rs {
            total += 1;
            hits += u64::from(r.hit);
            let read = json!({"key": key, "value": r.value, "rev": r.rev, "hit": r.hit,
                              "node": r.node, "line": r.line});
            if !r.value.is_null() {
                match r.value.as_u64().and_then(|v| by_value.get(&v)) {
                    None => problems
                        .add(json!({"problem": "read a value no write wrote", "read": read})),
                    Some(w) if w.call > r.ret => problems.add(json!({
                        "problem": "read a value before its write began", "read": read})),
                    Some(w) if w.rev.is_some_and(|rev| rev != r.rev) => problems.add(json!({
                        "problem": "read a value with another revision than its write was given",
                        "read": read, "write_rev": w.rev})),
                    _ => {}
                }
            }
            // The latest invalidating write acknowledged before the read began.
            let before = best.partition_point(|b| b.0 < r.call);
            if let Some(&(_, rev, value)) = before.checked_sub(1).map(|i| &best[i]) {
                if r.rev < rev {
                    problems.add(json!({
                        "problem": "read an older value than a write acknowledged (with its invalidations) before the read began",
                        "read": read, "acknowledged": {"value": value, "rev": rev}}));
                }
            }
        }
    }
    problems.report(json!({"reads": total, "hits": hits,
                           "hit_ratio": if total > 0 { hits as f64 / total as f64 } else { 0.0 }}))
}

fn ttl_bound(
    writes: &BTreeMap<String, Vec<Write>>,
    reads: &BTreeMap<String, Vec<Read>>,
    ttl_ms: Option<i64>,
) -> Value {
    let Some(ttl_ms) = ttl_ms else {
        return json!({"valid": "unknown", "why": "the time to live is unknown (no converge op)"});
    };
    let bound_ns = (ttl_ms + TTL_SLACK_MS) * 1_000_000;
    let mut problems = Findings::default();
    let mut checked = 0u64;
    let none = Vec::new();
    for (key, ws) in writes {
        for w in ws.iter().filter(|w| !w.invalidate) {
            let (Some(rev), Some(done)) = (w.rev, w.ret_time) else {
                continue;
            };
            for r in reads.get(key).unwrap_or(&none) {
                let Some(begun) = r.call_time else { continue };
                if begun > done + bound_ns {
                    checked += 1;
                    if r.rev < rev {
                        problems.add(json!({
                            "problem": "read a value older than a write acknowledged more than the time to live before",
                            "key": key, "read": {"value": r.value, "rev": r.rev, "line": r.line, "node": r.node},
                            "write": {"value": w.value, "rev": rev},
                            "ms_after_write": (begun - done) / 1_000_000}));
                    }
                }
            }
        }
    }
    problems.report(json!({"ttl_ms": ttl_ms, "slack_ms": TTL_SLACK_MS, "reads_checked": checked}))
}

fn eviction(converge: &Value) -> Value {
    let mut problems = Findings::default();
    let mut nodes = serde_json::Map::new();
    for (id, s) in converge["nodes"].as_object().into_iter().flatten() {
        if s.is_null() {
            continue;
        }
        let (entries, capacity) = (s["entries"].as_u64(), s["capacity"].as_u64());
        if let (Some(e), Some(c)) = (entries, capacity) {
            if e > c {
                problems.add(
                    json!({"problem": "a node holds more entries than its capacity",
                                    "node": id, "entries": e, "capacity": c}),
                );
            }
        }
        nodes.insert(id.clone(), s.clone());
    }
    if nodes.is_empty() {
        return json!({"valid": "unknown", "why": "no node reported its cache"});
    }
    problems.report(json!({"nodes": nodes}))
}

fn convergence(converge: &Value) -> Value {
    let mut problems = Findings::default();
    let mut keys = 0;
    for (key, k) in converge["keys"].as_object().into_iter().flatten() {
        keys += 1;
        let store = &k["store"];
        for (node, read) in k["reads"].as_object().into_iter().flatten() {
            if !read.is_null() && read["value"] != *store {
                problems.add(
                    json!({"problem": "a node reads a value the store no longer holds",
                                    "key": key, "node": node, "read": read, "store": store}),
                );
            }
        }
        for (node, copy) in k["copies"].as_object().into_iter().flatten() {
            let valid = matches!(copy["state"].as_str(), Some("exclusive" | "shared"));
            if valid && copy["value"] != *store {
                problems.add(
                    json!({"problem": "a node keeps a copy the store no longer holds",
                                    "key": key, "node": node, "copy": copy, "store": store}),
                );
            }
        }
    }
    problems.report(json!({"keys": keys}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use checker::Validity;

    /// A history from (process, type, f, key, value) events 1 ms apart.
    fn history(events: &[(u64, &str, &str, &str, Value)]) -> History {
        let mut text = String::new();
        for (i, (p, t, f, k, v)) in events.iter().enumerate() {
            let mut e =
                json!({"process": p, "type": t, "f": f, "value": v, "time": i as i64 * 1_000_000});
            if !k.is_empty() {
                e["key"] = json!(k);
            }
            text.push_str(&e.to_string());
            text.push('\n');
        }
        checker::format::jsonl::read(text.as_bytes()).expect("test history parses")
    }

    fn converge(
        store: i64,
        copy: Value,
    ) -> Vec<(u64, &'static str, &'static str, &'static str, Value)> {
        let out = json!({"ttl_ms": 1, "nodes": {"n1": {"entries": 3, "capacity": 4}},
            "keys": {"k": {"store": store, "reads": {"n1": {"value": store}}, "copies": {"n1": copy}}}});
        vec![
            (9, "invoke", "converge", "", json!({"keys": ["k"]})),
            (9, "ok", "converge", "", out),
        ]
    }

    fn write(p: u64, v: u64, inv: bool) -> (u64, &'static str, &'static str, &'static str, Value) {
        (
            p,
            "invoke",
            "write",
            "k",
            json!({"value": v, "invalidate": inv}),
        )
    }

    fn read_ok(p: u64, v: u64, rev: u64) -> (u64, &'static str, &'static str, &'static str, Value) {
        (
            p,
            "ok",
            "read",
            "k",
            json!({"value": v, "rev": rev, "hit": true, "node": "n1"}),
        )
    }

    fn read(p: u64) -> (u64, &'static str, &'static str, &'static str, Value) {
        (p, "invoke", "read", "k", Value::Null)
    }

    fn run(
        mut events: Vec<(u64, &'static str, &'static str, &'static str, Value)>,
        end: Value,
    ) -> Checked {
        events.extend(converge(2, end));
        check(&history(&events))
    }

    #[test]
    fn fresh_reads_and_reads_concurrent_with_a_write_are_valid() {
        let c = run(
            vec![
                write(0, 1, true),
                (0, "ok", "write", "k", json!({"rev": 1})),
                read(1),
                read_ok(1, 1, 1),
                write(0, 2, true),
                read(1),
                // Concurrent with the write: the old value is fine.
                read_ok(1, 1, 1),
                (0, "ok", "write", "k", json!({"rev": 2})),
                read(1),
                read_ok(1, 2, 2),
            ],
            json!({"state": "shared", "value": 2, "rev": 2}),
        );
        assert_eq!(c.valid, Validity::Valid, "{:?}", c.checkers);
        assert_eq!(c.checkers["stale-reads"]["hits"], 3);
    }

    #[test]
    fn a_read_older_than_an_acknowledged_write_is_stale() {
        let c = run(
            vec![
                write(0, 1, true),
                (0, "ok", "write", "k", json!({"rev": 1})),
                write(0, 2, true),
                (0, "ok", "write", "k", json!({"rev": 2})),
                read(1),
                read_ok(1, 1, 1),
            ],
            json!({"state": null}),
        );
        assert_eq!(c.valid, Validity::Invalid);
        let s = &c.checkers["stale-reads"];
        assert_eq!(s["problems"], 1, "{s}");
        assert_eq!(s["examples"][0]["acknowledged"]["value"], 2);
        assert_eq!(c.checkers["convergence"]["valid"], true);
    }

    #[test]
    fn bypassing_writes_may_be_stale_only_within_the_time_to_live() {
        // ttl 1 ms + 1000 ms slack; events are 1 ms apart, so pad with reads.
        let mut events = vec![
            write(0, 1, true),
            (0, "ok", "write", "k", json!({"rev": 1})),
            write(0, 2, false),
            (0, "ok", "write", "k", json!({"rev": 2})),
            read(1),
            read_ok(1, 1, 1),
        ];
        let valid = run(events.clone(), json!({"state": null}));
        assert_eq!(valid.valid, Validity::Valid, "{:?}", valid.checkers);
        for _ in 0..600 {
            events.push(read(1));
            events.push(read_ok(1, 1, 1));
        }
        let late = run(events, json!({"state": null}));
        assert_eq!(late.valid, Validity::Invalid);
        assert!(late.checkers["ttl"]["problems"].as_u64().unwrap() > 0);
        assert_eq!(late.checkers["stale-reads"]["valid"], true);
    }

    #[test]
    fn phantom_values_mismatched_revisions_and_diverged_copies_are_caught() {
        let c = run(
            vec![
                write(0, 2, true),
                (0, "ok", "write", "k", json!({"rev": 1})),
                read(1),
                read_ok(1, 7, 3),
                read(1),
                read_ok(1, 2, 5),
            ],
            json!({"state": "exclusive", "value": 1, "rev": 1}),
        );
        assert_eq!(c.valid, Validity::Invalid);
        assert_eq!(c.checkers["stale-reads"]["problems"], 2);
        assert_eq!(c.checkers["convergence"]["problems"], 1);
        // Without the final converge op nothing can be said about the end.
        let h = history(&[
            write(0, 1, true),
            (0, "ok", "write", "k", json!({"rev": 1})),
        ]);
        assert_eq!(check(&h).valid, Validity::Unknown);
    }
}
