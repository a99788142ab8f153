//! Lost acknowledged writes on registers (`read`, `write`, `cas` by key).
//!
//! A write `w` was acknowledged; a read began after `w` ended and returned a
//! value `u` that no operation could have written after `w` began (every
//! write of `u`, and every cas to `u`, ended before `w` was invoked; for
//! `null`, nothing ever wrote it). In any linearization that read follows `w`
//! and everything it returns was overwritten by `w`, so `w` is gone: the
//! system lost it. This is a necessary condition of linearizability, checked in
//! O(n log n) per key, whose counterexample names the lost write and the read
//! that missed it, which is what a user of a failover (Redis Sentinel, a
//! primary that loses its unreplicated tail) needs to see. A write the key's
//! last read misses too is counted lost; one a later read covers again was
//! only missed by stale reads (a lagging replica).

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::history::{History, Op, Outcome, NEVER};
use crate::linearizability::OpView;
use crate::value::{Key, Value};
use crate::Validity;

/// At most this many examples are kept.
const EXAMPLES: usize = 10;

/// One acknowledged write and a later read that did not see it nor anything after it.
#[derive(Clone, Debug, Serialize)]
pub struct LostWrite {
    /// The key.
    pub key: Option<Key>,
    /// True when the key's last read misses the write too: it never came back.
    pub lost: bool,
    /// The acknowledged write (or cas) that the read missed.
    pub write: OpView,
    /// The read that began after the write ended.
    pub read: OpView,
    /// The node that acknowledged the write, if recorded.
    pub write_node: Option<String>,
    /// The node that answered the read, if recorded.
    pub read_node: Option<String>,
    /// Why the read's value cannot come after the write.
    pub reason: String,
}

/// The `lost-writes` checker's result.
#[derive(Clone, Debug, Serialize)]
pub struct LostWrites {
    /// false when some read missed an acknowledged write.
    pub valid: Validity,
    /// Acknowledged writes that the key's last read misses too: lost for good.
    pub lost: usize,
    /// Acknowledged writes some read missed but the last read covers (stale reads).
    pub missed: usize,
    /// Reads that missed an acknowledged write.
    pub reads: usize,
    /// Keys with such a read.
    pub keys: usize,
    /// The first few, lost writes first, each group in order of the reads.
    pub examples: Vec<LostWrite>,
}

impl LostWrites {
    /// One line: lost and missed writes, and the first one with its nodes.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} acknowledged write(s) lost for good and {} missed by stale reads, on {} key(s), seen by {} read(s)",
            self.lost, self.missed, self.keys, self.reads
        );
        if let Some(e) = self.examples.first() {
            let node = |n: &Option<String>| n.clone().unwrap_or_else(|| "?".into());
            text.push_str(&format!(
                "; first: {} {} acknowledged by {}, then a read from {} returned {}{}",
                e.write.f,
                e.write.value,
                node(&e.write_node),
                node(&e.read_node),
                e.read
                    .output
                    .as_ref()
                    .map_or("?".to_string(), |v| v.to_string()),
                if e.lost {
                    " (and the last read misses it too)"
                } else {
                    ""
                }
            ));
        }
        text
    }

    /// As a [`crate::CheckerResult`].
    pub fn result(&self) -> crate::CheckerResult {
        crate::CheckerResult::new(self.valid, self.summary(), self)
    }
}

/// The value an op leaves in the register if it takes effect, for writes,
/// cas and delete (which leaves null). A cas that answered "no match"
/// (`false`, Jepsen's `:fail :cas`) wrote nothing, so it is no writer at all.
fn written(op: &Op) -> Option<&Value> {
    match &*op.f {
        "write" => Some(&op.input),
        "cas" if op.output == Outcome::Ok(Value::Bool(false)) => None,
        "cas" => op.input.as_pair().map(|(_, new)| new),
        "delete" => Some(&Value::Null),
        _ => None,
    }
}

/// Operations whose effect on a register this checker knows.
fn known(f: &str) -> bool {
    matches!(f, "read" | "write" | "cas" | "delete")
}

