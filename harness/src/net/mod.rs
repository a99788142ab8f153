//! The network between nodes in process mode: a [`proxy::LinkProxy`] on every
//! directed link, and partitions expressed as grudges (who drops whom).

pub mod partition;
pub mod proxy;

use std::collections::{BTreeMap, BTreeSet};

use proxy::{LinkPolicy, LinkProxy};
use workloads::Rng;

/// For each node, the nodes whose messages it drops.
pub type Grudge = BTreeMap<String, BTreeSet<String>>;

/// All link proxies of a cluster.
pub struct Net {
    links: BTreeMap<(String, String), LinkProxy>,
}

impl Net {
    /// Starts a proxy for every ordered pair of `nodes`, forwarding to each
    /// receiver's peer address.
    pub async fn start(nodes: &[(String, String)], rng: &Rng) -> std::io::Result<Net> {
        let mut links = BTreeMap::new();
        let mut stream = 0u64;
        for (from, _) in nodes {
            for (to, to_addr) in nodes {
                if from != to {
                    stream += 1;
                    let proxy = LinkProxy::start(to_addr.clone(), rng.fork(1000 + stream)).await?;
                    links.insert((from.clone(), to.clone()), proxy);
                }
            }
        }
        Ok(Net { links })
    }

    /// The port `from` must use to reach `to`.
    pub fn port(&self, from: &str, to: &str) -> Option<u16> {
        self.links
            .get(&(from.to_string(), to.to_string()))
            .map(|l| l.port)
    }

    /// Cuts every link a grudge names (receiver drops sender) and heals the rest.
    pub fn partition(&self, grudge: &Grudge) {
        for ((from, to), link) in &self.links {
            let cut = grudge.get(to).is_some_and(|s| s.contains(from));
            link.update(|p| p.cut = cut);
        }
    }

    /// Sets loss, delay, jitter and duplication on every link (cuts unchanged).
    pub fn degrade(&self, shape: &LinkPolicy) {
        for link in self.links.values() {
            link.update(|p| {
                p.loss = shape.loss;
                p.delay = shape.delay;
                p.jitter = shape.jitter;
                p.duplicate = shape.duplicate;
            });
        }
    }

    /// Restores every link to a clean, connected state.
    pub fn heal(&self) {
        for link in self.links.values() {
            link.set_policy(LinkPolicy::default());
        }
    }

    /// Frames dropped so far over all links.
    pub fn dropped(&self) -> u64 {
        self.links.values().map(|l| l.counters().dropped).sum()
    }
}
