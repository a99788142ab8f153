//! What the brute-force tests share: a seeded generator, a register written
//! apart from the checker's models, and the enumeration of every order.
#![allow(dead_code)] // each test file uses its own part

use checker::history::{Op, Outcome, NEVER};
use checker::value::Value;

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub fn seeded(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A register step: read, write, cas (`false` answers a mismatch).
pub fn apply(state: &Value, op: &Op) -> Option<Value> {
    match (&*op.f, &op.output) {
        ("read", Outcome::Ok(v)) => (v == state).then(|| state.clone()),
        ("read", Outcome::Unknown) => Some(state.clone()),
        ("write", _) => Some(op.input.clone()),
        ("cas", Outcome::Ok(Value::Bool(false))) => {
            let (a, _) = op.input.as_pair().unwrap();
            (a != state).then(|| state.clone())
        }
        ("cas", _) => {
            let (a, b) = op.input.as_pair().unwrap();
            (a == state).then(|| b.clone())
        }
        _ => unreachable!(),
    }
}

/// True when some subset of the indeterminate ops, with every determinate op,
/// has an order that respects real time and that `step` accepts from `init`.
pub fn linearizable<S: Clone>(ops: &[Op], init: S, step: impl Fn(&S, &Op) -> Option<S>) -> bool {
    fn go<S: Clone>(
        ops: &[Op],
        included: &[usize],
        used: &mut [bool],
        placed: usize,
        state: &S,
        step: &dyn Fn(&S, &Op) -> Option<S>,
    ) -> bool {
        if placed == included.len() {
            return true;
        }
        for &i in included {
            // i may go next only if no unplaced included op completed before i began.
            let blocked = included
                .iter()
                .any(|&j| !used[j] && j != i && ops[j].ret != NEVER && ops[j].ret < ops[i].call);
            if used[i] || blocked {
                continue;
            }
            if let Some(next) = step(state, &ops[i]) {
                used[i] = true;
                if go(ops, included, used, placed + 1, &next, step) {
                    return true;
                }
                used[i] = false;
            }
        }
        false
    }
    let unknown: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].is_indeterminate())
        .collect();
    (0..(1u32 << unknown.len())).any(|mask| {
        let included: Vec<usize> = (0..ops.len())
            .filter(|i| match unknown.iter().position(|u| u == i) {
                Some(bit) => mask & (1 << bit) != 0,
                None => true,
            })
            .collect();
        go(ops, &included, &mut vec![false; ops.len()], 0, &init, &step)
    })
}

/// One register, null at first.
pub fn brute_force(ops: &[Op]) -> bool {
    linearizable(ops, Value::Null, apply)
}
