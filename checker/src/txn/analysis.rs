//! List-append inference (version orders, the anomalies visible without a cycle,
//! dependency edges), the session and real-time edges every kind shares, and
//! [`check`], which ties inference, cycle search and the consistency lattice.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::json;

use super::consistency::{self, ConsistencyModel};
use super::explain::{key, list, val, Anomaly, Namer, PROCESS, REALTIME, RW, WR, WW};
use super::{graph, register, Kind, MixBuild, Mop, Status, TxnHistory};
use crate::error::ReadError;
use crate::linearizability::FxBuild;
use crate::{CheckerResult, Validity};

/// Examples kept per anomaly kind (all are counted).
pub(crate) const EXAMPLES: usize = 8;

/// Options of a transactional check.
#[derive(Clone, Debug)]
pub struct TxnOptions {
    /// The model the verdict is about.
    pub consistency: ConsistencyModel,
    /// Edge visits allowed per cycle class and strongly connected component; a
    /// class whose search runs out is reported `unknown`, never absent.
    pub budget: u64,
    /// Rw-register: each key is a linearizable register, so real time orders
    /// its versions (Elle's `linearizable-keys?`). Unsound if it is not.
    pub linearizable_keys: bool,
}

impl Default for TxnOptions {
    fn default() -> Self {
        TxnOptions {
            consistency: ConsistencyModel::StrictSerializable,
            budget: 20_000_000,
            linearizable_keys: false,
        }
    }
}

/// What inference found: anomalies seen without a cycle, and the graph's edges.
#[derive(Default)]
pub(crate) struct Inference {
    pub anomalies: Vec<Anomaly>,
    pub counts: BTreeMap<String, u64>,
    /// (from, to, kind); nodes are txn indices, then virtual real-time nodes.
    pub edges: Vec<(u32, u32, u8)>,
    /// Transactions known to have taken effect (committed, or indeterminate with an observed write).
    pub happened: Vec<bool>,
    /// Nodes in all, virtual ones included.
    pub nodes: usize,
}

impl Inference {
    pub(crate) fn report(&mut self, kind: &str, make: impl FnOnce() -> Anomaly) {
        let n = self.counts.entry(kind.to_string()).or_insert(0);
        *n += 1;
        if *n as usize <= EXAMPLES {
            self.anomalies.push(make());
        }
    }
}

impl Inference {
    /// Reports an anomaly about one transaction, argued in one sentence that
    /// `say` writes given the transaction's name.
    pub(crate) fn report_one(
        &mut self,
        h: &TxnHistory,
        kind: &str,
        t: usize,
        say: impl FnOnce(&str) -> String,
    ) {
        self.report(kind, || {
            let mut names = Namer::new(h);
            let name = names.name(t);
            let step = say(&name);
            names.anomaly(kind, vec![step])
        });
    }
}

/// Says why a data edge holds, in words; each kind of history knows its own.
pub(crate) trait Facts {
    fn why(&self, h: &TxnHistory, names: &mut Namer, from: usize, to: usize, kind: u8) -> String;
}

/// Who appended a value to a key.
#[derive(Clone, Copy)]
struct Writer {
    txn: u32,
    /// The txn's last append to that key.
    last: bool,
    /// Position in the key's inferred order, `u32::MAX` if no read saw it.
    pos: u32,
    /// The append's index among its txn's micro-ops.
    idx: u32,
    /// Whether the txn appends to that key more than once.
    multi: bool,
}

const UNSEEN: u32 = u32::MAX;
const NONE: u32 = u32::MAX;

fn wkey(k: u32, v: u32) -> u64 {
    (u64::from(k) << 32) | u64::from(v)
}

/// List-append facts: each key's order and who wrote what.
pub(crate) struct AppendFacts {
    orders: Vec<Vec<u32>>,
    /// The writer of each element of each order (`NONE` if no txn wrote it).
    owners: Vec<Vec<u32>>,
    writers: HashMap<u64, Writer, MixBuild>,
    unobserved: Vec<Vec<u32>>,
    happened: Vec<bool>,
}

