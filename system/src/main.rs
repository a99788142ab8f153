//! `faultline-node`: one node of the Faultline reference system.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use system::bugs::{self, Bug, Bugs};
use system::consensus::Protocol;
use system::node::{MeshSettings, Node, NodeConfig};
use system::services::cache::CacheConfig;
use system::services::mesh::{instance, instance::InstanceConfig, MeshConfig};

/// One node of the Faultline reference system: a durable key-value store, lock
/// manager, broker and cache on a Raft or Multi-Paxos log.
/// `faultline-node --list-bugs` prints the planted bugs, one per line.
#[derive(Parser, Debug)]
#[command(name = "faultline-node", version, about, after_help = bugs::help())]
struct Args {
    /// This node's id, e.g. n1.
    #[arg(long)]
    id: String,
    /// Directory for the log, term and vote, and snapshots.
    #[arg(long)]
    data_dir: PathBuf,
    /// Client API (HTTP/JSON) listen address.
    #[arg(long, default_value = "127.0.0.1:7001")]
    client: SocketAddr,
    /// Peer traffic listen address.
    #[arg(long, default_value = "127.0.0.1:8001")]
    peer_listen: SocketAddr,
    /// Admin API listen address (clock skew, health).
    #[arg(long, default_value = "127.0.0.1:9001")]
    admin: SocketAddr,
    /// Another node and the address to reach it at, as ID=HOST:PORT (repeat per peer).
    #[arg(long = "peer", value_parser = parse_peer)]
    peers: Vec<(String, String)>,
    /// Start outside the cluster, to be added with POST /cluster/join.
    #[arg(long)]
    join: bool,
    /// Election timeout in ms; each timeout is random in [t, 2t].
    #[arg(long, default_value_t = 100)]
    election_ms: u64,
    /// Heartbeat interval in ms.
    #[arg(long, default_value_t = 25)]
    heartbeat_ms: u64,
    /// Applied entries between snapshots.
    #[arg(long, default_value_t = 20_000)]
    snapshot_every: u64,
    /// Bytes of snapshot text per message to a follower catching up (a
    /// snapshot of any size travels in chunks under the frame cap).
    #[arg(long, default_value_t = 1 << 20)]
    snapshot_chunk_bytes: usize,
    /// How long a client request waits before 504, in ms.
    #[arg(long, default_value_t = 2_000)]
    request_timeout_ms: u64,
    /// Owners (copies) of each cache key.
    #[arg(long, default_value_t = 2)]
    cache_replicas: usize,
    /// Cache entries per node, tombstones included; least recently used go first.
    #[arg(long, default_value_t = 1024)]
    cache_capacity: usize,
    /// How long a cached copy is served, in ms, from the store read that made it.
    #[arg(long, default_value_t = 2000)]
    cache_ttl_ms: u64,
    /// The consensus protocol: raft, paxos or pbft (every node of a cluster must agree).
    #[arg(long, default_value = "raft")]
    consensus: Protocol,
    /// The secret PBFT derives its per-pair MAC keys from (same on every replica).
    #[arg(long, default_value = "faultline")]
    pbft_secret: String,
    /// Split the KV and the transactional keys into this many shards, each its
    /// own consensus group (0: one group for everything). Every node must be
    /// given the same members, shards and replicas.
    #[arg(long, default_value_t = 0)]
    shards: usize,
    /// Nodes in each shard's group (with --shards).
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// How transactions across shards commit: 2pc (decision recorded in the
    /// main group) or 3pc (the textbook three-phase protocol with timeouts,
    /// meant for unreplicated participants: --replicas 1).
    #[arg(long, default_value = "2pc", value_parser = ["2pc", "3pc"])]
    txn: String,
    /// Client URLs of the nodes whose service registry the sidecar reads,
    /// comma-separated (default: this node's own).
    #[arg(long, value_delimiter = ',')]
    mesh_registry: Vec<String>,
    /// Reach mesh instance ID at ADDR instead of its registered address, as
    /// ID=HOST:PORT (repeat per instance; the harness's link proxies).
    #[arg(long = "mesh-route", value_parser = parse_peer)]
    mesh_routes: Vec<(String, String)>,
    /// The sidecar's settings for every service, as the JSON body of
    /// `PUT /mesh/config/{service}` (docs/node-api.md).
    #[arg(long, value_parser = parse_mesh_config)]
    mesh_config: Option<MeshConfig>,
    /// Switch on a planted bug (see the list below).
    #[arg(long = "bug")]
    bugs: Vec<Bug>,
    /// Planted slowdown, not a bug: answer each committed write this many ms
    /// late (at most 60000), so `harness compare` has a regression to find.
    #[arg(long, default_value_t = 0)]
    slow_writes_ms: u64,
}

/// `faultline-node --service NAME`: one instance of an application service
/// behind the mesh, registered in a cluster's registry.
#[derive(Parser, Debug)]
#[command(name = "faultline-node --service", version)]
struct InstanceArgs {
    /// The service this is an instance of.
    #[arg(long)]
    service: String,
    /// This instance's id, e.g. api1.
    #[arg(long)]
    id: String,
    /// Where it listens.
    #[arg(long, default_value = "127.0.0.1:7101")]
    client: SocketAddr,
    /// The address it registers (default: --client).
    #[arg(long)]
    advertise: Option<String>,
    /// Client URLs of the cluster's nodes, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    registry: Vec<String>,
    /// Lease length in ms; it renews every fifth of it.
    #[arg(long, default_value_t = 2_000)]
    lease_ms: u64,
    /// Weight for the weighted balancer.
    #[arg(long, default_value_t = 1)]
    weight: u32,
}

