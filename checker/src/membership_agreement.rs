//! Membership agreement, read from node logs: once the faults are healed and the
//! cluster has settled, every member of the newest leader's configuration holds
//! that same configuration. A member that still believes in another one (say, a
//! change that was truncated from its log) counts a different quorum from the
//! rest, which is how two leaders of one term become possible later.
//!
//! Nodes log `members now [..]` whenever their configuration changes and list it
//! in their `recovered:` line at start. A node outside the newest configuration
//! is not judged: a removed node may never hear of its removal.

use std::collections::BTreeSet;

use serde_json::json;

use crate::{CheckerResult, Validity};

/// The member list of a `members now [...]` or `recovered: ... members [...],`
/// line, if the line is one.
fn members(line: &str) -> Option<BTreeSet<String>> {
    let rest = match line.split_once(" members now ") {
        Some((_, rest)) => rest,
        None => {
            line.split_once(" recovered: ")?
                .1
                .split_once(" members ")?
                .1
        }
    };
    let list = rest.strip_prefix('[')?.split_once(']')?.0;
    Some(
        list.split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// A configuration and the (1-based) log line that stated it.
type Stated = (BTreeSet<String>, usize);

/// The term of a `leader in term T` line.
fn leader_term(line: &str) -> Option<u64> {
    line.split_once(" leader in term ")?.1.trim().parse().ok()
}

/// Checks the logs of one node each, given as (node id, log text).
pub fn check_logs(logs: &[(String, String)]) -> CheckerResult {
    // Each node's last configuration (and the line it came from), and the
    // newest leadership (term, node).
    let mut last: Vec<(&str, Option<Stated>)> = Vec::new();
    let mut newest: Option<(u64, &str)> = None;
    for (node, text) in logs {
        let mut mine = None;
        for (i, line) in text.lines().enumerate() {
            // Only the main group's lines: a shard's group (`n1/s2`) has its
            // own, fixed members.
            if line.split(' ').nth(1).is_some_and(|who| who.contains('/')) {
                continue;
            }
            if let Some(m) = members(line) {
                mine = Some((m, i + 1));
            }
            if let Some(t) = leader_term(line) {
                if newest.is_none_or(|(nt, _)| t > nt) {
                    newest = Some((t, node));
                }
            }
        }
        last.push((node, mine));
    }
    let Some((term, leader)) = newest else {
        return CheckerResult::new(
            Validity::Unknown,
            "no node logged a leadership, so there is no configuration to agree on",
            json!({}),
        );
    };
    let Some(Some((config, _))) = last.iter().find(|(n, _)| *n == leader).map(|(_, m)| m) else {
        return CheckerResult::new(
            Validity::Unknown,
            format!("leader {leader} (term {term}) logged no configuration"),
            json!({"leader": leader, "term": term}),
        );
    };
    let mut disagree = Vec::new();
    for (node, mine) in &last {
        if !config.contains(*node) {
            continue;
        }
        match mine {
            Some((m, line)) if m != config => disagree.push(json!({
                "node": node,
                "members": m,
                "at": format!("nodes/{node}/node.log:{line}"),
            })),
            _ => {}
        }
    }
    let summary = match disagree.first() {
        None => format!(
            "the {} member(s) of leader {leader}'s configuration (term {term}) agree on it",
            config.len()
        ),
        Some(d) => format!(
            "{} member(s) disagree with leader {leader} (term {term}, members {:?}); first: {} believes {} ({})",
            disagree.len(),
            config,
            d["node"].as_str().unwrap_or("?"),
            d["members"],
            d["at"].as_str().unwrap_or("?"),
        ),
    };
    CheckerResult::new(
        if disagree.is_empty() {
            Validity::Valid
        } else {
            Validity::Invalid
        },
        summary,
        json!({"leader": leader, "term": term, "members": config, "disagree": disagree}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(lines: &[&str]) -> String {
        lines.join("\n") + "\n"
    }

    #[test]
    fn a_member_holding_a_truncated_configuration_is_named() {
        let logs = vec![
            (
                "n1".to_string(),
                log(&[
                    "1.0 n1 recovered: term 0, log 1..=0, snapshot at 0, members [\"n1\", \"n2\", \"n3\"], bugs []",
                    "2.0 n1 leader in term 2",
                    "2.1 n1 members now [\"n1\", \"n2\"]",
                    "3.0 n1 stepping down in term 2",
                ]),
            ),
            (
                "n2".to_string(),
                log(&[
                    "1.0 n2 recovered: term 0, log 1..=0, snapshot at 0, members [\"n1\", \"n2\", \"n3\"], bugs []",
                    "2.9 n2 leader in term 3",
                ]),
            ),
            (
                "n3".to_string(),
                log(&["1.0 n3 recovered: term 0, log 1..=0, snapshot at 0, members [\"n1\", \"n2\", \"n3\"], bugs []"]),
            ),
        ];
        let r = check_logs(&logs);
        assert_eq!(r.valid, Validity::Invalid, "{}", r.summary);
        assert!(r.summary.contains("n1 believes"), "{}", r.summary);
        assert!(r.summary.contains("nodes/n1/node.log:3"), "{}", r.summary);
    }

    #[test]
    fn agreement_and_a_removed_node_left_behind_are_valid() {
        let logs = vec![
            (
                "n1".to_string(),
                log(&[
                    "1.0 n1 recovered: term 0, log 1..=0, snapshot at 0, members [\"n1\", \"n2\", \"n3\"], bugs []",
                    "2.0 n1 leader in term 2",
                    "2.1 n1 members now [\"n1\", \"n2\"]",
                ]),
            ),
            (
                "n2".to_string(),
                log(&["1.0 n2 recovered: term 0, log 1..=0, snapshot at 0, members [\"n1\", \"n2\", \"n3\"], bugs []", "2.2 n2 members now [\"n1\", \"n2\"]"]),
            ),
            // Removed, never told: not judged.
            (
                "n3".to_string(),
                log(&["1.0 n3 recovered: term 0, log 1..=0, snapshot at 0, members [\"n1\", \"n2\", \"n3\"], bugs []"]),
            ),
        ];
        let r = check_logs(&logs);
        assert_eq!(r.valid, Validity::Valid, "{}", r.summary);
    }
}
