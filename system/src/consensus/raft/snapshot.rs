//! Snapshots: taken every `snapshot_every` applied entries to compact the log,
//! and sent to a follower that is behind the compacted part.

use std::time::Instant;

use serde_json::Value;

use crate::bugs::Bug;
use crate::consensus::StateMachine;
use crate::log_line;
use crate::storage::Snapshot;
use crate::types::{Members, NodeId, Payload};

use super::{Message, Raft, Role};

impl<S: StateMachine> Raft<S> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_snapshot(
        &mut self,
        from: NodeId,
        term: u64,
        last_index: u64,
        last_term: u64,
        members: Members,
        data: Value,
        now: Instant,
    ) {
        if term < self.meta.term {
            self.send(
                &from,
                Message::SnapshotReply {
                    term: self.meta.term,
                    last_index: 0,
                },
            );
            return;
        }
        self.follow(&from, term, now);
        if last_index > self.commit {
            if let Err(e) = self.sm.restore(&data) {
                log_line!(self.cfg.id, "rejecting a snapshot: {e}");
                return;
            }
            let snap = Snapshot {
                last_index,
                last_term,
                members,
                data,
            };
            let sync = !self.cfg.bugs.has(Bug::NoFsync);
            let saved = snap
                .save(&self.cfg.data_dir, sync)
                .and_then(|_| self.log.reset_to_snapshot(last_index, last_term, sync));
            if let Err(e) = saved {
                log_line!(self.cfg.id, "cannot install a snapshot: {e}; stopping");
                std::process::exit(70);
            }
            log_line!(
                self.cfg.id,
                "installed a snapshot up to {last_index} from {from}"
            );
            self.snapshot = Some(snap);
            self.commit = last_index;
            self.applied = last_index;
            self.recompute_members();
        }
        self.send(
            &from,
            Message::SnapshotReply {
                term: self.meta.term,
                last_index: self.commit.max(last_index.min(self.log.last_index())),
            },
        );
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
        self.log.compact(index, term, sync)?;
        self.snapshot = Some(snap);
        log_line!(self.cfg.id, "snapshot at {index}, log compacted");
        Ok(())
    }

    pub(super) fn on_snapshot_reply(
        &mut self,
        from: NodeId,
        term: u64,
        last_index: u64,
        now: Instant,
    ) {
        if term > self.meta.term {
            self.become_follower(term, None);
            return;
        }
        if self.role != Role::Leader || term != self.meta.term {
            return;
        }
        if let Some(p) = self.peers.get_mut(&from) {
            p.last_ack = now;
            if last_index > p.matched {
                p.matched = last_index;
                p.progress_at = now;
            }
            p.next = p.next.max(last_index + 1);
        }
    }
}
