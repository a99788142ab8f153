//! Multi-Paxos (Lamport, "Paxos Made Simple"; van Renesse and Altinbuken,
//! "Paxos Made Moderately Complex"): a distinguished proposer with ballots, one
//! phase 1 per leadership for every open slot, phase 2 per slot (pipelined, and
//! batched per flush), learners told what is chosen, and leases-free linearizable
//! reads through a read round a majority confirms.
//!
//! Every node is proposer, acceptor and learner, driven by one thread like
//! Raft's: it takes every queued event, then flushes once (one fsync of the
//! acceptor journal for the whole batch, then the answers that waited on it).
//! Messages a node sends itself go through a loopback queue after the flush, so
//! its own acceptor is counted only once its promise or accept is durable.
//!
//! Membership is fixed at start (`join` and `leave` are refused). Files:
//! `acceptor.rs` (phase 1b and 2b, the journal), `leader.rs` (phase 1a and 2a,
//! reads, heartbeats, catch-up), `learner.rs` (chosen values, apply,
//! snapshots), `message.rs`.

mod acceptor;
mod leader;
mod learner;
mod message;

pub use message::{Accepted, Ballot, Message};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::consensus::inbox::{Event, Handle, Inbox};
use crate::consensus::{Config, Reply, StateMachine, Status};
use crate::log_line;
use crate::storage::{Journal, Snapshot};
use crate::transport::Transport;
use crate::types::{Members, NodeId, Payload};

use acceptor::Record;
use leader::{Campaign, Lead, PendingRead};

/// A cloneable handle on one node's Paxos thread.
pub type PaxosHandle = Handle<Message>;

/// Events handled before flushing, so a flood cannot starve fsync and replies.
const MAX_EVENTS_PER_FLUSH: usize = 4096;
/// The acceptor journal's file name in the data directory.
const JOURNAL: &str = "paxos.journal";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Follower,
    /// Running phase 1 for its own ballot.
    Candidate,
    Leader,
}

/// One node's Paxos state (proposer, acceptor, learner) and state machine.
pub struct Paxos<S: StateMachine> {
    cfg: Config,
    members: Members,
    sm: S,
    journal: Journal,
    /// The highest ballot this acceptor promised (durable before answering).
    promised: Ballot,
    /// What this acceptor accepted, by slot, above the snapshot.
    accepted: BTreeMap<u64, (Ballot, Payload)>,
    /// Values known chosen, by slot, above the snapshot (applied ones kept
    /// until compaction, to send to learners that are behind).
    chosen: BTreeMap<u64, Payload>,
    /// Last slot the snapshot covers.
    snapshot_index: u64,
    /// Every slot up to here is chosen and known here.
    commit: u64,
    applied: u64,
    /// The highest round seen in any ballot, so a new one outbids it.
    highest_round: u64,
    role: Role,
    leader: Option<NodeId>,
    leader_contact: Option<Instant>,
    election_deadline: Instant,
    heartbeat_due: Instant,
    campaign: Option<Campaign>,
    lead: Option<Lead>,
    /// Proposals waiting for their slot to be chosen and applied.
    waiters: BTreeMap<u64, (Payload, oneshot::Sender<Reply>)>,
    reads: Vec<PendingRead>,
    /// Snapshots arriving in chunks, by sender: the last slot and the text so far.
    incoming: BTreeMap<NodeId, (u64, String)>,
    read_seq: u64,
    read_round_sent: u64,
    /// Answers that may go only once the journal is durable.
    after_sync: Vec<(NodeId, Message)>,
    /// Messages to this node itself, handled after the flush.
    loopback: Vec<Message>,
    transport: Arc<Transport>,
    rng: u64,
}

