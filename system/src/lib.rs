//! The Faultline reference system: one node binary carrying the distributed-systems
//! patterns under test: a durable Raft or Multi-Paxos log carrying a key-value
//! store, a lock manager, a message broker and a distributed cache. It depends on
//! none of the harness crates: the system under test knows nothing of its tester.

pub mod bugs;
pub mod clock;
pub mod consensus;
pub mod http;
pub mod node;
pub mod ring;
pub mod services;
pub mod storage;
pub mod transport;
pub mod types;

/// Writes one line to the node log (stderr) with a timestamp and the node id.
#[macro_export]
macro_rules! log_line {
    ($id:expr, $($arg:tt)*) => {{
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        eprintln!("{now:.3} {} {}", $id, format_args!($($arg)*));
    }};
}
