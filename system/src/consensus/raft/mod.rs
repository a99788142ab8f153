//! Raft: leader election (with pre-vote), log replication, commitment, snapshots,
//! single-server membership changes and ReadIndex reads, driven by one thread
//! per node.
//!
//! The thread owns all Raft state and the state machine. It takes events (peer
//! messages, client proposals and reads) from a bounded inbox, handles every event
//! already queued, then flushes once: one fsync for the whole batch (group commit),
//! replies that had to wait for that fsync, replication, commit and apply.
//!
//! This file holds the state, the run loop, the timers and the dispatch of events
//! and messages; each concern has a file: `election.rs` (pre-vote, vote),
//! `replication.rs` (propose, append, flush), `commit.rs` (advance commit, apply),
//! `snapshot.rs`, `membership.rs`, `read_index.rs` and `message.rs`.

mod commit;
mod election;
mod membership;
mod message;
mod read_index;
mod replication;
mod snapshot;

pub use message::Message;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::bugs::Bug;
use crate::consensus::{Reply, StateMachine, Status};
use crate::log_line;
use crate::storage::{Log, Meta, Snapshot};
use crate::transport::Transport;
use crate::types::{Entry, Members, NodeId, Payload};

use read_index::PendingRead;

/// Events handled before flushing, so a flood cannot starve fsync and replies.
const MAX_EVENTS_PER_FLUSH: usize = 4096;

/// Something for the Raft thread to do.
pub type Event = crate::consensus::inbox::Event<Message>;
/// A cloneable handle on one node's Raft thread.
pub type RaftHandle = crate::consensus::inbox::Handle<Message>;

/// Settings of one Raft node.
pub use crate::consensus::Config as RaftConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Follower,
    /// Asking for pre-votes; becomes a candidate once a majority would vote.
    PreCandidate,
    Candidate,
    Leader,
}

struct Peer {
    next: u64,
    matched: u64,
    last_ack: Instant,
    progress_at: Instant,
    acked_seq: u64,
    /// The snapshot being sent to this peer: its last index, the offset of the
    /// next chunk, and when a chunk last went out (one chunk is in flight at a
    /// time, and it is sent again only after a quiet spell, never on every
    /// refused append).
    sending: Option<(u64, u64, Instant)>,
}

impl Peer {
    /// A peer the leader knows nothing about yet: try from `next`.
    fn new(next: u64, now: Instant) -> Self {
        Peer {
            next,
            matched: 0,
            last_ack: now,
            progress_at: now,
            acked_seq: 0,
            sending: None,
        }
    }
}

/// One node's Raft state and state machine.
pub struct Raft<S: StateMachine> {
    cfg: RaftConfig,
    meta: Meta,
    log: Log,
    sm: S,
    snapshot: Option<Snapshot>,
    /// The snapshot's state as JSON text, made once per snapshot for sending.
    snapshot_text: Option<Arc<str>>,
    /// A snapshot arriving in chunks: its last index and term, and the text so far.
    incoming: Option<(u64, u64, String)>,
    /// The committed configuration that dropped this node, once a member told it.
    removed: Option<Members>,
    role: Role,
    leader: Option<NodeId>,
    leader_contact: Option<Instant>,
    members: Members,
    commit: u64,
    applied: u64,
    election_deadline: Instant,
    heartbeat_due: Instant,
    votes: BTreeSet<NodeId>,
    peers: BTreeMap<NodeId, Peer>,
    read_seq: u64,
    read_round_sent: u64,
    reads: Vec<PendingRead>,
    term_start: u64,
    waiters: BTreeMap<u64, (u64, oneshot::Sender<Reply>)>,
    after_sync: Vec<(NodeId, Message)>,
    transport: Arc<Transport>,
    rng: u64,
    last_buffer_write: Instant,
}

