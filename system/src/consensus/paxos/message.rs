//! Multi-Paxos's messages between nodes, and the ballots that order leaderships.

use crate::types::{Members, NodeId, Payload};
use serde::{Deserialize, Serialize};

/// A leadership's number: rounds compare first, then the proposer's id, so two
/// proposers never share a ballot.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    /// Grows with every attempt to lead.
    pub round: u64,
    /// The proposer that owns the ballot.
    pub leader: NodeId,
}

/// A value accepted in a slot, and the ballot it was accepted in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accepted {
    /// The slot.
    pub slot: u64,
    /// The ballot of the accept.
    pub ballot: Ballot,
    /// The value.
    pub value: Payload,
}

/// What Paxos nodes say to each other.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Message {
    /// Phase 1a: promise to ignore lower ballots, and tell me what you accepted
    /// in every slot from `from_slot` on.
    Prepare {
        /// The candidate's ballot.
        ballot: Ballot,
        /// The first slot the candidate does not know chosen.
        from_slot: u64,
    },
    /// Phase 1b, sent once the promise is durable.
    Promise {
        /// The ballot promised.
        ballot: Ballot,
        /// Every value accepted from the prepare's `from_slot` on.
        accepted: Vec<Accepted>,
        /// Slots up to here are compacted into this acceptor's snapshot; a
        /// candidate that needs them must first install it.
        snapshot: u64,
    },
    /// Phase 2a for a batch of slots; with no entries, a heartbeat. Carries the
    /// leader's commit point (so learners learn) and a read round (so reads are
    /// confirmed).
    Accept {
        /// The leader's ballot.
        ballot: Ballot,
        /// Values proposed, by slot.
        entries: Vec<(u64, Payload)>,
        /// Every slot up to here is chosen.
        commit: u64,
        /// The leader's latest read round.
        seq: u64,
    },
    /// Phase 2b, sent once the accepted values are durable.
    AcceptedSlots {
        /// The ballot the values were accepted in.
        ballot: Ballot,
        /// Which slots.
        slots: Vec<u64>,
        /// The acceptor's own commit point, so the leader knows what to resend.
        commit: u64,
        /// The read round echoed.
        seq: u64,
    },
    /// Refusal: the acceptor has promised a higher ballot.
    Nack {
        /// The ballot refused.
        ballot: Ballot,
        /// The ballot promised instead.
        promised: Ballot,
    },
    /// Chosen values for a learner that is behind.
    Chosen {
        /// The sender's ballot.
        ballot: Ballot,
        /// Values by slot, all chosen.
        entries: Vec<(u64, Payload)>,
    },
    /// Part of the state machine up to `index`, for a learner behind
    /// compaction: its JSON text in chunks (so no state outgrows the frame
    /// cap), sent in order on one link.
    Snapshot {
        /// Last slot the state covers.
        index: u64,
        /// Members as of then.
        members: Members,
        /// Where this chunk starts in the text, in bytes.
        offset: u64,
        /// The chunk.
        chunk: String,
        /// Whether it is the last.
        done: bool,
    },
}
