//! State interning for models whose states are large (strings, queues, maps).
//!
//! The search then handles 4-byte state ids: the visited set stays compact, each
//! distinct state is stored once, and a step already taken from a state is looked up
//! instead of recomputed (an append to a long string, say).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::history::Op;
use crate::model::{Model, ModelError, ValueTable};
use crate::value::Value;

use super::memo::FxBuild;

const REFUSED: u32 = u32::MAX;

struct Table<S> {
    ids: HashMap<S, u32, FxBuild>,
    states: Vec<S>,
    steps: HashMap<(u32, u32), u32, FxBuild>,
    state_bytes: usize,
}

/// An op with its index, which keys the step cache; equality ignores the index.
#[derive(Clone, Debug)]
pub(crate) struct Numbered<O> {
    id: u32,
    op: O,
}

impl<O: PartialEq> PartialEq for Numbered<O> {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op
    }
}

impl<O: Eq> Eq for Numbered<O> {}

impl<O: std::hash::Hash> std::hash::Hash for Numbered<O> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.op.hash(state);
    }
}

/// `M` seen through interned state ids; one per search (not shared across threads).
pub(crate) struct Interning<'m, M: Model> {
    inner: &'m M,
    table: RefCell<Table<M::State>>,
    ops: Cell<u32>,
}

impl<'m, M: Model> Interning<'m, M> {
    pub(crate) fn new(inner: &'m M) -> Self {
        Interning {
            inner,
            table: RefCell::new(Table {
                ids: HashMap::default(),
                states: Vec::new(),
                steps: HashMap::default(),
                state_bytes: 0,
            }),
            ops: Cell::new(0),
        }
    }

    /// A second view of the same model with its own table, for a second search.
    pub(crate) fn fork(&self) -> Self {
        Interning::new(self.inner)
    }

    fn intern(&self, state: M::State) -> u32 {
        let mut t = self.table.borrow_mut();
        if let Some(&id) = t.ids.get(&state) {
            return id;
        }
        let id = t.states.len() as u32;
        t.state_bytes += self.inner.heap_bytes(&state);
        t.states.push(state.clone());
        t.ids.insert(state, id);
        id
    }
}

impl<M: Model> Model for Interning<'_, M> {
    type State = u32;
    type Op = Numbered<M::Op>;

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn init(&self) -> u32 {
        self.intern(self.inner.init())
    }

    fn prepare(&self, op: &Op, values: &mut ValueTable) -> Result<Option<Self::Op>, ModelError> {
        let prepared = self.inner.prepare(op, values)?;
        Ok(prepared.map(|op| {
            let id = self.ops.get();
            self.ops.set(id + 1);
            Numbered { id, op }
        }))
    }

    fn step(&self, state: &u32, Numbered { id, op }: &Self::Op) -> Option<u32> {
        if let Some(&to) = self.table.borrow().steps.get(&(*state, *id)) {
            return (to != REFUSED).then_some(to);
        }
        let next = {
            let t = self.table.borrow();
            self.inner.step(&t.states[*state as usize], op)
        };
        let to = next.map_or(REFUSED, |s| self.intern(s));
        self.table.borrow_mut().steps.insert((*state, *id), to);
        (to != REFUSED).then_some(to)
    }

    fn show(&self, state: &u32, values: &ValueTable) -> Value {
        let t = self.table.borrow();
        self.inner.show(&t.states[*state as usize], values)
    }

    fn heap_bytes(&self, _state: &u32) -> usize {
        0
    }

    fn is_read_only(&self, op: &Self::Op) -> bool {
        self.inner.is_read_only(&op.op)
    }

    fn is_blind(&self, op: &Self::Op) -> bool {
        self.inner.is_blind(&op.op)
    }

    fn side_bytes(&self) -> usize {
        let t = self.table.borrow();
        let state = std::mem::size_of::<M::State>();
        t.state_bytes
            + t.states.capacity() * state
            + t.ids.capacity() * (state + 5)
            + t.steps.capacity() * 13
    }
}
