//! Messages between members, outside consensus: `POST /cluster/send` hands one
//! message to one member's inbox, `POST /cluster/broadcast` to every member's.
//!
//! A delivery is retried (exponential backoff with jitter) until the receiver
//! acknowledges it, which it does only once the message is in its inbox on disk;
//! the receiver keeps the ids it delivered, so a repeat is acknowledged but not
//! delivered again. Broadcast is eager reliable broadcast: every member that
//! delivers a broadcast for the first time relays it to every other member, so
//! once any member that stays up has it, all members that stay up get it, even
//! if the origin dies halfway through its own sends.
//!
//! The traffic is [`MailMessage`]s on the peer links ([`Wire::Mail`]), so
//! partitions, losses and delays hit it as they hit consensus.

pub mod api;
pub mod inbox;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::bugs::{Bug, Bugs};
use crate::log_line;
use crate::transport::{Transport, Wire};
use crate::types::NodeId;
use inbox::{Delivered, Inbox};

/// First wait for an acknowledgement before sending again.
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// Longest wait between two sends of one message.
const MAX_RETRY: Duration = Duration::from_secs(1);
/// How long a member keeps relaying a broadcast to a member that does not
/// acknowledge it (down, cut off): long enough to outlast the faults of a run.
const RELAY_FOR: Duration = Duration::from_secs(300);

/// Whether a message went to one member or to all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `POST /cluster/send`.
    Send,
    /// `POST /cluster/broadcast`.
    Broadcast,
}

/// A message as it travels and as inboxes keep it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Letter {
    /// Names the message cluster-wide: one id is delivered at most once per inbox.
    pub id: String,
    /// To one member or to all.
    pub kind: Kind,
    /// The member a client asked to send it.
    pub origin: NodeId,
    /// What the client sent.
    pub body: Value,
}

/// Mailbox traffic between two members.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum MailMessage {
    /// Please deliver this.
    Deliver {
        /// The message.
        letter: Letter,
    },
    /// Message `id` is in my inbox (delivered now or before).
    Ack {
        /// The message's id.
        id: String,
    },
}

/// Counters `/cluster/state` shows.
#[derive(Default)]
struct Counters {
    sends: AtomicU64,
    acked: AtomicU64,
    given_up: AtomicU64,
    received: AtomicU64,
    repeats: AtomicU64,
    pending: AtomicU64,
}

/// Who waits for member `to`'s acknowledgement of message `id`, by (id, to).
type Waiters = Vec<oneshot::Sender<()>>;

