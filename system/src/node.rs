//! Assembles a node: listeners, transport, consensus (a Raft, Paxos or PBFT thread), the
//! services it runs, the client and admin APIs.

use std::collections::BTreeMap;
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
use crate::services::kv::KvService;
use crate::services::locks::LockService;
use crate::services::txn::TxnService;
use crate::services::Registry;
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
    /// Planted bugs.
    pub bugs: Bugs,
    /// Which protocol orders the log.
    pub consensus: Protocol,
    /// The secret PBFT's MAC keys derive from.
    pub pbft_secret: String,
    /// The distributed cache's layout and timing.
    pub cache: CacheConfig,
}

/// A consensus thread's inbox, before its loop starts.
enum Start {
    Raft(crate::consensus::inbox::Inbox<crate::consensus::raft::Message>),
    Paxos(crate::consensus::inbox::Inbox<crate::consensus::paxos::Message>),
    Pbft(crate::consensus::inbox::Inbox<crate::consensus::pbft::Signed>),
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
    stop: Arc<dyn Fn() + Send + Sync>,
    thread: Option<JoinHandle<()>>,
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
        };
        // The consensus thread's handle now, its loop once the services exist.
        let (consensus, peer_inbox, stop, start): (_, _, Arc<dyn Fn() + Send + Sync>, _) =
            match cfg.consensus {
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
            };
        let cache = Arc::new(CacheNode::new(
            cfg.id.clone(),
            CacheConfig {
                skip_invalidate: cfg.bugs.has(Bug::SkipInvalidate),
                ..cfg.cache.clone()
            },
            cfg.peers.clone(),
            transport.clone(),
            consensus.clone(),
        ));
        // The services this node runs: a new pattern is a folder under
        // `services/` and a line here.
        let services = Registry::new(vec![
            Box::new(KvService),
            Box::new(LockService::new(&cfg.bugs)),
            Box::new(BrokerService::new(&cfg.bugs)),
            Box::new(CacheService::new(cache.clone())),
            Box::new(TxnService::new(&cfg.bugs)),
        ]);
        let routes = services.routes();
        let byzantine = Arc::new(crate::consensus::pbft::Switch::default());
        let recovering = || format!("cannot recover from {}", cfg.data_dir.display());
        let name = format!("{}-{}", cfg.consensus.name(), cfg.id);
        let thread = match start {
            Start::Raft(inbox) => {
                let r = Raft::open(consensus_cfg, services, transport.clone())
                    .with_context(recovering)?;
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || r.run(inbox))?
            }
            Start::Paxos(inbox) => {
                let p = Paxos::open(consensus_cfg, services, transport.clone())
                    .with_context(recovering)?;
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || p.run(inbox))?
            }
            Start::Pbft(inbox) => {
                let p = Pbft::open(
                    consensus_cfg,
                    services,
                    transport.clone(),
                    &cfg.pbft_secret,
                    byzantine.clone(),
                )
                .with_context(recovering)?;
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || p.run(inbox))?
            }
        };
        let clock = Arc::new(Clock::default());
        let api_state = Arc::new(ApiState {
            consensus,
            request_timeout: cfg.request_timeout,
            clock: clock.clone(),
        });
        let admin_state = Arc::new(AdminState {
            id: cfg.id.clone(),
            clock,
            byzantine: (cfg.consensus == Protocol::Pbft).then_some(byzantine),
        });
        let tasks = vec![
            tokio::spawn(cache.clone().learn_floor()),
            tokio::spawn(transport::serve(
                cfg.id.clone(),
                peer_listener,
                Arc::new(Receivers {
                    consensus: peer_inbox,
                    cache,
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
        log_line!(
            cfg.id,
            "listening: clients {client}, peers {peer}, admin {admin}"
        );
        Ok(Node {
            id: cfg.id,
            client,
            peer,
            admin,
            stop,
            thread: Some(thread),
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
        (self.stop)();
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.halt();
    }
}