/// The command line as `T`, or the exit code after clap printed why not
/// (0 for --help and --version, 254 for a bad flag).
fn parse<T: Parser>() -> Result<T, ExitCode> {
    T::try_parse().map_err(|e| {
        let code = match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
            _ => 254,
        };
        let _ = e.print();
        ExitCode::from(code)
    })
}

/// The async runtime a node or an instance runs on (two workers).
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("faultline-node: cannot start the runtime: {e}");
            ExitCode::from(255)
        })
}

fn parse_mesh_config(text: &str) -> Result<MeshConfig, String> {
    MeshConfig::parse(text)
}

/// Runs an instance of a mesh service until SIGTERM or SIGINT.
fn run_instance() -> ExitCode {
    let args = match parse::<InstanceArgs>() {
        Ok(a) => a,
        Err(code) => return code,
    };
    if !(100..=600_000).contains(&args.lease_ms) || !(1..=1_000).contains(&args.weight) {
        eprintln!("faultline-node: --lease-ms must be 100 to 600000 and --weight 1 to 1000");
        return ExitCode::from(254);
    }
    let cfg = InstanceConfig {
        id: args.id,
        service: args.service,
        listen: args.client,
        advertise: args.advertise.unwrap_or_else(|| args.client.to_string()),
        registry: args.registry,
        lease: Duration::from_millis(args.lease_ms),
        weight: args.weight,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let id = cfg.id.clone();
    runtime.block_on(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("faultline-node: cannot watch SIGTERM: {e}");
                    return ExitCode::from(255);
                }
            };
        tokio::select! {
            r = instance::run(cfg) => {
                if let Err(e) = r {
                    eprintln!("faultline-node {id}: {e:#}");
                    return ExitCode::from(254);
                }
                ExitCode::SUCCESS
            }
            _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
            _ = term.recv() => ExitCode::SUCCESS,
        }
    })
}

fn parse_peer(text: &str) -> Result<(String, String), String> {
    let (id, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not ID=HOST:PORT"))?;
    if id.is_empty() || !addr.contains(':') {
        return Err(format!("`{text}` is not ID=HOST:PORT"));
    }
    Ok((id.to_string(), addr.to_string()))
}

fn main() -> ExitCode {
    // For tools (the harness) that validate bug names: one `NAME<TAB>what` per line.
    if std::env::args().nth(1).as_deref() == Some("--list-bugs") {
        for (_, name, what) in bugs::ALL {
            println!("{name}\t{what}");
        }
        return ExitCode::SUCCESS;
    }
    if std::env::args().any(|a| a == "--service" || a.starts_with("--service=")) {
        return run_instance();
    }
    let args = match parse::<Args>() {
        Ok(a) => a,
        Err(code) => return code,
    };
    if args.election_ms == 0 || args.heartbeat_ms == 0 || args.heartbeat_ms >= args.election_ms {
        eprintln!("faultline-node: need 0 < --heartbeat-ms < --election-ms");
        return ExitCode::from(254);
    }
    if args.shards > 0 && args.consensus == Protocol::Pbft {
        eprintln!("faultline-node: --shards needs --consensus raft or paxos");
        return ExitCode::from(254);
    }
    if args.txn == "3pc" && args.shards == 0 {
        eprintln!("faultline-node: --txn 3pc needs --shards");
        return ExitCode::from(254);
    }
    if args.shards > 0 && args.join {
        eprintln!("faultline-node: --shards needs fixed members; it cannot --join");
        return ExitCode::from(254);
    }
    let peers: BTreeMap<String, String> = args
        .peers
        .iter()
        .filter(|(id, _)| *id != args.id)
        .cloned()
        .collect();
    let cfg = NodeConfig {
        id: args.id.clone(),
        data_dir: args.data_dir,
        client: args.client,
        peer: args.peer_listen,
        admin: args.admin,
        peers,
        join: args.join,
        election_timeout: Duration::from_millis(args.election_ms),
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        snapshot_every: args.snapshot_every.max(1),
        snapshot_chunk: args.snapshot_chunk_bytes.clamp(1, 16 << 20),
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        slow_writes: Duration::from_millis(args.slow_writes_ms.min(60_000)),
        bugs: Bugs::new(args.bugs),
        consensus: args.consensus,
        pbft_secret: args.pbft_secret,
        cache: CacheConfig {
            replicas: args.cache_replicas.max(1),
            capacity: args.cache_capacity.max(1),
            ttl: Duration::from_millis(args.cache_ttl_ms.max(1)),
            ..CacheConfig::default()
        },
        shards: args.shards,
        replicas: args.replicas,
        three_phase: args.txn == "3pc",
        mesh: MeshSettings {
            registry: args.mesh_registry,
            routes: args.mesh_routes.into_iter().collect(),
            config: args.mesh_config.unwrap_or_default(),
        },
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let node = match Node::start(cfg).await {
            Ok(n) => n,
            Err(e) => {
                eprintln!("faultline-node {}: {e:#}", args.id);
                return ExitCode::from(254);
            }
        };
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("faultline-node: cannot watch SIGTERM: {e}");
                    return ExitCode::from(255);
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        system::log_line!(node.id, "shutting down");
        tokio::task::spawn_blocking(move || node.stop()).await.ok();
        ExitCode::SUCCESS
    })
}
