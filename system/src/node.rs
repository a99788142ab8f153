//! Assembles a node: listeners, transport, consensus (a Raft, Paxos or PBFT thread), the
//! services it runs, the client and admin APIs.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::bugs::{Bug, Bugs};
use crate::clock::Clock;
use crate::consensus::paxos::{Paxos, PaxosHandle};
use crate::consensus::pbft::{Pbft, PbftClient, PbftHandle};
use crate::consensus::raft::{Raft, RaftHandle};
use crate::consensus::{Config, Consensus, Protocol};
use crate::http::admin::{self, AdminState};
use crate::http::{self, ApiState};
use crate::log_line;
use crate::services::broker::BrokerService;
use crate::services::cache::{CacheConfig, CacheNode, CacheService};
use crate::services::events::EventService;
use crate::services::kv::KvService;
use crate::services::locks::LockService;
use crate::services::mailbox::{api as mailbox_api, Mailbox};
use crate::services::mesh::{api as mesh_api, Sidecar};
use crate::services::proposals::ProposalService;
use crate::services::registry::RegistryService;
use crate::services::saga::{api as saga_api, Orchestrator, SagaServices};
use crate::services::shards::{api as shard_api, DecisionService, Placement, ShardService, Shards};
use crate::services::txn::TxnService;
use crate::services::{Registry, Service, Unrouted};
use crate::transport::{self, ConsensusInbox, Receivers, Transport};
use crate::types::{Members, NodeId};

/// Events the Raft inbox holds before new requests get `503 overloaded`.
const INBOX: usize = 65_536;

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id.
    pub id: NodeId,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Client API listen address.
    pub client: SocketAddr,
    /// Peer listen address.
    pub peer: SocketAddr,
    /// Admin API listen address.
    pub admin: SocketAddr,
    /// Other nodes and the address this node reaches each at (a proxy, maybe).
    pub peers: BTreeMap<NodeId, String>,
    /// Start outside the cluster and wait to be added with `/cluster/join`.
    pub join: bool,
    /// Election timeout base.
    pub election_timeout: Duration,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Applied entries between snapshots.
    pub snapshot_every: u64,
    /// Bytes of snapshot text per message to a follower catching up.
    pub snapshot_chunk: usize,
    /// How long a client request may wait.
    pub request_timeout: Duration,
    /// Planted slowdown: committed writes are answered this much later.
    pub slow_writes: Duration,
    /// Planted bugs.
    pub bugs: Bugs,
    /// Which protocol orders the log.
    pub consensus: Protocol,
    /// The secret PBFT's MAC keys derive from.
    pub pbft_secret: String,
    /// The distributed cache's layout and timing.
    pub cache: CacheConfig,
    /// Shards of the transactional store and KV (0: one group, unsharded).
    pub shards: usize,
    /// Nodes in each shard's group.
    pub replicas: usize,
    /// Transactions across shards by three-phase commit instead of two.
    pub three_phase: bool,
    /// The sidecar's settings.
    pub mesh: MeshSettings,
}

/// How the node's sidecar finds and reaches the mesh's instances.
#[derive(Clone, Debug, Default)]
pub struct MeshSettings {
    /// Client URLs of the nodes whose registry it reads (empty: its own).
    pub registry: Vec<String>,
    /// Instance id to the address to reach it at, instead of the registered one.
    pub routes: BTreeMap<String, String>,
    /// Every service's settings until one is configured on its own.
    pub config: crate::services::mesh::MeshConfig,
}

/// A consensus thread's inbox, before its loop starts.
enum Start {
    Raft(crate::consensus::inbox::Inbox<crate::consensus::raft::Message>),
    Paxos(crate::consensus::inbox::Inbox<crate::consensus::paxos::Message>),
    Pbft(crate::consensus::inbox::Inbox<crate::consensus::pbft::Signed>),
}

/// Stops one consensus thread.
type Stop = Arc<dyn Fn() + Send + Sync>;

/// A consensus group's handle, its inbox for peer messages, its stop and its
/// loop's inbox, before the loop starts.
fn channel(protocol: Protocol) -> (Arc<dyn Consensus>, ConsensusInbox, Stop, Start) {
    match protocol {
        Protocol::Raft => {
            let (h, inbox) = RaftHandle::channel(INBOX);
            let stopper = h.clone();
            (
                Arc::new(h.clone()) as Arc<dyn Consensus>,
                ConsensusInbox::Raft(h),
                Arc::new(move || stopper.stop()),
                Start::Raft(inbox),
            )
        }
        Protocol::Paxos => {
            let (h, inbox) = PaxosHandle::channel(INBOX);
            let stopper = h.clone();
            (
                Arc::new(h.clone()) as Arc<dyn Consensus>,
                ConsensusInbox::Paxos(h),
                Arc::new(move || stopper.stop()),
                Start::Paxos(inbox),
            )
        }
        Protocol::Pbft => {
            let (h, inbox) = PbftHandle::channel(INBOX);
            let stopper = h.clone();
            (
                Arc::new(PbftClient(h.clone())) as Arc<dyn Consensus>,
                ConsensusInbox::Pbft(h),
                Arc::new(move || stopper.stop()),
                Start::Pbft(inbox),
            )
        }
    }
}

