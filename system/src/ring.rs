//! Consistent hashing with virtual nodes: each member owns many points on a
//! 64-bit ring, and a key belongs to the first point at or after its hash. Adding
//! or removing a member moves only the keys between its points and their
//! predecessors, about 1/N of them, instead of reshuffling everything.

use std::collections::BTreeMap;

/// FNV-1a followed by a SplitMix64 finalizer: stable across runs and platforms
/// (the placement is part of the replicated state), and well spread.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A ring of members, each with `vnodes` points.
#[derive(Clone, Debug)]
pub struct Ring {
    vnodes: usize,
    points: BTreeMap<u64, String>,
}

impl Ring {
    /// An empty ring whose members get `vnodes` points each.
    pub fn new(vnodes: usize) -> Self {
        Ring {
            vnodes: vnodes.max(1),
            points: BTreeMap::new(),
        }
    }

    /// A ring holding `members`.
    pub fn with<I: IntoIterator<Item = S>, S: Into<String>>(vnodes: usize, members: I) -> Self {
        let mut r = Ring::new(vnodes);
        for m in members {
            r.add(&m.into());
        }
        r
    }

    /// Adds a member's points.
    pub fn add(&mut self, member: &str) {
        for v in 0..self.vnodes {
            self.points
                .insert(hash(format!("{member}#{v}").as_bytes()), member.to_string());
        }
    }

    /// Removes a member's points.
    pub fn remove(&mut self, member: &str) {
        self.points.retain(|_, m| m != member);
    }

    /// The member owning `key`, if the ring is not empty.
    pub fn owner(&self, key: &str) -> Option<&str> {
        self.owners(key, 1).into_iter().next()
    }

    /// The first `n` distinct members clockwise from `key`: its owner then the
    /// replicas.
    pub fn owners(&self, key: &str, n: usize) -> Vec<&str> {
        let h = hash(key.as_bytes());
        let mut out: Vec<&str> = Vec::with_capacity(n);
        for (_, m) in self.points.range(h..).chain(self.points.range(..h)) {
            if out.len() == n {
                break;
            }
            if !out.contains(&m.as_str()) {
                out.push(m);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<String> {
        (0..20_000).map(|i| format!("key-{i}")).collect()
    }

    #[test]
    fn keys_spread_evenly_with_enough_virtual_nodes() {
        // The worst member's distance from an even share, in percent.
        let skew = |vnodes| {
            let ring = Ring::with(vnodes, ["a", "b", "c", "d"]);
            let mut count: BTreeMap<&str, usize> = BTreeMap::new();
            let keys = keys();
            for k in &keys {
                *count.entry(ring.owner(k).unwrap()).or_default() += 1;
            }
            let ideal = keys.len() / 4;
            count
                .values()
                .map(|c| c.abs_diff(ideal) * 100 / ideal)
                .max()
                .unwrap()
        };
        let (one, many) = (skew(1), skew(256));
        eprintln!("worst share off by {one}% with 1 point per member, {many}% with 256");
        assert!(many < 15, "{many}%");
        assert!(
            many < one,
            "virtual nodes must even the spread: {one}% vs {many}%"
        );
    }

    #[test]
    fn a_joining_member_takes_about_its_share_and_moves_nothing_else() {
        let before = Ring::with(128, ["a", "b", "c", "d"]);
        let mut after = before.clone();
        after.add("e");
        let keys = keys();
        let moved: Vec<&String> = keys
            .iter()
            .filter(|k| before.owner(k) != after.owner(k))
            .collect();
        // Every moved key moved to the newcomer.
        assert!(moved.iter().all(|k| after.owner(k) == Some("e")));
        // About 1/5 of the keys move (a modulo placement would move 4/5).
        let share = moved.len() as f64 / keys.len() as f64;
        assert!((0.14..0.26).contains(&share), "{share}");
        // Leaving gives exactly those keys back.
        after.remove("e");
        assert!(keys.iter().all(|k| before.owner(k) == after.owner(k)));
    }

    #[test]
    fn replicas_are_distinct_members() {
        let ring = Ring::with(16, ["a", "b", "c"]);
        let owners = ring.owners("x", 3);
        assert_eq!(owners.len(), 3);
        assert_eq!(ring.owners("x", 5).len(), 3, "never more than the members");
        assert_eq!(ring.owner("x"), Some(owners[0]));
        assert_eq!(Ring::new(4).owner("x"), None);
    }
}
