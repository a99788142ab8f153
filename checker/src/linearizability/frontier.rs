//! The configuration-set search: sweep calls and returns in real-time order,
//! carrying every configuration (which open ops are linearized, model state) that
//! some order of the ops so far can reach (the algorithm of Knossos's `linear`).
//!
//! Where the depth-first search must exhaust every order of a long prefix before it
//! can refute an op near the end, this sweep forgets an op the moment it returns, so
//! its memory and work follow the number of ops open at once, not the history's
//! length. Three rules keep the set small, all exact:
//! - a read-only op is linearized in every configuration whose state accepts it
//!   (moving a read earlier, to a moment its value holds, breaks nothing);
//! - of two configurations with one state and the same ops linearized but for
//!   read-only ones, only one whose read-only ops include the other's is kept;
//! - an indeterminate op, which may take effect at any moment after its call,
//!   is tried only just before an open op it changes (see
//!   [`Frontier::matters`]): tried everywhere, a few of them open for the rest
//!   of the history multiply the configurations.
//!
//! The search runs beside the depth-first one on keys with many ops; whichever
//! decides first answers (see `mod.rs`).

use std::collections::HashMap;

use crate::budget::{Budget, Exhausted};
use crate::history::NEVER;
use crate::model::Model;

use super::memo::FxBuild;

/// Open ops tracked at once; a history with more never uses this search.
pub(crate) const MAX_OPEN: usize = 128;
/// Configurations created between looks at the clock and the cancel flag.
const CHECK_EVERY: u64 = 1 << 12;
/// Bytes one stored configuration costs, counted against the memory budget.
const CONFIG_BYTES: usize = 48;

/// One configuration: linearized open ops (a bit per slot) and an interned state.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Config {
    done: u128,
    state: u32,
}

/// The configurations of one closure, grouped by state and non-read ops, to
/// refuse at once one that another already dominates.
struct Seen {
    reads: u128,
    infos: u128,
    groups: HashMap<(u32, u128), Vec<(u128, u128)>, FxBuild>,
    len: usize,
}

impl Seen {
    fn new(reads: u128, infos: u128) -> Self {
        Seen {
            reads,
            infos,
            groups: HashMap::default(),
            len: 0,
        }
    }

    /// False when `c`, or one that dominates it, is already in.
    fn insert(&mut self, c: Config) -> bool {
        let rest = c.done & !self.reads & !self.infos;
        let (r, i) = (c.done & self.reads, c.done & self.infos);
        let group = self.groups.entry((c.state, rest)).or_default();
        if group.iter().any(|&(kr, ki)| kr & r == r && ki & !i == 0) {
            return false;
        }
        group.push((r, i));
        self.len += 1;
        true
    }

    /// The configurations no other one dominates.
    fn into_antichain(self) -> Vec<Config> {
        let mut out = Vec::with_capacity(self.len);
        for ((state, rest), group) in self.groups {
            for (k, &(r, i)) in group.iter().enumerate() {
                // Only a later entry can dominate an earlier one (insert refused the
                // converse); among equals the earlier one stays.
                let dominated = group[k + 1..]
                    .iter()
                    .any(|&(kr, ki)| kr & r == r && ki & !i == 0 && (kr, ki) != (r, i));
                if !dominated {
                    out.push(Config {
                        done: rest | r | i,
                        state,
                    });
                }
            }
        }
        out
    }
}

/// Whether an indeterminate op, taking the state from `from` to `to`, changes
/// what `op` can do right after it (`blind`: the indeterminate op is a blind
/// write). Such an op need never be taken anywhere else: in any linearization,
/// follow it past the ops that keep both states (with and without it) as they
/// are; at the first op that does not, either both states lead to the same next
/// state (drop the op, it never took effect) or it can move to just before that
/// op, which is then one it matters to. For a blind write, ops that keep its
/// value and accept the state without it may change that state: it is
/// rewritten anyway.
pub(crate) fn matters<M: Model>(
    model: &M,
    blind: bool,
    from: &M::State,
    to: &M::State,
    op: &M::Op,
) -> bool {
    let Some(after) = model.step(to, op) else {
        return false;
    };
    match model.step(from, op) {
        None => true,
        Some(without) if without == after => false,
        Some(_) if blind => after != *to,
        Some(without) => !(after == *to && without == *from),
    }
}