impl<S: StateMachine> Raft<S> {
    /// Recovers a node from its data directory (or starts it fresh).
    pub fn open(cfg: RaftConfig, mut sm: S, transport: Arc<Transport>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        let meta = Meta::load(&cfg.data_dir)?;
        let (snapshot, lost_snapshot) = match Snapshot::load(&cfg.data_dir) {
            Ok(s) => (s, false),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                // Its state cannot be trusted and the log behind it is gone:
                // start empty, keep the file for inspection, and take no part
                // in elections until a leader has restored what was lost.
                log_line!(cfg.who(), "snapshot damaged ({e}); starting without it");
                // The marker first: a crash between the two must not leave a
                // node with neither its snapshot nor a record of losing it.
                Log::mark_unknown_damage(&cfg.data_dir)?;
                let path = cfg.data_dir.join("snapshot.json");
                std::fs::rename(&path, path.with_extension("json.damaged"))?;
                (None, true)
            }
            Err(e) => return Err(e.into()),
        };
        let (si, st) = snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.last_index, s.last_term));
        if let Some(s) = &snapshot {
            sm.restore(&s.data).map_err(anyhow::Error::msg)?;
        }
        let log = Log::open(&cfg.data_dir, si, st)?;
        debug_assert!(!lost_snapshot || log.damaged().is_some());
        if let Some(d) = log.damaged() {
            log_line!(
                cfg.who(),
                "log damaged: entries up to {} lost; not voting until a leader restores them",
                if d == u64::MAX {
                    "an unknown index".to_string()
                } else {
                    d.to_string()
                }
            );
        }
        let now = Instant::now();
        let seed = cfg.id.bytes().fold(
            now.elapsed().as_nanos() as u64 ^ 0x9e37_79b9_7f4a_7c15,
            |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3),
        ) ^ std::process::id() as u64;
        let mut raft = Raft {
            members: cfg.members.clone(),
            cfg,
            meta,
            log,
            sm,
            snapshot,
            snapshot_text: None,
            incoming: None,
            removed: None,
            role: Role::Follower,
            leader: None,
            leader_contact: None,
            commit: si,
            applied: si,
            election_deadline: now,
            heartbeat_due: now,
            votes: BTreeSet::new(),
            peers: BTreeMap::new(),
            read_seq: 0,
            read_round_sent: 0,
            reads: Vec::new(),
            term_start: 0,
            waiters: BTreeMap::new(),
            after_sync: Vec::new(),
            transport,
            rng: seed | 1,
            last_buffer_write: now,
        };
        raft.recompute_members();
        raft.reset_election_timer(now);
        log_line!(
            raft.cfg.who(),
            "recovered: term {}, log {}..={}, snapshot at {}, members {:?}, bugs {:?}",
            raft.meta.term,
            si + 1,
            raft.log.last_index(),
            si,
            raft.members.keys().collect::<Vec<_>>(),
            raft.cfg.bugs.names()
        );
        Ok(raft)
    }

    /// Runs until [`Event::Shutdown`] or the inbox closes.
    pub fn run(mut self, inbox: crate::consensus::inbox::Inbox<Message>) {
        loop {
            let now = Instant::now();
            let wait = self.next_deadline().saturating_duration_since(now);
            if !inbox.drain(wait, MAX_EVENTS_PER_FLUSH, |ev| self.handle(ev)) {
                return;
            }
            self.tick(Instant::now());
            if let Err(e) = self.flush() {
                // A node that cannot persist must not acknowledge anything.
                log_line!(self.cfg.who(), "storage failure: {e}; stopping");
                std::process::exit(70);
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        match self.role {
            Role::Leader => self.heartbeat_due,
            _ => self.election_deadline,
        }
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn reset_election_timer(&mut self, now: Instant) {
        let base = self.cfg.election_timeout.as_millis() as u64;
        let jitter = self.random() % base.max(1);
        self.election_deadline = now + Duration::from_millis(base + jitter);
    }

    fn quorum(&self) -> usize {
        self.members.len() / 2 + 1
    }

    fn addr_of(&self, peer: &NodeId) -> Option<String> {
        self.cfg
            .peer_addrs
            .get(peer)
            .or_else(|| self.members.get(peer))
            .cloned()
    }

    fn send(&self, to: &NodeId, msg: Message) {
        if let Some(addr) = self.addr_of(to) {
            self.transport.send(to, &addr, msg);
        }
    }

    fn durable_index(&self) -> u64 {
        if self.cfg.bugs.has(Bug::NoFsync) {
            self.log.last_index()
        } else {
            self.log.synced_index()
        }
    }

    fn save_meta(&mut self) {
        if let Err(e) = self
            .meta
            .save(&self.cfg.data_dir, !self.cfg.bugs.has(Bug::NoFsync))
        {
            log_line!(self.cfg.who(), "cannot save term and vote: {e}; stopping");
            std::process::exit(70);
        }
    }

    fn append_local(&mut self, payload: Payload) -> u64 {
        let index = self.log.last_index() + 1;
        self.log.append(Entry {
            index,
            term: self.meta.term,
            payload,
        });
        index
    }

    fn handle(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Peer { from, msg } => self.on_message(from, msg, now),
            Event::Propose { command, reply } => self.on_propose(command, reply),
            Event::Read { query, reply } => self.on_read(query, reply),
            Event::Join { id, addr, reply } => self.on_join(id, addr, reply, now),
            Event::Leave { id, reply } => self.on_leave(id, reply, now),
            Event::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Event::Shutdown => {}
        }
    }

    fn status(&self) -> Status {
        Status {
            id: self.cfg.id.clone(),
            role: match self.role {
                Role::Follower if self.removed.is_some() => "removed",
                Role::Leader => "leader",
                Role::Candidate => "candidate",
                Role::PreCandidate => "pre-candidate",
                Role::Follower => "follower",
            },
            term: self.meta.term,
            leader: self.leader.clone(),
            commit_index: self.commit,
            applied_index: self.applied,
            last_index: self.log.last_index(),
            members: self.members_in_force().keys().cloned().collect(),
            member_addrs: self
                .members_in_force()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            bugs: self.cfg.bugs.names(),
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Message, now: Instant) {
        match msg {
            Message::Vote {
                term,
                last_index,
                last_term,
            } => self.on_vote(from, term, last_index, last_term, now),
            Message::PreVote {
                term,
                last_index,
                last_term,
            } => self.on_pre_vote(from, term, last_index, last_term, now),
            Message::PreVoteReply { term, granted } => {
                self.on_pre_vote_reply(from, term, granted, now)
            }
            Message::VoteReply { term, granted } => self.on_vote_reply(from, term, granted, now),
            Message::Append {
                term,
                prev_index,
                prev_term,
                entries,
                commit,
                read_seq,
                leader_last,
            } => self.on_append(
                from,
                term,
                (prev_index, prev_term),
                entries,
                (commit, leader_last),
                read_seq,
                now,
            ),
            Message::AppendReply {
                term,
                success,
                match_index,
                hint,
                read_seq,
                lost,
            } => self.on_append_reply(from, term, success, match_index, hint, read_seq, lost, now),
            Message::Snapshot {
                term,
                last_index,
                last_term,
                members,
                offset,
                chunk,
                done,
                read_seq,
                leader_last,
            } => self.on_snapshot(
                from,
                snapshot::Chunk {
                    term,
                    last_index,
                    last_term,
                    members,
                    offset,
                    chunk,
                    done,
                    read_seq,
                    leader_last,
                },
                now,
            ),
            Message::SnapshotReply {
                term,
                last_index,
                offset,
                of_index,
                read_seq,
            } => self.on_snapshot_reply(from, term, last_index, (of_index, offset), read_seq, now),
            Message::Removed {
                term,
                members,
                version,
            } => self.on_removed(from, term, members, version),
        }
    }

    fn tick(&mut self, now: Instant) {
        match self.role {
            Role::Leader => {
                if now >= self.heartbeat_due {
                    self.heartbeat_due = now + self.cfg.heartbeat;
                    // Check quorum: a leader cut off from a majority steps down.
                    let mut acks: Vec<Instant> = self.peers.values().map(|p| p.last_ack).collect();
                    acks.sort_unstable_by(|a, b| b.cmp(a));
                    // A leader removing itself (the change not yet committed)
                    // is no voter: it needs acks from a whole quorum of peers,
                    // and steps down when cut off like any other leader.
                    let counts_self = self.members.contains_key(&self.cfg.id);
                    let needed = self.quorum().saturating_sub(counts_self as usize);
                    if needed > 0 {
                        let oldest = acks.get(needed - 1).copied().unwrap_or(now);
                        if now.duration_since(oldest) > self.cfg.election_timeout * 2 {
                            log_line!(self.cfg.who(), "lost contact with a majority");
                            self.become_follower(self.meta.term, None);
                            self.reset_election_timer(now);
                            return;
                        }
                    }
                    let peers: Vec<NodeId> = self.peers.keys().cloned().collect();
                    for peer in peers {
                        if let Some(p) = self.peers.get_mut(&peer) {
                            // No progress for two election timeouts: resend from what
                            // is known to match. Not sooner: under a long round trip
                            // (delay faults) the entries in flight are still coming,
                            // and a rewind every heartbeat resent up to 512 of them
                            // each time. A lost append shows sooner anyway, as a
                            // refused one whose hint rewinds the peer.
                            if now.duration_since(p.progress_at) > self.cfg.election_timeout * 2
                                && p.next > p.matched + 1
                            {
                                p.next = p.matched + 1;
                                p.progress_at = now;
                            }
                        }
                        self.send_append(&peer, self.read_seq);
                    }
                    self.read_round_sent = self.read_seq;
                }
            }
            _ => {
                if now >= self.election_deadline {
                    if self.members.contains_key(&self.cfg.id)
                        && self.removed.is_none()
                        && self.log.damaged().is_none()
                    {
                        self.start_pre_vote(now);
                    } else {
                        self.reset_election_timer(now);
                    }
                }
            }
        }
    }
}
