//! Raft's messages. Every message is one-way; replies are messages too, so each
//! directed link carries one direction of the conversation.

use serde::{Deserialize, Serialize};

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
        /// The leader's last index: an upper bound of everything committed,
        /// which a node repairing damage of unknown extent must reach.
        #[serde(default)]
        leader_last: u64,
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
        /// On failure: the follower's log lost entries to damage, so it may
        /// now lack entries it once acknowledged (the leader must rewind
        /// below what it believed matched).
        #[serde(default)]
        lost: bool,
    },
    /// One chunk of the leader's snapshot, for a follower behind the compacted
    /// log. The state travels as JSON text cut into chunks, so no frame grows
    /// with the state (frames are capped, see `transport::MAX_FRAME`).
    Snapshot {
        /// Leader's term.
        term: u64,
        /// Last index covered.
        last_index: u64,
        /// Its term.
        last_term: u64,
        /// Members as of `last_index`.
        members: Members,
        /// Where `chunk` starts in the state's JSON text.
        offset: u64,
        /// A piece of that text, cut at a character boundary.
        chunk: String,
        /// Whether `chunk` ends the text.
        done: bool,
        /// Read round to echo back (ReadIndex), as in `Append`.
        #[serde(default)]
        read_seq: u64,
        /// The leader's last index, as in `Append`.
        #[serde(default)]
        leader_last: u64,
    },
    /// Answer to [`Message::Snapshot`].
    SnapshotReply {
        /// Follower's term.
        term: u64,
        /// Index the follower now has up to.
        last_index: u64,
        /// Bytes of the snapshot at `of_index` received so far: where the next
        /// chunk should start.
        #[serde(default)]
        offset: u64,
        /// Which snapshot `offset` counts (its last index).
        #[serde(default)]
        of_index: u64,
        /// The echoed read round.
        #[serde(default)]
        read_seq: u64,
    },
    /// Tells a node that asked for votes that a committed configuration no longer
    /// holds it, so it stops campaigning (Raft thesis 4.2.3: a removed server
    /// never hears of its removal otherwise).
    Removed {
        /// Sender's term.
        term: u64,
        /// The configuration in force on the sender.
        members: Members,
        /// How recent it is: the index of its config entry, or the snapshot's
        /// last index when it came from a snapshot.
        version: u64,
    },
}
