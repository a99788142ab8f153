//! Where shards live: keys go to shards by the consistent-hash ring, and each
//! shard's consensus group to `replicas` consecutive nodes of the sorted member
//! list, the groups' starting points spread evenly so every node hosts about
//! as many as the others.

use serde::Serialize;

use crate::ring::Ring;
use crate::types::NodeId;

/// Virtual points per shard on the key ring.
const VNODES: usize = 64;

/// The shards' layout, the same on every node given the same members.
#[derive(Clone, Debug)]
pub struct Placement {
    /// Members of each shard's group; shard `s` (from 1) is `groups[s - 1]`.
    groups: Vec<Vec<NodeId>>,
    ring: Ring,
}

/// One shard's entry in `GET /cluster/shards`.
#[derive(Clone, Debug, Serialize)]
pub struct ShardInfo {
    /// The shard's group number (from 1).
    pub shard: u32,
    /// The nodes its group runs on.
    pub members: Vec<NodeId>,
}

impl Placement {
    /// `shards` groups of `replicas` nodes each over `nodes`.
    pub fn new(nodes: &[NodeId], shards: usize, replicas: usize) -> Result<Placement, String> {
        let mut nodes = nodes.to_vec();
        nodes.sort();
        nodes.dedup();
        let n = nodes.len();
        if shards == 0 {
            return Err("--shards must be at least 1".into());
        }
        if replicas == 0 || replicas > n {
            return Err(format!(
                "--replicas {replicas}: each shard needs between 1 and {n} nodes (the members)"
            ));
        }
        let groups = (0..shards)
            .map(|s| {
                let start = s * n / shards;
                (0..replicas)
                    .map(|k| nodes[(start + k) % n].clone())
                    .collect()
            })
            .collect();
        let ring = Ring::with(VNODES, (1..=shards).map(|s| format!("shard-{s}")));
        Ok(Placement { groups, ring })
    }

    /// How many shards there are.
    pub fn shards(&self) -> u32 {
        self.groups.len() as u32
    }

    /// The shard holding `key`.
    pub fn shard_of(&self, key: &str) -> u32 {
        self.ring
            .owner(key)
            .and_then(|name| name.strip_prefix("shard-"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(1)
    }

    /// The members of shard `shard`'s group (empty for an unknown shard).
    pub fn members(&self, shard: u32) -> &[NodeId] {
        shard
            .checked_sub(1)
            .and_then(|i| self.groups.get(i as usize))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The shards whose groups `node` is a member of.
    pub fn hosted_by(&self, node: &str) -> Vec<u32> {
        (1..=self.shards())
            .filter(|s| self.members(*s).iter().any(|m| m == node))
            .collect()
    }

    /// Every shard with its members.
    pub fn info(&self) -> Vec<ShardInfo> {
        (1..=self.shards())
            .map(|s| ShardInfo {
                shard: s,
                members: self.members(s).to_vec(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_spread_over_the_nodes_and_keys_over_the_shards() {
        let nodes: Vec<NodeId> = ["n3", "n1", "n2", "n5", "n4"].map(String::from).to_vec();
        let p = Placement::new(&nodes, 3, 3).unwrap();
        assert_eq!(p.members(1), ["n1", "n2", "n3"]);
        assert_eq!(p.members(2), ["n2", "n3", "n4"]);
        assert_eq!(p.members(3), ["n4", "n5", "n1"]);
        assert!(p.members(0).is_empty() && p.members(4).is_empty());
        assert_eq!(p.hosted_by("n4"), [2, 3]);
        // Every node hosts at least one group, and keys reach every shard.
        for n in &nodes {
            assert!(!p.hosted_by(n).is_empty(), "{n}");
        }
        let mut seen = [0usize; 4];
        for k in 0..300 {
            seen[p.shard_of(&k.to_string()) as usize] += 1;
        }
        assert_eq!(seen[0], 0);
        assert!(seen[1..].iter().all(|c| *c > 40), "{seen:?}");
        // The same members in any order give the same layout.
        let again =
            Placement::new(&["n5", "n4", "n3", "n2", "n1"].map(String::from), 3, 3).unwrap();
        assert_eq!(again.shard_of("x"), p.shard_of("x"));
        assert!(Placement::new(&nodes, 2, 6)
            .unwrap_err()
            .contains("--replicas 6"));
        assert!(Placement::new(&nodes, 0, 3).is_err());
    }
}
