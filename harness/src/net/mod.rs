//! The network between nodes: a [`proxy::LinkProxy`] on every directed link, and
//! partitions expressed as grudges (who drops whom). In process mode the proxies
//! carry every fault; with containers, partitions and loss are iptables rules in
//! the nodes' namespaces ([`iptables::PacketFilter`]), and delay and duplication
//! are netem where the kernel has it, else the proxies.

pub mod iptables;
pub mod partition;
pub mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proxy::{LinkPolicy, LinkProxy};
use workloads::Rng;

/// For each node, the nodes whose messages it drops.
pub type Grudge = BTreeMap<String, BTreeSet<String>>;

/// All link proxies of a cluster.
pub struct Net {
    links: BTreeMap<(String, String), LinkProxy>,
    /// Byte-stream links: each carries both directions, so either side's grudge cuts it.
    stream: bool,
    filter: Option<Arc<iptables::PacketFilter>>,
    /// Sender ids announced on connections, to node names (etcd member ids).
    ids: proxy::SenderIds,
    /// Proxies shared by the links into one node.
    shared_proxies: Vec<tokio::task::JoinHandle<()>>,
    /// Each node's shared proxy ports, one per address it was started with.
    inbound: BTreeMap<String, Vec<u16>>,
    /// The message router, when the harness carries every message itself.
    router: Option<Arc<crate::targets::maelstrom::Router>>,
    /// Byte-stream links added beside framed ones (sidecar to instance).
    stream_links: BTreeSet<(String, String)>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for t in &self.shared_proxies {
            t.abort();
        }
    }
}

impl Net {
    /// Starts a proxy on `bind` (an IP address) for every ordered pair of
    /// `nodes`, forwarding to each receiver's peer address.
    pub async fn start(nodes: &[(String, String)], bind: &str, rng: &Rng) -> std::io::Result<Net> {
        Self::start_links(nodes, bind, rng, false).await
    }

    /// Like [`Net::start`], with byte-stream proxies for protocols that are
    /// not our framing.
    pub async fn start_streams(
        nodes: &[(String, String)],
        bind: &str,
        rng: &Rng,
    ) -> std::io::Result<Net> {
        Self::start_links(nodes, bind, rng, true).await
    }

    async fn start_links(
        nodes: &[(String, String)],
        bind: &str,
        rng: &Rng,
        stream: bool,
    ) -> std::io::Result<Net> {
        let mut links = BTreeMap::new();
        let mut n = 0u64;
        for (from, _) in nodes {
            for (to, to_addr) in nodes {
                if from != to {
                    n += 1;
                    let (target, rng) = (to_addr.clone(), rng.fork(1000 + n));
                    let proxy = if stream {
                        LinkProxy::start_stream(bind, target, rng).await?
                    } else {
                        LinkProxy::start(bind, target, rng).await?
                    };
                    links.insert((from.clone(), to.clone()), proxy);
                }
            }
        }
        Ok(Net {
            links,
            stream,
            filter: None,
            ids: Default::default(),
            shared_proxies: Vec::new(),
            inbound: BTreeMap::new(),
            router: None,
            stream_links: BTreeSet::new(),
        })
    }

    /// One proxy per address of each receiver, for peers that share one
    /// advertised address per service and node and are told apart as
    /// `announce` says (see [`proxy::start_announced`]); the proxies into one
    /// node share its links' policies. The ids senders announce are mapped to
    /// node names with [`Net::learn_id`].
    pub async fn start_announced(
        nodes: &[(String, Vec<String>)],
        bind: &str,
        announce: proxy::Announce,
        rng: &Rng,
    ) -> std::io::Result<Net> {
        let ids: proxy::SenderIds = Default::default();
        let mut links = BTreeMap::new();
        let mut shared_proxies = Vec::new();
        let mut stream = 0u64;
        let mut inbound = BTreeMap::new();
        for (to, to_addrs) in nodes {
            let senders: proxy::Senders = Default::default();
            let mut ports = Vec::new();
            for to_addr in to_addrs {
                let (port, task) = proxy::start_announced(
                    bind,
                    to_addr.clone(),
                    announce,
                    senders.clone(),
                    ids.clone(),
                )
                .await?;
                shared_proxies.push(task);
                ports.push(port);
            }
            let port = ports.first().copied().unwrap_or(0);
            inbound.insert(to.clone(), ports);
            for (from, _) in nodes.iter().filter(|(f, _)| f != to) {
                stream += 1;
                let link = LinkProxy::policy_only(port, rng.fork(1000 + stream));
                senders
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(from.clone(), link.shared());
                links.insert((from.clone(), to.clone()), link);
            }
        }
        Ok(Net {
            links,
            stream: true,
            filter: None,
            ids,
            shared_proxies,
            inbound,
            router: None,
            stream_links: BTreeSet::new(),
        })
    }

    /// A network that is a message router (Maelstrom nodes): faults go to it.
    pub fn routed(router: Arc<crate::targets::maelstrom::Router>) -> Net {
        Net {
            links: BTreeMap::new(),
            stream: false,
            filter: None,
            ids: Default::default(),
            shared_proxies: Vec::new(),
            inbound: BTreeMap::new(),
            router: Some(router),
            stream_links: BTreeSet::new(),
        }
    }

    /// The message router, if this network is one.
    pub fn router(&self) -> Option<Arc<crate::targets::maelstrom::Router>> {
        self.router.clone()
    }

