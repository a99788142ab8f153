//! The set-full checker (after Jepsen's): for a set that only grows, each
//! added element is followed through every read that began after it was
//! known to be in the set (its add acknowledged, or some read returned it).
//!
//! - *stable*: from some read on, every later read holds it; its stable
//!   latency is the time from its add to the first read of that run;
//! - *lost*: some read that began after it was known lacks it, and no read
//!   begun after that one ended holds it (it never came back); its lost
//!   latency is the time from its add to that read;
//! - *never read*: no read began after it was known.
//!
//! Lost elements, elements read that nobody added, and a read that holds an
//! element twice make the history invalid; stale reads (an element missing
//! for a while, then back) are reported, not judged, since these sets are
//! only eventually consistent.

use std::collections::{BTreeMap, HashSet};

use checker::history::{Outcome, NEVER};
use checker::{CheckerResult, History, Validity};
use serde_json::json;

use super::client::quantiles;

struct Read {
    call: u64,
    ret: u64,
    call_ms: f64,
    items: HashSet<i64>,
    line: u64,
    node: Option<String>,
}

struct Add {
    ret: u64,
    call_ms: f64,
    acked: bool,
    line: u64,
}

fn ms(t: Option<i64>) -> f64 {
    t.unwrap_or(0) as f64 / 1e6
}

/// Checks a history whose adds are ops named `add_f` (value: an integer) and
/// whose reads are `read` ops returning every element held.
pub fn check(history: &History, add_f: &str) -> CheckerResult {
    let mut adds: BTreeMap<i64, Add> = BTreeMap::new();
    let mut reads = Vec::new();
    let (mut unexpected, mut duplicated) = (Vec::new(), Vec::new());
    for op in &history.ops {
        if &*op.f == add_f {
            if let Some(e) = op.input.as_i64() {
                adds.insert(
                    e,
                    Add {
                        ret: op.ret,
                        call_ms: ms(op.call_time),
                        acked: !op.is_indeterminate(),
                        line: op.line,
                    },
                );
            }
        }
    }
    for op in &history.ops {
        if &*op.f != "read" {
            continue;
        }
        let Outcome::Ok(checker::value::Value::List(items)) = &op.output else {
            continue;
        };
        let mut held = HashSet::new();
        for item in items.iter() {
            let Some(e) = item.as_i64() else {
                unexpected.push(json!({"element": item, "line": op.ret_line}));
                continue;
            };
            if !held.insert(e) {
                duplicated.push(json!({"element": e, "line": op.ret_line}));
            }
            if !adds.contains_key(&e) {
                unexpected.push(json!({"element": e, "line": op.ret_line}));
            }
        }
        reads.push(Read {
            call: op.call,
            ret: op.ret,
            call_ms: ms(op.call_time),
            items: held,
            line: op.line,
            node: op.node.as_deref().map(str::to_string),
        });
    }
    reads.sort_by_key(|r| r.call);

    let (mut stable, mut never_read, mut stale) = (0u64, 0u64, 0u64);
    let mut lost = Vec::new();
    let (mut stable_ms, mut lost_ms) = (Vec::new(), Vec::new());
    for (&e, add) in &adds {
        // When the element was first known to be in the set.
        let first_seen = reads
            .iter()
            .filter(|r| r.items.contains(&e))
            .map(|r| r.ret)
            .min();
        let known = match (add.acked, first_seen) {
            (true, Some(s)) => add.ret.min(s),
            (true, None) => add.ret,
            (false, Some(s)) => s,
            (false, None) => continue,
        };
        if known == NEVER {
            continue;
        }
        let after: Vec<&Read> = reads.iter().filter(|r| r.call > known).collect();
        if after.is_empty() {
            never_read += 1;
            continue;
        }
        // It is lost when a read lacking it is followed by no read that
        // holds it; the lacking read that ended last decides.
        let holds_after = |t: u64| after.iter().find(|r| r.call > t && r.items.contains(&e));
        let lacking: Vec<&&Read> = after.iter().filter(|r| !r.items.contains(&e)).collect();
        let Some(last) = lacking.iter().max_by_key(|r| r.ret) else {
            stable += 1;
            stable_ms.push((after[0].call_ms - add.call_ms).max(0.0));
            continue;
        };
        match holds_after(last.ret) {
            Some(r) => {
                stable += 1;
                stale += 1;
                stable_ms.push((r.call_ms - add.call_ms).max(0.0));
            }
            None => {
                let first = lacking
                    .iter()
                    .find(|m| holds_after(m.ret).is_none())
                    .unwrap_or(last);
                lost_ms.push((first.call_ms - add.call_ms).max(0.0));
                lost.push(json!({
                    "element": e,
                    "acknowledged": add.acked,
                    "add_line": add.line,
                    "missing_from_read_line": first.line,
                    "node": first.node,
                }));
            }
        }
    }
    let attempted = adds.len();
    let acked = adds.values().filter(|a| a.acked).count();
    let valid = if lost.is_empty() && unexpected.is_empty() && duplicated.is_empty() {
        Validity::Valid
    } else {
        Validity::Invalid
    };
    let mut summary = format!(
        "{attempted} added ({acked} acknowledged): {stable} stable, {} lost, {never_read} never read, {stale} read stale first",
        lost.len()
    );
    if let Some(l) = lost.first() {
        summary.push_str(&format!(
            "; first lost: {} (missing from the read at line {})",
            l["element"], l["missing_from_read_line"]
        ));
    }
    if !unexpected.is_empty() {
        summary.push_str(&format!(
            "; {} reads held elements nobody added",
            unexpected.len()
        ));
    }
    if !duplicated.is_empty() {
        summary.push_str(&format!(
            "; {} reads held an element twice",
            duplicated.len()
        ));
    }
    let lost_count = lost.len();
    lost.truncate(20);
    unexpected.truncate(20);
    duplicated.truncate(20);
    CheckerResult::new(
        valid,
        summary,
        json!({
            "attempted": attempted,
            "acknowledged": acked,
            "stable": stable,
            "lost_count": lost_count,
            "never_read": never_read,
            "stale": stale,
            "lost": lost,
            "unexpected": unexpected,
            "duplicated": duplicated,
            "stable_latency_ms": quantiles(stable_ms),
            "lost_latency_ms": quantiles(lost_ms),
            "reads": reads.len(),
        }),
    )
}