impl AppendFacts {
    /// The writer of element `i` of key `k`'s order, if it took effect.
    fn node_writer(&self, k: u32, i: usize) -> Option<u32> {
        let w = self.owners[k as usize][i];
        (w != NONE && self.happened[w as usize]).then_some(w)
    }

    /// The nearest element before `end` written by a txn other than `not`, and its writer.
    fn writer_before(&self, k: u32, end: usize, not: u32) -> Option<(usize, u32)> {
        (0..end)
            .rev()
            .find_map(|i| self.node_writer(k, i).filter(|&w| w != not).map(|w| (i, w)))
    }

    /// The first element at or after `from` with a writer that took effect.
    fn writer_from(&self, k: u32, from: usize) -> Option<(usize, u32)> {
        (from..self.orders[k as usize].len()).find_map(|i| self.node_writer(k, i).map(|w| (i, w)))
    }
}

/// Infers list-append orders, reports what needs no cycle, and adds the data edges.
pub(crate) fn list_append(h: &TxnHistory, inf: &mut Inference) -> Result<AppendFacts, ReadError> {
    let n = h.txns.len();
    let mut writers: HashMap<u64, Writer, MixBuild> = HashMap::default();
    writers.reserve(h.mops.len());
    let mut reads: Vec<Vec<(u32, u32)>> = vec![Vec::new(); h.keys.len()];
    for t in 0..n {
        let (a, _) = h.txns[t].mops;
        let ms = h.mops_of(t);
        for (j, m) in ms.iter().enumerate() {
            match *m {
                Mop::Write { key: k, value } => {
                    let same = |m2: &Mop| matches!(m2, Mop::Write { key, .. } if *key == k);
                    let last = !ms[j + 1..].iter().any(same);
                    let w = Writer {
                        txn: t as u32,
                        last,
                        pos: UNSEEN,
                        idx: j as u32,
                        multi: !last || ms[..j].iter().any(same),
                    };
                    if let Some(prev) = writers.insert(wkey(k, value), w) {
                        let first = &h.txns[prev.txn as usize];
                        return Err(ReadError::at(
                            h.txns[t].line,
                            Some("value"),
                            format!(
                                "{} is appended to key {} twice (lines {} and {}); list-append needs each appended value unique per key",
                                val(h, value),
                                key(h, k),
                                first.line,
                                h.txns[t].line
                            ),
                        ));
                    }
                }
                Mop::Read { key: k, known, .. } => {
                    if known && h.txns[t].status == Status::Ok {
                        reads[k as usize].push((t as u32, a + j as u32));
                    }
                }
            }
        }
    }

    // Each key's order is its longest read; every other read must be a prefix of it.
    let mut orders: Vec<Vec<u32>> = Vec::with_capacity(h.keys.len());
    let mut owners: Vec<Vec<u32>> = Vec::with_capacity(h.keys.len());
    let mut compatible: Vec<Vec<bool>> = Vec::with_capacity(h.keys.len());
    for (k, rs) in reads.iter().enumerate() {
        let k = k as u32;
        let longest = rs
            .iter()
            .max_by_key(|&&(_, m)| (h.elems(&h.mops[m as usize]).len(), std::cmp::Reverse(m)))
            .copied();
        let full: &[u32] = longest.map_or(&[], |(_, m)| h.elems(&h.mops[m as usize]));
        // Cut the order at the first duplicate: past it no order can be inferred.
        let mut seen_garbage = HashSet::new();
        let mut cut = full.len();
        // Each element's writer (NONE for garbage), and the appends of txns that
        // append to this key more than once: (position, txn, index in the txn).
        let mut owner: Vec<u32> = Vec::with_capacity(full.len());
        let mut multi: Vec<(usize, u32, u32)> = Vec::new();
        for (i, &e) in full.iter().enumerate() {
            let dup = match writers.get_mut(&wkey(k, e)) {
                Some(w) if w.pos != UNSEEN => true,
                Some(w) => {
                    w.pos = i as u32;
                    owner.push(w.txn);
                    if w.multi {
                        multi.push((i, w.txn, w.idx));
                    }
                    false
                }
                None if seen_garbage.insert(e) => {
                    owner.push(NONE);
                    false
                }
                None => true,
            };
            if dup {
                cut = i;
                let (t, _) = longest.expect("a non-empty order comes from a read");
                let first = full.iter().position(|&x| x == e).unwrap_or(0);
                inf.report_one(h, "duplicate-elements", t as usize, |r| format!(
                            "{r} read key {} = {}, in which {} appears twice (positions {} and {}); each value is appended once, so a list holds it once",
                            key(h, k),
                            list(h, full),
                            val(h, e),
                            first,
                            i
                        ));
                break;
            }
        }
        for &e in &full[cut..] {
            if let Some(w) = writers.get_mut(&wkey(k, e)) {
                if w.pos == UNSEEN {
                    w.pos = cut as u32; // seen, but past the cut: not unobserved
                }
            }
        }
        let mut ok = Vec::with_capacity(rs.len());
        for &(t, m) in rs {
            let elems = h.elems(&h.mops[m as usize]);
            let prefix = elems.len() <= full.len() && full[..elems.len()] == *elems;
            ok.push(prefix && elems.len() <= cut);
            if !prefix {
                let (lt, _) = longest.expect("a read exists");
                inf.report("incompatible-order", || {
                    let mut names = Namer::new(h);
                    let a = names.name(t as usize);
                    let b = names.name(lt as usize);
                    let at = elems
                        .iter()
                        .zip(full)
                        .position(|(x, y)| x != y)
                        .unwrap_or(0);
                    names.anomaly(
                        "incompatible-order",
                        vec![
                            format!("{a} read key {} = {}", key(h, k), list(h, elems)),
                            format!("{b} read key {} = {}", key(h, k), list(h, full)),
                            format!(
                                "they differ at position {at}, so neither is a prefix of the other; appends only add to the end, so every read of a key is a prefix of one list"
                            ),
                        ],
                    )
                });
            }
        }
        // A txn's own appends must appear in the order it made them.
        let mut last: Vec<(u32, u32, u32)> = Vec::new(); // (txn, idx, value)
        for &(i, txn, idx) in &multi {
            let e = full[i];
            match last.iter_mut().find(|m| m.0 == txn) {
                Some(m) if m.1 > idx => {
                    let (t, earlier) = (txn, m.2);
                    inf.report_one(h, "incompatible-order", t as usize, |a| format!(
                                "{a} appended {} before {} to key {}, but the key's order {} has {} first",
                                val(h, e),
                                val(h, earlier),
                                key(h, k),
                                list(h, full),
                                val(h, earlier)
                            ));
                    m.1 = idx;
                    m.2 = e;
                }
                Some(m) => {
                    m.1 = idx;
                    m.2 = e;
                }
                None => last.push((txn, idx, e)),
            }
        }
        orders.push(full[..cut].to_vec());
        owners.push(owner);
        compatible.push(ok);
    }

    // A txn took effect if it committed, or if a read saw one of its appends.
    let mut happened: Vec<bool> = h.txns.iter().map(|t| t.status == Status::Ok).collect();
    for w in writers.values() {
        if w.pos != UNSEEN && h.txns[w.txn as usize].status == Status::Info {
            happened[w.txn as usize] = true;
        }
    }
    let mut unobserved: Vec<Vec<u32>> = vec![Vec::new(); h.keys.len()];
    for (&kv, w) in &writers {
        if w.pos == UNSEEN && happened[w.txn as usize] {
            unobserved[(kv >> 32) as usize].push(w.txn);
        }
    }
    for u in &mut unobserved {
        u.sort_unstable();
    }
    let facts = AppendFacts {
        orders,
        owners,
        writers,
        unobserved,
        happened,
    };

    read_anomalies(h, inf, &facts, &reads, &compatible);
    internal(h, inf);
    append_edges(inf, &facts, &reads, &compatible, h);
    inf.happened = facts.happened.clone();
    Ok(facts)
}

