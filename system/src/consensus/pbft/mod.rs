//! PBFT (Castro and Liskov, OSDI'99 and TOCS'02): n = 3f+1 replicas order
//! client requests so that f of them may lie, stay silent or equivocate and
//! the others still agree and answer rightly.
//!
//! The primary of view v (member v mod n) gives each batch of requests a
//! sequence number (pre-prepare); backups that accept it say so (prepare); a
//! replica with the pre-prepare and 2f matching prepares is prepared and says
//! so (commit); with 2f+1 matching commits it executes the batch in sequence
//! order and answers each request's client, which takes a result once f+1
//! replicas gave the same one. Every K sequence numbers replicas exchange
//! state digests (checkpoints); 2f+1 matching make it stable and the log below
//! it is dropped. A backup whose requests wait too long leaves the view (view
//! change); the next primary starts the new one from 2f+1 view changes
//! (new-view), re-proposing whatever any of them proved prepared.
//!
//! Requests are not signed by their clients here (HTTP clients hold no keys).
//! Instead a client sends each request to every replica, and a backup
//! prepares a batch only when it holds each request as the client sent it, or
//! f+1 other replicas vouched for the batch by preparing it; so a faulty
//! primary (or a backup passing requests on) cannot make correct replicas
//! execute a request no client sent. Every message between replicas carries a
//! MAC for each replica (`message.rs`). Files: `message.rs`, `view.rs` (view
//! change, new-view), `byzantine.rs` (the behaviours the nemesis switches on).

mod byzantine;
mod message;
mod view;

pub use byzantine::{Behaviour, Switch};
pub use message::{Body, Digest, Keys, Op, Prepared, Request, RequestId, Signed};

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::bugs::Bug;
use crate::consensus::inbox::{Event, Handle, Inbox};
use crate::consensus::{Asked, Config, Consensus, Reply, StateMachine, Status};
use crate::log_line;
use crate::storage::{Journal, Snapshot};
use crate::transport::Transport;
use crate::types::{Members, NodeId};

use message::digest_of;

/// The inbox handle the transport delivers peer messages to.
pub type PbftHandle = Handle<Signed>;

/// Events handled before flushing.
const MAX_EVENTS_PER_FLUSH: usize = 4096;
/// The replica's journal in the data directory.
const JOURNAL: &str = "pbft.journal";
/// Sequence numbers between checkpoints, at most.
const CHECKPOINT_MAX: u64 = 64;
/// Batches the primary has in flight (assigned, not yet executed), at most.
const IN_FLIGHT: u64 = 8;
/// Requests per batch, at most.
const BATCH_MAX: usize = 256;
/// Committed sequence numbers sent per fetch answer, at most.
const FETCH_MAX: u64 = 32;
/// Requests passed on by backups that the primary tracks, at most.
const FORWARDS_MAX: usize = 65_536;
/// Unexecuted sequence numbers whose votes a stalled replica sends again.
const RETRANSMIT_MAX: usize = 16;
/// How far the primary's `now_ms` in a command may be from a backup's own
/// for the same request.
const CLOCK_MARGIN_MS: u64 = 5_000;
/// A client request nobody ordered is dropped after this many view-change
/// timeouts (its client has long given up).
const PENDING_LIFETIME: u32 = 20;

/// The consensus the node's services use: asks carry the id of the client
/// request being served (the `x-request-id` header), which every replica that
/// got the request agrees on.
#[derive(Clone, Debug)]
pub struct PbftClient(pub PbftHandle);

/// Wraps an op with the request id of the HTTP request being served.
fn tagged(op: Op) -> Value {
    let id = crate::consensus::REQUEST_ID
        .try_with(|id| id.clone())
        .ok()
        .flatten();
    json!({"id": id, "op": op})
}

impl Consensus for PbftClient {
    fn propose(&self, command: Value) -> Asked<Reply> {
        self.0.propose(tagged(Op::Command(command)))
    }
    fn read(&self, query: Value) -> Asked<Reply> {
        self.0.propose(tagged(Op::Read(query)))
    }
    fn join(&self, id: NodeId, addr: String) -> Asked<Reply> {
        self.0.join(id, addr)
    }
    fn leave(&self, id: NodeId) -> Asked<Reply> {
        self.0.leave(id)
    }
    fn status(&self) -> Asked<Status> {
        self.0.status()
    }
}

/// What the journal holds: views entered and every protocol message this
/// replica sent or accepted, so a restarted replica keeps its word.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "kebab-case")]
enum Record {
    View { view: u64, changing: bool },
    Stable { seq: u64, proof: Vec<Signed> },
    Msg(Signed),
}

/// One sequence number's messages in one view.
#[derive(Debug, Default)]
struct Votes {
    pre_prepare: Option<Signed>,
    prepares: BTreeMap<NodeId, Signed>,
    commits: BTreeMap<NodeId, Signed>,
    sent_prepare: bool,
    sent_commit: bool,
    /// Carried into a new view with a prepared certificate behind it (or a
    /// null request): no client copy needs checking.
    vouched: bool,
    /// The client digest of each request in the pre-prepared batch, worked
    /// out once (a batch waiting for client copies is looked at often).
    client_digests: Option<Vec<Digest>>,
}

/// One sequence number.
#[derive(Debug, Default)]
struct Slot {
    views: BTreeMap<u64, Votes>,
    /// The batch known committed, with its proof (a pre-prepare and 2f+1 commits).
    committed: Option<(message::Batch, Signed, Vec<Signed>)>,
}

/// A client request this replica got from the client itself, waiting for its
/// execution.
struct Pending {
    request: Request,
    digest: Digest,
    replies: Vec<oneshot::Sender<Reply>>,
    since: Instant,
    /// The view in which this backup last passed it to the primary.
    passed_on: Option<u64>,
}

