//! ReadIndex reads (Raft thesis 6.4): a read waits for a heartbeat round that
//! a quorum echoed after it arrived, and for the state machine to reach the
//! commit index it saw, so it never answers from a deposed leader's state.

use serde_json::Value;
use tokio::sync::oneshot;

use crate::bugs::Bug;
use crate::consensus::{Reply, StateMachine};

use super::{Raft, Role};

/// A read waiting for its round to be confirmed and its index applied.
pub(super) struct PendingRead {
    pub(super) seq: u64,
    pub(super) index: u64,
    pub(super) query: Value,
    pub(super) reply: oneshot::Sender<Reply>,
}

impl<S: StateMachine> Raft<S> {
    pub(super) fn serve_reads(&mut self) {
        if self.reads.is_empty() {
            return;
        }
        let mut acked: Vec<u64> = self
            .members
            .keys()
            .map(|m| {
                if *m == self.cfg.id {
                    u64::MAX
                } else {
                    self.peers.get(m).map_or(0, |p| p.acked_seq)
                }
            })
            .collect();
        acked.sort_unstable_by(|a, b| b.cmp(a));
        let confirmed = acked.get(self.quorum() - 1).copied().unwrap_or(0);
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

    /// Queues a ReadIndex read: answered once a quorum has confirmed this
    /// leadership after the read arrived and the state machine has caught up.
    pub(super) fn on_read(&mut self, query: Value, reply: oneshot::Sender<Reply>) {
        if self.cfg.bugs.has(Bug::StaleRead) {
            let _ = reply.send(Reply::Ok(self.sm.query(&query)));
            return;
        }
        if self.role != Role::Leader {
            let _ = reply.send(Reply::NotLeader(self.leader.clone()));
            return;
        }
        self.read_seq += 1;
        self.reads.push(PendingRead {
            seq: self.read_seq,
            index: self.commit.max(self.term_start),
            query,
            reply,
        });
    }
}
