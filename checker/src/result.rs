//! What every checker answers: a verdict, one line saying what it looked at
//! and found, and its details. The run's result object holds one per checker
//! (`{"valid", "summary", ...details}`), so a report can show any checker
//! without knowing it.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::Validity;

/// One checker's result.
#[derive(Clone, Debug)]
pub struct CheckerResult {
    /// Its verdict.
    pub valid: Validity,
    /// One line for people: what was checked and what was found.
    pub summary: String,
    /// Everything else it reports (counts, examples), as a JSON object.
    pub details: Map<String, Value>,
}

impl CheckerResult {
    /// A result from a verdict, a summary and any serializable details
    /// (an object's fields become the details; anything else is kept under `details`).
    pub fn new(valid: Validity, summary: impl Into<String>, details: impl Serialize) -> Self {
        let details = match serde_json::to_value(details) {
            Ok(Value::Object(map)) => map,
            Ok(Value::Null) | Err(_) => Map::new(),
            Ok(other) => Map::from_iter([("details".to_string(), other)]),
        };
        CheckerResult {
            valid,
            summary: summary.into(),
            details,
        }
    }

    /// A result from a checker's JSON object that already carries `valid`
    /// (true, false or "unknown").
    pub fn from_json(summary: impl Into<String>, details: Value) -> Self {
        let valid = match details.get("valid") {
            Some(Value::Bool(true)) => Validity::Valid,
            Some(Value::Bool(false)) => Validity::Invalid,
            _ => Validity::Unknown,
        };
        Self::new(valid, summary, details)
    }

    /// The object stored in `results.json`: the details with `valid` and `summary`.
    pub fn to_value(&self) -> Value {
        let mut out = self.details.clone();
        out.insert("valid".into(), serde_json::json!(self.valid));
        out.insert("summary".into(), Value::String(self.summary.clone()));
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn details_keep_their_fields_and_gain_valid_and_summary() {
        let r =
            CheckerResult::from_json("3 keys, 0 unanswered", json!({"valid": false, "keys": 3}));
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(
            r.to_value(),
            json!({"valid": false, "keys": 3, "summary": "3 keys, 0 unanswered"})
        );
        let u = CheckerResult::from_json("?", json!({"valid": "unknown"}));
        assert_eq!(u.to_value()["valid"], "unknown");
        assert_eq!(
            CheckerResult::new(Validity::Valid, "", 5).details["details"],
            5
        );
    }
}
