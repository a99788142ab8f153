//! The nemesis: on a seeded schedule, starts one fault, lets it work for an
//! interval, heals it, lets the cluster breathe for an interval, and so on. At the
//! end of a test every fault is healed.

pub mod clock;
pub mod link;
pub mod process;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Mutex as AsyncMutex;
use workloads::Rng;

use crate::net::{partition, Net};
use crate::recorder::Recorder;
use crate::runtime::{NodeAddrs, Runtime};

/// Fault kinds `--nemesis` accepts.
pub const KINDS: &[(&str, &str)] = &[
    (
        "partition",
        "cut links between groups of nodes (shapes: one, halves, majority, bridge, ring, leader; --partitions picks)",
    ),
    (
        "kill",
        "SIGKILL one node (40%), a majority (35%) or all (25%); restart them at heal",
    ),
    ("pause", "SIGSTOP one node or a majority, SIGCONT at heal"),
    (
        "clock",
        "skew node clocks by up to ±2 s through the admin API",
    ),
    (
        "delay",
        "delay messages 5-50 ms with up to 100 ms jitter (reordering), duplicate 5%",
    ),
    ("loss", "drop 10-40% of messages on every link"),
];

/// Parses `--nemesis` (`none`, `all`, or a comma-separated list of kinds).
pub fn parse(list: &str) -> Result<Vec<String>, String> {
    let known: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "none" => {}
            "all" => out.extend(known.iter().map(|k| k.to_string())),
            k if known.contains(&k) => out.push(k.to_string()),
            other => {
                return Err(format!(
                    "unknown nemesis `{other}` (accepted: {}, none, all)",
                    known.join(", ")
                ))
            }
        }
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
    /// Partition shapes to draw from (empty: all of [`partition::SHAPES`]).
    pub shapes: Vec<String>,
    /// The target (`builtin`, `etcd`, ...), which says how to find its leader.
    pub target: String,
}

/// A fault in force, with what healing it takes.
enum Active {
    Partition,
    Kill(Vec<String>),
    Pause(Vec<String>),
    Clock,
    Link,
}

fn ids(nodes: &[NodeAddrs]) -> Vec<String> {
    nodes.iter().map(|n| n.id.clone()).collect()
}

/// Picks one node, a bare majority, or (when `all` allowed) every node.
fn targets(rng: &mut Rng, nodes: &[String], allow_all: bool) -> Vec<String> {
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
    fn set_in_force(&self, text: String) {
        *self.in_force.lock().unwrap_or_else(|e| e.into_inner()) = text;
    }

    async fn start(&self, kind: &str, rng: &mut Rng) -> anyhow::Result<Active> {
        let nodes = ids(&self.nodes);
        let (active, value): (Active, Value) = match kind {
            "partition" => {
                let all: Vec<String> = partition::SHAPES.iter().map(|s| s.to_string()).collect();
                let shapes = if self.shapes.is_empty() {
                    &all
                } else {
                    &self.shapes
                };
                let shape = rng.pick(shapes).map_or("halves", String::as_str);
                let grudge = match shape {
                    "leader" => {
                        match crate::leader::leader(&self.target, &self.http, &self.nodes).await {
                            Some(l) => partition::isolate(&l, &nodes),
                            None => partition::grudge("one", &nodes, rng),
                        }
                    }
                    _ => partition::grudge(shape, &nodes, rng),
                };
                self.net.partition(&grudge)?;
                self.set_in_force(format!(
                    "partition {shape}: {}",
                    partition::describe(&grudge)
                ));
                (Active::Partition, json!({"shape": shape, "grudge": grudge}))
            }
            "kill" => {
                let t = targets(rng, &nodes, true);
                process::kill(self, &t).await?;
                self.set_in_force(format!("killed {}", t.join(",")));
                (Active::Kill(t.clone()), json!(t))
            }
            "pause" => {
                let t = targets(rng, &nodes, false);
                process::pause(self, &t).await?;
                self.set_in_force(format!("paused {}", t.join(",")));
                (Active::Pause(t.clone()), json!(t))
            }
            "clock" => {
                let offsets = clock::skew(self, rng).await;
                self.set_in_force("clocks skewed".into());
                (Active::Clock, json!(offsets))
            }
            "delay" => {
                let shape = link::delay(rng);
                self.net.degrade(&shape)?;
                self.set_in_force(format!("delay {:?}+{:?} jitter", shape.delay, shape.jitter));
                (
                    Active::Link,
                    json!({"delay_ms": shape.delay.as_millis() as u64, "jitter_ms": shape.jitter.as_millis() as u64, "duplicate": shape.duplicate}),
                )
            }
            _ => {
                let shape = link::loss(rng);
                self.net.degrade(&shape)?;
                self.set_in_force(format!("loss {:.0}%", shape.loss * 100.0));
                (Active::Link, json!({"loss": shape.loss}))
            }
        };
        self.recorder.nemesis(&format!("start-{kind}"), value);
        Ok(active)
    }

    async fn heal(&self, kind: &str, active: Active) -> anyhow::Result<()> {
        let value = match active {
            Active::Partition | Active::Link => {
                self.net.heal()?;
                Value::Null
            }
            Active::Kill(t) => {
                process::restart(self, &t).await?;
                json!(t)
            }
            Active::Pause(t) => {
                process::resume(self, &t).await?;
                json!(t)
            }
            Active::Clock => {
                clock::reset(self).await;
                Value::Null
            }
        };
        self.set_in_force(String::new());
        self.recorder.nemesis(&format!("stop-{kind}"), value);
        Ok(())
    }

    /// Heals everything, whatever the schedule did: links, processes, clocks.
    pub async fn heal_all(&self) -> anyhow::Result<()> {
        self.net.heal()?;
        let nodes = ids(&self.nodes);
        process::resume(self, &nodes).await?;
        process::restart(self, &nodes).await?;
        clock::reset(self).await;
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
    if kinds.is_empty() {
        return Ok(0);
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return Ok(faults),
        }
        let kind = rng.pick(&kinds).cloned().unwrap_or_default();
        let active = ctx.start(&kind, &mut rng).await?;
        faults += 1;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {
                ctx.heal(&kind, active).await?;
                return Ok(faults);
            }
        }
        ctx.heal(&kind, active).await?;
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
        assert_eq!(parse("all").unwrap().len(), KINDS.len());
        let e = parse("kill,meteor").unwrap_err();
        assert!(
            e.contains("meteor") && e.contains("partition") && e.contains("all"),
            "{e}"
        );
    }

    #[test]
    fn targets_are_one_a_majority_or_all() {
        let nodes: Vec<String> = (1..=5).map(|i| format!("n{i}")).collect();
        let mut rng = Rng::new(4);
        let sizes: std::collections::BTreeSet<usize> = (0..200)
            .map(|_| targets(&mut rng, &nodes, true).len())
            .collect();
        assert_eq!(sizes, [1, 3, 5].into());
        let sizes: std::collections::BTreeSet<usize> = (0..200)
            .map(|_| targets(&mut rng, &nodes, false).len())
            .collect();
        assert_eq!(sizes, [1, 3].into());
    }
}
