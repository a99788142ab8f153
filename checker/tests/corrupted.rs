//! Generated linearizable histories, corrupted, checked with and without the
//! symmetry pruning between equal ops: the verdicts must agree, so a pruning rule
//! cannot hide a bug; every counterexample must replay (its prefix is a legal,
//! real-time-respecting linearization that ends in the reported state).

use checker::generate::{cas_register_history, Shape};
use checker::history::History;
use checker::value::Value;
use checker::{check_named, CheckOptions, Engine, Linearizability, Validity};

/// A tiny seeded PRNG for choosing corruptions.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Rewrites the value of one `ok` completion of `f` (a read's result or a write's
/// argument, which the completion repeats) to another small value.
fn corrupt(text: &str, f: &str, dice: &mut Dice) -> Option<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let needle = format!("\"type\":\"ok\",\"f\":\"{f}\"");
    let candidates: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains(&needle))
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let at = candidates[dice.below(candidates.len())];
    let line = lines[at].clone();
    let start = line.find("\"value\":")? + "\"value\":".len();
    let end = start + line[start..].find(",\"time\"")?;
    let old = line[start..end].to_string();
    let new = loop {
        let v = dice.below(11);
        let v = if v == 10 {
            "null".to_string()
        } else {
            v.to_string()
        };
        if v != old {
            break v;
        }
    };
    if f == "write" {
        // The invocation carries the argument too: change both, so the write
        // is a different write, not a malformed pair.
        let p = line.find("\"process\":")? + 10;
        let process = &line[p..p + line[p..].find(',')?];
        let invoke = (0..at).rev().find(|&i| {
            lines[i].contains("\"type\":\"invoke\"")
                && lines[i].contains(&format!("\"process\":{process},"))
        })?;
        lines[invoke] = lines[invoke].replacen(
            &format!("\"value\":{old},"),
            &format!("\"value\":{new},"),
            1,
        );
    }
    lines[at] = format!("{}{}{}", &line[..start], new, &line[end..]);
    Some(lines.join("\n") + "\n")
}

fn check(history: &History, symmetry: bool) -> Linearizability {
    check_with(history, symmetry, true)
}

/// Without the reachability pass, the depth-first search alone (so a refutation
/// carries its prefix).
fn check_with(history: &History, symmetry: bool, reachability: bool) -> Linearizability {
    let options = CheckOptions {
        symmetry,
        reachability,
        engine: if reachability {
            Engine::Both
        } else {
            Engine::Search
        },
        ..CheckOptions::default()
    };
    check_named("cas-register", history, &options).unwrap()
}

/// The register's step, written apart from the checker's model.
fn step(state: &Value, f: &str, input: &Value, output: &Option<Value>) -> Option<Value> {
    match (f, output) {
        ("read", Some(v)) => (v == state).then(|| state.clone()),
        ("read", None) => Some(state.clone()),
        ("write", _) => Some(input.clone()),
        ("cas", Some(_)) => {
            let (a, b) = input.as_pair()?;
            (a == state).then(|| b.clone())
        }
        // An indeterminate cas that does not match failed: no effect.
        ("cas", None) => {
            let (a, b) = input.as_pair()?;
            Some(if a == state { b.clone() } else { state.clone() })
        }
        _ => None,
    }
}

/// The counterexample's prefix is a linearization: each op legal in turn from
/// the initial state, no op placed before one that completed (ok) before it was invoked,
/// ending in the reported state; the blocked op is not in it.
fn assert_replays(result: &Linearizability, text: &str) {
    let cx = result
        .failures
        .first()
        .expect("an invalid verdict names a counterexample");
    let mut state = Value::Null;
    for op in &cx.prefix {
        state = step(&state, &op.f, &op.value, &op.output)
            .unwrap_or_else(|| panic!("prefix op {op:?} is illegal from {state:?}\n{text}"));
    }
    assert_eq!(
        state, cx.state,
        "the reported state is not the prefix's end state"
    );
    for (i, a) in cx.prefix.iter().enumerate() {
        for b in &cx.prefix[i + 1..] {
            // An indeterminate op may take effect any time after its invocation.
            if let (Some(done), "ok") = (b.complete_line, b.outcome) {
                assert!(
                    done > a.invoke_line,
                    "op invoked at line {} is placed after op invoked at line {}, which completed first (line {done}); symmetry {}\n{a:?}\n{b:?}",
                    b.invoke_line,
                    a.invoke_line,
                    cx.exact
                );
            }
        }
    }
    assert!(cx.prefix.iter().all(|p| p.index != cx.op.index));
}

#[test]
fn pruning_agrees_with_the_plain_search_on_corrupted_histories() {
    let mut dice = Dice(7);
    let (mut valid, mut invalid) = (0, 0);
    for seed in 0..300u64 {
        let processes = [5, 6, 8, 10, 12][seed as usize % 5];
        let text = cas_register_history(Shape {
            ops: 240,
            keys: 1,
            processes,
            seed,
        });
        let history = checker::format::jsonl::read(text.as_bytes()).unwrap();
        assert_eq!(check(&history, true).valid, Validity::Valid, "seed {seed}");
        let f = if seed % 2 == 0 { "read" } else { "write" };
        let Some(bad) = corrupt(&text, f, &mut dice) else {
            continue;
        };
        let history = checker::format::jsonl::read(bad.as_bytes()).unwrap();
        let pruned = check(&history, true);
        let plain = check(&history, false);
        assert_eq!(
            pruned.valid, plain.valid,
            "seed {seed}, corrupted {f}:\n{bad}"
        );
        match pruned.valid {
            Validity::Invalid => {
                invalid += 1;
                assert_replays(&pruned, &bad);
                assert_replays(&plain, &bad);
            }
            Validity::Valid => valid += 1,
            Validity::Unknown => panic!("seed {seed}: unknown on a small history"),
        }
    }
    // The comparison means little unless both answers occur often.
    assert!(
        invalid >= 75 && valid >= 25,
        "{invalid} invalid, {valid} valid"
    );
}