/// A checkpoint being agreed on.
#[derive(Default)]
struct Checkpointing {
    own: Option<(Digest, Value)>,
    votes: BTreeMap<NodeId, Signed>,
}

/// One PBFT replica and its state machine.
pub struct Pbft<S: StateMachine> {
    cfg: Config,
    /// Members in order: the primary of view v is `members[v % n]`.
    members: Vec<NodeId>,
    addrs: Members,
    f: usize,
    keys: Keys,
    sm: S,
    journal: Journal,
    view: u64,
    /// Leaving `view - 1` for `view`, waiting for its new-view.
    changing: bool,
    view_changes: BTreeMap<u64, BTreeMap<NodeId, Signed>>,
    /// The new-view this replica sent as primary of its view, for laggards.
    last_new_view: Option<Signed>,
    vc_deadline: Instant,
    vc_timeout: Duration,
    slots: BTreeMap<u64, Slot>,
    next_seq: u64,
    executed: u64,
    stable: u64,
    stable_proof: Vec<Signed>,
    stable_state: Value,
    checkpoint_every: u64,
    checkpoints: BTreeMap<u64, Checkpointing>,
    /// Each client's last executed request number and its result (part of the
    /// replicated state, so a repeat is answered, never executed twice).
    replies: BTreeMap<String, (u64, Value)>,
    pending: HashMap<RequestId, Pending>,
    /// The primary's requests to order, and those already in a batch of this view.
    queue: VecDeque<Request>,
    ordered: BTreeSet<RequestId>,
    /// The new view's low mark: everything up to it was committed in earlier
    /// views, so no pre-prepare of this view may use those numbers.
    floor: u64,
    /// The primary's requests passed on by backups, by id and client digest,
    /// with who passed them on.
    forwards: HashMap<RequestId, BTreeMap<Digest, BTreeSet<NodeId>>>,
    /// The highest view each replica was seen working in.
    seen_views: BTreeMap<NodeId, u64>,
    /// The highest sequence number any replica was seen committing or checkpointing.
    highest_seen: u64,
    progress_at: Instant,
    /// When another replica was last seen committing something new.
    seen_progress_at: Instant,
    fetch_due: Instant,
    fetch_turn: usize,
    /// Messages dropped: unauthenticated, malformed for their place, or from non-members.
    dropped: u64,
    after_sync: Vec<(NodeId, Signed)>,
    byzantine: Arc<Switch>,
    sent_log: VecDeque<Signed>,
    transport: Arc<Transport>,
    rng: u64,
}

