//! Systems under test. Each is one module implementing [`Target`]: where its
//! binary is, how to start a cluster of it on a runtime, when it is ready,
//! which faults and read modes it takes, who leads it, what its clients speak.
//! [`TARGETS`] lists them; nothing outside this folder decides by a target's name.

pub mod builtin;
mod custom;
mod etcd;
pub mod maelstrom;
mod redis;
mod redis_sentinel;

use std::path::{Path, PathBuf};

use workloads::{BoxFut, Rng};

use crate::net::Net;
use crate::run::TestConfig;
use crate::runtime::{NodeAddrs, Runtime};

/// Every target, the default first.
pub static TARGETS: &[&dyn Target] = &[
    &builtin::Builtin,
    &etcd::Etcd,
    &maelstrom::Maelstrom,
    &redis::Redis,
    &redis_sentinel::RedisSentinel,
    &custom::Custom,
];

/// The target `--target` names when it is not given.
pub const DEFAULT: &str = "builtin";

/// The target called `name`, or an error naming the known ones.
pub fn get(name: &str) -> Result<&'static dyn Target, String> {
    TARGETS
        .iter()
        .copied()
        .find(|t| t.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = TARGETS.iter().map(|t| t.name()).collect();
            format!("unknown target `{name}` (known: {})", names.join(", "))
        })
}

/// What a target needs to start its cluster.
pub struct Start<'a> {
    /// The run's configuration.
    pub cfg: &'a TestConfig,
    /// The binary [`Target::binary`] found.
    pub bin: &'a Path,
    /// The run folder (node folders go under `nodes/`).
    pub dir: &'a Path,
    /// Node ids, `n1`...
    pub ids: &'a [String],
    /// Three free loopback ports per node (client, peer, admin).
    pub ports: &'a [(u16, u16, u16)],
    /// Seeds the links' randomness.
    pub rng: &'a Rng,
    /// Extra node flags the workload asks for (builtin nodes).
    pub node_args: &'a [String],
    /// Application-service instances to start beside the nodes, as (service, id).
    pub instances: &'a [(String, String)],
    /// A free loopback port per instance.
    pub instance_ports: &'a [u16],
}

/// A cluster as a target starts it: the nodes' runtime and the network between them.
pub type Started = (Box<dyn Runtime>, Net);

