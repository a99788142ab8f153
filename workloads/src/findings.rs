//! What the workloads' own checkers share: reading an op's result as JSON,
//! and collecting one checker's findings into its verdict.

use checker::history::{Op, Outcome};
use checker::{CheckerResult, Validity};
use serde_json::{json, Value};

use crate::Checked;

/// At most this many findings are listed per checker.
const SHOW: usize = 20;

/// A history value as JSON.
pub(crate) fn json_of(v: &checker::value::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// An op's result as JSON; `None` when its outcome is unknown.
pub(crate) fn output(op: &Op) -> Option<Value> {
    match &op.output {
        Outcome::Ok(v) => Some(json_of(v)),
        Outcome::Unknown => None,
    }
}

/// What one checker found.
pub(crate) struct Findings {
    name: &'static str,
    what: &'static str,
    count: usize,
    examples: Vec<Value>,
    /// How many things it looked at (for the summary).
    pub(crate) checked: usize,
}

impl Findings {
    /// A checker `name` looking at `what` (plural noun).
    pub(crate) fn new(name: &'static str, what: &'static str) -> Self {
        Findings {
            name,
            what,
            count: 0,
            examples: Vec::new(),
            checked: 0,
        }
    }

    /// One thing found wrong; the first few are kept as examples.
    pub(crate) fn add(&mut self, v: Value) {
        self.count += 1;
        if self.examples.len() < SHOW {
            self.examples.push(v);
        }
    }

    /// Its verdict: invalid if anything was found, else `unknown` with the
    /// reason given, else valid.
    pub(crate) fn done(self, checked: &mut Checked, unknown: Option<&str>) {
        let (valid, summary) = match (self.count, unknown) {
            (0, Some(why)) => (Validity::Unknown, why.to_string()),
            (0, None) => (
                Validity::Valid,
                format!("{} {} checked, none wrong", self.checked, self.what),
            ),
            (n, _) => (
                Validity::Invalid,
                format!("{n} of {} {} wrong", self.checked, self.what),
            ),
        };
        checked.add(
            self.name,
            CheckerResult::new(
                valid,
                summary,
                json!({"found": self.count, "examples": self.examples}),
            ),
        );
    }
}
