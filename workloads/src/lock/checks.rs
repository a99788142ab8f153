//! The `lock` workload's checkers.
//!
//! - `linearizable`: each lock's acquires and releases against the `mutex` model
//!   (a grant that says it took over an expired lease, or renewed its owner's,
//!   must find the lock held).
//! - `fencing-tokens`: per lock, grants (renewals aside) carry distinct tokens,
//!   and a grant invoked after another completed carries a larger one.
//! - `fenced-writes`: each protected register's accepted writes (its log, read
//!   at the end) never go back to an older token, include every acknowledged
//!   write, hold nothing that no write sent, and keep real-time order.
//! - `deadlocks`: no moment at which waits the lock manager accepted form a
//!   cycle; every such wait should have been refused with the cycle.

use std::collections::{BTreeMap, HashMap, HashSet};

use checker::history::{Op, Outcome};
use checker::value::Value as HValue;
use checker::{CheckOptions, History};
use serde_json::{json, Value};

use crate::Checked;
use checker::CheckerResult;

/// At most this many findings are listed per checker.
const SHOW: usize = 20;
/// A wait counts for at most this long after its `queued` answer: half the lock
/// manager's lapse, so clocks skewed by less than 5 s cannot make it lapse sooner
/// there. Larger jumps (`clock-bump`) are handled apart, see [`clock_jumps`].
const WAIT_LAPSE_NS: i64 = 5_000_000_000;

/// Runs every checker of the `lock` workload.
pub fn check(history: &History, options: &CheckOptions) -> Result<Checked, String> {
    let mutex = mutex_history(history);
    let lin = checker::check_named("mutex", &mutex, options).map_err(|e| e.to_string())?;
    let mut checked = Checked::default();
    checked.add("linearizable", lin.result());
    let tokens = fencing_tokens(history);
    let summary = format!(
        "{} grants over {} locks, {} problem(s)",
        tokens["grants"], tokens["locks"], tokens["problems"]
    );
    checked.add("fencing-tokens", CheckerResult::from_json(summary, tokens));
    let writes = fenced_writes(history);
    let summary = format!(
        "{} accepted writes in {} protected registers, {} problem(s)",
        writes["accepted_writes"], writes["registers"], writes["problems"]
    );
    checked.add("fenced-writes", CheckerResult::from_json(summary, writes));
    let cycles = deadlocks(history);
    let summary = format!(
        "{} waits seen, {} unrefused cycle(s)",
        cycles["waits"],
        cycles["cycles"].as_array().map_or(0, |a| a.len())
    );
    checked.add("deadlocks", CheckerResult::from_json(summary, cycles));
    Ok(checked)
}

fn ok_output(op: &Op) -> Option<&HValue> {
    match &op.output {
        Outcome::Ok(v) => Some(v),
        Outcome::Unknown => None,
    }
}

fn is_queued(op: &Op) -> bool {
    ok_output(op).is_some_and(|v| v.get("queued").is_some())
}

fn token(v: &HValue) -> Option<i64> {
    v.get("token").and_then(HValue::as_i64)
}

fn key_name(history: &History, op: &Op) -> String {
    op.key
        .map(|k| history.keys[k as usize].to_string())
        .unwrap_or_default()
}

/// The acquires that may have taken the lock, and the releases.
fn mutex_history(history: &History) -> History {
    let ops = history
        .ops
        .iter()
        .filter(|op| (&*op.f == "acquire" && !is_queued(op)) || &*op.f == "release")
        .cloned()
        .collect();
    History {
        ops,
        keys: history.keys.clone(),
        nemesis: history.nemesis.clone(),
        failed: Vec::new(),
        stats: history.stats.clone(),
    }
}

/// An op placed in real time and ranked: (call, ret or None if unknown, rank, id).
type Ranked = (u64, Option<u64>, i64, usize);