/// Only for tests: the elements a valid history may not lack at the end.
#[cfg(test)]
fn brute_lost(adds: &[(i64, u64, u64, bool)], reads: &[(u64, u64, Vec<i64>)]) -> Vec<i64> {
    let mut out = Vec::new();
    for &(e, _call, ret, acked) in adds {
        let seen: Vec<u64> = reads
            .iter()
            .filter(|r| r.2.contains(&e))
            .map(|r| r.1)
            .collect();
        let known = if acked {
            seen.iter().copied().chain([ret]).min().unwrap_or(ret)
        } else if let Some(&s) = seen.iter().min() {
            s
        } else {
            continue;
        };
        // Lost: a read begun after `known` lacks it and no read begun after
        // that one ended holds it.
        let mut lacking = reads.iter().filter(|r| r.0 > known && !r.2.contains(&e));
        let lost = lacking.any(|miss| !reads.iter().any(|r| r.0 > miss.1 && r.2.contains(&e)));
        if lost {
            out.push(e);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;
    use serde_json::Value;

    /// Ops as (f, value, invoke position, complete position, result) in one history.
    fn history(ops: &[(&str, Value, u64, u64, Option<Value>)]) -> History {
        let mut events: Vec<(u64, String)> = Vec::new();
        for (p, (f, v, call, ret, out)) in ops.iter().enumerate() {
            events.push((
                *call,
                format!(
                    r#"{{"type":"invoke","process":{p},"f":"{f}","value":{v},"time":{}}}"#,
                    call * 1_000_000
                ),
            ));
            let done = match out {
                Some(o) => format!(
                    r#"{{"type":"ok","process":{p},"f":"{f}","value":{o},"time":{}}}"#,
                    ret * 1_000_000
                ),
                None => format!(
                    r#"{{"type":"info","process":{p},"f":"{f}","value":{v},"time":{}}}"#,
                    ret * 1_000_000
                ),
            };
            events.push((*ret, done));
        }
        events.sort_by_key(|e| e.0);
        let lines: Vec<String> = events.into_iter().map(|e| e.1).collect();
        checker::format::jsonl::read(lines.join("\n").as_bytes()).unwrap()
    }

    #[test]
    fn known_answers() {
        // Added, then read everywhere: stable.
        let h = history(&[
            ("add", json!(1), 0, 1, Some(json!(1))),
            ("read", json!(null), 2, 3, Some(json!([1]))),
        ]);
        let r = check(&h, "add");
        assert_eq!(
            (r.valid, r.details["stable"].clone()),
            (Validity::Valid, json!(1))
        );
        // Acknowledged, then missing from the last read: lost.
        let h = history(&[
            ("add", json!(1), 0, 1, Some(json!(1))),
            ("read", json!(null), 2, 3, Some(json!([1]))),
            ("read", json!(null), 4, 5, Some(json!([]))),
        ]);
        let r = check(&h, "add");
        assert_eq!(r.valid, Validity::Invalid);
        assert!(r.summary.contains("first lost: 1"), "{}", r.summary);
        // Missing, then back: stale, valid.
        let h = history(&[
            ("add", json!(1), 0, 1, Some(json!(1))),
            ("read", json!(null), 2, 3, Some(json!([]))),
            ("read", json!(null), 4, 5, Some(json!([1]))),
        ]);
        let r = check(&h, "add");
        assert_eq!(
            (r.valid, r.details["stale"].clone()),
            (Validity::Valid, json!(1))
        );
        // A read concurrent with the add may lack it.
        let h = history(&[
            ("add", json!(1), 0, 3, Some(json!(1))),
            ("read", json!(null), 1, 2, Some(json!([]))),
        ]);
        let r = check(&h, "add");
        assert_eq!(
            (r.valid, r.details["never_read"].clone()),
            (Validity::Valid, json!(1))
        );
        // An unacknowledged add that was never seen is not owed.
        let h = history(&[
            ("add", json!(1), 0, 1, None),
            ("read", json!(null), 2, 3, Some(json!([]))),
        ]);
        assert_eq!(check(&h, "add").valid, Validity::Valid);
        // ... but once seen, it must stay.
        let h = history(&[
            ("add", json!(1), 0, 1, None),
            ("read", json!(null), 2, 3, Some(json!([1]))),
            ("read", json!(null), 4, 5, Some(json!([]))),
        ]);
        assert_eq!(check(&h, "add").valid, Validity::Invalid);
        // Invented and doubled elements.
        let h = history(&[("read", json!(null), 0, 1, Some(json!([7])))]);
        assert!(check(&h, "add").summary.contains("nobody added"));
        let h = history(&[
            ("add", json!(1), 0, 1, Some(json!(1))),
            ("read", json!(null), 2, 3, Some(json!([1, 1]))),
        ]);
        assert_eq!(check(&h, "add").valid, Validity::Invalid);
    }

    #[test]
    fn agrees_with_a_brute_force_on_small_random_histories() {
        let mut rng = Rng::new(11);
        for round in 0..3000 {
            let mut ops = Vec::new();
            let mut adds = Vec::new();
            let mut reads = Vec::new();
            let mut t = 0u64;
            let n_adds = 1 + rng.below(3) as i64;
            for e in 1..=n_adds {
                let call = t + rng.below(3);
                let ret = call + 1 + rng.below(4);
                let acked = rng.chance(0.7);
                adds.push((e, call, ret, acked));
                ops.push((
                    "add",
                    json!(e),
                    call * 2,
                    ret * 2 + 1,
                    acked.then(|| json!(e)),
                ));
                t += rng.below(2);
            }
            for _ in 0..1 + rng.below(4) {
                let call = rng.below(12);
                let ret = call + 1 + rng.below(3);
                let held: Vec<i64> = (1..=n_adds).filter(|_| rng.chance(0.6)).collect();
                ops.push((
                    "read",
                    json!(null),
                    call * 2,
                    ret * 2 + 1,
                    Some(json!(held.clone())),
                ));
                reads.push((call * 2, ret * 2 + 1, held));
            }
            // Positions in the history are the event order; ties are broken by
            // the order of the events, which keeps an op's invoke before its
            // completion.
            let adds2: Vec<(i64, u64, u64, bool)> = adds
                .iter()
                .map(|&(e, c, r, a)| (e, c * 2, r * 2 + 1, a))
                .collect();
            let want = brute_lost(&adds2, &reads);
            let h = history(&ops);
            let r = check(&h, "add");
            let mut got: Vec<i64> = r.details["lost"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["element"].as_i64().unwrap())
                .collect();
            got.sort();
            assert_eq!(got, want, "round {round}: {ops:?}");
        }
    }
}
