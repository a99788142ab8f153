//! Registers: `register` (read, write), `cas-register` and `kv` (plus cas and delete).

use super::{expect_ok, unknown_f, Model, ModelError, ValueTable};
use crate::history::Op;
use crate::value::Value;

/// A register holding one value (id in a [`ValueTable`]; 0 is null, the initial value).
#[derive(Clone, Copy, Debug)]
pub struct Register {
    /// Whether cas and delete are allowed (`cas-register`, `kv`).
    pub cas: bool,
    /// The name the user chose.
    pub name: &'static str,
}

impl Register {
    /// `register`: read and write only.
    pub fn plain() -> Self {
        Register {
            cas: false,
            name: "register",
        }
    }
    /// `cas-register`: read, write, cas, delete.
    pub fn cas() -> Self {
        Register {
            cas: true,
            name: "cas-register",
        }
    }
    /// `kv`: a cas-register per key.
    pub fn kv() -> Self {
        Register {
            cas: true,
            name: "kv",
        }
    }
}

/// What a completed cas reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CasOutcome {
    /// Took effect: the register held the expected value.
    Matched,
    /// Answered "no match" (Jepsen etcd logs): the register did not hold it.
    Mismatched,
    /// Indeterminate: applied if the register held the expected value.
    Unknown,
}

/// A register op over value ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    /// Observed this value.
    Read(u32),
    /// Set this value (delete writes null).
    Write(u32),
    /// Compare-and-set.
    Cas {
        /// Expected value.
        from: u32,
        /// New value.
        to: u32,
        /// What the completion said.
        outcome: CasOutcome,
    },
}

impl Model for Register {
    type State = u32;
    type Op = RegisterOp;

    fn name(&self) -> &'static str {
        self.name
    }

    fn init(&self) -> u32 {
        0
    }

    fn prepare(&self, op: &Op, values: &mut ValueTable) -> Result<Option<RegisterOp>, ModelError> {
        let known = if self.cas {
            "read, write, cas, delete"
        } else {
            "read, write"
        };
        match &*op.f {
            "read" => Ok(expect_ok(op).map(|v| RegisterOp::Read(values.id(v)))),
            "write" => Ok(Some(RegisterOp::Write(values.id(&op.input)))),
            "delete" if self.cas => Ok(Some(RegisterOp::Write(0))),
            "cas" if self.cas => {
                let (from, to) = op.input.as_pair().ok_or_else(|| {
                    ModelError::new(
                        op,
                        format!("cas value must be [expected, new], got {}", op.input),
                    )
                })?;
                let outcome = match expect_ok(op) {
                    None => CasOutcome::Unknown,
                    Some(Value::Bool(false)) => CasOutcome::Mismatched,
                    Some(_) => CasOutcome::Matched,
                };
                Ok(Some(RegisterOp::Cas {
                    from: values.id(from),
                    to: values.id(to),
                    outcome,
                }))
            }
            _ => Err(unknown_f(op, self.name, known)),
        }
    }

    #[inline]
    fn step(&self, state: &u32, op: &RegisterOp) -> Option<u32> {
        match *op {
            RegisterOp::Read(v) => (v == *state).then_some(v),
            RegisterOp::Write(v) => Some(v),
            RegisterOp::Cas { from, to, outcome } => match outcome {
                CasOutcome::Matched => (from == *state).then_some(to),
                CasOutcome::Mismatched => (from != *state).then_some(*state),
                CasOutcome::Unknown => Some(if from == *state { to } else { *state }),
            },
        }
    }

    fn is_read_only(&self, op: &RegisterOp) -> bool {
        matches!(
            op,
            RegisterOp::Read(_)
                | RegisterOp::Cas {
                    outcome: CasOutcome::Mismatched,
                    ..
                }
        )
    }

    fn is_blind(&self, op: &RegisterOp) -> bool {
        matches!(op, RegisterOp::Write(_))
    }

    fn show(&self, state: &u32, values: &ValueTable) -> Value {
        values.value(*state)
    }
}
