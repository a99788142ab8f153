//! The `mesh` workload's checkers. They read what every sidecar recorded (the
//! final `records` op) beside the history: the clients' requests and the
//! nemesis's faults.
//!
//! - `breaker`: transitions are legal (closed to open, open to half-open no
//!   sooner than the cool-down, half-open to open or closed); a breaker opens
//!   at the latest on the failure that makes [`BREAKER_FAILURES`] in a row;
//!   no try is let through while it is open.
//! - `retries`: no request takes more than [`MAX_TRIES`] tries; a
//!   non-idempotent request is never tried again after a try that may have
//!   applied it; retries fit the budget in every 10 s window.
//! - `deadline`: no try starts after the request's deadline.
//! - `health-routing`: no try goes to an instance that was killed, paused or
//!   cut off from that sidecar more than [`DETECTION_MS`] before; with the
//!   failover times and availability while an instance was healthy.
//! - `traces`: each request's spans form one tree under the client's span,
//!   and every request a client saw answered was recorded by its sidecar.
//! - `spread`: while no fault touches any instance (and [`SETTLE_MS`] after
//!   the last one healed), the balancer (power of two choices over equal
//!   instances) gives each instance at least a third of its even share of
//!   first tries; judged once there are [`SPREAD_MIN`] such tries (with
//!   fewer, it says so and finds nothing).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use checker::{CheckerResult, History, Validity};
use serde_json::{json, Value};

use super::{
    BREAKER_COOLDOWN_MS, BREAKER_FAILURES, BUDGET_PER_SEC, BUDGET_RATIO, DETECTION_MS, MAX_TRIES,
};
use crate::findings::{json_of, output, Findings};
use crate::Checked;

/// Faults that make an instance unreachable from a sidecar.
const DEADLY: &[&str] = &["kill", "pause", "partition"];
/// A fault's heal is recorded after it took effect: tries this close to the
/// recorded heal are not judged.
const HEAL_MARGIN_MS: u64 = 100;
/// Width of the windows the retry budget is checked over.
const BUDGET_WINDOW_MS: u64 = 10_000;
/// After a fault heals, how long breakers, health checks and discovery get
/// before the spread is judged again.
const SETTLE_MS: u64 = 3_000;
/// First tries in calm stretches needed before the spread is judged.
const SPREAD_MIN: usize = 300;

/// What the sidecars recorded.
struct Evidence {
    /// (sidecar, record).
    records: Vec<(String, Value)>,
    /// Breaker transitions, in the order each sidecar logged them.
    transitions: Vec<Value>,
    /// Health changes, in the order each sidecar logged them.
    health: Vec<Value>,
    /// Per sidecar, the unix ms from which it holds the record of every
    /// request: it keeps nothing from before it (re)started, and drops its
    /// oldest records past a bound.
    kept_from: BTreeMap<String, u64>,
    /// Sidecars that dropped records: their breakers' result sequences have
    /// holes, so only what remains certain is judged.
    dropped: BTreeSet<String>,
}

/// Runs every checker.
pub fn check(history: &History) -> Checked {
    let mut checked = Checked::default();
    let Some(evidence) = evidence(history) else {
        for name in [
            "breaker",
            "retries",
            "deadline",
            "health-routing",
            "traces",
            "spread",
        ] {
            checked.add(
                name,
                CheckerResult::new(
                    Validity::Unknown,
                    "the sidecars' records were not read at the end of the run",
                    json!({}),
                ),
            );
        }
        return checked;
    };
    breaker(&evidence).done(&mut checked, None);
    retries(&evidence).done(&mut checked, None);
    deadline(&evidence).done(&mut checked, None);
    let (routing, figures) = health_routing(history, &evidence);
    routing.done(&mut checked, None);
    if let Some(Value::Object(r)) = checked.checkers.get_mut("health-routing") {
        r.insert("figures".into(), figures);
    }
    traces(history, &evidence).done(&mut checked, None);
    let (spread_findings, too_few, shares) = spread(history, &evidence, super::INSTANCES);
    match too_few {
        // Faults all along leave nothing to judge: reported, not judged.
        Some(why) => checked.add(
            "spread",
            CheckerResult::new(Validity::Valid, format!("not judged: {why}"), json!({})),
        ),
        None => spread_findings.done(&mut checked, None),
    }
    if let Some(Value::Object(r)) = checked.checkers.get_mut("spread") {
        r.insert("first_tries".into(), shares);
    }
    checked
}

