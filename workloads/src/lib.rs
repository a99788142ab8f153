//! Faultline workloads: one module per workload, each owning its generator, its
//! client and its checkers, registered in [`WORKLOADS`]. The harness drives them
//! through the small traits here and knows nothing workload-specific.

pub mod bank;
pub mod cache;
pub mod etcd;
pub mod events;
mod findings;
mod http;
pub mod kv;
pub mod lock;
pub mod maelstrom;
pub mod mesh;
pub mod messaging;
pub mod queue;
pub mod redis;
pub mod rng;
pub mod saga;
pub mod txn;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use checker::{CheckOptions, History, Validity};
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

/// Refusals that are the system's answer, not a sign it was unavailable: the
/// op was judged and declined (a cas whose expected value did not match, a
/// lock someone else holds, an ack of a message not delivered).
pub const ANSWERS: &[&str] = &[
    "precondition-failed",
    "busy",
    "queued",
    "deadlock",
    "not-owner",
    "stale-token",
    "not-delivered",
    "dead-lettered",
    "wrong-expected-version",
];

/// True when a failure's error is one of [`ANSWERS`] (the code may be
/// followed by `: detail`).
pub fn is_answer(error: &str) -> bool {
    let code = error.split(':').next().unwrap_or_default().trim();
    ANSWERS.contains(&code)
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
    /// The next operation for `process`, or `None` when the workload has no more.
    fn next(&mut self, process: u64, rng: &mut Rng) -> Option<Invocation>;
    /// Hears how `process`'s op ended, for workloads whose processes follow a
    /// protocol (take a lock, use it, give it back). An `info` retires the process.
    fn completed(&mut self, _process: u64, _op: &Invocation, _done: &Completion) {}
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
    /// The system under test, for workloads that speak more than the builtin API.
    pub target: Target,
    /// Nodes in the cluster (`n1` ... `nN`), for workloads that read each one at the end.
    pub nodes: usize,
}

/// Which system the clients talk to.
#[derive(Clone, Debug, Default)]
pub enum Target {
    /// The Faultline reference system (HTTP/JSON, docs/node-api.md).
    #[default]
    Builtin,
    /// Redis: the first node is the primary, the rest its replicas, unless
    /// sentinels are given: then they name the primary.
    Redis {
        /// Read from the replicas instead of the primary.
        replica_reads: bool,
        /// The sentinels clients ask for the primary (target `redis-sentinel`).
        sentinels: Option<redis::Sentinels>,
    },
    /// etcd through its v3 HTTP/JSON gateway.
    Etcd {
        /// Serializable reads (served locally by any member) instead of linearizable.
        serializable: bool,
    },
    /// The reference system under PBFT: every request goes to all replicas and
    /// an answer needs f+1 of them alike.
    Bft {
        /// Faulty replicas tolerated (n = 3f+1).
        f: usize,
    },
    /// Processes speaking Maelstrom's protocol, reached through the harness's router.
    Maelstrom(maelstrom::Link),
    /// Clients the harness's target module brings, for a system whose API is
    /// described (a user's own) rather than coded in this crate.
    Supplied(Arc<dyn SuppliedClients>),
}

/// Clients a target supplies for the workloads it speaks.
pub trait SuppliedClients: Send + Sync + std::fmt::Debug {
    /// The client of workload `workload` for these nodes, if the system speaks it.
    fn client(
        &self,
        workload: &str,
        nodes: Vec<Endpoint>,
        options: &WorkloadOptions,
    ) -> Option<Arc<dyn Client>>;
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
    /// Extra flags for every node of the system under test (e.g. a small cache).
    fn node_args(&self) -> Vec<String> {
        Vec::new()
    }
    /// Application services the workload needs beside the cluster, as
    /// (name, instances): each instance is a `faultline-node --service NAME`
    /// process the harness starts, registers in the cluster's registry and
    /// aims the faults at (the mesh's backends).
    fn services(&self) -> &'static [(&'static str, usize)] {
        &[]
    }
    /// Checks a finished run's history: by default, linearizability against
    /// [`Workload::model`]. Each entry of the answer is one checker's result.
    fn check(&self, history: &History, options: &CheckOptions) -> Result<Checked, String> {
        let lin =
            checker::check_named(self.model(), history, options).map_err(|e| e.to_string())?;
        let mut checked = Checked::default();
        checked.add("linearizable", lin.result());
        Ok(checked)
    }
}

/// What a workload's checkers found.
#[derive(Debug, Clone)]
pub struct Checked {
    /// All checkers together.
    pub valid: Validity,
    /// Checker name to its result (each with `valid` and `summary`).
    pub checkers: serde_json::Map<String, Value>,
}

impl Default for Checked {
    fn default() -> Self {
        Checked {
            valid: Validity::Valid,
            checkers: serde_json::Map::new(),
        }
    }
}

impl Checked {
    /// Adds one checker's result; its verdict joins the others.
    pub fn add(&mut self, name: &str, result: checker::CheckerResult) {
        self.valid = self.valid.merge(result.valid);
        self.checkers.insert(name.to_string(), result.to_value());
    }
}

