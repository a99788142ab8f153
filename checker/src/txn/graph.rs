//! The dependency graph: strongly connected components, then, inside each, a
//! search for a cycle of each anomaly class (G0, G1c, G-single, G-nonadjacent,
//! G2-item), first over data edges, then with process and then real-time edges
//! added. Each search has a budget of edge visits; one that runs out names its
//! class as unknown.

use std::collections::BTreeSet;

use rayon::slice::ParallelSliceMut;

use super::analysis::{Facts, Inference};
use super::explain::{kind_name, Anomaly, EdgeView, Namer, PROCESS, REALTIME, RW, WR, WW};
use super::TxnHistory;

const NONE: u32 = u32::MAX;

fn bit(kind: u8) -> u8 {
    1 << kind
}

const DATA: u8 = (1 << WW) | (1 << WR) | (1 << RW);
const LEVELS: [(u8, &str); 3] = [
    (0, ""),
    (1 << PROCESS, "-process"),
    ((1 << PROCESS) | (1 << REALTIME), "-realtime"),
];

/// Adjacency in compressed rows.
struct Graph {
    off: Vec<u32>,
    dst: Vec<u32>,
    kind: Vec<u8>,
}

impl Graph {
    fn new(n: usize, edges: &mut Vec<(u32, u32, u8)>) -> Graph {
        edges.par_sort_unstable();
        edges.dedup();
        let mut off = vec![0u32; n + 1];
        for &(s, _, _) in edges.iter() {
            off[s as usize + 1] += 1;
        }
        for i in 0..n {
            off[i + 1] += off[i];
        }
        Graph {
            off,
            dst: edges.iter().map(|e| e.1).collect(),
            kind: edges.iter().map(|e| e.2).collect(),
        }
    }

    fn out(&self, v: u32) -> impl Iterator<Item = (u32, u8)> + '_ {
        let (a, b) = (
            self.off[v as usize] as usize,
            self.off[v as usize + 1] as usize,
        );
        self.dst[a..b]
            .iter()
            .copied()
            .zip(self.kind[a..b].iter().copied())
    }
}

/// Reusable per-node arrays: membership of the current component, BFS parents.
struct Scratch {
    /// Component id each node belongs to in the current search.
    member: Vec<u32>,
    next_member: u32,
    stamp: Vec<u32>,
    generation: u32,
    parent: Vec<u32>,
    pkind: Vec<u8>,
}

impl Scratch {
    fn fresh(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamp.iter_mut().for_each(|s| *s = 0);
            self.generation = 1;
        }
    }

    /// Marks `nodes` as one component and returns its id.
    fn enter(&mut self, nodes: &[u32]) -> u32 {
        self.next_member += 1;
        for &v in nodes {
            self.member[v as usize] = self.next_member;
        }
        self.next_member
    }
}

