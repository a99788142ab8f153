//! Rw-register inference. Writes are unique per key, so a read names its
//! writer (wr); the only version orders inferred soundly are that the initial
//! nil precedes every write, and that a txn which read `v` and then wrote `w`
//! puts `v` before `w` (ww from `v`'s writer, rw from `v`'s other readers).
//! Orders between blind writes are unknown, so some cycles stay invisible: a
//! valid verdict means none was found in what could be inferred.

use std::collections::HashMap;

use super::analysis::{Facts, Inference};
use super::explain::{key, val, Namer, RW, WR, WW};
use super::{MixBuild, Mop, Status, TxnHistory};
use crate::error::ReadError;

fn wkey(k: u32, v: u32) -> u64 {
    (u64::from(k) << 32) | u64::from(v)
}

/// Rw-register facts for explanations.
pub(crate) struct RegisterFacts {
    writers: HashMap<u64, (u32, bool), MixBuild>,
    /// Whether real time ordered versions too (each key a linearizable register).
    linearizable_keys: bool,
}

/// What a txn's first access to a key was: an external read (its value id, or
/// None for nil) if it was a read.
fn first_reads(h: &TxnHistory, t: usize) -> Vec<(u32, Option<u32>, Option<u32>)> {
    // (key, value read externally, first own write after it)
    let mut out: Vec<(u32, Option<Option<u32>>, Option<u32>)> = Vec::new();
    for m in h.mops_of(t) {
        let k = m.key();
        let i = match out.iter().position(|e| e.0 == k) {
            Some(i) => i,
            None => {
                let first = match *m {
                    Mop::Read { known: true, .. } => Some(h.elems(m).first().copied()),
                    _ => None,
                };
                out.push((k, first, None));
                out.len() - 1
            }
        };
        if let Mop::Write { value, .. } = *m {
            if out[i].2.is_none() {
                out[i].2 = Some(value);
            }
        }
    }
    out.into_iter()
        .filter_map(|(k, r, w)| r.map(|r| (k, r, w)))
        .collect()
}