/// One key's ops, indexed for the question "which acknowledged write must a
/// read that begins at position p see at least?".
struct KeyIndex<'h> {
    /// The latest end (position) of anything that may have written each value;
    /// the initial null "ends" before the first event. Indeterminate ops end never.
    last_writer: HashMap<&'h Value, i128>,
    /// Acknowledged writes as (end, start, index), by end.
    acked: Vec<(u64, u64, usize)>,
    /// For each prefix of `acked`, the (start, index) of the write that began last.
    latest: Vec<(u64, usize)>,
}

impl<'h> KeyIndex<'h> {
    fn new(history: &History, values: &[(usize, &'h Value)]) -> Self {
        let mut last_writer: HashMap<&Value, i128> = HashMap::new();
        last_writer.insert(&Value::Null, -1);
        let mut acked = Vec::new();
        for &(i, v) in values {
            let op = &history.ops[i];
            let end = if op.ret == NEVER {
                i128::MAX
            } else {
                op.ret as i128
            };
            let e = last_writer.entry(v).or_insert(end);
            *e = (*e).max(end);
            if matches!(op.output, Outcome::Ok(_)) && op.ret != NEVER {
                acked.push((op.ret, op.call, i));
            }
        }
        acked.sort_unstable();
        let mut latest: Vec<(u64, usize)> = Vec::with_capacity(acked.len());
        for &(_, call, i) in &acked {
            let best = latest.last().copied().filter(|(c, _)| *c >= call);
            latest.push(best.unwrap_or((call, i)));
        }
        KeyIndex {
            last_writer,
            acked,
            latest,
        }
    }

    /// The acknowledged write a read of `value` beginning at `call` misses, if
    /// any, with the end of the latest writer of `value` (negative: initial).
    fn missed(&self, value: &Value, call: u64) -> Option<(usize, i128)> {
        // A value nothing wrote is another anomaly (linearizability names it).
        let writer_end = *self.last_writer.get(value)?;
        let before = self.acked.partition_point(|(ret, _, _)| *ret < call);
        let &(start, w) = self.latest.get(before.checked_sub(1)?)?;
        ((start as i128) > writer_end).then_some((w, writer_end))
    }

    /// True when a read of `value` beginning at `call` misses write `w`.
    fn misses(&self, history: &History, value: &Value, call: u64, w: usize) -> bool {
        let op = &history.ops[w];
        op.ret < call
            && self
                .last_writer
                .get(value)
                .is_some_and(|&end| (op.call as i128) > end)
    }
}

/// What one key's reads show: (lost for good, read position, write, read,
/// end of the read value's latest writer), and the writes lost and missed.
#[derive(Default)]
struct KeyFindings {
    found: Vec<(bool, u64, usize, usize, i128)>,
    lost: Vec<usize>,
    missed: Vec<usize>,
}

fn check_key(history: &History, ops: &[usize]) -> KeyFindings {
    // An op of another kind could change the value in ways not modelled here:
    // judge nothing rather than cry wolf.
    if ops.iter().any(|&i| !known(&history.ops[i].f)) {
        return KeyFindings::default();
    }
    let values: Vec<(usize, &Value)> = ops
        .iter()
        .filter_map(|&i| Some((i, written(&history.ops[i])?)))
        .collect();
    let index = KeyIndex::new(history, &values);
    let reads: Vec<(usize, &Value)> = ops
        .iter()
        .filter_map(|&r| match &history.ops[r].output {
            Outcome::Ok(u) if &*history.ops[r].f == "read" => Some((r, u)),
            _ => None,
        })
        .collect();
    let last = reads.iter().max_by_key(|(r, _)| history.ops[*r].call);
    let mut out = KeyFindings::default();
    for &(r, u) in &reads {
        let call = history.ops[r].call;
        let Some((w, writer_end)) = index.missed(u, call) else {
            continue;
        };
        let gone = last.is_some_and(|&(l, lu)| index.misses(history, lu, history.ops[l].call, w));
        if gone {
            out.lost.push(w);
        } else {
            out.missed.push(w);
        }
        out.found.push((gone, call, w, r, writer_end));
    }
    out
}

/// Checks every key of `history` for reads that miss acknowledged writes
/// (keys in parallel).
pub fn check(history: &History) -> LostWrites {
    // Ops by key id, ops without a key first.
    let mut by_key: Vec<Vec<usize>> = vec![Vec::new(); history.keys.len() + 1];
    for (i, op) in history.ops.iter().enumerate() {
        by_key[op.key.map_or(0, |k| k as usize + 1)].push(i);
    }
    let per_key: Vec<KeyFindings> = by_key
        .par_iter()
        .filter(|ops| !ops.is_empty())
        .map(|ops| check_key(history, ops))
        .collect();
    let keys = per_key.iter().filter(|k| !k.found.is_empty()).count();
    let lost: HashSet<usize> = per_key
        .iter()
        .flat_map(|k| k.lost.iter().copied())
        .collect();
    let missed: HashSet<usize> = per_key
        .iter()
        .flat_map(|k| k.missed.iter().copied())
        .collect();
    let mut found: Vec<(bool, u64, usize, usize, i128)> =
        per_key.into_iter().flat_map(|k| k.found).collect();
    // Lost writes first, then stale reads, each in order of the reads.
    found.sort_unstable_by_key(|(gone, call, _, _, _)| (!gone, *call));
    let reason = |r: usize, writer_end: i128| {
        let u = match &history.ops[r].output {
            Outcome::Ok(u) => u.clone(),
            Outcome::Unknown => Value::Null,
        };
        if writer_end < 0 {
            format!("read {u} after the write ended, and nothing ever wrote {u}: it is the initial state")
        } else {
            format!("read {u} after the write ended, and every write of {u} ended before the write began")
        }
    };
    let reads = found.len();
    let missed = missed.difference(&lost).count();
    let examples = found
        .into_iter()
        .take(EXAMPLES)
        .map(|(gone, _, w, r, writer_end)| LostWrite {
            key: history.ops[w]
                .key
                .and_then(|k| history.keys.get(k as usize).cloned()),
            lost: gone,
            write: OpView::of(history, w),
            read: OpView::of(history, r),
            write_node: history.ops[w].node.as_deref().map(str::to_string),
            read_node: history.ops[r].node.as_deref().map(str::to_string),
            reason: reason(r, writer_end),
        })
        .collect();
    LostWrites {
        valid: if reads == 0 {
            Validity::Valid
        } else {
            Validity::Invalid
        },
        lost: lost.len(),
        missed,
        reads,
        keys,
        examples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history from compact lines: `process type f value` (time is the line number).
    fn history(lines: &[&str]) -> History {
        let mut text = String::new();
        for (t, line) in lines.iter().enumerate() {
            let mut parts = line.split_whitespace();
            let (p, ty, f) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let value = parts.next().unwrap_or("null");
            let node = parts
                .next()
                .map(|n| format!(",\"node\":\"{n}\""))
                .unwrap_or_default();
            text.push_str(&format!(
                "{{\"process\":{p},\"type\":\"{ty}\",\"f\":\"{f}\",\"key\":\"k\",\"value\":{value},\"time\":{t}{node}}}\n"
            ));
        }
        crate::format::jsonl::read(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_read_after_an_acknowledged_write_that_sees_an_older_value_is_a_lost_write() {
        let h = history(&[
            "0 invoke write 1",
            "0 ok write 1",
            "0 invoke write 2",
            "0 ok write 2 n1",
            "1 invoke read",
            "1 ok read 1 n3",
        ]);
        let r = check(&h);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!((r.lost, r.missed, r.reads, r.keys), (1, 0, 1, 1));
        assert!(r.examples[0].lost);
        let e = &r.examples[0];
        assert_eq!(e.write.value, Value::Int(2));
        assert_eq!(e.read.output, Some(Value::Int(1)));
        assert!(
            e.reason.contains("ended before the write began"),
            "{}",
            e.reason
        );
        // The nodes come from the completions, where the harness records them.
        assert_eq!(e.write_node.as_deref(), Some("n1"));
        assert_eq!(e.read_node.as_deref(), Some("n3"));
    }

    #[test]
    fn a_read_of_the_initial_state_after_an_acknowledged_write_is_a_lost_write() {
        let h = history(&[
            "0 invoke write 3",
            "0 ok write 3",
            "1 invoke read",
            "1 ok read null",
        ]);
        let r = check(&h);
        assert_eq!(r.valid, Validity::Invalid);
        assert!(r.examples[0].reason.contains("initial state"));
    }

    #[test]
    fn concurrent_and_indeterminate_writers_excuse_the_read() {
        let cases: [(&str, &[&str]); 4] = [
            (
                "write 1 overlaps write 2, so 1 may come last",
                &[
                    "0 invoke write 1",
                    "1 invoke write 2",
                    "1 ok write 2",
                    "0 ok write 1",
                    "2 invoke read",
                    "2 ok read 1",
                ],
            ),
            (
                "a write of 1 that never answered may take effect at any time",
                &[
                    "0 invoke write 1",
                    "0 info write 1",
                    "1 invoke write 2",
                    "1 ok write 2",
                    "2 invoke read",
                    "2 ok read 1",
                ],
            ),
            (
                "a cas to 1 ended after write 2 began",
                &[
                    "0 invoke write 2",
                    "1 invoke cas [2,1]",
                    "0 ok write 2",
                    "1 ok cas [2,1]",
                    "2 invoke read",
                    "2 ok read 1",
                ],
            ),
            (
                "a read concurrent with the write may see the old value",
                &[
                    "0 invoke write 1",
                    "0 ok write 1",
                    "0 invoke write 2",
                    "1 invoke read",
                    "0 ok write 2",
                    "1 ok read 1",
                ],
            ),
        ];
        for (why, lines) in cases {
            assert_eq!(check(&history(lines)).valid, Validity::Valid, "{why}");
        }
    }

    #[test]
    fn failed_writes_are_not_acknowledged_and_a_read_of_a_value_nobody_wrote_is_left_to_linearizability(
    ) {
        let h = history(&[
            "0 invoke write 1",
            "0 ok write 1",
            "0 invoke write 2",
            "0 fail write 2",
            "1 invoke read",
            "1 ok read 1",
            "1 invoke read",
            "1 ok read 9",
        ]);
        let r = check(&h);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
    }

    #[test]
    fn a_cas_that_answered_no_match_wrote_nothing() {
        // etcd_056's shape: the cas acknowledged `false` (no match), then a
        // read of the initial null; the search finds it linearizable.
        let h = history(&[
            "1 invoke cas [2,1]",
            "1 ok cas false",
            "0 invoke read",
            "0 ok read null",
        ]);
        assert_eq!(check(&h).valid, Validity::Valid);
        // The same cas acknowledged as applied does overwrite null.
        let applied = history(&[
            "2 invoke write 2",
            "2 ok write 2",
            "1 invoke cas [2,1]",
            "1 ok cas [2,1]",
            "0 invoke read",
            "0 ok read null",
        ]);
        assert_eq!(check(&applied).valid, Validity::Invalid);
    }

    #[test]
    fn a_delete_writes_null_and_unknown_ops_leave_the_key_unjudged() {
        let deleted = history(&[
            "0 invoke write 1",
            "0 ok write 1",
            "0 invoke delete",
            "0 ok delete",
            "1 invoke read",
            "1 ok read null",
        ]);
        assert_eq!(check(&deleted).valid, Validity::Valid);
        let appended = history(&[
            "0 invoke write 1",
            "0 ok write 1",
            "0 invoke append 5",
            "0 ok append 5",
            "1 invoke read",
            "1 ok read null",
        ]);
        assert_eq!(check(&appended).valid, Validity::Valid);
    }

    #[test]
    fn many_lost_writes_are_counted_once_each() {
        let h = history(&[
            "0 invoke write 1",
            "0 ok write 1",
            "0 invoke write 2",
            "0 ok write 2",
            "1 invoke read",
            "1 ok read 1",
            "1 invoke read",
            "1 ok read 1",
            "0 invoke write 3",
            "0 ok write 3",
            "1 invoke read",
            "1 ok read 1",
        ]);
        let r = check(&h);
        assert_eq!((r.lost, r.missed, r.reads, r.keys), (2, 0, 3, 1));
        assert_eq!(r.examples[2].write.value, Value::Int(3));
        assert!(r.examples.iter().all(|e| e.lost));
    }

    #[test]
    fn a_write_a_later_read_sees_again_was_only_missed_by_a_stale_read() {
        let h = history(&[
            "0 invoke write 1",
            "0 ok write 1",
            "0 invoke write 2",
            "0 ok write 2",
            "1 invoke read",
            "1 ok read 1",
            "1 invoke read",
            "1 ok read 2",
        ]);
        let r = check(&h);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!((r.lost, r.missed, r.reads), (0, 1, 1));
        assert!(!r.examples[0].lost);
    }
}
