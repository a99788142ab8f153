//! The nemesis: on a seeded schedule, starts one fault, lets it work for an
//! interval, heals it, lets the cluster breathe for an interval, and so on. At the
//! end of a test every fault is healed. Each fault is one module implementing
//! [`Fault`], listed in [`FAULTS`].

pub mod brownout;
pub mod byzantine;
pub mod clock;
pub mod collide;
pub mod comeback;
pub mod corrupt;
pub mod crash_points;
pub mod disk;
pub mod kill;
pub mod link;
pub mod membership;
pub mod orphan;
pub mod partition;
pub mod pause;
pub mod process;
pub mod replay;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex as AsyncMutex;
use workloads::{BoxFut, Rng};

use crate::net::Net;
use crate::run::recorder::Recorder;
use crate::run::TestConfig;
use crate::runtime::{NodeAddrs, Runtime};
use crate::targets::Target;

/// Every fault `--nemesis` accepts, in the order `harness list` shows them.
pub static FAULTS: &[&dyn Fault] = &[
    &partition::Partition,
    &kill::Kill,
    &pause::Pause,
    &crash_points::CrashPoints,
    &clock::Clock,
    &clock::ClockBump,
    &clock::ClockStrobe,
    &link::Delay,
    &link::Loss,
    &replay::Replay,
    &collide::Collide,
    &comeback::Comeback,
    &membership::Membership,
    &orphan::OrphanChange,
    &disk::LoseUnsynced,
    &disk::SlowDisk,
    &corrupt::Corrupt,
    &byzantine::Byzantine,
    &brownout::Brownout,
];

/// A fault the nemesis can inject and heal.
pub trait Fault: Send + Sync {
    /// Its `--nemesis` name.
    fn name(&self) -> &'static str;
    /// One line for `harness list`.
    fn about(&self) -> &'static str;
    /// The runtimes it works on.
    fn runtimes(&self) -> &'static [&'static str] {
        &["process", "docker"]
    }
    /// Injects the fault.
    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>>;
    /// Heals what [`Fault::start`] did; answers what to record.
    fn heal<'a>(&'a self, ctx: &'a Ctx, injected: Injected) -> BoxFut<'a, anyhow::Result<Value>>;
}

/// A fault in force: what was done (recorded in the history), a short text
/// for the progress line, and the nodes it hit.
pub struct Injected {
    /// The `start-*` event's value.
    pub value: Value,
    /// What the progress line shows.
    pub in_force: String,
    /// The nodes it hit, for faults that heal them one by one.
    pub nodes: Vec<String>,
}

/// The fault called `name`, or an error naming the known ones.
pub fn get(name: &str) -> Result<&'static dyn Fault, String> {
    FAULTS
        .iter()
        .copied()
        .find(|f| f.name() == name)
        .ok_or_else(|| {
            format!(
                "unknown nemesis `{name}` (accepted: {}, none, all)",
                names()
            )
        })
}