/// Strongly connected components with more than one node of the subgraph of
/// `nodes` (marked `member == id`) using edges of kinds in `mask` (iterative Tarjan).
fn sccs(g: &Graph, nodes: &[u32], id: u32, mask: u8, s: &Scratch) -> Vec<Vec<u32>> {
    // The whole graph is indexed by node id; a component through a map.
    let whole =
        nodes.len() + 1 == g.off.len() && nodes.iter().enumerate().all(|(i, &v)| v as usize == i);
    let mut map = std::collections::HashMap::new();
    if !whole {
        map.reserve(nodes.len());
        for (i, &v) in nodes.iter().enumerate() {
            map.insert(v, i as u32);
        }
    }
    let local = |w: u32| if whole { w } else { map[&w] };
    let n = nodes.len();
    let mut index = vec![NONE; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut counter = 0u32;
    let mut calls: Vec<(u32, u32)> = Vec::new(); // (local node, next edge offset)
    for root in 0..n as u32 {
        if index[root as usize] != NONE {
            continue;
        }
        calls.push((root, g.off[nodes[root as usize] as usize]));
        index[root as usize] = counter;
        low[root as usize] = counter;
        counter += 1;
        stack.push(root);
        on_stack[root as usize] = true;
        while let Some(&mut (v, ref mut e)) = calls.last_mut() {
            let gv = nodes[v as usize];
            let end = g.off[gv as usize + 1];
            let mut pushed = false;
            while *e < end {
                let (w, k) = (g.dst[*e as usize], g.kind[*e as usize]);
                *e += 1;
                if mask & bit(k) == 0 || s.member[w as usize] != id {
                    continue;
                }
                let wl = local(w);
                if index[wl as usize] == NONE {
                    index[wl as usize] = counter;
                    low[wl as usize] = counter;
                    counter += 1;
                    stack.push(wl);
                    on_stack[wl as usize] = true;
                    calls.push((wl, g.off[w as usize]));
                    pushed = true;
                    break;
                } else if on_stack[wl as usize] {
                    low[v as usize] = low[v as usize].min(index[wl as usize]);
                }
            }
            if pushed {
                continue;
            }
            calls.pop();
            if let Some(&(p, _)) = calls.last() {
                low[p as usize] = low[p as usize].min(low[v as usize]);
            }
            if low[v as usize] == index[v as usize] {
                let mut comp = Vec::new();
                while let Some(x) = stack.pop() {
                    on_stack[x as usize] = false;
                    comp.push(nodes[x as usize]);
                    if x == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    out.push(comp);
                }
            }
        }
    }
    out
}

/// Top-level components over every edge, computed on the whole graph at once.
fn all_sccs(g: &Graph, n: usize, s: &mut Scratch) -> Vec<Vec<u32>> {
    let nodes: Vec<u32> = (0..n as u32).collect();
    let id = s.enter(&nodes);
    sccs(g, &nodes, id, 0xff, s)
}

/// Budget of edge visits for one search.
struct Budget(u64);

/// Breadth-first path `from` → `to` inside component `id` over `mask` edges:
/// the nodes after `from`, each with the kind of the edge into it.
fn path(
    g: &Graph,
    from: u32,
    to: u32,
    id: u32,
    mask: u8,
    s: &mut Scratch,
    budget: &mut Budget,
) -> Result<Option<Vec<(u32, u8)>>, ()> {
    s.fresh();
    let mut queue = std::collections::VecDeque::new();
    s.stamp[from as usize] = s.generation;
    queue.push_back(from);
    while let Some(v) = queue.pop_front() {
        for (w, k) in g.out(v) {
            if budget.0 == 0 {
                return Err(());
            }
            budget.0 -= 1;
            if mask & bit(k) == 0
                || s.member[w as usize] != id
                || s.stamp[w as usize] == s.generation
            {
                continue;
            }
            s.stamp[w as usize] = s.generation;
            s.parent[w as usize] = v;
            s.pkind[w as usize] = k;
            if w == to {
                let mut p = vec![(w, k)];
                let mut x = w;
                while s.parent[x as usize] != from {
                    x = s.parent[x as usize];
                    p.push((x, s.pkind[x as usize]));
                }
                p.reverse();
                return Ok(Some(p));
            }
            queue.push_back(w);
        }
    }
    Ok(None)
}

/// A cycle closing the rw edge `a → b` with at least one more rw edge and no two
/// rw edges adjacent: a BFS over (node, last edge was rw, another rw seen).
fn nonadjacent(
    g: &Graph,
    a: u32,
    b: u32,
    id: u32,
    mask: u8,
    s: &Scratch,
    budget: &mut Budget,
) -> Result<Option<Vec<(u32, u8)>>, ()> {
    use std::collections::HashMap;
    let state = |v: u32, last: bool, seen: bool| {
        ((v as u64) << 2) | (u64::from(last) << 1) | u64::from(seen)
    };
    let mut parent: HashMap<u64, (u64, u8)> = HashMap::new();
    let start = state(b, true, false);
    parent.insert(start, (start, RW));
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(st) = queue.pop_front() {
        let (v, last, seen) = ((st >> 2) as u32, st & 2 != 0, st & 1 != 0);
        for (w, k) in g.out(v) {
            if budget.0 == 0 {
                return Err(());
            }
            budget.0 -= 1;
            // A simple cycle passes `a` only at its end and never returns to `b`.
            if mask & bit(k) == 0 || s.member[w as usize] != id || w == b {
                continue;
            }
            let is_rw = k == RW;
            if w == a && (is_rw || !seen) {
                continue;
            }
            if is_rw && last {
                continue;
            }
            let next = state(w, is_rw, seen || is_rw);
            if parent.contains_key(&next) {
                continue;
            }
            parent.insert(next, (st, k));
            if w == a {
                let mut p = Vec::new();
                let mut x = next;
                while x != start {
                    let (px, pk) = parent[&x];
                    p.push(((x >> 2) as u32, pk));
                    x = px;
                }
                p.reverse();
                // Nodes may repeat in different states; only a simple cycle counts.
                let mut nodes: Vec<u32> = p.iter().map(|x| x.0).collect();
                nodes.sort_unstable();
                if nodes.windows(2).all(|w| w[0] != w[1]) {
                    return Ok(Some(p));
                }
                continue;
            }
            queue.push_back(next);
        }
    }
    Ok(None)
}

/// A cycle as (node, kind of the edge leaving it), starting anywhere.
type Cycle = Vec<(u32, u8)>;

/// Closes edge `a → b` (kind `k`) with `path` from `b` back to `a` (the nodes
/// after `b`, each with the kind of the edge into it; the last is `a`).
fn close(a: u32, b: u32, k: u8, path: Vec<(u32, u8)>) -> Cycle {
    let mut cycle = Vec::with_capacity(path.len() + 1);
    cycle.push((a, k));
    let mut from = b;
    for (v, into) in path {
        cycle.push((from, into));
        from = v;
    }
    cycle
}

/// The class a cycle belongs to, by its edges.
fn classify(cycle: &Cycle, real: usize) -> String {
    // Collapse runs through virtual nodes into one real-time edge.
    let kinds: Vec<u8> = collapse(cycle, real)
        .into_iter()
        .map(|(_, _, k)| k)
        .collect();
    let rws: Vec<usize> = (0..kinds.len()).filter(|&i| kinds[i] == RW).collect();
    let base = match rws.len() {
        0 if kinds.contains(&WR) => "G1c",
        0 => "G0",
        1 => "G-single",
        _ => {
            let n = kinds.len();
            if rws.iter().all(|&i| kinds[(i + 1) % n] != RW) {
                "G-nonadjacent"
            } else {
                "G2-item"
            }
        }
    };
    let suffix = if kinds.contains(&REALTIME) {
        "-realtime"
    } else if kinds.contains(&PROCESS) {
        "-process"
    } else {
        ""
    };
    format!("{base}{suffix}")
}

/// The cycle's edges between real transactions: (from, to, kind), runs through
/// virtual real-time nodes merged into one real-time edge.
fn collapse(cycle: &Cycle, real: usize) -> Vec<(u32, u32, u8)> {
    let n = cycle.len();
    let start = (0..n).find(|&i| (cycle[i].0 as usize) < real).unwrap_or(0);
    let mut out = Vec::new();
    let mut i = start;
    loop {
        let (from, mut kind) = cycle[i];
        let mut j = (i + 1) % n;
        while (cycle[j].0 as usize) >= real {
            kind = REALTIME;
            j = (j + 1) % n;
        }
        out.push((from, cycle[j].0, kind));
        i = j;
        if i == start {
            break;
        }
    }
    out
}

/// Anomalies found by the cycle search, and the classes it could not decide.
pub(crate) struct Cycles {
    pub anomalies: Vec<Anomaly>,
    pub unknown: Vec<String>,
}

/// Searches every strongly connected component for a cycle of each class.
pub(crate) fn search(h: &TxnHistory, inf: &Inference, facts: &dyn Facts, budget: u64) -> Cycles {
    let n = inf.nodes.max(h.txns.len());
    let mut edges = inf.edges.clone();
    let g = Graph::new(n, &mut edges);
    let mut s = Scratch {
        member: vec![0; n],
        next_member: 0,
        stamp: vec![0; n],
        generation: 0,
        parent: vec![NONE; n],
        pkind: vec![0; n],
    };
    let mut found = Vec::new();
    let mut unknown = BTreeSet::new();
    let real = h.txns.len();
    for comp in all_sccs(&g, n, &mut s) {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let record = |cycle: Cycle, seen: &mut BTreeSet<String>, found: &mut Vec<Anomaly>| {
            let name = classify(&cycle, real);
            if seen.insert(name.clone()) {
                found.push(explain(h, facts, &cycle, real, name));
            }
        };
        for base in ["G0", "G1c", "G-single", "G-nonadjacent", "G2-item"] {
            for (extra, suffix) in LEVELS {
                let mut b = Budget(budget);
                let outcome = match base {
                    "G0" => simple(&g, &comp, bit(WW) | extra, None, &mut s, &mut b),
                    "G1c" => simple(
                        &g,
                        &comp,
                        bit(WW) | bit(WR) | extra,
                        Some(WR),
                        &mut s,
                        &mut b,
                    ),
                    _ => through_rw(&g, &comp, base, extra, &mut s, &mut b),
                };
                match outcome {
                    Ok(Some(cycle)) => {
                        record(cycle, &mut seen, &mut found);
                        break;
                    }
                    Ok(None) => {}
                    Err(()) => {
                        unknown.insert(format!("{base}{suffix}"));
                    }
                }
            }
        }
    }
    Cycles {
        anomalies: found,
        unknown: unknown.into_iter().collect(),
    }
}

/// A cycle of `mask` edges inside `comp`, through an edge of kind `through` if given.
fn simple(
    g: &Graph,
    comp: &[u32],
    mask: u8,
    through: Option<u8>,
    s: &mut Scratch,
    b: &mut Budget,
) -> Result<Option<Cycle>, ()> {
    let id = s.enter(comp);
    for sub in sccs(g, comp, id, mask, s) {
        let sid = s.enter(&sub);
        for &x in &sub {
            for (y, k) in g.out(x) {
                if mask & bit(k) == 0 || s.member[y as usize] != sid {
                    continue;
                }
                if through.is_some_and(|t| t != k) {
                    continue;
                }
                if let Some(p) = path(g, y, x, sid, mask, s, b)? {
                    return Ok(Some(close(x, y, k, p)));
                }
            }
        }
    }
    Ok(None)
}

/// A cycle through an rw edge of the shape `base` asks for.
fn through_rw(
    g: &Graph,
    comp: &[u32],
    base: &str,
    extra: u8,
    s: &mut Scratch,
    b: &mut Budget,
) -> Result<Option<Cycle>, ()> {
    let id = s.enter(comp);
    for sub in sccs(g, comp, id, DATA | extra, s) {
        let sid = s.enter(&sub);
        for &a in &sub {
            for (w, k) in g.out(a) {
                if k != RW || s.member[w as usize] != sid {
                    continue;
                }
                let p = match base {
                    "G-single" => path(g, w, a, sid, bit(WW) | bit(WR) | extra, s, b)?,
                    "G-nonadjacent" => nonadjacent(g, a, w, sid, DATA | extra, s, b)?,
                    _ => path(g, w, a, sid, DATA | extra, s, b)?,
                };
                if let Some(p) = p {
                    return Ok(Some(close(a, w, RW, p)));
                }
            }
        }
    }
    Ok(None)
}

/// The cycle in words.
fn explain(h: &TxnHistory, facts: &dyn Facts, cycle: &Cycle, real: usize, kind: String) -> Anomaly {
    let mut names = Namer::new(h);
    let edges = collapse(cycle, real);
    let mut steps = Vec::new();
    let mut views = Vec::new();
    for &(a, b, k) in &edges {
        let (a, b) = (a as usize, b as usize);
        let (an, bn) = (names.name(a), names.name(b));
        let (ta, tb) = (&h.txns[a], &h.txns[b]);
        let done = ta.ret_line.map_or("?".to_string(), |l| l.to_string());
        steps.push(match k {
            PROCESS => format!(
                "{an} and {bn} ran on process {}; {an} completed (line {done}) before {bn} began (line {}): {an} < {bn}",
                ta.process, tb.line
            ),
            REALTIME => format!(
                "{an} completed (line {done}) before {bn} was invoked (line {}): {an} < {bn} in real time",
                tb.line
            ),
            _ => facts.why(h, &mut names, a, b, k),
        });
        views.push(EdgeView {
            from: an,
            to: bn,
            kind: kind_name(k),
        });
    }
    let order: Vec<String> = views
        .iter()
        .map(|e| e.from.clone())
        .chain(views.first().map(|e| e.from.clone()))
        .collect();
    steps.push(format!(
        "so {}: a cycle, which no order of the transactions allows",
        order.join(" < ")
    ));
    let mut a = names.anomaly(kind, steps);
    a.cycle = views;
    a
}