    /// Records which node announces itself as `id`.
    pub fn learn_id(&self, id: &str, node: &str) {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), node.to_string());
    }

    /// Hands partitions and loss to iptables rules from now on.
    pub fn use_packet_filter(&mut self, filter: Arc<iptables::PacketFilter>) {
        self.filter = Some(filter);
    }

    /// Adds a byte-stream proxy from each of `from` to each of `to` (id,
    /// address): links that carry a protocol other than ours (HTTP to the
    /// mesh's instances); either side's grudge cuts one.
    pub async fn add_stream_links(
        &mut self,
        from: &[String],
        to: &[(String, String)],
        bind: &str,
        rng: &Rng,
    ) -> std::io::Result<()> {
        let mut n = 5_000u64;
        for f in from {
            for (t, addr) in to {
                n += 1;
                let proxy = LinkProxy::start_stream(bind, addr.clone(), rng.fork(n)).await?;
                self.links.insert((f.clone(), t.clone()), proxy);
                self.stream_links.insert((f.clone(), t.clone()));
            }
        }
        Ok(())
    }

    /// Every link and its proxy port.
    pub fn ports(&self) -> BTreeMap<(String, String), u16> {
        self.links
            .iter()
            .map(|(k, l)| (k.clone(), l.port))
            .collect()
    }

    /// The shared proxy ports into `to`, in the order of its addresses (see
    /// [`Net::start_announced`]).
    pub fn inbound(&self, to: &str) -> Vec<u16> {
        self.inbound.get(to).cloned().unwrap_or_default()
    }

    /// The port `from` must use to reach `to`.
    pub fn port(&self, from: &str, to: &str) -> Option<u16> {
        self.links
            .get(&(from.to_string(), to.to_string()))
            .map(|l| l.port)
    }

    /// Cuts every link a grudge names (receiver drops sender) and heals the rest.
    pub fn partition(&self, grudge: &Grudge) -> anyhow::Result<()> {
        if let Some(filter) = &self.filter {
            let mut cut: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (receiver, senders) in grudge {
                for sender in senders {
                    cut.entry(sender.clone())
                        .or_default()
                        .insert(receiver.clone());
                }
            }
            return filter.set_cut(cut);
        }
        if let Some(router) = &self.router {
            let mut cut = BTreeSet::new();
            for (receiver, senders) in grudge {
                for sender in senders {
                    cut.insert((sender.clone(), receiver.clone()));
                }
            }
            router.set_cut(cut);
        }
        for ((from, to), link) in &self.links {
            let drops = |a: &String, b: &String| grudge.get(a).is_some_and(|s| s.contains(b));
            let stream = self.stream || self.stream_links.contains(&(from.clone(), to.clone()));
            let cut = drops(to, from) || (stream && drops(from, to));
            link.update(|p| p.cut = cut);
        }
        Ok(())
    }

    /// Sets loss, delay, jitter and duplication on every link (cuts unchanged).
    pub fn degrade(&self, shape: &LinkPolicy) -> anyhow::Result<()> {
        let mut proxy = shape.clone();
        if let Some(filter) = &self.filter {
            filter.set_loss(shape.loss)?;
            proxy.loss = 0.0;
            if filter.has_netem() {
                filter.set_delay(iptables::Netem {
                    delay_ms: shape.delay.as_millis() as u64,
                    jitter_ms: shape.jitter.as_millis() as u64,
                    duplicate: shape.duplicate,
                })?;
                proxy = LinkPolicy::default();
            }
        }
        if let Some(router) = &self.router {
            router.set_shape(shape.clone());
        }
        for link in self.links.values() {
            link.update(|p| {
                p.loss = proxy.loss;
                p.delay = proxy.delay;
                p.jitter = proxy.jitter;
                p.duplicate = proxy.duplicate;
                p.replay = proxy.replay;
            });
        }
        Ok(())
    }

    /// Sets replay to `replay` on the links `on(from, to)` picks and turns it off
    /// on the others (proxy links only; loss, delay and cuts unchanged).
    pub fn replay_where(&self, replay: f64, on: impl Fn(&str, &str) -> bool) {
        for ((from, to), link) in &self.links {
            let r = if on(from, to) { replay } else { 0.0 };
            link.update(|p| p.replay = r);
        }
    }

    /// Freezes the replay windows of the links `on(from, to)` picks (proxy
    /// links only), until [`Net::heal`].
    pub fn freeze_where(&self, on: impl Fn(&str, &str) -> bool) {
        for ((from, to), link) in &self.links {
            if on(from, to) {
                link.update(|p| p.freeze = true);
            }
        }
    }

    /// Restores every link to a clean, connected state.
    pub fn heal(&self) -> anyhow::Result<()> {
        if let Some(router) = &self.router {
            router.set_cut(BTreeSet::new());
            router.set_shape(LinkPolicy::default());
        }
        for link in self.links.values() {
            link.set_policy(LinkPolicy::default());
        }
        if let Some(filter) = &self.filter {
            filter.set_cut(BTreeMap::new())?;
            filter.set_loss(0.0)?;
            if filter.has_netem() {
                filter.set_delay(iptables::Netem::default())?;
            }
        }
        Ok(())
    }

    /// Packets dropped so far by iptables rules, when they carry the faults.
    pub fn packets_dropped(&self) -> Option<u64> {
        self.filter.as_ref().map(|f| f.dropped_total())
    }

    /// Whether links carry our framing, which replay needs (not byte streams,
    /// not the Maelstrom router, not packet filters).
    pub fn frames(&self) -> bool {
        !self.stream && self.router.is_none() && self.filter.is_none()
    }

    /// Old frames delivered again so far over all links.
    pub fn replayed(&self) -> u64 {
        self.links.values().map(|l| l.counters().replayed).sum()
    }

    /// Frames dropped so far over all links.
    pub fn dropped(&self) -> u64 {
        self.links
            .values()
            .map(|l| l.counters().dropped)
            .sum::<u64>()
            + self.router.as_ref().map_or(0, |r| r.dropped())
    }
}