/// Why the sweep refuted the history.
#[derive(Debug, Clone)]
pub(crate) struct Refuted<S> {
    /// The op that returned with no configuration having linearized it.
    pub blocked: u32,
    /// Ops open at that return (besides `blocked`).
    pub pending: Vec<u32>,
    /// Every state some order of the earlier ops could be in at that moment.
    pub states: Vec<S>,
    /// Configurations alive just before the return.
    pub configs: usize,
}

/// What the sweep found.
#[derive(Debug)]
pub(crate) enum Outcome<S> {
    Valid,
    Invalid(Refuted<S>),
    Unknown(Exhausted),
    /// More than [`MAX_OPEN`] ops were open at once.
    TooWide,
}

/// The sweep, paused between calls to [`Frontier::advance`].
pub(crate) struct Frontier<M: Model> {
    pub(crate) model: M,
    ops: Vec<M::Op>,
    /// Calls and returns in real-time order: (op, is return).
    events: Vec<(u32, bool)>,
    next_event: usize,
    read_only: Vec<bool>,
    /// Indeterminate ops: tried only where they change what an open op can do
    /// (see [`Frontier::matters`]).
    lazy: Vec<bool>,
    /// Blind writes (see [`Model::is_blind`]).
    blind: Vec<bool>,
    /// An equal op invoked earlier and due no later (see `search::twins`): while it
    /// is open and not linearized, this one is not tried.
    twin: Vec<u32>,
    /// Slot of each open op.
    slot: Vec<u8>,
    /// Op in each slot, `u32::MAX` when free.
    slot_op: Vec<u32>,
    free: u128,
    /// Open read-only ops, by slot bit.
    open_reads: u128,
    /// Open indeterminate ops (they never return), by slot bit.
    open_infos: u128,
    indeterminate: Vec<bool>,
    /// Returns still to come.
    returns_left: usize,
    states: Vec<M::State>,
    state_id: HashMap<M::State, u32, FxBuild>,
    configs: Vec<Config>,
    reserved: usize,
    /// Configurations created so far.
    pub created: u64,
    /// The most configurations alive at once.
    pub widest: usize,
}

impl<M: Model> Frontier<M> {
    /// Sets up the sweep of `ops` (invocation order) with their call and return
    /// positions (`NEVER` for indeterminate ops).
    pub(crate) fn new(model: M, ops: Vec<M::Op>, call: &[u64], ret: &[u64]) -> Self {
        let mut order: Vec<(u64, bool, u32)> = Vec::with_capacity(2 * ops.len());
        for i in 0..ops.len() {
            order.push((call[i], false, i as u32));
            if ret[i] != NEVER {
                order.push((ret[i], true, i as u32));
            }
        }
        order.sort_unstable();
        let read_only = ops.iter().map(|o| model.is_read_only(o)).collect();
        let lazy = ret.iter().map(|&r| r == NEVER).collect();
        let blind = ops.iter().map(|o| model.is_blind(o)).collect();
        let twin = super::search::twins(&ops, call, ret);
        let indeterminate: Vec<bool> = ret.iter().map(|&r| r == NEVER).collect();
        let returns_left = indeterminate.iter().filter(|&&i| !i).count();
        let init = model.init();
        let mut state_id = HashMap::default();
        state_id.insert(init.clone(), 0);
        Frontier {
            events: order.into_iter().map(|(_, r, op)| (op, r)).collect(),
            next_event: 0,
            read_only,
            lazy,
            blind,
            twin,
            slot: vec![u8::MAX; ops.len()],
            slot_op: vec![u32::MAX; MAX_OPEN],
            free: u128::MAX,
            open_reads: 0,
            open_infos: 0,
            indeterminate,
            returns_left,
            states: vec![init],
            state_id,
            configs: vec![Config { done: 0, state: 0 }],
            reserved: 0,
            created: 0,
            widest: 1,
            model,
            ops,
        }
    }

    /// Gives back the memory this sweep reserved.
    pub(crate) fn release(&mut self, budget: &Budget) {
        budget.release(self.reserved);
        self.reserved = 0;
    }

