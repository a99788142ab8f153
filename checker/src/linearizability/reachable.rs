//! A static pass before the search: ops that cannot happen in any state the key's
//! ops can reach, in any order.
//!
//! The states a linearization passes through are all reachable from the initial
//! state by some sequence of the history's ops, so an op that no reachable state
//! accepts refutes the history outright, however late it sits. The search would
//! otherwise have to exhaust every order of the ops before it (a corrupted read at
//! the end of a 30-process history is `unknown` after minutes without this).
//! The closure ignores real-time order, so it only refutes, never confirms.

use std::collections::HashMap;
use std::hash::Hash;

use crate::model::Model;

use super::memo::FxBuild;

/// Give up when the ops have more distinct forms than this...
const MAX_DISTINCT_OPS: usize = 4096;
/// ...or the closure more states than this (queues and strings grow without end).
const MAX_STATES: usize = 4096;
/// ...or the closure would take more model steps than this.
const MAX_STEPS: usize = 1 << 22;

/// An op no reachable state accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Impossible {
    /// Index of the op (the one that returns first, when several are impossible).
    pub op: u32,
    /// How many states the closure found.
    pub states: usize,
}

/// The earliest-returning op that cannot happen in any reachable state; `None`
/// when every op can, or when the closure is too large to compute cheaply.
pub(crate) fn impossible_op<M: Model>(model: &M, ops: &[M::Op], ret: &[u64]) -> Option<Impossible>
where
    M::Op: Hash + Eq,
{
    let mut distinct: HashMap<&M::Op, u32, FxBuild> = HashMap::default();
    let mut forms: Vec<&M::Op> = Vec::new();
    let mut form_of = Vec::with_capacity(ops.len());
    for op in ops {
        let next = forms.len() as u32;
        let id = *distinct.entry(op).or_insert(next);
        if id == next {
            forms.push(op);
            if forms.len() > MAX_DISTINCT_OPS {
                return None;
            }
        }
        form_of.push(id);
    }

    let mut seen: HashMap<M::State, (), FxBuild> = HashMap::default();
    let mut frontier = vec![model.init()];
    seen.insert(model.init(), ());
    let mut possible = vec![false; forms.len()];
    let mut steps = 0usize;
    while let Some(state) = frontier.pop() {
        for (f, op) in forms.iter().enumerate() {
            steps += 1;
            if steps > MAX_STEPS {
                return None;
            }
            let Some(next) = model.step(&state, op) else {
                continue;
            };
            possible[f] = true;
            if !seen.contains_key(&next) {
                if seen.len() >= MAX_STATES {
                    return None;
                }
                seen.insert(next.clone(), ());
                frontier.push(next);
            }
        }
    }
    (0..ops.len())
        .filter(|&i| !possible[form_of[i] as usize])
        .min_by_key(|&i| ret[i])
        .map(|i| Impossible {
            op: i as u32,
            states: seen.len(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CasOutcome, Register, RegisterOp};

    #[test]
    fn a_read_of_a_value_nothing_writes_is_impossible() {
        let ops = [
            RegisterOp::Write(1),
            RegisterOp::Cas {
                from: 1,
                to: 2,
                outcome: CasOutcome::Matched,
            },
            RegisterOp::Read(2),
            RegisterOp::Read(3),
            RegisterOp::Read(3),
        ];
        let ret = [10, 20, 30, 50, 40];
        let found = impossible_op(&Register::cas(), &ops, &ret).expect("read of 3 refuted");
        assert_eq!(found.op, 4, "the impossible op that returns first");
        assert_eq!(found.states, 3, "null, 1 and 2");
    }

    #[test]
    fn order_is_ignored_so_reachable_values_pass() {
        // Read(2) before anything wrote 2 is not linearizable, but the closure does
        // not look at time: it must not claim more than it knows.
        let ops = [
            RegisterOp::Read(2),
            RegisterOp::Write(1),
            RegisterOp::Cas {
                from: 1,
                to: 2,
                outcome: CasOutcome::Matched,
            },
        ];
        assert_eq!(impossible_op(&Register::cas(), &ops, &[1, 2, 3]), None);
    }

    #[test]
    fn a_cas_expecting_an_unwritten_value_is_impossible() {
        let ops = [
            RegisterOp::Write(1),
            RegisterOp::Cas {
                from: 5,
                to: 1,
                outcome: CasOutcome::Matched,
            },
            // An indeterminate cas may never take effect: always possible.
            RegisterOp::Cas {
                from: 6,
                to: 1,
                outcome: CasOutcome::Unknown,
            },
        ];
        let found = impossible_op(&Register::cas(), &ops, &[1, 2, 3]).unwrap();
        assert_eq!(found.op, 1);
    }
}
