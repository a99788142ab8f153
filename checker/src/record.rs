//! One line of a history file as a typed record: what the harness's recorder
//! writes and what reports read back (docs/history-format.md). The checker's
//! own reader (`format::jsonl`) parses the same lines on a faster path; a test
//! holds the two to each other.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `invoke`, `ok`, `fail` or `info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// A client started an operation.
    Invoke,
    /// It took effect.
    Ok,
    /// It certainly did not.
    Fail,
    /// Unknown; also every nemesis event.
    Info,
}

/// Who emitted a line: a client process (any integer) or the nemesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecordProcess {
    /// A client process.
    Client(i64),
    /// The fault injector (written as the string `"nemesis"`).
    Nemesis(NemesisTag),
}

/// The string `"nemesis"`, and nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NemesisTag {
    /// `"nemesis"`.
    Nemesis,
}

/// One event of a history. Fields are declared in the order they are written,
/// which is alphabetical, as the history files have always been.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Why a `fail` or `info` ended so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The operation (`read`, `write`, ... or a fault's `start-kill`).
    pub f: String,
    /// The key, for ops on independent keys: a string or an integer. Client
    /// lines always carry it (`null` when the op has none); nemesis lines never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Value>,
    /// The node that answered (completions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Who.
    pub process: RecordProcess,
    /// Nanoseconds since the start of the test.
    #[serde(default)]
    pub time: Option<i64>,
    /// Invocation or completion.
    #[serde(rename = "type")]
    pub kind: RecordKind,
    /// Argument on invoke, result on `ok`, the argument again otherwise.
    #[serde(default)]
    pub value: Value,
}

impl Record {
    /// A nemesis event.
    pub fn nemesis(f: &str, value: Value, time: i64) -> Record {
        Record {
            kind: RecordKind::Info,
            process: RecordProcess::Nemesis(NemesisTag::Nemesis),
            f: f.to_string(),
            key: None,
            value,
            time: Some(time),
            node: None,
            error: None,
        }
    }

    /// The client process, or `None` for the nemesis.
    pub fn client(&self) -> Option<i64> {
        match self.process {
            RecordProcess::Client(p) => Some(p),
            RecordProcess::Nemesis(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Outcome;
    use crate::value::Value as HValue;
    use serde_json::json;

    fn client(kind: RecordKind, process: i64, f: &str, value: Value, time: i64) -> Record {
        Record {
            kind,
            process: RecordProcess::Client(process),
            f: f.into(),
            key: Some(json!("k1")),
            value,
            time: Some(time),
            node: (kind != RecordKind::Invoke).then(|| "n2".into()),
            error: (kind == RecordKind::Info).then(|| "timeout".into()),
        }
    }

    #[test]
    fn records_round_trip_and_the_checker_reads_what_they_write() {
        let records = vec![
            client(RecordKind::Invoke, 0, "write", json!(3), 1),
            client(RecordKind::Invoke, -1, "cas", json!([3, 4]), 2),
            Record::nemesis("start-kill", json!(["n1"]), 3),
            client(RecordKind::Ok, 0, "write", json!(3), 4),
            client(RecordKind::Info, -1, "cas", json!([3, 4]), 5),
            client(RecordKind::Invoke, 7, "read", Value::Null, 6),
            client(RecordKind::Ok, 7, "read", json!(3), 7),
        ];
        let text: String = records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        let back: Vec<Record> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(back, records);
        // The byte format of the files stays what it was: sorted fields.
        assert!(
            text.starts_with(
                r#"{"f":"write","key":"k1","process":0,"time":1,"type":"invoke","value":3}"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"{"f":"start-kill","process":"nemesis","time":3,"type":"info","value":["n1"]}"#
            ),
            "{text}"
        );
        let h = crate::format::jsonl::read(text.as_bytes()).unwrap();
        assert_eq!(h.ops.len(), 3);
        assert_eq!(h.nemesis.len(), 1);
        assert_eq!(h.ops[1].process, -1);
        assert!(h.ops[1].is_indeterminate());
        assert_eq!(h.ops[2].output, Outcome::Ok(HValue::Int(3)));
        assert_eq!(h.ops[0].node.as_deref(), Some("n2"));
        assert!(
            serde_json::from_str::<Record>(r#"{"type":"ok","process":"nemo","f":"x"}"#).is_err()
        );
    }
}
