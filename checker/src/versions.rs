//! Version zones for `append-kv`: a refutation in O(n log n) per key, no search.
//!
//! When every put and append on a key carries a value no other op on that key
//! carries, each string a get returns spells out, token by token, which ops made
//! it and in what order (Elle's insight for list-append). So each state of the key
//! is a *version* with one known writer, and often a known successor (the append
//! seen right after it). In any linearization a version holds over one unbroken
//! span of time that covers its writer and every op that saw it (its gets and the
//! append that extended it), and two versions' spans share at most the moment of
//! an op that ends one and begins the other. From real-time intervals alone:
//! - a version whose ops are not all open at one moment (a *forward zone*: the
//!   first of them returns before the last is invoked) holds over that whole gap,
//!   so two forward zones may not overlap;
//! - a version whose ops are all open at once (a *backward zone*) holds at some
//!   moment of the time they share, which may not lie strictly inside another
//!   version's forward zone;
//! - no op sees a version before its writer was invoked.
//!
//! These are necessary conditions (for reads and writes with unique values they
//! are also sufficient, after Gibbons and Korach, SIAM J. Comput. 1997), so a
//! refutation is a proof; anything else is left to the search. Keys with an
//! indeterminate write, a repeated or empty value, or a string that does not split
//! into the key's values in exactly one way are skipped.

use std::collections::HashMap;

use crate::history::{History, Op, Outcome};
use crate::linearizability::OpView;
use crate::value::Value;

/// Why the history cannot be linearized, found without searching.
#[derive(Clone, Debug)]
pub struct Refutation {
    /// The key.
    pub key: Option<u32>,
    /// The op that cannot be placed (the later one of the two in conflict).
    pub op: usize,
    /// What contradicts what, naming the ops and their lines.
    pub reason: String,
}

/// The version before any put or append: the empty string.
const INITIAL: usize = usize::MAX;

/// One version's ops: their latest invoke and earliest return, and who set them.
#[derive(Clone, Copy, Debug)]
struct Zone {
    version: usize,
    /// Latest invoke among the version's ops, and that op (`None` for the initial
    /// version's virtual writer).
    last_call: (i128, Option<usize>),
    /// Earliest return among the version's ops, and that op.
    first_ret: (i128, Option<usize>),
}

impl Zone {
    fn forward(&self) -> bool {
        self.first_ret.0 < self.last_call.0
    }
}

/// Looks for a version-zone contradiction on any key of an `append-kv` history.
pub fn refute_append_kv(history: &History) -> Option<Refutation> {
    let mut by_key: HashMap<Option<u32>, Vec<usize>> = HashMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        by_key.entry(op.key).or_default().push(i);
    }
    let mut keys: Vec<_> = by_key.into_iter().collect();
    keys.sort_by_key(|(k, _)| *k);
    keys.into_iter()
        .find_map(|(key, ops)| refute_key(history, key, &ops))
}

fn string(v: &Value) -> Option<&str> {
    match v {
        Value::Str(s) => Some(s),
        Value::Null => Some(""),
        _ => None,
    }
}

fn is_get(op: &Op) -> bool {
    matches!(&*op.f, "get" | "read")
}

fn is_put(op: &Op) -> bool {
    matches!(&*op.f, "put" | "write")
}

/// Splits `s` into values of `tokens`; `None` unless there is exactly one way.
fn split(s: &str, tokens: &HashMap<&str, usize>, longest: usize) -> Option<Vec<usize>> {
    let b = s.as_bytes();
    let n = b.len();
    // ways[i]: number of splits of s[i..] (capped at 2); next[i]: the token used.
    let mut ways = vec![0u8; n + 1];
    let mut next = vec![(usize::MAX, 0); n + 1];
    ways[n] = 1;
    for i in (0..n).rev() {
        if !s.is_char_boundary(i) {
            continue;
        }
        for len in 1..=longest.min(n - i) {
            let Some(piece) = s.get(i..i + len) else {
                continue;
            };
            if let Some(&op) = tokens.get(piece) {
                if ways[i + len] > 0 {
                    ways[i] = (ways[i] + ways[i + len]).min(2);
                    next[i] = (op, len);
                }
            }
        }
    }
    if ways[0] != 1 {
        return None;
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let (op, len) = next[i];
        out.push(op);
        i += len;
    }
    Some(out)
}