/// Aborted, garbage and intermediate reads, and dirty updates.
fn read_anomalies(
    h: &TxnHistory,
    inf: &mut Inference,
    f: &AppendFacts,
    reads: &[Vec<(u32, u32)>],
    compatible: &[Vec<bool>],
) {
    let status = |t: u32| h.txns[t as usize].status;
    for (k, rs) in reads.iter().enumerate() {
        let k = k as u32;
        // A read that is a prefix of the order has a bad element only past the
        // order's first one: look each element up once per key, not per read.
        let first_bad = f.owners[k as usize]
            .iter()
            .position(|&w| w == NONE || status(w) == Status::Fail)
            .unwrap_or(usize::MAX);
        for (&(t, m), &prefix) in rs.iter().zip(&compatible[k as usize]) {
            let elems = h.elems(&h.mops[m as usize]);
            let scan = if prefix && elems.len() <= first_bad {
                &[][..]
            } else if prefix {
                &elems[first_bad..=first_bad]
            } else {
                elems
            };
            // Only the first bad element of a read is reported.
            for &e in scan {
                match f.writers.get(&wkey(k, e)) {
                    None => {
                        inf.report_one(h, "garbage-read", t as usize, |r| {
                            format!(
                                "{r} read key {} = {}, but no transaction appended {} to key {}",
                                key(h, k),
                                list(h, elems),
                                val(h, e),
                                key(h, k)
                            )
                        });
                        break;
                    }
                    Some(w) if status(w.txn) == Status::Fail => {
                        inf.report("G1a", || {
                            let mut names = Namer::new(h);
                            let r = names.name(t as usize);
                            let a = names.name(w.txn as usize);
                            names.anomaly(
                                "G1a",
                                vec![
                                    format!("{a} appended {} to key {} and aborted", val(h, e), key(h, k)),
                                    format!(
                                        "{r} committed after reading key {} = {}, which holds {}: an aborted read",
                                        key(h, k),
                                        list(h, elems),
                                        val(h, e)
                                    ),
                                ],
                            )
                        });
                        break;
                    }
                    Some(_) => {}
                }
            }
            // An intermediate read ends at a writer's non-final append.
            if let Some(&e) = elems
                .iter()
                .rev()
                .find(|&&e| f.writers.get(&wkey(k, e)).is_none_or(|w| w.txn != t))
            {
                if let Some(w) = f.writers.get(&wkey(k, e)) {
                    let own_tail = elems.last() != Some(&e);
                    if !w.last && status(w.txn) != Status::Fail && !own_tail {
                        let later = h
                            .mops_of(w.txn as usize)
                            .iter()
                            .filter_map(|m| match *m {
                                Mop::Write { key: k2, value } if k2 == k => Some(value),
                                _ => None,
                            })
                            .next_back()
                            .unwrap_or(e);
                        inf.report("G1b", || {
                            let mut names = Namer::new(h);
                            let a = names.name(w.txn as usize);
                            let r = names.name(t as usize);
                            names.anomaly(
                                "G1b",
                                vec![
                                    format!(
                                        "{a} appended {} and later {} to key {}",
                                        val(h, e),
                                        val(h, later),
                                        key(h, k)
                                    ),
                                    format!(
                                        "{r} read key {} = {}, which ends at {a}'s intermediate {}: an intermediate read",
                                        key(h, k),
                                        list(h, elems),
                                        val(h, e)
                                    ),
                                ],
                            )
                        });
                    }
                }
            }
        }
        // A committed append on top of an aborted one.
        let order = &f.orders[k as usize];
        if let Some(i) = f.owners[k as usize]
            .iter()
            .position(|&w| w != NONE && status(w) == Status::Fail)
        {
            if let Some(j) = (i + 1..order.len()).find(|&j| f.node_writer(k, j).is_some()) {
                let a = f.owners[k as usize][i];
                let b = f.node_writer(k, j).expect("found above");
                inf.report("dirty-update", || {
                    let mut names = Namer::new(h);
                    let an = names.name(a as usize);
                    let bn = names.name(b as usize);
                    names.anomaly(
                        "dirty-update",
                        vec![
                            format!("{an} appended {} to key {} and aborted", val(h, order[i]), key(h, k)),
                            format!(
                                "{bn} appended {} after it (key {}'s order {}): a committed write on top of an aborted one",
                                val(h, order[j]),
                                key(h, k),
                                list(h, &order[..=j])
                            ),
                        ],
                    )
                });
            }
        }
    }
}

