//! Raft: leader election (with pre-vote), log replication, commitment, snapshots,
//! single-server membership changes and ReadIndex reads, driven by one thread
//! per node.
//!
//! The thread owns all Raft state and the state machine. It takes events (peer
//! messages, client proposals and reads) from a bounded inbox, handles every event
//! already queued, then flushes once: one fsync for the whole batch (group commit),
//! replies that had to wait for that fsync, replication, commit and apply.

mod message;

pub use message::Message;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::bugs::{Bug, Bugs};
use crate::consensus::StateMachine;
use crate::log_line;
use crate::storage::{Log, Meta, Snapshot};
use crate::transport::{Envelope, Transport};
use crate::types::{Entry, Members, NodeId, Payload};

/// Entries per append message.
const MAX_BATCH: usize = 512;
/// Events handled before flushing, so a flood cannot starve fsync and replies.
const MAX_EVENTS_PER_FLUSH: usize = 4096;
/// Unsynced bytes the `no-fsync` bug lets pile up in memory before writing.
const NO_FSYNC_BUFFER: usize = 4 << 20;

/// How a request to the Raft thread ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Done; the state machine's result (or a read's value).
    Ok(Value),
    /// This node is not the leader; nothing was proposed.
    NotLeader(Option<NodeId>),
    /// Refused before proposing (definite).
    Unavailable(String),
    /// Proposed, but the outcome is unknown (leadership lost before commit).
    Indeterminate(String),
    /// Refused because what it names does not exist (definite; nothing proposed).
    NotFound(String),
}

/// The node's view of the cluster, for `/cluster/status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// `leader`, `follower` or `candidate`.
    pub role: &'static str,
    /// Current term.
    pub term: u64,
    /// Leader as far as this node knows.
    pub leader: Option<NodeId>,
    /// Highest index known committed.
    pub commit_index: u64,
    /// Highest index applied to the state machine.
    pub applied_index: u64,
    /// Last index in the log.
    pub last_index: u64,
    /// Members in the configuration in force.
    pub members: Vec<NodeId>,
    /// Planted bugs switched on.
    pub bugs: Vec<&'static str>,
}

/// Something for the Raft thread to do.
#[derive(Debug)]
pub enum Event {
    /// A message from a peer.
    Peer(Envelope),
    /// Replicate and apply a state-machine command.
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

/// Settings of one Raft node.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This node.
    pub id: NodeId,
    /// Where its state lives.
    pub data_dir: PathBuf,
    /// The initial members and their peer addresses (used until the log says otherwise).
    pub members: Members,
    /// Addresses this node uses for peers, overriding the log's (a proxy per link).
    pub peer_addrs: BTreeMap<NodeId, String>,
    /// Election timeout; the actual one is random in [t, 2t].
    pub election_timeout: Duration,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Applied entries between snapshots.
    pub snapshot_every: u64,
    /// Planted bugs.
    pub bugs: Bugs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Follower,
    /// Asking for pre-votes; becomes a candidate once a majority would vote.
    PreCandidate,
    Candidate,
    Leader,
}

struct PendingRead {
    seq: u64,
    index: u64,
    query: Value,
    reply: oneshot::Sender<Reply>,
}