/// The configuration-set sweep against the depth-first search, each alone, on
/// long generated histories (slots reused, indeterminate ops left open) with one
/// corrupted read or write: the verdicts must agree, and a sweep's refutation
/// names an op the corruption could have made impossible.
#[test]
fn the_sweep_agrees_with_the_search_on_corrupted_histories() {
    let mut dice = Dice(11);
    let (mut valid, mut invalid) = (0, 0);
    for seed in 0..200u64 {
        let processes = [4, 6, 9, 12, 16][seed as usize % 5];
        let text = cas_register_history(Shape {
            ops: 300,
            keys: 1,
            processes,
            seed: 5000 + seed,
        });
        let f = if seed % 2 == 0 { "read" } else { "write" };
        let Some(bad) = corrupt(&text, f, &mut dice) else {
            continue;
        };
        let history = checker::format::jsonl::read(bad.as_bytes()).unwrap();
        let alone = |engine| {
            let options = CheckOptions {
                engine,
                reachability: false,
                ..CheckOptions::default()
            };
            check_named("cas-register", &history, &options).unwrap()
        };
        let (search, sweep) = (alone(Engine::Search), alone(Engine::Sweep));
        assert_eq!(
            search.valid, sweep.valid,
            "seed {seed}, corrupted {f}:\n{bad}"
        );
        assert_eq!(
            alone(Engine::Both).valid,
            search.valid,
            "seed {seed}, both engines:\n{bad}"
        );
        match sweep.valid {
            Validity::Invalid => {
                invalid += 1;
                let cx = &sweep.failures[0];
                assert!(cx.reason.is_some() && cx.prefix.is_empty(), "{cx:?}");
                // The op it blocks on returns no earlier than the corrupted one is
                // invoked: nothing before the corruption can be impossible.
                let corrupted = bad
                    .lines()
                    .zip(text.lines())
                    .position(|(a, b)| a != b)
                    .unwrap();
                let blocked = cx.op.complete_line.unwrap() as usize;
                assert!(
                    blocked > corrupted,
                    "seed {seed}: blocked on line {blocked}, corrupted {}",
                    corrupted + 1
                );
            }
            Validity::Valid => valid += 1,
            Validity::Unknown => panic!("seed {seed}: unknown on a small history"),
        }
    }
    assert!(
        invalid >= 40 && valid >= 20,
        "{invalid} invalid, {valid} valid"
    );
}

/// Replaces a cas's expected value (the `nth` ok cas) with `value`, in its
/// invocation and completion both.
fn with_cas_expecting(text: &str, nth: usize, value: &str) -> Option<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let at = (0..lines.len())
        .filter(|&i| lines[i].contains("\"type\":\"ok\",\"f\":\"cas\""))
        .nth(nth)?;
    let p = lines[at].find("\"process\":")? + 10;
    let process = lines[at][p..p + lines[at][p..].find(',')?].to_string();
    let invoke = (0..at).rev().find(|&i| {
        lines[i].contains("\"type\":\"invoke\"")
            && lines[i].contains(&format!("\"process\":{process},"))
    })?;
    for i in [invoke, at] {
        let start = lines[i].find("\"value\":[")? + "\"value\":[".len();
        let end = start + lines[i][start..].find(',')?;
        lines[i] = format!("{}{}{}", &lines[i][..start], value, &lines[i][end..]);
    }
    Some(lines.join("\n") + "\n")
}

/// Reads and cas ops that expect a value nothing writes: the reachability pass
/// refutes them before searching, the plain search refutes them the long way, and
/// both must agree; the pass names the corrupted op itself.
#[test]
fn the_reachability_pass_agrees_with_the_search_on_unwritten_values() {
    for seed in 0..60u64 {
        // Over 256 ops, so the key is past the size where the search goes first.
        let text = cas_register_history(Shape {
            ops: 400,
            keys: 1,
            processes: [4, 6, 8][seed as usize % 3],
            seed: 1000 + seed,
        });
        let nth = seed as usize % 17;
        let bad = if seed % 2 == 0 {
            checker::generate::with_read_result(&text, nth, "999999")
        } else {
            with_cas_expecting(&text, nth, "999999")
        };
        let Some(bad) = bad else { continue };
        let history = checker::format::jsonl::read(bad.as_bytes()).unwrap();
        let fast = check_with(&history, true, true);
        let slow = check_with(&history, true, false);
        assert_eq!(fast.valid, Validity::Invalid, "seed {seed}\n{bad}");
        assert_eq!(slow.valid, Validity::Invalid, "seed {seed}\n{bad}");
        assert_replays(&slow, &bad);
        let cx = &fast.failures[0];
        assert!(cx.reason.is_some() && cx.prefix.is_empty(), "{cx:?}");
        let corrupted = if seed % 2 == 0 {
            cx.op.output.as_ref()
        } else {
            cx.op.value.as_pair().map(|(expected, _)| expected)
        };
        assert_eq!(corrupted, Some(&Value::Int(999999)), "{cx:?}");
        assert!(slow.failures[0].reason.is_none());
    }
}
