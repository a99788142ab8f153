//! Leader election: pre-vote (Raft thesis 9.6), then a vote in a new term; the
//! election restriction; stepping down and following a leader.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::bugs::Bug;
use crate::consensus::{Reply, StateMachine};
use crate::log_line;
use crate::types::{NodeId, Payload};

use super::{Message, Peer, Raft, Role};

impl<S: StateMachine> Raft<S> {
    pub(super) fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        if term > self.meta.term {
            self.meta.term = term;
            self.meta.voted_for = None;
            self.save_meta();
        }
        if self.role == Role::Leader {
            log_line!(self.cfg.who(), "stepping down in term {}", self.meta.term);
            for (_, (_, reply)) in std::mem::take(&mut self.waiters) {
                let _ = reply.send(Reply::Indeterminate("leadership lost before commit".into()));
            }
            for r in std::mem::take(&mut self.reads) {
                let _ = r.reply.send(Reply::NotLeader(None));
            }
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
    }

    /// Accepts `leader` of `term` (not older than ours) as the current leader.
    pub(super) fn follow(&mut self, leader: &NodeId, term: u64, now: Instant) {
        if term > self.meta.term || self.role != Role::Follower {
            self.become_follower(term, Some(leader.clone()));
        }
        self.leader = Some(leader.clone());
        self.leader_contact = Some(now);
        self.reset_election_timer(now);
    }

    /// Asks whether a majority would vote for us in the next term before
    /// raising it; our term and vote stay as they are.
    pub(super) fn start_pre_vote(&mut self, now: Instant) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes = BTreeSet::from([self.cfg.id.clone()]);
        self.reset_election_timer(now);
        if self.votes.len() >= self.quorum() {
            self.start_election(now);
            return;
        }
        let msg = Message::PreVote {
            term: self.meta.term + 1,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
        };
        for peer in self.members.keys().filter(|p| **p != self.cfg.id) {
            self.send(peer, msg.clone());
        }
    }

    pub(super) fn start_election(&mut self, now: Instant) {
        self.meta.term += 1;
        self.meta.voted_for = Some(self.cfg.id.clone());
        self.save_meta();
        self.role = Role::Candidate;
        self.leader = None;
        self.votes = BTreeSet::from([self.cfg.id.clone()]);
        self.reset_election_timer(now);
        log_line!(self.cfg.who(), "campaigning in term {}", self.meta.term);
        let msg = Message::Vote {
            term: self.meta.term,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
        };
        for peer in self.members.keys().filter(|p| **p != self.cfg.id) {
            self.send(peer, msg.clone());
        }
        if self.votes.len() >= self.quorum() {
            self.become_leader(now);
        }
    }

    pub(super) fn become_leader(&mut self, now: Instant) {
        log_line!(self.cfg.who(), "leader in term {}", self.meta.term);
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id.clone());
        let next = self.log.last_index() + 1;
        self.peers = self
            .members
            .keys()
            .filter(|p| **p != self.cfg.id)
            .map(|p| (p.clone(), Peer::new(next, now)))
            .collect();
        self.append_local(Payload::Noop);
        self.term_start = self.log.last_index();
        self.heartbeat_due = now;
    }

    /// True while this node leads, or heard from a leader within an election
    /// timeout: it then refuses campaigns, so a node returning from a partition
    /// cannot depose a healthy leader.
    pub(super) fn leader_alive(&self, now: Instant) -> bool {
        match self.role {
            Role::Leader => true,
            _ => {
                self.leader.is_some()
                    && self
                        .leader_contact
                        .is_some_and(|t| now.duration_since(t) < self.cfg.election_timeout)
            }
        }
    }

    /// Whether a candidate whose log ends at (`last_index`, `last_term`) is at
    /// least as up to date as ours (the election restriction).
    pub(super) fn up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.log.last_term()
            || (last_term == self.log.last_term() && last_index >= self.log.last_index())
    }

    /// Answers a pre-vote without touching our term or vote: yes when `term` is
    /// newer than ours, the log is up to date and no leader is alive.
    pub(super) fn on_pre_vote(
        &mut self,
        from: NodeId,
        term: u64,
        last_index: u64,
        last_term: u64,
        now: Instant,
    ) {
        if self.tell_removed(&from, last_index) {
            return;
        }
        // A node whose log lost entries to damage may have acknowledged them:
        // its vote could elect a leader without them.
        let granted = term > self.meta.term
            && self.up_to_date(last_index, last_term)
            && !self.leader_alive(now)
            && self.log.damaged().is_none();
        let term = if granted { term } else { self.meta.term };
        self.send(&from, Message::PreVoteReply { term, granted });
    }

    pub(super) fn on_vote(
        &mut self,
        from: NodeId,
        term: u64,
        last_index: u64,
        last_term: u64,
        now: Instant,
    ) {
        if self.tell_removed(&from, last_index) {
            return;
        }
        let leader_alive = self.leader_alive(now);
        if term > self.meta.term && leader_alive && self.leader.as_ref() != Some(&from) {
            self.send(
                &from,
                Message::VoteReply {
                    term: self.meta.term,
                    granted: false,
                },
            );
            return;
        }
        if term > self.meta.term {
            self.become_follower(term, None);
        }
        let up_to_date = self.up_to_date(last_index, last_term);
        let free = match &self.meta.voted_for {
            None => true,
            Some(v) => *v == from || self.cfg.bugs.has(Bug::VoteTwice),
        };
        let granted = term == self.meta.term
            && free
            && up_to_date
            && self.role != Role::Leader
            && self.log.damaged().is_none();
        if granted {
            self.meta.voted_for = Some(from.clone());
            self.save_meta();
            self.reset_election_timer(now);
        }
        self.send(
            &from,
            Message::VoteReply {
                term: self.meta.term,
                granted,
            },
        );
    }

    pub(super) fn on_pre_vote_reply(
        &mut self,
        from: NodeId,
        term: u64,
        granted: bool,
        now: Instant,
    ) {
        if !granted && term > self.meta.term {
            // Refused by a node further on: catch up with its term.
            self.become_follower(term, None);
            return;
        }
        if self.role == Role::PreCandidate
            && term == self.meta.term + 1
            && granted
            && self.members.contains_key(&from)
        {
            self.votes.insert(from);
            if self.votes.len() >= self.quorum() {
                self.start_election(now);
            }
        }
    }

    pub(super) fn on_vote_reply(&mut self, from: NodeId, term: u64, granted: bool, now: Instant) {
        if term > self.meta.term {
            self.become_follower(term, None);
            return;
        }
        if self.role == Role::Candidate
            && term == self.meta.term
            && granted
            && self.members.contains_key(&from)
        {
            self.votes.insert(from);
            if self.votes.len() >= self.quorum() {
                self.become_leader(now);
            }
        }
    }
}
