//! Consensus: the replicated log that orders every command the node applies.
//!
//! The node, its HTTP layer and its services ask consensus for things only
//! through [`Consensus`], so another protocol (Multi-Paxos, PBFT) can stand where
//! Raft stands without them changing. A protocol drives a [`StateMachine`] and
//! knows nothing of the services behind it.

pub mod inbox;
pub mod paxos;
pub mod pbft;
pub mod raft;
mod state_machine;

pub use state_machine::StateMachine;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::bugs::Bugs;
use crate::types::{Members, NodeId};

tokio::task_local! {
    /// The client's id for the HTTP request being served (`x-request-id`), which
    /// PBFT uses to tell one request reaching every replica from two requests.
    pub static REQUEST_ID: Option<String>;
}

/// What any replicated log offers the node: ordered commands, linearizable reads,
/// membership changes and a view of the cluster. Each call only hands the request
/// over (it never blocks); the answer comes on the returned channel.
pub trait Consensus: Send + Sync {
    /// Orders `command`; the answer is the state machine's result once applied.
    fn propose(&self, command: Value) -> Asked<Reply>;
    /// Answers `query` from a state that holds every write acknowledged before
    /// the read began (a read barrier, then the query).
    fn read(&self, query: Value) -> Asked<Reply>;
    /// Adds member `id`, reached by peers at `addr`.
    fn join(&self, id: NodeId, addr: String) -> Asked<Reply>;
    /// Removes member `id`.
    fn leave(&self, id: NodeId) -> Asked<Reply>;
    /// This node's view of the cluster.
    fn status(&self) -> Asked<Status>;
}

/// A request handed over (its answer will come on the receiver) or refused.
pub type Asked<T> = Result<oneshot::Receiver<T>, Refused>;

/// Why a request was not even handed over; nothing was proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue of requests is full.
    Overloaded,
    /// Consensus has stopped.
    Stopped,
}

/// How a request to consensus ended.
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
    /// Refused because doing it would be unsafe now (definite; nothing proposed).
    Refused(String),
}

/// The node's view of the cluster, for `/cluster/status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// `leader`, `follower` or `candidate` (and the protocol's own, such as
    /// Raft's `pre-candidate`).
    pub role: &'static str,
    /// The protocol's epoch, which at most one leader holds: Raft's term (a
    /// view or a ballot elsewhere).
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
    /// Their peer addresses as the configuration in force records them (what a
    /// tool removing a member passes back to `join` to restore it).
    pub member_addrs: std::collections::BTreeMap<NodeId, String>,
    /// Planted bugs switched on.
    pub bugs: Vec<&'static str>,
}

/// Settings of one node's consensus, whichever the protocol.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// Where its state lives.
    pub data_dir: PathBuf,
    /// The initial members and their peer addresses (used until the log says otherwise).
    pub members: Members,
    /// Addresses this node uses for peers, overriding the log's (a proxy per link).
    pub peer_addrs: BTreeMap<NodeId, String>,
    /// Election (or leader failure) timeout; each is random in [t, 2t].
    pub election_timeout: Duration,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Applied entries between snapshots.
    pub snapshot_every: u64,
    /// Bytes of snapshot text per message.
    pub snapshot_chunk: usize,
    /// Planted bugs.
    pub bugs: Bugs,
    /// Which of the node's groups this is: 0 for the main one, a shard's
    /// number otherwise (`--shards`).
    pub group: u32,
}

impl Config {
    /// How this group's log lines name it: the node id, and `/sN` for shard N,
    /// so each group's elections are told apart in one node's log.
    pub fn who(&self) -> String {
        if self.group == 0 {
            self.id.clone()
        } else {
            format!("{}/s{}", self.id, self.group)
        }
    }
}

/// The protocols a node can order its log with (`--consensus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Raft: pre-vote, durable log, snapshots, membership changes.
    #[default]
    Raft,
    /// Multi-Paxos: a distinguished proposer, fixed membership.
    Paxos,
    /// PBFT: 3f+1 replicas tolerating f Byzantine ones, fixed membership.
    Pbft,
}

impl Protocol {
    /// Every protocol, as `--consensus` names it.
    pub const ALL: &'static [Protocol] = &[Protocol::Raft, Protocol::Paxos, Protocol::Pbft];

    /// The `--consensus` name.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Raft => "raft",
            Protocol::Paxos => "paxos",
            Protocol::Pbft => "pbft",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Protocol, String> {
        Protocol::ALL
            .iter()
            .copied()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown consensus `{s}` (known: raft, paxos, pbft)"))
    }
}
