//! `mutex`: a lock with acquire and release (Knossos' mutex model: no owners).
//!
//! For leased locks, an acquire whose result says `{"took_over": true}` (it took
//! the lock from an owner whose lease had run out) or `{"renewed": true}` (its
//! owner held it already) must find the lock held, and leaves it held.

use super::{expect_ok, unknown_f, Model, ModelError, ValueTable};
use crate::history::Op;
use crate::value::Value;

/// A lock, free initially.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mutex;

/// A mutex op; `certain` is false for indeterminate ops, which act only if they can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MutexOp {
    /// Take the lock.
    Acquire {
        /// The op completed `ok`.
        certain: bool,
    },
    /// Acquire a held lock: take over an expired lease, or renew one's own.
    Held,
    /// Give the lock back.
    Release {
        /// The op completed `ok`.
        certain: bool,
    },
}

impl Model for Mutex {
    type State = bool;
    type Op = MutexOp;

    fn name(&self) -> &'static str {
        "mutex"
    }

    fn init(&self) -> bool {
        false
    }

    fn prepare(&self, op: &Op, _values: &mut ValueTable) -> Result<Option<MutexOp>, ModelError> {
        let output = expect_ok(op);
        let certain = output.is_some();
        let says = |flag: &str| {
            output
                .and_then(|v| v.get(flag))
                .is_some_and(|v| *v == Value::Bool(true))
        };
        match &*op.f {
            "acquire" if says("took_over") || says("renewed") => Ok(Some(MutexOp::Held)),
            "acquire" => Ok(Some(MutexOp::Acquire { certain })),
            "release" => Ok(Some(MutexOp::Release { certain })),
            _ => Err(unknown_f(op, "mutex", "acquire, release")),
        }
    }

    fn step(&self, locked: &bool, op: &MutexOp) -> Option<bool> {
        match *op {
            MutexOp::Acquire { certain } => match (*locked, certain) {
                (false, _) => Some(true),
                (true, true) => None,
                (true, false) => Some(true),
            },
            MutexOp::Held => locked.then_some(true),
            MutexOp::Release { certain } => match (*locked, certain) {
                (true, _) => Some(false),
                (false, true) => None,
                (false, false) => Some(false),
            },
        }
    }

    fn show(&self, locked: &bool, _values: &ValueTable) -> Value {
        Value::Str(if *locked { "locked" } else { "free" }.into())
    }
}
