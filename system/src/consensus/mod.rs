//! Consensus: the replicated log that orders every command the node applies.

pub mod raft;
mod state_machine;

pub use state_machine::StateMachine;
