//! Single-server membership changes (Raft thesis 4.1): one change at a time, in
//! force once appended, rolled back if the entry is truncated.

use std::time::Instant;

use serde_json::Value;
use tokio::sync::oneshot;

use crate::bugs::Bug;
use crate::consensus::{Reply, StateMachine};
use crate::log_line;
use crate::types::{Members, NodeId, Payload};

use super::{Message, Peer, Raft, Role};

impl<S: StateMachine> Raft<S> {
    /// Membership in force: the latest config entry in the log, else the snapshot's,
    /// else the configured one. After a truncation removed an uncommitted change,
    /// this rolls the node back to the configuration it came from (Raft thesis 4.1).
    pub(super) fn recompute_members(&mut self) {
        let from_log = self.log.iter().rev().find_map(|e| match &e.payload {
            Payload::Config { members } => Some(members.clone()),
            _ => None,
        });
        let known = from_log.or_else(|| {
            self.snapshot
                .as_ref()
                .map(|s| s.members.clone())
                .filter(|m| !m.is_empty())
        });
        match known {
            Some(m) => self.set_members(m),
            // Planted: the removed change stays in force.
            None if self.cfg.bugs.has(Bug::KeepConfigOnTruncate) => {}
            None => self.set_members(self.cfg.members.clone()),
        }
    }

    /// Puts `members` in force, logging the change (the harness's
    /// membership-agreement check reads these lines).
    fn set_members(&mut self, members: Members) {
        if members != self.members {
            log_line!(
                self.cfg.who(),
                "members now {:?}",
                members.keys().collect::<Vec<_>>()
            );
        }
        self.members = members;
    }

    /// The configuration to report: ours, or the one a member told us dropped us.
    pub(super) fn members_in_force(&self) -> &Members {
        self.removed.as_ref().unwrap_or(&self.members)
    }

    /// How recent our configuration is: the index of the config entry in force,
    /// else the snapshot's last index (its members are as of that index), else 0.
    fn config_version(&self) -> u64 {
        self.log
            .iter()
            .rev()
            .find(|e| matches!(e.payload, Payload::Config { .. }))
            .map(|e| e.index)
            .unwrap_or_else(|| self.snapshot_index())
    }

    /// Answers a campaign of `from`, when a committed configuration of ours no
    /// longer holds it, by telling it so (else it would campaign forever); true
    /// if it did. Only when its log (ending at `last_index`) lacks that
    /// configuration: a candidate with a longer log may hold a newer one that
    /// adds it back, and must get an ordinary answer.
    pub(super) fn tell_removed(&self, from: &NodeId, last_index: u64) -> bool {
        let version = self.config_version();
        let tell = last_index < version
            && !self.members.contains_key(from)
            && self.members.contains_key(&self.cfg.id)
            && version > 0
            && version <= self.commit;
        if tell {
            self.send(
                from,
                Message::Removed {
                    term: self.meta.term,
                    members: self.members.clone(),
                    version,
                },
            );
        }
        tell
    }

    /// A member says a committed configuration newer than ours leaves us out:
    /// stop campaigning until a leader sends us entries again (as after a new join).
    pub(super) fn on_removed(&mut self, from: NodeId, term: u64, members: Members, version: u64) {
        if members.contains_key(&self.cfg.id) || version <= self.config_version() {
            return;
        }
        if term > self.meta.term {
            self.become_follower(term, None);
        }
        if self.role != Role::Follower {
            self.become_follower(self.meta.term, None);
        }
        if self.removed.is_none() {
            log_line!(
                self.cfg.who(),
                "removed from the cluster (told by {from}); members now {:?}",
                members.keys().collect::<Vec<_>>()
            );
        }
        self.removed = Some(members);
    }

    pub(super) fn refuse_config_change(&self) -> Option<Reply> {
        if self.role != Role::Leader {
            return Some(Reply::NotLeader(self.leader.clone()));
        }
        let pending = self
            .log
            .iter()
            .rev()
            .take_while(|e| e.index > self.commit)
            .any(|e| matches!(e.payload, Payload::Config { .. }));
        if pending || self.commit < self.term_start {
            return Some(Reply::Unavailable(
                "a membership change is in progress; retry".into(),
            ));
        }
        None
    }

    /// Etcd's strict reconfiguration check: refuses a change after which the
    /// members this leader has heard from within an election timeout (itself
    /// included) would not be a majority of the new configuration. A member
    /// that never answered (a join with a wrong address) never counts, so
    /// joins cannot strand the cluster without a quorum.
    fn refuse_unsafe(&self, members: &Members, now: Instant) -> Option<Reply> {
        let window = self.cfg.election_timeout * 2;
        let live: Vec<&NodeId> = members
            .keys()
            .filter(|id| {
                **id == self.cfg.id
                    || self.peers.get(*id).is_some_and(|p| {
                        p.matched > 0 && now.saturating_duration_since(p.last_ack) < window
                    })
            })
            .collect();
        let quorum = members.len() / 2 + 1;
        (live.len() < quorum).then(|| {
            Reply::Refused(format!(
                "after this change {} of {} members would be reachable ({}), short of a quorum of {quorum}; bring members back before changing membership",
                live.len(),
                members.len(),
                live.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })
    }

    pub(super) fn change_members(
        &mut self,
        members: Members,
        reply: oneshot::Sender<Reply>,
        now: Instant,
    ) {
        log_line!(
            self.cfg.who(),
            "membership change to {:?}",
            members.keys().collect::<Vec<_>>()
        );
        let index = self.append_local(Payload::Config {
            members: members.clone(),
        });
        self.waiters.insert(index, (self.meta.term, reply));
        self.apply_membership(members, now);
    }

    pub(super) fn apply_membership(&mut self, members: Members, now: Instant) {
        let next = self.log.last_index();
        for id in members.keys() {
            if *id != self.cfg.id && !self.peers.contains_key(id) {
                self.peers.insert(id.clone(), Peer::new(next, now));
            }
        }
        let gone: Vec<NodeId> = self
            .peers
            .keys()
            .filter(|p| !members.contains_key(*p))
            .cloned()
            .collect();
        for p in gone {
            self.peers.remove(&p);
            self.transport.forget(&p);
        }
        self.set_members(members);
    }

    pub(super) fn on_join(
        &mut self,
        id: NodeId,
        addr: String,
        reply: oneshot::Sender<Reply>,
        now: Instant,
    ) {
        if let Some(refusal) = self.refuse_config_change() {
            let _ = reply.send(refusal);
            return;
        }
        if self.members.get(&id) == Some(&addr) {
            let _ = reply.send(Reply::Ok(Value::Null));
            return;
        }
        let mut members = self.members.clone();
        members.insert(id.clone(), addr);
        if let Some(refusal) = self.refuse_unsafe(&members, now) {
            let _ = reply.send(refusal);
            return;
        }
        self.change_members(members, reply, now);
    }

    pub(super) fn on_leave(&mut self, id: NodeId, reply: oneshot::Sender<Reply>, now: Instant) {
        if let Some(refusal) = self.refuse_config_change() {
            let _ = reply.send(refusal);
            return;
        }
        if !self.members.contains_key(&id) {
            let _ = reply.send(Reply::NotFound(format!(
                "`{id}` is not a member (members: {})",
                self.members.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
            return;
        }
        let mut members = self.members.clone();
        members.remove(&id);
        if members.is_empty() {
            let _ = reply.send(Reply::Unavailable("cannot remove the last member".into()));
            return;
        }
        if let Some(refusal) = self.refuse_unsafe(&members, now) {
            let _ = reply.send(refusal);
            return;
        }
        self.change_members(members, reply, now);
    }
}
