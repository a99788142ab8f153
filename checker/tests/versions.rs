//! The version-zone refuter of `append-kv` never refutes a history that a brute
//! force linearizes, on thousands of small random histories, and it does refute
//! some; the anchors it decides agree with their listed verdicts.

mod common;

use checker::history::{Op, Outcome};
use checker::value::Value;
use checker::versions::refute_append_kv;
use checker::{check_named, CheckOptions, Validity};
use common::{linearizable, Rng};

/// A process's open op: what it does, its key, its value, and its result once applied.
type Open = (&'static str, usize, String, Option<String>);

/// Up to 3 processes run get/put/append on one or two keys; each op takes effect
/// at a random moment while open, and some gets report an older state instead.
/// Values are unique unless `repeat` lets about half of them repeat (a retried
/// append), as in Porcupine's `c50`.
fn generate(seed: u64, repeat: bool) -> String {
    let mut rng = Rng::seeded(seed);
    let keys = 1 + rng.below(2) as usize;
    let mut state = vec![String::new(); keys];
    let mut past: Vec<Vec<String>> = vec![vec![String::new()]; keys];
    let mut open: Vec<Option<Open>> = vec![None, None, None];
    let mut lines = Vec::new();
    let mut started = 0;
    let total = 3 + rng.below(5);
    let mut next_value = 0;
    loop {
        let p = rng.below(3) as usize;
        match open[p].take() {
            None if started < total => {
                started += 1;
                let key = rng.below(keys as u64) as usize;
                let f = ["get", "put", "append", "append"][rng.below(4) as usize];
                let value = if f == "get" {
                    String::new()
                } else {
                    next_value += 1;
                    let v = if repeat && rng.below(2) == 0 {
                        rng.below(2)
                    } else {
                        100 + next_value
                    };
                    format!("<{v}>")
                };
                let shown = if f == "get" {
                    "null".to_string()
                } else {
                    format!("\"{value}\"")
                };
                lines.push(format!(
                    "{{\"type\":\"invoke\",\"process\":{p},\"f\":\"{f}\",\"key\":\"k{key}\",\"value\":{shown}}}"
                ));
                open[p] = Some((f, key, value, None));
            }
            None => {
                if open.iter().all(|o| o.is_none()) {
                    break;
                }
            }
            Some((f, key, value, None)) => {
                // Take effect now.
                let result = match f {
                    "get" => {
                        if rng.below(4) == 0 {
                            let old = &past[key];
                            old[rng.below(old.len() as u64) as usize].clone()
                        } else {
                            state[key].clone()
                        }
                    }
                    "put" => {
                        state[key] = value.clone();
                        value.clone()
                    }
                    _ => {
                        state[key].push_str(&value);
                        value.clone()
                    }
                };
                past[key].push(state[key].clone());
                open[p] = Some((f, key, value, Some(result)));
            }
            Some((f, key, _, Some(result))) => {
                lines.push(format!(
                    "{{\"type\":\"ok\",\"process\":{p},\"f\":\"{f}\",\"key\":\"k{key}\",\"value\":\"{result}\"}}"
                ));
            }
        }
    }
    lines.join("\n") + "\n"
}

fn apply(state: &[String], op: &Op, key: usize) -> Option<Vec<String>> {
    let mut next = state.to_vec();
    let text = |v: &Value| match v {
        Value::Str(s) => s.to_string(),
        _ => String::new(),
    };
    match &*op.f {
        "get" => match &op.output {
            Outcome::Ok(v) => (text(v) == state[key]).then_some(next),
            Outcome::Unknown => Some(next),
        },
        "put" => {
            next[key] = text(&op.input);
            Some(next)
        }
        _ => {
            next[key].push_str(&text(&op.input));
            Some(next)
        }
    }
}

/// Every real-time-respecting order of the ops (all complete).
fn brute_force(ops: &[Op], keys: usize) -> bool {
    linearizable(ops, vec![String::new(); keys], |state, op| {
        apply(state, op, op.key.unwrap_or(0) as usize)
    })
}

fn agrees_on(repeat: bool) -> (usize, usize) {
    let (mut refuted, mut invalid) = (0, 0);
    for seed in 0..6000 {
        let text = generate(seed, repeat);
        let history = checker::format::jsonl::read(text.as_bytes()).unwrap();
        let linearizable = brute_force(&history.ops, history.keys.len());
        invalid += usize::from(!linearizable);
        if let Some(r) = refute_append_kv(&history) {
            assert!(
                !linearizable,
                "refuted a linearizable history ({}):\n{text}",
                r.reason
            );
            refuted += 1;
            // The whole check reports the same refutation.
            let got = check_named("append-kv", &history, &CheckOptions::default()).unwrap();
            assert_eq!(got.valid, Validity::Invalid);
        }
    }
    (refuted, invalid)
}

#[test]
fn never_refutes_what_a_brute_force_linearizes_and_refutes_some() {
    let (refuted, invalid) = agrees_on(false);
    eprintln!("refuted {refuted} of {invalid} invalid histories");
    assert!(
        invalid > 100,
        "the generator makes invalid histories: {invalid}"
    );
    assert!(
        refuted > invalid / 2,
        "the refuter finds a fair share of them: {refuted} of {invalid}"
    );
}

#[test]
fn repeated_values_never_lead_to_a_false_refutation() {
    let (refuted, invalid) = agrees_on(true);
    eprintln!("repeated values: refuted {refuted} of {invalid} invalid histories");
    assert!(
        refuted > invalid / 4,
        "the refuter still finds some: {refuted} of {invalid}"
    );
}

#[test]
fn porcupine_kv_anchors_with_unique_values_are_refuted_without_search() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/porcupine/kv");
    for (file, refuted) in [
        ("c01-ok.txt", false),
        ("c10-ok.txt", false),
        ("c01-bad.txt", true),
        ("c10-bad.txt", true),
    ] {
        let path = std::path::Path::new(dir).join(file);
        let history = checker::format::read_file(&path, checker::Format::JepsenEdn).unwrap();
        assert_eq!(refute_append_kv(&history).is_some(), refuted, "{file}");
    }
}
