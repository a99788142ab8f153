//! The `saga` workload's checkers, on the final read of every saga and of the
//! services' state.
//!
//! - `outcomes`: every saga ended (completed or compensated) after the
//!   recovery wait; every acknowledged order has its saga, ended as answered;
//!   no saga exists for an order refused outright.
//! - `partial`: a completed saga charged once, shipped, refunded nothing; a
//!   compensated one refunded every charge and shipped nothing; no order was
//!   charged twice.
//! - `conservation`: each item's stock fell by the quantities of completed
//!   sagas and each wallet by their amounts, no more and no less.

use std::collections::BTreeMap;

use checker::history::Outcome;
use checker::{CheckerResult, History, Validity};
use serde_json::{json, Value};

use crate::Checked;

/// At most this many findings are listed per checker.
const SHOW: usize = 20;

fn json_of(v: &checker::value::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn result(problems: &[Value], checked: usize, what: &str, extra: Value) -> CheckerResult {
    let (valid, summary) = if problems.is_empty() {
        (
            Validity::Valid,
            format!("{checked} {what} checked, none wrong"),
        )
    } else {
        (
            Validity::Invalid,
            format!("{} of {checked} {what} wrong", problems.len()),
        )
    };
    let shown: Vec<&Value> = problems.iter().take(SHOW).collect();
    CheckerResult::new(
        valid,
        summary,
        json!({"found": problems.len(), "examples": shown, "counts": extra}),
    )
}

/// Checks a `saga` history.
pub fn check(history: &History) -> Checked {
    let mut checked = Checked::default();
    let unknown = |why: &str| CheckerResult::new(Validity::Unknown, why, json!({}));
    let Some(last) = history
        .ops
        .iter()
        .rev()
        .find_map(|op| match (&*op.f, &op.output) {
            ("read", Outcome::Ok(v)) => Some(json_of(v)),
            _ => None,
        })
    else {
        for name in ["outcomes", "partial", "conservation"] {
            checked.add(name, unknown("the final read did not complete"));
        }
        return checked;
    };
    let sagas: BTreeMap<String, Value> = last["sagas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["order"]["order"].as_str()?.to_string(), s.clone())))
        .collect();

    // outcomes
    let mut problems = Vec::new();
    let mut by_end: BTreeMap<String, usize> = BTreeMap::new();
    for (order, s) in &sagas {
        let end = s["end"].as_str().unwrap_or("running").to_string();
        *by_end.entry(end.clone()).or_default() += 1;
        if end == "running" {
            problems.push(json!({"order": order, "done": s["done"], "failed": s["failed"],
                "compensated": s["compensated"], "problem": "still running after the recovery wait"}));
        }
    }
    let mut acknowledged = 0;
    for op in history.ops.iter().filter(|op| &*op.f == "order") {
        let Outcome::Ok(out) = &op.output else {
            continue;
        };
        acknowledged += 1;
        let out = json_of(out);
        let order = json_of(&op.input)["order"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match sagas.get(&order) {
            None => problems.push(json!({"order": order, "line": op.line,
                "problem": "acknowledged, then no saga"})),
            Some(s) if s["end"] != out["end"] => problems.push(json!({"order": order, "line": op.line,
                "answered": out["end"], "final": s["end"], "problem": "ended otherwise than answered"})),
            Some(_) => {}
        }
    }
    for op in history.failed.iter().filter(|op| &*op.f == "order") {
        let order = json_of(&op.input)["order"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if sagas.contains_key(&order) {
            problems.push(json!({"order": order, "line": op.line,
                "problem": "refused outright, yet its saga exists"}));
        }
    }
    checked.add(
        "outcomes",
        result(
            &problems,
            sagas.len().max(acknowledged),
            "sagas",
            json!({"by_end": by_end, "acknowledged": acknowledged}),
        ),
    );

    // partial
    let services = &last["services"];
    let mut charges: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut refunds: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for entry in services["ledger"].as_array().into_iter().flatten() {
        let order = entry["order"].as_str().unwrap_or_default();
        let amount = entry["amount"].as_i64().unwrap_or(0);
        if entry.get("charge").is_some() {
            charges.entry(order).or_default().push(amount);
        } else {
            refunds.entry(order).or_default().push(amount);
        }
    }
    let mut problems = Vec::new();
    for (order, s) in &sagas {
        let c = charges.get(order.as_str()).map_or(0, Vec::len);
        let r = refunds.get(order.as_str()).map_or(0, Vec::len);
        let shipped = services["shipments"].get(order).is_some();
        let end = s["end"].as_str().unwrap_or("running");
        let problem = if c > 1 {
            Some("charged more than once")
        } else if end == "completed" && (c != 1 || r != 0 || !shipped) {
            Some("completed without exactly one charge kept and a shipment")
        } else if end == "compensated" && (c != r || shipped) {
            Some("compensated, yet a charge or a shipment remains")
        } else {
            None
        };
        if let Some(p) = problem {
            problems.push(
                json!({"order": order, "end": end, "charges": c, "refunds": r,
                "shipped": shipped, "done": s["done"], "failed": s["failed"],
                "compensated": s["compensated"], "problem": p}),
            );
        }
    }
    checked.add(
        "partial",
        result(
            &problems,
            sagas.len(),
            "sagas",
            json!({"charged_orders": charges.len()}),
        ),
    );

    // conservation
    let setup = history
        .ops
        .iter()
        .chain(history.failed.iter())
        .find(|op| &*op.f == "setup")
        .map(|op| json_of(&op.input));
    let (Some(setup), true) = (setup, services["set_up"].as_bool().unwrap_or(false)) else {
        checked.add("conservation", unknown("the shop was never set up"));
        return checked;
    };
    // Completed sagas took their stock and money; a running one may hold
    // anything from nothing to its own, so it widens the range allowed.
    let mut sold: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut paid: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for s in sagas.values() {
        let o = &s["order"];
        let (qty, amount) = (
            o["qty"].as_i64().unwrap_or(0),
            o["amount"].as_i64().unwrap_or(0),
        );
        let item = sold
            .entry(o["item"].as_str().unwrap_or_default().into())
            .or_default();
        let wallet = paid
            .entry(o["customer"].as_str().unwrap_or_default().into())
            .or_default();
        match s["end"].as_str() {
            Some("completed") => {
                item.0 += qty;
                item.1 += qty;
                wallet.0 += amount;
                wallet.1 += amount;
            }
            Some(_) => {}
            None => {
                item.1 += qty;
                wallet.1 += amount;
            }
        }
    }
    let mut problems = Vec::new();
    let mut count = 0;
    for (field, spent, what) in [("stock", &sold, "item"), ("wallets", &paid, "customer")] {
        for (name, initial) in setup[field].as_object().into_iter().flatten() {
            count += 1;
            let initial = initial.as_i64().unwrap_or(0);
            // An entry the setup never reached (a partial setup) has no
            // baseline: nothing to judge.
            let Some(now) = services[field][name].as_i64() else {
                count -= 1;
                continue;
            };
            let (least, most) = spent.get(name).copied().unwrap_or((0, 0));
            if !(initial - most..=initial - least).contains(&now) {
                problems.push(json!({what: name, "initial": initial, "final": now,
                    "completed_sagas_took": least, "running_sagas_may_hold": most - least,
                    "problem": format!("{field} not conserved")}));
            }
        }
    }
    checked.add(
        "conservation",
        result(
            &problems,
            count,
            "stocks and wallets",
            json!({"sold": sold, "paid": paid}),
        ),
    );
    checked
}

#[cfg(test)]
mod tests {
    use super::*;
    use checker::format::jsonl;

    fn history(ops: &[(&str, Value, &str, Value)]) -> History {
        let mut text = String::new();
        for (i, (f, input, kind, out)) in ops.iter().enumerate() {
            text.push_str(&format!(
                "{}\n{}\n",
                json!({"type": "invoke", "process": i, "f": f, "value": input}),
                json!({"type": kind, "process": i, "f": f, "value": out})
            ));
        }
        jsonl::read(text.as_bytes()).unwrap()
    }

    fn order(id: &str) -> Value {
        json!({"order": id, "customer": "c0", "item": "i0", "qty": 2, "amount": 10})
    }

    fn saga(id: &str, end: &str) -> Value {
        json!({"order": order(id), "end": end, "done": [], "compensated": [], "failed": null})
    }

    fn run(sagas: Value, services: Value) -> BTreeMap<String, String> {
        let ops = vec![
            (
                "setup",
                json!({"stock": {"i0": 10}, "wallets": {"c0": 100}}),
                "ok",
                json!({}),
            ),
            ("order", order("a"), "ok", saga("a", "completed")),
            ("order", order("b"), "ok", saga("b", "compensated")),
            (
                "read",
                Value::Null,
                "ok",
                json!({"sagas": sagas, "services": services}),
            ),
        ];
        check(&history(&ops))
            .checkers
            .iter()
            .map(|(k, v)| (k.clone(), v["valid"].to_string()))
            .collect()
    }

    fn services(wallet: i64, ledger: Value, shipments: Value) -> Value {
        json!({"set_up": true, "stock": {"i0": 8}, "wallets": {"c0": wallet},
               "ledger": ledger, "shipments": shipments})
    }

    #[test]
    fn sound_sagas_are_valid_and_each_fault_is_named() {
        let sagas = json!([saga("a", "completed"), saga("b", "compensated")]);
        let ledger = json!([{"charge": "a/charge", "order": "a", "amount": 10},
                            {"charge": "b/charge", "order": "b", "amount": 10},
                            {"refund": "b/charge", "order": "b", "amount": 10}]);
        let ok = run(
            sagas.clone(),
            services(90, ledger.clone(), json!({"a": {}})),
        );
        assert!(ok.values().all(|v| v == "true"), "{ok:?}");

        // Charged twice for one order (a retried charge that was not idempotent).
        let mut doubled = ledger.as_array().unwrap().clone();
        doubled.push(json!({"charge": "a/charge", "order": "a", "amount": 10}));
        let v = run(
            sagas.clone(),
            services(80, json!(doubled), json!({"a": {}})),
        );
        assert_eq!(
            (v["partial"].as_str(), v["conservation"].as_str()),
            ("false", "false")
        );

        // A compensated saga that kept its charge (the refund skipped).
        let kept = json!([{"charge": "a/charge", "order": "a", "amount": 10},
                          {"charge": "b/charge", "order": "b", "amount": 10}]);
        let v = run(sagas.clone(), services(80, kept, json!({"a": {}})));
        assert_eq!(
            (v["partial"].as_str(), v["conservation"].as_str()),
            ("false", "false")
        );

        // A saga still running, and an acknowledged one missing.
        let v = run(
            json!([saga("a", "completed"), {"order": order("b"), "end": null}]),
            services(90, ledger.clone(), json!({"a": {}})),
        );
        assert_eq!(
            (v["outcomes"].as_str(), v["conservation"].as_str()),
            ("false", "true")
        );
        // A running saga may hold its own amount, no more.
        let v = run(
            json!([saga("a", "completed"), {"order": order("b"), "end": null}]),
            services(70, ledger.clone(), json!({"a": {}})),
        );
        assert_eq!(v["conservation"], "false");
        let v = run(
            json!([saga("a", "completed")]),
            services(90, ledger, json!({"a": {}})),
        );
        assert_eq!(v["outcomes"], "false");
    }
}
