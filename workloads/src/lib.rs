//! Faultline workloads: one module per workload, each owning its generator, its
//! client and its checkers, registered in [`WORKLOADS`]. The harness drives them
//! through the small traits here and knows nothing workload-specific.

pub mod kv;
pub mod rng;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

pub use rng::Rng;

/// A boxed future, so the traits stay object-safe.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An operation to invoke, as the history records it.
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    /// Operation name (`read`, `write`, `cas`, ...).
    pub f: String,
    /// The key, for workloads over independent keys.
    pub key: Option<String>,
    /// The argument (`null` for a read).
    pub value: Value,
}

/// How an invocation ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Completion {
    /// Took effect; the result.
    Ok(Value),
    /// Certainly did not take effect; why.
    Fail(String),
    /// Unknown; why.
    Info(String),
}

/// A node a client can talk to.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Node id.
    pub id: String,
    /// Base URL of its client API, e.g. `http://127.0.0.1:7001`.
    pub url: String,
}

/// One logical client process's connection state.
pub trait Session: Send {
    /// Performs `op`; returns the completion and the node that answered.
    fn invoke<'a>(&'a mut self, op: &'a Invocation) -> BoxFut<'a, (Completion, Option<String>)>;
}

/// Makes sessions for client processes.
pub trait Client: Send + Sync {
    /// A session for process `process`.
    fn open(&self, process: u64) -> Box<dyn Session>;
}

/// Produces the operations of a test; shared by all processes.
pub trait Generator: Send {
    /// The next operation, or `None` when the workload has no more.
    fn next(&mut self, rng: &mut Rng) -> Option<Invocation>;
    /// Operations to run after faults are healed (e.g. a final read of every key).
    fn final_ops(&self) -> Vec<Invocation>;
}

/// Settings a workload's generator and client take from the command line.
#[derive(Clone, Debug)]
pub struct WorkloadOptions {
    /// Keys in use at once.
    pub keys: usize,
    /// Operations per key before it is retired for a fresh one.
    pub ops_per_key: usize,
    /// How long a client waits for one answer before recording `info`.
    pub op_timeout: std::time::Duration,
}

/// A workload: what to run and how to check it.
pub trait Workload: Send + Sync {
    /// Its `--workload` name.
    fn name(&self) -> &'static str;
    /// The generator for this run.
    fn generator(&self, options: &WorkloadOptions) -> Box<dyn Generator>;
    /// The client for these nodes.
    fn client(&self, nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client>;
    /// The checker model for its history (`harness check --model`).
    fn model(&self) -> &'static str;
}

/// Builds a workload.
pub type MakeWorkload = fn() -> Box<dyn Workload>;

/// Every workload: name, what it does, constructor.
pub const WORKLOADS: &[(&str, &str, MakeWorkload)] = &[(
    "kv",
    "read/write/cas on independent keys of the Raft KV, checked for linearizability (model kv)",
    || Box::new(kv::Kv),
)];

/// The workload called `name`.
pub fn workload(name: &str) -> Result<Box<dyn Workload>, String> {
    WORKLOADS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, make)| make())
        .ok_or_else(|| {
            let names: Vec<&str> = WORKLOADS.iter().map(|(n, _, _)| *n).collect();
            format!("unknown workload `{name}` (known: {})", names.join(", "))
        })
}