fn names() -> String {
    FAULTS
        .iter()
        .map(|f| f.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Faults that add or remove members: only a protocol with membership
/// changes (Raft) takes them.
pub const CHANGE_MEMBERS: &[&str] = &["membership", "orphan-change"];

/// Parses `--nemesis` (`none`, `all`, or a comma-separated list of faults).
pub fn parse(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut named = false;
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        named = true;
        match item {
            "none" => {}
            "all" => out.extend(FAULTS.iter().map(|f| f.name().to_string())),
            k => out.push(get(k)?.name().to_string()),
        }
    }
    if !named {
        return Err(format!(
            "name at least one fault, or none (accepted: {}, none, all)",
            names()
        ));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// What the nemesis acts through.
pub struct Ctx {
    /// The cluster's runtime.
    pub runtime: Arc<AsyncMutex<Box<dyn Runtime>>>,
    /// The link proxies.
    pub net: Arc<Net>,
    /// The history.
    pub recorder: Recorder,
    /// Nodes and admin URLs.
    pub nodes: Vec<NodeAddrs>,
    /// HTTP client for admin calls.
    pub http: reqwest::Client,
    /// A short description of the faults in force, for the progress line.
    pub in_force: Arc<Mutex<String>>,
    /// Partition shapes to draw from (empty: all of [`crate::net::partition::SHAPES`]).
    pub shapes: Vec<String>,
    /// The system under test, which says how to find its leader.
    pub target: &'static dyn Target,
    /// The run's configuration.
    pub cfg: TestConfig,
    /// The application-service instances among [`Ctx::nodes`] (the mesh's
    /// backends): when there are any, the process faults hit them alone.
    pub instances: Vec<String>,
}

/// Posts `body` to `route` of node `id`'s admin API; whether the node took it.
pub async fn admin_post(ctx: &Ctx, id: &str, route: &str, body: serde_json::Value) -> bool {
    let Some(n) = ctx.nodes.iter().find(|n| n.id == id) else {
        return false;
    };
    ctx.http
        .post(format!("{}{route}", n.admin_url))
        .json(&body)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Node ids of `nodes`.
pub fn ids(nodes: &[NodeAddrs]) -> Vec<String> {
    nodes.iter().map(|n| n.id.clone()).collect()
}

/// Picks one node, a bare majority, or (when `all` allowed) every node.
pub fn pick_nodes(rng: &mut Rng, nodes: &[String], allow_all: bool) -> Vec<String> {
    let mut shuffled = nodes.to_vec();
    rng.shuffle(&mut shuffled);
    let roll = rng.unit();
    let n = if roll < 0.4 {
        1
    } else if roll < 0.75 || !allow_all {
        nodes.len() / 2 + 1
    } else {
        nodes.len()
    };
    shuffled.truncate(n.max(1));
    shuffled.sort();
    shuffled
}

impl Ctx {
    /// The cluster's own nodes: every node but the service instances. Faults
    /// of disks, clocks, membership and consensus aim at these alone.
    pub fn members(&self) -> Vec<NodeAddrs> {
        self.nodes
            .iter()
            .filter(|n| !self.instances.contains(&n.id))
            .cloned()
            .collect()
    }

    /// Ids of [`Ctx::members`].
    pub fn member_ids(&self) -> Vec<String> {
        ids(&self.members())
    }

    /// The nodes kill, pause and brownouts pick from: the service instances
    /// when the run has any (the cluster holding the registry is left
    /// alone), else every node.
    pub fn process_targets(&self) -> Vec<String> {
        if self.instances.is_empty() {
            ids(&self.nodes)
        } else {
            self.instances.clone()
        }
    }

    fn set_in_force(&self, text: String) {
        *self.in_force.lock().unwrap_or_else(|e| e.into_inner()) = text;
    }

    async fn start(&self, fault: &dyn Fault, rng: &mut Rng) -> anyhow::Result<Injected> {
        let injected = fault.start(self, rng).await?;
        self.set_in_force(injected.in_force.clone());
        self.recorder
            .nemesis(&format!("start-{}", fault.name()), injected.value.clone());
        Ok(injected)
    }

    async fn heal(&self, fault: &dyn Fault, injected: Injected) -> anyhow::Result<()> {
        let value = fault.heal(self, injected).await?;
        self.set_in_force(String::new());
        self.recorder
            .nemesis(&format!("stop-{}", fault.name()), value);
        Ok(())
    }

    /// Heals everything, whatever the schedule did: links, processes, clocks.
    pub async fn heal_all(&self) -> anyhow::Result<()> {
        self.net.heal()?;
        let nodes = ids(&self.nodes);
        process::resume(self, &nodes).await?;
        process::restart(self, &nodes).await?;
        clock::reset(self).await;
        if !self.instances.is_empty() {
            brownout::reset(self).await;
        }
        if self.cfg.consensus == "pbft" {
            byzantine::reset(self).await;
        }
        self.set_in_force(String::new());
        self.recorder.nemesis("heal-all", Value::Null);
        Ok(())
    }
}

/// Runs the schedule until `stop` fires: fault for `interval`, calm for `interval`.
pub async fn run(
    ctx: Arc<Ctx>,
    kinds: Vec<String>,
    interval: Duration,
    mut rng: Rng,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let mut faults = 0;
    let chosen: Vec<&'static dyn Fault> = kinds
        .iter()
        .map(|k| get(k))
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    if chosen.is_empty() {
        return Ok(0);
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return Ok(faults),
        }
        let Some(&fault) = rng.pick(&chosen) else {
            return Ok(faults);
        };
        let injected = ctx.start(fault, &mut rng).await?;
        faults += 1;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {
                ctx.heal(fault, injected).await?;
                return Ok(faults);
            }
        }
        ctx.heal(fault, injected).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nemesis_lists_parse_and_bad_names_say_what_is_accepted() {
        assert_eq!(parse("none").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse("kill,partition,kill").unwrap(),
            vec!["kill", "partition"]
        );
        assert_eq!(parse("all").unwrap().len(), FAULTS.len());
        let e = parse("kill,meteor").unwrap_err();
        assert!(
            e.contains("meteor") && e.contains("partition") && e.contains("all"),
            "{e}"
        );
    }

    #[test]
    fn an_empty_list_is_refused_and_every_fault_has_its_name() {
        assert!(parse("").unwrap_err().contains("none"));
        assert!(parse(" , ").is_err());
        for f in FAULTS {
            assert_eq!(get(f.name()).unwrap().name(), f.name());
        }
        assert!(get("meteor").err().unwrap().contains("partition, kill"));
    }

    #[test]
    fn targets_are_one_a_majority_or_all() {
        let nodes: Vec<String> = (1..=5).map(|i| format!("n{i}")).collect();
        let mut rng = Rng::new(4);
        let sizes: std::collections::BTreeSet<usize> = (0..200)
            .map(|_| pick_nodes(&mut rng, &nodes, true).len())
            .collect();
        assert_eq!(sizes, [1, 3, 5].into());
        let sizes: std::collections::BTreeSet<usize> = (0..200)
            .map(|_| pick_nodes(&mut rng, &nodes, false).len())
            .collect();
        assert_eq!(sizes, [1, 3].into());
    }
}