/// A txn's reads must agree with its own earlier reads and appends.
fn internal(h: &TxnHistory, inf: &mut Inference) {
    // (key, what an earlier read showed if any, own appends since)
    let mut state: Vec<(u32, Option<Vec<u32>>, Vec<u32>)> = Vec::new();
    for t in 0..h.txns.len() {
        if h.txns[t].status != Status::Ok {
            continue;
        }
        let ms = h.mops_of(t);
        if ms.len() < 2 {
            continue;
        }
        state.clear();
        for (j, m) in ms.iter().enumerate() {
            let k = m.key();
            let i = match state.iter().position(|s| s.0 == k) {
                Some(i) => i,
                None => {
                    state.push((k, None, Vec::new()));
                    state.len() - 1
                }
            };
            match *m {
                Mop::Write { value, .. } => state[i].2.push(value),
                Mop::Read { .. } => {
                    let got = h.elems(m);
                    let (_, before, own) = &state[i];
                    let fine = match before {
                        Some(b) => {
                            got.len() == b.len() + own.len()
                                && got[..b.len()] == **b
                                && got[b.len()..] == **own
                        }
                        None => got.ends_with(own),
                    };
                    // Nor may it see an append the txn makes only later.
                    let future = ms[j + 1..].iter().find_map(|m2| match *m2 {
                        Mop::Write { key, value } if key == k && got.contains(&value) => {
                            Some(value)
                        }
                        _ => None,
                    });
                    if let Some(v) = future {
                        inf.report_one(h, "internal", t, |r| format!(
                                    "{r} read key {} = {}, which holds {}, an append {r} makes only later",
                                    key(h, k),
                                    list(h, got),
                                    val(h, v)
                                ));
                    }
                    if !fine {
                        let expected = match before {
                            Some(b) => format!(
                                "{} (what it read before, then its own appends)",
                                list(h, &[b.as_slice(), own].concat())
                            ),
                            None => format!("a list ending with its own appends {}", list(h, own)),
                        };
                        inf.report_one(h, "internal", t, |r| format!(
                                    "{r} read key {} = {}, but by its own earlier micro-ops it should see {expected}",
                                    key(h, k),
                                    list(h, got)
                                ));
                    }
                    state[i].1 = Some(got.to_vec());
                    state[i].2.clear();
                }
            }
        }
    }
}