/// A system under test.
pub trait Target: Send + Sync {
    /// Its `--target` name.
    fn name(&self) -> &'static str;
    /// One line for `harness list`.
    fn about(&self) -> &'static str;
    /// The faults that apply to it (`--nemesis all` means these).
    fn faults(&self) -> &'static [&'static str];
    /// Its read modes (`--reads`), the default first.
    fn reads(&self) -> &'static [&'static str] {
        &["linearizable"]
    }
    /// The number of its first node: nodes are `n1`, `n2`, ... unless the
    /// system numbers them otherwise (Maelstrom from `n0`).
    fn first_node(&self) -> usize {
        1
    }
    /// Whether it runs a command the user gives with `--bin`.
    fn takes_bin(&self) -> bool {
        false
    }
    /// Whether it is configured by a file given with `--target-config`.
    fn takes_config(&self) -> bool {
        false
    }
    /// Whether `--node-arg` reaches its nodes' command lines.
    fn takes_node_args(&self) -> bool {
        false
    }
    /// The workloads its clients speak (checked by the default [`Target::validate`]).
    fn workloads(&self) -> &'static [&'static str] {
        &["kv"]
    }
    /// Refuses what it cannot do with the rest of `cfg` (a message for a 254).
    /// By default: systems we did not write run their [`Target::workloads`] on
    /// local processes, with no planted bugs.
    fn validate(&self, cfg: &TestConfig) -> Result<(), String> {
        let workloads = self.workloads();
        if !workloads.contains(&cfg.workload.as_str())
            || cfg.runtime != "process"
            || !cfg.bugs.is_empty()
            || (!cfg.node_args.is_empty() && !self.takes_node_args())
            || cfg.consensus != "raft"
        {
            return Err(format!(
                "--target {} runs the {} workload{} on the process runtime, without --bug, --consensus{}",
                self.name(),
                workloads.join(", "),
                if workloads.len() > 1 { "s" } else { "" },
                if self.takes_node_args() {
                    ""
                } else {
                    " or --node-arg"
                }
            ));
        }
        Ok(())
    }
    /// Finds (or builds) what the nodes run; bad input is a [`crate::run::BadInput`].
    fn binary(&self, cfg: &TestConfig, quiet: bool) -> anyhow::Result<PathBuf>;
    /// Starts the link proxies and plans the nodes (they start afterwards).
    fn start<'a>(&'a self, s: Start<'a>) -> BoxFut<'a, anyhow::Result<Started>>;
    /// Waits until the cluster takes writes; answers what the clients speak.
    fn ready<'a>(
        &'a self,
        cfg: &'a TestConfig,
        http: &'a reqwest::Client,
        nodes: &'a [NodeAddrs],
        net: &'a Net,
    ) -> BoxFut<'a, anyhow::Result<workloads::Target>>;
    /// The node that leads now, if the system tells (the `leader` partition
    /// shape and the bench's failover trials ask).
    fn leader<'a>(
        &'a self,
        cfg: &'a TestConfig,
        http: &'a reqwest::Client,
        nodes: &'a [NodeAddrs],
    ) -> BoxFut<'a, Option<String>>;
    /// Whether killing its leader makes another node take over.
    fn fails_over(&self) -> bool {
        true
    }
    /// Checkers over what the nodes left behind, run after teardown (when the
    /// Docker runtime has copied the logs out): `(name, result)` pairs.
    fn after_teardown(&self, _dir: &Path) -> Vec<(String, checker::CheckerResult)> {
        Vec::new()
    }
}

/// Finds `bin` on the PATH (or in /usr/bin); the error says what to install.
pub fn on_path(bin: &str, package: &str, target: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
        let candidate = dir.join(bin);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(crate::run::BadInput(format!(
        "--target {target} needs {bin} on the PATH (apt-get install -y {package})"
    )))
}

/// The faults a third-party system run as local processes with a known data
/// directory takes (etcd, Redis): no admin API for clocks, no framing for loss.
pub(crate) const PROCESS_TARGET_FAULTS: &[&str] = &[
    "partition",
    "kill",
    "pause",
    "delay",
    "lose-unsynced",
    "slow-disk",
    "corrupt",
];

/// Puts the nodes' data behind lazy disks when a fault that needs them
/// (`lose-unsynced`, `slow-disk`) is in the run.
pub(crate) fn lazy_disks_if_asked(
    cfg: &TestConfig,
    rt: &mut crate::runtime::process::ProcessRuntime,
) -> anyhow::Result<()> {
    if cfg
        .nemesis
        .iter()
        .any(|f| crate::nemesis::disk::NEEDS_LAZY_DISKS.contains(&f.as_str()))
    {
        let exe = std::env::current_exe()
            .map_err(|e| anyhow::anyhow!("cannot find the harness binary: {e}"))?;
        rt.with_lazy_disks(&exe)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_the_default_comes_first_and_unknown_names_list_the_known() {
        let mut names: Vec<&str> = TARGETS.iter().map(|t| t.name()).collect();
        assert_eq!(names[0], DEFAULT);
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TARGETS.len());
        let e = get("etc").err().unwrap();
        assert!(e.contains("known: builtin, etcd"), "{e}");
        for t in TARGETS {
            assert!(
                !t.faults().is_empty() && !t.reads().is_empty(),
                "{}",
                t.name()
            );
            assert!(t.faults().iter().all(|f| crate::nemesis::get(f).is_ok()));
        }
    }
}