/// Infers edges and reports aborted, garbage, intermediate and internal reads.
pub(crate) fn infer(
    h: &TxnHistory,
    inf: &mut Inference,
    linearizable_keys: bool,
) -> Result<RegisterFacts, ReadError> {
    let n = h.txns.len();
    let mut writers: HashMap<u64, (u32, bool), MixBuild> = HashMap::default();
    let mut by_key: Vec<Vec<u32>> = vec![Vec::new(); h.keys.len()];
    for t in 0..n {
        let ms = h.mops_of(t);
        for (j, m) in ms.iter().enumerate() {
            if let Mop::Write { key: k, value } = *m {
                let last = !ms[j + 1..]
                    .iter()
                    .any(|m2| matches!(m2, Mop::Write { key, .. } if *key == k));
                if let Some((prev, _)) = writers.insert(wkey(k, value), (t as u32, last)) {
                    return Err(ReadError::at(
                        h.txns[t].line,
                        Some("value"),
                        format!(
                            "{} is written to key {} twice (lines {} and {}); rw-register needs each written value unique per key",
                            val(h, value),
                            key(h, k),
                            h.txns[prev as usize].line,
                            h.txns[t].line
                        ),
                    ));
                }
                by_key[k as usize].push(t as u32);
            }
        }
    }
    let status = |t: u32| h.txns[t as usize].status;
    let mut happened: Vec<bool> = h.txns.iter().map(|t| t.status == Status::Ok).collect();
    // External reads per (key, value); nil reads per key.
    let mut readers: HashMap<u64, Vec<u32>, MixBuild> = HashMap::default();
    let mut nil_readers: Vec<Vec<u32>> = vec![Vec::new(); h.keys.len()];
    for t in 0..n {
        if h.txns[t].status != Status::Ok {
            continue;
        }
        internal(h, inf, t);
        for (k, r, _) in first_reads(h, t) {
            let Some(v) = r else {
                nil_readers[k as usize].push(t as u32);
                continue;
            };
            match writers.get(&wkey(k, v)) {
                None => inf.report_one(h, "garbage-read", t, |r| {
                    format!(
                        "{r} read key {} = {}, but no transaction wrote {} to key {}",
                        key(h, k),
                        val(h, v),
                        val(h, v),
                        key(h, k)
                    )
                }),
                Some(&(w, _)) if status(w) == Status::Fail => inf.report("G1a", || {
                    let mut names = Namer::new(h);
                    let r = names.name(t);
                    let a = names.name(w as usize);
                    names.anomaly(
                        "G1a",
                        vec![
                            format!("{a} wrote {} to key {} and aborted", val(h, v), key(h, k)),
                            format!("{r} committed after reading it: an aborted read"),
                        ],
                    )
                }),
                Some(&(w, last)) if w as usize != t => {
                    happened[w as usize] = true;
                    readers.entry(wkey(k, v)).or_default().push(t as u32);
                    if !last {
                        inf.report("G1b", || {
                            let mut names = Namer::new(h);
                            let a = names.name(w as usize);
                            let r = names.name(t);
                            names.anomaly(
                                "G1b",
                                vec![
                                    format!(
                                        "{a} wrote {} to key {} and later overwrote it in the same transaction",
                                        val(h, v),
                                        key(h, k)
                                    ),
                                    format!("{r} read key {} = {}: an intermediate read", key(h, k), val(h, v)),
                                ],
                            )
                        });
                    }
                }
                Some(_) => {}
            }
        }
    }
    for t in 0..n {
        if !happened[t] {
            continue;
        }
        for (k, r, w) in first_reads(h, t) {
            if let Some(v) = r {
                if let Some(&(wt, _)) = writers.get(&wkey(k, v)) {
                    if wt as usize != t && happened[wt as usize] {
                        inf.edges.push((wt, t as u32, WR));
                        if w.is_some() {
                            inf.edges.push((wt, t as u32, WW));
                        }
                    }
                }
                if w.is_some() {
                    for &r2 in readers.get(&wkey(k, v)).map_or(&[][..], |v| v) {
                        if r2 as usize != t {
                            inf.edges.push((r2, t as u32, RW));
                        }
                    }
                }
            }
        }
    }
    for (k, rs) in nil_readers.iter().enumerate() {
        for &r in rs {
            for &w in &by_key[k] {
                if w != r && happened[w as usize] {
                    inf.edges.push((r, w, RW));
                }
            }
        }
    }
    if linearizable_keys {
        realtime_versions(h, inf, &by_key, &readers, &happened);
    }
    inf.happened = happened;
    Ok(RegisterFacts {
        writers,
        linearizable_keys,
    })
}

/// With each key a linearizable register (the user says so), real time orders
/// versions too: a write that completed before another began is the earlier
/// version; a read that completed before a write began saw an earlier version
/// than that write's; a write that completed before a read began is no later
/// than the version the read saw. Each order adds `ww` between the writers and
/// `rw` from the earlier version's readers to the later writer.
fn realtime_versions(
    h: &TxnHistory,
    inf: &mut Inference,
    by_key: &[Vec<u32>],
    readers: &HashMap<u64, Vec<u32>, MixBuild>,
    happened: &[bool],
) {
    let txn = |t: u32| &h.txns[t as usize];
    let ok = |t: u32| txn(t).status == Status::Ok;
    for (k, ws) in by_key.iter().enumerate() {
        let k = k as u32;
        // Each writer that took effect, with its visible (last) value for k.
        let mut versions: Vec<(u32, u32)> = Vec::new();
        for &t in ws {
            if !happened[t as usize] || versions.iter().any(|v| v.0 == t) {
                continue;
            }
            let last = h.mops_of(t as usize).iter().rev().find_map(|m| match *m {
                Mop::Write { key, value } if key == k => Some(value),
                _ => None,
            });
            if let Some(v) = last {
                versions.push((t, v));
            }
        }
        let readers_of = |v: u32| readers.get(&wkey(k, v)).map_or(&[][..], |r| r.as_slice());
        let before = |a: u32, va: u32, b: u32, edges: &mut Vec<(u32, u32, u8)>| {
            if a != b {
                edges.push((a, b, WW));
                edges.extend(
                    readers_of(va)
                        .iter()
                        .filter(|&&r| r != b)
                        .map(|&r| (r, b, RW)),
                );
            }
        };
        for &(a, va) in &versions {
            for &(b, _) in &versions {
                if a != b && ok(a) && txn(a).ret < txn(b).call {
                    before(a, va, b, &mut inf.edges);
                }
            }
            for &r in readers_of(va) {
                for &(b, vb) in &versions {
                    if b == a || b == r {
                        continue;
                    }
                    if txn(r).ret < txn(b).call {
                        before(a, va, b, &mut inf.edges);
                    } else if ok(b) && txn(b).ret < txn(r).call {
                        before(b, vb, a, &mut inf.edges);
                    }
                }
            }
        }
    }
}

