//! Sequential specifications: what one operation does to an object's state.
//!
//! A model turns each history op into its own compact op type once (`prepare`),
//! then the search calls `step` millions of times on small, interned states.

mod append_kv;
mod fifo_queue;
mod mutex;
mod register;

pub use append_kv::AppendKv;
pub use fifo_queue::FifoQueue;
pub use mutex::Mutex;
pub use register::{CasOutcome, Register, RegisterOp};

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;

use crate::history::Op;
use crate::value::Value;

/// An op the model does not understand, with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ModelError {
    /// Line of the op's invoke.
    pub line: u64,
    /// What is wrong with it.
    pub message: String,
}

impl ModelError {
    pub(crate) fn new(op: &Op, message: impl Into<String>) -> Self {
        ModelError {
            line: op.line,
            message: message.into(),
        }
    }
}

/// Maps history values to small integers so states and ops stay `Copy`-sized.
#[derive(Debug, Default, Clone)]
pub struct ValueTable {
    ids: HashMap<Value, u32, crate::linearizability::FxBuild>,
    ints: HashMap<i64, u32, crate::linearizability::FxBuild>,
    values: Vec<Value>,
}

impl ValueTable {
    /// A table where id 0 is `null`.
    pub fn new() -> Self {
        let mut t = ValueTable::default();
        t.id(&Value::Null);
        t
    }

    /// The id of a value, adding it if new.
    pub fn id(&mut self, v: &Value) -> u32 {
        // Integers are the common case: a cheaper map, no clone to look up.
        if let Value::Int(i) = v {
            if let Some(&id) = self.ints.get(i) {
                return id;
            }
            let id = self.values.len() as u32;
            self.values.push(v.clone());
            self.ints.insert(*i, id);
            return id;
        }
        if let Some(&id) = self.ids.get(v) {
            return id;
        }
        let id = self.values.len() as u32;
        self.values.push(v.clone());
        self.ids.insert(v.clone(), id);
        id
    }

    /// The value behind an id.
    pub fn value(&self, id: u32) -> Value {
        self.values.get(id as usize).cloned().unwrap_or(Value::Null)
    }
}

/// A sequential specification of one object (or, for `kv`, one key).
///
/// Contract: `step` on an op whose outcome is unknown (indeterminate) never returns
/// `None`; such an op does what it can, so linearizing it at the very end models
/// "never took effect".
pub trait Model {
    /// The object's state; small and cheap to hash.
    type State: Clone + Eq + Hash + Debug + Send + Sync;
    /// An op in the model's own terms; equal ops are interchangeable.
    type Op: Clone + Debug + Eq + Hash + Send + Sync;

    /// The model's name as `harness check --model` takes it.
    fn name(&self) -> &'static str;

    /// The state before any op.
    fn init(&self) -> Self::State;

    /// Translates a history op; `Ok(None)` when the op cannot affect any state
    /// (an indeterminate read), so the search may drop it.
    fn prepare(&self, op: &Op, values: &mut ValueTable) -> Result<Option<Self::Op>, ModelError>;

    /// The state after `op`, or `None` if `op` cannot happen in `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;

    /// The state as JSON, for counterexamples.
    fn show(&self, state: &Self::State, values: &ValueTable) -> Value;

    /// Whether states are big enough that the search should intern them (store
    /// each once and search over 4-byte ids, caching steps).
    const INTERN: bool = false;

    /// True when `op` never changes any state (a read). The search linearizes such
    /// an op as soon as it fits and never tries it later instead: nothing can fit
    /// after it that did not fit before.
    fn is_read_only(&self, _op: &Self::Op) -> bool {
        false
    }

    /// True when `op` is accepted in every state and leaves the same state
    /// whatever it ran in (a blind write). An indeterminate blind op is tried by
    /// the sweep only where it changes what an open op can do.
    fn is_blind(&self, _op: &Self::Op) -> bool {
        false
    }

    /// Heap bytes a state owns beyond its own size, for the memory budget.
    fn heap_bytes(&self, _state: &Self::State) -> usize {
        0
    }

    /// Bytes the model itself holds for the search (interned states, caches).
    fn side_bytes(&self) -> usize {
        0
    }
}

/// Every model `harness check` knows, with a line on what it checks.
pub const MODELS: &[(&str, &str)] = &[
    ("register", "read/write register (null initially)"),
    (
        "cas-register",
        "read/write/cas register; cas value [expected, new]",
    ),
    (
        "kv",
        "cas-register per key (read/write/cas/delete), keys checked independently",
    ),
    (
        "append-kv",
        "string per key with get/put/append (\"\" initially)",
    ),
    (
        "mutex",
        "lock with acquire/release (an acquire saying took_over or renewed must find it held)",
    ),
    (
        "fifo-queue",
        "FIFO queue with enqueue/dequeue (dequeue of an empty queue reads null)",
    ),
];

pub(crate) fn expect_ok(op: &Op) -> Option<&Value> {
    match &op.output {
        crate::history::Outcome::Ok(v) => Some(v),
        crate::history::Outcome::Unknown => None,
    }
}

pub(crate) fn unknown_f(op: &Op, model: &str, known: &str) -> ModelError {
    ModelError::new(
        op,
        format!(
            "operation `{}` is not part of model {model} (expected {known})",
            op.f
        ),
    )
}

/// A shared reference to a model is the same model.
impl<T: Model + ?Sized> Model for &T {
    type State = T::State;
    type Op = T::Op;
    const INTERN: bool = T::INTERN;

    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn init(&self) -> Self::State {
        (**self).init()
    }
    fn prepare(&self, op: &Op, values: &mut ValueTable) -> Result<Option<Self::Op>, ModelError> {
        (**self).prepare(op, values)
    }
    #[inline]
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State> {
        (**self).step(state, op)
    }
    fn show(&self, state: &Self::State, values: &ValueTable) -> Value {
        (**self).show(state, values)
    }
    fn heap_bytes(&self, state: &Self::State) -> usize {
        (**self).heap_bytes(state)
    }
    fn is_read_only(&self, op: &Self::Op) -> bool {
        (**self).is_read_only(op)
    }
    fn is_blind(&self, op: &Self::Op) -> bool {
        (**self).is_blind(op)
    }
    fn side_bytes(&self) -> usize {
        (**self).side_bytes()
    }
}
