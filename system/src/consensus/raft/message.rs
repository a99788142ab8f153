//! Raft's messages. Every message is one-way; replies are messages too, so each
//! directed link carries one direction of the conversation.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::{Entry, Members};

/// A message between nodes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Message {
    /// A candidate asks for a vote.
    Vote {
        /// Candidate's term.
        term: u64,
        /// Index of its last log entry.
        last_index: u64,
        /// Term of its last log entry.
        last_term: u64,
    },
    /// Would the receiver vote for the sender in `term` (our term + 1)? Asked
    /// before campaigning, without changing anyone's term (Raft thesis 9.6), so a
    /// node that cannot win, such as one just back from a partition, never raises
    /// the term and deposes a working leader.
    PreVote {
        /// The term the sender would campaign in.
        term: u64,
        /// Index of its last log entry.
        last_index: u64,
        /// Term of its last log entry.
        last_term: u64,
    },
    /// Answer to [`Message::PreVote`].
    PreVoteReply {
        /// The term asked about when granted; the voter's own term when refused.
        term: u64,
        /// Whether the voter would vote.
        granted: bool,
    },
    /// Answer to [`Message::Vote`].
    VoteReply {
        /// Voter's term.
        term: u64,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// Log entries (or none, as a heartbeat) from the leader.
    Append {
        /// Leader's term.
        term: u64,
        /// Index of the entry before `entries`.
        prev_index: u64,
        /// Its term.
        prev_term: u64,
        /// Entries to append.
        entries: Vec<Entry>,
        /// Leader's commit index.
        commit: u64,
        /// Read round to echo back (ReadIndex).
        read_seq: u64,
    },
    /// Answer to [`Message::Append`].
    AppendReply {
        /// Follower's term.
        term: u64,
        /// Whether the entries now match.
        success: bool,
        /// On success, the last index known to match the leader's log.
        match_index: u64,
        /// On failure, where the leader should retry from.
        hint: u64,
        /// The echoed read round.
        read_seq: u64,
    },
    /// The leader's snapshot, for a follower behind the compacted log.
    Snapshot {
        /// Leader's term.
        term: u64,
        /// Last index covered.
        last_index: u64,
        /// Its term.
        last_term: u64,
        /// Members as of `last_index`.
        members: Members,
        /// State machine data.
        data: Value,
    },
    /// Answer to [`Message::Snapshot`].
    SnapshotReply {
        /// Follower's term.
        term: u64,
        /// Index the follower now has up to.
        last_index: u64,
    },
}
