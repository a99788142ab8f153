//! Deterministic generator of large list-append histories from a simulated
//! strictly serializable store, with anomalies planted on request.
//!
//! Processes run transactions back to back; each transaction takes effect
//! atomically at a random instant inside its interval, in the order of those
//! instants, so the history is strictly serializable by construction. Keys
//! rotate: a key takes a bounded number of appends, then a fresh one replaces
//! it. About 1% of transactions end `info` (half of them took effect) and
//! retire their process; about 0.5% abort.

use std::fmt::Write;

use crate::generate::Rng;

/// An anomaly to plant: a few transactions on fresh keys, run one after another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plant {
    /// Two writers ordered differently on two keys.
    G0,
    /// Each of two transactions reads the other's append.
    G1c,
    /// A read of an aborted append.
    G1a,
    /// A read that ends at a transaction's intermediate append.
    G1b,
    /// Read skew: one key seen after a writer, another before it.
    GSingle,
    /// Write skew: each of two transactions misses the other's append.
    G2Item,
    /// A read that misses an append which completed before it began.
    StaleRead,
    /// A read that contradicts the transaction's own append.
    Internal,
    /// Two reads of a key that are not prefixes of one another.
    IncompatibleOrder,
    /// A read holding the same element twice.
    DuplicateElements,
    /// A read of a value never appended.
    GarbageRead,
    /// A committed append on top of an aborted one.
    DirtyUpdate,
}