fn refute_key(history: &History, key: Option<u32>, members: &[usize]) -> Option<Refutation> {
    let ops = &history.ops;
    let mut tokens: HashMap<&str, usize> = HashMap::new();
    for &i in members {
        let op = &ops[i];
        if is_get(op) {
            continue;
        }
        if op.is_indeterminate() || !(is_put(op) || &*op.f == "append") {
            return None;
        }
        let t = string(&op.input)?;
        if t.is_empty() || tokens.insert(t, i).is_some() {
            return None;
        }
    }
    let longest = tokens.keys().map(|t| t.len()).max().unwrap_or(0);
    // Each version's ops; the version is named by its writer (or INITIAL).
    let mut seen_by: HashMap<usize, Vec<usize>> = HashMap::new();
    // The version each append extended, and the get that showed it.
    let mut pred: HashMap<usize, (usize, usize)> = HashMap::new();
    let name_op = |i: usize| describe(history, i);
    for &i in members {
        let op = &ops[i];
        if !is_get(op) {
            continue;
        }
        let Outcome::Ok(v) = &op.output else {
            continue;
        };
        let s = string(v)?;
        let chain = if s.is_empty() {
            Vec::new()
        } else {
            split(s, &tokens, longest)?
        };
        let mut before = INITIAL;
        for (n, &w) in chain.iter().enumerate() {
            if n > 0 && is_put(&ops[w]) {
                // A put in the middle of a string cannot happen; the search says so.
                return None;
            }
            if n == 0 && is_put(&ops[w]) {
                before = w;
                continue;
            }
            match pred.get(&w) {
                Some(&(p, _)) if p == before => {}
                Some(&(p, by)) => {
                    let name = |v: usize| {
                        if v == INITIAL {
                            "the empty string".to_string()
                        } else {
                            format!("the state {}", name_op(v))
                        }
                    };
                    return Some(Refutation {
                        key,
                        op: i,
                        reason: format!(
                            "{} shows {} applied to {}, but {} shows it applied to {}: it happened once",
                            name_op(i),
                            name_op(w),
                            name(before),
                            name_op(by),
                            name(p)
                        ),
                    });
                }
                None => {
                    pred.insert(w, (before, i));
                }
            }
            before = w;
        }
        if chain
            .iter()
            .enumerate()
            .any(|(n, w)| chain[..n].contains(w))
        {
            return Some(Refutation {
                key,
                op: i,
                reason: format!("{} holds one op's value twice", name_op(i)),
            });
        }
        seen_by.entry(before).or_default().push(i);
    }
    for (&w, &(p, _)) in &pred {
        seen_by.entry(p).or_default().push(w);
    }
    // Zones, one per version that holds at some time.
    let mut zones = Vec::new();
    let position = |i: usize| (ops[i].call as i128, ops[i].ret as i128);
    let mut versions: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&i| !is_get(&ops[i]))
        .collect();
    if seen_by.contains_key(&INITIAL) {
        versions.push(INITIAL);
    }
    for v in versions {
        let (mut last_call, mut first_ret) = if v == INITIAL {
            ((-1, None), (-1, None))
        } else {
            let (c, r) = position(v);
            ((c, Some(v)), (r, Some(v)))
        };
        for &o in seen_by.get(&v).map(|s| s.as_slice()).unwrap_or(&[]) {
            let (c, r) = position(o);
            if v != INITIAL && r < position(v).0 {
                return Some(Refutation {
                    key,
                    op: o,
                    reason: format!(
                        "{} saw the effect of {}, which began only after it ended",
                        name_op(o),
                        name_op(v)
                    ),
                });
            }
            if c > last_call.0 {
                last_call = (c, Some(o));
            }
            if r < first_ret.0 {
                first_ret = (r, Some(o));
            }
        }
        zones.push(Zone {
            version: v,
            last_call,
            first_ret,
        });
    }
    let mut forward: Vec<Zone> = zones.iter().copied().filter(Zone::forward).collect();
    forward.sort_by_key(|z| z.first_ret.0);
    let state = |z: &Zone| {
        if z.version == INITIAL {
            "the empty string (before any write)".to_string()
        } else {
            format!("the state {} made", name_op(z.version))
        }
    };
    let ends = |z: &Zone| {
        let who = |o: Option<usize>| o.map_or("the start".to_string(), name_op);
        format!(
            "from {} returning to {} being invoked",
            who(z.first_ret.1),
            who(z.last_call.1)
        )
    };
    for pair in forward.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.first_ret.0 < a.last_call.0 {
            return Some(Refutation {
                key,
                op: a.last_call.1.or(b.last_call.1).unwrap_or(0),
                reason: format!(
                    "{} must hold {}, and {} must hold {}; those times overlap",
                    state(a),
                    ends(a),
                    state(b),
                    ends(b)
                ),
            });
        }
    }
    // A backward zone strictly inside a forward one: the forward zones are
    // disjoint, so only the last one starting before it can contain it.
    for z in zones.iter().filter(|z| !z.forward()) {
        let (lo, hi) = (z.last_call.0, z.first_ret.0);
        let at = forward.partition_point(|f| f.first_ret.0 < lo);
        if at == 0 {
            continue;
        }
        let f = &forward[at - 1];
        if f.version != z.version && hi < f.last_call.0 {
            return Some(Refutation {
                key,
                op: z.last_call.1.unwrap_or(0),
                reason: format!(
                    "{} must hold {}, but {} can only hold while all its ops are open, a time inside that one",
                    state(f),
                    ends(f),
                    state(z)
                ),
            });
        }
    }
    None
}

fn describe(history: &History, i: usize) -> String {
    let v = OpView::of(history, i);
    let out = v
        .output
        .as_ref()
        .map_or(String::new(), |o| format!(" -> {o}"));
    format!(
        "process {} {} {}{} (lines {}-{})",
        v.process,
        v.f,
        v.value,
        out,
        v.invoke_line,
        v.complete_line.map_or("end".to_string(), |l| l.to_string())
    )
}
