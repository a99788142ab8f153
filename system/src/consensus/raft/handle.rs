//! The Raft thread's inbox as the rest of the node holds it: [`Consensus`] for
//! clients and services, peer delivery for the transport, and stop.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::consensus::{Asked, Consensus, Refused, Reply, Status};
use crate::types::NodeId;

use super::{Event, Message};

/// A cloneable handle on one node's Raft thread.
#[derive(Clone, Debug)]
pub struct RaftHandle {
    inbox: SyncSender<Event>,
}

impl RaftHandle {
    /// A handle and the inbox it feeds, holding at most `bound` events; give
    /// the inbox to [`super::Raft::run`].
    pub fn channel(bound: usize) -> (RaftHandle, Receiver<Event>) {
        let (inbox, rx) = sync_channel(bound);
        (RaftHandle { inbox }, rx)
    }

    /// Hands a peer's message to the thread; dropped if the inbox is full
    /// (Raft retransmits).
    pub fn deliver(&self, from: NodeId, msg: Message) {
        let _ = self.inbox.try_send(Event::Peer { from, msg });
    }

    /// Asks the thread to stop, waiting for room in the inbox.
    pub fn stop(&self) {
        let _ = self.inbox.send(Event::Shutdown);
    }

    fn ask<T>(&self, event: impl FnOnce(oneshot::Sender<T>) -> Event) -> Asked<T> {
        let (tx, rx) = oneshot::channel();
        match self.inbox.try_send(event(tx)) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(Refused::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Stopped),
        }
    }
}

impl Consensus for RaftHandle {
    fn propose(&self, command: Value) -> Asked<Reply> {
        self.ask(|reply| Event::Propose { command, reply })
    }

    fn read(&self, query: Value) -> Asked<Reply> {
        self.ask(|reply| Event::Read { query, reply })
    }

    fn join(&self, id: NodeId, addr: String) -> Asked<Reply> {
        self.ask(|reply| Event::Join { id, addr, reply })
    }

    fn leave(&self, id: NodeId) -> Asked<Reply> {
        self.ask(|reply| Event::Leave { id, reply })
    }

    fn status(&self) -> Asked<Status> {
        self.ask(Event::Status)
    }
}