    fn intern(&mut self, s: M::State) -> u32 {
        if let Some(&id) = self.state_id.get(&s) {
            return id;
        }
        let id = self.states.len() as u32;
        self.states.push(s.clone());
        self.state_id.insert(s, id);
        id
    }

    /// Adds every open read-only op that `state` accepts to `done`.
    fn saturate(&self, mut done: u128, state: u32) -> u128 {
        let mut reads = self.open_reads & !done;
        while reads != 0 {
            let b = reads.trailing_zeros();
            reads &= reads - 1;
            let op = self.slot_op[b as usize] as usize;
            if self
                .model
                .step(&self.states[state as usize], &self.ops[op])
                .is_some()
            {
                done |= 1 << b;
            }
        }
        done
    }

    /// Runs about `steps` configuration steps; `None` while not finished.
    pub(crate) fn advance(&mut self, steps: u64, budget: &Budget) -> Option<Outcome<M::State>> {
        let stop_at = self.created + steps;
        while self.next_event < self.events.len() && self.returns_left > 0 {
            if self.created >= stop_at {
                return None;
            }
            let (op, is_ret) = self.events[self.next_event];
            self.next_event += 1;
            let outcome = if is_ret {
                self.on_return(op)
            } else {
                self.on_call(op, budget)
            };
            if let Err(outcome) = outcome {
                return Some(outcome);
            }
            let need = self.configs.len() * CONFIG_BYTES;
            if need > self.reserved {
                let more = need.max(self.reserved * 2) - self.reserved;
                if let Err(why) = budget.reserve(more) {
                    return Some(Outcome::Unknown(why));
                }
                self.reserved += more;
            }
        }
        Some(Outcome::Valid)
    }

    /// An op is invoked: give it a slot and extend every configuration by it, and
    /// by whatever it makes possible.
    fn on_call(&mut self, op: u32, budget: &Budget) -> Result<(), Outcome<M::State>> {
        if self.free == 0 {
            return Err(Outcome::TooWide);
        }
        let b = self.free.trailing_zeros();
        self.free &= !(1 << b);
        self.slot[op as usize] = b as u8;
        self.slot_op[b as usize] = op;
        let bit = 1u128 << b;
        if self.indeterminate[op as usize] {
            self.open_infos |= bit;
        }
        // Closure: a configuration that takes `op` may then take any open op it
        // lacks, and so on.
        let mut work: Vec<Config> = Vec::new();
        if self.read_only[op as usize] {
            // Every configuration whose state accepts the read takes it at once
            // (dominance); those then need their successors again, with the read.
            self.open_reads |= bit;
            let model = &self.model;
            let (states, ops) = (&self.states, &self.ops);
            for c in &mut self.configs {
                if model
                    .step(&states[c.state as usize], &ops[op as usize])
                    .is_some()
                {
                    c.done |= bit;
                    work.push(*c);
                }
            }
        }
        let (reads, infos) = (self.open_reads, self.open_infos);
        let mut seen = Seen::new(reads, infos);
        for c in &self.configs {
            seen.insert(*c);
        }
        // An indeterminate op that changes what `op` can do may now be worth
        // taking, just before it.
        let before = self.configs.len();
        for i in 0..before {
            let c = self.configs[i];
            let mut lazy = self.open_infos & !self.free & !c.done & !bit;
            while lazy != 0 {
                let s = lazy.trailing_zeros();
                lazy &= lazy - 1;
                let w = self.slot_op[s as usize];
                if !self.lazy[w as usize] {
                    continue;
                }
                let from = &self.states[c.state as usize];
                let Some(after) = self.model.step(from, &self.ops[w as usize]) else {
                    continue;
                };
                if after == *from || !self.matters(w, from, &after, op) {
                    continue;
                }
                if let Some(n) = self.extend(c, w, 1 << s) {
                    if seen.insert(n) {
                        self.configs.push(n);
                        work.push(n);
                    }
                }
            }
        }
        if !self.read_only[op as usize] {
            for i in 0..before {
                let c = self.configs[i];
                if let Some(n) = self.extend(c, op, bit) {
                    if seen.insert(n) {
                        self.configs.push(n);
                        work.push(n);
                    }
                }
            }
        }
        while let Some(c) = work.pop() {
            self.created += 1;
            if self.created.is_multiple_of(CHECK_EVERY) {
                budget.check().map_err(Outcome::Unknown)?;
                let need = seen.len * CONFIG_BYTES * 2;
                if need > self.reserved {
                    budget
                        .reserve(need - self.reserved)
                        .map_err(Outcome::Unknown)?;
                    self.reserved = need;
                }
            }
            let mut open = !self.free & !c.done & !self.open_reads;
            while open != 0 {
                let s = open.trailing_zeros();
                open &= open - 1;
                let other = self.slot_op[s as usize];
                if let Some(n) = self.extend(c, other, 1 << s) {
                    if seen.insert(n) {
                        self.configs.push(n);
                        work.push(n);
                    }
                }
            }
        }
        self.configs = seen.into_antichain();
        self.widest = self.widest.max(self.configs.len());
        Ok(())
    }

