//! Workloads `g-counter` and `pn-counter`: clients add deltas at any node
//! (never negative for the g-counter) and read the counter; once the network
//! heals, a read on every node must fall within what the adds allow: at least
//! the acknowledged adds plus every possibly applied negative one, at most the
//! acknowledged adds plus every possibly applied positive one.

use std::sync::Arc;

use checker::history::Outcome;
use checker::{CheckOptions, CheckerResult, History, Validity};
use serde_json::{json, Value};

use super::client::{field, final_reads, MaelstromClient, Protocol};
use crate::{
    Checked, Client, Completion, Endpoint, Generator, Invocation, Rng, Workload, WorkloadOptions,
};

/// The `g-counter` (`negative` false) or `pn-counter` workload.
pub struct Counter {
    /// Whether deltas may be negative.
    pub negative: bool,
}

impl Workload for Counter {
    fn name(&self) -> &'static str {
        if self.negative {
            "pn-counter"
        } else {
            "g-counter"
        }
    }

    fn generator(&self, options: &WorkloadOptions) -> Box<dyn Generator> {
        Box::new(Deltas {
            negative: self.negative,
            nodes: options.nodes,
        })
    }

    fn client(&self, nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client> {
        MaelstromClient::for_nodes(Arc::new(CounterProtocol), nodes, options)
    }

    fn model(&self) -> &'static str {
        "none"
    }

    fn check(&self, history: &History, _options: &CheckOptions) -> Result<Checked, String> {
        let mut checked = Checked::default();
        checked.add("counter", check(history));
        Ok(checked)
    }
}

/// Adds of small deltas and reads, half and half.
struct Deltas {
    negative: bool,
    nodes: usize,
}

impl Generator for Deltas {
    fn next(&mut self, _process: u64, rng: &mut Rng) -> Option<Invocation> {
        if rng.chance(0.5) {
            return Some(Invocation {
                f: "read".into(),
                key: None,
                value: Value::Null,
            });
        }
        let delta = if self.negative {
            rng.below(11) as i64 - 5
        } else {
            rng.below(6) as i64
        };
        Some(Invocation {
            f: "add".into(),
            key: None,
            value: json!(delta),
        })
    }

    fn final_ops(&self) -> Vec<Invocation> {
        final_reads(self.nodes)
    }
}

struct CounterProtocol;

impl Protocol for CounterProtocol {
    fn body(&self, op: &Invocation) -> Value {
        match op.f.as_str() {
            "add" => json!({"type": "add", "delta": op.value}),
            _ => json!({"type": "read"}),
        }
    }

    fn done(&self, op: &Invocation, reply: &Value) -> Completion {
        match op.f.as_str() {
            "add" => Completion::Ok(op.value.clone()),
            _ => field(reply, "value"),
        }
    }

    fn harmless(&self, op: &Invocation) -> bool {
        op.f == "read"
    }
}

/// Every final read (a `read` whose value says `final`) within the bounds the
/// adds allow.
pub fn check(history: &History) -> CheckerResult {
    let (mut acked, mut low, mut high) = (0i64, 0i64, 0i64);
    let mut adds = 0u64;
    for op in &history.ops {
        if &*op.f != "add" {
            continue;
        }
        let Some(d) = op.input.as_i64() else { continue };
        adds += 1;
        if op.is_indeterminate() {
            low += d.min(0);
            high += d.max(0);
        } else {
            acked += d;
        }
    }
    let (low, high) = (acked + low, acked + high);
    let mut finals = Vec::new();
    let mut outside = Vec::new();
    for op in &history.ops {
        let is_final = op.input.get("final") == Some(&checker::value::Value::Bool(true));
        if &*op.f != "read" || !is_final {
            continue;
        }
        let Outcome::Ok(v) = &op.output else { continue };
        let node = op.node.as_deref().unwrap_or("?");
        match v.as_i64() {
            Some(n) if (low..=high).contains(&n) => finals.push(json!({"node": node, "value": n})),
            _ => {
                let item = json!({"node": node, "value": v, "line": op.ret_line});
                finals.push(item.clone());
                outside.push(item);
            }
        }
    }
    let valid = if outside.is_empty() {
        Validity::Valid
    } else {
        Validity::Invalid
    };
    let range = if low == high {
        format!("{low}")
    } else {
        format!("{low}..={high}")
    };
    let summary = match outside.first() {
        None if finals.is_empty() => format!("{adds} adds; no final read answered"),
        None => format!(
            "{adds} adds; every one of {} final reads in {range}",
            finals.len()
        ),
        Some(o) => format!(
            "{} of {} final reads outside {range} (first: {} read {})",
            outside.len(),
            finals.len(),
            o["node"],
            o["value"]
        ),
    };
    CheckerResult::new(
        valid,
        summary,
        json!({"adds": adds, "acknowledged_sum": acked, "lower": low, "upper": high, "final_reads": finals, "outside": outside}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sequential ops: (f, value, result or None for info).
    fn history(ops: &[(&str, Value, Option<Value>)]) -> History {
        let mut lines = Vec::new();
        for (p, (f, v, out)) in ops.iter().enumerate() {
            lines.push(format!(
                r#"{{"type":"invoke","process":{p},"f":"{f}","value":{v}}}"#
            ));
            lines.push(match out {
                Some(o) => format!(r#"{{"type":"ok","process":{p},"f":"{f}","value":{o}}}"#),
                None => format!(r#"{{"type":"info","process":{p},"f":"{f}","value":{v}}}"#),
            });
        }
        checker::format::jsonl::read(lines.join("\n").as_bytes()).unwrap()
    }

    fn fin(node: &str, v: i64) -> (&'static str, Value, Option<Value>) {
        ("read", json!({"node": node, "final": true}), Some(json!(v)))
    }

    #[test]
    fn final_reads_must_fall_within_what_the_adds_allow() {
        let add = |d: i64, ok: bool| ("add", json!(d), ok.then(|| json!(d)));
        let ops = [add(3, true), add(-2, false), add(4, false)];
        for (v, valid) in [
            (3, true),
            (1, true),
            (7, true),
            (5, true),
            (0, false),
            (8, false),
        ] {
            let mut all = ops.to_vec();
            all.push(fin("n1", 5));
            all.push(fin("n2", v));
            let r = check(&history(&all));
            let want = if valid {
                Validity::Valid
            } else {
                Validity::Invalid
            };
            assert_eq!(r.valid, want, "read {v}: {}", r.summary);
        }
        // Reads that are not final are not judged (the counter converges later).
        let r = check(&history(&[
            add(3, true),
            ("read", json!(null), Some(json!(0))),
            fin("n1", 3),
        ]));
        assert_eq!(r.valid, Validity::Valid);
        // A read of something that is no number is outside any range.
        let r = check(&history(&[
            add(1, true),
            (
                "read",
                json!({"node": "n1", "final": true}),
                Some(json!("1")),
            ),
        ]));
        assert_eq!(r.valid, Validity::Invalid);
    }
}
