//! The search for a linearization of one object's history (Wing & Gong, with
//! Lowe's just-in-time linearization and memoization).
//!
//! Calls and returns sit in one doubly linked list in real-time order. The search
//! walks it: at a call it tries to linearize that op now (the model accepts it and
//! the resulting (set, state) is new), lifting the op's call and return out of the
//! list; at a return of an op not yet linearized it backtracks. Everything before
//! the first return in the list is a candidate, so only genuinely concurrent ops
//! are ever reordered.

use crate::budget::{Budget, Exhausted};
use crate::model::Model;

use super::memo::{splitmix64, Memo};

const END: u32 = u32::MAX;
const HEAD: u32 = 0;
/// Steps between looks at the clock and the cancel flag.
const CHECK_EVERY: u64 = 1 << 12;

/// One object's ops in the model's terms, with their real-time interval.
pub(crate) struct Problem<'a, O> {
    /// The ops, in invocation order.
    pub ops: &'a [O],
    /// Position of each op's invoke.
    pub call: &'a [u64],
    /// Position of each op's completion, `NEVER` when indeterminate.
    pub ret: &'a [u64],
}

/// Where the search got stuck furthest: the longest prefix it could linearize.
#[derive(Debug, Clone)]
pub(crate) struct Stuck<S> {
    /// Ops linearized, in order.
    pub prefix: Vec<u32>,
    /// Model state after the prefix.
    pub state: S,
    /// The op whose completion was reached before it could be linearized.
    pub blocked: u32,
    /// Ops invoked before that completion and not in the prefix: none of them could
    /// go next (the model refused it or the result was already explored).
    pub pending: Vec<u32>,
}

/// What the search found.
#[derive(Debug)]
pub(crate) enum Verdict<S> {
    /// A linearization exists.
    Valid,
    /// None exists; the furthest point reached.
    Invalid(Stuck<S>),
    /// A limit ran out first.
    Unknown(Exhausted),
}

/// Counters of one search.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SearchStats {
    /// Model steps attempted.
    pub steps: u64,
    /// Distinct (set, state) pairs stored.
    pub visited: u64,
    /// Backtracks.
    pub backtracks: u64,
}

