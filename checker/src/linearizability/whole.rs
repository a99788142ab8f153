//! A per-key model lifted to the whole map, for checking without partitioning.

use crate::history::Op;
use crate::model::{Model, ModelError, ValueTable};
use crate::value::Value;

/// `M` applied to every key at once: the state is one `M::State` per key.
#[derive(Clone, Debug)]
pub struct Whole<M> {
    inner: M,
    slots: usize,
}

impl<M> Whole<M> {
    /// Wraps `inner` for a history with `keys` distinct keys (plus ops without one).
    pub fn new(inner: M, keys: usize) -> Self {
        Whole {
            inner,
            slots: keys + 1,
        }
    }
}

impl<M: Model> Model for Whole<M> {
    type State = Box<[M::State]>;
    type Op = (u32, M::Op);

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn init(&self) -> Self::State {
        vec![self.inner.init(); self.slots].into_boxed_slice()
    }

    fn prepare(&self, op: &Op, values: &mut ValueTable) -> Result<Option<Self::Op>, ModelError> {
        let slot = op.key.map_or(0, |k| k + 1);
        Ok(self.inner.prepare(op, values)?.map(|o| (slot, o)))
    }

    fn step(&self, state: &Self::State, (slot, op): &Self::Op) -> Option<Self::State> {
        let next = self.inner.step(&state[*slot as usize], op)?;
        let mut out = state.clone();
        out[*slot as usize] = next;
        Some(out)
    }

    const INTERN: bool = true;

    fn is_read_only(&self, (_, op): &Self::Op) -> bool {
        self.inner.is_read_only(op)
    }

    fn heap_bytes(&self, state: &Self::State) -> usize {
        state
            .iter()
            .map(|s| std::mem::size_of_val(s) + self.inner.heap_bytes(s))
            .sum()
    }

    fn show(&self, state: &Self::State, values: &ValueTable) -> Value {
        Value::List(state.iter().map(|s| self.inner.show(s, values)).collect())
    }
}
