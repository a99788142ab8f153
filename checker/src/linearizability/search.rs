//! The search for a linearization of one object's history (Wing & Gong, with
//! Lowe's just-in-time linearization and memoization).
//!
//! Calls and returns sit in one doubly linked list in real-time order. The search
//! walks it: at a call it tries to linearize that op now (the model accepts it and
//! the resulting (set, state) is new), lifting the op's call and return out of the
//! list; at a return of an op not yet linearized it backtracks. Everything before
//! the first return in the list is a candidate, so only genuinely concurrent ops
//! are ever reordered.
//!
//! A search is resumable: [`Search::advance`] runs a bounded number of steps, so
//! the caller can interleave the searches of many keys and the quickest refutation
//! ends the check, whichever key it is on.

use crate::budget::{Budget, Exhausted};
use crate::history::NEVER;
use crate::model::Model;

use super::memo::{splitmix64, Memo};

const END: u32 = u32::MAX;
const HEAD: u32 = 0;
/// Steps between looks at the clock, the cancel flag and the model's memory.
const CHECK_EVERY: u64 = 1 << 12;

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

impl SearchStats {
    pub(crate) fn add(&mut self, o: &SearchStats) {
        self.steps += o.steps;
        self.visited += o.visited;
        self.backtracks += o.backtracks;
    }
}

/// One object's search, paused between calls to [`Search::advance`].
pub(crate) struct Search<M: Model, V: Memo<M::State>> {
    pub model: M,
    pub ops: Vec<M::Op>,
    pub call: Vec<u64>,
    pub ret: Vec<u64>,
    next: Vec<u32>,
    prev: Vec<u32>,
    entry_op: Vec<u32>,
    entry_ret: Vec<bool>,
    ret_entry: Vec<u32>,
    indeterminate: Vec<bool>,
    keys: Vec<[u64; 2]>,
    bits: Vec<u64>,
    fp: [u64; 2],
    state: M::State,
    /// Linearized ops: call entry, state before, and whether the op was forced
    /// (read-only, so no alternative at its level needs trying).
    stack: Vec<(u32, M::State, bool)>,
    read_only: Vec<bool>,
    /// Blind writes (see [`Model::is_blind`]), for [`Search::worth`].
    blind: Vec<bool>,
    /// For each op, an equal op invoked before it and returning no later (see
    /// [`twins`]): while that one is open, this one never goes first.
    twin: Vec<u32>,
    determinate_left: usize,
    best: Option<Stuck<M::State>>,
    entry: u32,
    memo: V,
    side_reserved: usize,
    pub stats: SearchStats,
}

/// Symmetry between equal ops. If ops `a` and `b` are equal (same function,
/// arguments and outcome), `a` was invoked before `b` and `a` returns no later
/// than `b`, then whenever both are open, a linearization that puts `b` before `a`
/// stays legal with the two swapped: equal ops move the model the same way, `a`
/// is already invoked at `b`'s slot, and `b` lands in `a`'s slot, which comes
/// before `a`'s return and so before `b`'s. So `b` need never be tried while `a`
/// is open. For each op this returns the latest-invoked such `a` that overlaps it
/// (an op that returns before `b` is invoked is never open beside it), or `END`.
/// Indeterminate ops never return, so equal ones are ordered by invocation.
pub(crate) fn twins<O: PartialEq>(ops: &[O], call: &[u64], ret: &[u64]) -> Vec<u32> {
    let mut twin = vec![END; ops.len()];
    // Ops invoked so far that are still open at the current invocation.
    let mut open: Vec<u32> = Vec::new();
    for i in 0..ops.len() {
        open.retain(|&j| ret[j as usize] > call[i]);
        if let Some(&j) = open
            .iter()
            .rev()
            .find(|&&j| ret[j as usize] <= ret[i] && ops[j as usize] == ops[i])
        {
            twin[i] = j;
        }
        open.push(i as u32);
    }
    twin
}