    /// Whether indeterminate op `w`, taking the state from `from` to `to`, changes
    /// what open op `o` can do right after it (see [`matters`]).
    fn matters(&self, w: u32, from: &M::State, to: &M::State, o: u32) -> bool {
        matters(
            &self.model,
            self.blind[w as usize],
            from,
            to,
            &self.ops[o as usize],
        )
    }

    /// Whether some open op of `c` other than `w` (in slot bit `bit`) would be
    /// changed by `w` going from `c`'s state to `to` (see [`Frontier::matters`]).
    fn useful(&self, c: &Config, w: u32, bit: u128, to: &M::State) -> bool {
        let from = &self.states[c.state as usize];
        let mut open = !self.free & !c.done & !bit;
        while open != 0 {
            let s = open.trailing_zeros();
            open &= open - 1;
            if self.matters(w, from, to, self.slot_op[s as usize]) {
                return true;
            }
        }
        false
    }

    /// `c` with `op` (in slot bit `bit`) linearized next, reads saturated; `None`
    /// when the model refuses it, or when it is an indeterminate op that matters
    /// to no open op.
    fn extend(&mut self, c: Config, op: u32, bit: u128) -> Option<Config> {
        if c.done & bit != 0 {
            return None;
        }
        let twin = self.twin[op as usize];
        if twin != u32::MAX {
            let t = self.slot[twin as usize];
            if t != u8::MAX && self.slot_op[t as usize] == twin && c.done & (1 << t) == 0 {
                return None;
            }
        }
        let next = self
            .model
            .step(&self.states[c.state as usize], &self.ops[op as usize])?;
        if self.lazy[op as usize]
            && (next == self.states[c.state as usize] || !self.useful(&c, op, bit, &next))
        {
            return None;
        }
        let state = self.intern(next);
        let done = self.saturate(c.done | bit, state);
        Some(Config { done, state })
    }

    /// An op returns: only configurations that linearized it survive, and its slot
    /// is freed.
    fn on_return(&mut self, op: u32) -> Result<(), Outcome<M::State>> {
        let b = self.slot[op as usize];
        let bit = 1u128 << b;
        let before = self.configs.len();
        let alive: Vec<Config> = self
            .configs
            .iter()
            .filter(|c| c.done & bit != 0)
            .map(|c| Config {
                done: c.done & !bit,
                state: c.state,
            })
            .collect();
        if alive.is_empty() {
            let mut ids: Vec<u32> = self.configs.iter().map(|c| c.state).collect();
            ids.sort_unstable();
            ids.dedup();
            let pending = (0..MAX_OPEN)
                .filter(|&s| self.free & (1 << s) == 0 && s != b as usize)
                .map(|s| self.slot_op[s])
                .collect();
            return Err(Outcome::Invalid(Refuted {
                blocked: op,
                pending,
                states: ids
                    .iter()
                    .map(|&i| self.states[i as usize].clone())
                    .collect(),
                configs: before,
            }));
        }
        self.returns_left -= 1;
        self.free |= bit;
        self.open_reads &= !bit;
        self.slot_op[b as usize] = u32::MAX;
        self.slot[op as usize] = u8::MAX;
        let mut seen = Seen::new(self.open_reads, self.open_infos);
        for c in alive {
            seen.insert(c);
        }
        self.configs = seen.into_antichain();
        self.widest = self.widest.max(self.configs.len());
        Ok(())
    }
}
