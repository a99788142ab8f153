//! A consensus thread's inbox as the rest of the node holds it: [`Consensus`]
//! for clients and services, peer delivery for the transport, and stop. Every
//! protocol runs one thread fed this way; only its peer message type differs.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use crate::consensus::{Asked, Consensus, Refused, Reply, Status};
use crate::types::NodeId;

/// Something for a consensus thread to do; `M` is its protocol's peer message.
#[derive(Debug)]
pub enum Event<M> {
    /// A message from a peer.
    Peer {
        /// The sender.
        from: NodeId,
        /// What it sent.
        msg: M,
    },
    /// Order and apply a state-machine command.
    Propose {
        /// The command.
        command: Value,
        /// Where the result goes.
        reply: oneshot::Sender<Reply>,
    },
    /// A linearizable read.
    Read {
        /// The query.
        query: Value,
        /// Where the value goes.
        reply: oneshot::Sender<Reply>,
    },
    /// Add a member.
    Join {
        /// Its id.
        id: NodeId,
        /// Its peer address.
        addr: String,
        /// Where the outcome goes.
        reply: oneshot::Sender<Reply>,
    },
    /// Remove a member.
    Leave {
        /// Its id.
        id: NodeId,
        /// Where the outcome goes.
        reply: oneshot::Sender<Reply>,
    },
    /// Report the node's view.
    Status(oneshot::Sender<Status>),
    /// Stop the thread.
    Shutdown,
}

/// A cloneable handle on one node's consensus thread.
///
/// Client requests may fill only half the inbox: the rest stays for peers, so a
/// burst of clients cannot crowd out the heartbeats and votes that keep the
/// cluster's leadership (clients get `503 overloaded` instead).
#[derive(Clone, Debug)]
pub struct Handle<M> {
    inbox: SyncSender<Event<M>>,
    /// Client requests queued and not yet taken by the thread.
    clients: Arc<AtomicUsize>,
    client_bound: usize,
    /// Peer messages dropped because the inbox was full.
    dropped: Arc<AtomicU64>,
}

/// The receiving end of the inbox, for the protocol's run loop.
pub struct Inbox<M> {
    rx: Receiver<Event<M>>,
    clients: Arc<AtomicUsize>,
}

impl<M> Inbox<M> {
    fn taken(&self, ev: Event<M>) -> Event<M> {
        if !matches!(ev, Event::Peer { .. } | Event::Shutdown) {
            self.clients.fetch_sub(1, Ordering::AcqRel);
        }
        ev
    }

    /// The next event, waiting at most `wait`.
    pub fn recv_timeout(&self, wait: Duration) -> Result<Event<M>, RecvTimeoutError> {
        self.rx.recv_timeout(wait).map(|ev| self.taken(ev))
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<Event<M>> {
        self.rx.try_recv().ok().map(|ev| self.taken(ev))
    }

    /// Waits at most `wait` for an event, then hands `handle` it and up to
    /// `max` more already queued (a run loop's batch before it flushes).
    /// False once the thread must stop: a shutdown, or the inbox closed.
    pub fn drain(&self, wait: Duration, max: usize, mut handle: impl FnMut(Event<M>)) -> bool {
        match self.recv_timeout(wait) {
            Ok(Event::Shutdown) | Err(RecvTimeoutError::Disconnected) => return false,
            Ok(ev) => handle(ev),
            Err(RecvTimeoutError::Timeout) => return true,
        }
        for _ in 0..max {
            match self.try_recv() {
                Some(Event::Shutdown) => return false,
                Some(ev) => handle(ev),
                None => break,
            }
        }
        true
    }
}

impl<M> Handle<M> {
    /// A handle and the inbox it feeds, holding at most `bound` events (clients
    /// at most half of them); give the inbox to the protocol's run loop.
    pub fn channel(bound: usize) -> (Handle<M>, Inbox<M>) {
        let (inbox, rx) = sync_channel(bound);
        let clients = Arc::new(AtomicUsize::new(0));
        let handle = Handle {
            inbox,
            clients: clients.clone(),
            client_bound: bound.div_ceil(2),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (handle, Inbox { rx, clients })
    }

    /// Hands a peer's message to the thread. When even the peers' half of the
    /// inbox is full the message is dropped (the protocol retransmits), counted, and the
    /// count logged at every power of two.
    pub fn deliver(&self, from: NodeId, msg: M) {
        if let Err(TrySendError::Full(Event::Peer { from, .. })) =
            self.inbox.try_send(Event::Peer { from, msg })
        {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                crate::log_line!(
                    "-",
                    "inbox full: {n} peer message(s) dropped so far (the last from {from})"
                );
            }
        }
    }

    /// Peer messages dropped so far because the inbox was full.
    pub fn peer_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Asks the thread to stop, waiting for room in the inbox.
    pub fn stop(&self) {
        let _ = self.inbox.send(Event::Shutdown);
    }

    fn ask<T>(&self, event: impl FnOnce(oneshot::Sender<T>) -> Event<M>) -> Asked<T> {
        let (tx, rx) = oneshot::channel();
        if self.clients.fetch_add(1, Ordering::AcqRel) >= self.client_bound {
            self.clients.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Overloaded);
        }
        match self.inbox.try_send(event(tx)) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.clients.fetch_sub(1, Ordering::AcqRel);
                Err(match e {
                    TrySendError::Full(_) => Refused::Overloaded,
                    TrySendError::Disconnected(_) => Refused::Stopped,
                })
            }
        }
    }
}

impl<M: Send> Consensus for Handle<M> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat() -> u8 {
        1
    }

    #[test]
    fn clients_fill_only_half_the_inbox_and_peers_keep_the_rest() {
        let (handle, inbox) = Handle::<u8>::channel(4);
        assert!(handle.status().is_ok());
        assert!(handle.status().is_ok());
        assert!(matches!(handle.status(), Err(Refused::Overloaded)));
        handle.deliver("n2".to_string(), heartbeat());
        handle.deliver("n2".to_string(), heartbeat());
        assert_eq!(handle.peer_dropped(), 0);
        handle.deliver("n2".to_string(), heartbeat());
        assert_eq!(handle.peer_dropped(), 1);
        // Taking a client request frees a client place, not before.
        let mut clients = 0;
        while let Some(ev) = inbox.try_recv() {
            clients += usize::from(!matches!(ev, Event::Peer { .. }));
        }
        assert_eq!(clients, 2);
        assert!(handle.status().is_ok());
    }
}
