//! `mutex`: a lock with acquire and release (Knossos' mutex model: no owners).

use super::{expect_ok, unknown_f, Model, ModelError, ValueTable};
use crate::history::Op;
use crate::value::Value;

/// A lock, free initially.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mutex;

/// A mutex op; `certain` is false for indeterminate ops, which act only if they can.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MutexOp {
    /// Take the lock.
    Acquire {
        /// The op completed `ok`.
        certain: bool,
    },
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
        let certain = expect_ok(op).is_some();
        match &*op.f {
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