/// A read after the txn's own write sees that write; two reads with no write
/// between agree.
fn internal(h: &TxnHistory, inf: &mut Inference, t: usize) {
    let mut last: Vec<(u32, Option<u32>, bool)> = Vec::new(); // (key, value, from own write)
    for m in h.mops_of(t) {
        let k = m.key();
        let now = match *m {
            Mop::Write { value, .. } => (Some(value), true),
            Mop::Read { .. } => (h.elems(m).first().copied(), false),
        };
        match last.iter_mut().find(|e| e.0 == k) {
            Some(e) => {
                if matches!(m, Mop::Read { .. }) && e.1 != now.0 {
                    let show = |v: Option<u32>| v.map_or("nil".to_string(), |v| val(h, v));
                    let (expected, got) = (show(e.1), show(now.0));
                    let why = if e.2 {
                        "its own write"
                    } else {
                        "its earlier read"
                    };
                    inf.report_one(h, "internal", t, |r| {
                        format!(
                            "{r} read key {} = {got}, but {why} says {expected}",
                            key(h, k)
                        )
                    });
                }
                e.1 = now.0;
                e.2 = now.1;
            }
            None => last.push((k, now.0, now.1)),
        }
    }
}

impl Facts for RegisterFacts {
    fn why(&self, h: &TxnHistory, names: &mut Namer, a: usize, b: usize, kind: u8) -> String {
        let (an, bn) = (names.name(a), names.name(b));
        let writer = |k: u32, v: u32| self.writers.get(&wkey(k, v)).map(|&(w, _)| w as usize);
        match kind {
            WR | WW => {
                for (k, r, w) in first_reads(h, b) {
                    if let Some(v) = r.filter(|&v| writer(k, v) == Some(a)) {
                        return match (kind, w) {
                            (WW, Some(w)) => format!(
                                "{bn} read key {} = {} ({an}'s write) and then wrote {}: {an} < {bn}",
                                key(h, k),
                                val(h, v),
                                val(h, w)
                            ),
                            _ => format!(
                                "{bn} read key {} = {}, which {an} wrote: {an} < {bn}",
                                key(h, k),
                                val(h, v)
                            ),
                        };
                    }
                }
            }
            RW => {
                for (k, r, _) in first_reads(h, a) {
                    match r {
                        None => {
                            if let Some(w) = h.mops_of(b).iter().find_map(|m| match *m {
                                Mop::Write { key, value } if key == k => Some(value),
                                _ => None,
                            }) {
                                return format!(
                                    "{an} read key {} = nil, the initial state, and {bn} wrote {} to it: {an} < {bn}",
                                    key(h, k),
                                    val(h, w)
                                );
                            }
                        }
                        Some(v) => {
                            if let Some((_, _, Some(w))) = first_reads(h, b)
                                .into_iter()
                                .find(|&(k2, r2, _)| k2 == k && r2 == Some(v))
                            {
                                return format!(
                                    "{an} read key {} = {}, and {bn} read the same value and overwrote it with {}: {an} < {bn}",
                                    key(h, k),
                                    val(h, v),
                                    val(h, w)
                                );
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        if self.linearizable_keys {
            return format!(
                "{an} < {bn} ({}): real time orders their versions of a key, which is a linearizable register",
                super::explain::kind_name(kind)
            );
        }
        format!("{an} < {bn} ({})", super::explain::kind_name(kind))
    }
}
