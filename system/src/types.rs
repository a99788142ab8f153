//! Types shared by Raft, storage and transport.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A node's name, e.g. `n1`.
pub type NodeId = String;

/// Cluster members and the address each one's peer listener is reached at.
pub type Members = BTreeMap<NodeId, String>;

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Payload {
    /// Appended by a new leader so it can commit (and serve reads) in its term.
    Noop,
    /// A state-machine command.
    Command {
        /// The command, opaque to Raft.
        command: Value,
    },
    /// A new membership (single-server change), in force once appended.
    Config {
        /// Every member after the change.
        members: Members,
    },
}

/// One Raft log entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, from 1.
    pub index: u64,
    /// Term of the leader that created it.
    pub term: u64,
    /// What it carries.
    #[serde(flatten)]
    pub payload: Payload,
}
