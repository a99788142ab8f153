//! The `lock` workload's generator: each process follows the protocol take a lock
//! (waiting for it), write through its token, give it back; the generator keeps where each process
//! is, since the next op depends on how the last one ended.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::{Completion, Generator, Invocation, Rng};

use super::TTL_MS;

/// Share of rounds that take two locks (in random order, waiting for the second).
const PAIRS: f64 = 0.25;
/// Share of writes made after a pause longer than the lease.
const PAUSES: f64 = 0.1;
/// Times a process asks again for a lock it waits for before cancelling.
const MAX_WAITS: u32 = 20;
/// Times a release that could not reach the leader is retried.
const MAX_RELEASE_TRIES: u32 = 20;

#[derive(Debug, Default)]
struct Proc {
    /// Locks held with their tokens, in the order taken.
    held: Vec<(String, u64)>,
    /// The lock to ask for next, and whether to wait for it.
    want: Option<(String, bool)>,
    /// A second lock to ask for once the first is held.
    then: Option<String>,
    /// Answers of `queued` (or transient errors) while waiting.
    waits: u32,
    /// A lock to stop waiting for.
    cancel: Option<String>,
    /// Writes still to make with the newest lock.
    writes_left: u32,
    release_tries: u32,
}

/// Ops of the `lock` workload.
pub struct LockGenerator {
    locks: usize,
    procs: HashMap<u64, Proc>,
    next_value: u64,
}

impl LockGenerator {
    /// A generator over `locks` locks (`lock0`, `lock1`, ...).
    pub fn new(locks: usize) -> Self {
        LockGenerator {
            locks,
            procs: HashMap::new(),
            next_value: 0,
        }
    }

    fn lock_name(i: u64) -> String {
        format!("lock{i}")
    }
}

fn owner(process: u64) -> Value {
    json!(format!("p{process}"))
}

fn op(f: &str, key: &str, value: Value) -> Invocation {
    Invocation {
        f: f.into(),
        key: Some(key.to_string()),
        value,
    }
}

impl Generator for LockGenerator {
    fn next(&mut self, process: u64, rng: &mut Rng) -> Option<Invocation> {
        let locks = self.locks as u64;
        let p = self.procs.entry(process).or_default();
        if let Some(lock) = &p.cancel {
            return Some(op("cancel", lock, json!({"owner": owner(process)})));
        }
        if p.want.is_none() && p.held.is_empty() {
            // A new round: one lock, or the first two locks in either order (so
            // that rounds cross often enough to deadlock). Clients block (wait,
            // asking again) rather than spin on `busy`.
            p.then = None;
            let first = if locks > 1 && rng.chance(PAIRS) {
                let first = rng.below(2);
                p.then = Some(Self::lock_name(1 - first));
                first
            } else {
                rng.below(locks)
            };
            p.want = Some((Self::lock_name(first), true));
        }
        if let Some((lock, wait)) = &p.want {
            return Some(op(
                "acquire",
                lock,
                json!({"owner": owner(process), "ttl_ms": TTL_MS, "wait": wait}),
            ));
        }
        let (lock, token) = p.held.last().cloned()?;
        if p.writes_left > 0 {
            self.next_value += 1;
            let pause = if rng.chance(PAUSES) {
                TTL_MS + TTL_MS / 2
            } else {
                0
            };
            return Some(op(
                "write",
                &lock,
                json!({"token": token, "value": self.next_value, "pause_ms": pause}),
            ));
        }
        Some(op("release", &lock, json!({"owner": owner(process)})))
    }

