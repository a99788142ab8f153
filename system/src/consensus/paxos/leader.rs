//! The proposer: phase 1a once per leadership for every open slot, phase 2a per
//! slot, the count of acceptances, heartbeats that carry the commit point and
//! confirm reads, and catch-up for learners that are behind.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::oneshot;

use crate::bugs::Bug;
use crate::consensus::{Reply, StateMachine};
use crate::log_line;
use crate::types::{NodeId, Payload};

use super::{Accepted, Acks, Ballot, Message, Paxos, Role};

/// Slots per Accept or Chosen message.
const MAX_BATCH: usize = 1024;
/// Bytes of values per Accept or Chosen message (roughly), far below the
/// transport's frame cap: a batch of large values must not make a frame the
/// receiver refuses, or those slots would be resent whole forever.
const MAX_BATCH_BYTES: usize = 8 << 20;

/// About how many bytes a value takes in a message.
fn size(value: &Payload) -> usize {
    match value {
        Payload::Command { command } => command.to_string().len() + 32,
        _ => 32,
    }
}

/// Takes entries while a batch stays within both caps (always at least one).
pub(super) fn within_caps<'a, T: 'a>(
    entries: impl Iterator<Item = (T, &'a Payload)>,
) -> impl Iterator<Item = (T, &'a Payload)> {
    let mut bytes = 0;
    entries.take(MAX_BATCH).take_while(move |(_, v)| {
        let first = bytes == 0;
        bytes += size(v);
        first || bytes <= MAX_BATCH_BYTES
    })
}

/// Phase 1 in progress.
pub(super) struct Campaign {
    pub(super) ballot: Ballot,
    from_slot: u64,
    promises: BTreeMap<NodeId, Vec<Accepted>>,
    /// An acceptor compacted slots this node lacks: it waits for the snapshot
    /// and tries again, since it cannot learn those slots' values.
    behind: bool,
}

/// A slot proposed and not yet chosen.
pub(super) struct Pending {
    pub(super) value: Payload,
    acks: Acks,
    sent: Instant,
}

/// What the leader knows of one peer.
struct PeerState {
    /// The peer's own commit point, once it has answered in this ballot.
    commit: Option<u64>,
    last_ack: Instant,
    acked_seq: u64,
    snapshot_sent: Option<Instant>,
}

/// A leadership in force.
pub(super) struct Lead {
    ballot: Ballot,
    pub(super) next_slot: u64,
    pub(super) pending: BTreeMap<u64, Pending>,
    /// Proposed since the last flush, not yet sent.
    outbox: Vec<(u64, Payload)>,
    peers: BTreeMap<NodeId, PeerState>,
    /// The commit point at the previous heartbeat: a peer still below it after a
    /// heartbeat carried it has missed something and is sent the chosen values.
    commit_at_last_beat: u64,
}

/// A read waiting for a majority to confirm the leadership after it arrived,
/// and for the state machine to reach every slot proposed before it.
pub(super) struct PendingRead {
    seq: u64,
    index: u64,
    query: Value,
    pub(super) reply: oneshot::Sender<Reply>,
}

impl<S: StateMachine> Paxos<S> {
    /// No word from a leader: phase 1 with a ballot above any seen.
    pub(super) fn start_campaign(&mut self, now: Instant) {
        let ballot = Ballot {
            round: self.highest_round.max(self.promised.round) + 1,
            leader: self.cfg.id.clone(),
        };
        self.highest_round = ballot.round;
        self.reset_election_timer(now);
        self.leader = None;
        if self.cfg.bugs.has(Bug::SkipPrepare) {
            // Lead at once, proposing after what this node knows chosen, as if
            // no other acceptor could hold a value in an open slot.
            self.become_follower(None, now);
            self.promise_own(&ballot);
            self.become_leader(ballot, self.commit + 1, Vec::new(), now);
            return;
        }
        self.become_follower(None, now);
        self.role = Role::Candidate;
        let from_slot = self.commit + 1;
        self.campaign = Some(Campaign {
            ballot: ballot.clone(),
            from_slot,
            promises: BTreeMap::new(),
            behind: false,
        });
        self.broadcast(Message::Prepare { ballot, from_slot });
    }

    fn promise_own(&mut self, ballot: &Ballot) {
        self.promised = ballot.clone();
        self.journal.append(&super::Record::Promise {
            ballot: ballot.clone(),
        });
    }

    pub(super) fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        accepted: Vec<Accepted>,
        snapshot: u64,
        now: Instant,
    ) {
        let quorum = self.quorum();
        if self.role != Role::Candidate {
            return;
        }
        let Some(c) = self.campaign.as_mut() else {
            return;
        };
        if c.ballot != ballot {
            return;
        }
        // The acceptor compacted slots this node does not know chosen. Its
        // snapshot, sent ahead of the promise on the same link, is installed
        // by now if it arrived whole; only if not is the campaign stuck.
        if snapshot > self.commit.max(c.from_slot - 1) {
            c.behind = true;
        }
        c.promises.insert(from, accepted);
        if c.promises.len() < quorum || c.behind {
            return;
        }
        let Some(c) = self.campaign.take() else {
            return;
        };
        let all: Vec<Accepted> = c.promises.into_values().flatten().collect();
        self.become_leader(c.ballot, c.from_slot, all, now);
    }

    /// Takes the lead: every open slot gets the value accepted there in the
    /// highest ballot a majority reported, or a no-op if none was, proposed
    /// again in this ballot; new proposals go after them.
    fn become_leader(&mut self, ballot: Ballot, from_slot: u64, seen: Vec<Accepted>, now: Instant) {
        let mut open: BTreeMap<u64, (Ballot, Payload)> = BTreeMap::new();
        for a in seen {
            if a.slot < from_slot {
                continue;
            }
            if open.get(&a.slot).is_none_or(|(b, _)| *b < a.ballot) {
                open.insert(a.slot, (a.ballot, a.value));
            }
        }
        let last = open
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(self.commit);
        let mut pending = BTreeMap::new();
        let mut outbox = Vec::new();
        let mut holes = 0;
        // Slots up to the commit point are known chosen (some compacted away
        // if a snapshot came during the campaign): nothing to propose there.
        for slot in from_slot.max(self.commit + 1)..=last {
            if self.chosen.contains_key(&slot) {
                continue;
            }
            let value = match open.remove(&slot) {
                Some((_, v)) => v,
                None => {
                    holes += 1;
                    Payload::Noop
                }
            };
            outbox.push((slot, value.clone()));
            pending.insert(
                slot,
                Pending {
                    value,
                    acks: Acks::new(),
                    sent: now,
                },
            );
        }
        log_line!(
            self.cfg.who(),
            "leading with ballot {}/{}: {} open slot(s) proposed again ({holes} as no-ops)",
            ballot.round,
            ballot.leader,
            outbox.len()
        );
        let peers = self
            .members
            .keys()
            .filter(|m| **m != self.cfg.id)
            .map(|m| {
                (
                    m.clone(),
                    PeerState {
                        commit: None,
                        last_ack: now,
                        acked_seq: 0,
                        snapshot_sent: None,
                    },
                )
            })
            .collect();
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id.clone());
        self.heartbeat_due = now;
        self.lead = Some(super::Lead {
            ballot,
            next_slot: last + 1,
            pending,
            outbox,
            peers,
            commit_at_last_beat: self.commit,
        });
    }

    /// The commit point an Accept may carry: only slots chosen in this very
    /// ballot, so below every slot still pending in it. An acceptor learns a
    /// slot it accepted in this ballot as chosen from it; a slot this leader
    /// knows chosen from elsewhere (a Chosen or a snapshot from a newer
    /// leader) may hold, at that acceptor, a value this ballot proposed and
    /// never got chosen.
    fn advertised_commit(&self) -> u64 {
        let pending = self
            .lead
            .as_ref()
            .and_then(|l| l.pending.keys().next().copied());
        match pending {
            Some(first) => self.commit.min(first - 1),
            None => self.commit,
        }
    }

    pub(super) fn on_propose(&mut self, command: Value, reply: oneshot::Sender<Reply>) {
        let Some(lead) = self.lead.as_mut() else {
            let _ = reply.send(Reply::NotLeader(self.leader.clone()));
            return;
        };
        let slot = lead.next_slot;
        lead.next_slot += 1;
        let value = Payload::Command { command };
        lead.outbox.push((slot, value.clone()));
        lead.pending.insert(
            slot,
            Pending {
                value: value.clone(),
                acks: Acks::new(),
                sent: Instant::now(),
            },
        );
        self.waiters.insert(slot, (value, reply));
    }

    /// Phase 2a for what was proposed since the last flush, to every member.
    pub(super) fn send_proposals(&mut self) {
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        if lead.outbox.is_empty() {
            return;
        }
        let outbox = std::mem::take(&mut lead.outbox);
        let ballot = lead.ballot.clone();
        let commit = self.advertised_commit();
        let mut rest = outbox.as_slice();
        while !rest.is_empty() {
            let n = within_caps(rest.iter().map(|(s, v)| (*s, v))).count();
            let (batch, after) = rest.split_at(n);
            rest = after;
            self.broadcast(Message::Accept {
                ballot: ballot.clone(),
                entries: batch.to_vec(),
                commit,
                seq: self.read_seq,
            });
        }
    }

    pub(super) fn on_accepted(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slots: Vec<u64>,
        commit: u64,
        seq: u64,
        now: Instant,
    ) {
        let quorum = self.quorum();
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        if lead.ballot != ballot {
            return;
        }
        if let Some(p) = lead.peers.get_mut(&from) {
            p.last_ack = now;
            p.acked_seq = p.acked_seq.max(seq);
            p.commit = Some(commit);
        }
        for slot in slots {
            let Some(p) = lead.pending.get_mut(&slot) else {
                continue;
            };
            p.acks.insert(from.clone());
            if p.acks.len() >= quorum {
                if let Some(p) = lead.pending.remove(&slot) {
                    self.chosen.insert(slot, p.value);
                }
            }
        }
    }

    pub(super) fn on_nack(&mut self, ballot: Ballot, promised: Ballot, now: Instant) {
        self.highest_round = self.highest_round.max(promised.round);
        let mine = match (&self.lead, &self.campaign) {
            (Some(l), _) => &l.ballot,
            (None, Some(c)) => &c.ballot,
            (None, None) => return,
        };
        if *mine == ballot && promised > ballot {
            log_line!(
                self.cfg.who(),
                "ballot {}/{} refused: an acceptor promised {}/{}",
                ballot.round,
                ballot.leader,
                promised.round,
                promised.leader
            );
            self.become_follower(None, now);
        }
    }

    /// Every heartbeat: step down if a majority went quiet, resend proposals
    /// not yet accepted, send chosen values (or the snapshot) to peers that fell
    /// behind, and tell everyone the commit point.
    pub(super) fn heartbeat(&mut self, now: Instant) {
        let quorum = self.quorum();
        let timeout = self.cfg.election_timeout * 2;
        let commit = self.advertised_commit();
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        let mut acks: Vec<Instant> = lead.peers.values().map(|p| p.last_ack).collect();
        acks.sort_unstable_by(|a, b| b.cmp(a));
        if quorum > 1 {
            let oldest = acks.get(quorum - 2).copied().unwrap_or(now);
            if now.duration_since(oldest) > timeout {
                log_line!(self.cfg.who(), "lost contact with a majority");
                self.become_follower(None, now);
                return;
            }
        }
        let ballot = lead.ballot.clone();
        let mut out: Vec<(NodeId, Message)> = Vec::new();
        // Proposals a peer has not accepted for an election timeout: resend.
        let stale = self.cfg.election_timeout;
        let peers: Vec<NodeId> = lead.peers.keys().cloned().collect();
        let mut resent = std::collections::BTreeSet::new();
        for peer in &peers {
            let resend: Vec<(u64, Payload)> = within_caps(
                lead.pending
                    .iter()
                    .filter(|(_, p)| now.duration_since(p.sent) > stale && !p.acks.contains(peer))
                    .map(|(s, p)| (*s, &p.value)),
            )
            .map(|(s, v)| (s, v.clone()))
            .collect();
            if !resend.is_empty() {
                resent.extend(resend.iter().map(|(s, _)| *s));
                out.push((
                    peer.clone(),
                    Message::Accept {
                        ballot: ballot.clone(),
                        entries: resend,
                        commit,
                        seq: self.read_seq,
                    },
                ));
            }
        }
        // Only what went out waits again; the rest goes in the next batches.
        for slot in resent {
            if let Some(p) = lead.pending.get_mut(&slot) {
                p.sent = now;
            }
        }
        // Learners still behind what the previous heartbeat announced.
        let mut snapshot_to: Vec<NodeId> = Vec::new();
        for (peer, state) in lead.peers.iter_mut() {
            // Unknown until the peer answers: no catch-up on a guess.
            let Some(peer_commit) = state.commit else {
                continue;
            };
            if peer_commit >= lead.commit_at_last_beat {
                continue;
            }
            if peer_commit < self.snapshot_index {
                if state
                    .snapshot_sent
                    .is_none_or(|at| now.duration_since(at) > timeout)
                {
                    state.snapshot_sent = Some(now);
                    snapshot_to.push(peer.clone());
                }
                continue;
            }
            let entries: Vec<(u64, Payload)> = within_caps(
                self.chosen
                    .range(peer_commit + 1..=self.commit)
                    .map(|(s, v)| (*s, v)),
            )
            .map(|(s, v)| (s, v.clone()))
            .collect();
            if !entries.is_empty() {
                out.push((
                    peer.clone(),
                    Message::Chosen {
                        ballot: ballot.clone(),
                        entries,
                    },
                ));
            }
        }
        lead.commit_at_last_beat = self.commit;
        for peer in peers {
            out.push((
                peer,
                Message::Accept {
                    ballot: ballot.clone(),
                    entries: Vec::new(),
                    commit,
                    seq: self.read_seq,
                },
            ));
        }
        self.read_round_sent = self.read_seq;
        if !snapshot_to.is_empty() {
            let msgs = self.snapshot_messages();
            for to in snapshot_to {
                out.extend(msgs.iter().map(|m| (to.clone(), m.clone())));
            }
        }
        for (to, msg) in out {
            self.send(&to, msg);
        }
    }

    /// Queues a read: answered once a majority has confirmed this ballot after
    /// the read arrived and every slot proposed before it is applied.
    pub(super) fn on_read(&mut self, query: Value, reply: oneshot::Sender<Reply>) {
        if self.cfg.bugs.has(Bug::StaleRead) {
            let _ = reply.send(Reply::Ok(self.sm.query(&query)));
            return;
        }
        let Some(lead) = self.lead.as_ref() else {
            let _ = reply.send(Reply::NotLeader(self.leader.clone()));
            return;
        };
        self.read_seq += 1;
        self.reads.push(PendingRead {
            seq: self.read_seq,
            index: lead.next_slot - 1,
            query,
            reply,
        });
    }

    /// A read round for reads that arrived since the last one.
    pub(super) fn send_read_round(&mut self) {
        if self.read_seq <= self.read_round_sent {
            return;
        }
        let commit = self.advertised_commit();
        let Some(lead) = self.lead.as_ref() else {
            return;
        };
        let msg = Message::Accept {
            ballot: lead.ballot.clone(),
            entries: Vec::new(),
            commit,
            seq: self.read_seq,
        };
        let peers: Vec<NodeId> = lead.peers.keys().cloned().collect();
        for peer in peers {
            self.send(&peer, msg.clone());
        }
        self.read_round_sent = self.read_seq;
    }

    pub(super) fn serve_reads(&mut self) {
        if self.reads.is_empty() {
            return;
        }
        let Some(lead) = self.lead.as_ref() else {
            return;
        };
        let mut acked: Vec<u64> = lead.peers.values().map(|p| p.acked_seq).collect();
        acked.sort_unstable_by(|a, b| b.cmp(a));
        // This node confirms itself; a majority needs quorum - 1 peers.
        let confirmed = match self.quorum() {
            1 => u64::MAX,
            q => acked.get(q - 2).copied().unwrap_or(0),
        };
        let applied = self.applied;
        let (ready, waiting): (Vec<PendingRead>, Vec<PendingRead>) =
            std::mem::take(&mut self.reads)
                .into_iter()
                .partition(|r| r.seq <= confirmed && r.index <= applied);
        self.reads = waiting;
        for r in ready {
            let _ = r.reply.send(Reply::Ok(self.sm.query(&r.query)));
        }
    }
}
