//! The configuration-set sweep tries an indeterminate op only where it changes
//! what an open op can do. That pruning must lose no linearization: on random
//! histories with up to 4 processes, many indeterminate writes and cas, and
//! reads taken from a real execution (some made stale), the sweep and the
//! search agree with a brute force.

mod common;

use checker::{check_named, CheckOptions, Engine, Validity};
use common::{brute_force, Rng};

/// An open op: process, f, argument text, and its result once applied.
type Open = (u64, &'static str, String, Option<String>);

/// Processes run reads, writes and cas on one register over values 0..3; each
/// op takes effect at a random moment while open (or, when indeterminate,
/// perhaps never); half the reads report a value from any earlier moment instead.
fn generate(seed: u64) -> String {
    let mut rng = Rng::seeded(seed);
    let procs = 2 + rng.below(3) as usize;
    let total = 4 + rng.below(7);
    let mut state: Option<i64> = None;
    let mut past: Vec<Option<i64>> = vec![None];
    let mut open: Vec<Option<Open>> = vec![None; procs];
    let mut next_process: Vec<u64> = (0..procs as u64).collect();
    let mut fresh = procs as u64;
    let mut started = 0;
    let mut lines = Vec::new();
    let show = |v: Option<i64>| v.map_or("null".to_string(), |x| x.to_string());
    loop {
        let slot = rng.below(procs as u64) as usize;
        match open[slot].take() {
            None if started < total => {
                started += 1;
                let p = next_process[slot];
                let (f, arg) = match rng.below(3) {
                    0 => ("read", "null".to_string()),
                    1 => ("write", rng.below(3).to_string()),
                    _ => ("cas", format!("[{},{}]", rng.below(3), rng.below(3))),
                };
                lines.push(format!(
                    "{{\"type\":\"invoke\",\"process\":{p},\"f\":\"{f}\",\"value\":{arg}}}"
                ));
                open[slot] = Some((p, f, arg, None));
            }
            None => {
                if open.iter().all(Option::is_none) {
                    break;
                }
            }
            Some((p, f, arg, None)) => {
                // Take effect now (an indeterminate op may skip it below).
                let result = match f {
                    "read" => {
                        if rng.below(2) == 0 {
                            show(past[rng.below(past.len() as u64) as usize])
                        } else {
                            show(state)
                        }
                    }
                    "write" => {
                        let v: i64 = arg.parse().unwrap();
                        if rng.below(5) != 0 {
                            state = Some(v);
                        }
                        arg.clone()
                    }
                    _ => {
                        let pair: Vec<i64> = serde_json::from_str(&arg).unwrap();
                        if state == Some(pair[0]) {
                            state = Some(pair[1]);
                            arg.clone()
                        } else {
                            "false".to_string()
                        }
                    }
                };
                past.push(state);
                open[slot] = Some((p, f, arg, Some(result)));
            }
            Some((p, f, arg, Some(result))) => {
                // A third of the writes and cas end indeterminate (the process
                // is then retired); a write that skipped its effect always does.
                let skipped = f == "write" && state != Some(arg.parse().unwrap());
                let info = f != "read" && (rng.below(3) == 0 || skipped && rng.below(2) == 0);
                let kind = if info { "info" } else { "ok" };
                let value = if info { arg.clone() } else { result };
                lines.push(format!(
                    "{{\"type\":\"{kind}\",\"process\":{p},\"f\":\"{f}\",\"value\":{value}}}"
                ));
                if info {
                    next_process[slot] = fresh;
                    fresh += 1;
                }
            }
        }
    }
    lines.join("\n") + "\n"
}

#[test]
fn the_sweep_with_lazy_indeterminate_ops_agrees_with_a_brute_force() {
    let (mut valid, mut invalid, mut with_infos) = (0, 0, 0);
    for seed in 0..10000 {
        let text = generate(seed);
        let history = checker::format::jsonl::read(text.as_bytes()).unwrap();
        let want = if brute_force(&history.ops) {
            valid += 1;
            Validity::Valid
        } else {
            invalid += 1;
            Validity::Invalid
        };
        with_infos += usize::from(history.ops.iter().filter(|o| o.is_indeterminate()).count() >= 2);
        for engine in [Engine::Sweep, Engine::Search] {
            let options = CheckOptions {
                engine,
                ..CheckOptions::default()
            };
            let got = check_named("cas-register", &history, &options)
                .unwrap()
                .valid;
            assert_eq!(got, want, "{engine:?} on seed {seed}:\n{text}");
        }
    }
    eprintln!("{valid} valid, {invalid} invalid, {with_infos} with 2+ indeterminate ops");
    assert!(valid > 1000 && invalid > 1000 && with_infos > 1000);
}
