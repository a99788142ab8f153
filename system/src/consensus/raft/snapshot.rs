//! Snapshots: taken every `snapshot_every` applied entries to compact the log,
//! and sent in chunks to a follower that is behind the compacted part.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::bugs::Bug;
use crate::consensus::StateMachine;
use crate::log_line;
use crate::storage::Snapshot;
use crate::types::{Members, NodeId, Payload};

use super::{Message, Raft, Role};

/// Entries kept in the log behind a new snapshot, at most: a follower that is a
/// little behind then catches up from the log instead of a whole snapshot.
const MAX_MARGIN: u64 = 4096;

/// One received [`Message::Snapshot`].
pub(super) struct Chunk {
    pub term: u64,
    pub last_index: u64,
    pub last_term: u64,
    pub members: Members,
    pub offset: u64,
    pub chunk: String,
    pub done: bool,
    pub read_seq: u64,
    pub leader_last: u64,
}

impl<S: StateMachine> Raft<S> {
    pub(super) fn on_snapshot(&mut self, from: NodeId, c: Chunk, now: Instant) {
        if c.term < self.meta.term {
            // As for a stale append: our newer term, and no read round of an
            // older leadership echoed under it.
            self.send(
                &from,
                Message::SnapshotReply {
                    term: self.meta.term,
                    last_index: 0,
                    offset: 0,
                    of_index: 0,
                    read_seq: 0,
                },
            );
            return;
        }
        self.follow(&from, c.term, now);
        self.removed = None;
        let (of_index, read_seq) = (c.last_index, c.read_seq);
        let reply = move |raft: &Self, offset: u64| Message::SnapshotReply {
            term: raft.meta.term,
            last_index: raft.commit,
            offset,
            of_index,
            read_seq,
        };
        if c.last_index <= self.commit {
            self.incoming = None;
            let msg = reply(self, 0);
            self.send(&from, msg);
            return;
        }
        let same = |i: &(u64, u64, String)| i.0 == c.last_index && i.1 == c.last_term;
        if c.offset == 0 {
            self.incoming = Some((c.last_index, c.last_term, String::new()));
        }
        let expected = match &self.incoming {
            Some(i) if same(i) => i.2.len() as u64,
            _ => 0,
        };
        if c.offset != expected || self.incoming.is_none() {
            // A chunk out of order (a duplicate, or one of an older snapshot):
            // say where we are and let the leader go on from there.
            let msg = reply(self, expected);
            self.send(&from, msg);
            return;
        }
        let Some((_, _, text)) = self.incoming.as_mut() else {
            return;
        };
        text.push_str(&c.chunk);
        if !c.done {
            let got = text.len() as u64;
            let msg = reply(self, got);
            self.send(&from, msg);
            return;
        }
        let Some((_, _, text)) = self.incoming.take() else {
            return;
        };
        if let Err(e) = self.log.retarget_damage(c.last_index.max(c.leader_last)) {
            log_line!(self.cfg.who(), "cannot record the damage: {e}; stopping");
            std::process::exit(70);
        }
        let bytes = text.len();
        let installed = match serde_json::from_str::<Value>(&text) {
            Ok(data) => self.install(
                &from,
                Snapshot {
                    last_index: c.last_index,
                    last_term: c.last_term,
                    members: c.members,
                    data,
                },
                bytes,
            ),
            Err(e) => {
                log_line!(self.cfg.who(), "rejecting a snapshot that is not JSON: {e}");
                false
            }
        };
        let mut msg = reply(self, 0);
        if !installed {
            // Not "start again from 0" (the leader would at once): let its
            // quiet-spell resend pace the retries.
            if let Message::SnapshotReply { of_index, .. } = &mut msg {
                *of_index = 0;
            }
        }
        self.send(&from, msg);
    }

    /// Puts a received snapshot in force: state machine, disk, log, membership.
    fn install(&mut self, from: &NodeId, snap: Snapshot, bytes: usize) -> bool {
        if let Err(e) = self.sm.restore(&snap.data) {
            log_line!(self.cfg.who(), "rejecting a snapshot: {e}");
            return false;
        }
        let sync = !self.cfg.bugs.has(Bug::NoFsync);
        let (index, term) = (snap.last_index, snap.last_term);
        let saved = snap
            .save(&self.cfg.data_dir, sync)
            .and_then(|_| self.log.reset_to_snapshot(index, term, sync));
        if let Err(e) = saved {
            log_line!(self.cfg.who(), "cannot install a snapshot: {e}; stopping");
            std::process::exit(70);
        }
        log_line!(
            self.cfg.who(),
            "installed a snapshot up to {index} from {from} ({bytes} bytes)"
        );
        self.snapshot = Some(snap);
        self.snapshot_text = None;
        self.commit = index;
        self.applied = index;
        self.recompute_members();
        true
    }

