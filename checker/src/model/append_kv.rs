//! `append-kv`: a string per key with get, put and append (Porcupine's kv histories).

use std::sync::Arc;

use super::{expect_ok, unknown_f, Model, ModelError, ValueTable};
use crate::history::Op;
use crate::value::Value;

/// A string register, empty initially; `get` of a missing key reads `""`.
#[derive(Clone, Copy, Debug, Default)]
pub struct AppendKv;

/// An append-kv op.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AppendOp {
    /// Observed this string.
    Get(Arc<str>),
    /// Set the string.
    Put(Arc<str>),
    /// Concatenate to the string.
    Append(Arc<str>),
}

fn string_of(op: &Op, v: &Value, what: &str) -> Result<Arc<str>, ModelError> {
    match v {
        Value::Str(s) => Ok(Arc::from(&**s)),
        Value::Null => Ok(Arc::from("")),
        other => Err(ModelError::new(
            op,
            format!("{what} must be a string, got {other}"),
        )),
    }
}

impl Model for AppendKv {
    type State = Arc<str>;
    type Op = AppendOp;

    fn name(&self) -> &'static str {
        "append-kv"
    }

    fn init(&self) -> Arc<str> {
        Arc::from("")
    }

    fn prepare(&self, op: &Op, _values: &mut ValueTable) -> Result<Option<AppendOp>, ModelError> {
        match &*op.f {
            "get" | "read" => match expect_ok(op) {
                Some(v) => Ok(Some(AppendOp::Get(string_of(op, v, "get's result")?))),
                None => Ok(None),
            },
            "put" | "write" => Ok(Some(AppendOp::Put(string_of(
                op,
                &op.input,
                "put's value",
            )?))),
            "append" => Ok(Some(AppendOp::Append(string_of(
                op,
                &op.input,
                "append's value",
            )?))),
            _ => Err(unknown_f(op, "append-kv", "get, put, append")),
        }
    }

    fn step(&self, state: &Arc<str>, op: &AppendOp) -> Option<Arc<str>> {
        match op {
            AppendOp::Get(s) => (**s == **state).then(|| state.clone()),
            AppendOp::Put(s) => Some(s.clone()),
            AppendOp::Append(s) => {
                let mut out = String::with_capacity(state.len() + s.len());
                out.push_str(state);
                out.push_str(s);
                Some(Arc::from(out))
            }
        }
    }

    const INTERN: bool = true;

    fn is_read_only(&self, op: &AppendOp) -> bool {
        matches!(op, AppendOp::Get(_))
    }

    fn is_blind(&self, op: &AppendOp) -> bool {
        matches!(op, AppendOp::Put(_))
    }

    fn heap_bytes(&self, state: &Arc<str>) -> usize {
        state.len() + 16
    }

    fn show(&self, state: &Arc<str>, _values: &ValueTable) -> Value {
        Value::Str((**state).into())
    }
}