impl<S: StateMachine> Paxos<S> {
    /// Recovers a node from its data directory (or starts it fresh).
    pub fn open(cfg: Config, mut sm: S, transport: Arc<Transport>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        let snapshot = Snapshot::load(&cfg.data_dir)?;
        let snapshot_index = snapshot.as_ref().map_or(0, |s| s.last_index);
        if let Some(s) = &snapshot {
            sm.restore(&s.data).map_err(anyhow::Error::msg)?;
        }
        let (journal, records) = Journal::open::<Record>(&cfg.data_dir, JOURNAL)?;
        let mut promised = Ballot::default();
        let mut accepted: BTreeMap<u64, (Ballot, Payload)> = BTreeMap::new();
        for r in records {
            match r {
                Record::Promise { ballot } => promised = promised.max(ballot),
                Record::Accept {
                    slot,
                    ballot,
                    value,
                } if slot > snapshot_index => {
                    if accepted.get(&slot).is_none_or(|(b, _)| *b <= ballot) {
                        accepted.insert(slot, (ballot, value));
                    }
                }
                Record::Accept { .. } => {}
            }
        }
        let now = Instant::now();
        let seed = cfg.id.bytes().fold(
            now.elapsed().as_nanos() as u64 ^ 0x51_7cc1_b727_220a,
            |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3),
        ) ^ std::process::id() as u64;
        let mut members = cfg.members.clone();
        if members.is_empty() {
            members = snapshot.map(|s| s.members).unwrap_or_default();
        }
        let mut paxos = Paxos {
            members,
            sm,
            journal,
            highest_round: promised.round,
            promised,
            accepted,
            chosen: BTreeMap::new(),
            snapshot_index,
            commit: snapshot_index,
            applied: snapshot_index,
            role: Role::Follower,
            leader: None,
            leader_contact: None,
            election_deadline: now,
            heartbeat_due: now,
            campaign: None,
            lead: None,
            waiters: BTreeMap::new(),
            reads: Vec::new(),
            incoming: BTreeMap::new(),
            read_seq: 0,
            read_round_sent: 0,
            after_sync: Vec::new(),
            loopback: Vec::new(),
            transport,
            rng: seed | 1,
            cfg,
        };
        paxos.reset_election_timer(now);
        log_line!(
            paxos.cfg.who(),
            "recovered (paxos): promised {}/{}, {} accepted slot(s), snapshot at {}, members {:?}, bugs {:?}",
            paxos.promised.round,
            paxos.promised.leader,
            paxos.accepted.len(),
            snapshot_index,
            paxos.members.keys().collect::<Vec<_>>(),
            paxos.cfg.bugs.names()
        );
        Ok(paxos)
    }

    /// Runs until [`Event::Shutdown`] or the inbox closes.
    pub fn run(mut self, inbox: Inbox<Message>) {
        loop {
            let wait = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            if !inbox.drain(wait, MAX_EVENTS_PER_FLUSH, |ev| self.handle(ev)) {
                return;
            }
            self.tick(Instant::now());
            self.flush_or_exit();
            // What this node told itself: its own promises and accepts, now
            // durable, and its own acceptor's part of a new leader's work.
            while !self.loopback.is_empty() {
                let me = self.cfg.id.clone();
                for msg in std::mem::take(&mut self.loopback) {
                    self.on_message(me.clone(), msg, Instant::now());
                }
                self.flush_or_exit();
            }
        }
    }

    fn flush_or_exit(&mut self) {
        if let Err(e) = self.flush() {
            // A node that cannot persist must not answer anything.
            log_line!(self.cfg.who(), "storage failure: {e}; stopping");
            std::process::exit(70);
        }
    }

    /// One fsync for everything the batch wrote, then the answers that waited
    /// on it, the leader's new proposals and read round, commit and apply.
    fn flush(&mut self) -> std::io::Result<()> {
        self.journal.sync(self.fsync())?;
        for (to, msg) in std::mem::take(&mut self.after_sync) {
            self.send(&to, msg);
        }
        self.send_proposals();
        self.send_read_round();
        self.advance_commit();
        self.apply();
        self.serve_reads();
        self.maybe_snapshot()
    }

    fn fsync(&self) -> bool {
        !self.cfg.bugs.has(crate::bugs::Bug::NoFsync)
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

    fn send(&mut self, to: &NodeId, msg: Message) {
        if *to == self.cfg.id {
            self.loopback.push(msg);
            return;
        }
        let addr = self
            .cfg
            .peer_addrs
            .get(to)
            .or_else(|| self.members.get(to))
            .cloned();
        if let Some(addr) = addr {
            self.transport.send(to, &addr, msg);
        }
    }

    /// Sends `msg` to every member, this node included.
    fn broadcast(&mut self, msg: Message) {
        let members: Vec<NodeId> = self.members.keys().cloned().collect();
        for m in members {
            self.send(&m, msg.clone());
        }
    }

    fn handle(&mut self, ev: Event<Message>) {
        let now = Instant::now();
        match ev {
            Event::Peer { from, msg } => self.on_message(from, msg, now),
            Event::Propose { command, reply } => self.on_propose(command, reply),
            Event::Read { query, reply } => self.on_read(query, reply),
            Event::Join { reply, .. } | Event::Leave { reply, .. } => {
                let _ = reply.send(Reply::Refused(
                    "membership changes are not supported with --consensus paxos (fixed members)"
                        .into(),
                ));
            }
            Event::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Event::Shutdown => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Message, now: Instant) {
        if from != self.cfg.id && !self.members.contains_key(&from) {
            log_line!(self.cfg.who(), "dropping a message from non-member {from}");
            return;
        }
        match msg {
            Message::Prepare { ballot, from_slot } => self.on_prepare(from, ballot, from_slot, now),
            Message::Promise {
                ballot,
                accepted,
                snapshot,
            } => self.on_promise(from, ballot, accepted, snapshot, now),
            Message::Accept {
                ballot,
                entries,
                commit,
                seq,
            } => self.on_accept(from, ballot, entries, commit, seq, now),
            Message::AcceptedSlots {
                ballot,
                slots,
                commit,
                seq,
            } => self.on_accepted(from, ballot, slots, commit, seq, now),
            Message::Nack { ballot, promised } => self.on_nack(ballot, promised, now),
            Message::Chosen { ballot, entries } => {
                // Only a leader sends chosen values: a newer one deposes us.
                if self.role != Role::Follower && ballot > self.promised {
                    self.highest_round = self.highest_round.max(ballot.round);
                    self.become_follower(Some(ballot.leader.clone()), now);
                }
                self.on_chosen(entries)
            }
            Message::Snapshot {
                index,
                members,
                offset,
                chunk,
                done,
            } => self.on_snapshot_chunk(from, index, members, (offset, chunk, done)),
        }
    }

    fn tick(&mut self, now: Instant) {
        match self.role {
            Role::Leader if now >= self.heartbeat_due => {
                self.heartbeat_due = now + self.cfg.heartbeat;
                self.heartbeat(now);
            }
            Role::Leader => {}
            _ if now >= self.election_deadline => {
                if self.members.contains_key(&self.cfg.id) {
                    self.start_campaign(now);
                } else {
                    self.reset_election_timer(now);
                }
            }
            _ => {}
        }
    }

    /// Leaves any leadership or campaign: proposals in flight may still be
    /// chosen (by the next leader), so their clients hear "indeterminate".
    fn become_follower(&mut self, leader: Option<NodeId>, now: Instant) {
        if self.role == Role::Leader {
            log_line!(
                self.cfg.who(),
                "stepping down from ballot {}/{}",
                self.promised.round,
                self.cfg.id
            );
        }
        self.role = Role::Follower;
        self.campaign = None;
        self.lead = None;
        self.leader = leader;
        for (_, (_, reply)) in std::mem::take(&mut self.waiters) {
            let _ = reply.send(Reply::Indeterminate(
                "leadership lost before the proposal was chosen".into(),
            ));
        }
        for r in std::mem::take(&mut self.reads) {
            let _ = r.reply.send(Reply::NotLeader(None));
        }
        self.reset_election_timer(now);
    }

    fn status(&self) -> Status {
        Status {
            id: self.cfg.id.clone(),
            role: match self.role {
                Role::Leader => "leader",
                Role::Candidate => "candidate",
                Role::Follower => "follower",
            },
            term: self.promised.round,
            leader: self.leader.clone(),
            commit_index: self.commit,
            applied_index: self.applied,
            last_index: self
                .accepted
                .keys()
                .next_back()
                .copied()
                .unwrap_or(0)
                .max(self.commit),
            members: self.members.keys().cloned().collect(),
            member_addrs: self.members.clone(),
            bugs: self.cfg.bugs.names(),
        }
    }
}

/// Peers a leader has heard from, by id.
type Acks = BTreeSet<NodeId>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bugs::{Bug, Bugs};
    use serde_json::json;

    use crate::consensus::state_machine::Applied;

    fn config(dir: &std::path::Path, bugs: &[Bug]) -> Config {
        // Peers at addresses nothing listens on: what is sent to them is lost,
        // and the tests look at the state and the loopback instead.
        let members: Members = ["n1", "n2", "n3"]
            .iter()
            .map(|n| (n.to_string(), "127.0.0.1:9".to_string()))
            .collect();
        Config {
            id: "n1".into(),
            data_dir: dir.to_path_buf(),
            members,
            peer_addrs: Default::default(),
            election_timeout: Duration::from_secs(60),
            heartbeat: Duration::from_secs(10),
            snapshot_every: 1_000,
            snapshot_chunk: 1 << 20,
            bugs: Bugs::new(bugs.iter().copied()),
            group: 0,
        }
    }

    fn open(dir: &std::path::Path, bugs: &[Bug]) -> Paxos<Applied> {
        let transport = Arc::new(Transport::new(
            "n1".into(),
            tokio::runtime::Handle::current(),
        ));
        Paxos::open(config(dir, bugs), Applied::default(), transport).unwrap()
    }

    fn ballot(round: u64, leader: &str) -> Ballot {
        Ballot {
            round,
            leader: leader.into(),
        }
    }

    fn command(v: &str) -> Payload {
        Payload::Command { command: json!(v) }
    }

    /// Flushes and hands the node what it sent itself, until nothing is left.
    fn settle(p: &mut Paxos<Applied>) {
        p.flush().unwrap();
        while !p.loopback.is_empty() {
            for msg in std::mem::take(&mut p.loopback) {
                p.on_message("n1".into(), msg, Instant::now());
            }
            p.flush().unwrap();
        }
    }

    #[tokio::test]
    async fn an_acceptor_refuses_ballots_below_its_promise_and_remembers_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        {
            let mut p = open(dir.path(), &[]);
            p.on_prepare("n2".into(), ballot(5, "n2"), 1, now);
            p.on_accept(
                "n2".into(),
                ballot(5, "n2"),
                vec![(1, command("a"))],
                0,
                0,
                now,
            );
            // An older leader's accept, for another slot and over slot 1.
            p.on_accept(
                "n3".into(),
                ballot(4, "n3"),
                vec![(1, command("x")), (2, command("y"))],
                0,
                0,
                now,
            );
            p.flush().unwrap();
            assert_eq!(p.promised, ballot(5, "n2"));
            assert_eq!(p.accepted.len(), 1);
            assert_eq!(p.accepted[&1], (ballot(5, "n2"), command("a")));
        }
        // Both the promise and the accepted value were durable before answering.
        let mut p = open(dir.path(), &[]);
        assert_eq!(p.promised, ballot(5, "n2"));
        assert_eq!(p.accepted[&1], (ballot(5, "n2"), command("a")));
        // A lower prepare gets no promise; its promise reply never queues.
        p.on_prepare("n3".into(), ballot(4, "n3"), 1, now);
        assert!(p.after_sync.is_empty());
        assert_eq!(p.promised, ballot(5, "n2"));
    }

    #[tokio::test]
    async fn accept_lower_ballot_takes_a_value_its_promise_forbids() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        let mut p = open(dir.path(), &[Bug::AcceptLowerBallot]);
        p.on_prepare("n2".into(), ballot(5, "n2"), 1, now);
        p.on_accept(
            "n3".into(),
            ballot(4, "n3"),
            vec![(1, command("x"))],
            0,
            0,
            now,
        );
        assert_eq!(p.accepted[&1], (ballot(4, "n3"), command("x")));
        assert_eq!(p.promised, ballot(5, "n2"), "the promise itself stays");
    }

    #[tokio::test]
    async fn a_new_leader_proposes_the_highest_ballots_value_in_each_open_slot_and_noops_in_holes()
    {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        let mut p = open(dir.path(), &[]);
        // This node accepted slot 1 in ballot 2 itself.
        p.on_accept(
            "n2".into(),
            ballot(2, "n2"),
            vec![(1, command("a2"))],
            0,
            0,
            now,
        );
        settle(&mut p);
        p.start_campaign(now);
        settle(&mut p);
        assert_eq!(p.role, Role::Candidate);
        let b = p.campaign.as_ref().unwrap().ballot.clone();
        assert!(b > ballot(2, "n2"));
        // n2 reports an older value in slot 1 and one in slot 3; slot 2 is empty.
        let seen = vec![
            Accepted {
                slot: 1,
                ballot: ballot(1, "n3"),
                value: command("a1"),
            },
            Accepted {
                slot: 3,
                ballot: ballot(1, "n3"),
                value: command("c"),
            },
        ];
        p.on_promise("n2".into(), b.clone(), seen, 0, now);
        assert_eq!(p.role, Role::Leader);
        let lead = p.lead.as_ref().unwrap();
        let open: Vec<(u64, Payload)> = lead
            .pending
            .iter()
            .map(|(s, x)| (*s, x.value.clone()))
            .collect();
        assert_eq!(
            open,
            vec![(1, command("a2")), (2, Payload::Noop), (3, command("c"))]
        );
        assert_eq!(lead.next_slot, 4);
        // Its own acceptor takes them at once; with n2's acceptance they are chosen.
        settle(&mut p);
        p.on_accepted("n2".into(), b, vec![1, 2, 3], 0, 0, now);
        p.flush().unwrap();
        assert_eq!(p.commit, 3);
        assert_eq!(p.sm.0, vec![json!("a2"), json!("c")]);
    }

    #[tokio::test]
    async fn skip_prepare_leads_at_once_and_proposes_over_open_slots() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        let mut p = open(dir.path(), &[Bug::SkipPrepare]);
        p.on_accept(
            "n2".into(),
            ballot(2, "n2"),
            vec![(1, command("a"))],
            0,
            0,
            now,
        );
        settle(&mut p);
        p.start_campaign(now);
        assert_eq!(p.role, Role::Leader);
        let (tx, _rx) = oneshot::channel();
        p.on_propose(json!("new"), tx);
        // Slot 1 may hold a chosen value; the bug proposes over it.
        assert_eq!(p.lead.as_ref().unwrap().pending[&1].value, command("new"));
    }

    #[tokio::test]
    async fn snapshot_chunks_from_two_senders_interleave_and_install_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = open(dir.path(), &[]);
        let text = json!(["a", "b", "c"]).to_string();
        let chunks: Vec<(u64, String, bool)> = (0..text.len())
            .step_by(4)
            .map(|at| {
                let end = (at + 4).min(text.len());
                (at as u64, text[at..end].to_string(), end == text.len())
            })
            .collect();
        let members = p.members.clone();
        // A stray chunk from the middle of a transfer is ignored.
        p.on_snapshot_chunk("n3".into(), 7, members.clone(), chunks[1].clone());
        for (i, c) in chunks.iter().enumerate() {
            p.on_snapshot_chunk("n3".into(), 7, members.clone(), c.clone());
            if i + 1 < chunks.len() {
                p.on_snapshot_chunk("n2".into(), 7, members.clone(), c.clone());
                assert_eq!(p.applied, 0, "installed before the last chunk");
            }
        }
        assert_eq!(p.applied, 7);
        assert_eq!(p.sm.0, vec![json!("a"), json!("b"), json!("c")]);
        // n2's transfer, now behind what is applied, is dropped.
        let last = chunks.last().unwrap().clone();
        p.on_snapshot_chunk("n2".into(), 7, members, last);
        assert!(p.incoming.is_empty());
        // The installed state is durable.
        drop(p);
        let p = open(dir.path(), &[]);
        assert_eq!((p.applied, p.sm.0.len()), (7, 3));
    }

    #[tokio::test]
    async fn a_candidate_that_installed_the_snapshot_ahead_of_a_promise_leads() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        let mut p = open(dir.path(), &[]);
        p.start_campaign(now);
        settle(&mut p);
        let b = p.campaign.as_ref().unwrap().ballot.clone();
        // n2 compacted slots 1..=5: its snapshot comes first on the link, then
        // its promise naming the snapshot.
        let text = json!(["x"]).to_string();
        let members = p.members.clone();
        p.on_snapshot_chunk("n2".into(), 5, members, (0, text, true));
        assert_eq!(p.commit, 5);
        p.on_promise("n2".into(), b.clone(), Vec::new(), 5, now);
        assert_eq!(
            p.role,
            Role::Leader,
            "the snapshot covers what n2 compacted"
        );
        assert_eq!(p.lead.as_ref().unwrap().next_slot, 6);
        // A promise naming a snapshot beyond what this node knows still blocks.
        let other = tempfile::tempdir().unwrap();
        let mut q = open(other.path(), &[]);
        q.start_campaign(now);
        settle(&mut q);
        let b = q.campaign.as_ref().unwrap().ballot.clone();
        q.on_promise("n2".into(), b, Vec::new(), 5, now);
        assert_eq!(q.role, Role::Candidate);
    }

    #[test]
    fn batches_are_capped_by_bytes_as_well_as_by_count() {
        let big = Payload::Command {
            command: json!("v".repeat(3 << 20)),
        };
        let entries: Vec<(u64, Payload)> = (1..=5).map(|s| (s, big.clone())).collect();
        let n = leader::within_caps(entries.iter().map(|(s, v)| (*s, v))).count();
        assert_eq!(n, 2, "two 3 MiB values fit under 8 MiB, a third does not");
        let huge = Payload::Command {
            command: json!("v".repeat(9 << 20)),
        };
        let one = [(1u64, huge)];
        assert_eq!(
            leader::within_caps(one.iter().map(|(s, v)| (*s, v))).count(),
            1
        );
        let small: Vec<(u64, Payload)> = (1..=3000).map(|s| (s, Payload::Noop)).collect();
        let n = leader::within_caps(small.iter().map(|(s, v)| (*s, v))).count();
        assert_eq!(n, 1024);
    }

    #[tokio::test]
    async fn a_damaged_journal_record_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        {
            let mut p = open(dir.path(), &[]);
            for slot in 1..=3 {
                p.on_accept(
                    "n2".into(),
                    ballot(2, "n2"),
                    vec![(slot, command("v"))],
                    0,
                    0,
                    now,
                );
            }
            p.flush().unwrap();
        }
        let path = dir.path().join(JOURNAL);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[12] ^= 0x20;
        std::fs::write(&path, bytes).unwrap();
        let transport = Arc::new(Transport::new(
            "n1".into(),
            tokio::runtime::Handle::current(),
        ));
        let err = Paxos::open(config(dir.path(), &[]), Applied::default(), transport)
            .err()
            .expect("a damaged journal must not open");
        assert!(err.to_string().contains("paxos.journal line 1"), "{err}");
    }
}