impl Plant {
    /// Every plantable anomaly, with the kind the checker must report.
    pub const ALL: [(Plant, &'static str); 12] = [
        (Plant::G0, "G0"),
        (Plant::G1c, "G1c"),
        (Plant::G1a, "G1a"),
        (Plant::G1b, "G1b"),
        (Plant::GSingle, "G-single"),
        (Plant::G2Item, "G2-item"),
        (Plant::StaleRead, "G-single-realtime"),
        (Plant::Internal, "internal"),
        (Plant::IncompatibleOrder, "incompatible-order"),
        (Plant::DuplicateElements, "duplicate-elements"),
        (Plant::GarbageRead, "garbage-read"),
        (Plant::DirtyUpdate, "dirty-update"),
    ];

    /// Transactions of the pattern on keys `x` and `y`: (status, micro-ops as JSON).
    fn txns(self, x: &str, y: &str) -> Vec<(&'static str, String)> {
        let t = |ops: String| ("ok", ops);
        match self {
            Plant::G0 => vec![
                t(format!(r#"[["append",{x},1],["append",{y},1]]"#)),
                t(format!(r#"[["append",{x},2],["append",{y},2]]"#)),
                t(format!(r#"[["r",{x},[1,2]],["r",{y},[2,1]]]"#)),
            ],
            Plant::G1c => vec![
                t(format!(r#"[["append",{x},1],["r",{y},[1]]]"#)),
                t(format!(r#"[["append",{y},1],["r",{x},[1]]]"#)),
            ],
            Plant::G1a => vec![
                ("fail", format!(r#"[["append",{x},1]]"#)),
                t(format!(r#"[["r",{x},[1]]]"#)),
            ],
            Plant::G1b => vec![
                t(format!(r#"[["append",{x},1],["append",{x},2]]"#)),
                t(format!(r#"[["r",{x},[1]]]"#)),
            ],
            Plant::GSingle => vec![
                t(format!(r#"[["append",{x},1],["append",{y},1]]"#)),
                t(format!(r#"[["r",{x},[]],["r",{y},[1]]]"#)),
            ],
            Plant::G2Item => vec![
                t(format!(r#"[["r",{x},[]],["append",{y},1]]"#)),
                t(format!(r#"[["r",{y},[]],["append",{x},1]]"#)),
            ],
            Plant::StaleRead => vec![
                t(format!(r#"[["append",{x},1]]"#)),
                t(format!(r#"[["r",{x},[]]]"#)),
            ],
            Plant::Internal => vec![t(format!(r#"[["append",{x},1],["r",{x},[]]]"#))],
            Plant::IncompatibleOrder => vec![
                t(format!(r#"[["append",{x},1]]"#)),
                t(format!(r#"[["append",{x},2]]"#)),
                t(format!(r#"[["r",{x},[1,2]]]"#)),
                t(format!(r#"[["r",{x},[2]]]"#)),
            ],
            Plant::DuplicateElements => vec![
                t(format!(r#"[["append",{x},1]]"#)),
                t(format!(r#"[["r",{x},[1,1]]]"#)),
            ],
            Plant::GarbageRead => vec![t(format!(r#"[["r",{x},[99]]]"#))],
            Plant::DirtyUpdate => vec![
                ("fail", format!(r#"[["append",{x},1]]"#)),
                t(format!(r#"[["append",{x},2]]"#)),
                t(format!(r#"[["r",{x},[1,2]]]"#)),
            ],
        }
    }
}

/// Shape of a generated list-append history.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Transactions in all (planted ones not counted).
    pub txns: usize,
    /// Concurrent client processes.
    pub processes: usize,
    /// Keys in use at once.
    pub keys: usize,
    /// Most micro-ops per transaction (at least 1).
    pub max_ops: usize,
    /// Appends a key takes before a fresh key replaces it.
    pub writes_per_key: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Anomalies to plant, each at a random point.
    pub plant: Vec<Plant>,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            txns: 1000,
            processes: 10,
            keys: 10,
            max_ops: 4,
            writes_per_key: 32,
            seed: 1,
            plant: Vec::new(),
        }
    }
}

struct Planned {
    at: u64,
    start: u64,
    end: u64,
    slot: usize,
    ops: usize,
    /// 0 ok, 1 info applied, 2 info not applied, 3 fail.
    fate: u8,
}

/// Writes a strictly serializable list-append history of the given shape as JSONL.
pub fn list_append_history(shape: &Shape) -> String {
    let mut rng = Rng(shape.seed);
    let procs = shape.processes.max(1);
    let mut free_at = vec![0u64; procs];
    let mut plan: Vec<Planned> = Vec::with_capacity(shape.txns);
    for _ in 0..shape.txns {
        let slot = (0..procs).min_by_key(|&s| free_at[s]).unwrap_or(0);
        let start = free_at[slot] + 1 + rng.below(20);
        let len = 10 + rng.below(200);
        let roll = rng.below(1000);
        let fate = match roll {
            0..=4 => 1,
            5..=9 => 2,
            10..=14 => 3,
            _ => 0,
        };
        plan.push(Planned {
            at: start + rng.below(len + 1),
            start,
            end: start + len,
            slot,
            ops: 1 + rng.below(shape.max_ops.max(1) as u64) as usize,
            fate,
        });
        free_at[slot] = start + len;
    }
    let mut by_instant: Vec<usize> = (0..plan.len()).collect();
    by_instant.sort_by_key(|&i| plan[i].at);
    // Apply in effect order; remember each txn's invoke and completion values.
    let mut next_key = shape.keys.max(1) as u64;
    let mut pool: Vec<(u64, Vec<u64>, usize)> = (0..next_key).map(|k| (k, Vec::new(), 0)).collect();
    let mut text: Vec<(String, String)> = vec![(String::new(), String::new()); plan.len()];
    for &i in &by_instant {
        let p = &plan[i];
        let (mut inv, mut done) = (String::from("["), String::from("["));
        for j in 0..p.ops {
            let slot = rng.below(pool.len() as u64) as usize;
            let sep = if j > 0 { "," } else { "" };
            if rng.below(2) == 0 {
                let (k, list, appends) = &mut pool[slot];
                *appends += 1;
                let v = *appends as u64;
                if matches!(p.fate, 0 | 1) {
                    list.push(v);
                }
                let _ = write!(inv, r#"{sep}["append",{k},{v}]"#);
                let _ = write!(done, r#"{sep}["append",{k},{v}]"#);
                if *appends >= shape.writes_per_key.max(1) {
                    pool[slot] = (next_key, Vec::new(), 0);
                    next_key += 1;
                }
            } else {
                let (k, list, _) = &pool[slot];
                let _ = write!(inv, r#"{sep}["r",{k},null]"#);
                let _ = write!(done, r#"{sep}["r",{k},["#);
                for (n, v) in list.iter().enumerate() {
                    let _ = write!(done, "{}{v}", if n > 0 { "," } else { "" });
                }
                done.push_str("]]");
            }
        }
        inv.push(']');
        done.push(']');
        if p.fate != 0 {
            done = inv.clone();
        }
        text[i] = (inv, done);
    }
    // Events in time order: (time, completion?, txn).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * plan.len());
    for (i, p) in plan.iter().enumerate() {
        events.push((p.start, false, i));
        events.push((p.end, true, i));
    }
    events.sort_unstable();
    // A process that saw `info` retires: its slot continues under a new id.
    let mut process: Vec<i64> = (0..procs as i64).collect();
    let mut next_process = procs as i64;
    let mut planted_at: Vec<(usize, Plant)> = shape
        .plant
        .iter()
        .map(|&pl| (rng.below(events.len() as u64 + 1) as usize, pl))
        .collect();
    planted_at.sort_by_key(|&(at, _)| at);
    let mut out = String::with_capacity(plan.len() * 200);
    let mut plant_index = 0;
    let mut planted_key = 1u64 << 40;
    let mut last_time = 0u64;
    for (n, &(time, completion, i)) in events.iter().enumerate() {
        while plant_index < planted_at.len() && planted_at[plant_index].0 == n {
            let pl = planted_at[plant_index].1;
            plant(&mut out, pl, &mut planted_key, &mut next_process, last_time);
            plant_index += 1;
        }
        last_time = time;
        let p = &plan[i];
        let pid = process[p.slot];
        if !completion {
            let _ = writeln!(
                out,
                r#"{{"type":"invoke","process":{pid},"f":"txn","value":{},"time":{time}}}"#,
                text[i].0
            );
        } else {
            let kind = match p.fate {
                0 => "ok",
                1 | 2 => "info",
                _ => "fail",
            };
            let _ = writeln!(
                out,
                r#"{{"type":"{kind}","process":{pid},"f":"txn","value":{},"time":{time}}}"#,
                text[i].1
            );
            if matches!(p.fate, 1 | 2) {
                process[p.slot] = next_process;
                next_process += 1;
            }
        }
    }
    while plant_index < planted_at.len() {
        plant(
            &mut out,
            planted_at[plant_index].1,
            &mut planted_key,
            &mut next_process,
            last_time,
        );
        plant_index += 1;
    }
    out
}

/// Appends a planted pattern on two fresh keys. Its transactions overlap in
/// time (all invoked, then all completed), so real time orders none of them,
/// except for a stale read, which needs its write to complete first.
fn plant(out: &mut String, pl: Plant, key: &mut u64, process: &mut i64, time: u64) {
    let (x, y) = (key.to_string(), (*key + 1).to_string());
    *key += 2;
    let txns: Vec<(i64, &str, String)> = pl
        .txns(&x, &y)
        .into_iter()
        .map(|(status, ops)| {
            *process += 1;
            (*process - 1, status, ops)
        })
        .collect();
    let invoke = |out: &mut String, pid: i64, ops: &str| {
        let _ = writeln!(
            out,
            r#"{{"type":"invoke","process":{pid},"f":"txn","value":{},"time":{time}}}"#,
            reads_unknown(ops)
        );
    };
    let complete = |out: &mut String, pid: i64, status: &str, ops: &str| {
        let done = if status == "ok" {
            ops.to_string()
        } else {
            reads_unknown(ops)
        };
        let _ = writeln!(
            out,
            r#"{{"type":"{status}","process":{pid},"f":"txn","value":{done},"time":{time}}}"#
        );
    };
    if pl == Plant::StaleRead {
        for (pid, status, ops) in &txns {
            invoke(out, *pid, ops);
            complete(out, *pid, status, ops);
        }
    } else {
        for (pid, _, ops) in &txns {
            invoke(out, *pid, ops);
        }
        for (pid, status, ops) in &txns {
            complete(out, *pid, status, ops);
        }
    }
}

/// The micro-ops with every read's value replaced by `null`.
fn reads_unknown(ops: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(ops).expect("patterns are valid JSON");
    let mut items = v.as_array().cloned().unwrap_or_default();
    for item in &mut items {
        if let Some(m) = item.as_array_mut() {
            if m.first().and_then(|f| f.as_str()) == Some("r") {
                m[2] = serde_json::Value::Null;
            }
        }
    }
    serde_json::Value::Array(items).to_string()
}
