//! The acceptor: phase 1b (promise) and phase 2b (accept), each durable in the
//! journal before it is answered, and compaction of the journal at a snapshot.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::bugs::Bug;
use crate::consensus::StateMachine;
use crate::log_line;
use crate::storage::Snapshot;
use crate::types::{NodeId, Payload};

use super::{Accepted, Ballot, Message, Paxos, Role};

/// One line of the acceptor journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "kebab-case")]
pub(super) enum Record {
    /// A promise to ignore ballots below this one.
    Promise {
        /// The ballot promised.
        ballot: Ballot,
    },
    /// A value accepted in a slot.
    Accept {
        /// The slot.
        slot: u64,
        /// The ballot it was accepted in.
        ballot: Ballot,
        /// The value.
        value: Payload,
    },
}

impl<S: StateMachine> Paxos<S> {
    /// Raises the promise (journalled; answered after the flush) and leaves
    /// any leadership or campaign of a lower ballot.
    fn promise(&mut self, ballot: &Ballot, now: Instant) {
        if *ballot <= self.promised {
            return;
        }
        self.promised = ballot.clone();
        self.highest_round = self.highest_round.max(ballot.round);
        self.journal.append(&Record::Promise {
            ballot: ballot.clone(),
        });
        if self.role != Role::Follower && ballot.leader != self.cfg.id {
            self.become_follower(None, now);
        }
    }

    pub(super) fn on_prepare(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        from_slot: u64,
        now: Instant,
    ) {
        self.highest_round = self.highest_round.max(ballot.round);
        if ballot < self.promised {
            let promised = self.promised.clone();
            self.send(&from, Message::Nack { ballot, promised });
            return;
        }
        self.promise(&ballot, now);
        if from != self.cfg.id {
            self.reset_election_timer(now);
        }
        let accepted = self
            .accepted
            .range(from_slot..)
            .map(|(slot, (b, v))| Accepted {
                slot: *slot,
                ballot: b.clone(),
                value: v.clone(),
            })
            .collect();
        if self.snapshot_index >= from_slot && from != self.cfg.id {
            // The candidate lacks slots this node compacted: it needs the state.
            for msg in self.snapshot_messages() {
                self.send(&from, msg);
            }
        }
        self.after_sync.push((
            from,
            Message::Promise {
                ballot,
                accepted,
                snapshot: self.snapshot_index,
            },
        ));
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_accept(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        entries: Vec<(u64, Payload)>,
        commit: u64,
        seq: u64,
        now: Instant,
    ) {
        self.highest_round = self.highest_round.max(ballot.round);
        let below = ballot < self.promised;
        if below && !self.cfg.bugs.has(Bug::AcceptLowerBallot) {
            let promised = self.promised.clone();
            self.send(&from, Message::Nack { ballot, promised });
            return;
        }
        if !below {
            self.promise(&ballot, now);
            if from != self.cfg.id {
                self.role = Role::Follower;
                self.campaign = None;
            }
            self.leader = Some(ballot.leader.clone());
            self.leader_contact = Some(now);
            self.reset_election_timer(now);
        }
        let mut slots = Vec::with_capacity(entries.len());
        for (slot, value) in entries {
            if slot <= self.snapshot_index {
                // Compacted: chosen long ago; acknowledging is harmless.
                slots.push(slot);
                continue;
            }
            if self.accepted.get(&slot) != Some(&(ballot.clone(), value.clone())) {
                self.journal.append(&Record::Accept {
                    slot,
                    ballot: ballot.clone(),
                    value: value.clone(),
                });
                self.accepted.insert(slot, (ballot.clone(), value));
            }
            slots.push(slot);
        }
        // The leader's commit point names chosen slots; what this acceptor took
        // in that same ballot is the value chosen there (a ballot proposes one
        // value per slot).
        let learned: Vec<(u64, Payload)> = if commit > self.commit {
            self.accepted
                .range(self.commit + 1..=commit)
                .filter(|(s, (b, _))| *b == ballot && !self.chosen.contains_key(s))
                .map(|(s, (_, v))| (*s, v.clone()))
                .collect()
        } else {
            Vec::new()
        };
        for (s, v) in learned {
            self.chosen.insert(s, v);
        }
        self.advance_commit();
        let commit = self.commit;
        self.after_sync.push((
            from,
            Message::AcceptedSlots {
                ballot,
                slots,
                commit,
                seq,
            },
        ));
    }

    /// This node's snapshot as messages of at most `snapshot_chunk` bytes of
    /// text each, if it has one.
    pub(super) fn snapshot_messages(&self) -> Vec<Message> {
        let s = match Snapshot::load(&self.cfg.data_dir) {
            Ok(Some(s)) => s,
            Ok(None) => return Vec::new(),
            Err(e) => {
                log_line!(self.cfg.who(), "cannot read the snapshot to send: {e}");
                return Vec::new();
            }
        };
        let text = s.data.to_string();
        let mut out = Vec::new();
        let mut start = 0;
        loop {
            let mut end = (start + self.cfg.snapshot_chunk.max(1)).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            out.push(Message::Snapshot {
                index: s.last_index,
                members: s.members.clone(),
                offset: start as u64,
                chunk: text[start..end].to_string(),
                done: end == text.len(),
            });
            if end == text.len() {
                return out;
            }
            start = end;
        }
    }

    /// Every `snapshot_every` applied slots: snapshot the state machine, then
    /// rewrite the journal without the slots it covers.
    pub(super) fn maybe_snapshot(&mut self) -> std::io::Result<()> {
        if self.applied < self.snapshot_index + self.cfg.snapshot_every.max(1) {
            return Ok(());
        }
        let snapshot = Snapshot {
            last_index: self.applied,
            last_term: self.promised.round,
            members: self.members.clone(),
            data: self.sm.snapshot(),
        };
        snapshot.save(&self.cfg.data_dir, self.fsync())?;
        self.compact(self.applied)
    }

    /// Forgets everything at or below `index`, now covered by the saved snapshot.
    pub(super) fn compact(&mut self, index: u64) -> std::io::Result<()> {
        self.snapshot_index = index;
        self.accepted = self.accepted.split_off(&(index + 1));
        self.chosen = self.chosen.split_off(&(index + 1));
        let mut records = vec![Record::Promise {
            ballot: self.promised.clone(),
        }];
        records.extend(self.accepted.iter().map(|(slot, (b, v))| Record::Accept {
            slot: *slot,
            ballot: b.clone(),
            value: v.clone(),
        }));
        self.journal.rewrite(&records, self.fsync())
    }
}
