//! The three-valued verdict (docs/results.md): `true`, `false` or `"unknown"`.

use serde::{Serialize, Serializer};

/// A checker's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// The history satisfies the property.
    Valid,
    /// It does not; the result says why.
    Invalid,
    /// The checker could not decide (a budget ran out).
    Unknown,
}

impl Validity {
    /// Merges two verdicts: invalid over unknown over valid.
    pub fn merge(self, other: Validity) -> Validity {
        use Validity::*;
        match (self, other) {
            (Invalid, _) | (_, Invalid) => Invalid,
            (Unknown, _) | (_, Unknown) => Unknown,
            _ => Valid,
        }
    }

    /// Combines the complete search's verdict with a necessary condition's
    /// (such as lost-writes): the necessary check may only decide what the
    /// search left unknown. `Err` means they contradict each other, which is a
    /// bug in one of them: neither verdict can then be trusted.
    pub fn with_necessary(self, necessary: Validity) -> Result<Validity, Disagreement> {
        use Validity::*;
        match (self, necessary) {
            (Valid, Invalid) => Err(Disagreement),
            (Unknown, Invalid) => Ok(Invalid),
            (search, _) => Ok(search),
        }
    }

    /// The process exit code (docs/cli.md): 0 valid, 1 invalid, 2 unknown.
    pub fn exit_code(self) -> i32 {
        match self {
            Validity::Valid => 0,
            Validity::Invalid => 1,
            Validity::Unknown => 2,
        }
    }
}

impl Serialize for Validity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Validity::Valid => s.serialize_bool(true),
            Validity::Invalid => s.serialize_bool(false),
            Validity::Unknown => s.serialize_str("unknown"),
        }
    }
}

/// A necessary-condition check refuted a history the complete search accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a necessary-condition check says invalid where the complete search says valid: a checker bug, please report it with the history")]
pub struct Disagreement;

#[cfg(test)]
mod tests {
    use super::Validity::*;

    #[test]
    fn a_necessary_condition_decides_only_what_the_search_left_open() {
        assert_eq!(Unknown.with_necessary(Invalid), Ok(Invalid));
        assert_eq!(Unknown.with_necessary(Valid), Ok(Unknown));
        assert_eq!(Invalid.with_necessary(Valid), Ok(Invalid));
        assert_eq!(Valid.with_necessary(Valid), Ok(Valid));
        assert!(Valid.with_necessary(Invalid).is_err());
    }
}
