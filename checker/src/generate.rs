//! Deterministic generator of large linearizable CAS-register histories (JSONL),
//! for benchmarks and tests of the checker at scale.
//!
//! Each process runs ops back to back; every op takes effect at a random instant
//! inside its interval, and results are computed by applying ops in the order of
//! those instants, so the history is linearizable by construction. About 1% of
//! writes and cas complete `info` and retire their process.

use std::fmt::Write;

/// A small seeded PRNG (SplitMix64), so histories replay from their seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        super::linearizability::splitmix_public(self.0)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// An op before results are known: (effect instant, slot, f, key, argument, start, end).
type Planned = (u64, usize, u8, u32, [i64; 2], u64, u64);

/// Shape of a generated history.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Operations in all.
    pub ops: usize,
    /// Distinct keys (`k0`, `k1`, ...).
    pub keys: usize,
    /// Concurrent client processes.
    pub processes: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

/// Writes a linearizable history of the given shape as JSONL.
pub fn cas_register_history(shape: Shape) -> String {
    let mut rng = Rng(shape.seed);
    let procs = shape.processes.max(1);
    let mut free_at = vec![0u64; procs];
    let mut ops: Vec<Planned> = Vec::with_capacity(shape.ops);
    for _ in 0..shape.ops {
        let slot = (0..procs).min_by_key(|&s| free_at[s]).unwrap_or(0);
        let start = free_at[slot] + 1 + rng.below(50);
        let len = 20 + rng.below(380);
        let at = start + rng.below(len + 1);
        let key = rng.below(shape.keys.max(1) as u64) as u32;
        let f = [0u8, 0, 1, 2][rng.below(4) as usize];
        let arg = [rng.below(10) as i64, rng.below(10) as i64];
        ops.push((at, slot, f, key, arg, start, start + len));
        free_at[slot] = start + len;
    }
    ops.sort_by_key(|o| o.0);
    let mut state: Vec<Option<i64>> = vec![None; shape.keys.max(1)];
    // (time, is_completion, slot, text-without-process, is_mutation)
    let mut events: Vec<(u64, bool, usize, String, bool)> = Vec::with_capacity(2 * shape.ops);
    for &(_, slot, f, key, arg, start, end) in &ops {
        let cur = state[key as usize];
        let show = |v: Option<i64>| v.map_or("null".to_string(), |x| x.to_string());
        let (name, input, kind, output) = match f {
            0 => ("read", "null".to_string(), "ok", show(cur)),
            1 => {
                state[key as usize] = Some(arg[0]);
                ("write", arg[0].to_string(), "ok", arg[0].to_string())
            }
            _ => {
                let pair = format!("[{},{}]", arg[0], arg[1]);
                if cur == Some(arg[0]) {
                    state[key as usize] = Some(arg[1]);
                    ("cas", pair.clone(), "ok", pair)
                } else {
                    ("cas", pair.clone(), "fail", pair)
                }
            }
        };
        events.push((
            start,
            false,
            slot,
            format!("\"type\":\"invoke\",\"f\":\"{name}\",\"key\":\"k{key}\",\"value\":{input}"),
            false,
        ));
        events.push((
            end,
            true,
            slot,
            format!("\"type\":\"{kind}\",\"f\":\"{name}\",\"key\":\"k{key}\",\"value\":{output}"),
            f != 0,
        ));
    }
    events.sort_by_key(|e| (e.0, e.1));
    let mut process: Vec<u64> = (0..procs as u64).collect();
    let mut fresh = procs as u64;
    let mut out = String::with_capacity(events.len() * 80);
    for (time, completion, slot, body, mutation) in events {
        let p = process[slot];
        let body = if completion && mutation && rng.below(100) == 0 {
            process[slot] = fresh;
            fresh += 1;
            body.replacen("\"type\":\"ok\"", "\"type\":\"info\"", 1)
                .replacen("\"type\":\"fail\"", "\"type\":\"info\"", 1)
        } else {
            body
        };
        let _ = writeln!(out, "{{\"process\":{p},{body},\"time\":{}}}", time * 1000);
    }
    out
}

/// The history with the `nth` `ok` read's result replaced by `value`, if the
/// history has that many reads: for benchmarks and tests of refutation (a stale
/// or impossible read is the commonest real bug).
pub fn with_read_result(text: &str, nth: usize, value: &str) -> Option<String> {
    let mut seen = 0;
    let mut out = String::with_capacity(text.len() + 16);
    let mut done = false;
    for line in text.lines() {
        if !done && line.contains("\"type\":\"ok\"") && line.contains("\"f\":\"read\"") {
            if seen == nth {
                let start = line.find("\"value\":")? + "\"value\":".len();
                let end = start + line[start..].find([',', '}'])?;
                out.push_str(&line[..start]);
                out.push_str(value);
                out.push_str(&line[end..]);
                out.push('\n');
                done = true;
                continue;
            }
            seen += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    done.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{check_named, CheckOptions, Validity};

    #[test]
    fn generated_histories_are_linearizable_and_replay_from_their_seed() {
        let shape = Shape {
            ops: 5000,
            keys: 20,
            processes: 8,
            seed: 7,
        };
        let text = cas_register_history(shape);
        assert_eq!(text, cas_register_history(shape));
        let h = crate::format::jsonl::read(text.as_bytes()).unwrap();
        assert!(h.stats.info > 0);
        let r = check_named("kv", &h, &CheckOptions::default()).unwrap();
        assert_eq!(r.valid, Validity::Valid);
    }
}
