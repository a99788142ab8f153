//! The `messaging` workload's checkers, over the final read of every inbox.
//!
//! - `sends`: every acknowledged send is in its member's inbox.
//! - `broadcasts`: every broadcast that a member which stayed up delivered, or
//!   that such a member acknowledged as its origin, or that the origin said a
//!   member acknowledged, is in every inbox read. (Members that crashed get
//!   them too: the survivors keep relaying until acknowledged, and a delivery
//!   is on disk before it is acknowledged.)
//! - `once`: no message is twice in one inbox.
//! - `integrity`: every delivered message was sent by a client, with the
//!   body, kind and origin it was sent with, to the member holding it (a
//!   send) and not after a definite refusal.
//!
//! A member "stayed up" unless a fault that may crash it named it; faults that
//! only cut, slow or pause links and processes leave it up.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use checker::history::Op;
use checker::{CheckerResult, History, Validity};
use serde_json::{json, Value};

use crate::findings::{json_of, output, Findings};
use crate::Checked;

/// Faults that never crash a node; any other that names a node may have.
const GENTLE: &[&str] = &[
    "partition",
    "pause",
    "delay",
    "loss",
    "replay",
    "clock",
    "clock-bump",
    "clock-strobe",
    "byzantine",
    "slow-disk",
];

/// What a client asked for: kind, body, the member it went to, the member a
/// send was for (`None` for a broadcast).
struct Sent {
    kind: &'static str,
    body: Value,
    origin: Option<String>,
    to: Option<String>,
    /// `Some(true)` acknowledged, `Some(false)` definitely refused, `None` unknown.
    acked: Option<bool>,
    /// Members the origin said acknowledged a broadcast.
    delivered_to: Vec<String>,
    line: u64,
}

/// One delivery: (id, kind, origin, from, body).
fn delivery(d: &Value) -> Option<(String, String, String, Value)> {
    Some((
        d[0].as_str()?.to_string(),
        d[1].as_str()?.to_string(),
        d[2].as_str()?.to_string(),
        d[4].clone(),
    ))
}

/// Every string in `v`, recursively.
fn strings(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            out.insert(s.clone());
        }
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Members a fault that may crash a node named.
fn crashed(history: &History, members: &[String]) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for e in &history.nemesis {
        let Some(fault) = e.f.strip_prefix("start-") else {
            continue;
        };
        if GENTLE.contains(&fault) {
            continue;
        }
        strings(&json_of(&e.value), &mut named);
    }
    members
        .iter()
        .filter(|m| named.contains(*m))
        .cloned()
        .collect()
}