/// Pairs (earlier, later) where `later` was invoked after `earlier` completed but
/// does not rank above it.
fn realtime_regressions(items: &[Ranked]) -> Vec<(usize, usize)> {
    let mut by_ret: Vec<&Ranked> = items.iter().filter(|i| i.1.is_some()).collect();
    by_ret.sort_by_key(|i| i.1);
    let mut by_call: Vec<&Ranked> = items.iter().collect();
    by_call.sort_by_key(|i| i.0);
    let mut found = Vec::new();
    let mut best: Option<(i64, usize)> = None;
    let mut next = 0;
    for b in by_call {
        while next < by_ret.len() && by_ret[next].1 < Some(b.0) {
            let a = by_ret[next];
            if best.is_none_or(|(rank, _)| a.2 > rank) {
                best = Some((a.2, a.3));
            }
            next += 1;
        }
        if let Some((rank, id)) = best {
            if b.2 <= rank {
                found.push((id, b.3));
            }
        }
    }
    found
}

fn describe(history: &History, i: usize) -> Value {
    let op = &history.ops[i];
    json!({"process": op.process, "f": &*op.f, "key": key_name(history, op),
           "value": op.input, "output": ok_output(op), "line": op.line})
}

/// Tokens of grants: distinct per lock and increasing in real time.
fn fencing_tokens(history: &History) -> Value {
    let mut per_lock: BTreeMap<String, Vec<Ranked>> = BTreeMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        // A renewal keeps its token: it is no new grant.
        let renewed = ok_output(op).is_some_and(|v| v.get("renewed").is_some());
        if &*op.f != "acquire" || is_queued(op) || renewed {
            continue;
        }
        if let Some(t) = ok_output(op).and_then(token) {
            per_lock
                .entry(key_name(history, op))
                .or_default()
                .push((op.call, Some(op.ret), t, i));
        }
    }
    let mut problems = Vec::new();
    let mut grants = 0;
    for (lock, items) in &per_lock {
        grants += items.len();
        let mut seen: HashMap<i64, usize> = HashMap::new();
        for it in items {
            if let Some(&first) = seen.get(&it.2) {
                problems.push(json!({"lock": lock, "problem": "token granted twice",
                    "first": describe(history, first), "second": describe(history, it.3)}));
            }
            seen.insert(it.2, it.3);
        }
        for (a, b) in realtime_regressions(items) {
            problems.push(json!({"lock": lock, "problem": "a later grant has a token no larger than an earlier one",
                "earlier": describe(history, a), "later": describe(history, b)}));
        }
    }
    let count = problems.len();
    problems.truncate(SHOW);
    json!({"valid": count == 0, "locks": per_lock.len(), "grants": grants,
           "problems": count, "examples": problems})
}

