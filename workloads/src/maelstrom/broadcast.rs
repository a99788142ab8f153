//! Workloads `broadcast` and `g-set`: clients add unique integers at any node
//! and read a node's whole set; every acknowledged element must reach every
//! node once the network heals. Broadcast first hands every node its
//! neighbours (`topology`, shaped by `--topology`). Both are checked as
//! Jepsen's set-full ([`super::set_full`]), with final reads on every node.

use std::collections::BTreeMap;
use std::sync::Arc;

use checker::{CheckOptions, History};
use serde_json::{json, Value};

use super::client::{field, final_reads, MaelstromClient, Protocol};
use super::Link;
use crate::{
    Checked, Client, Completion, Endpoint, Generator, Invocation, Rng, Workload, WorkloadOptions,
};

/// Topology names `--topology` takes; the first is the default.
pub const TOPOLOGIES: &[&str] = &["grid", "line", "total", "tree", "tree2", "tree3", "tree4"];

/// The neighbours of each node under topology `name`, nodes in the given order.
pub fn topology(name: &str, nodes: &[String]) -> Result<BTreeMap<String, Vec<String>>, String> {
    let n = nodes.len();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut link = |a: usize, b: usize| {
        if a != b && !edges[a].contains(&b) {
            edges[a].push(b);
            edges[b].push(a);
        }
    };
    match name {
        "total" => (0..n).for_each(|a| (a + 1..n).for_each(|b| link(a, b))),
        "line" => (1..n).for_each(|a| link(a - 1, a)),
        "grid" => {
            // Rows of the width of the square root, each node joined to its
            // right and lower neighbours.
            let width = (n as f64).sqrt().ceil().max(1.0) as usize;
            for a in 0..n {
                if (a + 1) % width != 0 && a + 1 < n {
                    link(a, a + 1);
                }
                if a + width < n {
                    link(a, a + width);
                }
            }
        }
        tree => {
            // Maelstrom's `tree` is a binary tree.
            let tree = if tree == "tree" { "tree2" } else { tree };
            let fanout = tree
                .strip_prefix("tree")
                .and_then(|k| k.parse::<usize>().ok())
                .filter(|k| (2..=4).contains(k))
                .ok_or_else(|| {
                    format!(
                        "unknown topology `{name}` (known: {})",
                        TOPOLOGIES.join(", ")
                    )
                })?;
            (1..n).for_each(|a| link((a - 1) / fanout, a));
        }
    }
    Ok(nodes
        .iter()
        .enumerate()
        .map(|(i, id)| {
            (
                id.clone(),
                edges[i].iter().map(|&j| nodes[j].clone()).collect(),
            )
        })
        .collect())
}

/// Which of the two set workloads.
#[derive(Clone, Copy)]
pub enum Flavor {
    /// Maelstrom's `broadcast`: `broadcast` {message}, `read` -> {messages}.
    Broadcast,
    /// Maelstrom's `g-set`: `add` {element}, `read` -> {value}.
    GSet,
}

/// The `broadcast` or `g-set` workload.
pub struct SetWorkload(pub Flavor);

impl Workload for SetWorkload {
    fn name(&self) -> &'static str {
        match self.0 {
            Flavor::Broadcast => "broadcast",
            Flavor::GSet => "g-set",
        }
    }

    fn generator(&self, options: &WorkloadOptions) -> Box<dyn Generator> {
        Box::new(Adds {
            flavor: self.0,
            next: 0,
            nodes: options.nodes,
        })
    }

    fn client(&self, nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client> {
        MaelstromClient::for_nodes(Arc::new(SetProtocol(self.0)), nodes, options)
    }

    fn model(&self) -> &'static str {
        "none"
    }

    fn check(&self, history: &History, _options: &CheckOptions) -> Result<Checked, String> {
        let mut checked = Checked::default();
        checked.add("set-full", super::set_full::check(history, add_op(self.0)));
        Ok(checked)
    }
}