/// Builds a workload.
pub type MakeWorkload = fn() -> Box<dyn Workload>;

/// Every workload: name, what it does, constructor.
pub const WORKLOADS: &[(&str, &str, MakeWorkload)] = &[
    (
        "kv",
        "read/write/cas on independent keys of the Raft KV, checked for linearizability (model kv)",
        || Box::new(kv::Kv),
    ),
    (
        "lock",
        "leased locks guarding fenced registers: mutual exclusion (model mutex), fencing tokens, stale writes, deadlocks",
        || Box::new(lock::LockWorkload),
    ),
    (
        "queue",
        "broker topics with two consumer groups, crashes before ack and poison messages: nothing lost, order, redelivery, dead letters",
        || Box::new(queue::QueueWorkload),
    ),
    (
        "cache",
        "read-through cache over the Raft KV with invalidating and bypassing writers: stale reads, TTL, capacity, convergence",
        || Box::new(cache::CacheWorkload),
    ),
    (
        "txn",
        "list-append transactions on the node's /txn route: Elle-style anomalies (G0 ... G2-item, real-time), strict serializability",
        || Box::new(txn::TxnWorkload(checker::txn::Kind::ListAppend)),
    ),
    (
        "bank",
        "transfers between accounts and reads of them all, as transactions: every read sees the opening total, no negative balance (Jepsen's bank)",
        || Box::new(bank::BankWorkload),
    ),
    (
        "events",
        "appenders racing on streams with expected versions, readers, catch-up subscribers: acknowledged appends kept once, one winner per version, global order, subscriptions without gaps, projection and snapshots equal to replay",
        || Box::new(events::EventsWorkload),
    ),
    (
        "saga",
        "orders run as sagas (reserve, charge, ship; release, refund, cancel) with failing steps and lost replies: every saga ends completed or compensated, none partial, no double charge, stock and money conserved",
        || Box::new(saga::SagaWorkload),
    ),
    (
        "messaging",
        "members sending to one another and broadcasting through the cluster's mailboxes: acknowledged sends delivered, every broadcast delivered once everywhere, nothing altered or invented",
        || Box::new(messaging::MessagingWorkload),
    ),
    (
        "mesh",
        "requests through every node's sidecar to service instances that are killed, paused, cut off and browned out: breakers open in time and admit only probes, retries within tries, budget and deadline, no traffic to instances known dead, one trace tree per request",
        || Box::new(mesh::MeshWorkload),
    ),
    (
        "echo",
        "Maelstrom's echo: every reply carries back what was sent (--target maelstrom)",
        || Box::new(maelstrom::echo::Echo),
    ),
    (
        "unique-ids",
        "Maelstrom's unique-ids: ids handed out by any node, none twice (--target maelstrom)",
        || Box::new(maelstrom::unique_ids::UniqueIds),
    ),
    (
        "broadcast",
        "Maelstrom's broadcast over a --topology: every acknowledged message reaches every node (set-full: stable, lost, never read, latencies) (--target maelstrom)",
        || Box::new(maelstrom::broadcast::SetWorkload(maelstrom::broadcast::Flavor::Broadcast)),
    ),
    (
        "g-set",
        "Maelstrom's grow-only set: every acknowledged element in every node's final read (set-full) (--target maelstrom)",
        || Box::new(maelstrom::broadcast::SetWorkload(maelstrom::broadcast::Flavor::GSet)),
    ),
    (
        "g-counter",
        "Maelstrom's grow-only counter: every node's final read within what the adds allow (--target maelstrom)",
        || Box::new(maelstrom::counter::Counter { negative: false }),
    ),
    (
        "pn-counter",
        "Maelstrom's counter with negative deltas: every node's final read within what the adds allow (--target maelstrom)",
        || Box::new(maelstrom::counter::Counter { negative: true }),
    ),
    (
        "kafka",
        "Maelstrom's kafka-style logs: no offset with two messages, no message twice, no lost or skipped message, offsets only forward (--target maelstrom)",
        || Box::new(maelstrom::kafka::Kafka),
    ),
    (
        "txn-rw-register",
        "read/write-register transactions on the same route: the anomalies the register reads reveal",
        || Box::new(txn::TxnWorkload(checker::txn::Kind::RwRegister)),
    ),
];

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

#[cfg(test)]
mod tests {
    use super::is_answer;

    #[test]
    fn refusals_that_answer_are_told_from_unavailability() {
        for e in [
            "precondition-failed",
            "precondition-failed: error 22: expected 3, had 4",
            "busy",
            "stale-token",
        ] {
            assert!(is_answer(e), "{e}");
        }
        for e in [
            "not-leader",
            "connect failed",
            "timeout",
            "no reply",
            "error 11: temporarily unavailable",
            "READONLY You can't write against a read only replica.",
            "",
        ] {
            assert!(!is_answer(e), "{e}");
        }
    }
}