/// Each register's final log against the writes the clients made.
fn fenced_writes(history: &History) -> Value {
    let mut writes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut finals: BTreeMap<String, &HValue> = BTreeMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        match &*op.f {
            "write" => writes.entry(key_name(history, op)).or_default().push(i),
            "read" => {
                if let Some(v) = ok_output(op) {
                    finals.insert(key_name(history, op), v);
                }
            }
            _ => {}
        }
    }
    let mut problems = Vec::new();
    let (mut accepted, mut unread) = (0, Vec::new());
    for (register, ops) in &writes {
        let Some(state) = finals.get(register) else {
            unread.push(register.clone());
            continue;
        };
        let log: Vec<(i64, HValue)> = match state.get("log") {
            Some(HValue::List(items)) => items
                .iter()
                .filter_map(|e| match e {
                    HValue::List(p) if p.len() == 2 => p[0].as_i64().map(|t| (t, p[1].clone())),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let complete = state.get("log_dropped").and_then(HValue::as_i64) == Some(0);
        accepted += log.len();
        for w in log.windows(2) {
            if w[1].0 < w[0].0 {
                problems.push(json!({"register": register, "problem": "a write with an older token was accepted after a newer one",
                    "newer_token": w[0].0, "stale_token": w[1].0, "stale_value": w[1].1}));
            }
        }
        let position: HashMap<&HValue, usize> =
            log.iter().enumerate().map(|(i, (_, v))| (v, i)).collect();
        let sent: HashSet<&HValue> = ops
            .iter()
            .filter_map(|&i| history.ops[i].input.get("value"))
            .collect();
        for (_, v) in &log {
            if !sent.contains(v) {
                problems.push(json!({"register": register, "problem": "the register holds a value no acknowledged or pending write sent (a refused write took effect?)", "value": v}));
            }
        }
        let mut ranked = Vec::new();
        for &i in ops {
            let op = &history.ops[i];
            let (Some(_), Some(v)) = (ok_output(op), op.input.get("value")) else {
                continue;
            };
            match position.get(v) {
                Some(&at) => ranked.push((op.call, Some(op.ret), at as i64, i)),
                None if complete => problems.push(json!({"register": register,
                    "problem": "an acknowledged write is missing from the register", "write": describe(history, i)})),
                None => {}
            }
        }
        for (a, b) in realtime_regressions(&ranked) {
            problems.push(json!({"register": register, "problem": "a write took effect before one that completed before it began",
                "earlier": describe(history, a), "later": describe(history, b)}));
        }
    }
    let count = problems.len();
    problems.truncate(SHOW);
    json!({"valid": count == 0, "registers": writes.len(), "accepted_writes": accepted,
           "unread_registers": unread, "problems": count, "examples": problems})
}

/// A wait the lock manager accepted: `process` waits for `holder` through `lock`
/// over [from, to] (ns), the shortest span the history proves.
#[derive(Debug, Clone)]
struct Edge {
    process: i64,
    holder: i64,
    lock: String,
    from: i64,
    to: i64,
}

/// When the lock manager's clock may have jumped far ahead, lapsing every wait
/// at once: each `clock-bump` fault, from the nemesis event before it (its
/// start is recorded only after the clocks moved) until it stopped.
fn clock_jumps(history: &History) -> Vec<(i64, i64)> {
    let mut windows = Vec::new();
    let mut previous = 0;
    for (i, e) in history.nemesis.iter().enumerate() {
        let at = e.time.unwrap_or(previous);
        if &*e.f == "start-clock-bump" {
            let stop = history.nemesis[i + 1..]
                .iter()
                .find(|x| &*x.f == "stop-clock-bump")
                .and_then(|x| x.time)
                .unwrap_or(i64::MAX);
            windows.push((previous, stop));
        }
        previous = at;
    }
    windows
}

/// Waits that formed a cycle at some moment. Spans are taken conservatively,
/// so a cycle found here certainly existed:
/// - a hold lasts from its grant's completion until its release or another
///   grant of the lock is invoked (an expired lease still holds until
///   replaced, as in the lock manager);
/// - a wait lasts from a `queued` answer until the process invokes anything
///   but another ask for that lock, a refused (`fail`) op included (a
///   `deadlock` refusal removes the wait), and never past a possible clock jump.
fn deadlocks(history: &History) -> Value {
    let jumps = clock_jumps(history);
    // Refused ops per process, by invocation: they end waits too.
    let mut refused: HashMap<i64, Vec<i64>> = HashMap::new();
    for op in &history.failed {
        if let Some(call) = op.call_time {
            refused.entry(op.process).or_default().push(call);
        }
    }
    let mut by_process: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        by_process.entry(op.process).or_default().push(i);
    }
    // Grants per lock, by completion, to see when another grant ended a hold.
    let mut grants: HashMap<Option<u32>, Vec<(i64, i64)>> = HashMap::new();
    for op in &history.ops {
        if &*op.f == "acquire" && !is_queued(op) && ok_output(op).is_some() {
            if let Some(call) = op.call_time {
                grants.entry(op.key).or_default().push((call, op.process));
            }
        }
    }
    // Holds: (process, lock) -> [from, to]: from the grant's completion to the
    // release's invocation or another process's grant's invocation.
    let mut holds: HashMap<(i64, String), Vec<(i64, i64)>> = HashMap::new();
    for ops in by_process.values() {
        for (n, &i) in ops.iter().enumerate() {
            let op = &history.ops[i];
            if &*op.f != "acquire" || is_queued(op) || ok_output(op).is_none() {
                continue;
            }
            let Some(ret) = op.ret_time else { continue };
            let released = ops[n + 1..]
                .iter()
                .map(|&j| &history.ops[j])
                .find(|o| &*o.f == "release" && o.key == op.key)
                .and_then(|o| o.call_time)
                .unwrap_or(i64::MAX);
            let replaced = grants[&op.key]
                .iter()
                .filter(|(call, p)| *p != op.process && *call > ret)
                .map(|(call, _)| *call)
                .min()
                .unwrap_or(i64::MAX);
            holds
                .entry((op.process, key_name(history, op)))
                .or_default()
                .push((ret, released.min(replaced)));
        }
    }
    let mut edges = Vec::new();
    for ops in by_process.values() {
        for (n, &i) in ops.iter().enumerate() {
            let op = &history.ops[i];
            let Some(out) = ok_output(op).filter(|_| is_queued(op)) else {
                continue;
            };
            // The wait stays registered until the process does something other
            // than ask again for the same lock.
            let end = ops[n + 1..]
                .iter()
                .map(|&j| &history.ops[j])
                .find(|o| !(&*o.f == "acquire" && is_queued(o) && o.key == op.key))
                .and_then(|o| o.call_time);
            let Some(from) = op.ret_time else { continue };
            let refusal = refused
                .get(&op.process)
                .into_iter()
                .flatten()
                .filter(|&&t| t > from)
                .min()
                .copied();
            let Some(next) = end.into_iter().chain(refusal).min() else {
                continue;
            };
            let mut next = next.min(from + WAIT_LAPSE_NS);
            for &(a, b) in &jumps {
                if from < b {
                    next = next.min(from.max(a));
                }
            }
            let lock = key_name(history, op);
            let Some(HValue::List(holders)) = out.get("holders") else {
                continue;
            };
            for h in holders.iter() {
                let Some(holder) = h
                    .as_str()
                    .and_then(|s| s.strip_prefix('p'))
                    .and_then(|s| s.parse::<i64>().ok())
                else {
                    continue;
                };
                for &(start, end) in holds.get(&(holder, lock.clone())).into_iter().flatten() {
                    let (a, b) = (from.max(start), next.min(end));
                    if a < b {
                        edges.push(Edge {
                            process: op.process,
                            holder,
                            lock: lock.clone(),
                            from: a,
                            to: b,
                        });
                    }
                }
            }
        }
    }
    let mut cycles = Vec::new();
    for e in &edges {
        // At the moment this wait is known to exist, look for a way back.
        let t = e.from;
        let live: Vec<&Edge> = edges.iter().filter(|x| x.from <= t && t < x.to).collect();
        if let Some(path) = path_back(&live, e) {
            cycles.push(json!({"at_ms": t as f64 / 1e6, "cycle": path}));
            if cycles.len() >= SHOW {
                break;
            }
        }
    }
    json!({"valid": cycles.is_empty(), "waits": edges.len(), "cycles": cycles})
}

/// A path of live waits from `e`'s holder back to `e`'s process, as
/// `["p1 waits for p2 on lock0", ...]`.
fn path_back(live: &[&Edge], e: &Edge) -> Option<Vec<String>> {
    let step = |x: &Edge| format!("p{} waits for p{} on {}", x.process, x.holder, x.lock);
    let mut stack = vec![(e.holder, vec![step(e)])];
    let mut seen = HashSet::new();
    while let Some((at, path)) = stack.pop() {
        if at == e.process {
            return Some(path);
        }
        if !seen.insert(at) {
            continue;
        }
        for x in live.iter().filter(|x| x.process == at) {
            let mut p = path.clone();
            p.push(step(x));
            stack.push((x.holder, p));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use checker::Validity;

    /// A history from `(process, kind, f, key, value, time_ms)` lines.
    fn history(events: &[(u64, &str, &str, &str, &str, i64)]) -> History {
        let mut text = String::new();
        for (p, kind, f, key, value, ms) in events {
            text.push_str(&format!(
                "{{\"type\":\"{kind}\",\"process\":{p},\"f\":\"{f}\",\"key\":\"{key}\",\"value\":{value},\"time\":{}}}\n",
                ms * 1_000_000
            ));
        }
        checker::format::jsonl::read(text.as_bytes()).expect("test history parses")
    }

    fn verdicts(h: &History) -> BTreeMap<String, Value> {
        let c = check(h, &CheckOptions::default()).unwrap();
        c.checkers
            .into_iter()
            .map(|(k, v)| (k, v["valid"].clone()))
            .collect()
    }

    const A: &str = r#"{"owner":"p1","ttl_ms":1000,"wait":false}"#;
    const B: &str = r#"{"owner":"p2","ttl_ms":1000,"wait":false}"#;

    #[test]
    fn a_clean_round_passes_every_checker() {
        let h = history(&[
            (1, "invoke", "acquire", "l", A, 0),
            (
                1,
                "ok",
                "acquire",
                "l",
                r#"{"token":1,"took_over":false}"#,
                1,
            ),
            (1, "invoke", "write", "l", r#"{"token":1,"value":10}"#, 2),
            (1, "ok", "write", "l", r#"{"token":1,"value":10}"#, 3),
            (1, "invoke", "release", "l", A, 4),
            (1, "ok", "release", "l", "null", 5),
            (2, "invoke", "acquire", "l", B, 6),
            (
                2,
                "ok",
                "acquire",
                "l",
                r#"{"token":2,"took_over":false}"#,
                7,
            ),
            (2, "invoke", "write", "l", r#"{"token":2,"value":11}"#, 8),
            (2, "ok", "write", "l", r#"{"token":2,"value":11}"#, 9),
            (3, "invoke", "read", "l", "null", 20),
            (
                3,
                "ok",
                "read",
                "l",
                r#"{"token":2,"value":11,"log":[[1,10],[2,11]],"log_dropped":0}"#,
                21,
            ),
        ]);
        let v = verdicts(&h);
        assert!(v.values().all(|x| *x == json!(true)), "{v:?}");
    }

    #[test]
    fn two_holders_and_a_reused_token_are_caught() {
        let h = history(&[
            (1, "invoke", "acquire", "l", A, 0),
            (
                1,
                "ok",
                "acquire",
                "l",
                r#"{"token":1,"took_over":false}"#,
                1,
            ),
            (2, "invoke", "acquire", "l", B, 2),
            (
                2,
                "ok",
                "acquire",
                "l",
                r#"{"token":1,"took_over":false}"#,
                3,
            ),
        ]);
        let v = verdicts(&h);
        assert_eq!(v["linearizable"], json!(false));
        assert_eq!(v["fencing-tokens"], json!(false));
    }

    #[test]
    fn a_stale_token_accepted_or_an_acknowledged_write_lost_is_caught() {
        let stale = history(&[
            (1, "invoke", "write", "l", r#"{"token":1,"value":10}"#, 0),
            (2, "invoke", "write", "l", r#"{"token":2,"value":11}"#, 1),
            (2, "ok", "write", "l", r#"{"token":2,"value":11}"#, 2),
            (1, "ok", "write", "l", r#"{"token":1,"value":10}"#, 3),
            (3, "invoke", "read", "l", "null", 4),
            (
                3,
                "ok",
                "read",
                "l",
                r#"{"log":[[2,11],[1,10]],"log_dropped":0}"#,
                5,
            ),
        ]);
        assert_eq!(verdicts(&stale)["fenced-writes"], json!(false));
        let lost = history(&[
            (1, "invoke", "write", "l", r#"{"token":1,"value":10}"#, 0),
            (1, "ok", "write", "l", r#"{"token":1,"value":10}"#, 1),
            (3, "invoke", "read", "l", "null", 4),
            (3, "ok", "read", "l", r#"{"log":[],"log_dropped":0}"#, 5),
        ]);
        let c = check(&lost, &CheckOptions::default()).unwrap();
        assert_eq!(c.checkers["fenced-writes"]["valid"], json!(false));
        assert_eq!(c.valid, Validity::Invalid);
    }

    #[test]
    fn waits_that_close_a_cycle_are_caught_and_waits_that_do_not_pass() {
        let qa = r#"{"owner":"p1","ttl_ms":1000,"wait":true}"#;
        let qb = r#"{"owner":"p2","ttl_ms":1000,"wait":true}"#;
        let events = |second_holder: &'static str| {
            vec![
                (1, "invoke", "acquire", "x", A, 0),
                (
                    1,
                    "ok",
                    "acquire",
                    "x",
                    r#"{"token":1,"took_over":false}"#,
                    1,
                ),
                (2, "invoke", "acquire", "y", B, 0),
                (
                    2,
                    "ok",
                    "acquire",
                    "y",
                    r#"{"token":1,"took_over":false}"#,
                    1,
                ),
                (1, "invoke", "acquire", "y", qa, 10),
                (
                    1,
                    "ok",
                    "acquire",
                    "y",
                    r#"{"queued":true,"holders":["p2"]}"#,
                    11,
                ),
                (2, "invoke", "acquire", "x", qb, 12),
                (2, "ok", "acquire", "x", second_holder, 13),
                (1, "invoke", "cancel", "y", A, 50),
                (1, "ok", "cancel", "y", "null", 51),
                (2, "invoke", "cancel", "x", B, 52),
                (2, "ok", "cancel", "x", "null", 53),
            ]
        };
        let cyclic = history(&events(r#"{"queued":true,"holders":["p1"]}"#));
        let c = check(&cyclic, &CheckOptions::default()).unwrap();
        assert_eq!(
            c.checkers["deadlocks"]["valid"],
            json!(false),
            "{:?}",
            c.checkers["deadlocks"]
        );
        // p2 waiting on a lock held by a third process closes no cycle.
        let fine = history(&events(r#"{"queued":true,"holders":["p3"]}"#));
        assert_eq!(verdicts(&fine)["deadlocks"], json!(true));
    }

    #[test]
    fn a_wait_ended_by_a_refusal_or_a_clock_jump_closes_no_cycle() {
        let qa = r#"{"owner":"p1","ttl_ms":1000,"wait":true}"#;
        let qb = r#"{"owner":"p2","ttl_ms":1000,"wait":true}"#;
        // p1 holds x and waits for y (held by p2); p2 then waits for x.
        let base = |middle: &[(
            u64,
            &'static str,
            &'static str,
            &'static str,
            &'static str,
            i64,
        )]| {
            let mut events = vec![
                (1, "invoke", "acquire", "x", A, 0),
                (
                    1,
                    "ok",
                    "acquire",
                    "x",
                    r#"{"token":1,"took_over":false}"#,
                    1,
                ),
                (2, "invoke", "acquire", "y", B, 0),
                (
                    2,
                    "ok",
                    "acquire",
                    "y",
                    r#"{"token":1,"took_over":false}"#,
                    1,
                ),
                (1, "invoke", "acquire", "y", qa, 10),
                (
                    1,
                    "ok",
                    "acquire",
                    "y",
                    r#"{"queued":true,"holders":["p2"]}"#,
                    11,
                ),
            ];
            events.extend_from_slice(middle);
            events.extend_from_slice(&[
                (2, "invoke", "acquire", "x", qb, 20),
                (
                    2,
                    "ok",
                    "acquire",
                    "x",
                    r#"{"queued":true,"holders":["p1"]}"#,
                    21,
                ),
                (1, "invoke", "release", "x", A, 50),
                (1, "ok", "release", "x", "null", 51),
                (2, "invoke", "cancel", "x", B, 52),
                (2, "ok", "cancel", "x", "null", 53),
            ]);
            events
        };
        assert_eq!(verdicts(&history(&base(&[])))["deadlocks"], json!(false));
        // p1 asked for y again and was refused `deadlock`: the manager dropped its
        // wait before p2 began to wait, so no cycle existed.
        let refused = history(&base(&[
            (1, "invoke", "acquire", "y", qa, 14),
            (1, "fail", "acquire", "y", r#""deadlock""#, 15),
        ]));
        assert_eq!(verdicts(&refused)["deadlocks"], json!(true));
        // A clock jump between the two waits may have lapsed p1's.
        let mut text = String::new();
        for (p, kind, f, key, value, ms) in base(&[]) {
            text.push_str(&format!(
                "{{\"type\":\"{kind}\",\"process\":{p},\"f\":\"{f}\",\"key\":\"{key}\",\"value\":{value},\"time\":{}}}\n",
                ms * 1_000_000
            ));
            if ms == 11 {
                for (f, t) in [("start-clock-bump", 12), ("stop-clock-bump", 13)] {
                    text.push_str(&format!(
                        "{{\"type\":\"info\",\"process\":\"nemesis\",\"f\":\"{f}\",\"value\":null,\"time\":{}}}\n",
                        t * 1_000_000
                    ));
                }
            }
        }
        let jumped = checker::format::jsonl::read(text.as_bytes()).unwrap();
        assert_eq!(jumped.nemesis.len(), 2);
        assert_eq!(verdicts(&jumped)["deadlocks"], json!(true));
    }

    #[test]
    fn regressions_need_real_time_order() {
        // (call, ret, rank, id): 0 completes before 1 starts with a larger rank.
        let items = [(0, Some(5), 3, 0), (6, Some(9), 2, 1), (1, Some(7), 1, 2)];
        assert_eq!(realtime_regressions(&items), vec![(0, 1)]);
    }
}
