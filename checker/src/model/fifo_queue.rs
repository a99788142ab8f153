//! `fifo-queue`: enqueue and dequeue; a dequeue of an empty queue reads null.

use std::sync::Arc;

use super::{expect_ok, unknown_f, Model, ModelError, ValueTable};
use crate::history::Op;
use crate::value::Value;

/// A FIFO queue of value ids, empty initially.
#[derive(Clone, Copy, Debug, Default)]
pub struct FifoQueue;

/// A queue op over value ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueOp {
    /// Add to the tail.
    Enqueue(u32),
    /// Took this value from the head (0: found the queue empty).
    Dequeue(u32),
    /// Indeterminate dequeue: takes the head if there is one.
    DequeueAny,
}

impl Model for FifoQueue {
    type State = Arc<[u32]>;
    type Op = QueueOp;

    fn name(&self) -> &'static str {
        "fifo-queue"
    }

    fn init(&self) -> Arc<[u32]> {
        Arc::from(Vec::new())
    }

    fn prepare(&self, op: &Op, values: &mut ValueTable) -> Result<Option<QueueOp>, ModelError> {
        match &*op.f {
            "enqueue" => {
                if op.input == Value::Null {
                    return Err(ModelError::new(
                        op,
                        "enqueue of null: null means \"empty\" to dequeue",
                    ));
                }
                Ok(Some(QueueOp::Enqueue(values.id(&op.input))))
            }
            "dequeue" => Ok(Some(match expect_ok(op) {
                Some(v) => QueueOp::Dequeue(values.id(v)),
                None => QueueOp::DequeueAny,
            })),
            _ => Err(unknown_f(op, "fifo-queue", "enqueue, dequeue")),
        }
    }

    fn step(&self, q: &Arc<[u32]>, op: &QueueOp) -> Option<Arc<[u32]>> {
        match *op {
            QueueOp::Enqueue(v) => {
                let mut next = Vec::with_capacity(q.len() + 1);
                next.extend_from_slice(q);
                next.push(v);
                Some(Arc::from(next))
            }
            QueueOp::Dequeue(0) => q.is_empty().then(|| q.clone()),
            QueueOp::Dequeue(v) => (q.first() == Some(&v)).then(|| Arc::from(&q[1..])),
            QueueOp::DequeueAny => Some(if q.is_empty() {
                q.clone()
            } else {
                Arc::from(&q[1..])
            }),
        }
    }

    const INTERN: bool = true;

    fn is_read_only(&self, op: &QueueOp) -> bool {
        matches!(op, QueueOp::Dequeue(0))
    }

    fn heap_bytes(&self, q: &Arc<[u32]>) -> usize {
        4 * q.len() + 16
    }

    fn show(&self, q: &Arc<[u32]>, values: &ValueTable) -> Value {
        Value::List(q.iter().map(|&id| values.value(id)).collect())
    }
}