/// ww along each key's order, wr from the last writer a read saw, rw to the next writer it missed.
fn append_edges(
    inf: &mut Inference,
    f: &AppendFacts,
    reads: &[Vec<(u32, u32)>],
    compatible: &[Vec<bool>],
    h: &TxnHistory,
) {
    for (k, order) in f.orders.iter().enumerate() {
        let k = k as u32;
        let mut prev: Option<u32> = None;
        for i in 0..order.len() {
            if let Some(w) = f.node_writer(k, i) {
                if let Some(p) = prev.filter(|&p| p != w) {
                    inf.edges.push((p, w, WW));
                }
                prev = Some(w);
            }
        }
        for &u in &f.unobserved[k as usize] {
            if let Some(p) = prev.filter(|&p| p != u) {
                inf.edges.push((p, u, WW));
            }
        }
        for (&(t, m), &ok) in reads[k as usize].iter().zip(&compatible[k as usize]) {
            if !ok {
                continue;
            }
            let len = h.elems(&h.mops[m as usize]).len();
            if let Some((_, w)) = f.writer_before(k, len, t) {
                inf.edges.push((w, t, WR));
            }
            match f.writer_from(k, len) {
                Some((_, w)) => {
                    if w != t {
                        inf.edges.push((t, w, RW));
                    }
                }
                None => {
                    for &u in &f.unobserved[k as usize] {
                        if u != t {
                            inf.edges.push((t, u, RW));
                        }
                    }
                }
            }
        }
    }
}