impl<M: Model, V: Memo<M::State>> Search<M, V> {
    /// Sets up the search of `ops` (invocation order) with their call and return positions.
    pub(crate) fn new(model: M, ops: Vec<M::Op>, call: Vec<u64>, ret: Vec<u64>, memo: V) -> Self {
        let n = ops.len();
        // Entries: 0 is the head; then calls and returns sorted by position.
        let mut order: Vec<(u64, bool, u32)> = Vec::with_capacity(2 * n);
        for i in 0..n {
            order.push((call[i], false, i as u32));
            order.push((ret[i], true, i as u32));
        }
        // Ties only happen among never-returning ops; calls sort before returns.
        order.sort_unstable();
        let len = 2 * n + 1;
        let mut next = vec![END; len];
        let mut prev = vec![HEAD; len];
        let mut entry_op = vec![0u32; len];
        let mut entry_ret = vec![false; len];
        let mut ret_entry = vec![0u32; n];
        for (k, &(_, is_ret, op)) in order.iter().enumerate() {
            let e = (k + 1) as u32;
            entry_op[e as usize] = op;
            entry_ret[e as usize] = is_ret;
            prev[e as usize] = e - 1;
            next[e as usize - 1] = e;
            if is_ret {
                ret_entry[op as usize] = e;
            }
        }
        let indeterminate: Vec<bool> = ret.iter().map(|&r| r == NEVER).collect();
        let keys = (0..n as u64)
            .map(|i| [splitmix64(2 * i), splitmix64(2 * i + 1)])
            .collect();
        let determinate_left = indeterminate.iter().filter(|&&i| !i).count();
        let read_only = ops.iter().map(|o| model.is_read_only(o)).collect();
        let twin = twins(&ops, &call, &ret);
        let blind = ops.iter().map(|o| model.is_blind(o)).collect();
        let state = model.init();
        Search {
            model,
            ops,
            call,
            ret,
            entry: next[HEAD as usize],
            next,
            prev,
            entry_op,
            entry_ret,
            ret_entry,
            indeterminate,
            keys,
            bits: vec![0u64; n.div_ceil(64)],
            fp: [0, 0],
            state,
            stack: Vec::new(),
            read_only,
            blind,
            twin,
            determinate_left,
            best: None,
            memo,
            side_reserved: 0,
            stats: SearchStats::default(),
        }
    }

    /// Turns the symmetry between equal ops off (for differential tests) or on.
    pub(crate) fn with_symmetry(mut self, on: bool) -> Self {
        if !on {
            self.twin.iter_mut().for_each(|t| *t = END);
        }
        self
    }

    /// Gives back everything this search took from the budget.
    pub(crate) fn release(&mut self, budget: &Budget) {
        self.memo.release(budget);
        budget.release(self.side_reserved);
        self.side_reserved = 0;
    }

    fn unlink(&mut self, e: u32) {
        let (p, nx) = (self.prev[e as usize], self.next[e as usize]);
        self.next[p as usize] = nx;
        if nx != END {
            self.prev[nx as usize] = p;
        }
    }

    fn relink(&mut self, e: u32) {
        let (p, nx) = (self.prev[e as usize], self.next[e as usize]);
        self.next[p as usize] = e;
        if nx != END {
            self.prev[nx as usize] = e;
        }
    }

    /// Runs at most about `steps` steps; `None` if the search is not finished.
    pub(crate) fn advance(&mut self, steps: u64, budget: &Budget) -> Option<Verdict<M::State>> {
        let stop_at = self.stats.steps + steps;
        loop {
            // Only indeterminate ops left: each can be linearized at the end, where
            // it either applies harmlessly or "never took effect".
            if self.determinate_left == 0 || self.entry == END {
                return Some(Verdict::Valid);
            }
            self.stats.steps += 1;
            if self.stats.steps.is_multiple_of(CHECK_EVERY) {
                if let Err(why) = self.check_budget(budget) {
                    return Some(Verdict::Unknown(why));
                }
                if self.stats.steps >= stop_at {
                    return None;
                }
            }
            let entry = self.entry;
            let op = self.entry_op[entry as usize];
            if self.entry_ret[entry as usize] {
                // Reached the completion of an op that is not linearized: back up.
                if self
                    .best
                    .as_ref()
                    .is_none_or(|b| self.stack.len() > b.prefix.len())
                {
                    self.best = Some(self.stuck_here(op, entry));
                }
                if let Some(verdict) = self.backtrack() {
                    return Some(verdict);
                }
                continue;
            }
            let twin = self.twin[op as usize];
            if twin != END && self.bits[twin as usize / 64] & (1 << (twin % 64)) == 0 {
                // An equal op invoked earlier and due no later is still open: it
                // goes first.
                self.entry = self.next[entry as usize];
                continue;
            }
            let Some(new_state) = self.model.step(&self.state, &self.ops[op as usize]) else {
                debug_assert!(
                    !self.indeterminate[op as usize],
                    "model contract: an indeterminate op always steps"
                );
                self.entry = self.next[entry as usize];
                continue;
            };
            if self.indeterminate[op as usize] && !self.worth(op, &new_state) {
                // It changes nothing here, or nothing an open op could notice
                // right after it: it is tried later, where it matters.
                self.entry = self.next[entry as usize];
                continue;
            }
            let forced = self.read_only[op as usize];
            let k = self.keys[op as usize];
            let candidate = [self.fp[0] ^ k[0], self.fp[1] ^ k[1]];
            self.bits[op as usize / 64] ^= 1 << (op % 64);
            match self.memo.insert(candidate, &self.bits, &new_state, budget) {
                Err(why) => return Some(Verdict::Unknown(why)),
                Ok(true) => {
                    self.stats.visited += 1;
                    self.fp = candidate;
                    let before = std::mem::replace(&mut self.state, new_state);
                    self.stack.push((entry, before, forced));
                    self.unlink(entry);
                    self.unlink(self.ret_entry[op as usize]);
                    if !self.indeterminate[op as usize] {
                        self.determinate_left -= 1;
                    }
                    self.entry = self.next[HEAD as usize];
                }
                Ok(false) => {
                    self.bits[op as usize / 64] ^= 1 << (op % 64);
                    if forced {
                        // A read that fits now and was explored from here already:
                        // nothing else at this level can do better.
                        if let Some(verdict) = self.backtrack() {
                            return Some(verdict);
                        }
                    } else {
                        self.entry = self.next[entry as usize];
                    }
                }
            }
        }
    }