impl<S: StateMachine> Pbft<S> {
    /// Recovers a replica from its data directory (or starts it fresh). The
    /// members are fixed; `secret` keys the MACs between them.
    pub fn open(
        cfg: Config,
        mut sm: S,
        transport: Arc<Transport>,
        secret: &str,
        byzantine: Arc<Switch>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        let members: Vec<NodeId> = cfg.members.keys().cloned().collect();
        if members.len() < 4 {
            anyhow::bail!(
                "--consensus pbft needs at least 4 members (n = 3f+1), got {}",
                members.len()
            );
        }
        let f = (members.len() - 1) / 3;
        let snapshot = Snapshot::load(&cfg.data_dir)?;
        let mut replies = BTreeMap::new();
        let mut stable_state = json!({"machine": sm.snapshot(), "replies": replies});
        let stable = snapshot.as_ref().map_or(0, |s| s.last_index);
        if let Some(s) = &snapshot {
            sm.restore(&s.data["machine"]).map_err(anyhow::Error::msg)?;
            replies = serde_json::from_value(s.data["replies"].clone())?;
            stable_state = s.data.clone();
        }
        let (journal, records) = Journal::open::<Record>(&cfg.data_dir, JOURNAL)?;
        let now = Instant::now();
        let keys = Keys::derive(secret, &cfg.id, members.iter().cloned());
        let seed = cfg.id.bytes().fold(
            now.elapsed().as_nanos() as u64 ^ 0x2545_f491_4f6c_dd1d,
            |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3),
        ) ^ std::process::id() as u64;
        let mut p = Pbft {
            addrs: cfg.members.clone(),
            members,
            f,
            keys,
            sm,
            journal,
            view: 0,
            changing: false,
            view_changes: BTreeMap::new(),
            last_new_view: None,
            vc_deadline: now,
            vc_timeout: cfg.election_timeout,
            slots: BTreeMap::new(),
            next_seq: stable + 1,
            executed: stable,
            stable,
            stable_proof: Vec::new(),
            stable_state,
            checkpoint_every: cfg.snapshot_every.clamp(1, CHECKPOINT_MAX),
            checkpoints: BTreeMap::new(),
            replies,
            pending: HashMap::new(),
            queue: VecDeque::new(),
            ordered: BTreeSet::new(),
            forwards: HashMap::new(),
            floor: 0,
            seen_views: BTreeMap::new(),
            highest_seen: stable,
            progress_at: now,
            seen_progress_at: now,
            fetch_due: now,
            fetch_turn: 0,
            dropped: 0,
            after_sync: Vec::new(),
            byzantine,
            sent_log: VecDeque::new(),
            transport,
            rng: seed | 1,
            cfg,
        };
        let mut messages = 0;
        for r in records {
            match r {
                Record::View { view, changing } => {
                    p.view = view;
                    p.changing = changing;
                }
                Record::Stable { seq, proof } if seq == stable => p.stable_proof = proof,
                Record::Stable { .. } => {}
                Record::Msg(m) => {
                    messages += 1;
                    p.remember(m);
                }
            }
        }
        // What the journal proves committed is executed again.
        let seqs: Vec<u64> = p.slots.keys().copied().collect();
        for seq in seqs {
            p.check_committed(seq);
        }
        p.execute();
        p.next_seq = p
            .next_seq
            .max(p.slots.keys().next_back().map_or(0, |s| s + 1));
        p.vc_deadline = now + p.vc_timeout;
        log_line!(
            p.cfg.who(),
            "recovered (pbft, n={}, f={}): view {}{}, stable checkpoint {}, executed {}, {} journaled message(s), bugs {:?}",
            p.members.len(),
            p.f,
            p.view,
            if p.changing { " (changing)" } else { "" },
            p.stable,
            p.executed,
            messages,
            p.cfg.bugs.names()
        );
        Ok(p)
    }

    /// Runs until [`Event::Shutdown`] or the inbox closes.
    pub fn run(mut self, inbox: Inbox<Signed>) {
        loop {
            let wait = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            if !inbox.drain(wait, MAX_EVENTS_PER_FLUSH, |ev| self.handle(ev)) {
                return;
            }
            self.tick(Instant::now());
            if let Err(e) = self.flush() {
                log_line!(self.cfg.who(), "storage failure: {e}; stopping");
                std::process::exit(70);
            }
        }
    }

    /// New batches, one fsync for what was journaled, then the messages that
    /// waited on it, execution and its answers.
    fn flush(&mut self) -> std::io::Result<()> {
        self.make_batches();
        for _ in 0..4 {
            self.journal.sync(self.fsync())?;
            let out = std::mem::take(&mut self.after_sync);
            for (to, msg) in out {
                self.send(&to, msg);
            }
            self.execute();
            self.maybe_stable()?;
            if self.after_sync.is_empty() {
                break;
            }
        }
        Ok(())
    }

    fn fsync(&self) -> bool {
        !self.cfg.bugs.has(Bug::NoFsync)
    }

    fn next_deadline(&self) -> Instant {
        let mut t = self.fetch_due;
        if self.changing || !self.pending.is_empty() {
            t = t.min(self.vc_deadline);
        }
        t
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// The primary of `view`.
    fn primary(&self, view: u64) -> &NodeId {
        &self.members[(view % self.members.len() as u64) as usize]
    }

    fn is_primary(&self) -> bool {
        !self.changing && *self.primary(self.view) == self.cfg.id
    }

    /// Matching prepares a prepared certificate needs besides the pre-prepare.
    fn prepare_quorum(&self) -> usize {
        self.quorum() - 1
    }

    /// Matching commits, checkpoints or view changes a certificate needs:
    /// 2f+1 when n = 3f+1, and in general the least q with any two q-sets
    /// sharing f+1 replicas (so a correct one), ceil((n+f+1)/2).
    fn quorum(&self) -> usize {
        let q = (self.members.len() + self.f + 2) / 2;
        if self.cfg.bugs.has(Bug::SmallQuorum) {
            q - 1
        } else {
            q
        }
    }

    fn send(&mut self, to: &NodeId, msg: Signed) {
        let addr = self
            .cfg
            .peer_addrs
            .get(to)
            .or_else(|| self.addrs.get(to))
            .cloned();
        if let Some(addr) = addr {
            self.transport.send(to, &addr, msg);
        }
    }

    /// Signs `body`, journals it if it is a vote, takes it in here, and queues
    /// it for every other replica (sent once the journal is durable).
    fn multicast(&mut self, body: Body) {
        let behaviour = self.byzantine.get();
        if behaviour == Some(Behaviour::Silent) {
            return;
        }
        let body = byzantine::false_view(behaviour, body);
        let signed = self.keys.sign(body);
        if matches!(
            signed.body,
            Body::PrePrepare { .. } | Body::Prepare { .. } | Body::Commit { .. }
        ) {
            self.journal.append(&Record::Msg(signed.clone()));
        }
        self.on_signed(signed.clone());
        let others: Vec<NodeId> = self
            .members
            .iter()
            .filter(|m| **m != self.cfg.id)
            .cloned()
            .collect();
        for (i, to) in others.into_iter().enumerate() {
            let msg = byzantine::as_primary(behaviour, &self.keys, &signed, i);
            self.after_sync.push((to, msg));
        }
        if behaviour == Some(Behaviour::Replay) {
            self.sent_log.push_back(signed);
            if self.sent_log.len() > 256 {
                self.sent_log.pop_front();
            }
        }
    }

    /// Signs `body` for one replica.
    fn send_one(&mut self, to: &NodeId, body: Body) {
        if self.byzantine.get() == Some(Behaviour::Silent) {
            return;
        }
        let signed = self.keys.sign(body);
        self.after_sync.push((to.clone(), signed));
    }

    fn handle(&mut self, ev: Event<Signed>) {
        let now = Instant::now();
        match ev {
            Event::Peer { from, msg } => {
                if msg.from != from || !self.keys.verify(&msg) {
                    self.drop_message(&from, "fails authentication");
                    return;
                }
                self.on_signed(msg);
            }
            Event::Propose { command, reply }
            | Event::Read {
                query: command,
                reply,
            } => self.on_client(command, reply, now),
            Event::Join { reply, .. } | Event::Leave { reply, .. } => {
                let _ = reply.send(Reply::Refused(
                    "membership changes are not supported with --consensus pbft (fixed members)"
                        .into(),
                ));
            }
            Event::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Event::Shutdown => {}
        }
    }

    fn drop_message(&mut self, from: &NodeId, why: &str) {
        self.dropped += 1;
        if self.dropped.is_power_of_two() {
            log_line!(
                self.cfg.who(),
                "dropping a message from {from}: {why} ({} dropped so far)",
                self.dropped
            );
        }
    }

    /// A request from a client of this node.
    fn on_client(&mut self, asked: Value, reply: oneshot::Sender<Reply>, now: Instant) {
        let id = asked["id"].as_str().and_then(parse_request_id);
        let (Some(id), Ok(op)) = (id, serde_json::from_value::<Op>(asked["op"].clone())) else {
            let _ = reply.send(Reply::Refused(
                "--consensus pbft orders only requests with an `x-request-id: CLIENT:NUMBER` header, sent to every replica (as PBFT clients do)".into(),
            ));
            return;
        };
        if let Some((last, result)) = self.replies.get(&id.client) {
            if *last == id.number {
                let _ = reply.send(Reply::Ok(result.clone()));
                return;
            }
            if *last > id.number {
                let _ = reply.send(Reply::Refused(format!(
                    "request {} of client {} is older than its last executed one ({last})",
                    id.number, id.client
                )));
                return;
            }
        }
        let request = Request { id, op };
        let digest = request.client_digest();
        let pending = self
            .pending
            .entry(request.id.clone())
            .or_insert_with(|| Pending {
                request: request.clone(),
                digest,
                replies: Vec::new(),
                since: now,
                passed_on: None,
            });
        pending.replies.push(reply);
        // A backup passes the request on only if the primary has not ordered
        // it soon (`tick`): clients send every replica their requests.
        if self.is_primary() {
            self.enqueue(request);
        }
        // A pre-prepare may have been waiting for this copy.
        self.retry_prepares();
    }

    fn enqueue(&mut self, request: Request) {
        let done = self
            .replies
            .get(&request.id.client)
            .is_some_and(|(n, _)| *n >= request.id.number);
        if done || self.ordered.contains(&request.id) {
            return;
        }
        if self.queue.iter().any(|r| r.id == request.id) {
            return;
        }
        self.queue.push_back(request);
    }

    /// The primary assigns sequence numbers to what is queued.
    fn make_batches(&mut self) {
        while self.is_primary()
            && self.executed >= self.floor
            && !self.queue.is_empty()
            && self.next_seq <= self.executed + IN_FLIGHT
            && self.next_seq <= self.stable + 2 * self.checkpoint_every
        {
            let mut batch = Vec::new();
            while batch.len() < BATCH_MAX {
                let Some(r) = self.queue.pop_front() else {
                    break;
                };
                if self.ordered.contains(&r.id) {
                    continue;
                }
                // Prefer the copy the client sent here to one a backup passed on.
                let r = self.pending.get(&r.id).map_or(r, |p| p.request.clone());
                self.ordered.insert(r.id.clone());
                batch.push(r);
            }
            if batch.is_empty() {
                break;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            let digest = digest_of(&batch);
            self.multicast(Body::PrePrepare {
                view: self.view,
                seq,
                digest,
                batch,
            });
        }
    }

    /// Takes in an authenticated message (or one of this replica's own).
    fn on_signed(&mut self, msg: Signed) {
        let from = msg.from.clone();
        if !self.members.contains(&from) {
            self.drop_message(&from, "not a member");
            return;
        }
        match &msg.body {
            Body::Request(r) => {
                if !self.is_primary() {
                    return;
                }
                // Ordered on its own copy, or once f+1 replicas passed the
                // request on (so a correct one holds it from the client).
                let (r, digest) = (r.clone(), r.client_digest());
                if self.forwards.len() >= FORWARDS_MAX {
                    // Requests passed on and never ordered pile up only if
                    // someone invents them: forget them all.
                    self.forwards.clear();
                }
                let ready = {
                    let entry = self
                        .forwards
                        .entry(r.id.clone())
                        .or_default()
                        .entry(digest)
                        .or_default();
                    entry.insert(from);
                    entry.len() > self.f
                };
                if ready {
                    self.enqueue(r);
                }
            }
            Body::PrePrepare { view, seq, .. }
            | Body::Prepare { view, seq, .. }
            | Body::Commit { view, seq, .. } => {
                let (view, seq) = (*view, *seq);
                self.saw_view(&from, view);
                if matches!(msg.body, Body::Commit { .. }) {
                    self.saw_seq(seq);
                }
                if view != self.view || self.changing || seq <= self.stable {
                    return;
                }
                if seq > self.stable + 4 * self.checkpoint_every {
                    self.drop_message(&from, "sequence number beyond the high watermark");
                    return;
                }
                self.on_vote(msg);
            }
            Body::Checkpoint { seq, .. } => {
                let seq = *seq;
                let plausible = seq.is_multiple_of(self.checkpoint_every)
                    && seq <= self.stable + 4 * self.checkpoint_every;
                if !plausible {
                    self.drop_message(
                        &from,
                        "a checkpoint off the interval or past the high watermark",
                    );
                    return;
                }
                self.saw_seq(seq);
                if seq > self.stable {
                    self.checkpoints
                        .entry(seq)
                        .or_default()
                        .votes
                        .insert(from, msg);
                }
            }
            Body::ViewChange { .. } => self.on_view_change(msg),
            Body::NewView { .. } => self.on_new_view(msg),
            Body::Fetch { next } => {
                let next = *next;
                self.on_fetch(&from, next);
            }
            Body::Committed { .. } => self.on_committed(msg),
            Body::State { .. } => self.on_state(msg),
        }
    }

    /// Records a pre-prepare, prepare or commit of the current view and acts on it.
    fn on_vote(&mut self, msg: Signed) {
        let from = msg.from.clone();
        let primary = self.primary(self.view).clone();
        let seq = match &msg.body {
            Body::PrePrepare {
                view,
                seq,
                digest,
                batch,
            } => {
                if from != primary {
                    self.drop_message(&from, "a pre-prepare from a backup");
                    return;
                }
                if *seq <= self.executed.max(self.floor) {
                    return;
                }
                let checks = !self.cfg.bugs.has(Bug::TrustPrimary);
                if checks && *digest != digest_of(batch) {
                    self.drop_message(&from, "a pre-prepare whose digest is not its batch's");
                    return;
                }
                let votes = self.votes(*seq, *view);
                if let Some(Body::PrePrepare { digest: had, .. }) =
                    votes.pre_prepare.as_ref().map(|m| &m.body)
                {
                    if had != digest {
                        let seq = *seq;
                        self.drop_message(&from, &format!("a second pre-prepare for {seq}"));
                    }
                    return;
                }
                let seq = *seq;
                if from != self.cfg.id {
                    self.journal.append(&Record::Msg(msg.clone()));
                }
                self.votes(seq, self.view).pre_prepare = Some(msg);
                seq
            }
            Body::Prepare { seq, .. } | Body::Commit { seq, .. } => {
                if matches!(msg.body, Body::Prepare { .. }) && from == primary {
                    self.drop_message(&from, "a prepare from the primary");
                    return;
                }
                let seq = *seq;
                let is_prepare = matches!(msg.body, Body::Prepare { .. });
                if from != self.cfg.id {
                    self.journal.append(&Record::Msg(msg.clone()));
                }
                let votes = self.votes(seq, self.view);
                let map = if is_prepare {
                    &mut votes.prepares
                } else {
                    &mut votes.commits
                };
                map.entry(from).or_insert(msg);
                seq
            }
            _ => return,
        };
        self.try_prepare(seq);
        self.check_prepared(seq);
        self.check_committed(seq);
    }

    fn votes(&mut self, seq: u64, view: u64) -> &mut Votes {
        self.slots
            .entry(seq)
            .or_default()
            .views
            .entry(view)
            .or_default()
    }

    /// Puts a journaled message back where it was, on recovery.
    fn remember(&mut self, msg: Signed) {
        let (view, seq) = match &msg.body {
            Body::PrePrepare { view, seq, .. }
            | Body::Prepare { view, seq, .. }
            | Body::Commit { view, seq, .. } => (*view, *seq),
            _ => return,
        };
        if seq <= self.stable {
            return;
        }
        let me = msg.from == self.cfg.id;
        let votes = self.votes(seq, view);
        match &msg.body {
            Body::PrePrepare { .. } => votes.pre_prepare = Some(msg),
            Body::Prepare { .. } => {
                votes.sent_prepare |= me;
                votes.prepares.insert(msg.from.clone(), msg);
            }
            _ => {
                votes.sent_commit |= me;
                votes.commits.insert(msg.from.clone(), msg);
            }
        }
    }

    /// The digest and batch the current view's pre-prepare for `seq` carries.
    fn proposal(&self, seq: u64, view: u64) -> Option<(&Digest, &message::Batch)> {
        let votes = self.slots.get(&seq)?.views.get(&view)?;
        match &votes.pre_prepare.as_ref()?.body {
            Body::PrePrepare { digest, batch, .. } => Some((digest, batch)),
            _ => None,
        }
    }

    /// Distinct senders of matching `Prepare`s (or `Commit`s) for `digest`.
    fn matching(map: &BTreeMap<NodeId, Signed>, digest: &Digest) -> Vec<Signed> {
        map.values()
            .filter(|m| match &m.body {
                Body::Prepare { digest: d, .. } | Body::Commit { digest: d, .. } => d == digest,
                _ => false,
            })
            .cloned()
            .collect()
    }

    /// A backup prepares a pre-prepared batch once it holds every request in
    /// it as a client sent it (or f+1 others vouched for the batch).
    fn try_prepare(&mut self, seq: u64) {
        let view = self.view;
        if self.changing || *self.primary(view) == self.cfg.id {
            return;
        }
        let Some((digest, batch)) = self.proposal(seq, view) else {
            return;
        };
        let digest = digest.clone();
        let votes = &self.slots[&seq].views[&view];
        if votes.sent_prepare {
            return;
        }
        // The primary's pre-prepare and f backups' prepares are f+1 replicas
        // vouching for the batch, so at least one correct one holds it.
        let primary = self.primary(view);
        let backups = Self::matching(&votes.prepares, &digest)
            .iter()
            .filter(|m| m.from != *primary)
            .count();
        let vouched = votes.vouched || self.cfg.bugs.has(Bug::TrustPrimary) || backups >= self.f;
        let digests = match &votes.client_digests {
            Some(d) => d.clone(),
            None => {
                let d: Vec<Digest> = batch.iter().map(Request::client_digest).collect();
                self.votes(seq, view).client_digests = Some(d.clone());
                d
            }
        };
        let Some((_, batch)) = self.proposal(seq, view) else {
            return;
        };
        let genuine = vouched
            || batch.iter().zip(&digests).all(|(r, digest)| {
                let executed = self
                    .replies
                    .get(&r.id.client)
                    .is_some_and(|(n, _)| *n >= r.id.number);
                executed
                    || self.pending.get(&r.id).is_some_and(|p| {
                        // The primary's clock stands in the command; it must
                        // be near this replica's own for the same request.
                        let close = match (p.request.now_ms(), r.now_ms()) {
                            (Some(a), Some(b)) => a.abs_diff(b) <= CLOCK_MARGIN_MS,
                            (a, b) => a == b,
                        };
                        p.digest == *digest && close
                    })
            });
        if !genuine {
            return;
        }
        self.votes(seq, view).sent_prepare = true;
        self.multicast(Body::Prepare { view, seq, digest });
    }

    /// Pre-prepares waiting on client copies are looked at again.
    fn retry_prepares(&mut self) {
        let waiting: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                s.committed.is_none()
                    && s.views
                        .get(&self.view)
                        .is_some_and(|v| v.pre_prepare.is_some() && !v.sent_prepare)
            })
            .map(|(seq, _)| *seq)
            .collect();
        for seq in waiting {
            self.try_prepare(seq);
            self.check_prepared(seq);
        }
    }

    /// The prepared certificate for `seq` in `view`, if there is one.
    fn certificate(&self, seq: u64, view: u64) -> Option<Prepared> {
        let votes = self.slots.get(&seq)?.views.get(&view)?;
        let pre_prepare = votes.pre_prepare.clone()?;
        let Body::PrePrepare { digest, .. } = &pre_prepare.body else {
            return None;
        };
        let primary = self.primary(view);
        let prepares: Vec<Signed> = Self::matching(&votes.prepares, digest)
            .into_iter()
            .filter(|m| m.from != *primary)
            .collect();
        (prepares.len() >= self.prepare_quorum()).then_some(Prepared {
            pre_prepare,
            prepares,
        })
    }

    fn check_prepared(&mut self, seq: u64) {
        let view = self.view;
        if self.changing || self.certificate(seq, view).is_none() {
            return;
        }
        let votes = self.votes(seq, view);
        if votes.sent_commit {
            return;
        }
        votes.sent_commit = true;
        let Some((digest, _)) = self.proposal(seq, view) else {
            return;
        };
        let digest = digest.clone();
        self.multicast(Body::Commit { view, seq, digest });
    }

    /// Marks `seq` committed once some view has a prepared certificate and
    /// 2f+1 matching commits for it.
    fn check_committed(&mut self, seq: u64) {
        let Some(slot) = self.slots.get(&seq) else {
            return;
        };
        if slot.committed.is_some() {
            return;
        }
        let mut found = None;
        // 2f+1 matching commits: f+1 correct replicas prepared the batch,
        // so it is committed (whether or not this replica prepared it).
        for (view, votes) in &slot.views {
            let Some((digest, batch)) = self.proposal(seq, *view) else {
                continue;
            };
            let commits = Self::matching(&votes.commits, digest);
            if commits.len() >= self.quorum() {
                let pp = votes
                    .pre_prepare
                    .clone()
                    .expect("a proposal has its pre-prepare");
                found = Some((batch.clone(), pp, commits));
            }
        }
        if let Some(c) = found {
            self.slots.entry(seq).or_default().committed = Some(c);
        }
    }

    /// Executes committed batches in sequence order and answers their clients.
    fn execute(&mut self) {
        while let Some(batch) = self
            .slots
            .get(&(self.executed + 1))
            .and_then(|s| s.committed.as_ref())
            .map(|(b, _, _)| b.clone())
        {
            self.executed += 1;
            for request in batch {
                self.execute_request(request);
            }
            self.progress_at = Instant::now();
            if self.executed.is_multiple_of(self.checkpoint_every) {
                self.take_checkpoint();
            }
        }
        self.next_seq = self.next_seq.max(self.executed + 1);
    }

    fn execute_request(&mut self, request: Request) {
        let id = request.id.clone();
        self.ordered.remove(&id);
        self.forwards.remove(&id);
        let last = self.replies.get(&id.client).map(|(n, _)| *n);
        if last.is_some_and(|n| n >= id.number) {
            return;
        }
        let result = match &request.op {
            Op::Command(c) => self.sm.apply(c),
            Op::Read(q) => self.sm.query(q),
        };
        self.replies
            .insert(id.client.clone(), (id.number, result.clone()));
        self.answer(&id, result);
    }

    /// Answers a client waiting here for request `id`.
    fn answer(&mut self, id: &RequestId, result: Value) {
        if let Some(p) = self.pending.remove(id) {
            let result = byzantine::as_reply(self.byzantine.get(), result);
            for r in p.replies {
                if let Some(result) = &result {
                    let _ = r.send(Reply::Ok(result.clone()));
                }
            }
        }
    }

    fn take_checkpoint(&mut self) {
        let state = json!({"machine": self.sm.snapshot(), "replies": self.replies});
        let digest = digest_of(&state);
        let seq = self.executed;
        self.checkpoints.entry(seq).or_default().own = Some((digest.clone(), state));
        self.multicast(Body::Checkpoint { seq, digest });
    }

    /// Makes the newest checkpoint 2f+1 replicas agree on stable: saves its
    /// state and drops the log up to it.
    fn maybe_stable(&mut self) -> std::io::Result<()> {
        let quorum = self.quorum();
        let stable = self.checkpoints.iter().rev().find_map(|(seq, c)| {
            let (digest, _) = c.own.as_ref()?;
            let proof: Vec<Signed> = c
                .votes
                .values()
                .filter(|m| matches!(&m.body, Body::Checkpoint { digest: d, .. } if d == digest))
                .cloned()
                .collect();
            (proof.len() >= quorum).then_some((*seq, proof))
        });
        if let Some((seq, proof)) = stable {
            let state = self.checkpoints[&seq]
                .own
                .as_ref()
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            self.install_stable(seq, proof, state)?;
        }
        Ok(())
    }

    fn install_stable(
        &mut self,
        seq: u64,
        proof: Vec<Signed>,
        state: Value,
    ) -> std::io::Result<()> {
        self.journal.append(&Record::Stable {
            seq,
            proof: proof.clone(),
        });
        self.journal.sync(self.fsync())?;
        Snapshot {
            last_index: seq,
            last_term: self.view,
            members: self.addrs.clone(),
            data: state.clone(),
        }
        .save(&self.cfg.data_dir, self.fsync())?;
        self.stable = seq;
        self.stable_proof = proof.clone();
        self.stable_state = state;
        self.slots = self.slots.split_off(&(seq + 1));
        self.checkpoints = self.checkpoints.split_off(&(seq + 1));
        let mut records = vec![
            Record::View {
                view: self.view,
                changing: self.changing,
            },
            Record::Stable { seq, proof },
        ];
        for slot in self.slots.values() {
            for votes in slot.views.values() {
                records.extend(votes.pre_prepare.iter().cloned().map(Record::Msg));
                records.extend(votes.prepares.values().cloned().map(Record::Msg));
                records.extend(votes.commits.values().cloned().map(Record::Msg));
            }
        }
        self.journal.rewrite(&records, self.fsync())
    }

    /// Notes that some replica committed or checkpointed `seq`: if it is new,
    /// the cluster is making progress (so no view change), and this replica
    /// may have to fetch.
    fn saw_seq(&mut self, seq: u64) {
        if seq > self.highest_seen {
            self.highest_seen = seq;
            self.seen_progress_at = Instant::now();
        }
    }

    fn saw_view(&mut self, from: &NodeId, view: u64) {
        let seen = self.seen_views.entry(from.clone()).or_default();
        *seen = (*seen).max(view);
        // f+1 replicas working in a later view: at least one correct replica
        // saw its new-view, so join it (the log catches up by fetching).
        let target = if self.changing {
            self.view
        } else {
            self.view + 1
        };
        let mut views: Vec<u64> = self
            .seen_views
            .iter()
            .filter(|(id, _)| **id != self.cfg.id)
            .map(|(_, v)| *v)
            .filter(|v| *v >= target)
            .collect();
        if views.len() > self.f {
            views.sort_unstable();
            let view = views[views.len() - 1 - self.f];
            self.enter_view(view, 0, Vec::new());
        }
    }

    fn on_fetch(&mut self, from: &NodeId, next: u64) {
        if next <= self.stable && self.stable > 0 {
            self.send_one(
                from,
                Body::State {
                    seq: self.stable,
                    proof: self.stable_proof.clone(),
                    state: self.stable_state.clone(),
                },
            );
        }
        let first = next.max(self.stable + 1);
        for seq in first..first.saturating_add(FETCH_MAX).min(self.executed + 1) {
            let Some((_, pp, commits)) = self.slots.get(&seq).and_then(|s| s.committed.clone())
            else {
                break;
            };
            self.send_one(
                from,
                Body::Committed {
                    pre_prepare: Box::new(pp),
                    commits,
                },
            );
        }
    }

    /// Checks a pre-prepare's authenticity and that its digest is its batch's:
    /// the view, sequence number, digest and batch.
    fn valid_pre_prepare(&self, pp: &Signed) -> Option<(u64, u64, Digest, message::Batch)> {
        let Body::PrePrepare {
            view,
            seq,
            digest,
            batch,
        } = &pp.body
        else {
            return None;
        };
        let ok =
            self.keys.verify(pp) && pp.from == *self.primary(*view) && *digest == digest_of(batch);
        ok.then(|| (*view, *seq, digest.clone(), batch.clone()))
    }

    /// Distinct authentic senders among `msgs` whose body passes `matches`.
    fn count_valid(&self, msgs: &[Signed], matches: impl Fn(&Body) -> bool) -> usize {
        msgs.iter()
            .filter(|m| self.members.contains(&m.from) && self.keys.verify(m) && matches(&m.body))
            .map(|m| &m.from)
            .collect::<BTreeSet<_>>()
            .len()
    }

    fn on_committed(&mut self, msg: Signed) {
        let Body::Committed {
            pre_prepare,
            commits,
        } = msg.body
        else {
            return;
        };
        let pre_prepare = *pre_prepare;
        let Some((view, seq, digest, batch)) = self.valid_pre_prepare(&pre_prepare) else {
            self.drop_message(&msg.from, "a committed proof with a bad pre-prepare");
            return;
        };
        let n = self.count_valid(&commits, |b| {
            matches!(b, Body::Commit { view: v, seq: s, digest: d } if *v == view && *s == seq && *d == digest)
        });
        if n < self.quorum() {
            self.drop_message(&msg.from, "a committed proof without a quorum of commits");
            return;
        }
        if seq <= self.executed || self.slots.get(&seq).is_some_and(|s| s.committed.is_some()) {
            return;
        }
        self.journal.append(&Record::Msg(pre_prepare.clone()));
        for c in &commits {
            self.journal.append(&Record::Msg(c.clone()));
        }
        let votes = self.votes(seq, view);
        votes.pre_prepare = Some(pre_prepare.clone());
        for c in &commits {
            votes.commits.insert(c.from.clone(), c.clone());
        }
        self.slots.entry(seq).or_default().committed = Some((batch, pre_prepare, commits));
    }

    fn on_state(&mut self, msg: Signed) {
        let Body::State { seq, proof, state } = msg.body else {
            return;
        };
        if seq <= self.executed {
            return;
        }
        let digest = digest_of(&state);
        let n = self.count_valid(
            &proof,
            |b| matches!(b, Body::Checkpoint { seq: s, digest: d } if *s == seq && *d == digest),
        );
        if n < self.quorum() {
            self.drop_message(
                &msg.from,
                "a state without a quorum of matching checkpoints",
            );
            return;
        }
        let replies = serde_json::from_value(state["replies"].clone());
        let (Ok(replies), Ok(())) = (replies, self.sm.restore(&state["machine"])) else {
            self.drop_message(&msg.from, "a state this replica cannot restore");
            return;
        };
        self.replies = replies;
        self.executed = seq;
        self.next_seq = self.next_seq.max(seq + 1);
        self.progress_at = Instant::now();
        log_line!(
            self.cfg.who(),
            "installed the state at checkpoint {seq} from {}",
            msg.from
        );
        // Clients waiting on requests the state already holds hear their results.
        let done: Vec<(RequestId, Value)> = self
            .pending
            .keys()
            .filter_map(|id| match self.replies.get(&id.client) {
                Some((n, r)) if *n == id.number => Some((id.clone(), r.clone())),
                _ => None,
            })
            .collect();
        for (id, r) in done {
            self.answer(&id, r);
        }
        if let Err(e) = self.install_stable(seq, proof, state) {
            log_line!(self.cfg.who(), "storage failure: {e}; stopping");
            std::process::exit(70);
        }
    }

    fn tick(&mut self, now: Instant) {
        if now >= self.fetch_due {
            self.fetch_due = now + self.cfg.heartbeat;
            // Behind what others committed, and not moving: ask a peer.
            if self.highest_seen > self.executed && now - self.progress_at >= self.cfg.heartbeat {
                let peers: Vec<NodeId> = self
                    .members
                    .iter()
                    .filter(|m| **m != self.cfg.id)
                    .cloned()
                    .collect();
                self.fetch_turn = (self.fetch_turn + 1) % peers.len();
                let to = peers[self.fetch_turn].clone();
                self.send_one(
                    &to,
                    Body::Fetch {
                        next: self.executed + 1,
                    },
                );
            }
            if now - self.progress_at >= self.cfg.heartbeat {
                self.retransmit();
            }
            self.pass_on_waiting(now);
            if self.byzantine.get() == Some(Behaviour::Replay) && !self.sent_log.is_empty() {
                let i = (self.random() as usize) % self.sent_log.len();
                let old = self.sent_log[i].clone();
                for to in self.members.clone() {
                    if to != self.cfg.id {
                        self.after_sync.push((to, old.clone()));
                    }
                }
            }
            let lifetime = self.cfg.election_timeout * PENDING_LIFETIME;
            self.pending.retain(|_, p| now - p.since < lifetime);
        }
        let stalled = !self.pending.is_empty()
            && self
                .pending
                .values()
                .any(|p| now - p.since >= self.vc_timeout)
            && now - self.progress_at >= self.vc_timeout;
        if now < self.vc_deadline {
            return;
        }
        if self.changing {
            // PBFT's rule: go past the view being changed to only once a
            // quorum wants it (its primary failed to start it); until then
            // say so again, so a replica cut off does not run ahead alone.
            let wanted = self.view_changes.get(&self.view).map_or(0, |m| m.len());
            if wanted >= self.quorum() {
                let next = self.view + 1;
                self.start_view_change(next, now);
            } else {
                self.vc_deadline = now + self.vc_timeout;
                let own = self
                    .view_changes
                    .get(&self.view)
                    .and_then(|m| m.get(&self.cfg.id))
                    .cloned();
                if let Some(own) = own {
                    for to in self.members.clone() {
                        if to != self.cfg.id {
                            self.after_sync.push((to, own.clone()));
                        }
                    }
                }
            }
        } else if stalled {
            let next = self.view + 1;
            self.start_view_change(next, now);
        } else {
            self.vc_deadline = now + self.vc_timeout;
        }
    }

    /// A backup passes to the primary the client requests that waited half a
    /// view-change timeout here without being ordered (once each per view).
    fn pass_on_waiting(&mut self, now: Instant) {
        if self.changing || self.is_primary() {
            return;
        }
        let wait = self.vc_timeout / 2;
        let view = self.view;
        let mut late: Vec<Request> = self
            .pending
            .values_mut()
            .filter(|p| now - p.since >= wait && p.passed_on != Some(view))
            .map(|p| {
                p.passed_on = Some(view);
                p.request.clone()
            })
            .collect();
        late.retain(|r| !self.ordered_here(&r.id));
        let primary = self.primary(view).clone();
        for r in late {
            self.send_one(&primary, Body::Request(r));
        }
    }

    /// Whether a pre-prepare of this view holds request `id`.
    fn ordered_here(&self, id: &RequestId) -> bool {
        self.slots.range(self.executed + 1..).any(|(_, s)| {
            s.views.get(&self.view).is_some_and(|v| {
                matches!(&v.pre_prepare, Some(Signed { body: Body::PrePrepare { batch, .. }, .. })
                    if batch.iter().any(|r| r.id == *id))
            })
        })
    }

    /// Sends again this replica's own votes for the first sequence numbers
    /// it has not executed, and its newest checkpoint: messages lost to a
    /// crash or a cut link would otherwise hold the log up until a view change.
    fn retransmit(&mut self) {
        if self.changing || self.byzantine.get() == Some(Behaviour::Silent) {
            return;
        }
        let me = self.cfg.id.clone();
        let mut again = Vec::new();
        for slot in self
            .slots
            .range(self.executed + 1..)
            .take(RETRANSMIT_MAX)
            .map(|(_, s)| s)
        {
            if let Some(votes) = slot.views.get(&self.view) {
                again.extend(votes.pre_prepare.iter().filter(|m| m.from == me).cloned());
                again.extend(votes.prepares.get(&me).cloned());
                again.extend(votes.commits.get(&me).cloned());
            }
        }
        if let Some((_, c)) = self.checkpoints.iter().next_back() {
            again.extend(c.votes.get(&me).cloned());
        }
        for msg in again {
            for to in self.members.clone() {
                if to != me {
                    self.after_sync.push((to, msg.clone()));
                }
            }
        }
    }

    fn status(&self) -> Status {
        Status {
            id: self.cfg.id.clone(),
            role: if self.changing {
                "view-change"
            } else if self.is_primary() {
                "leader"
            } else {
                "follower"
            },
            term: self.view,
            leader: (!self.changing).then(|| self.primary(self.view).clone()),
            commit_index: self.executed,
            applied_index: self.executed,
            last_index: self
                .slots
                .keys()
                .next_back()
                .copied()
                .unwrap_or(0)
                .max(self.executed),
            members: self.members.clone(),
            member_addrs: self.addrs.clone(),
            bugs: self.cfg.bugs.names(),
        }
    }
}

/// `CLIENT:NUMBER` as a request id.
pub fn parse_request_id(s: &str) -> Option<RequestId> {
    let (client, number) = s.rsplit_once(':')?;
    if client.is_empty() || client.len() > 256 {
        return None;
    }
    Some(RequestId {
        client: client.to_string(),
        number: number.parse().ok()?,
    })
}

#[cfg(test)]
mod tests;
