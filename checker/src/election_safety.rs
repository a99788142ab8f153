//! Election safety, read from node logs: at most one node
//! becomes leader in a term (Raft's first safety property). Two leaders in one
//! term can each commit a different entry at the same index, and the logs then
//! diverge. The client history shows that only if a client happens to read the
//! divergent entry in time. The nodes' own `leader in term T` lines always show it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::{CheckerResult, Validity};

/// At most this many split terms are listed.
const EXAMPLES: usize = 10;

/// The term of a log line `<time> <id> leader in term <T>`, if it is one.
fn leader_term(line: &str) -> Option<u64> {
    line.split_once(" leader in term ")?.1.trim().parse().ok()
}

/// The consensus group a log line speaks for: what follows `/` in the id the
/// line names (`n1/s2` is shard 2's group on n1), empty for the main group.
fn group(line: &str) -> &str {
    line.split(' ')
        .nth(1)
        .and_then(|who| who.split_once('/'))
        .map_or("", |(_, g)| g)
}

/// A (group, term) that some node claimed to lead.
type Claimed<'a> = (&'a str, u64);
/// Who claimed it: (node, 1-based log line) of each claim.
type Claims<'a> = Vec<(&'a str, usize)>;

/// Checks the logs of one node each, given as (node id, log text), whose
/// lines say `leader in term T` when the node wins an election. A node
/// running several groups (shards) names the group in each line's id, and
/// each group's terms are judged apart.
pub fn check_logs(logs: &[(String, String)]) -> CheckerResult {
    // (group, term) -> (node, line number) of every claim
    let mut claims: BTreeMap<Claimed, Claims> = BTreeMap::new();
    for (node, text) in logs {
        for (i, line) in text.lines().enumerate() {
            if let Some(term) = leader_term(line) {
                claims
                    .entry((group(line), term))
                    .or_default()
                    .push((node, i + 1));
            }
        }
    }
    let elections: usize = claims.values().map(Vec::len).sum();
    let split: Vec<(&Claimed, &Claims)> = claims
        .iter()
        .filter(|(_, c)| c.iter().map(|(n, _)| *n).collect::<BTreeSet<_>>().len() > 1)
        .collect();
    let examples: Vec<Value> = split
        .iter()
        .take(EXAMPLES)
        .map(|((group, term), c)| {
            let leaders: Vec<Value> = c
                .iter()
                .map(|(n, line)| json!({"node": n, "at": format!("nodes/{n}/node.log:{line}")}))
                .collect();
            if group.is_empty() {
                json!({"term": term, "leaders": leaders})
            } else {
                json!({"term": term, "group": group, "leaders": leaders})
            }
        })
        .collect();
    let first = examples.first().map_or(String::new(), |e| {
        let at: Vec<&str> = e["leaders"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["at"].as_str())
            .collect();
        let group = e["group"]
            .as_str()
            .map_or(String::new(), |g| format!(" of group {g}"));
        format!(", first in term {}{group}: {}", e["term"], at.join(", "))
    });
    CheckerResult::new(
        if split.is_empty() {
            Validity::Valid
        } else {
            Validity::Invalid
        },
        format!(
            "{elections} elections in {} node logs, {} term(s) with two leaders{first}",
            logs.len(),
            split.len()
        ),
        json!({
            "logs": logs.len(),
            "elections": elections,
            "split_terms": split.len(),
            "examples": examples,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_logs(logs: &[(String, String)]) -> Value {
        super::check_logs(logs).to_value()
    }

    fn logs(of: &[(&str, &str)]) -> Vec<(String, String)> {
        of.iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn one_leader_per_term_is_valid() {
        let r = check_logs(&logs(&[
            (
                "n1",
                "1.0 n1 campaigning in term 1\n1.1 n1 leader in term 1\n",
            ),
            (
                "n2",
                "3.0 n2 campaigning in term 2\n3.1 n2 leader in term 2\n",
            ),
            ("n3", "0.9 n3 recovered: term 0, log 1..=0\n"),
        ]));
        assert_eq!(r["valid"], true, "{r}");
        assert_eq!(r["elections"], 2, "{r}");
        assert_eq!(r["split_terms"], 0, "{r}");
    }

    #[test]
    fn two_leaders_in_one_term_are_named_with_their_log_lines() {
        let r = check_logs(&logs(&[
            (
                "n1",
                "1.0 n1 campaigning in term 2\n1.1 n1 leader in term 2\n",
            ),
            (
                "n2",
                "1.0 n2 campaigning in term 2\n1.2 n2 leader in term 2\n",
            ),
            ("n3", "5.0 n3 leader in term 3\n"),
        ]));
        assert_eq!(r["valid"], false, "{r}");
        assert_eq!(r["split_terms"], 1, "{r}");
        let e = &r["examples"][0];
        assert_eq!(e["term"], 2, "{r}");
        assert_eq!(e["leaders"][0]["at"], "nodes/n1/node.log:2", "{r}");
        assert_eq!(e["leaders"][1]["at"], "nodes/n2/node.log:2", "{r}");
    }

    #[test]
    fn each_shard_group_has_its_own_terms() {
        let r = check_logs(&logs(&[
            (
                "n1",
                "1.0 n1 leader in term 2\n1.1 n1/s1 leader in term 2\n",
            ),
            (
                "n2",
                "1.0 n2/s2 leader in term 2\n1.3 n2/s1 leader in term 3\n",
            ),
            ("n3", "1.4 n3/s1 leader in term 3\n"),
        ]));
        assert_eq!(r["valid"], false, "{r}");
        assert_eq!(r["split_terms"], 1, "{r}");
        assert_eq!(r["examples"][0]["group"], "s1", "{r}");
        assert_eq!(r["examples"][0]["term"], 3, "{r}");
        assert!(
            r["summary"]
                .as_str()
                .unwrap()
                .contains("term 3 of group s1"),
            "{r}"
        );
    }

    #[test]
    fn lines_that_only_look_alike_are_not_claims() {
        assert_eq!(leader_term("1.0 n1 leader in term 7"), Some(7));
        assert_eq!(leader_term("1.0 n1 leader in term seven"), None);
        assert_eq!(leader_term("1.0 n1 stepping down in term 7"), None);
    }
}