    fn completed(&mut self, process: u64, inv: &Invocation, done: &Completion) {
        if matches!(done, Completion::Info(_)) {
            // The process retires; whatever it held lapses with its lease.
            self.procs.remove(&process);
            return;
        }
        let Some(p) = self.procs.get_mut(&process) else {
            return;
        };
        let key = inv.key.clone().unwrap_or_default();
        match (inv.f.as_str(), done) {
            ("acquire", Completion::Ok(out)) if out.get("queued").is_some() => {
                p.waits += 1;
                if p.waits > MAX_WAITS {
                    p.want = None;
                    p.cancel = Some(key);
                }
            }
            ("acquire", Completion::Ok(out)) => {
                let token = out.get("token").and_then(Value::as_u64).unwrap_or(0);
                p.held.push((key, token));
                p.waits = 0;
                p.want = p.then.take().map(|l| (l, true));
                p.writes_left = if p.want.is_some() { 0 } else { 2 };
            }
            ("acquire", Completion::Fail(code)) => {
                let transient = !matches!(code.as_str(), "busy" | "deadlock");
                let waiting = p.want.as_ref().is_some_and(|(_, wait)| *wait);
                if waiting && transient && p.waits < MAX_WAITS {
                    p.waits += 1;
                } else {
                    // Busy, a refused deadlock, or too many tries: give up the round
                    // (releasing what is held).
                    p.want = None;
                    p.then = None;
                    p.waits = 0;
                    p.writes_left = 0;
                }
            }
            ("cancel", _) => {
                p.cancel = None;
                p.waits = 0;
                p.writes_left = 0;
            }
            ("write", _) => p.writes_left = p.writes_left.saturating_sub(1),
            ("release", Completion::Fail(code))
                if matches!(
                    code.as_str(),
                    "not-leader" | "connect failed" | "unavailable"
                ) && p.release_tries < MAX_RELEASE_TRIES =>
            {
                p.release_tries += 1;
            }
            ("release", _) => {
                p.held.pop();
                p.release_tries = 0;
                // Write through the lock underneath too, if any, before releasing it.
                p.writes_left = if p.held.is_empty() { 0 } else { 1 };
            }
            _ => {}
        }
    }

    fn final_ops(&self) -> Vec<Invocation> {
        (0..self.locks as u64)
            .map(|i| op("read", &Self::lock_name(i), Value::Null))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: Value) -> Completion {
        Completion::Ok(v)
    }

    #[test]
    fn a_process_takes_writes_and_releases_in_order() {
        let mut g = LockGenerator::new(1);
        let mut rng = Rng::new(1);
        let a = g.next(7, &mut rng).unwrap();
        assert_eq!((a.f.as_str(), a.key.as_deref()), ("acquire", Some("lock0")));
        assert_eq!(a.value["owner"], "p7");
        g.completed(7, &a, &ok(json!({"token": 4, "took_over": false})));
        for _ in 0..2 {
            let w = g.next(7, &mut rng).unwrap();
            assert_eq!(
                (w.f.as_str(), w.value["token"].clone()),
                ("write", json!(4))
            );
            g.completed(7, &w, &ok(w.value.clone()));
        }
        let r = g.next(7, &mut rng).unwrap();
        assert_eq!(r.f, "release");
        // A release that could not reach the leader is asked again.
        g.completed(7, &r, &Completion::Fail("not-leader".into()));
        assert_eq!(g.next(7, &mut rng).unwrap().f, "release");
        g.completed(7, &r, &ok(Value::Null));
        assert_eq!(g.next(7, &mut rng).unwrap().f, "acquire");
    }

    #[test]
    fn a_second_lock_is_waited_for_then_cancelled_or_refused() {
        let mut g = LockGenerator::new(2);
        let mut rng = Rng::new(3);
        // Find a round that takes two locks.
        let (first, second) = loop {
            let a = g.next(1, &mut rng).unwrap();
            g.completed(1, &a, &ok(json!({"token": 1})));
            let b = g.next(1, &mut rng).unwrap();
            if b.f == "acquire" {
                break (a, b);
            }
            // A single-lock round: finish it.
            g.procs.remove(&1);
        };
        assert_ne!(first.key, second.key);
        assert_eq!(second.value["wait"], true);
        for _ in 0..=MAX_WAITS {
            g.completed(1, &second, &ok(json!({"queued": true})));
        }
        let c = g.next(1, &mut rng).unwrap();
        assert_eq!(
            (c.f.as_str(), c.key.clone()),
            ("cancel", second.key.clone())
        );
        g.completed(1, &c, &ok(Value::Null));
        // Then the first lock is released.
        let r = g.next(1, &mut rng).unwrap();
        assert_eq!(
            (r.f.as_str(), r.key.clone()),
            ("release", first.key.clone())
        );
        // An info retires the process.
        g.completed(1, &r, &Completion::Info("timeout".into()));
        assert!(g.procs.is_empty());
    }
}
