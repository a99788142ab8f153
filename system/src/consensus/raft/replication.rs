//! Log replication: proposals appended on the leader, Append and its reply,
//! and the flush after each batch of events (one fsync, then the replies that
//! waited for it, replication, commit and apply).

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::bugs::Bug;
use crate::consensus::{Reply, StateMachine};
use crate::log_line;
use crate::types::{Entry, NodeId, Payload};

use super::{Message, Raft, Role};

/// Entries per append message.
const MAX_BATCH: usize = 512;
/// Unsynced bytes the `no-fsync` bug lets pile up in memory before writing.
const NO_FSYNC_BUFFER: usize = 4 << 20;

impl<S: StateMachine> Raft<S> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_append(
        &mut self,
        from: NodeId,
        term: u64,
        (mut prev_index, mut prev_term): (u64, u64),
        mut entries: Vec<Entry>,
        (commit, leader_last): (u64, u64),
        read_seq: u64,
        now: Instant,
    ) {
        if term < self.meta.term {
            // The reply carries our newer term, so it must not carry the old
            // message's read round: that round belongs to an older leadership
            // (perhaps an earlier incarnation of the same node) and would
            // confirm reads of the current one.
            let echoed = if self.cfg.bugs.has(Bug::EchoReadSeq) {
                read_seq
            } else {
                0
            };
            self.send(
                &from,
                Message::AppendReply {
                    term: self.meta.term,
                    success: false,
                    match_index: 0,
                    hint: 0,
                    read_seq: echoed,
                    lost: false,
                },
            );
            return;
        }
        self.follow(&from, term, now);
        self.removed = None;

        let si = self.log.snapshot_index();
        if prev_index < si {
            // Entries up to the snapshot are committed here already, so they match.
            let skip = (si - prev_index) as usize;
            entries.drain(..skip.min(entries.len()));
            prev_index = si;
            prev_term = self.log.term_at(si).unwrap_or(0);
        }
        if self.log.term_at(prev_index) != Some(prev_term) {
            let hint = if prev_index > self.log.last_index() {
                self.log.last_index() + 1
            } else {
                // Skip back over the whole conflicting term in one round trip.
                let bad = self.log.term_at(prev_index);
                let mut i = prev_index;
                while i > si + 1 && self.log.term_at(i - 1) == bad {
                    i -= 1;
                }
                i.max(self.commit + 1)
            };
            self.send(
                &from,
                Message::AppendReply {
                    term: self.meta.term,
                    success: false,
                    match_index: 0,
                    hint,
                    read_seq,
                    lost: self.log.damaged().is_some(),
                },
            );
            return;
        }
        let last_new = prev_index + entries.len() as u64;
        let mut membership_changed = false;
        for entry in entries {
            match self.log.term_at(entry.index) {
                Some(t) if t == entry.term => continue,
                Some(_) => {
                    // Raft never truncates committed entries: a leader asking for
                    // it is broken (or a message is forged); refuse, keep the log.
                    if entry.index <= self.commit {
                        log_line!(
                            self.cfg.who(),
                            "refusing to truncate committed entry {} (commit {}) for {from} in term {term}",
                            entry.index,
                            self.commit
                        );
                        return;
                    }
                    if let Err(e) = self.log.truncate_from(entry.index) {
                        log_line!(self.cfg.who(), "cannot truncate the log: {e}; stopping");
                        std::process::exit(70);
                    }
                    membership_changed = true;
                }
                None => {}
            }
            if matches!(entry.payload, Payload::Config { .. }) {
                membership_changed = true;
            }
            self.log.append(entry);
        }
        if membership_changed {
            self.recompute_members();
        }
        if self.log.damaged() == Some(u64::MAX) {
            // How far the lost state went is unknown: everything committed is
            // in this leader's log, so its last index bounds it.
            if let Err(e) = self
                .log
                .retarget_damage(commit.max(last_new).max(leader_last).max(1))
            {
                log_line!(self.cfg.who(), "cannot record the damage: {e}; stopping");
                std::process::exit(70);
            }
        }
        let new_commit = commit.min(last_new);
        if new_commit > self.commit {
            self.commit = new_commit;
        }
        // Acknowledged only once the entries are on disk (see flush).
        self.after_sync.push((
            from,
            Message::AppendReply {
                term: self.meta.term,
                success: true,
                match_index: last_new,
                hint: 0,
                read_seq,
                lost: false,
            },
        ));
    }

    pub(super) fn send_append(&mut self, to: &NodeId, read_seq: u64) {
        let Some(p) = self.peers.get(to) else { return };
        let next = p.next;
        if next <= self.log.snapshot_index() {
            self.send_snapshot_chunk(to, read_seq, false);
            return;
        }
        let prev_index = next - 1;
        let prev_term = self.log.term_at(prev_index).unwrap_or(0);
        let entries = self.log.entries_from(next, MAX_BATCH);
        let sent = entries.len() as u64;
        self.send(
            to,
            Message::Append {
                term: self.meta.term,
                prev_index,
                prev_term,
                entries,
                commit: self.commit,
                read_seq,
                leader_last: self.log.last_index(),
            },
        );
        if let Some(p) = self.peers.get_mut(to) {
            p.next = next + sent;
        }
    }

    pub(super) fn flush(&mut self) -> std::io::Result<()> {
        let now = Instant::now();
        // Replicate new entries before our own fsync: the two overlap.
        if self.role == Role::Leader {
            let last = self.log.last_index();
            let peers: Vec<NodeId> = self.peers.keys().cloned().collect();
            let read_round = self.read_seq > self.read_round_sent;
            for peer in peers {
                let (next, matched) = self
                    .peers
                    .get(&peer)
                    .map(|p| (p.next, p.matched))
                    .unwrap_or((0, 0));
                let window_open =
                    next <= last && next.saturating_sub(matched) < (8 * MAX_BATCH) as u64;
                if window_open || read_round {
                    self.send_append(&peer, self.read_seq);
                }
            }
            self.read_round_sent = self.read_seq;
        }
        if self.cfg.bugs.has(Bug::NoFsync) {
            if self.log.buffered_bytes() > NO_FSYNC_BUFFER
                || now.duration_since(self.last_buffer_write) > Duration::from_secs(5)
            {
                self.log.sync(false)?;
                self.last_buffer_write = now;
            }
        } else {
            self.log.sync(true)?;
        }
        for (to, msg) in std::mem::take(&mut self.after_sync) {
            self.send(&to, msg);
        }
        if self.role == Role::Leader {
            self.advance_commit();
        }
        self.apply(now);
        if self.role == Role::Leader {
            self.serve_reads();
        }
        if let Some(d) = self.log.damaged() {
            if d != u64::MAX && self.commit >= d {
                self.log.repaired()?;
                log_line!(self.cfg.who(), "log repaired up to {d}; voting again");
            }
        }
        if self.applied >= self.snapshot_index() + self.cfg.snapshot_every {
            self.take_snapshot()?;
        }
        Ok(())
    }

    /// Appends a client's command; its waiter is answered once it applies.
    pub(super) fn on_propose(&mut self, command: Value, reply: oneshot::Sender<Reply>) {
        if self.role != Role::Leader {
            let _ = reply.send(Reply::NotLeader(self.leader.clone()));
            return;
        }
        // Planted bugs only: answer from local state now; the command
        // commits later, or not.
        if let Some(result) = self.sm.speculate(&command) {
            let _ = reply.send(Reply::Ok(result));
            self.append_local(Payload::Command { command });
            return;
        }
        let index = self.append_local(Payload::Command { command });
        self.waiters.insert(index, (self.meta.term, reply));
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_append_reply(
        &mut self,
        from: NodeId,
        term: u64,
        success: bool,
        match_index: u64,
        hint: u64,
        read_seq: u64,
        lost: bool,
        now: Instant,
    ) {
        if term > self.meta.term {
            self.become_follower(term, None);
            return;
        }
        if self.role != Role::Leader || term != self.meta.term {
            return;
        }
        let Some(p) = self.peers.get_mut(&from) else {
            return;
        };
        p.last_ack = now;
        // A round this leadership never handed out cannot confirm a read.
        if read_seq <= self.read_seq || self.cfg.bugs.has(Bug::EchoReadSeq) {
            p.acked_seq = p.acked_seq.max(read_seq);
        }
        if success {
            if match_index > p.matched {
                p.matched = match_index;
                p.progress_at = now;
            }
            p.next = p.next.max(match_index + 1);
        } else {
            if lost && hint <= p.matched {
                log_line!(
                    self.cfg.who(),
                    "{from} lost entries to damage: resending from {hint} (matched was {})",
                    p.matched
                );
                p.matched = hint.saturating_sub(1);
            }
            p.next = hint.min(p.next).max(p.matched + 1);
            self.send_append(&from, read_seq);
        }
    }
}
