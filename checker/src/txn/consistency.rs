//! Consistency models as a lattice, each defined by the anomalies it forbids
//! (after Adya's PL levels and Elle's naming). Cycle anomalies come in three
//! levels: plain (data edges only), `-process` (also session order) and
//! `-realtime` (also real-time order); only session and strict models see the
//! last two.

use std::str::FromStr;

use crate::Validity;

/// A consistency model a transactional history can be judged against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsistencyModel {
    /// Forbids G0 (dirty writes) and reads no model allows.
    ReadUncommitted,
    /// Also forbids G1a, G1b, G1c (dirty reads) and dirty updates.
    ReadCommitted,
    /// Read committed, and no cycle through an anti-dependency (G2-item).
    RepeatableRead,
    /// Read committed, and no G-single or G-nonadjacent cycle.
    SnapshotIsolation,
    /// No dependency cycle at all.
    Serializable,
    /// Serializable in an order that keeps each process's order.
    StrongSessionSerializable,
    /// Serializable in an order that keeps real-time order.
    StrictSerializable,
}

use ConsistencyModel::*;

/// Every model, weakest first.
pub const MODELS: [ConsistencyModel; 7] = [
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    SnapshotIsolation,
    Serializable,
    StrongSessionSerializable,
    StrictSerializable,
];

impl ConsistencyModel {
    /// The name results and `--consistency` use.
    pub fn name(self) -> &'static str {
        match self {
            ReadUncommitted => "read-uncommitted",
            ReadCommitted => "read-committed",
            RepeatableRead => "repeatable-read",
            SnapshotIsolation => "snapshot-isolation",
            Serializable => "serializable",
            StrongSessionSerializable => "strong-session-serializable",
            StrictSerializable => "strict-serializable",
        }
    }

    /// The models directly weaker than this one.
    fn weaker(self) -> &'static [ConsistencyModel] {
        match self {
            ReadUncommitted => &[],
            ReadCommitted => &[ReadUncommitted],
            RepeatableRead | SnapshotIsolation => &[ReadCommitted],
            Serializable => &[RepeatableRead, SnapshotIsolation],
            StrongSessionSerializable => &[Serializable],
            StrictSerializable => &[StrongSessionSerializable],
        }
    }

    /// Whether this model forbids the anomaly `kind` (`G-single-process`, `internal`, ...).
    pub fn forbids(self, kind: &str) -> bool {
        let (base, level) = if let Some(b) = kind.strip_suffix("-realtime") {
            (b, 2)
        } else if let Some(b) = kind.strip_suffix("-process") {
            (b, 1)
        } else {
            (kind, 0)
        };
        let max_level = match self {
            StrictSerializable => 2,
            StrongSessionSerializable => 1,
            _ => 0,
        };
        if level > max_level {
            return false;
        }
        let rank = |m: ConsistencyModel| match base {
            "G0" | "internal" | "incompatible-order" | "duplicate-elements" | "garbage-read" => {
                true
            }
            "G1a" | "G1b" | "G1c" | "dirty-update" => m != ReadUncommitted,
            "G-single" | "G-nonadjacent" => !matches!(m, ReadUncommitted | ReadCommitted),
            "G2-item" => !matches!(m, ReadUncommitted | ReadCommitted | SnapshotIsolation),
            // Unknown kinds are forbidden by every model: never a silent pass.
            _ => true,
        };
        rank(self)
    }
}

impl FromStr for ConsistencyModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        MODELS
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown consistency model `{s}` (known: {})",
                    MODELS.map(|m| m.name()).join(", ")
                )
            })
    }
}

/// A verdict and the models the anomalies rule out.
pub(crate) struct Verdict {
    pub valid: Validity,
    /// The weakest models violated.
    pub not: Vec<&'static str>,
    /// Every stronger model, violated as a consequence.
    pub also_not: Vec<&'static str>,
}

/// Judges `model` given the anomalies found and the classes left undecided.
pub(crate) fn judge(model: ConsistencyModel, found: &[String], unknown: &[String]) -> Verdict {
    let violated = |m: ConsistencyModel| found.iter().any(|k| m.forbids(k));
    let mut not = Vec::new();
    let mut also_not = Vec::new();
    for m in MODELS {
        if violated(m) {
            if m.weaker().iter().any(|&w| violated(w)) {
                also_not.push(m.name());
            } else {
                not.push(m.name());
            }
        }
    }
    let valid = if violated(model) {
        Validity::Invalid
    } else if unknown.iter().any(|k| model.forbids(k)) {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    Verdict {
        valid,
        not,
        also_not,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_model_forbids_what_it_should() {
        assert!(ReadUncommitted.forbids("G0"));
        assert!(!ReadUncommitted.forbids("G1c"));
        assert!(ReadCommitted.forbids("G1b"));
        assert!(!ReadCommitted.forbids("G-single"));
        assert!(SnapshotIsolation.forbids("G-nonadjacent"));
        assert!(!SnapshotIsolation.forbids("G2-item"));
        assert!(RepeatableRead.forbids("G2-item"));
        assert!(!Serializable.forbids("G-single-process"));
        assert!(StrongSessionSerializable.forbids("G-single-process"));
        assert!(!StrongSessionSerializable.forbids("G0-realtime"));
        assert!(StrictSerializable.forbids("G0-realtime"));
    }

    #[test]
    fn the_weakest_violated_model_is_named_and_the_rest_implied() {
        let v = judge(StrictSerializable, &["G2-item".to_string()], &[]);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.not, vec!["repeatable-read"]);
        assert_eq!(
            v.also_not,
            vec![
                "serializable",
                "strong-session-serializable",
                "strict-serializable"
            ]
        );
        let v = judge(Serializable, &["G-single-realtime".to_string()], &[]);
        assert_eq!(v.valid, Validity::Valid);
        assert_eq!(v.not, vec!["strict-serializable"]);
        let v = judge(Serializable, &[], &["G-single".to_string()]);
        assert_eq!(v.valid, Validity::Unknown);
        let v = judge(ReadCommitted, &[], &["G-single".to_string()]);
        assert_eq!(v.valid, Validity::Valid);
    }
}