fn add_op(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Broadcast => "broadcast",
        Flavor::GSet => "add",
    }
}

/// Half adds of fresh integers, half reads.
struct Adds {
    flavor: Flavor,
    next: i64,
    nodes: usize,
}

impl Generator for Adds {
    fn next(&mut self, _process: u64, rng: &mut Rng) -> Option<Invocation> {
        if rng.chance(0.5) {
            return Some(Invocation {
                f: "read".into(),
                key: None,
                value: Value::Null,
            });
        }
        self.next += 1;
        Some(Invocation {
            f: add_op(self.flavor).into(),
            key: None,
            value: json!(self.next),
        })
    }

    fn final_ops(&self) -> Vec<Invocation> {
        final_reads(self.nodes)
    }
}

struct SetProtocol(Flavor);

impl Protocol for SetProtocol {
    fn body(&self, op: &Invocation) -> Value {
        match (op.f.as_str(), self.0) {
            ("read", _) => json!({"type": "read"}),
            (_, Flavor::Broadcast) => json!({"type": "broadcast", "message": op.value}),
            (_, Flavor::GSet) => json!({"type": "add", "element": op.value}),
        }
    }

    fn done(&self, op: &Invocation, reply: &Value) -> Completion {
        match (op.f.as_str(), self.0) {
            ("read", Flavor::Broadcast) => field(reply, "messages"),
            ("read", Flavor::GSet) => field(reply, "value"),
            _ => Completion::Ok(op.value.clone()),
        }
    }

    fn harmless(&self, op: &Invocation) -> bool {
        op.f == "read"
    }

    fn setup(&self, nodes: &[String], link: &Link) -> Result<Vec<(String, Value)>, String> {
        if !matches!(self.0, Flavor::Broadcast) {
            return Ok(Vec::new());
        }
        let name = link.topology.as_deref().unwrap_or(TOPOLOGIES[0]);
        let map = topology(name, nodes)?;
        Ok(nodes
            .iter()
            .map(|n| (n.clone(), json!({"type": "topology", "topology": map})))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    /// Every node reaches every other over the topology's edges.
    fn connected(map: &BTreeMap<String, Vec<String>>) -> bool {
        let first = map.keys().next().cloned().unwrap_or_default();
        let mut seen = std::collections::BTreeSet::from([first.clone()]);
        let mut todo = vec![first];
        while let Some(n) = todo.pop() {
            for m in &map[&n] {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen.len() == map.len()
    }

    #[test]
    fn topologies_are_connected_symmetric_and_of_their_shape() {
        for name in TOPOLOGIES {
            for n in [1, 2, 5, 25] {
                let map = topology(name, &ids(n)).unwrap();
                assert!(connected(&map), "{name} {n}");
                for (a, ns) in &map {
                    assert!(!ns.contains(a), "{name}: {a} is its own neighbour");
                    for b in ns {
                        assert!(map[b].contains(a), "{name}: {a}->{b} one way");
                    }
                }
            }
        }
        let edges = |name: &str, n: usize| -> usize {
            topology(name, &ids(n))
                .unwrap()
                .values()
                .map(Vec::len)
                .sum::<usize>()
                / 2
        };
        assert_eq!(edges("total", 5), 10);
        assert_eq!(edges("line", 5), 4);
        assert_eq!(edges("tree4", 25), 24);
        // A 5x5 grid: 2 * 5 * 4 edges; corners have 2 neighbours, the centre 4.
        assert_eq!(edges("grid", 25), 40);
        let grid = topology("grid", &ids(25)).unwrap();
        assert_eq!((grid["n1"].len(), grid["n13"].len()), (2, 4));
        assert_eq!(topology("tree2", &ids(7)).unwrap()["n1"], vec!["n2", "n3"]);
        assert!(topology("star", &ids(3))
            .unwrap_err()
            .contains("grid, line"));
    }
}
