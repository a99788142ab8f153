use std::collections::BTreeMap;

use super::*;
use crate::Rng;
use checker::format::jsonl;

/// Unix ms the simulated runs start at (client time 0).
const BASE: u64 = 1_700_000_000_000;
const INSTANCES: [&str; 3] = ["api1", "api2", "api3"];

/// A breaker as the sidecar's should behave: the reference the simulated
/// correct runs follow.
#[derive(Clone, Default)]
struct RefBreaker {
    state: &'static str,
    run: u32,
    opened: u64,
    passed: u32,
    results: u64,
}

/// A simulated run: the records of one sidecar, its transitions, the
/// client ops and the faults.
struct Sim {
    records: Vec<Value>,
    transitions: Vec<Value>,
    ops: Vec<(Value, u64, u64, &'static str, Value)>,
    kill: Option<(String, u64, u64)>,
    /// When the sidecar (re)started, and how many records it dropped.
    since_ms: u64,
    dropped: u64,
}

/// How a simulated sidecar misbehaves.
#[derive(Clone, Copy, Default, PartialEq)]
struct Flaws {
    never_opens: bool,
    /// No brownout and no kill: every instance fine all along.
    calm: bool,
}

fn simulate(seed: u64, flaws: Flaws) -> Sim {
    let mut rng = Rng::new(seed);
    let mut breakers: BTreeMap<&str, RefBreaker> = INSTANCES
        .iter()
        .map(|i| {
            (
                *i,
                RefBreaker {
                    state: "closed",
                    ..RefBreaker::default()
                },
            )
        })
        .collect();
    // A brownout of one instance makes failure runs; a kill of another.
    let brown = if flaws.calm {
        "none"
    } else {
        INSTANCES[rng.below(3) as usize]
    };
    let kill = (rng.below(2) == 0 && !flaws.calm).then(|| {
        let victim = INSTANCES.iter().find(|i| **i != brown).unwrap().to_string();
        let start = BASE + 300 + rng.below(500);
        (victim, start, start + 800 + rng.below(800))
    });
    let dead = |i: &str, at: u64| {
        kill.as_ref()
            .is_some_and(|(v, s, e)| v == i && at >= *s && at < *e)
    };
    let mut sim = Sim {
        records: Vec::new(),
        transitions: Vec::new(),
        ops: Vec::new(),
        kill: kill.clone(),
        since_ms: BASE,
        dropped: 0,
    };
    let mut t = BASE + 10;
    for n in 0..400u64 {
        t += 1 + rng.below(8);
        let arrival = t;
        let post = rng.below(2) == 0;
        let id = format!("r{n}");
        let (trace, span) = (format!("{:032x}", n + 1), format!("{:016x}", n + 1));
        let mut attempts = Vec::new();
        let mut outcome = "no-instance";
        let mut served = None;
        for k in 1..=MAX_TRIES as u64 {
            let at = arrival + (k - 1) * 20;
            // Usable: admitted by its breaker, not known dead for 300 ms.
            let usable: Vec<&str> = INSTANCES
                .iter()
                .copied()
                .filter(|i| {
                    let b = &breakers[i];
                    let known_dead = kill
                        .as_ref()
                        .is_some_and(|(v, s, e)| v == i && at >= s + 300 && at < *e);
                    !known_dead
                        && (b.state == "closed"
                            || (b.state == "open" && at >= b.opened + BREAKER_COOLDOWN_MS)
                            || b.state == "half-open")
                })
                .collect();
            let Some(&inst) = rng.pick(&usable) else {
                attempts.push(json!({"n": k, "instance": null, "admitted_ms": at, "ok": false}));
                break;
            };
            let b = breakers.get_mut(inst).unwrap();
            if b.state == "open" {
                sim.transitions
                    .push(json!({"sidecar": "n1", "instance": inst, "from": "open",
                    "to": "half-open", "at_ms": at, "after_result": b.results}));
                b.state = "half-open";
                b.passed = 0;
            }
            let failed = dead(inst, at) || (inst == brown && rng.chance(0.6)) || rng.chance(0.05);
            let ok = !failed;
            let maybe_applied = !ok && rng.chance(0.3);
            b.results += 1;
            let seq = b.results;
            let aspan = format!("{:016x}", 1_000_000 + n * 10 + k);
            let ispan = format!("{:016x}", 2_000_000 + n * 10 + k);
            attempts.push(json!({"n": k, "instance": inst, "admitted_ms": at, "start_ms": at,
                "end_ms": at + 5, "ok": ok, "maybe_applied": maybe_applied, "result_seq": seq,
                "span": aspan, "callee_span": if ok {json!({"trace": trace, "span": ispan, "parent": aspan})} else {Value::Null}}));
            let mut to = None;
            match (b.state, ok) {
                ("closed", true) => b.run = 0,
                ("closed", false) => {
                    b.run += 1;
                    if b.run >= BREAKER_FAILURES && !flaws.never_opens {
                        to = Some(("closed", "open"));
                    }
                }
                ("half-open", true) => {
                    b.passed += 1;
                    if b.passed >= 2 {
                        to = Some(("half-open", "closed"));
                    }
                }
                ("half-open", false) => to = Some(("half-open", "open")),
                _ => {}
            }
            if let Some((from, next)) = to {
                sim.transitions
                    .push(json!({"sidecar": "n1", "instance": inst, "from": from,
                    "to": next, "at_ms": at + 5, "after_result": seq}));
                b.state = next;
                b.run = 0;
                if next == "open" {
                    b.opened = at + 5;
                }
            }
            if ok {
                outcome = "ok";
                served = Some(inst);
                break;
            }
            outcome = "upstream";
            if post && maybe_applied {
                break;
            }
        }
        let end = arrival + 5 + 20 * (attempts.len() as u64 - 1);
        t = t.max(end);
        sim.records
            .push(json!({"request": id, "sidecar": "n1", "service": "api",
            "method": if post {"POST"} else {"GET"}, "idempotent": !post,
            "arrival_ms": arrival, "deadline_ms": arrival + 300, "end_ms": end,
            "outcome": outcome, "attempts": attempts, "trace": trace,
            "span": format!("{:016x}", 3_000_000 + n), "parent": span}));
        let input = json!({"id": id, "key": "k1", "trace": trace, "span": span, "via": 0});
        let (done, out) = match served {
            Some(i) => ("ok", json!({"instance": i, "tries": 1})),
            None => ("fail", Value::Null),
        };
        sim.ops.push((input, arrival - 1, end + 1, done, out));
    }
    sim
}

/// The history of a simulated run (or of its parts after a mutation).
fn history(sim: &Sim, with_records: bool) -> History {
    let mut text = String::new();
    let mut line = |v: Value| text.push_str(&format!("{v}\n"));
    let ns = |unix_ms: u64| (unix_ms - BASE) * 1_000_000;
    let mut events: Vec<(u64, Value)> = Vec::new();
    for (p, (input, call, ret, done, out)) in sim.ops.iter().enumerate() {
        let f = if input["id"].as_str().is_some_and(|_| p % 2 == 0) {
            "get"
        } else {
            "post"
        };
        events.push((
            *call,
            json!({"type": "invoke", "process": p, "f": f, "value": input, "time": ns(*call)}),
        ));
        events.push((*ret, json!({"type": done, "process": p, "f": f, "value": out, "time": ns(*ret), "node": "n1"})));
    }
    if let Some((victim, start, end)) = &sim.kill {
        events.push((*start, json!({"type": "info", "process": "nemesis", "f": "start-kill", "value": [victim], "time": ns(*start)})));
        events.push((*end, json!({"type": "info", "process": "nemesis", "f": "stop-kill", "value": [victim], "time": ns(*end)})));
    }
    events.sort_by_key(|(t, _)| *t);
    let last = events.last().map_or(BASE, |(t, _)| *t);
    for (_, e) in events {
        line(e);
    }
    let p = sim.ops.len();
    line(
        json!({"type": "invoke", "process": p, "f": "records", "value": null, "time": ns(last + 10)}),
    );
    if with_records {
        line(
            json!({"type": "ok", "process": p, "f": "records", "time": ns(last + 20), "value": {
            "n1": {"records": sim.records, "transitions": sim.transitions, "health": [],
                   "dropped": sim.dropped, "since_ms": sim.since_ms}}}),
        );
    } else {
        line(
            json!({"type": "info", "process": p, "f": "records", "time": ns(last + 20), "value": null, "error": "timeout"}),
        );
    }
    jsonl::read(text.as_bytes()).unwrap()
}

fn verdicts(c: &Checked) -> BTreeMap<String, Value> {
    c.checkers
        .iter()
        .map(|(k, v)| (k.clone(), v["valid"].clone()))
        .collect()
}

/// Every checker valid but `invalid`, which is invalid (`spread` may also not
/// be judged: the simulated brownouts leave few calm stretches).
fn assert_only(c: &Checked, invalid: Option<&str>) {
    for (name, v) in verdicts(c) {
        let want = json!(Some(name.as_str()) != invalid);
        let summary = c.checkers[&name]["summary"].as_str().unwrap_or("");
        if name == "spread" && summary.starts_with("not judged") {
            assert_eq!(v, json!(true));
            continue;
        }
        assert_eq!(v, want, "{name}: {}", c.checkers[&name]);
    }
}

#[test]
fn simulated_correct_sidecars_are_valid_with_their_figures() {
    let mut opened = 0;
    for seed in 0..200 {
        let sim = simulate(seed, Flaws::default());
        opened += sim.transitions.iter().filter(|t| t["to"] == "open").count();
        let c = check(&history(&sim, true));
        assert_only(&c, None);
        let figures = &c.checkers["health-routing"]["figures"];
        assert!(
            figures["requests_with_a_healthy_instance"]
                .as_u64()
                .unwrap()
                > 0
        );
    }
    // The runs did exercise the breakers.
    assert!(opened > 200, "{opened}");
}

#[test]
fn a_breaker_that_never_opens_is_caught_and_one_that_opened_is_not() {
    let mut caught = 0;
    for seed in 0..50 {
        let sim = simulate(
            seed,
            Flaws {
                never_opens: true,
                calm: false,
            },
        );
        let c = check(&history(&sim, true));
        if verdicts(&c)["breaker"] == json!(false) {
            caught += 1;
            assert!(c.checkers["breaker"]["examples"][0]["problem"]
                .as_str()
                .unwrap()
                .contains("did not open"));
        }
    }
    assert!(caught >= 45, "{caught}");
}

fn first_open(sim: &Sim) -> (usize, Value) {
    sim.transitions
        .iter()
        .enumerate()
        .find(|(_, t)| t["to"] == "open")
        .map(|(i, t)| (i, t.clone()))
        .expect("a run where a breaker opened")
}

#[test]
fn tries_while_open_illegal_moves_and_early_probes_are_caught() {
    let seed = (0..50)
        .find(|s| simulate(*s, Flaws::default()).transitions.len() >= 3)
        .unwrap();
    // A try let through to an instance while its breaker is open.
    let mut sim = simulate(seed, Flaws::default());
    let (_, open) = first_open(&sim);
    let at = open["at_ms"].as_u64().unwrap() + 1;
    let r = sim
        .records
        .iter_mut()
        .find(|r| r["arrival_ms"].as_u64().unwrap() > at && r["outcome"] == "ok")
        .unwrap();
    let last = r["attempts"].as_array().unwrap().len() - 1;
    r["attempts"][last]["instance"] = open["instance"].clone();
    r["attempts"][last]["admitted_ms"] = json!(at);
    r["attempts"][last]["result_seq"] = Value::Null;
    r["attempts"][last]["callee_span"] = Value::Null;
    assert_only(&check(&history(&sim, true)), Some("breaker"));
    // An open breaker that half-opens before its cool-down.
    let mut sim = simulate(seed, Flaws::default());
    let (i, open) = first_open(&sim);
    if let Some(h) = sim.transitions[i + 1..]
        .iter_mut()
        .find(|t| t["instance"] == open["instance"] && t["to"] == "half-open")
    {
        h["at_ms"] = json!(open["at_ms"].as_u64().unwrap() + BREAKER_COOLDOWN_MS / 2);
        assert_only(&check(&history(&sim, true)), Some("breaker"));
    }
    // closed -> half-open is not a move a breaker makes.
    let mut sim = simulate(seed, Flaws::default());
    let (i, _) = first_open(&sim);
    sim.transitions[i]["to"] = json!("half-open");
    let c = check(&history(&sim, true));
    assert_eq!(verdicts(&c)["breaker"], json!(false));
}

#[test]
fn too_many_tries_unsafe_retries_and_a_blown_budget_are_caught() {
    let sim0 = simulate(3, Flaws::default());
    // A fourth try.
    let mut sim = simulate(3, Flaws::default());
    let r = &mut sim.records[10];
    let mut extra = r["attempts"][0].clone();
    extra["instance"] = Value::Null;
    for _ in 0..MAX_TRIES {
        r["attempts"].as_array_mut().unwrap().push(extra.clone());
    }
    assert_only(&check(&history(&sim, true)), Some("retries"));
    // A POST tried again after a try that may have applied it.
    let mut sim = simulate(3, Flaws::default());
    let r = sim
        .records
        .iter_mut()
        .find(|r| r["idempotent"] == false && r["attempts"].as_array().unwrap().len() == 1)
        .unwrap();
    r["attempts"][0]["maybe_applied"] = json!(true);
    let mut again = r["attempts"][0].clone();
    again["n"] = json!(2);
    again["instance"] = Value::Null;
    r["attempts"].as_array_mut().unwrap().push(again);
    assert_only(&check(&history(&sim, true)), Some("retries"));
    // Hundreds of retries in a window with few requests: a storm.
    let mut sim = simulate(3, Flaws::default());
    sim.records.truncate(40);
    for r in sim.records.iter_mut().take(40) {
        let first = r["attempts"][0].clone();
        let mut retry = first.clone();
        retry["n"] = json!(2);
        retry["instance"] = Value::Null;
        r["attempts"] = json!([first, retry]);
    }
    let copies: Vec<Value> = (0..5)
        .flat_map(|c| {
            sim.records.iter().map(move |r| {
                let mut r = r.clone();
                r["request"] = json!(format!("{}-{c}", r["request"].as_str().unwrap()));
                r
            })
        })
        .collect();
    sim.records = copies;
    let c = check(&history(&sim, true));
    assert_eq!(
        verdicts(&c)["retries"],
        json!(true),
        "{}",
        c.checkers["retries"]
    );
    // 200 requests with a retry each fit the budget; four retries each do not.
    for r in sim.records.iter_mut() {
        let first = r["attempts"][0].clone();
        let more: Vec<Value> = (0..3).map(|_| first.clone()).collect();
        r["attempts"].as_array_mut().unwrap().extend(more);
    }
    // Each request now takes too many tries (200 findings), and the one
    // window's retries exceed the budget (one more).
    let c = check(&history(&sim, true));
    assert_eq!(
        c.checkers["retries"]["found"],
        json!(201),
        "{}",
        c.checkers["retries"]
    );
    assert_only(&check(&history(&sim0, true)), None);
}

#[test]
fn a_try_after_the_deadline_is_caught() {
    let mut sim = simulate(5, Flaws::default());
    let r = &mut sim.records[20];
    let d = r["deadline_ms"].as_u64().unwrap();
    let last = r["attempts"].as_array().unwrap().len() - 1;
    r["attempts"][last]["admitted_ms"] = json!(d + 40);
    assert_only(&check(&history(&sim, true)), Some("deadline"));
}

/// When `instance`'s breaker was open (to half-open), in the simulated run.
fn open_spans(sim: &Sim, instance: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut since = None;
    for t in sim.transitions.iter().filter(|t| t["instance"] == instance) {
        let at = t["at_ms"].as_u64().unwrap();
        if t["to"] == "open" {
            since = Some(at);
        } else if let Some(s) = since.take() {
            out.push((s, at));
        }
    }
    if let Some(s) = since {
        out.push((s, u64::MAX));
    }
    out
}

#[test]
fn tries_to_an_instance_dead_past_the_detection_bound_are_caught_and_early_ones_are_not() {
    let seed = (0..50)
        .find(|s| {
            simulate(*s, Flaws::default())
                .kill
                .as_ref()
                .is_some_and(|(_, a, b)| b - a > DETECTION_MS + 400)
        })
        .unwrap();
    let mut sim = simulate(seed, Flaws::default());
    let (victim, start, _) = sim.kill.clone().unwrap();
    let open = open_spans(&sim, &victim);
    let closed_at = |r: &Value| {
        let at = r["arrival_ms"].as_u64().unwrap();
        !open.iter().any(|(a, b)| at >= *a && at <= *b)
    };
    // A try just after the kill, within the bound, is fine (it failed).
    let early = sim
        .records
        .iter_mut()
        .find(|r| r["arrival_ms"].as_u64().unwrap() > start + 50 && closed_at(r))
        .unwrap();
    early["attempts"][0]["instance"] = json!(victim);
    early["attempts"][0]["result_seq"] = Value::Null;
    early["attempts"][0]["callee_span"] = Value::Null;
    assert_only(&check(&history(&sim, true)), None);
    // One sent past the bound is caught (its breaker may have been open
    // then too: only the routing verdict is asserted).
    let (_, _, end) = sim.kill.clone().unwrap();
    let late = sim
        .records
        .iter_mut()
        .find(|r| {
            let at = r["arrival_ms"].as_u64().unwrap();
            at > start + DETECTION_MS + 50 && at + 150 < end
        })
        .unwrap();
    late["attempts"][0]["instance"] = json!(victim);
    late["attempts"][0]["result_seq"] = Value::Null;
    late["attempts"][0]["callee_span"] = Value::Null;
    let c = check(&history(&sim, true));
    assert_eq!(verdicts(&c)["health-routing"], json!(false));
    assert!(c.checkers["health-routing"]["examples"][0]["problem"]
        .as_str()
        .unwrap()
        .contains("detection bound"));
}

#[test]
fn broken_trace_trees_and_unrecorded_answers_are_caught() {
    let mut sim = simulate(7, Flaws::default());
    let r = sim
        .records
        .iter_mut()
        .find(|r| r["outcome"] == "ok")
        .unwrap();
    let last = r["attempts"].as_array().unwrap().len() - 1;
    r["attempts"][last]["callee_span"]["parent"] = json!("00000000000000ff");
    assert_only(&check(&history(&sim, true)), Some("traces"));
    let mut sim = simulate(7, Flaws::default());
    let at = sim
        .records
        .iter()
        .position(|r| r["outcome"] == "ok")
        .unwrap();
    sim.records.remove(at);
    assert_only(&check(&history(&sim, true)), Some("traces"));
    let mut sim = simulate(7, Flaws::default());
    sim.records[at]["parent"] = json!("00000000000000ee");
    assert_only(&check(&history(&sim, true)), Some("traces"));
    // A sidecar that restarted after the request keeps nothing from before:
    // the missing record is not held against it.
    let mut sim = simulate(7, Flaws::default());
    let restarted = sim.records[at]["end_ms"].as_u64().unwrap() + 5;
    sim.records.remove(at);
    sim.since_ms = restarted;
    let c = check(&history(&sim, true));
    assert_eq!(
        verdicts(&c)["traces"],
        json!(true),
        "{}",
        c.checkers["traces"]
    );
}

#[test]
fn without_the_sidecars_records_every_checker_is_unknown() {
    let c = check(&history(&simulate(1, Flaws::default()), false));
    assert_eq!(c.valid, Validity::Unknown);
    assert!(verdicts(&c).values().all(|v| *v == json!("unknown")));
}

#[test]
fn an_instance_that_comes_back_has_a_new_breaker_judged_on_its_own() {
    let sim0 = simulate(11, Flaws::default());
    let mut sim = simulate(11, Flaws::default());
    // The same sidecar's records again, later, of a second generation of
    // each instance's breaker, numbering results from 1 again.
    let shift = 100_000;
    let later = |v: &mut Value, key: &str| {
        if let Some(t) = v[key].as_u64() {
            v[key] = json!(t + shift);
        }
    };
    for r in &sim0.records {
        let mut r = r.clone();
        r["request"] = json!(format!("{}-again", r["request"].as_str().unwrap()));
        for k in ["arrival_ms", "deadline_ms", "end_ms"] {
            later(&mut r, k);
        }
        for a in r["attempts"].as_array_mut().unwrap() {
            later(a, "admitted_ms");
            a["generation"] = json!(2);
        }
        sim.records.push(r);
    }
    for t in &sim0.transitions {
        let mut t = t.clone();
        later(&mut t, "at_ms");
        t["generation"] = json!(2);
        sim.transitions.push(t);
    }
    assert_only(&check(&history(&sim, true)), None);
    // Mixed into one generation, the second run's moves contradict the first's.
    for t in sim.transitions.iter_mut() {
        t["generation"] = Value::Null;
    }
    for r in sim.records.iter_mut() {
        for a in r["attempts"].as_array_mut().unwrap() {
            a["generation"] = Value::Null;
        }
    }
    assert_eq!(
        verdicts(&check(&history(&sim, true)))["breaker"],
        json!(false)
    );
}

#[test]
fn a_balancer_that_starves_an_instance_in_calm_stretches_is_caught() {
    let calm = Flaws {
        calm: true,
        ..Flaws::default()
    };
    // Correct simulated sidecars pick evenly among usable instances; with
    // brownouts and kills the spread is judged only where it can be.
    for seed in 0..100 {
        let c = check(&history(&simulate(seed, Flaws::default()), true));
        let v = &c.checkers["spread"];
        assert_ne!(v["valid"], json!(false), "seed {seed}: {v}");
        let c = check(&history(&simulate(seed, calm), true));
        assert_only(&c, None);
        assert_eq!(c.checkers["spread"]["valid"], json!(true), "seed {seed}");
    }
    // A balancer that sends every first try to one instance while all are fine.
    let mut caught = 0;
    for seed in 0..50 {
        let mut sim = simulate(seed, calm);
        for r in &mut sim.records {
            if let Some(first) = r["attempts"].get_mut(0) {
                first["instance"] = json!("api1");
            }
        }
        let c = check(&history(&sim, true));
        assert_eq!(c.checkers["spread"]["valid"], json!(false), "seed {seed}");
        assert!(c.checkers["spread"]["summary"]
            .as_str()
            .unwrap()
            .contains("2 of 3 instances"));
        caught += 1;
    }
    assert_eq!(caught, 50);
}