struct Peer {
    next: u64,
    matched: u64,
    last_ack: Instant,
    progress_at: Instant,
    acked_seq: u64,
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
        let snapshot = Snapshot::load(&cfg.data_dir)?;
        let (si, st) = snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.last_index, s.last_term));
        if let Some(s) = &snapshot {
            sm.restore(&s.data).map_err(anyhow::Error::msg)?;
        }
        let log = Log::open(&cfg.data_dir, si, st)?;
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
            raft.cfg.id,
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
    pub fn run(mut self, inbox: Receiver<Event>) {
        loop {
            let now = Instant::now();
            let wait = self.next_deadline().saturating_duration_since(now);
            match inbox.recv_timeout(wait) {
                Ok(Event::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(ev) => {
                    self.handle(ev);
                    for _ in 0..MAX_EVENTS_PER_FLUSH {
                        match inbox.try_recv() {
                            Ok(Event::Shutdown) => return,
                            Ok(ev) => self.handle(ev),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.tick(Instant::now());
            if let Err(e) = self.flush() {
                // A node that cannot persist must not acknowledge anything.
                log_line!(self.cfg.id, "storage failure: {e}; stopping");
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
            log_line!(self.cfg.id, "cannot save term and vote: {e}; stopping");
            std::process::exit(70);
        }
    }

    /// Membership in force: the latest config entry in the log, else the snapshot's,
    /// else the configured one. After a truncation removed an uncommitted change,
    /// this rolls the node back to the configuration it came from (Raft thesis 4.1).
    fn recompute_members(&mut self) {
        let from_log = self.log.iter().rev().find_map(|e| match &e.payload {
            Payload::Config { members } => Some(members.clone()),
            _ => None,
        });
        let known = from_log.or_else(|| {
            self.snapshot
                .as_ref()
                .map(|s| s.members.clone())
                .filter(|m| !m.is_empty())
        });
        match known {
            Some(m) => self.members = m,
            // Planted: the removed change stays in force.
            None if self.cfg.bugs.has(Bug::KeepConfigOnTruncate) => {}
            None => self.members = self.cfg.members.clone(),
        }
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        if term > self.meta.term {
            self.meta.term = term;
            self.meta.voted_for = None;
            self.save_meta();
        }
        if self.role == Role::Leader {
            log_line!(self.cfg.id, "stepping down in term {}", self.meta.term);
            for (_, (_, reply)) in std::mem::take(&mut self.waiters) {
                let _ = reply.send(Reply::Indeterminate("leadership lost before commit".into()));
            }
            for r in std::mem::take(&mut self.reads) {
                let _ = r.reply.send(Reply::NotLeader(None));
            }
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
    }

    /// Accepts `leader` of `term` (not older than ours) as the current leader.
    fn follow(&mut self, leader: &NodeId, term: u64, now: Instant) {
        if term > self.meta.term || self.role != Role::Follower {
            self.become_follower(term, Some(leader.clone()));
        }
        self.leader = Some(leader.clone());
        self.leader_contact = Some(now);
        self.reset_election_timer(now);
    }

    /// Asks whether a majority would vote for us in the next term before
    /// raising it; our term and vote stay as they are.
    fn start_pre_vote(&mut self, now: Instant) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes = BTreeSet::from([self.cfg.id.clone()]);
        self.reset_election_timer(now);
        if self.votes.len() >= self.quorum() {
            self.start_election(now);
            return;
        }
        let msg = Message::PreVote {
            term: self.meta.term + 1,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
        };
        for peer in self.members.keys().filter(|p| **p != self.cfg.id) {
            self.send(peer, msg.clone());
        }
    }

    fn start_election(&mut self, now: Instant) {
        self.meta.term += 1;
        self.meta.voted_for = Some(self.cfg.id.clone());
        self.save_meta();
        self.role = Role::Candidate;
        self.leader = None;
        self.votes = BTreeSet::from([self.cfg.id.clone()]);
        self.reset_election_timer(now);
        log_line!(self.cfg.id, "campaigning in term {}", self.meta.term);
        let msg = Message::Vote {
            term: self.meta.term,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
        };
        for peer in self.members.keys().filter(|p| **p != self.cfg.id) {
            self.send(peer, msg.clone());
        }
        if self.votes.len() >= self.quorum() {
            self.become_leader(now);
        }
    }

    fn become_leader(&mut self, now: Instant) {
        log_line!(self.cfg.id, "leader in term {}", self.meta.term);
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id.clone());
        let next = self.log.last_index() + 1;
        self.peers = self
            .members
            .keys()
            .filter(|p| **p != self.cfg.id)
            .map(|p| (p.clone(), Peer::new(next, now)))
            .collect();
        self.append_local(Payload::Noop);
        self.term_start = self.log.last_index();
        self.heartbeat_due = now;
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
            Event::Peer(env) => self.on_message(env.from, env.msg, now),
            Event::Propose { command, reply } => {
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
            Event::Read { query, reply } => {
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
            Event::Join { id, addr, reply } => {
                if let Some(refusal) = self.refuse_config_change() {
                    let _ = reply.send(refusal);
                    return;
                }
                if self.members.get(&id) == Some(&addr) {
                    let _ = reply.send(Reply::Ok(Value::Null));
                    return;
                }
                let mut members = self.members.clone();
                members.insert(id.clone(), addr);
                self.change_members(members, reply, now);
            }
            Event::Leave { id, reply } => {
                if let Some(refusal) = self.refuse_config_change() {
                    let _ = reply.send(refusal);
                    return;
                }
                if !self.members.contains_key(&id) {
                    let _ = reply.send(Reply::NotFound(format!(
                        "`{id}` is not a member (members: {})",
                        self.members.keys().cloned().collect::<Vec<_>>().join(", ")
                    )));
                    return;
                }
                let mut members = self.members.clone();
                members.remove(&id);
                if members.is_empty() {
                    let _ = reply.send(Reply::Unavailable("cannot remove the last member".into()));
                    return;
                }
                self.change_members(members, reply, now);
            }
            Event::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Event::Shutdown => {}
        }
    }

    fn refuse_config_change(&self) -> Option<Reply> {
        if self.role != Role::Leader {
            return Some(Reply::NotLeader(self.leader.clone()));
        }
        let pending = self
            .log
            .iter()
            .rev()
            .take_while(|e| e.index > self.commit)
            .any(|e| matches!(e.payload, Payload::Config { .. }));
        if pending || self.commit < self.term_start {
            return Some(Reply::Unavailable(
                "a membership change is in progress; retry".into(),
            ));
        }
        None
    }

    fn change_members(&mut self, members: Members, reply: oneshot::Sender<Reply>, now: Instant) {
        log_line!(
            self.cfg.id,
            "membership change to {:?}",
            members.keys().collect::<Vec<_>>()
        );
        let index = self.append_local(Payload::Config {
            members: members.clone(),
        });
        self.waiters.insert(index, (self.meta.term, reply));
        self.apply_membership(members, now);
    }

    fn apply_membership(&mut self, members: Members, now: Instant) {
        let next = self.log.last_index();
        for id in members.keys() {
            if *id != self.cfg.id && !self.peers.contains_key(id) {
                self.peers.insert(id.clone(), Peer::new(next, now));
            }
        }
        let gone: Vec<NodeId> = self
            .peers
            .keys()
            .filter(|p| !members.contains_key(*p))
            .cloned()
            .collect();
        for p in gone {
            self.peers.remove(&p);
            self.transport.forget(&p);
        }
        self.members = members;
    }

    fn status(&self) -> Status {
        Status {
            id: self.cfg.id.clone(),
            role: match self.role {
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
            members: self.members.keys().cloned().collect(),
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
                if !granted && term > self.meta.term {
                    // Refused by a node further on: catch up with its term.
                    self.become_follower(term, None);
                    return;
                }
                if self.role == Role::PreCandidate
                    && term == self.meta.term + 1
                    && granted
                    && self.members.contains_key(&from)
                {
                    self.votes.insert(from);
                    if self.votes.len() >= self.quorum() {
                        self.start_election(now);
                    }
                }
            }
            Message::VoteReply { term, granted } => {
                if term > self.meta.term {
                    self.become_follower(term, None);
                    return;
                }
                if self.role == Role::Candidate
                    && term == self.meta.term
                    && granted
                    && self.members.contains_key(&from)
                {
                    self.votes.insert(from);
                    if self.votes.len() >= self.quorum() {
                        self.become_leader(now);
                    }
                }
            }
            Message::Append {
                term,
                prev_index,
                prev_term,
                entries,
                commit,
                read_seq,
            } => self.on_append(
                from, term, prev_index, prev_term, entries, commit, read_seq, now,
            ),
            Message::AppendReply {
                term,
                success,
                match_index,
                hint,
                read_seq,
            } => {
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
                    p.next = hint.min(p.next).max(p.matched + 1);
                    self.send_append(&from, read_seq);
                }
            }
            Message::Snapshot {
                term,
                last_index,
                last_term,
                members,
                data,
            } => self.on_snapshot(from, term, last_index, last_term, members, data, now),
            Message::SnapshotReply { term, last_index } => {
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
            // The transport hands cache traffic to the cache service.
            Message::CacheCall { .. } | Message::CacheAnswer { .. } => {}
        }
    }

    /// True while this node leads, or heard from a leader within an election
    /// timeout: it then refuses campaigns, so a node returning from a partition
    /// cannot depose a healthy leader.
    fn leader_alive(&self, now: Instant) -> bool {
        match self.role {
            Role::Leader => true,
            _ => {
                self.leader.is_some()
                    && self
                        .leader_contact
                        .is_some_and(|t| now.duration_since(t) < self.cfg.election_timeout)
            }
        }
    }

    /// Whether a candidate whose log ends at (`last_index`, `last_term`) is at
    /// least as up to date as ours (the election restriction).
    fn up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.log.last_term()
            || (last_term == self.log.last_term() && last_index >= self.log.last_index())
    }

    /// Answers a pre-vote without touching our term or vote: yes when `term` is
    /// newer than ours, the log is up to date and no leader is alive.
    fn on_pre_vote(
        &mut self,
        from: NodeId,
        term: u64,
        last_index: u64,
        last_term: u64,
        now: Instant,
    ) {
        let granted = term > self.meta.term
            && self.up_to_date(last_index, last_term)
            && !self.leader_alive(now);
        let term = if granted { term } else { self.meta.term };
        self.send(&from, Message::PreVoteReply { term, granted });
    }

    fn on_vote(&mut self, from: NodeId, term: u64, last_index: u64, last_term: u64, now: Instant) {
        let leader_alive = self.leader_alive(now);
        if term > self.meta.term && leader_alive && self.leader.as_ref() != Some(&from) {
            self.send(
                &from,
                Message::VoteReply {
                    term: self.meta.term,
                    granted: false,
                },
            );
            return;
        }
        if term > self.meta.term {
            self.become_follower(term, None);
        }
        let up_to_date = self.up_to_date(last_index, last_term);
        let free = match &self.meta.voted_for {
            None => true,
            Some(v) => *v == from || self.cfg.bugs.has(Bug::VoteTwice),
        };
        let granted = term == self.meta.term && free && up_to_date && self.role != Role::Leader;
        if granted {
            self.meta.voted_for = Some(from.clone());
            self.save_meta();
            self.reset_election_timer(now);
        }
        self.send(
            &from,
            Message::VoteReply {
                term: self.meta.term,
                granted,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn on_append(
        &mut self,
        from: NodeId,
        term: u64,
        mut prev_index: u64,
        mut prev_term: u64,
        mut entries: Vec<Entry>,
        commit: u64,
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
                },
            );
            return;
        }
        self.follow(&from, term, now);

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
                            self.cfg.id,
                            "refusing to truncate committed entry {} (commit {}) for {from} in term {term}",
                            entry.index,
                            self.commit
                        );
                        return;
                    }
                    if let Err(e) = self.log.truncate_from(entry.index) {
                        log_line!(self.cfg.id, "cannot truncate the log: {e}; stopping");
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
            },
        ));
    }

    #[allow(clippy::too_many_arguments)]
    fn on_snapshot(
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

    fn send_append(&mut self, to: &NodeId, read_seq: u64) {
        let Some(p) = self.peers.get(to) else { return };
        let next = p.next;
        if next <= self.log.snapshot_index() {
            if let Some(s) = &self.snapshot {
                let msg = Message::Snapshot {
                    term: self.meta.term,
                    last_index: s.last_index,
                    last_term: s.last_term,
                    members: s.members.clone(),
                    data: s.data.clone(),
                };
                let last = s.last_index;
                self.send(to, msg);
                if let Some(p) = self.peers.get_mut(to) {
                    p.next = last + 1;
                }
            }
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
            },
        );
        if let Some(p) = self.peers.get_mut(to) {
            p.next = next + sent;
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
                            log_line!(self.cfg.id, "lost contact with a majority");
                            self.become_follower(self.meta.term, None);
                            self.reset_election_timer(now);
                            return;
                        }
                    }
                    let peers: Vec<NodeId> = self.peers.keys().cloned().collect();
                    for peer in peers {
                        if let Some(p) = self.peers.get_mut(&peer) {
                            // No progress for a while: resend from what is known to match.
                            if now.duration_since(p.progress_at) > self.cfg.heartbeat
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
                    if self.members.contains_key(&self.cfg.id) {
                        self.start_pre_vote(now);
                    } else {
                        self.reset_election_timer(now);
                    }
                }
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
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
        if self.applied >= self.log.snapshot_index() + self.cfg.snapshot_every {
            self.take_snapshot()?;
        }
        Ok(())
    }

    fn advance_commit(&mut self) {
        let mut matched: Vec<u64> = self
            .members
            .keys()
            .map(|m| {
                if *m == self.cfg.id {
                    self.durable_index()
                } else {
                    self.peers.get(m).map_or(0, |p| p.matched)
                }
            })
            .collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&n) = matched.get(self.quorum() - 1) else {
            return;
        };
        if n > self.commit && self.log.term_at(n) == Some(self.meta.term) {
            self.commit = n;
        }
        if self.cfg.bugs.has(Bug::EarlyAck) {
            // Acknowledge writes the leader alone holds, as if they were committed.
            let durable = self.durable_index();
            let early: Vec<u64> = self.waiters.range(..=durable).map(|(i, _)| *i).collect();
            for i in early {
                let is_write = matches!(
                    self.log.entry(i).map(|e| &e.payload),
                    Some(Payload::Command { command }) if command.get("op").and_then(Value::as_str) != Some("cas")
                );
                if is_write {
                    if let Some((_, reply)) = self.waiters.remove(&i) {
                        let _ = reply.send(Reply::Ok(serde_json::json!({"ok": true})));
                    }
                }
            }
        }
    }

    fn apply(&mut self, now: Instant) {
        while self.applied < self.commit {
            let index = self.applied + 1;
            let Some(entry) = self.log.entry(index).cloned() else {
                break;
            };
            let output = match &entry.payload {
                Payload::Command { command } => self.sm.apply(command),
                Payload::Noop => Value::Null,
                Payload::Config { members } => {
                    if self.role == Role::Leader && !members.contains_key(&self.cfg.id) {
                        log_line!(self.cfg.id, "removed from the cluster; stepping down");
                        self.applied = index;
                        // The removal committed: say so before stepping down
                        // answers every other waiter "indeterminate".
                        if let Some((_, reply)) = self.waiters.remove(&index) {
                            let _ = reply.send(Reply::Ok(Value::Null));
                        }
                        self.become_follower(self.meta.term, None);
                        self.reset_election_timer(now);
                        continue;
                    }
                    Value::Null
                }
            };
            self.applied = index;
            if let Some((term, reply)) = self.waiters.remove(&index) {
                let answer = if term == entry.term {
                    Reply::Ok(output)
                } else {
                    Reply::Unavailable("the proposal was overwritten by a new leader".into())
                };
                let _ = reply.send(answer);
            }
        }
    }

    fn serve_reads(&mut self) {
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

    fn take_snapshot(&mut self) -> std::io::Result<()> {
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
}
