//! The resilience patterns as a service mesh: service instances
//! (`faultline-node --service NAME`, [`instance`]) register in the cluster's
//! registry ([`crate::services::registry`]); every node's sidecar
//! ([`sidecar`]) sends `/mesh/{service}/...` requests to them through the
//! policies of [`policy`] (balancers, circuit breakers, retries with backoff
//! and a budget, deadlines, bulkheads, health checks with a phi detector),
//! tracing each hop ([`trace`]).

pub mod api;
pub mod instance;
pub mod policy;
pub mod sidecar;
pub mod trace;

pub use sidecar::{MeshConfig, Sidecar};
