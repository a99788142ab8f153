//! Commitment and apply: the leader commits what a quorum holds durably in its
//! term, and every node applies committed entries in order, answering waiters.

use std::time::Instant;

use serde_json::Value;

use crate::bugs::Bug;
use crate::consensus::{Reply, StateMachine};
use crate::log_line;
use crate::types::Payload;

use super::{Raft, Role};

impl<S: StateMachine> Raft<S> {
    pub(super) fn advance_commit(&mut self) {
        let mut matched: Vec<u64> = self
            .members
            .keys()
            .map(|m| {
                if *m == self.cfg.id {
                    self.durable_index()
                } else {
                    self.peers.get(m).map_or(0, |p| p.matched)
                }
            })
            .collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&n) = matched.get(self.quorum() - 1) else {
            return;
        };
        if n > self.commit && self.log.term_at(n) == Some(self.meta.term) {
            self.commit = n;
        }
        if self.cfg.bugs.has(Bug::EarlyAck) {
            // Acknowledge writes the leader alone holds, as if they were committed.
            let durable = self.durable_index();
            let early: Vec<u64> = self.waiters.range(..=durable).map(|(i, _)| *i).collect();
            for i in early {
                let is_write = matches!(
                    self.log.entry(i).map(|e| &e.payload),
                    Some(Payload::Command { command }) if command.get("op").and_then(Value::as_str) != Some("cas")
                );
                if is_write {
                    if let Some((_, reply)) = self.waiters.remove(&i) {
                        let _ = reply.send(Reply::Ok(serde_json::json!({"ok": true})));
                    }
                }
            }
        }
    }

    pub(super) fn apply(&mut self, now: Instant) {
        while self.applied < self.commit {
            let index = self.applied + 1;
            let Some(entry) = self.log.entry(index).cloned() else {
                break;
            };
            let output = match &entry.payload {
                Payload::Command { command } => self.sm.apply(command),
                Payload::Noop => Value::Null,
                Payload::Config { members } => {
                    if self.role == Role::Leader && !members.contains_key(&self.cfg.id) {
                        log_line!(self.cfg.who(), "removed from the cluster; stepping down");
                        self.applied = index;
                        // The removal committed: say so before stepping down
                        // answers every other waiter "indeterminate".
                        if let Some((_, reply)) = self.waiters.remove(&index) {
                            let _ = reply.send(Reply::Ok(Value::Null));
                        }
                        self.become_follower(self.meta.term, None);
                        self.reset_election_timer(now);
                        continue;
                    }
                    Value::Null
                }
            };
            self.applied = index;
            if let Some((term, reply)) = self.waiters.remove(&index) {
                let answer = if term == entry.term {
                    Reply::Ok(output)
                } else {
                    Reply::Unavailable("the proposal was overwritten by a new leader".into())
                };
                let _ = reply.send(answer);
            }
        }
    }
}
