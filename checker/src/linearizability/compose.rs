//! An unpartitioned check decided by a proof rather than by a search of the whole.
//!
//! Each key's search yields an order of that key's ops. Merged with real time into
//! one order of the whole history (always possible when every key's order is
//! right: linearizability is local, Herlihy and Wing 1990), and replayed op by op
//! on the whole-map model with every real-time constraint checked, that order
//! proves the history linearizable as one object. Nothing is taken on trust: an
//! order that fails the replay proves nothing, and the whole-history search runs
//! as before. A history some key refutes also goes to that search (or to a
//! refuter that needs no partitioning, such as [`crate::versions`]).

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use super::{check_with_orders, CheckOptions, CheckStats, Linearizability, Whole};
use crate::history::History;
use crate::model::{Model, ModelError, ValueTable};
use crate::validity::Validity;

/// `Valid` with its proof checked, or `None` when no proof was found.
pub fn composed<M: Model + Sync>(
    model: &M,
    history: &History,
    options: &CheckOptions,
) -> Result<Option<Linearizability>, ModelError> {
    let started = Instant::now();
    let by_key = CheckOptions {
        partition: true,
        // Half the budget, so the whole search keeps the rest.
        time_limit: options.time_limit.map(|t| t / 2),
        ..options.clone()
    };
    let (result, orders) = check_with_orders(model, history, &by_key)?;
    if result.valid != Validity::Valid {
        return Ok(None);
    }
    let Some(orders) = orders.into_iter().collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    let Some(order) = merge(history, orders) else {
        return Ok(None);
    };
    if !replays(&Whole::new(model, history.keys.len()), history, &order)? {
        return Ok(None);
    }
    Ok(Some(Linearizability {
        valid: Validity::Valid,
        model: model.name().to_string(),
        partitioned: false,
        keys: 1,
        ops: history.ops.len(),
        indeterminate: history.ops.iter().filter(|o| o.is_indeterminate()).count(),
        unknown: None,
        failures: Vec::new(),
        stats: CheckStats {
            elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
            ..result.stats
        },
    }))
}

/// Interleaves the keys' orders so that no op comes after one that began after it
/// returned; `None` if at some point no key's next op may go.
fn merge(history: &History, orders: Vec<Vec<usize>>) -> Option<Vec<usize>> {
    let ops = &history.ops;
    let mut open: BTreeSet<(u64, usize)> =
        orders.iter().flatten().map(|&i| (ops[i].ret, i)).collect();
    let mut queues: Vec<VecDeque<usize>> = orders.into_iter().map(VecDeque::from).collect();
    let mut out = Vec::with_capacity(open.len());
    while !open.is_empty() {
        let earliest = *open.first()?;
        // An op may go when every other op not yet placed returned after it began.
        let ready = |i: usize| earliest.1 == i || earliest.0 > ops[i].call;
        let (q, i) = queues
            .iter()
            .enumerate()
            .filter_map(|(q, d)| d.front().map(|&i| (q, i)))
            .filter(|&(_, i)| ready(i))
            .min_by_key(|&(_, i)| ops[i].call)?;
        queues[q].pop_front();
        open.remove(&(ops[i].ret, i));
        out.push(i);
    }
    Some(out)
}

/// True when `order` holds every determinate op once, respects real time, and the
/// whole-history model accepts it op by op.
fn replays<W: Model>(whole: &W, history: &History, order: &[usize]) -> Result<bool, ModelError> {
    let ops = &history.ops;
    let mut placed = vec![false; ops.len()];
    let mut values = ValueTable::new();
    let mut state = whole.init();
    for &i in order {
        if std::mem::replace(&mut placed[i], true) {
            return Ok(false);
        }
        let Some(op) = whole.prepare(&ops[i], &mut values)? else {
            continue;
        };
        match whole.step(&state, &op) {
            Some(next) => state = next,
            None => return Ok(false),
        }
    }
    for (i, op) in ops.iter().enumerate() {
        if !placed[i] && !op.is_indeterminate() && whole.prepare(op, &mut values)?.is_some() {
            return Ok(false);
        }
    }
    // Real time: nothing placed after an op returned before that op began.
    let mut first_return_after = u64::MAX;
    for &i in order.iter().rev() {
        if first_return_after < ops[i].call {
            return Ok(false);
        }
        first_return_after = first_return_after.min(ops[i].ret);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Register;

    fn history(text: &str) -> History {
        crate::format::jsonl::read(text.as_bytes()).unwrap()
    }

    /// Two keys; process 0 writes k0 then process 1 reads it after that returned.
    const TWO_KEYS: &str = r#"{"type":"invoke","process":0,"f":"write","key":"k0","value":1}
{"type":"invoke","process":2,"f":"write","key":"k1","value":5}
{"type":"ok","process":0,"f":"write","key":"k0","value":1}
{"type":"invoke","process":1,"f":"read","key":"k0","value":null}
{"type":"ok","process":1,"f":"read","key":"k0","value":1}
{"type":"ok","process":2,"f":"write","key":"k1","value":5}
"#;

    #[test]
    fn the_replay_refuses_orders_that_break_the_model_or_real_time_or_miss_an_op() {
        let h = history(TWO_KEYS);
        let whole = Whole::new(Register::kv(), h.keys.len());
        assert!(replays(&whole, &h, &[0, 1, 2]).unwrap());
        assert!(replays(&whole, &h, &[1, 0, 2]).unwrap());
        // The read before the write: the model refuses it.
        assert!(!replays(&whole, &h, &[2, 1, 0]).unwrap());
        // A missing op, and an op twice.
        assert!(!replays(&whole, &h, &[0, 2]).unwrap());
        assert!(!replays(&whole, &h, &[0, 0, 2]).unwrap());
    }

    #[test]
    fn merging_keeps_real_time_and_a_wrong_key_order_proves_nothing() {
        let h = history(TWO_KEYS);
        let order = merge(&h, vec![vec![0, 2], vec![1]]).unwrap();
        assert_eq!(order.len(), 3);
        let whole = Whole::new(Register::kv(), h.keys.len());
        assert!(replays(&whole, &h, &order).unwrap());
        // The read placed before the write it follows in real time: no merge.
        assert!(merge(&h, vec![vec![2, 0], vec![1]]).is_none());
        let proof = composed(&Register::kv(), &h, &CheckOptions::default()).unwrap();
        assert_eq!(proof.map(|p| p.valid), Some(Validity::Valid));
    }
}