    /// Whether indeterminate op `w`, taking the state to `to`, is worth trying
    /// now: it changes the state and what some other op that could go right
    /// after it can do (see `frontier::matters`; where it changes nothing yet,
    /// a linearization can always take it later or drop it).
    fn worth(&self, w: u32, to: &M::State) -> bool {
        if *to == self.state {
            return false;
        }
        let mut e = self.next[HEAD as usize];
        while e != END && !self.entry_ret[e as usize] {
            let o = self.entry_op[e as usize];
            if o != w
                && super::frontier::matters(
                    &self.model,
                    self.blind[w as usize],
                    &self.state,
                    to,
                    &self.ops[o as usize],
                )
            {
                return true;
            }
            e = self.next[e as usize];
        }
        false
    }

    /// Undoes the last choice that has alternatives left; `Invalid` if none has.
    fn backtrack(&mut self) -> Option<Verdict<M::State>> {
        loop {
            let Some((call, previous, forced)) = self.stack.pop() else {
                let stuck = match self.best.take() {
                    Some(stuck) => stuck,
                    // Unreachable in practice: a refutation passes through a return first.
                    None => self.stuck_here(self.entry_op[self.entry as usize], self.entry),
                };
                return Some(Verdict::Invalid(stuck));
            };
            self.stats.backtracks += 1;
            self.state = previous;
            let undone = self.entry_op[call as usize];
            let k = self.keys[undone as usize];
            self.fp = [self.fp[0] ^ k[0], self.fp[1] ^ k[1]];
            self.bits[undone as usize / 64] ^= 1 << (undone % 64);
            self.relink(self.ret_entry[undone as usize]);
            self.relink(call);
            if !self.indeterminate[undone as usize] {
                self.determinate_left += 1;
            }
            if !forced {
                self.entry = self.next[call as usize];
                return None;
            }
        }
    }

    /// The ops linearized so far, in order: after `Valid`, a linearization of every
    /// determinate op (indeterminate ones left out never took effect).
    pub(crate) fn linearized(&self) -> Vec<u32> {
        self.stack
            .iter()
            .map(|(e, _, _)| self.entry_op[*e as usize])
            .collect()
    }

    fn check_budget(&mut self, budget: &Budget) -> Result<(), Exhausted> {
        budget.check()?;
        let side = self.model.side_bytes();
        if side > self.side_reserved {
            budget.reserve(side - self.side_reserved)?;
            self.side_reserved = side;
        }
        Ok(())
    }

    fn stuck_here(&self, blocked: u32, at: u32) -> Stuck<M::State> {
        let prefix = self
            .stack
            .iter()
            .map(|(e, _, _)| self.entry_op[*e as usize])
            .collect();
        let mut pending = Vec::new();
        let mut e = self.next[HEAD as usize];
        while e != END && e != at {
            if !self.entry_ret[e as usize] && self.entry_op[e as usize] != blocked {
                pending.push(self.entry_op[e as usize]);
            }
            e = self.next[e as usize];
        }
        Stuck {
            prefix,
            state: self.state.clone(),
            blocked,
            pending,
        }
    }
}
