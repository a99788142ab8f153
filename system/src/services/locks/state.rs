//! The lock manager, a state machine on the Raft log: exclusive and shared locks
//! held under leases, a fencing token per grant that strictly increases per lock,
//! deadlock detection on the wait-for graph, and protected registers that only
//! accept writes carrying a token no older than the newest they have seen.
//!
//! Time comes in the command (the node that proposes it stamps its clock) and only
//! moves forward here, so every replica expires leases at the same log position.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// How a lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One holder.
    #[default]
    Exclusive,
    /// Any number of shared holders, no exclusive one.
    Shared,
}

/// A lock-manager command as it travels in the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum LockCommand {
    /// Take `lock` for `owner` (or renew it if `owner` holds it already).
    LockAcquire {
        /// Lock name.
        lock: String,
        /// Who asks.
        owner: String,
        /// Exclusive or shared.
        #[serde(default)]
        mode: Mode,
        /// Lease length.
        ttl_ms: u64,
        /// Wait (join the wait-for graph) instead of failing when the lock is busy.
        #[serde(default)]
        wait: bool,
        /// The proposer's clock.
        now_ms: u64,
    },
    /// Give `lock` back; only its holder may.
    LockRelease {
        /// Lock name.
        lock: String,
        /// Who releases.
        owner: String,
        /// The proposer's clock.
        now_ms: u64,
    },
    /// Stop waiting for `lock`.
    LockCancel {
        /// Lock name.
        lock: String,
        /// Who waited.
        owner: String,
        /// The proposer's clock.
        now_ms: u64,
    },
    /// Write `value` to a protected register, presenting a fencing token.
    FencedWrite {
        /// Register name.
        resource: String,
        /// The writer's fencing token.
        token: u64,
        /// New value.
        value: Value,
        /// The proposer's clock.
        now_ms: u64,
    },
}