fn evidence(history: &History) -> Option<Evidence> {
    let op = history.ops.iter().rev().find(|o| &*o.f == "records")?;
    let out = output(op)?;
    let mut records = Vec::new();
    let mut transitions = Vec::new();
    let mut health = Vec::new();
    let mut kept_from = BTreeMap::new();
    let mut dropped = BTreeSet::new();
    for (sidecar, got) in out.as_object()? {
        let list = got["records"].as_array().cloned().unwrap_or_default();
        let mut from = u(&got["since_ms"]);
        if u(&got["dropped"]) > 0 {
            dropped.insert(sidecar.clone());
            // What was dropped had ended by the time the oldest kept one did.
            from = from.max(
                list.iter()
                    .map(|r| u(&r["end_ms"]))
                    .min()
                    .unwrap_or(u64::MAX),
            );
        }
        kept_from.insert(sidecar.clone(), from);
        for r in list {
            records.push((sidecar.clone(), r));
        }
        transitions.extend(got["transitions"].as_array().cloned().unwrap_or_default());
        health.extend(got["health"].as_array().cloned().unwrap_or_default());
    }
    Some(Evidence {
        records,
        transitions,
        health,
        kept_from,
        dropped,
    })
}

/// The real tries of a record (not the rounds that found no instance).
fn tries(record: &Value) -> impl Iterator<Item = &Value> {
    record["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["instance"].is_string())
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// One step of a breaker's history: a result (by its number) or a transition.
enum Step<'a> {
    Result { seq: u64, ok: bool },
    Transition(&'a Value),
}

fn breaker(ev: &Evidence) -> Findings {
    let mut f = Findings::new("breaker", "breakers");
    // (sidecar, instance, breaker generation) -> results and transitions: an
    // instance that left and came back has a new breaker.
    type Key = (String, String, u64);
    let mut results: BTreeMap<Key, Vec<(u64, bool)>> = BTreeMap::new();
    let mut admitted: BTreeMap<Key, Vec<u64>> = BTreeMap::new();
    for (sidecar, r) in &ev.records {
        for a in tries(r) {
            let key = (
                sidecar.clone(),
                a["instance"].as_str().unwrap_or("").to_string(),
                u(&a["generation"]),
            );
            if let Some(seq) = a["result_seq"].as_u64() {
                results
                    .entry(key.clone())
                    .or_default()
                    .push((seq, a["ok"].as_bool().unwrap_or(false)));
            }
            admitted.entry(key).or_default().push(u(&a["admitted_ms"]));
        }
    }
    let mut moves: BTreeMap<Key, Vec<&Value>> = BTreeMap::new();
    for t in &ev.transitions {
        let key = (
            t["sidecar"].as_str().unwrap_or("").to_string(),
            t["instance"].as_str().unwrap_or("").to_string(),
            u(&t["generation"]),
        );
        moves.entry(key).or_default().push(t);
    }
    let keys: BTreeSet<_> = results.keys().chain(moves.keys()).cloned().collect();
    for key in keys {
        f.checked += 1;
        let mut steps: Vec<(u64, u8, usize, Step)> = Vec::new();
        for (i, (seq, ok)) in results.get(&key).into_iter().flatten().enumerate() {
            steps.push((*seq, 0, i, Step::Result { seq: *seq, ok: *ok }));
        }
        let list = moves.get(&key).cloned().unwrap_or_default();
        for (i, t) in list.iter().enumerate() {
            steps.push((u(&t["after_result"]), 1, i, Step::Transition(t)));
        }
        steps.sort_by_key(|(k, kind, i, _)| (*k, *kind, *i));
        let (sidecar, instance, _) = &key;
        let mut state = "closed";
        let mut run = 0u32;
        let mut must_open: Option<u64> = None;
        let mut opened_at = 0u64;
        for (_, _, _, step) in &steps {
            if let Some(seq) = must_open.take() {
                if !matches!(step, Step::Transition(t) if t["to"] == "open")
                    && !ev.dropped.contains(sidecar)
                {
                    f.add(json!({"sidecar": sidecar, "instance": instance,
                        "problem": format!("{BREAKER_FAILURES} failures in a row (up to result {seq}) and the breaker did not open")}));
                }
            }
            match step {
                Step::Result { seq, ok } => {
                    if state != "closed" {
                        continue;
                    }
                    if *ok {
                        run = 0;
                    } else {
                        run += 1;
                        if run == BREAKER_FAILURES {
                            must_open = Some(*seq);
                        }
                    }
                }
                Step::Transition(t) => {
                    let (from, to) = (
                        t["from"].as_str().unwrap_or(""),
                        t["to"].as_str().unwrap_or(""),
                    );
                    let legal = matches!(
                        (from, to),
                        ("closed", "open")
                            | ("open", "half-open")
                            | ("half-open", "open")
                            | ("half-open", "closed")
                    );
                    if !legal || from != state {
                        f.add(json!({"sidecar": sidecar, "instance": instance,
                            "problem": format!("transition {from} -> {to} while {state}"), "transition": t}));
                    }
                    let at = u(&t["at_ms"]);
                    if to == "half-open" && at < opened_at + BREAKER_COOLDOWN_MS {
                        f.add(json!({"sidecar": sidecar, "instance": instance,
                            "problem": format!("half-open {} ms after opening, before the {BREAKER_COOLDOWN_MS} ms cool-down", at.saturating_sub(opened_at))}));
                    }
                    if to == "open" {
                        opened_at = at;
                    }
                    run = 0;
                    state = match to {
                        "open" => "open",
                        "half-open" => "half-open",
                        _ => "closed",
                    };
                }
            }
        }
        if let Some(seq) = must_open.filter(|_| !ev.dropped.contains(sidecar)) {
            f.add(json!({"sidecar": sidecar, "instance": instance,
                "problem": format!("{BREAKER_FAILURES} failures in a row (up to result {seq}) and the breaker did not open")}));
        }
        // While open (from opening to half-opening), nothing is let through.
        let mut open_since: Option<u64> = None;
        let mut spans = Vec::new();
        for t in &list {
            let at = u(&t["at_ms"]);
            match t["to"].as_str() {
                Some("open") => open_since = Some(at),
                _ => {
                    if let Some(s) = open_since.take() {
                        spans.push((s, at));
                    }
                }
            }
        }
        if let Some(s) = open_since {
            spans.push((s, u64::MAX));
        }
        for at in admitted.get(&key).into_iter().flatten() {
            if let Some((s, e)) = spans.iter().find(|(s, e)| at > s && at < e) {
                f.add(json!({"sidecar": sidecar, "instance": instance,
                    "problem": format!("a try let through at {at} while the breaker was open ({s} to {})", if *e == u64::MAX { "the end".to_string() } else { e.to_string() })}));
            }
        }
    }
    f
}

fn retries(ev: &Evidence) -> Findings {
    let mut f = Findings::new("retries", "requests");
    // sidecar -> (arrivals, retry times)
    let mut per_sidecar: BTreeMap<&str, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
    for (sidecar, r) in &ev.records {
        f.checked += 1;
        let attempts: Vec<&Value> = r["attempts"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let id = r["request"].as_str().unwrap_or("?");
        if attempts.len() as u32 > MAX_TRIES {
            f.add(json!({"request": id, "sidecar": sidecar,
                "problem": format!("{} tries, more than the {MAX_TRIES} allowed", attempts.len())}));
        }
        if r["idempotent"] == false {
            if let Some(i) = attempts.iter().position(|a| a["maybe_applied"] == true) {
                if i + 1 < attempts.len() {
                    f.add(json!({"request": id, "sidecar": sidecar,
                        "problem": format!("a non-idempotent request tried again after try {} may have applied it", i + 1)}));
                }
            }
        }
        let e = per_sidecar.entry(sidecar).or_default();
        e.0.push(u(&r["arrival_ms"]));
        for a in attempts.iter().skip(1) {
            e.1.push(u(&a["admitted_ms"]));
        }
    }
    // Whatever the order of deposits and withdrawals, the retries in a window
    // cannot exceed the banked tokens (at most the cap) plus what requests and
    // time earned from a second before it (backoff moves a try after its
    // withdrawal by well under a second).
    let cap = (BUDGET_PER_SEC * 10.0).max(10.0);
    for (sidecar, (arrivals, retried)) in per_sidecar {
        let (Some(first), Some(last)) = (arrivals.iter().min(), retried.iter().max()) else {
            continue;
        };
        let mut w = first - first % BUDGET_WINDOW_MS;
        while w <= *last {
            let end = w + BUDGET_WINDOW_MS;
            let n = retried.iter().filter(|t| **t >= w && **t < end).count() as f64;
            let from = w.saturating_sub(1_000);
            let earned = arrivals.iter().filter(|t| **t >= from && **t < end).count() as f64;
            let allowed = cap + BUDGET_RATIO * earned + BUDGET_PER_SEC * 11.0 + 1.0;
            if n > allowed {
                f.add(json!({"sidecar": sidecar, "window_ms": [w, end],
                    "problem": format!("{n} retries in 10 s where the budget allows at most {allowed:.0} ({earned} requests)")}));
            }
            w = end;
        }
    }
    f
}

fn deadline(ev: &Evidence) -> Findings {
    let mut f = Findings::new("deadline", "requests");
    for (sidecar, r) in &ev.records {
        f.checked += 1;
        let d = u(&r["deadline_ms"]);
        if let Some(late) = tries(r).find(|a| u(&a["admitted_ms"]) > d) {
            f.add(json!({"request": r["request"], "sidecar": sidecar, "try": late["n"],
                "problem": format!("try {} started {} ms after the deadline", late["n"], u(&late["admitted_ms"]) - d)}));
        }
    }
    f
}

/// Every fault's reach, as (sidecar, instance, start, end) unix-ms windows;
/// `*` for every sidecar or instance (a delay slows every link). An instance
/// killed, paused or cut off counts as touched until [`DETECTION_MS`] after
/// it was let go: the sidecars get as long to see it back as to see it gone.
fn touched_windows(history: &History, offset_ms: i64) -> Vec<(String, String, u64, u64)> {
    let mut out: Vec<(String, String, u64, u64)> = broken_windows(history, offset_ms)
        .into_iter()
        .map(|(s, i, a, b, _)| (s, i, a, b + DETECTION_MS))
        .collect();
    let ms = |t: Option<i64>| (t.unwrap_or(0) / 1_000_000 + offset_ms).max(0) as u64;
    let mut open: Option<(String, Value, u64)> = None;
    for e in &history.nemesis {
        if let Some(fault) = e.f.strip_prefix("start-") {
            open = Some((fault.to_string(), json_of(&e.value), ms(e.time)));
        } else if e.f.starts_with("stop-") || &*e.f == "heal-all" {
            let Some((fault, value, start)) = open.take() else {
                continue;
            };
            let end = ms(e.time);
            if DEADLY.contains(&fault.as_str()) {
                continue;
            }
            let hit: Vec<String> = value["nodes"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_else(|| vec!["*".to_string()]);
            for i in hit {
                out.push(("*".into(), i, start, end));
            }
        }
    }
    out
}

/// When each (sidecar, instance) pair was broken, as unix-ms windows
/// [start, heal); sidecar `*` means every sidecar.
fn broken_windows(history: &History, offset_ms: i64) -> Vec<(String, String, u64, u64, String)> {
    let ms = |t: Option<i64>| (t.unwrap_or(0) / 1_000_000 + offset_ms).max(0) as u64;
    let mut out = Vec::new();
    let mut open: Option<(String, Value, u64)> = None;
    for e in &history.nemesis {
        let ends = e.f.starts_with("stop-") || &*e.f == "heal-all";
        if let Some(fault) = e.f.strip_prefix("start-") {
            open = Some((fault.to_string(), json_of(&e.value), ms(e.time)));
        } else if ends {
            let Some((fault, value, start)) = open.take() else {
                continue;
            };
            let end = ms(e.time);
            if !DEADLY.contains(&fault.as_str()) {
                continue;
            }
            match fault.as_str() {
                "partition" => {
                    let grudge = value["grudge"].as_object().cloned().unwrap_or_default();
                    let cut = |a: &str, b: &str| {
                        grudge
                            .get(a)
                            .and_then(Value::as_array)
                            .is_some_and(|l| l.iter().any(|x| x == b))
                    };
                    let names: BTreeSet<String> = grudge.keys().cloned().collect();
                    for s in &names {
                        for i in &names {
                            if s != i && (cut(s, i) || cut(i, s)) {
                                out.push((s.clone(), i.clone(), start, end, fault.clone()));
                            }
                        }
                    }
                }
                _ => {
                    for n in value
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                    {
                        out.push(("*".into(), n.to_string(), start, end, fault.clone()));
                    }
                }
            }
        }
    }
    out
}

/// Sidecar time (unix ms) minus client time (ms since the start): a request
/// reaches its sidecar after the client sent it, so the smallest gap is the
/// offset plus the fastest hop.
fn offset_ms(history: &History, ev: &Evidence) -> i64 {
    let by_id: HashMap<&str, &Value> = ev
        .records
        .iter()
        .filter_map(|(_, r)| Some((r["request"].as_str()?, r)))
        .collect();
    history
        .ops
        .iter()
        .chain(&history.failed)
        .filter_map(|o| {
            let id = o.input.as_str_field("id")?;
            let r = by_id.get(id.as_str())?;
            Some(u(&r["arrival_ms"]) as i64 - o.call_time? / 1_000_000)
        })
        .min()
        .unwrap_or(0)
}

fn health_routing(history: &History, ev: &Evidence) -> (Findings, Value) {
    let mut f = Findings::new("health-routing", "tries");
    // Client time (ns since the start) to sidecar time (unix ms): a request
    // reaches its sidecar after the client sent it, so the smallest gap is
    // the offset plus the fastest hop.
    let offset = offset_ms(history, ev);
    let windows = broken_windows(history, offset);
    let mut instances: BTreeSet<String> = BTreeSet::new();
    for (sidecar, r) in &ev.records {
        for a in tries(r) {
            f.checked += 1;
            let inst = a["instance"].as_str().unwrap_or("");
            instances.insert(inst.to_string());
            let at = u(&a["admitted_ms"]);
            let hit = windows.iter().find(|(s, i, start, end, _)| {
                (s == "*" || s == sidecar)
                    && i == inst
                    && at > start + DETECTION_MS
                    && at + HEAL_MARGIN_MS < *end
            });
            if let Some((_, _, start, _, fault)) = hit {
                f.add(json!({"request": r["request"], "sidecar": sidecar, "instance": inst,
                    "problem": format!("a try sent {} ms after the instance was hit by {fault}, past the {DETECTION_MS} ms detection bound", at - start)}));
            }
        }
    }
    // Figures: failover (from an instance's loss to the first success of a
    // request that arrived after it, served elsewhere) and availability while
    // at least one instance was untouched by any fault (delay touches all).
    let mut failovers = Vec::new();
    // A fault that took every instance from a sidecar leaves nothing to fail
    // over to: no failover time for it.
    let all_lost = |s: &str, start: u64| {
        instances.iter().all(|i| {
            windows
                .iter()
                .any(|(ws, wi, wstart, _, _)| (ws == "*" || ws == s) && wi == i && *wstart == start)
        })
    };
    // A sidecar that restarted after the fault began kept no record of it.
    let covered = |s: &str, start: u64| {
        ev.kept_from
            .iter()
            .filter(|(sidecar, _)| s == "*" || s == sidecar.as_str())
            .all(|(_, &from)| from <= start)
    };
    for (s, lost, start, _, _) in &windows {
        if all_lost(s, *start) || !covered(s, *start) {
            continue;
        }
        let first = ev
            .records
            .iter()
            .filter(|(sidecar, r)| {
                (s == "*" || s == sidecar)
                    && u(&r["arrival_ms"]) >= *start
                    && r["outcome"] == "ok"
                    && tries(r)
                        .last()
                        .is_some_and(|a| a["instance"] != lost.as_str())
            })
            .map(|(_, r)| u(&r["end_ms"]))
            .min();
        if let Some(t) = first {
            failovers.push(t - start);
        }
    }
    failovers.sort_unstable();
    let touched = touched_windows(history, offset);
    let (mut served, mut asked) = (0u64, 0u64);
    for (sidecar, r) in &ev.records {
        let at = u(&r["arrival_ms"]);
        let healthy = instances.iter().any(|i| {
            !touched.iter().any(|(s, wi, start, end)| {
                (s == "*" || s == sidecar) && (wi == "*" || wi == i) && at >= *start && at < *end
            })
        });
        if healthy {
            asked += 1;
            served += (r["outcome"] == "ok") as u64;
        }
    }
    let median = failovers.get(failovers.len() / 2).copied();
    let figures = json!({"failover_ms_median": median, "failover_ms_max": failovers.last(),
        "failovers": failovers.len(),
        "availability_with_a_healthy_instance": if asked > 0 { Some(served as f64 / asked as f64) } else { None },
        "requests_with_a_healthy_instance": asked});
    (f, figures)
}

/// First tries per instance while every instance was untouched by faults and
/// settled; an instance far below its even share of `instances` is a finding.
fn spread(history: &History, ev: &Evidence, instances: usize) -> (Findings, Option<String>, Value) {
    let mut f = Findings::new("spread", "instances");
    let touched = touched_windows(history, offset_ms(history, ev));
    // When some sidecar held an instance out (breaker not closed, health
    // down), a balancer rightly skips it: those stretches are not judged.
    let mut out: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut held: Vec<(String, u64, u64)> = Vec::new();
    let changes = ev
        .transitions
        .iter()
        .map(|t| (t, t["to"] != "closed"))
        .chain(ev.health.iter().map(|h| (h, h["up"] != true)));
    let mut changes: Vec<(&Value, bool)> = changes.collect();
    changes.sort_by_key(|(c, _)| u(&c["at_ms"]));
    for (c, bad) in changes {
        let key = (
            c["sidecar"].as_str().unwrap_or("").to_string(),
            format!("{}{}", c["instance"], c["to"].is_null()),
        );
        let at = u(&c["at_ms"]);
        match (bad, out.get(&key)) {
            (true, None) => {
                out.insert(key, at);
            }
            (false, Some(&from)) => {
                held.push((key.0.clone(), from, at));
                out.remove(&key);
            }
            _ => {}
        }
    }
    held.extend(out.into_iter().map(|((s, _), from)| (s, from, u64::MAX)));
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for (sidecar, r) in &ev.records {
        let at = u(&r["arrival_ms"]);
        let calm = !touched.iter().any(|(s, _, start, end)| {
            (s == "*" || s == sidecar) && at + HEAL_MARGIN_MS >= *start && at < end + SETTLE_MS
        }) && !held
            .iter()
            .any(|(s, from, to)| s == sidecar && at + HEAL_MARGIN_MS >= *from && at <= *to);
        if let (true, Some(first)) = (calm, tries(r).next()) {
            let inst = first["instance"].as_str().unwrap_or("");
            *per.entry(inst.to_string()).or_default() += 1;
        }
    }
    let total: usize = per.values().sum();
    let shares = json!(per);
    if total < SPREAD_MIN {
        let why = format!("only {total} first tries in calm stretches (judged from {SPREAD_MIN})");
        return (f, Some(why), shares);
    }
    // Instances that got no try at all count too.
    let seen: BTreeSet<&str> = ev
        .records
        .iter()
        .flat_map(|(_, r)| tries(r).filter_map(|a| a["instance"].as_str()))
        .collect();
    let floor = total as f64 / instances.max(1) as f64 / 3.0;
    for inst in seen {
        f.checked += 1;
        let got = per.get(inst).copied().unwrap_or(0);
        if (got as f64) < floor {
            f.add(json!({"instance": inst, "first_tries": got, "of": total,
                "problem": format!("{got} of {total} first tries in calm stretches, under a third of an even share ({floor:.0})")}));
        }
    }
    (f, None, shares)
}

fn traces(history: &History, ev: &Evidence) -> Findings {
    let mut f = Findings::new("traces", "requests");
    let offset = offset_ms(history, ev);
    let mut by_id: HashMap<String, (&str, &Value)> = HashMap::new();
    for (sidecar, r) in &ev.records {
        f.checked += 1;
        let id = r["request"].as_str().unwrap_or("?");
        if by_id.insert(id.to_string(), (sidecar, r)).is_some() {
            f.add(json!({"request": id, "problem": "recorded twice"}));
        }
        let (trace, span) = (&r["trace"], &r["span"]);
        let mut spans = BTreeSet::new();
        spans.insert(span.as_str().unwrap_or("").to_string());
        for a in tries(r) {
            let s = a["span"].as_str().unwrap_or("");
            if !spans.insert(s.to_string()) {
                f.add(
                    json!({"request": id, "problem": format!("span {s} used twice in one trace")}),
                );
            }
            let callee = &a["callee_span"];
            if callee.is_object() && (callee["trace"] != *trace || callee["parent"] != a["span"]) {
                f.add(json!({"request": id, "problem": "the instance's span is not a child of the try that called it", "try": a}));
            }
        }
    }
    // Every answered request was recorded, under the client's trace and span.
    for op in &history.ops {
        if !matches!(&*op.f, "get" | "post") || output(op).is_none() {
            continue;
        }
        let Some(id) = op.input.as_str_field("id") else {
            continue;
        };
        let Some((_, r)) = by_id.get(&id) else {
            // Not judged when its sidecar may have lost the record: the
            // request began before that sidecar's records are complete.
            let called = op
                .call_time
                .map_or(0, |t| (t / 1_000_000 + offset).max(0) as u64);
            let lost = match op.node.as_deref() {
                Some(n) => ev.kept_from.get(n).is_none_or(|from| called < *from),
                None => ev.kept_from.values().any(|from| called < *from),
            };
            if !lost {
                f.add(json!({"request": id, "problem": "answered ok but no sidecar recorded it"}));
            }
            continue;
        };
        let input = json_of(&op.input);
        if r["trace"] != input["trace"] || r["parent"] != input["span"] {
            f.add(json!({"request": id, "problem": "the sidecar's span is not a child of the client's",
                "client": {"trace": input["trace"], "span": input["span"]},
                "sidecar": {"trace": r["trace"], "parent": r["parent"]}}));
        }
        if r["outcome"] != "ok" {
            f.add(json!({"request": id, "problem": format!("answered ok to the client, recorded as {}", r["outcome"])}));
        }
    }
    f
}

/// Reads a string field of an op's input.
trait Field {
    fn as_str_field(&self, name: &str) -> Option<String>;
}

impl Field for checker::value::Value {
    fn as_str_field(&self, name: &str) -> Option<String> {
        json_of(self)[name].as_str().map(str::to_string)
    }
}

#[cfg(test)]
mod tests;
