//! The sharded store (`--shards S --replicas R`): the transactional key space
//! and the KV split into shards on a consistent-hash ring, each shard its own
//! consensus group on R of the nodes, and transactions across shards by
//! two-phase commit with strict two-phase locking (wait-die), the decisions
//! kept in the node's main group.

pub mod api;
mod coordinator;
mod participant;
mod placement;
mod rpc;

pub use coordinator::{crash, TxnError};
pub use participant::{Age, DecisionService, ShardService};
pub use placement::{Placement, ShardInfo};
pub use rpc::{Answer, Kind, ShardMessage, Shards};