    pub(super) fn take_snapshot(&mut self) -> std::io::Result<()> {
        let index = self.applied;
        let Some(term) = self.log.term_at(index) else {
            return Ok(());
        };
        // Membership as of `index`: the latest config at or before it.
        let members = self
            .log
            .iter()
            .rev()
            .filter(|e| e.index <= index)
            .find_map(|e| match &e.payload {
                Payload::Config { members } => Some(members.clone()),
                _ => None,
            })
            .or_else(|| self.snapshot.as_ref().map(|s| s.members.clone()))
            .unwrap_or_else(|| self.cfg.members.clone());
        let snap = Snapshot {
            last_index: index,
            last_term: term,
            members,
            data: self.sm.snapshot(),
        };
        let sync = !self.cfg.bugs.has(Bug::NoFsync);
        // The log must be on disk before it can be compacted behind the snapshot.
        self.log.sync(sync)?;
        snap.save(&self.cfg.data_dir, sync)?;
        // Keep a margin of entries behind the snapshot (a quarter of the
        // interval, at most MAX_MARGIN) for followers a little behind.
        let margin = (self.cfg.snapshot_every / 4).min(MAX_MARGIN);
        let cut = index.saturating_sub(margin);
        if let Some(cut_term) = self.log.term_at(cut) {
            self.log.compact(cut, cut_term, sync)?;
        }
        self.snapshot = Some(snap);
        self.snapshot_text = None;
        log_line!(
            self.cfg.who(),
            "snapshot at {index}, log compacted up to {}",
            self.log.snapshot_index()
        );
        Ok(())
    }

    /// Last index of the snapshot in force (0 without one).
    pub(super) fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.last_index)
    }

    /// Sends `to` the next chunk of our snapshot. One chunk is in flight at a
    /// time: unless `go_on` (its answer came), a chunk is sent again only after
    /// two election timeouts without an answer.
    pub(super) fn send_snapshot_chunk(&mut self, to: &NodeId, read_seq: u64, go_on: bool) {
        let Some(snap) = &self.snapshot else { return };
        let index = snap.last_index;
        let now = Instant::now();
        let quiet = self.cfg.election_timeout * 2;
        let Some(p) = self.peers.get(to) else { return };
        let offset = match p.sending {
            Some((i, off, at)) if i == index => {
                if !go_on && now.saturating_duration_since(at) < quiet {
                    return;
                }
                off
            }
            _ => 0,
        };
        let text = match &self.snapshot_text {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = serde_json::to_string(&snap.data)
                    .unwrap_or_else(|_| "null".into())
                    .into();
                self.snapshot_text = Some(t.clone());
                t
            }
        };
        let mut start = (offset as usize).min(text.len());
        if !text.is_char_boundary(start) {
            // Only a broken or forged reply points inside a character.
            start = 0;
        }
        let mut end = (start + self.cfg.snapshot_chunk.max(1)).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let Some(snap) = &self.snapshot else { return };
        let msg = Message::Snapshot {
            term: self.meta.term,
            last_index: index,
            last_term: snap.last_term,
            members: snap.members.clone(),
            offset: start as u64,
            chunk: text[start..end].to_string(),
            done: end == text.len(),
            read_seq,
            leader_last: self.log.last_index(),
        };
        self.send(to, msg);
        if let Some(p) = self.peers.get_mut(to) {
            p.sending = Some((index, start as u64, now));
        }
    }

    pub(super) fn on_snapshot_reply(
        &mut self,
        from: NodeId,
        term: u64,
        last_index: u64,
        (of_index, offset): (u64, u64),
        read_seq: u64,
        now: Instant,
    ) {
        if term > self.meta.term {
            self.become_follower(term, None);
            return;
        }
        if self.role != Role::Leader || term != self.meta.term {
            return;
        }
        let index = self.snapshot_index();
        let round = self.read_seq;
        let Some(p) = self.peers.get_mut(&from) else {
            return;
        };
        p.last_ack = now;
        if read_seq <= round {
            p.acked_seq = p.acked_seq.max(read_seq);
        }
        if last_index > p.matched {
            p.matched = last_index;
            p.progress_at = now;
        }
        p.next = p.next.max(last_index.saturating_add(1));
        if last_index >= index {
            p.sending = None;
        } else if of_index == index {
            // The follower has the text up to `offset`: send what follows.
            p.sending = Some((index, offset, now));
            p.progress_at = now;
            self.send_snapshot_chunk(&from, round, true);
        }
    }
}