fn sent_of(op: &Op, acked: Option<bool>, members: &[String]) -> Option<(String, Sent)> {
    let input = json_of(&op.input);
    let id = input["id"].as_str()?.to_string();
    let kind = match &*op.f {
        "send" => "send",
        "broadcast" => "broadcast",
        _ => return None,
    };
    let to = (kind == "send")
        .then(|| {
            let k = input["to"].as_u64()? as usize;
            members.get(k % members.len().max(1)).cloned()
        })
        .flatten();
    let out = if acked == Some(true) {
        output(op)
    } else {
        None
    };
    let delivered_to = out
        .as_ref()
        .and_then(|o| o["delivered_to"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect();
    Some((
        id,
        Sent {
            kind,
            body: input["body"].clone(),
            origin: op.node.as_deref().map(str::to_string),
            to,
            acked,
            delivered_to,
            line: op.line,
        },
    ))
}

/// Runs every checker of the workload on `history`.
pub fn check(history: &History) -> Checked {
    let mut checked = Checked::default();
    let last = history
        .ops
        .iter()
        .rev()
        .find(|op| &*op.f == "inboxes")
        .and_then(output);
    let names = ["sends", "broadcasts", "once", "integrity"];
    let Some(last) = last else {
        for name in names {
            checked.add(
                name,
                CheckerResult::new(
                    Validity::Unknown,
                    "no final read of the inboxes",
                    Value::Null,
                ),
            );
        }
        return checked;
    };
    let members: Vec<String> = last["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect();
    let settled = last["settle"]["settled"].as_bool().unwrap_or(false);
    let mut inboxes: BTreeMap<String, Vec<(String, String, String, Value)>> = BTreeMap::new();
    if let Some(map) = last["inboxes"].as_object() {
        for (member, list) in map {
            let list = list.as_array().into_iter().flatten().filter_map(delivery);
            inboxes.insert(member.clone(), list.collect());
        }
    }
    let mut sent: HashMap<String, Sent> = HashMap::new();
    for op in &history.ops {
        let acked = (!op.is_indeterminate()).then_some(true);
        if let Some((id, s)) = sent_of(op, acked, &members) {
            sent.insert(id, s);
        }
    }
    for op in &history.failed {
        if let Some((id, s)) = sent_of(op, Some(false), &members) {
            sent.insert(id, s);
        }
    }
    let down = crashed(history, &members);
    let up: Vec<&String> = members.iter().filter(|m| !down.contains(*m)).collect();
    // Who holds what.
    let mut holders: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    let mut once = Findings::new("once", "deliveries");
    let mut integrity = Findings::new("integrity", "deliveries");
    for (member, list) in &inboxes {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (id, kind, origin, body) in list {
            once.checked += 1;
            integrity.checked += 1;
            *seen.entry(id.as_str()).or_default() += 1;
            holders.entry(id).or_default().insert(member);
            let Some(s) = sent.get(id) else {
                integrity.add(json!({"member": member, "id": id, "problem": "no client sent it"}));
                continue;
            };
            let mut wrong = Vec::new();
            if kind != s.kind {
                wrong.push(format!("delivered as a {kind}, sent as a {}", s.kind));
            }
            if *body != s.body {
                wrong.push(format!("body {body}, sent {}", s.body));
            }
            if s.origin.as_ref().is_some_and(|o| o != origin) {
                wrong.push(format!(
                    "origin {origin}, sent from {}",
                    s.origin.as_deref().unwrap_or("?")
                ));
            }
            if s.to.as_ref().is_some_and(|to| to != member) {
                wrong.push(format!("a send for {}", s.to.as_deref().unwrap_or("?")));
            }
            if s.acked == Some(false) {
                wrong.push("its send was definitely refused".into());
            }
            for problem in wrong {
                integrity
                    .add(json!({"member": member, "id": id, "line": s.line, "problem": problem}));
            }
        }
        for (id, n) in seen {
            if n > 1 {
                once.add(json!({"member": member, "id": id, "times": n}));
            }
        }
    }
    let mut sends = Findings::new("sends", "acknowledged sends");
    let mut broadcasts = Findings::new("broadcasts", "broadcasts");
    let mut unsettled = 0;
    for (id, s) in &sent {
        let held = holders.get(id.as_str());
        let holds = |m: &str| held.is_some_and(|h| h.contains(m));
        if s.kind == "send" {
            if s.acked != Some(true) {
                continue;
            }
            let Some(to) = &s.to else { continue };
            if !inboxes.contains_key(to) {
                continue;
            }
            sends.checked += 1;
            if !holds(to) {
                sends.add(json!({"id": id, "to": to, "line": s.line,
                    "problem": "acknowledged, not in the inbox"}));
            }
            continue;
        }
        let origin_up = s.origin.as_ref().is_some_and(|o| up.contains(&o));
        let held_up = up.iter().any(|m| holds(m));
        let required =
            held_up || (s.acked == Some(true) && origin_up) || !s.delivered_to.is_empty();
        if !required {
            continue;
        }
        broadcasts.checked += 1;
        for member in inboxes.keys() {
            if holds(member) {
                continue;
            }
            let acknowledged = s.delivered_to.contains(member);
            if !settled && !acknowledged {
                unsettled += 1;
                continue;
            }
            broadcasts.add(json!({"id": id, "missing_at": member, "line": s.line,
                "acknowledged_by_it": acknowledged,
                "why_required": if acknowledged { "the origin said it acknowledged" }
                    else if held_up { "a member that stayed up delivered it" }
                    else { "its origin stayed up and acknowledged it" }}));
        }
    }
    let unread: Vec<&String> = members
        .iter()
        .filter(|m| !inboxes.contains_key(*m))
        .collect();
    let no_inbox = inboxes.is_empty().then_some("no inbox could be read");
    sends.done(&mut checked, no_inbox);
    let note = (unsettled > 0).then(|| {
        format!(
            "{unsettled} deliveries missing while members still had deliveries in flight at the end"
        )
    });
    broadcasts.done(&mut checked, no_inbox.or(note.as_deref()));
    once.done(&mut checked, no_inbox);
    integrity.done(&mut checked, no_inbox);
    if let Some(Value::Object(b)) = checked.checkers.get_mut("broadcasts") {
        b.insert("stayed_up".into(), json!(up));
        b.insert("unread".into(), json!(unread));
    }
    checked
}

#[cfg(test)]
mod tests;