impl Facts for AppendFacts {
    fn why(&self, h: &TxnHistory, names: &mut Namer, a: usize, b: usize, kind: u8) -> String {
        let (an, bn) = (names.name(a), names.name(b));
        let writes = |t: usize| {
            h.mops_of(t).iter().filter_map(|m| match *m {
                Mop::Write { key, value } => Some((key, value)),
                _ => None,
            })
        };
        let reads = |t: usize| {
            h.mops_of(t)
                .iter()
                .filter(|m| matches!(m, Mop::Read { known: true, .. }))
        };
        match kind {
            WW => {
                for (k, y) in writes(b) {
                    let Some(w) = self.writers.get(&wkey(k, y)) else {
                        continue;
                    };
                    let end = if w.pos == UNSEEN {
                        self.orders[k as usize].len()
                    } else {
                        w.pos as usize
                    };
                    if let Some((i, p)) = self.writer_before(k, end, b as u32) {
                        if p as usize == a {
                            let x = self.orders[k as usize][i];
                            return if w.pos == UNSEEN {
                                format!(
                                    "{an} appended {} to key {}; {bn}'s append of {} is in no read, so it comes after every element read, the last of which {an} wrote: {an} < {bn}",
                                    val(h, x), key(h, k), val(h, y)
                                )
                            } else {
                                format!(
                                    "{an} appended {} to key {}, and {bn} appended {} right after it (the key's order is {}): {an} < {bn}",
                                    val(h, x), key(h, k), val(h, y), list(h, &self.orders[k as usize][..=w.pos as usize])
                                )
                            };
                        }
                    }
                }
            }
            WR => {
                for m in reads(b) {
                    let k = m.key();
                    let len = h.elems(m).len();
                    if let Some((i, w)) =
                        self.writer_before(k, len.min(self.orders[k as usize].len()), b as u32)
                    {
                        if w as usize == a {
                            return format!(
                                "{bn} read key {} = {}, which holds {an}'s append of {}: {an} < {bn}",
                                key(h, k), list(h, h.elems(m)), val(h, self.orders[k as usize][i])
                            );
                        }
                    }
                }
            }
            RW => {
                for m in reads(a) {
                    let k = m.key();
                    let len = h.elems(m).len();
                    match self.writer_from(k, len) {
                        Some((i, w)) if w as usize == b => {
                            return format!(
                                "{an} read key {} = {}, without {bn}'s append of {}, which comes next in the key's order: {an} < {bn}",
                                key(h, k), list(h, h.elems(m)), val(h, self.orders[k as usize][i])
                            );
                        }
                        None if self.unobserved[k as usize]
                            .binary_search(&(b as u32))
                            .is_ok() =>
                        {
                            let y = writes(b).find(|&(k2, _)| k2 == k).map_or(0, |(_, y)| y);
                            return format!(
                                "{an} read key {} = {}, without {bn}'s committed append of {} (which no read saw): {an} < {bn}",
                                key(h, k), list(h, h.elems(m)), val(h, y)
                            );
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        format!("{an} < {bn} ({})", super::explain::kind_name(kind))
    }
}

/// Process order (a session's committed txn before its next one) and real-time
/// order (a completion before an invocation), the latter through virtual nodes so
/// it costs O(n) edges: each run of completions gets a node that points to the
/// previous one and to every later invocation up to the next run.
pub(crate) fn session_edges(h: &TxnHistory, inf: &mut Inference) {
    let mut last_ok: HashMap<i64, u32, FxBuild> = HashMap::default();
    for (t, txn) in h.txns.iter().enumerate() {
        if !inf.happened[t] {
            continue;
        }
        if let Some(&p) = last_ok.get(&txn.process) {
            inf.edges.push((p, t as u32, PROCESS));
        }
        if txn.status == Status::Ok {
            last_ok.insert(txn.process, t as u32);
        }
    }
    let mut rets: Vec<(u64, u32)> = h
        .txns
        .iter()
        .enumerate()
        .filter(|&(t, x)| inf.happened[t] && x.status == Status::Ok)
        .map(|(t, x)| (x.ret, t as u32))
        .collect();
    rets.sort_unstable();
    let mut next = h.txns.len() as u32;
    let mut current: Option<u32> = None;
    let mut r = 0;
    for (t, txn) in h.txns.iter().enumerate() {
        if !inf.happened[t] {
            continue;
        }
        let start = r;
        while r < rets.len() && rets[r].0 < txn.call {
            r += 1;
        }
        if r > start {
            let v = next;
            next += 1;
            for &(_, c) in &rets[start..r] {
                inf.edges.push((c, v, REALTIME));
            }
            if let Some(c) = current {
                inf.edges.push((c, v, REALTIME));
            }
            current = Some(v);
        }
        if let Some(v) = current {
            inf.edges.push((v, t as u32, REALTIME));
        }
    }
    inf.nodes = next as usize;
}

/// Checks a transactional history against `options.consistency`.
pub fn check(h: &TxnHistory, options: &TxnOptions) -> Result<CheckerResult, ReadError> {
    let mut inf = Inference::default();
    let facts: Box<dyn Facts> = match h.kind {
        Kind::ListAppend => Box::new(list_append(h, &mut inf)?),
        Kind::RwRegister => Box::new(register::infer(h, &mut inf, options.linearizable_keys)?),
    };
    session_edges(h, &mut inf);
    let cycles = graph::search(h, &inf, facts.as_ref(), options.budget);
    for a in cycles.anomalies {
        let kind = a.kind.clone();
        inf.report(&kind, || a);
    }
    let found: Vec<String> = inf.counts.keys().cloned().collect();
    let verdict = consistency::judge(options.consistency, &found, &cycles.unknown);
    let committed = h.txns.iter().filter(|t| t.status == Status::Ok).count();
    let info = h.txns.iter().filter(|t| t.status == Status::Info).count();
    let aborted = h.txns.len() - committed - info;
    let summary = match verdict.valid {
        Validity::Valid => format!(
            "{} txns ({committed} ok, {info} info, {aborted} fail): no anomaly that {} forbids",
            h.txns.len(),
            options.consistency.name()
        ),
        Validity::Invalid => format!(
            "{} txns: {} ({}); not {}",
            h.txns.len(),
            found.join(", "),
            found
                .iter()
                .map(|k| format!("{} {k}", inf.counts[k]))
                .collect::<Vec<_>>()
                .join(", "),
            verdict.not.join(", ")
        ),
        Validity::Unknown => format!(
            "{} txns: the cycle search ran out of budget on {}; {} undecided",
            h.txns.len(),
            cycles.unknown.join(", "),
            options.consistency.name()
        ),
    };
    let mut by_kind: BTreeMap<String, Vec<&Anomaly>> = BTreeMap::new();
    for a in &inf.anomalies {
        by_kind.entry(a.kind.clone()).or_default().push(a);
    }
    let details = json!({
        "model": h.kind.name(),
        "consistency": options.consistency.name(),
        "txns": h.txns.len(),
        "ok": committed,
        "info": info,
        "fail": aborted,
        "edges": inf.edges.len(),
        "anomaly_types": found,
        "anomaly_counts": inf.counts,
        "anomalies": by_kind,
        "not": verdict.not,
        "also_not": verdict.also_not,
        "unknown": cycles.unknown,
    });
    Ok(CheckerResult::new(verdict.valid, summary, details))
}