/// Opens a group's durable state and starts its consensus thread.
fn spawn(
    start: Start,
    group: Config,
    services: Registry,
    transport: Arc<Transport>,
    cfg: &NodeConfig,
    byzantine: Arc<crate::consensus::pbft::Switch>,
    name: String,
) -> anyhow::Result<JoinHandle<()>> {
    let dir = group.data_dir.display().to_string();
    let recovering = || format!("cannot recover from {dir}");
    let thread = std::thread::Builder::new().name(name);
    Ok(match start {
        Start::Raft(inbox) => {
            let r = Raft::open(group, services, transport).with_context(recovering)?;
            thread.spawn(move || r.run(inbox))?
        }
        Start::Paxos(inbox) => {
            let p = Paxos::open(group, services, transport).with_context(recovering)?;
            thread.spawn(move || p.run(inbox))?
        }
        Start::Pbft(inbox) => {
            let p = Pbft::open(group, services, transport, &cfg.pbft_secret, byzantine)
                .with_context(recovering)?;
            thread.spawn(move || p.run(inbox))?
        }
    })
}

/// A running node.
pub struct Node {
    /// Its id.
    pub id: NodeId,
    /// Where its client API listens.
    pub client: SocketAddr,
    /// Where its peer listener listens.
    pub peer: SocketAddr,
    /// Where its admin API listens.
    pub admin: SocketAddr,
    stops: Vec<Stop>,
    threads: Vec<JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

impl Node {
    /// Starts a node on the current tokio runtime.
    pub async fn start(cfg: NodeConfig) -> anyhow::Result<Node> {
        let peer_listener = bind(cfg.peer, "peers").await?;
        let client_listener = bind(cfg.client, "clients").await?;
        let admin_listener = bind(cfg.admin, "admin").await?;
        let (peer, client, admin) = (
            peer_listener.local_addr()?,
            client_listener.local_addr()?,
            admin_listener.local_addr()?,
        );
        let mut members: Members = if cfg.join {
            Members::new()
        } else {
            cfg.peers.clone()
        };
        if !cfg.join {
            members.insert(cfg.id.clone(), peer.to_string());
        }
        let transport = Arc::new(Transport::new(
            cfg.id.clone(),
            tokio::runtime::Handle::current(),
        ));
        let consensus_cfg = Config {
            id: cfg.id.clone(),
            data_dir: cfg.data_dir.clone(),
            members,
            peer_addrs: cfg.peers.clone(),
            election_timeout: cfg.election_timeout,
            heartbeat: cfg.heartbeat,
            snapshot_every: cfg.snapshot_every,
            snapshot_chunk: cfg.snapshot_chunk,
            bugs: cfg.bugs.clone(),
            group: 0,
        };
        // The consensus thread's handle now, its loop once the services exist.
        let (consensus, peer_inbox, stop, start) = channel(cfg.consensus);
        let mut stops = vec![stop];
        let clock = Arc::new(Clock::default());
        let cache = Arc::new(CacheNode::new(
            cfg.id.clone(),
            CacheConfig {
                skip_invalidate: cfg.bugs.has(Bug::SkipInvalidate),
                ..cfg.cache.clone()
            },
            cfg.peers.clone(),
            transport.clone(),
            consensus.clone(),
            clock.clone(),
        ));
        // The services this node runs: a new pattern is a folder under
        // `services/` and a line here. Sharded, the KV and the transactions
        // live in the shard groups; the main group keeps the decisions.
        let sharded = cfg.shards > 0;
        let mut list: Vec<Box<dyn Service>> = vec![
            if sharded {
                Box::new(Unrouted(Box::new(KvService)))
            } else {
                Box::new(KvService)
            },
            Box::new(LockService::new(&cfg.bugs)),
            Box::new(BrokerService::new(&cfg.bugs)),
            Box::new(CacheService::new(cache.clone())),
            Box::new(EventService::new(&cfg.bugs)),
            Box::new(SagaServices::new(&cfg.bugs)),
            Box::new(ProposalService::default()),
            Box::new(RegistryService::default()),
        ];
        if sharded {
            list.push(Box::new(DecisionService::default()));
        } else {
            list.push(Box::new(TxnService::new(&cfg.bugs)));
        }
        let services = Registry::new(list);
        let mut routes = services.routes();
        let byzantine = Arc::new(crate::consensus::pbft::Switch::default());
        let thread = spawn(
            start,
            consensus_cfg.clone(),
            services,
            transport.clone(),
            &cfg,
            byzantine.clone(),
            format!("{}-{}", cfg.consensus.name(), cfg.id),
        )?;
        let mut threads = vec![thread];
        let api_state = Arc::new(ApiState {
            consensus: if sharded {
                Arc::new(shard_api::FixedMembers(consensus.clone()))
            } else {
                consensus.clone()
            },
            request_timeout: cfg.request_timeout,
            clock: clock.clone(),
            slow_writes: cfg.slow_writes,
        });
        // Each shard this node hosts: its own group, log and directory.
        let mut groups = HashMap::new();
        let mut shards = None;
        if sharded {
            let mut everyone: Vec<NodeId> = cfg.peers.keys().cloned().collect();
            everyone.push(cfg.id.clone());
            let placement = Placement::new(&everyone, cfg.shards, cfg.replicas)
                .map_err(|e| anyhow::anyhow!(e))?;
            let mut local: HashMap<u32, Arc<dyn Consensus>> = HashMap::new();
            local.insert(0, consensus.clone());
            for shard in placement.hosted_by(&cfg.id) {
                let (handle, inbox, stop, start) = channel(cfg.consensus);
                stops.push(stop);
                let members: Members = placement
                    .members(shard)
                    .iter()
                    .map(|m| {
                        let addr = if *m == cfg.id {
                            peer.to_string()
                        } else {
                            cfg.peers.get(m).cloned().unwrap_or_default()
                        };
                        (m.clone(), addr)
                    })
                    .collect();
                let group_cfg = Config {
                    data_dir: cfg.data_dir.join(format!("shard-{shard}")),
                    peer_addrs: cfg
                        .peers
                        .iter()
                        .filter(|(id, _)| members.contains_key(*id))
                        .map(|(id, a)| (id.clone(), a.clone()))
                        .collect(),
                    members,
                    group: shard,
                    ..consensus_cfg.clone()
                };
                let registry = Registry::new(vec![
                    Box::new(KvService),
                    Box::new(ShardService::new(&cfg.bugs)),
                    Box::new(SagaServices::new(&cfg.bugs)),
                ]);
                threads.push(spawn(
                    start,
                    group_cfg,
                    registry,
                    Arc::new(transport.for_group(shard)),
                    &cfg,
                    byzantine.clone(),
                    format!("{}-{}-s{shard}", cfg.consensus.name(), cfg.id),
                )?);
                local.insert(shard, handle);
                groups.insert(shard, inbox);
            }
            let s = Arc::new(Shards::new(
                cfg.id.clone(),
                placement,
                local,
                cfg.peers.clone(),
                transport.clone(),
                cfg.request_timeout,
                cfg.bugs.clone(),
                cfg.three_phase,
            ));
            routes = routes.merge(shard_api::routes(s.clone(), &api_state));
            shards = Some(s);
        }
        // The saga orchestrator keeps each saga in the main group's event
        // store; the services it calls are the main group's, or sharded, the
        // shard's of each call's item, wallet or order.
        let orchestrator = Arc::new(Orchestrator::new(
            cfg.id.clone(),
            consensus.clone(),
            shards.clone(),
            clock.clone(),
            cfg.request_timeout,
            cfg.bugs.has(Bug::SkipCompensation),
        ));
        routes = routes.merge(saga_api::routes(orchestrator.clone()));
        let mailbox = Arc::new(
            Mailbox::open(
                cfg.id.clone(),
                &cfg.data_dir,
                cfg.peers.clone(),
                transport.clone(),
                &cfg.bugs,
            )
            .map_err(|e| anyhow::anyhow!("cannot open the mailbox: {e}"))?,
        );
        routes = routes.merge(mailbox_api::routes(mailbox.clone()));
        let registry = if cfg.mesh.registry.is_empty() {
            vec![format!("http://{client}")]
        } else {
            cfg.mesh.registry.clone()
        };
        let sidecar = Sidecar::new(
            cfg.id.clone(),
            registry,
            !cfg.mesh.registry.is_empty(),
            cfg.mesh.routes.clone(),
            cfg.mesh.config.clone(),
            &cfg.bugs,
        );
        routes = routes.merge(mesh_api::routes(sidecar.clone()));
        let admin_state = Arc::new(AdminState {
            id: cfg.id.clone(),
            clock,
            byzantine: (cfg.consensus == Protocol::Pbft).then_some(byzantine),
        });
        let mut tasks = vec![
            tokio::spawn(cache.clone().learn_floor()),
            tokio::spawn(transport::serve(
                cfg.id.clone(),
                peer_listener,
                Arc::new(Receivers {
                    consensus: peer_inbox,
                    groups,
                    cache,
                    shards: shards.clone(),
                    mailbox,
                }),
            )),
            tokio::spawn(async move {
                let _ = axum::serve(
                    http::wire::Listener(client_listener),
                    http::router(api_state, routes),
                )
                .await;
            }),
            tokio::spawn(async move {
                let _ = axum::serve(
                    http::wire::Listener(admin_listener),
                    admin::router(admin_state),
                )
                .await;
            }),
        ];
        tasks.push(tokio::spawn(orchestrator.recover()));
        tasks.push(tokio::spawn(sidecar.run()));
        if let Some(s) = shards {
            tasks.push(tokio::spawn(s.sweep()));
        }
        log_line!(
            cfg.id,
            "listening: clients {client}, peers {peer}, admin {admin}"
        );
        Ok(Node {
            id: cfg.id,
            client,
            peer,
            admin,
            stops,
            threads,
            tasks,
        })
    }

    /// Stops the node: listeners closed, Raft thread joined.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for stop in &self.stops {
            stop();
        }
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.halt();
    }
}
