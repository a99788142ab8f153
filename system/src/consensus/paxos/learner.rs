//! The learner: chosen values in slot order into the state machine, answers to
//! the proposals waiting on them, and catch-up from a snapshot.

use serde_json::Value;

use crate::consensus::{Reply, StateMachine};
use crate::log_line;
use crate::storage::Snapshot;
use crate::types::{Members, NodeId, Payload};

use super::Paxos;

impl<S: StateMachine> Paxos<S> {
    /// Moves the commit point over every slot now known chosen.
    pub(super) fn advance_commit(&mut self) {
        while self.chosen.contains_key(&(self.commit + 1)) {
            self.commit += 1;
        }
    }

    /// Learns chosen values sent by a node that knows them.
    pub(super) fn on_chosen(&mut self, entries: Vec<(u64, Payload)>) {
        for (slot, value) in entries {
            if slot <= self.applied {
                continue;
            }
            match self.chosen.get(&slot) {
                Some(known) if *known != value => log_line!(
                    self.cfg.who(),
                    "slot {slot}: told a chosen value unlike the one known chosen; keeping ours"
                ),
                Some(_) => {}
                None => {
                    self.chosen.insert(slot, value);
                }
            }
        }
    }

    /// Applies chosen slots in order; a waiting proposal hears its result, or
    /// that another value took its slot (so it was never chosen anywhere: a
    /// leader proposes a value in one slot only).
    pub(super) fn apply(&mut self) {
        while self.applied < self.commit {
            let slot = self.applied + 1;
            let Some(value) = self.chosen.get(&slot) else {
                break;
            };
            let output = match value {
                Payload::Command { command } => self.sm.apply(command),
                _ => Value::Null,
            };
            self.applied = slot;
            if let Some((proposed, reply)) = self.waiters.remove(&slot) {
                let answer = if self.chosen.get(&slot) == Some(&proposed) {
                    Reply::Ok(output)
                } else {
                    Reply::Unavailable("another value was chosen in the proposal's slot".into())
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// Gathers a snapshot's chunks, one transfer per sender (each sender's
    /// chunks come in order on its link; several acceptors may send theirs to
    /// a candidate at once). A chunk that does not follow what came before
    /// from its sender drops that transfer; the sender starts again later.
    pub(super) fn on_snapshot_chunk(
        &mut self,
        from: NodeId,
        index: u64,
        members: Members,
        (offset, chunk, done): (u64, String, bool),
    ) {
        if index <= self.applied {
            self.incoming.remove(&from);
            return;
        }
        let text = match self.incoming.remove(&from) {
            Some((i, mut text)) if i == index && offset == text.len() as u64 => {
                text.push_str(&chunk);
                text
            }
            _ if offset == 0 => chunk,
            _ => return,
        };
        if !done {
            self.incoming.insert(from, (index, text));
            return;
        }
        match serde_json::from_str::<Value>(&text) {
            Ok(data) => self.on_snapshot(index, members, data),
            Err(e) => log_line!(self.cfg.who(), "refusing a snapshot at {index}: {e}"),
        }
    }

    /// Installs a snapshot from a node ahead of this one.
    fn on_snapshot(&mut self, index: u64, members: Members, data: Value) {
        if index <= self.applied {
            return;
        }
        if let Err(e) = self.sm.restore(&data) {
            log_line!(self.cfg.who(), "refusing a snapshot at {index}: {e}");
            return;
        }
        let snapshot = Snapshot {
            last_index: index,
            last_term: self.promised.round,
            members,
            data,
        };
        let saved = snapshot
            .save(&self.cfg.data_dir, self.fsync())
            .and_then(|()| self.compact(index));
        if let Err(e) = saved {
            log_line!(
                self.cfg.who(),
                "cannot save a received snapshot: {e}; stopping"
            );
            std::process::exit(70);
        }
        log_line!(self.cfg.who(), "installed a snapshot up to slot {index}");
        self.applied = index;
        self.commit = self.commit.max(index);
        let stale: Vec<u64> = self.waiters.range(..=index).map(|(s, _)| *s).collect();
        for s in stale {
            if let Some((_, reply)) = self.waiters.remove(&s) {
                let _ = reply.send(Reply::Indeterminate(
                    "the slot was covered by a snapshot before its result was known".into(),
                ));
            }
        }
        self.advance_commit();
    }
}
