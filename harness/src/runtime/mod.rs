//! Runtimes start, stop and break the nodes of a cluster. The process runtime is
//! the default; Docker and third-party systems fit the same trait.

pub mod docker;
pub mod lazyfs;
pub mod node_binary;
pub mod ports;
pub mod process;

use workloads::BoxFut;

/// Where one node can be reached.
#[derive(Clone, Debug)]
pub struct NodeAddrs {
    /// Node id.
    pub id: String,
    /// Client API base URL.
    pub client_url: String,
    /// Admin API base URL.
    pub admin_url: String,
}

impl NodeAddrs {
    /// A node whose client and admin APIs are on loopback ports of this host.
    pub fn loopback(id: &str, client: u16, admin: u16) -> Self {
        NodeAddrs {
            id: id.to_string(),
            client_url: format!("http://127.0.0.1:{client}"),
            admin_url: format!("http://127.0.0.1:{admin}"),
        }
    }
}

/// Starts, stops and breaks the nodes of a cluster.
pub trait Runtime: Send {
    /// The nodes and their addresses.
    fn nodes(&self) -> Vec<NodeAddrs>;
    /// Starts (or restarts after a kill) node `id`.
    fn start<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>>;
    /// Kills node `id` without warning (SIGKILL).
    fn kill<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>>;
    /// Freezes node `id` (SIGSTOP).
    fn pause<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>>;
    /// Thaws node `id` (SIGCONT).
    fn resume<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>>;
    /// Stops every node and releases everything the runtime holds.
    fn teardown(&mut self) -> BoxFut<'_, anyhow::Result<()>>;
    /// Kills node `id` and drops what it wrote but never synced (with `tear`,
    /// a seeded part of it survives, torn at a page); answers what was lost.
    /// Only runtimes with lazy disks can.
    fn lose_unsynced<'a>(
        &'a mut self,
        id: &'a str,
        tear: Option<u64>,
    ) -> BoxFut<'a, anyhow::Result<serde_json::Value>> {
        let _ = tear;
        Box::pin(async move { anyhow::bail!("node {id}: this runtime has no lazy disks") })
    }
    /// Where node `id` keeps its data on this host, as the disk holds it (with
    /// a lazy disk, its backing directory), for faults that damage files.
    fn disk_dir(&self, id: &str) -> Option<std::path::PathBuf> {
        let _ = id;
        None
    }
    /// Delays every fsync of node `id` by `fsync_ms` (0: no delay).
    fn slow_disk<'a>(&'a mut self, id: &'a str, fsync_ms: u64) -> BoxFut<'a, anyhow::Result<()>> {
        let _ = fsync_ms;
        Box::pin(async move { anyhow::bail!("node {id}: this runtime has no lazy disks") })
    }

    /// Facts about the runtime worth keeping in `results.json` (image, timings).
    fn describe(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
