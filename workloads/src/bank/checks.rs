//! The `bank` checker: every read of the accounts (after they were opened)
//! sees each opened account, no other, no negative balance, and the opening
//! total. The opening transaction is one atomic write, so a read sees all
//! accounts or none of them.

use std::collections::BTreeMap;

use checker::history::Outcome;
use checker::{CheckerResult, History, Validity};
use serde_json::{json, Value};

/// At most this many bad reads are listed.
const SHOW: usize = 20;
/// At most this many points of the totals-over-time series.
const SERIES: usize = 2000;

/// Checks a `bank` history.
pub fn check(history: &History) -> CheckerResult {
    // The accounts and total come from the opening op (every one is alike).
    let Some(open) = history
        .ops
        .iter()
        .chain(history.failed.iter())
        .find(|op| &*op.f == "open")
    else {
        return CheckerResult::new(
            Validity::Unknown,
            "no opening of the accounts in the history",
            json!({}),
        );
    };
    let mut accounts: BTreeMap<String, i64> = BTreeMap::new();
    for m in json_of(&open.input).as_array().into_iter().flatten() {
        accounts.insert(m[1].to_string(), m[2].as_i64().unwrap_or(0));
    }
    let total: i64 = accounts.values().sum();
    // Once an opening is acknowledged, a read that begins later must see
    // the accounts (no op ever takes one away).
    let opened_at = history
        .ops
        .iter()
        .filter(|op| &*op.f == "open" && matches!(op.output, Outcome::Ok(_)))
        .map(|op| op.ret)
        .min();
    let (mut reads, mut before, mut bad) = (0usize, 0usize, Vec::new());
    let mut bad_count = 0usize;
    let mut totals = Vec::new();
    for op in &history.ops {
        if &*op.f != "read" {
            continue;
        }
        let Outcome::Ok(out) = &op.output else {
            continue;
        };
        let out = json_of(out);
        let Some(seen) = out.as_array() else { continue };
        reads += 1;
        let mut problems = Vec::new();
        let (mut sum, mut nulls, mut values) = (0i64, 0usize, 0usize);
        for m in seen {
            let account = m[1].to_string();
            if !accounts.contains_key(&account) {
                problems.push(format!("unknown account {account}"));
            }
            match &m[2] {
                Value::Null => nulls += 1,
                v => match v.as_i64() {
                    Some(n) => {
                        values += 1;
                        sum = sum.saturating_add(n);
                        if n < 0 {
                            problems.push(format!("account {account} is negative: {n}"));
                        }
                    }
                    None => problems.push(format!("account {account} holds {v}, not a balance")),
                },
            }
        }
        if values == 0 && problems.is_empty() {
            if opened_at.is_some_and(|at| op.call > at) {
                problems.push(
                    "no account exists, though their opening was acknowledged before this read began"
                        .to_string(),
                );
            } else {
                before += 1;
                continue;
            }
        }
        if values == 0 {
            // Already said: nothing is there.
        } else if nulls > 0 {
            problems.push(format!("{nulls} accounts missing beside {values} opened"));
        } else if sum != total {
            problems.push(format!("total {sum}, expected {total}"));
        }
        if totals.len() < SERIES {
            totals.push(json!([op.call_time.map(|t| t as f64 / 1e9), sum]));
        }
        if !problems.is_empty() {
            bad_count += 1;
            if bad.len() < SHOW {
                bad.push(json!({"process": op.process, "line": op.line,
                                "time_s": op.call_time.map(|t| t as f64 / 1e9),
                                "read": out, "problems": problems}));
            }
        }
    }
    let opened = reads - before;
    let details = json!({"accounts": accounts.len(), "total": total, "reads": reads,
                         "reads_before_opening": before, "bad_reads": bad_count,
                         "examples": bad, "totals": totals});
    if bad_count > 0 {
        let first = bad[0]["problems"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        return CheckerResult::new(
            Validity::Invalid,
            format!("{bad_count} of {reads} reads are wrong (first: {first})"),
            details,
        );
    }
    if opened == 0 {
        return CheckerResult::new(
            Validity::Unknown,
            format!("{reads} reads, none after the accounts were opened"),
            details,
        );
    }
    CheckerResult::new(
        Validity::Valid,
        format!(
            "{opened} reads of {} accounts all saw total {total}, none negative",
            accounts.len()
        ),
        details,
    )
}

fn json_of(v: &checker::value::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use checker::format::jsonl;

    fn history(lines: &[Value]) -> History {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        jsonl::read(text.as_bytes()).unwrap()
    }

    fn op(process: u64, f: &str, kind: &str, value: Value) -> Value {
        json!({"process": process, "type": kind, "f": f, "value": value})
    }

    fn run(reads: &[Value]) -> CheckerResult {
        let open = json!([["w", 0, 10], ["w", 1, 10]]);
        let mut lines = vec![
            op(0, "open", "invoke", open.clone()),
            op(0, "open", "ok", open),
        ];
        for r in reads {
            lines.push(op(
                1,
                "read",
                "invoke",
                json!([["r", 0, null], ["r", 1, null]]),
            ));
            lines.push(op(1, "read", "ok", r.clone()));
        }
        check(&history(&lines))
    }

    #[test]
    fn totals_must_hold_and_balances_stay_non_negative() {
        let good = run(&[
            json!([["r", 0, 5], ["r", 1, 15]]),
            json!([["r", 0, 20], ["r", 1, 0]]),
        ]);
        assert_eq!(good.valid, Validity::Valid, "{}", good.summary);
        assert_eq!(good.details["reads_before_opening"], 0);
        let wrong = run(&[json!([["r", 0, 5], ["r", 1, 10]])]);
        assert_eq!(wrong.valid, Validity::Invalid);
        assert!(
            wrong.summary.contains("total 15, expected 20"),
            "{}",
            wrong.summary
        );
        let negative = run(&[json!([["r", 0, -1], ["r", 1, 21]])]);
        assert_eq!(negative.valid, Validity::Invalid);
        assert!(
            negative.summary.contains("negative"),
            "{}",
            negative.summary
        );
        let partial = run(&[json!([["r", 0, 20], ["r", 1, null]])]);
        assert_eq!(partial.valid, Validity::Invalid);
        let stranger = run(&[json!([["r", 0, 10], ["r", 1, 10], ["r", 7, null]])]);
        assert_eq!(stranger.valid, Validity::Invalid);
        assert!(stranger.summary.contains("unknown account 7"));
        // Nothing seen after the opening was acknowledged: its writes were lost.
        let lost = run(&[json!([["r", 0, null], ["r", 1, null]])]);
        assert_eq!(lost.valid, Validity::Invalid);
        assert!(
            lost.summary.contains("opening was acknowledged"),
            "{}",
            lost.summary
        );
    }

    #[test]
    fn reads_before_an_unacknowledged_opening_decide_nothing() {
        let open = json!([["w", 0, 10], ["w", 1, 10]]);
        let reads = json!([["r", 0, null], ["r", 1, null]]);
        let lines = vec![
            op(0, "open", "invoke", open),
            op(1, "read", "invoke", reads.clone()),
            op(1, "read", "ok", reads),
            op(0, "open", "info", Value::Null),
        ];
        let r = check(&history(&lines));
        assert_eq!(r.valid, Validity::Unknown, "{}", r.summary);
        assert_eq!(r.details["reads_before_opening"], 1);
    }
}
