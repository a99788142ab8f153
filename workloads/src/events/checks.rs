//! The `events` workload's checkers.
//!
//! - `appends`: every acknowledged append is in its stream's final read,
//!   once, at the versions it was told; no event is there twice; no event of a
//!   definitely refused append is anywhere; nothing is there no append carried.
//! - `versions`: every read of a stream has versions dense from 0.
//! - `expected-version`: at most one acknowledged append per (stream,
//!   expected version).
//! - `global-order`: each stream's final events sit in the global log at the
//!   positions, versions and order the stream shows.
//! - `subscriptions`: each poll starts at the checkpoint the subscriber's
//!   acknowledgements left (earlier only after an acknowledgement whose
//!   outcome is unknown or refused, never later), delivers contiguous
//!   positions holding what the global log holds, and a drain reaches the end.
//! - `projection`: the projection equals its rebuild and a fold of the log.
//! - `snapshots`: each stream's aggregate (snapshot plus tail) equals a fold
//!   of all its events.

use std::collections::{BTreeMap, HashMap};

use checker::History;
use serde_json::{json, Value};

use crate::findings::{json_of, output, Findings};
use crate::Checked;

/// An event's place: (position, stream, version, id).
type Place = (u64, String, u64, String);

fn place(e: &Value) -> Option<Place> {
    Some((
        e[0].as_u64()?,
        e[1].as_str()?.to_string(),
        e[2].as_u64()?,
        e[3].as_str()?.to_string(),
    ))
}