/// A delivery in flight (counted in `pending` while it lives).
struct Busy(Arc<Mailbox>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.counters.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One member's mailbox: its inbox and its deliveries in flight.
pub struct Mailbox {
    id: NodeId,
    peers: BTreeMap<NodeId, String>,
    transport: Arc<Transport>,
    inbox: Mutex<Inbox>,
    waiting: Mutex<HashMap<(String, NodeId), Waiters>>,
    counters: Counters,
    next_id: AtomicU64,
    /// Makes this incarnation's generated ids differ from an earlier one's.
    boot: u64,
    dedup: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A wait between `0.5 * cap` and `cap`, drawn from the message and attempt so
/// members retrying the same message do not march in step.
fn jittered(cap: Duration, id: &str, attempt: u32) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain(attempt.to_le_bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let share = 0.5 + 0.5 * (h % 1000) as f64 / 1000.0;
    cap.mul_f64(share)
}

impl Mailbox {
    /// The mailbox of member `id`, its inbox in `dir`, reaching `peers` (the
    /// other members, by id, at their peer addresses) through `transport`.
    pub fn open(
        id: NodeId,
        dir: &Path,
        peers: BTreeMap<NodeId, String>,
        transport: Arc<Transport>,
        bugs: &Bugs,
    ) -> Result<Mailbox, String> {
        let inbox = Inbox::open(dir, !bugs.has(Bug::VolatileInbox))?;
        Ok(Mailbox {
            id,
            peers,
            transport,
            inbox: Mutex::new(inbox),
            waiting: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            next_id: AtomicU64::new(0),
            boot: now_ms(),
            dedup: !bugs.has(Bug::DeliverTwice),
        })
    }

    /// This member's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// Every member, this one included.
    pub fn members(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self.peers.keys().cloned().collect();
        all.push(self.id.clone());
        all.sort();
        all
    }

    /// Whether `who` is a member.
    pub fn is_member(&self, who: &str) -> bool {
        who == self.id || self.peers.contains_key(who)
    }

    /// A fresh message id.
    pub fn fresh_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}-{}-{n}", self.id, self.boot)
    }

    /// Delivers into this member's own inbox (durably) from `from`; answers
    /// whether this member had not seen it before. Blocks on the disk.
    fn deliver_here(&self, letter: &Letter, from: &str) -> Result<bool, String> {
        let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        let first = !inbox.has(&letter.id);
        inbox.deliver(letter, from, now_ms(), self.dedup)?;
        Ok(first)
    }

    /// [`Mailbox::deliver_here`] off the async threads.
    async fn deliver_here_async(
        self: &Arc<Self>,
        letter: Letter,
        from: NodeId,
    ) -> Result<bool, String> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.deliver_here(&letter, &from))
            .await
            .map_err(|e| format!("delivery task failed: {e}"))?
    }

    /// Sends `letter` to `to` until it acknowledges or `deadline` passes;
    /// answers whether it acknowledged.
    pub async fn deliver_to(
        self: &Arc<Self>,
        to: &NodeId,
        letter: &Letter,
        deadline: Instant,
    ) -> bool {
        let Some(addr) = self.peers.get(to).cloned() else {
            return false;
        };
        let key = (letter.id.clone(), to.clone());
        let mut attempt = 0u32;
        let mut cap = FIRST_RETRY;
        let acked = loop {
            let (tx, rx) = oneshot::channel();
            self.waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(key.clone())
                .or_default()
                .push(tx);
            self.counters.sends.fetch_add(1, Ordering::Relaxed);
            self.transport.send(
                to,
                &addr,
                Wire::Mail(MailMessage::Deliver {
                    letter: letter.clone(),
                }),
            );
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = jittered(cap, &letter.id, attempt).min(left);
            if let Ok(Ok(())) = tokio::time::timeout(wait, rx).await {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            attempt += 1;
            cap = (cap * 2).min(MAX_RETRY);
        };
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        let counter = if acked {
            &self.counters.acked
        } else {
            &self.counters.given_up
        };
        counter.fetch_add(1, Ordering::Relaxed);
        acked
    }

    /// Relays a broadcast to every member but this one and `skip`, each in
    /// the background until it acknowledges (or [`RELAY_FOR`] passes); the
    /// receivers answer through `acks` as they acknowledge.
    fn relay(
        self: &Arc<Self>,
        letter: &Letter,
        skip: &[&str],
        acks: Option<tokio::sync::mpsc::UnboundedSender<NodeId>>,
    ) {
        let deadline = Instant::now() + RELAY_FOR;
        for to in self.peers.keys() {
            if skip.contains(&to.as_str()) {
                continue;
            }
            let (me, to, letter, acks) = (self.clone(), to.clone(), letter.clone(), acks.clone());
            let busy = self.busy();
            tokio::spawn(async move {
                let _busy = busy;
                if me.deliver_to(&to, &letter, deadline).await {
                    if let Some(acks) = acks {
                        let _ = acks.send(to);
                    }
                } else {
                    log_line!(me.id, "broadcast {}: {to} never acknowledged it", letter.id);
                }
            });
        }
    }

    /// Sends `body` to member `to` as message `id`; answers whether `to`
    /// acknowledged it before `deadline`.
    pub async fn send(
        self: &Arc<Self>,
        id: String,
        to: &NodeId,
        body: Value,
        deadline: Instant,
    ) -> Result<bool, String> {
        let letter = Letter {
            id,
            kind: Kind::Send,
            origin: self.id.clone(),
            body,
        };
        let _busy = self.busy();
        if *to == self.id {
            self.deliver_here_async(letter, self.id.clone()).await?;
            return Ok(true);
        }
        Ok(self.deliver_to(to, &letter, deadline).await)
    }

    /// Broadcasts `body` as message `id`: delivered here first, then relayed
    /// to every member until each acknowledges. Answers the members that
    /// acknowledged before `deadline` (this one included); the others keep
    /// being sent to in the background.
    pub async fn broadcast(
        self: &Arc<Self>,
        id: String,
        body: Value,
        deadline: Instant,
    ) -> Result<Vec<NodeId>, String> {
        let letter = Letter {
            id,
            kind: Kind::Broadcast,
            origin: self.id.clone(),
            body,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // A task of its own, so a client that hangs up (and so cancels this
        // handler) cannot leave the message delivered here but never relayed.
        let me = self.clone();
        tokio::spawn(async move {
            me.deliver_here_async(letter.clone(), me.id.clone()).await?;
            me.relay(&letter, &[], Some(tx));
            Ok::<(), String>(())
        })
        .await
        .map_err(|e| format!("broadcast task failed: {e}"))??;
        let mut acked = vec![self.id.clone()];
        while acked.len() < self.peers.len() + 1 {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some(who)) => acked.push(who),
                _ => break,
            }
        }
        acked.sort();
        Ok(acked)
    }

    /// Handles a message from member `from`.
    pub fn receive(self: &Arc<Self>, from: NodeId, msg: MailMessage) {
        match msg {
            MailMessage::Ack { id } => {
                let waiters = self
                    .waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&(id, from));
                for w in waiters.into_iter().flatten() {
                    let _ = w.send(());
                }
            }
            MailMessage::Deliver { letter } => {
                let Some(addr) = self.peers.get(&from).cloned() else {
                    log_line!(self.id, "dropping a message from {from}, not a member");
                    return;
                };
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                let me = self.clone();
                let busy = self.busy();
                tokio::spawn(async move {
                    // Relays start (and count as busy) before this ends, so
                    // the mailbox never looks idle between the two.
                    let _busy = busy;
                    let id = letter.id.clone();
                    let first = match me.deliver_here_async(letter.clone(), from.clone()).await {
                        Ok(first) => first,
                        Err(e) => {
                            // Not acknowledged: the sender tries again.
                            log_line!(me.id, "cannot deliver {id}: {e}");
                            return;
                        }
                    };
                    if !first {
                        me.counters.repeats.fetch_add(1, Ordering::Relaxed);
                    }
                    me.transport
                        .send(&from, &addr, Wire::Mail(MailMessage::Ack { id }));
                    if first && letter.kind == Kind::Broadcast {
                        let origin = letter.origin.clone();
                        me.relay(&letter, &[from.as_str(), origin.as_str()], None);
                    }
                });
            }
        }
    }

    /// Marks a delivery in flight until the guard is dropped.
    fn busy(self: &Arc<Self>) -> Busy {
        self.counters.pending.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Up to `max` deliveries of this inbox from position `from`, and its length.
    pub fn read(&self, from: u64, max: usize) -> (Vec<Delivered>, usize) {
        let inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        (inbox.read(from, max).to_vec(), inbox.len())
    }

    /// The figures `/cluster/state` shows.
    pub fn stats(&self) -> Value {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner()).len();
        json!({
            "inbox": inbox,
            "pending": get(&c.pending),
            "sends": get(&c.sends),
            "acknowledged": get(&c.acked),
            "given_up": get(&c.given_up),
            "received": get(&c.received),
            "repeats": get(&c.repeats),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_waits_are_jittered_within_half_to_the_cap() {
        let cap = Duration::from_millis(400);
        let waits: Vec<Duration> = (0..20).map(|a| jittered(cap, "m1", a)).collect();
        assert!(waits.iter().all(|w| *w >= cap / 2 && *w <= cap));
        assert!(waits.iter().any(|w| *w != waits[0]), "{waits:?}");
    }
}
