//! Workload `echo` (Maelstrom's first): each request carries a text the node
//! must send back unchanged. The checker finds every reply that differs.

use std::sync::Arc;

use checker::history::Outcome;
use checker::{CheckOptions, CheckerResult, History, Validity};
use serde_json::{json, Value};

use super::client::{field, MaelstromClient, Protocol};
use crate::{
    Checked, Client, Completion, Endpoint, Generator, Invocation, Rng, Workload, WorkloadOptions,
};

/// The `echo` workload.
pub struct Echo;

impl Workload for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn generator(&self, _options: &WorkloadOptions) -> Box<dyn Generator> {
        Box::new(Texts(0))
    }

    fn client(&self, nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client> {
        MaelstromClient::for_nodes(Arc::new(EchoProtocol), nodes, options)
    }

    fn model(&self) -> &'static str {
        "none"
    }

    fn check(&self, history: &History, _options: &CheckOptions) -> Result<Checked, String> {
        let mut checked = Checked::default();
        checked.add("echo", check(history));
        Ok(checked)
    }
}

struct Texts(u64);

impl Generator for Texts {
    fn next(&mut self, _process: u64, _rng: &mut Rng) -> Option<Invocation> {
        self.0 += 1;
        Some(Invocation {
            f: "echo".into(),
            key: None,
            value: json!(format!("Please echo {}", self.0)),
        })
    }

    fn final_ops(&self) -> Vec<Invocation> {
        Vec::new()
    }
}

struct EchoProtocol;

impl Protocol for EchoProtocol {
    fn body(&self, op: &Invocation) -> Value {
        json!({"type": "echo", "echo": op.value})
    }

    fn done(&self, _op: &Invocation, reply: &Value) -> Completion {
        field(reply, "echo")
    }

    fn harmless(&self, _op: &Invocation) -> bool {
        true
    }
}

/// Every answered echo must carry back exactly what was sent.
pub fn check(history: &History) -> CheckerResult {
    let mut wrong = Vec::new();
    let mut answered = 0u64;
    for op in &history.ops {
        if let Outcome::Ok(got) = &op.output {
            answered += 1;
            if *got != op.input {
                wrong.push(json!({"line": op.line, "process": op.process, "node": op.node.as_deref(), "sent": op.input, "got": got}));
            }
        }
    }
    let valid = if wrong.is_empty() {
        Validity::Valid
    } else {
        Validity::Invalid
    };
    let summary = match wrong.first() {
        None => format!("{answered} echoes, every one unchanged"),
        Some(w) => format!(
            "{} of {answered} echoes came back changed (first: sent {}, got {})",
            wrong.len(),
            w["sent"],
            w["got"]
        ),
    };
    wrong.truncate(20);
    CheckerResult::new(
        valid,
        summary,
        json!({"answered": answered, "changed": wrong}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(lines: &[String]) -> History {
        checker::format::jsonl::read(lines.join("\n").as_bytes()).unwrap()
    }

    fn op(p: u64, sent: &str, got: &str) -> [String; 2] {
        [
            format!(r#"{{"type":"invoke","process":{p},"f":"echo","value":"{sent}"}}"#),
            format!(r#"{{"type":"ok","process":{p},"f":"echo","value":"{got}"}}"#),
        ]
    }

    #[test]
    fn changed_echoes_are_caught_and_faithful_ones_pass() {
        let good: Vec<String> = [op(0, "a", "a"), op(1, "b", "b")].concat();
        assert_eq!(check(&history(&good)).valid, Validity::Valid);
        let bad: Vec<String> = [op(0, "a", "a"), op(1, "b", "B")].concat();
        let r = check(&history(&bad));
        assert_eq!(r.valid, Validity::Invalid);
        assert!(r.summary.contains("1 of 2"), "{}", r.summary);
    }
}