/// Searches for a linearization of `problem` under `model`.
pub(crate) fn search<M: Model, V: Memo<M::State>>(
    model: &M,
    problem: &Problem<'_, M::Op>,
    memo: &mut V,
    budget: &Budget,
) -> (Verdict<M::State>, SearchStats) {
    let n = problem.ops.len();
    let mut stats = SearchStats::default();
    // Entries: 0 is the head; then calls and returns sorted by position.
    let mut order: Vec<(u64, bool, u32)> = Vec::with_capacity(2 * n);
    for i in 0..n {
        order.push((problem.call[i], false, i as u32));
        order.push((problem.ret[i], true, i as u32));
    }
    // Ties only happen among never-returning ops; calls sort before returns.
    order.sort_unstable();
    let len = 2 * n + 1;
    let mut next = vec![END; len];
    let mut prev = vec![HEAD; len];
    let mut entry_op = vec![0u32; len];
    let mut entry_ret = vec![false; len];
    let mut call_entry = vec![0u32; n];
    let mut ret_entry = vec![0u32; n];
    for (k, &(_, is_ret, op)) in order.iter().enumerate() {
        let e = (k + 1) as u32;
        entry_op[e as usize] = op;
        entry_ret[e as usize] = is_ret;
        prev[e as usize] = e - 1;
        next[e as usize - 1] = e;
        if is_ret {
            ret_entry[op as usize] = e;
        } else {
            call_entry[op as usize] = e;
        }
    }
    let indeterminate: Vec<bool> = problem.ret.iter().map(|&r| r == crate::history::NEVER).collect();
    let keys: Vec<[u64; 2]> = (0..n as u64)
        .map(|i| [splitmix64(2 * i), splitmix64(2 * i + 1)])
        .collect();

    let mut bits = vec![0u64; n.div_ceil(64)];
    let mut fp = [0u64; 2];
    let mut state = model.init();
    let mut stack: Vec<(u32, M::State)> = Vec::new();
    let mut determinate_left = indeterminate.iter().filter(|&&i| !i).count();
    let mut best: Option<Stuck<M::State>> = None;

    let unlink = |next: &mut [u32], prev: &mut [u32], e: u32| {
        let (p, nx) = (prev[e as usize], next[e as usize]);
        next[p as usize] = nx;
        if nx != END {
            prev[nx as usize] = p;
        }
    };
    let relink = |next: &mut [u32], prev: &mut [u32], e: u32| {
        let (p, nx) = (prev[e as usize], next[e as usize]);
        next[p as usize] = e;
        if nx != END {
            prev[nx as usize] = e;
        }
    };

    let mut entry = next[HEAD as usize];
    loop {
        // Only indeterminate ops left: each can be linearized at the end, where it
        // either applies harmlessly or "never took effect".
        if determinate_left == 0 || entry == END {
            return (Verdict::Valid, stats);
        }
        stats.steps += 1;
        if stats.steps % CHECK_EVERY == 0 {
            if let Err(why) = budget.check() {
                return (Verdict::Unknown(why), stats);
            }
        }
        let op = entry_op[entry as usize];
        if !entry_ret[entry as usize] {
            if let Some(new_state) = model.step(&state, &problem.ops[op as usize]) {
                let k = keys[op as usize];
                let candidate = [fp[0] ^ k[0], fp[1] ^ k[1]];
                bits[op as usize / 64] ^= 1 << (op % 64);
                match memo.insert(candidate, &bits, &new_state, budget) {
                    Err(why) => return (Verdict::Unknown(why), stats),
                    Ok(true) => {
                        stats.visited += 1;
                        fp = candidate;
                        stack.push((entry, std::mem::replace(&mut state, new_state)));
                        unlink(&mut next, &mut prev, entry);
                        unlink(&mut next, &mut prev, ret_entry[op as usize]);
                        if !indeterminate[op as usize] {
                            determinate_left -= 1;
                        }
                        entry = next[HEAD as usize];
                        continue;
                    }
                    Ok(false) => {
                        bits[op as usize / 64] ^= 1 << (op % 64);
                    }
                }
            } else {
                debug_assert!(
                    !indeterminate[op as usize],
                    "model contract: an indeterminate op always steps"
                );
            }
            entry = next[entry as usize];
        } else {
            // Reached the completion of an op that is not linearized: back up.
            if best.as_ref().is_none_or(|b| stack.len() > b.prefix.len()) {
                best = Some(stuck_here(&stack, &state, op, entry, &next, &entry_op, &entry_ret));
            }
            let Some((call, previous)) = stack.pop() else {
                let stuck = best.take().expect("recorded just above");
                return (Verdict::Invalid(stuck), stats);
            };
            stats.backtracks += 1;
            state = previous;
            let undone = entry_op[call as usize];
            let k = keys[undone as usize];
            fp = [fp[0] ^ k[0], fp[1] ^ k[1]];
            bits[undone as usize / 64] ^= 1 << (undone % 64);
            relink(&mut next, &mut prev, ret_entry[undone as usize]);
            relink(&mut next, &mut prev, call);
            if !indeterminate[undone as usize] {
                determinate_left += 1;
            }
            entry = next[call as usize];
        }
    }
}

fn stuck_here<S: Clone>(
    stack: &[(u32, S)],
    state: &S,
    blocked: u32,
    at: u32,
    next: &[u32],
    entry_op: &[u32],
    entry_ret: &[bool],
) -> Stuck<S> {
    let prefix = stack.iter().map(|&(e, _)| entry_op[e as usize]).collect();
    let mut pending = Vec::new();
    let mut e = next[HEAD as usize];
    while e != END && e != at {
        if !entry_ret[e as usize] {
            pending.push(entry_op[e as usize]);
        }
        e = next[e as usize];
    }
    Stuck {
        prefix,
        state: state.clone(),
        blocked,
        pending,
    }
}