/// Checks an `events` history.
pub fn check(history: &History) -> Checked {
    let mut checked = Checked::default();
    let ok = |f: &'static str| {
        history
            .ops
            .iter()
            .filter(move |op| &*op.f == f)
            .filter_map(|op| output(op).map(|o| (op, o)))
    };
    let global: Option<Vec<Place>> = ok("read-all").next_back().map(|(_, o)| {
        o["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(place)
            .collect()
    });
    // Each stream's final events, from the state reads.
    let mut finals: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (op, o) in ok("state") {
        let s = json_of(&op.input)["stream"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        finals.insert(s, o["events"].as_array().cloned().unwrap_or_default());
    }
    let no_final = (global.is_none() || finals.is_empty())
        .then_some("the final reads did not complete: nothing to compare with");

    // appends
    let mut appends = Findings::new("appends", "acknowledged appends");
    let mut at: HashMap<String, Vec<(String, u64)>> = HashMap::new();
    for (s, events) in &finals {
        for e in events {
            if let Some((_, stream, version, id)) = place(e) {
                at.entry(id).or_default().push((stream, version));
            }
        }
        let _ = s;
    }
    let mut carried: HashMap<String, ()> = HashMap::new();
    for op in history.ops.iter().chain(history.failed.iter()) {
        if &*op.f == "append" {
            for e in json_of(&op.input)["events"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(id) = e["data"]["id"].as_str() {
                    carried.insert(id.to_string(), ());
                }
            }
        }
    }
    if no_final.is_none() {
        for (op, o) in ok("append") {
            appends.checked += 1;
            let input = json_of(&op.input);
            let stream = input["stream"].as_str().unwrap_or_default();
            // A stream whose final read did not complete cannot be judged.
            if !finals.contains_key(stream) {
                appends.checked -= 1;
                continue;
            }
            let first = o["first_version"].as_u64().unwrap_or(0);
            for (i, e) in input["events"].as_array().into_iter().flatten().enumerate() {
                let id = e["data"]["id"].as_str().unwrap_or_default();
                let want = (stream.to_string(), first + i as u64);
                let found = at.get(id).cloned().unwrap_or_default();
                if found != [want.clone()] {
                    appends.add(json!({"event": id, "stream": stream, "version": want.1,
                        "line": op.line, "found_at": found,
                        "problem": if found.is_empty() { "acknowledged, then missing" } else { "not once at its version" }}));
                }
            }
        }
        for op in history.failed.iter().filter(|op| &*op.f == "append") {
            for e in json_of(&op.input)["events"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let id = e["data"]["id"].as_str().unwrap_or_default();
                if let Some(found) = at.get(id) {
                    appends.add(json!({"event": id, "line": op.line, "found_at": found,
                        "problem": "the append was refused, yet its event is there"}));
                }
            }
        }
        for (id, found) in &at {
            if found.len() > 1 {
                appends.add(
                    json!({"event": id, "found_at": found, "problem": "twice in the streams"}),
                );
            }
            if !carried.contains_key(id) {
                appends.add(
                    json!({"event": id, "found_at": found, "problem": "no append carried it"}),
                );
            }
        }
    }
    appends.done(&mut checked, no_final);

    // versions
    // A read newest first must count down from the stream's length; a read
    // from the start (the final ones) up from 0.
    let mut versions = Findings::new("versions", "stream reads");
    let reads = ok("read")
        .map(|(op, o)| {
            let top = o["version"].as_u64().filter(|_| o["backwards"] == true);
            (
                op.line,
                top,
                o["events"].as_array().cloned().unwrap_or_default(),
            )
        })
        .chain(finals.values().map(|e| (0, None, e.clone())));
    for (line, top, events) in reads {
        versions.checked += 1;
        for (i, e) in events.iter().enumerate() {
            let want = match top {
                Some(len) => len.checked_sub(1 + i as u64),
                None => Some(i as u64),
            };
            if e[2].as_u64() != want {
                versions.add(
                    json!({"line": line, "index": i, "event": e, "expected_version": want,
                    "problem": "versions are not dense from 0"}),
                );
                break;
            }
        }
    }
    versions.done(&mut checked, None);

    // expected-version
    let mut winners = Findings::new("expected-version", "conditional appends");
    let mut by_expected: BTreeMap<(String, u64), Vec<u64>> = BTreeMap::new();
    for (op, _) in ok("append") {
        let input = json_of(&op.input);
        if let (Some(s), Some(e)) = (input["stream"].as_str(), input["expected"].as_u64()) {
            winners.checked += 1;
            by_expected
                .entry((s.to_string(), e))
                .or_default()
                .push(op.line);
        }
    }
    for ((stream, expected), lines) in &by_expected {
        if lines.len() > 1 {
            winners.add(
                json!({"stream": stream, "expected": expected, "lines": lines,
                "problem": "more than one append won at this expected version"}),
            );
        }
    }
    winners.done(&mut checked, None);

    // global-order
    let mut order = Findings::new("global-order", "streams");
    if let Some(global) = &global {
        for (p, e) in global.iter().enumerate() {
            if e.0 != p as u64 {
                order.add(json!({"position": p, "found": e.0, "problem": "global positions are not dense"}));
                break;
            }
        }
        for (stream, events) in &finals {
            order.checked += 1;
            let mut last = None;
            for e in events.iter().filter_map(place) {
                // Past the end of the global read: appended after it (an
                // unknown append that committed late).
                if global.get(e.0 as usize).is_some_and(|g| *g != e) {
                    order.add(
                        json!({"stream": stream, "event": e.3, "version": e.2, "position": e.0,
                        "global": global.get(e.0 as usize).map(|g| json!([g.0, g.1, g.2, g.3])),
                        "problem": "the global log holds something else at this position"}),
                    );
                }
                if last.is_some_and(|l| l >= e.0) {
                    order.add(json!({"stream": stream, "version": e.2,
                        "problem": "a later version sits earlier in the global log"}));
                }
                last = Some(e.0);
            }
        }
    }
    order.done(&mut checked, no_final);

    check_subscriptions(history, global.as_deref(), &mut checked);

    // projection
    let mut projection = Findings::new("projection", "projection reads");
    for (op, o) in ok("projection") {
        projection.checked += 1;
        if o["counts"] != o["rebuilt"] {
            projection.add(
                json!({"line": op.line, "counts": o["counts"], "rebuilt": o["rebuilt"],
                "problem": "the projection differs from its rebuild"}),
            );
        }
        let Some(global) = &global else { continue };
        let upto = o["position"].as_u64().unwrap_or(0) as usize;
        let all = ok("read-all")
            .next_back()
            .map(|(_, a)| a["events"].clone())
            .unwrap_or(Value::Null);
        let mut fold: BTreeMap<String, u64> = BTreeMap::new();
        for e in all
            .as_array()
            .into_iter()
            .flatten()
            .take(upto.min(global.len()))
        {
            if let ("order-placed", Some(c)) = (e[4].as_str().unwrap_or_default(), e[5].as_str()) {
                *fold.entry(c.to_string()).or_default() += 1;
            }
        }
        if upto <= global.len() && json!(fold) != o["counts"] {
            projection.add(json!({"line": op.line, "counts": o["counts"], "fold": fold,
                "problem": "the projection differs from a fold of the global log"}));
        }
    }
    projection.done(&mut checked, None);

    // snapshots
    let mut snapshots = Findings::new("snapshots", "stream aggregates");
    for (op, o) in ok("state") {
        if o["version"] != o["read_version"] {
            continue;
        }
        snapshots.checked += 1;
        let (mut n, mut total) = (0u64, 0i64);
        let mut types: BTreeMap<String, u64> = BTreeMap::new();
        for e in o["events"].as_array().into_iter().flatten() {
            n += 1;
            total += e[5].as_i64().unwrap_or(0);
            *types
                .entry(e[4].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
        let replay = json!({"events": n, "types": types, "total": total});
        if replay != o["state"] {
            snapshots.add(json!({"line": op.line, "stream": json_of(&op.input)["stream"],
                "aggregate": o["state"], "snapshot_version": o["snapshot_version"], "replay": replay,
                "problem": "snapshot plus tail differs from a full replay"}));
        }
    }
    snapshots.done(&mut checked, None);
    checked
}

/// One subscription's polls in the order they ran.
fn check_subscriptions(history: &History, global: Option<&[Place]>, checked: &mut Checked) {
    let mut subs = Findings::new("subscriptions", "polls");
    let mut polls: BTreeMap<String, Vec<(u64, Value)>> = BTreeMap::new();
    let mut drained: BTreeMap<String, bool> = BTreeMap::new();
    for op in &history.ops {
        let Some(o) = output(op) else { continue };
        let name = json_of(&op.input)["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match &*op.f {
            "consume" => polls.entry(name).or_default().push((op.line, o)),
            "drain" => {
                drained.insert(name.clone(), o["unfinished"].is_null());
                for b in o["batches"].as_array().into_iter().flatten() {
                    polls
                        .entry(name.clone())
                        .or_default()
                        .push((op.line, b.clone()));
                }
            }
            _ => {}
        }
    }
    for (name, polls) in &polls {
        // Where the next poll must start: at least `lo` (what acknowledged
        // acks left), at most `hi` (what unknown ones may have).
        let (mut lo, mut hi) = (0u64, 0u64);
        for (line, p) in polls {
            let events: Vec<Place> = p["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(place)
                .collect();
            if let Some(first) = events.first() {
                subs.checked += 1;
                if first.0 < lo {
                    subs.add(json!({"subscription": name, "line": line, "start": first.0, "checkpoint": lo,
                        "problem": "delivered again what an acknowledged checkpoint covered"}));
                } else if first.0 > hi {
                    subs.add(json!({"subscription": name, "line": line, "start": first.0, "checkpoint": hi,
                        "skipped": [hi, first.0 - 1], "problem": "skipped events after the checkpoint"}));
                }
                for (i, e) in events.iter().enumerate() {
                    if e.0 != first.0 + i as u64 {
                        subs.add(json!({"subscription": name, "line": line, "position": e.0,
                            "problem": "a poll's positions are not contiguous"}));
                        break;
                    }
                    if let Some(g) = global {
                        if g.get(e.0 as usize).is_some_and(|g| g != e) {
                            subs.add(json!({"subscription": name, "line": line, "position": e.0,
                                "delivered": [e.1, e.2, e.3], "problem": "delivered what the global log does not hold there"}));
                        }
                    }
                }
            }
            if let Some(acked) = p["acked"].as_u64() {
                match p["ack"].as_str() {
                    Some("ok") => {
                        lo = lo.max(acked + 1);
                        hi = hi.max(lo);
                    }
                    Some("info") => hi = hi.max(acked + 1),
                    _ => {}
                }
            }
        }
        // The drain's last, empty poll saw the log's end then: the
        // checkpoint must have reached it.
        let last_end = polls.last().and_then(|(_, p)| p["end"].as_u64());
        if let (Some(true), Some(end)) = (drained.get(name), last_end) {
            subs.checked += 1;
            if hi < end {
                subs.add(json!({"subscription": name, "reached": hi, "end": end,
                    "problem": "a drain stopped before the end of the log"}));
            }
        }
    }
    subs.done(checked, None);
}

#[cfg(test)]
mod tests {
    use super::*;
    use checker::format::jsonl;
    use checker::Validity;

    fn history(ops: &[(&str, Value, &str, Value)]) -> History {
        let mut text = String::new();
        for (i, (f, input, kind, out)) in ops.iter().enumerate() {
            let p = i;
            text.push_str(&format!(
                "{}\n{}\n",
                json!({"type": "invoke", "process": p, "f": f, "value": input}),
                json!({"type": kind, "process": p, "f": f, "value": out, "error": if *kind == "fail" { json!("refused") } else { Value::Null }})
            ));
        }
        jsonl::read(text.as_bytes()).unwrap()
    }

    fn ev(id: &str) -> Value {
        json!({"type": "order-placed", "data": {"id": id, "customer": "c0", "amount": 2}})
    }

    fn finals(
        stream_events: Value,
        global: Value,
    ) -> Vec<(&'static str, Value, &'static str, Value)> {
        let n = stream_events.as_array().unwrap().len();
        vec![
            ("read-all", Value::Null, "ok", json!({"events": global})),
            (
                "state",
                json!({"stream": "s0"}),
                "ok",
                json!({"state": {"events": n, "types": {"order-placed": n}, "total": 2 * n},
                "version": n, "read_version": n, "snapshot_version": 0, "events": stream_events}),
            ),
            (
                "projection",
                Value::Null,
                "ok",
                json!({"counts": {"c0": n}, "rebuilt": {"c0": n}, "position": n}),
            ),
        ]
    }

    fn verdicts(c: &Checked) -> BTreeMap<String, String> {
        c.checkers
            .iter()
            .map(|(k, v)| (k.clone(), v["valid"].to_string()))
            .collect()
    }

    #[test]
    fn a_sound_history_is_valid_and_a_lost_or_doubled_winner_is_not() {
        let mut ops = vec![
            (
                "append",
                json!({"stream": "s0", "expected": 0, "events": [ev("e1")]}),
                "ok",
                json!({"first_version": 0, "version": 1, "positions": [0]}),
            ),
            (
                "append",
                json!({"stream": "s0", "expected": 0, "events": [ev("e2")]}),
                "fail",
                Value::Null,
            ),
            (
                "append",
                json!({"stream": "s0", "expected": 1, "events": [ev("e3")]}),
                "ok",
                json!({"first_version": 1, "version": 2, "positions": [1]}),
            ),
            ("subscribe", json!({"name": "sub"}), "ok", json!({})),
            (
                "consume",
                json!({"name": "sub"}),
                "ok",
                json!({"events": [[0, "s0", 0, "e1"]], "acked": 0, "ack": "ok"}),
            ),
            (
                "consume",
                json!({"name": "sub"}),
                "ok",
                json!({"events": [[1, "s0", 1, "e3"]], "acked": 1, "ack": "info"}),
            ),
            (
                "drain",
                json!({"name": "sub"}),
                "ok",
                json!({"batches": [{"events": [[1, "s0", 1, "e3"]], "acked": 1, "ack": "ok"}, {"events": []}]}),
            ),
        ];
        let stream = json!([
            [0, "s0", 0, "e1", "order-placed", 2],
            [1, "s0", 1, "e3", "order-placed", 2]
        ]);
        let global = json!([
            [0, "s0", 0, "e1", "order-placed", "c0", 2],
            [1, "s0", 1, "e3", "order-placed", "c0", 2]
        ]);
        ops.extend(finals(stream, global));
        let c = check(&history(&ops));
        assert_eq!(c.valid, Validity::Valid, "{:?}", c.checkers);
        assert_eq!(verdicts(&c).len(), 7);

        // The planted bug: the second append at expected 0 also won, over e1.
        ops[1] = (
            "append",
            json!({"stream": "s0", "expected": 0, "events": [ev("e2")]}),
            "ok",
            json!({"first_version": 0, "version": 1, "positions": [1]}),
        );
        ops.truncate(7);
        let stream = json!([[1, "s0", 0, "e2", "order-placed", 2]]);
        let global = json!([
            [0, "s0", 0, "e1", "order-placed", "c0", 2],
            [1, "s0", 0, "e2", "order-placed", "c0", 2]
        ]);
        ops.extend(finals(stream, global));
        let v = verdicts(&check(&history(&ops)));
        assert_eq!(v["expected-version"], "false");
        assert_eq!(v["appends"], "false");
    }

    #[test]
    fn a_poll_past_the_checkpoint_is_a_skip_and_before_it_a_duplicate() {
        let global = json!([
            [0, "s0", 0, "e1", "x", "c0", 1],
            [1, "s0", 1, "e2", "x", "c0", 1],
            [2, "s0", 2, "e3", "x", "c0", 1]
        ]);
        let run = |second: Value| {
            let ops = vec![
                (
                    "consume",
                    json!({"name": "sub"}),
                    "ok",
                    json!({"events": [[0, "s0", 0, "e1"]], "acked": 0, "ack": "ok"}),
                ),
                ("consume", json!({"name": "sub"}), "ok", second),
                (
                    "read-all",
                    Value::Null,
                    "ok",
                    json!({"events": global.clone()}),
                ),
            ];
            check(&history(&ops)).checkers["subscriptions"]["valid"].clone()
        };
        assert_eq!(
            run(json!({"events": [[1, "s0", 1, "e2"]], "acked": 1, "ack": "ok"})),
            json!(true)
        );
        assert_eq!(
            run(json!({"events": [[2, "s0", 2, "e3"]], "acked": 2, "ack": "ok"})),
            json!(false)
        );
        assert_eq!(
            run(json!({"events": [[0, "s0", 0, "e1"]], "acked": 0, "ack": "ok"})),
            json!(false)
        );
        // Delivered something the log does not hold there.
        assert_eq!(
            run(json!({"events": [[1, "s0", 1, "e9"]], "acked": 1, "ack": "ok"})),
            json!(false)
        );
    }

    #[test]
    fn a_read_newest_first_counts_down_from_the_length() {
        let run = |version: u64, versions: &[u64]| {
            let events: Vec<Value> = versions.iter().map(|v| json!([0, "s0", v, "e"])).collect();
            let ops = vec![(
                "read",
                json!({"stream": "s0"}),
                "ok",
                json!({"version": version, "events": events, "backwards": true}),
            )];
            check(&history(&ops)).checkers["versions"]["valid"].clone()
        };
        assert_eq!(run(3, &[2, 1, 0]), json!(true));
        assert_eq!(run(5, &[4, 3]), json!(true));
        assert_eq!(run(0, &[]), json!(true));
        assert_eq!(run(5, &[4, 2]), json!(false));
        assert_eq!(run(3, &[3, 2]), json!(false));
    }

    #[test]
    fn an_aggregate_that_differs_from_its_replay_is_caught() {
        let stream = json!([[0, "s0", 0, "e1", "order-placed", 2]]);
        let global = json!([[0, "s0", 0, "e1", "order-placed", "c0", 2]]);
        let mut ops = vec![(
            "append",
            json!({"stream": "s0", "expected": 0, "events": [ev("e1")]}),
            "ok",
            json!({"first_version": 0, "version": 1, "positions": [0]}),
        )];
        ops.extend(finals(stream, global));
        assert_eq!(check(&history(&ops)).valid, Validity::Valid);
        ops[2].3["state"]["total"] = json!(5);
        assert_eq!(verdicts(&check(&history(&ops)))["snapshots"], "false");
        ops[2].3["state"]["total"] = json!(2);
        ops[3].3["counts"] = json!({"c0": 3});
        assert_eq!(verdicts(&check(&history(&ops)))["projection"], "false");
    }
}
