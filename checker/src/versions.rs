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

/// One version's ops: their latest invoke and earliest return, and who set them.
#[derive(Clone, Debug)]
struct Zone {
    version: Version,
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

/// Splits `s` into values of `tokens` (value -> id); `None` unless there is
/// exactly one way.
fn split(s: &str, tokens: &HashMap<&str, usize>, longest: usize) -> Option<Vec<usize>> {
    let n = s.len();
    // ways[i]: number of splits of s[i..] (capped at 2); next[i]: the value used.
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
            if let Some(&id) = tokens.get(piece) {
                if ways[i + len] > 0 {
                    ways[i] = (ways[i] + ways[i + len]).min(2);
                    next[i] = (id, len);
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
        let (id, len) = next[i];
        out.push(id);
        i += len;
    }
    Some(out)
}

/// A state of one key that holds over one unbroken span.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Version {
    /// The empty string before the first write.
    Initial,
    /// The state the op made (its value is carried by no other op).
    After(usize),
    /// A state read, made by one of several ops with the same value, holding a
    /// value only one op carries (so it cannot come back once left).
    Read(String),
}

fn refute_key(history: &History, key: Option<u32>, members: &[usize]) -> Option<Refutation> {
    let ops = &history.ops;
    // Each distinct value written, and the ops that wrote it.
    let mut tokens: HashMap<&str, usize> = HashMap::new();
    let mut writers: Vec<Vec<usize>> = Vec::new();
    let mut values: Vec<&str> = Vec::new();
    for &i in members {
        let op = &ops[i];
        if is_get(op) {
            continue;
        }
        if op.is_indeterminate() || !(is_put(op) || &*op.f == "append") {
            return None;
        }
        let t = string(&op.input)?;
        if t.is_empty() {
            return None;
        }
        let id = *tokens.entry(t).or_insert_with(|| {
            writers.push(Vec::new());
            values.push(t);
            writers.len() - 1
        });
        writers[id].push(i);
    }
    let only = |id: usize| (writers[id].len() == 1).then(|| writers[id][0]);
    let longest = tokens.keys().map(|t| t.len()).max().unwrap_or(0);
    let name_op = |i: usize| describe(history, i);
    // Each version's ops other than its writer.
    let mut seen_by: HashMap<Version, Vec<usize>> = HashMap::new();
    // The state each single-valued append extended, and the get that showed it.
    let mut pred: HashMap<usize, (String, usize)> = HashMap::new();
    for &i in members {
        let op = &ops[i];
        if !is_get(op) {
            continue;
        }
        let Outcome::Ok(v) = &op.output else {
            continue;
        };
        let Some(s) = string(v) else {
            continue;
        };
        let chain = if s.is_empty() {
            Vec::new()
        } else {
            match split(s, &tokens, longest) {
                Some(c) => c,
                None => continue,
            }
        };
        if let Some(twice) = chain
            .iter()
            .enumerate()
            .find(|&(n, &id)| only(id).is_some() && chain[..n].contains(&id))
        {
            let w = only(*twice.1).unwrap_or(i);
            return Some(Refutation {
                key,
                op: i,
                reason: format!("{} holds the value of {} twice", name_op(i), name_op(w)),
            });
        }
        let mut prefix = String::new();
        let mut unique_so_far = false;
        let mut version = Some(Version::Initial);
        for (n, &id) in chain.iter().enumerate() {
            if let (Some(w), Some(v)) = (only(id), &version) {
                // `w` saw the state before it.
                match pred.get(&w) {
                    Some((p, _)) if *p == prefix => {}
                    Some((p, by)) => {
                        let state = |p: &str| {
                            if p.is_empty() {
                                "the empty string".to_string()
                            } else {
                                format!("{p:?}")
                            }
                        };
                        return Some(Refutation {
                            key,
                            op: i,
                            reason: format!(
                                "{} shows {} applied to {}, but {} shows it applied to {}: it happened once",
                                name_op(i),
                                name_op(w),
                                state(&prefix),
                                name_op(*by),
                                state(p)
                            ),
                        });
                    }
                    None => {
                        pred.insert(w, (prefix.clone(), i));
                        if n > 0 || !is_put(&ops[w]) {
                            seen_by.entry(v.clone()).or_default().push(w);
                        }
                    }
                }
            }
            prefix.push_str(values[id]);
            unique_so_far |= only(id).is_some();
            version = match only(id) {
                Some(w) => Some(Version::After(w)),
                None if unique_so_far => Some(Version::Read(prefix.clone())),
                None => None,
            };
        }
        if let Some(v) = version {
            seen_by.entry(v).or_default().push(i);
        }
    }
    // Zones, one per version that holds at some time.
    let position = |i: usize| (ops[i].call as i128, ops[i].ret as i128);
    let mut versions: Vec<Version> = (0..writers.len())
        .filter_map(|id| only(id).map(Version::After))
        .collect();
    versions.extend(
        seen_by
            .keys()
            .filter(|v| !matches!(v, Version::After(_)))
            .cloned(),
    );
    let mut zones = Vec::new();
    for v in versions {
        let (mut last_call, mut first_ret) = match &v {
            Version::Initial => ((-1, None), (-1, None)),
            Version::After(w) => {
                let (c, r) = position(*w);
                ((c, Some(*w)), (r, Some(*w)))
            }
            Version::Read(_) => ((i128::MIN, None), (i128::MAX, None)),
        };
        for &o in seen_by.get(&v).map(|s| s.as_slice()).unwrap_or(&[]) {
            let (c, r) = position(o);
            if let Version::After(w) = v {
                if r < position(w).0 {
                    return Some(Refutation {
                        key,
                        op: o,
                        reason: format!(
                            "{} saw the effect of {}, which began only after it ended",
                            name_op(o),
                            name_op(w)
                        ),
                    });
                }
            }
            if c > last_call.0 {
                last_call = (c, Some(o));
            }
            if r < first_ret.0 {
                first_ret = (r, Some(o));
            }
        }
        if last_call.1.is_none() && first_ret.1.is_none() && v != Version::Initial {
            continue;
        }
        zones.push(Zone {
            version: v,
            last_call,
            first_ret,
        });
    }
    let mut forward: Vec<&Zone> = zones.iter().filter(|z| z.forward()).collect();
    forward.sort_by_key(|z| z.first_ret.0);
    let state = |z: &Zone| match &z.version {
        Version::Initial => "the empty string (before any write)".to_string(),
        Version::After(w) => format!("the state {} made", name_op(*w)),
        Version::Read(s) => format!("the state {s:?}"),
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
        let (a, b) = (pair[0], pair[1]);
        if b.first_ret.0 < a.last_call.0 {
            return Some(Refutation {
                key,
                op: b.last_call.1.or(a.last_call.1).unwrap_or(0),
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
        let f = forward[at - 1];
        if hi < f.last_call.0 {
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
