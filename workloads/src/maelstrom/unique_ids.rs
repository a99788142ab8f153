//! Workload `unique-ids`: nodes hand out ids that must be unique across the
//! whole cluster, through partitions and restarts. The checker lists every id
//! handed out twice.

use std::collections::HashMap;
use std::sync::Arc;

use checker::history::Outcome;
use checker::{CheckOptions, CheckerResult, History, Validity};
use serde_json::{json, Value};

use super::client::{field, MaelstromClient, Protocol};
use crate::{
    Checked, Client, Completion, Endpoint, Generator, Invocation, Rng, Workload, WorkloadOptions,
};

/// The `unique-ids` workload.
pub struct UniqueIds;

impl Workload for UniqueIds {
    fn name(&self) -> &'static str {
        "unique-ids"
    }

    fn generator(&self, _options: &WorkloadOptions) -> Box<dyn Generator> {
        Box::new(Generate)
    }

    fn client(&self, nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client> {
        MaelstromClient::for_nodes(Arc::new(GenerateProtocol), nodes, options)
    }

    fn model(&self) -> &'static str {
        "none"
    }

    fn check(&self, history: &History, _options: &CheckOptions) -> Result<Checked, String> {
        let mut checked = Checked::default();
        checked.add("unique-ids", check(history));
        Ok(checked)
    }
}

struct Generate;

impl Generator for Generate {
    fn next(&mut self, _process: u64, _rng: &mut Rng) -> Option<Invocation> {
        Some(Invocation {
            f: "generate".into(),
            key: None,
            value: Value::Null,
        })
    }

    fn final_ops(&self) -> Vec<Invocation> {
        Vec::new()
    }
}

struct GenerateProtocol;

impl Protocol for GenerateProtocol {
    fn body(&self, _op: &Invocation) -> Value {
        json!({"type": "generate"})
    }

    fn done(&self, _op: &Invocation, reply: &Value) -> Completion {
        field(reply, "id")
    }

    /// An id nobody received cannot collide with anything.
    fn harmless(&self, _op: &Invocation) -> bool {
        true
    }
}

/// No id may be handed out twice.
pub fn check(history: &History) -> CheckerResult {
    let mut seen: HashMap<&checker::value::Value, Vec<&checker::history::Op>> = HashMap::new();
    for op in &history.ops {
        if let Outcome::Ok(id) = &op.output {
            seen.entry(id).or_default().push(op);
        }
    }
    let ids = seen.len();
    let mut dups: Vec<(&checker::value::Value, Vec<&checker::history::Op>)> =
        seen.into_iter().filter(|(_, ops)| ops.len() > 1).collect();
    dups.sort_by_key(|(_, ops)| ops[0].line);
    let count = dups.len();
    let examples: Vec<Value> = dups
        .iter()
        .take(20)
        .map(|(id, ops)| {
            let by: Vec<Value> = ops
                .iter()
                .map(|o| json!({"line": o.ret_line, "process": o.process, "node": o.node.as_deref()}))
                .collect();
            json!({"id": id, "handed_out": by})
        })
        .collect();
    let valid = if count == 0 {
        Validity::Valid
    } else {
        Validity::Invalid
    };
    let summary = match examples.first() {
        None => format!("{ids} ids handed out, all distinct"),
        Some(e) => format!(
            "{count} ids handed out more than once (first: {} to {})",
            e["id"], e["handed_out"]
        ),
    };
    CheckerResult::new(
        valid,
        summary,
        json!({"ids": ids, "duplicated": count, "duplicates": examples}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(ids: &[&str]) -> History {
        let lines: Vec<String> = ids
            .iter()
            .enumerate()
            .flat_map(|(p, id)| {
                [
                    format!(r#"{{"type":"invoke","process":{p},"f":"generate","value":null}}"#),
                    format!(r#"{{"type":"ok","process":{p},"f":"generate","value":{id}}}"#),
                ]
            })
            .collect();
        checker::format::jsonl::read(lines.join("\n").as_bytes()).unwrap()
    }

    #[test]
    fn a_repeated_id_is_caught_whatever_its_type() {
        assert_eq!(
            check(&history(&["1", "2", r#""n1-1""#])).valid,
            Validity::Valid
        );
        let r = check(&history(&["1", r#""a""#, "1"]));
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.details["duplicated"], 1);
        // 1 and "1" are different ids.
        assert_eq!(check(&history(&["1", r#""1""#])).valid, Validity::Valid);
    }
}