impl LockCommand {
    /// Whether a command (as JSON) belongs to the lock manager.
    pub fn owns(command: &Value) -> bool {
        matches!(
            command.get("op").and_then(Value::as_str),
            Some("lock-acquire" | "lock-release" | "lock-cancel" | "fenced-write")
        )
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Hold {
    token: u64,
    expires_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Lock {
    mode: Mode,
    holders: BTreeMap<String, Hold>,
    /// Owners waiting, with when their wait lapses.
    waiters: BTreeMap<String, u64>,
    last_token: u64,
}

/// How long a wait stays in the wait-for graph without being renewed. Long next
/// to leases, so a clock that jumps (skew faults) cannot drop a wait that another
/// would close a cycle with.
const WAIT_LAPSE_MS: u64 = 10_000;

/// Writes a protected register keeps, newest last (older ones are counted only).
const LOG_KEEP: usize = 100_000;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Resource {
    token: u64,
    value: Value,
    /// Accepted writes as (token, value), in the order they took effect.
    log: Vec<(u64, Value)>,
    dropped: u64,
}

/// Locks and protected registers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LockManager {
    locks: BTreeMap<String, Lock>,
    resources: BTreeMap<String, Resource>,
    clock_ms: u64,
    /// Planted bug `lease-no-fence`: registers ignore tokens. Not replicated state.
    #[serde(skip)]
    pub ignore_fence: bool,
    /// Planted bug `no-deadlock-check`: waits are never refused.
    #[serde(skip)]
    pub ignore_deadlocks: bool,
}

impl LockManager {
    /// Applies a command; the result is `{"ok": true, ...}` or
    /// `{"ok": false, "error": E, ...}` with E one of busy, queued, deadlock,
    /// not-owner, stale-token.
    pub fn apply(&mut self, cmd: LockCommand) -> Value {
        match cmd {
            LockCommand::LockAcquire {
                lock,
                owner,
                mode,
                ttl_ms,
                wait,
                now_ms,
            } => {
                let now = self.tick(now_ms);
                self.acquire(&lock, &owner, mode, ttl_ms, wait, now)
            }
            LockCommand::LockRelease {
                lock,
                owner,
                now_ms,
            } => {
                self.tick(now_ms);
                let Some(l) = self.locks.get_mut(&lock) else {
                    return json!({"ok": false, "error": "not-owner"});
                };
                // A holder whose lease ran out but whom nobody replaced still holds:
                // expiry takes effect only when someone else acquires.
                if l.holders.remove(&owner).is_none() {
                    return json!({"ok": false, "error": "not-owner"});
                }
                json!({"ok": true})
            }
            LockCommand::LockCancel {
                lock,
                owner,
                now_ms,
            } => {
                self.tick(now_ms);
                if let Some(l) = self.locks.get_mut(&lock) {
                    l.waiters.remove(&owner);
                }
                json!({"ok": true})
            }
            LockCommand::FencedWrite {
                resource,
                token,
                value,
                now_ms,
            } => {
                self.tick(now_ms);
                let r = self.resources.entry(resource).or_default();
                if token < r.token && !self.ignore_fence {
                    return json!({"ok": false, "error": "stale-token", "current": r.token});
                }
                r.token = r.token.max(token);
                r.value = value.clone();
                r.log.push((token, value));
                if r.log.len() > LOG_KEEP {
                    r.log.remove(0);
                    r.dropped += 1;
                }
                json!({"ok": true})
            }
        }
    }

    fn tick(&mut self, now_ms: u64) -> u64 {
        self.clock_ms = self.clock_ms.max(now_ms);
        self.clock_ms
    }

    fn acquire(
        &mut self,
        name: &str,
        owner: &str,
        mode: Mode,
        ttl_ms: u64,
        wait: bool,
        now: u64,
    ) -> Value {
        let lock = self.locks.entry(name.to_string()).or_default();
        lock.waiters.retain(|_, until| *until > now);
        let expires_ms = now.saturating_add(ttl_ms);
        if let Some(h) = lock.holders.get_mut(owner) {
            if mode == lock.mode || lock.mode == Mode::Exclusive {
                h.expires_ms = expires_ms;
                return json!({"ok": true, "token": h.token, "expires_ms": expires_ms, "renewed": true});
            }
        }
        let expired: Vec<String> = lock
            .holders
            .iter()
            .filter(|(o, h)| h.expires_ms <= now && o.as_str() != owner)
            .map(|(o, _)| o.clone())
            .collect();
        let live = lock
            .holders
            .iter()
            .filter(|(o, h)| h.expires_ms > now && o.as_str() != owner)
            .count();
        let compatible = live == 0 || (mode == Mode::Shared && lock.mode == Mode::Shared);
        if compatible {
            for o in &expired {
                lock.holders.remove(o);
            }
            lock.last_token += 1;
            let token = lock.last_token;
            lock.mode = mode;
            lock.holders
                .insert(owner.to_string(), Hold { token, expires_ms });
            lock.waiters.remove(owner);
            return json!({"ok": true, "token": token, "expires_ms": expires_ms,
                          "took_over": !expired.is_empty(), "expired": expired});
        }
        let holders: Vec<String> = lock.holders.keys().cloned().collect();
        if !wait {
            return json!({"ok": false, "error": "busy", "holders": holders});
        }
        if let Some(cycle) = self.cycle_through(owner, name, now) {
            // A refused request no longer waits, even if an earlier one did.
            if let Some(l) = self.locks.get_mut(name) {
                l.waiters.remove(owner);
            }
            return json!({"ok": false, "error": "deadlock", "cycle": cycle});
        }
        let lock = self.locks.get_mut(name).expect("entry made above");
        lock.waiters
            .insert(owner.to_string(), now.saturating_add(WAIT_LAPSE_MS));
        json!({"ok": false, "error": "queued", "holders": holders})
    }

    /// The owners `owner` would wait for through `lock`, followed through the
    /// wait-for graph: the cycle `[owner, ..., owner]` if one leads back.
    ///
    /// A holder whose lease ran out still counts until someone replaces it (as for
    /// release), so the answer does not hang on clocks; a refused wait is only
    /// ever a lost chance to wait, never a lost guarantee.
    fn cycle_through(&self, owner: &str, lock: &str, now: u64) -> Option<Vec<String>> {
        // Edges: a waiter on a lock waits for each of that lock's holders.
        let mut waits: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for l in self.locks.values() {
            for (w, until) in &l.waiters {
                if *until <= now || self.ignore_deadlocks {
                    continue;
                }
                for h in l.holders.keys() {
                    if h != w {
                        waits.entry(w.as_str()).or_default().insert(h.as_str());
                    }
                }
            }
        }
        let first: Vec<&str> = self.locks[lock]
            .holders
            .keys()
            .filter(|h| h.as_str() != owner)
            .map(|h| h.as_str())
            .collect();
        // Depth-first from each holder, remembering the path to report it.
        let mut seen = BTreeSet::new();
        for start in first {
            let mut stack = vec![(start, vec![owner, start])];
            while let Some((at, path)) = stack.pop() {
                if at == owner {
                    return Some(path.iter().map(|s| s.to_string()).collect());
                }
                if !seen.insert(at) {
                    continue;
                }
                for next in waits.get(at).into_iter().flatten() {
                    let mut p = path.clone();
                    p.push(next);
                    stack.push((next, p));
                }
            }
        }
        None
    }

    /// What a query about locks asks: `{"lock": L}` gives its holders and waiters,
    /// `{"resource": R}` a protected register's value, token and write log.
    pub fn query(&self, query: &Value) -> Option<Value> {
        if let Some(name) = query.get("lock").and_then(Value::as_str) {
            let l = self.locks.get(name).cloned().unwrap_or_default();
            let holders: Vec<Value> = l
                .holders
                .iter()
                .map(|(o, h)| json!({"owner": o, "token": h.token, "expires_ms": h.expires_ms}))
                .collect();
            return Some(json!({"mode": l.mode, "holders": holders,
                               "waiters": l.waiters.keys().collect::<Vec<_>>(),
                               "last_token": l.last_token}));
        }
        let name = query.get("resource").and_then(Value::as_str)?;
        let r = self.resources.get(name).cloned().unwrap_or_default();
        Some(json!({"value": r.value, "token": r.token, "log": r.log, "log_dropped": r.dropped}))
    }

    /// The result `cmd` would have if applied now, without applying it: what a
    /// leader answering from local state (planted bug `lock-no-quorum`) would say.
    pub fn speculate(&self, cmd: &LockCommand) -> Option<Value> {
        matches!(cmd, LockCommand::LockAcquire { .. }).then(|| self.clone().apply(cmd.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acquire(m: &mut LockManager, lock: &str, owner: &str, wait: bool, now: u64) -> Value {
        m.apply(LockCommand::LockAcquire {
            lock: lock.into(),
            owner: owner.into(),
            mode: Mode::Exclusive,
            ttl_ms: 1000,
            wait,
            now_ms: now,
        })
    }

    fn release(m: &mut LockManager, lock: &str, owner: &str, now: u64) -> Value {
        m.apply(LockCommand::LockRelease {
            lock: lock.into(),
            owner: owner.into(),
            now_ms: now,
        })
    }

    fn write(m: &mut LockManager, token: u64, value: i64) -> Value {
        m.apply(LockCommand::FencedWrite {
            resource: "r".into(),
            token,
            value: json!(value),
            now_ms: 0,
        })
    }

    #[test]
    fn exclusive_locks_exclude_and_tokens_increase() {
        let mut m = LockManager::default();
        let a = acquire(&mut m, "l", "a", false, 0);
        assert_eq!(
            (a["ok"].clone(), a["token"].clone()),
            (json!(true), json!(1))
        );
        assert_eq!(acquire(&mut m, "l", "b", false, 10)["error"], "busy");
        assert_eq!(release(&mut m, "l", "b", 20)["error"], "not-owner");
        assert_eq!(release(&mut m, "l", "a", 30)["ok"], true);
        let b = acquire(&mut m, "l", "b", false, 40);
        assert_eq!(b["token"], 2);
        assert_eq!(b["took_over"], false);
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_its_holder_fenced_off() {
        let mut m = LockManager::default();
        let a = acquire(&mut m, "l", "a", false, 0)["token"]
            .as_u64()
            .unwrap();
        // Renewal keeps the token and moves the expiry.
        let renewed = acquire(&mut m, "l", "a", false, 500);
        assert_eq!(
            (renewed["token"].as_u64(), renewed["renewed"].clone()),
            (Some(a), json!(true))
        );
        assert_eq!(acquire(&mut m, "l", "b", false, 1400)["error"], "busy");
        let b = acquire(&mut m, "l", "b", false, 1600);
        assert_eq!(b["took_over"], true);
        assert_eq!(b["expired"], json!(["a"]));
        let b = b["token"].as_u64().unwrap();
        assert!(b > a);
        assert_eq!(write(&mut m, b, 1)["ok"], true);
        // a wakes from its pause and writes with its old token: refused.
        assert_eq!(write(&mut m, a, 2)["error"], "stale-token");
        assert_eq!(release(&mut m, "l", "a", 1700)["error"], "not-owner");
        let r = m.query(&json!({"resource": "r"})).unwrap();
        assert_eq!(r["log"], json!([[b, 1]]));
        // The planted bug lets the stale write through.
        m.ignore_fence = true;
        assert_eq!(write(&mut m, a, 3)["ok"], true);
    }

    #[test]
    fn shared_holders_coexist_and_block_an_exclusive_one() {
        let mut m = LockManager::default();
        for (owner, now) in [("a", 0), ("b", 1)] {
            let r = m.apply(LockCommand::LockAcquire {
                lock: "l".into(),
                owner: owner.into(),
                mode: Mode::Shared,
                ttl_ms: 1000,
                wait: false,
                now_ms: now,
            });
            assert_eq!(r["ok"], true, "{r}");
        }
        assert_eq!(acquire(&mut m, "l", "c", false, 2)["error"], "busy");
        release(&mut m, "l", "a", 3);
        release(&mut m, "l", "b", 4);
        assert_eq!(acquire(&mut m, "l", "c", false, 5)["ok"], true);
    }

    #[test]
    fn a_wait_that_would_close_a_cycle_is_refused_with_the_cycle() {
        let mut m = LockManager::default();
        acquire(&mut m, "x", "a", false, 0);
        acquire(&mut m, "y", "b", false, 0);
        acquire(&mut m, "z", "c", false, 0);
        assert_eq!(acquire(&mut m, "y", "a", true, 1)["error"], "queued");
        assert_eq!(acquire(&mut m, "z", "b", true, 2)["error"], "queued");
        let refused = acquire(&mut m, "x", "c", true, 3);
        assert_eq!(refused["error"], "deadlock");
        assert_eq!(refused["cycle"], json!(["c", "a", "b", "c"]));
        // Once a stops waiting there is no cycle, and c may wait.
        m.apply(LockCommand::LockCancel {
            lock: "y".into(),
            owner: "a".into(),
            now_ms: 4,
        });
        assert_eq!(acquire(&mut m, "x", "c", true, 5)["error"], "queued");
        // A waiter gets the lock when it is free.
        release(&mut m, "x", "a", 6);
        assert_eq!(acquire(&mut m, "x", "c", true, 7)["ok"], true);
        let q = m.query(&json!({"lock": "x"})).unwrap();
        assert_eq!(q["waiters"], json!([]));
    }

    #[test]
    fn speculation_does_not_change_state_and_clock_never_goes_back() {
        let mut m = LockManager::default();
        acquire(&mut m, "l", "a", false, 5000);
        let cmd = LockCommand::LockAcquire {
            lock: "m".into(),
            owner: "b".into(),
            mode: Mode::Exclusive,
            ttl_ms: 10,
            wait: false,
            now_ms: 0,
        };
        assert_eq!(m.speculate(&cmd).unwrap()["ok"], true);
        assert_eq!(m.query(&json!({"lock": "m"})).unwrap()["last_token"], 0);
        // A command stamped by a clock behind the log's still sees time 5000.
        assert_eq!(acquire(&mut m, "l", "c", false, 100)["error"], "busy");
        let snapshot = serde_json::to_value(&m).unwrap();
        let copy: LockManager = serde_json::from_value(snapshot).unwrap();
        assert_eq!(
            copy.query(&json!({"lock": "l"})),
            m.query(&json!({"lock": "l"}))
        );
    }
}
