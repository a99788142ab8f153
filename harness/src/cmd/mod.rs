//! Command-line arguments and dispatch: one file per subcommand.

pub mod bench;
pub mod bench_mesh;
pub mod check;
pub mod compare;
pub mod list;
pub mod maelstrom;
pub mod run;
pub mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Faultline: test distributed systems under real faults and check what they did.
#[derive(Parser, Debug)]
#[command(name = "harness", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Whether the command runs nodes and writes to their pipes (Maelstrom
    /// nodes read their messages on stdin): there a node that dies must give
    /// a write error, not a SIGPIPE that silently kills the harness.
    pub fn writes_to_nodes(&self) -> bool {
        matches!(
            self.command,
            Command::Run(_)
                | Command::Bench(_)
                | Command::Serve { .. }
                | Command::Image { .. }
                | Command::Maelstrom { .. }
        )
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a history file alone (exit 0 valid, 1 invalid, 2 unknown, 254 bad input).
    Check(CheckArgs),
    /// List the models and history formats available.
    List,
    /// Start a cluster, drive a workload with faults, record, check and store the run.
    Run(Box<RunArgs>),
    /// (Re)render a run's report.html (and the store index above it).
    Report {
        /// The run folder.
        run_dir: PathBuf,
    },
    /// Compare two runs for CI: exit 1 on a correctness regression or a performance
    /// change beyond the thresholds.
    Compare(CompareArgs),
    /// Build the node image for Docker (static binary, `FROM scratch`) when missing
    /// or stale, and tag it `faultline-node:latest` for docker-compose.yml.
    Image {
        /// A static node binary to pack instead of building one.
        #[arg(long)]
        node_bin: Option<PathBuf>,
    },
    /// The same closed-loop kv load against each target, side by side, with
    /// leader failover times; prints and stores the table.
    Bench(BenchArgs),
    /// Maelstrom's command line: `harness maelstrom test -w broadcast --bin
    /// ./node --node-count 5 ...` runs your Maelstrom node with Maelstrom's
    /// flags; `harness maelstrom bench` measures the message router.
    Maelstrom {
        #[command(subcommand)]
        command: maelstrom::MaelstromCommand,
    },
    /// Serve the run store on loopback for browsing.
    Serve {
        /// Store root.
        #[arg(long, default_value = "store")]
        store: PathBuf,
        /// Port.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Serve the live dashboard for a cluster started elsewhere (by hand, by
    /// docker-compose): each node's role, term, commit index and liveness.
    Dashboard {
        /// The nodes' client URLs, comma-separated, each `URL` or `ID=URL`.
        #[arg(long)]
        nodes: String,
        /// Address to serve the page on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
        /// A run's history.jsonl to follow for faults and ops, if any.
        #[arg(long)]
        history: Option<PathBuf>,
    },
    /// Serve the file system of `--nemesis lose-unsynced` (started by `run`):
    /// mounts a FUSE layer at MOUNT over BACKING that keeps unsynced data in
    /// memory, controlled over the Unix socket CONTROL.
    #[command(hide = true)]
    Lazyfs {
        /// The directory that plays the disk.
        #[arg(long)]
        backing: PathBuf,
        /// Where to mount.
        #[arg(long)]
        mount: PathBuf,
        /// The control socket.
        #[arg(long)]
        control: PathBuf,
    },
}

/// Arguments of `harness bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Targets, comma-separated; ratios are to the first (see `harness list`).
    /// `builtin:paxos` is the builtin system on Multi-Paxos.
    #[arg(long, default_value = crate::targets::DEFAULT)]
    pub targets: String,
    /// Protocols for the builtin target, comma-separated (`raft,paxos`): each
    /// `builtin` in `--targets` becomes one column per protocol.
    #[arg(long)]
    pub consensus: Option<String>,
    /// Workload (only kv runs on every target).
    #[arg(long, default_value = "kv")]
    pub workload: String,
    /// Measure what a hop through the mesh's sidecar adds to a direct call
    /// (p50, p99; with and without circuit breakers), `--time-limit` seconds each.
    #[arg(long)]
    pub mesh: bool,
    /// Measure these workloads of our own system instead (comma-separated,
    /// e.g. `kv,lock,queue,cache,txn`): each at every concurrency, `--repeat`
    /// times, reported as median with the spread.
    #[arg(long)]
    pub suite: Option<String>,
    /// Shard counts for the suite's builtin system, comma-separated (`0`:
    /// unsharded; `1,2,4` runs each workload sharded three ways, e.g. the
    /// bank's transactions within one shard against across several).
    #[arg(long, default_value = "0")]
    pub shards: String,
    /// Runs per (workload, concurrency) in a suite.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub repeat: u32,
    /// Client counts, comma-separated.
    #[arg(long, default_value = "1,16,64")]
    pub concurrency: String,
    /// Seconds of load per target and client count.
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    pub time_limit: f64,
    /// Cluster size.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: u16,
    /// Leader kills per target for the failover time.
    #[arg(long, default_value_t = 3)]
    pub failover_trials: u32,
    /// Run store root; the bench goes to STORE/bench/TIMESTAMP.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// The builtin node binary (default: build it).
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// Seed of the load.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// An extra argument for every builtin node (repeatable), e.g.
    /// `--node-arg=--slow-writes-ms=20` to plant a slowdown `compare` must catch.
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    pub node_args: Vec<String>,
}

/// Arguments of `harness compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The baseline run folder.
    pub base: PathBuf,
    /// The run to judge.
    pub current: PathBuf,
    /// Also write a JUnit XML report here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Also write a Markdown report here.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Largest allowed drop of ok ops/s, percent.
    #[arg(long, default_value_t = 20.0, value_parser = non_negative)]
    pub max_throughput_drop: f64,
    /// Largest allowed rise of any op's p99 latency, percent.
    #[arg(long, default_value_t = 50.0, value_parser = non_negative)]
    pub max_p99_rise: f64,
}

/// Arguments of `harness run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Workload (see `harness list`).
    #[arg(long)]
    pub workload: String,
    /// System under test: builtin, etcd, redis, redis-sentinel, maelstrom (see `harness list`).
    #[arg(long, default_value = crate::targets::DEFAULT)]
    pub target: String,
    /// The command each node runs, for targets that run yours (maelstrom), through `sh -c`.
    #[arg(long)]
    pub bin: Option<String>,
    /// The target's configuration file, for targets that take one (see `harness list`).
    #[arg(long)]
    pub target_config: Option<PathBuf>,
    /// Read mode: linearizable (default); redis: replica (read from the
    /// replicas); etcd: serializable (served by any member without a quorum).
    #[arg(long, default_value = "linearizable")]
    pub reads: String,
    /// Where nodes run: process (local processes) or docker (containers; builtin only).
    #[arg(long, default_value = "process")]
    pub runtime: String,
    /// Number of nodes (default 5; 4 under --consensus pbft, n = 3f+1 with f = 1).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: Option<u16>,
    /// Logical client processes.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub concurrency: u16,
    /// Total ops/s, open loop (default: each client as fast as it can).
    #[arg(long, value_parser = positive)]
    pub rate: Option<f64>,
    /// Seconds of workload.
    #[arg(long, default_value_t = 20.0, value_parser = seconds)]
    pub time_limit: f64,
    /// Faults: comma-separated kill,pause,partition,clock,delay,loss, or none, or all.
    #[arg(long, default_value = "all")]
    pub nemesis: String,
    /// Seconds each fault lasts, and the calm after it.
    #[arg(long, default_value_t = 3.0, value_parser = seconds)]
    pub nemesis_interval: f64,
    /// Shapes the partition nemesis draws from: comma-separated one, halves,
    /// majority, bridge, ring, leader (isolate the leader or primary), or all.
    #[arg(long, default_value = "all")]
    pub partitions: String,
    /// The builtin target's consensus protocol: raft, paxos or pbft.
    #[arg(long, default_value = "raft")]
    pub consensus: String,
    /// Split the builtin system's KV and transactional keys into this many
    /// shards, each its own consensus group (0: one group); transactions
    /// across shards run two-phase commit.
    #[arg(long, default_value_t = 0)]
    pub shards: usize,
    /// Nodes in each shard's group (with --shards).
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// How transactions across shards commit (with --shards): 2pc, or 3pc
    /// (textbook three-phase commit; meant for --replicas 1).
    #[arg(long, default_value = "2pc")]
    pub txn: String,
    /// The one behaviour of `--nemesis byzantine` (equivocate, wrong-digest,
    /// wrong-result, silent, replay, false-view); by default the seed picks.
    #[arg(long)]
    pub byzantine: Option<String>,
    /// A planted bug to switch on in every node (repeatable; see `harness list`).
    #[arg(long = "bug")]
    pub bugs: Vec<String>,
    /// An extra argument for every node of the builtin target, after the
    /// workload's own (repeatable), e.g. `--node-arg=--snapshot-every=200`.
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    pub node_args: Vec<String>,
    /// Seed of every random choice (default: from the clock; recorded in test.json).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Root of the run store.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Keys in use at once (kv).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..))]
    pub keys: u32,
    /// Operations per key before a fresh key replaces it (kv).
    #[arg(long, default_value_t = 150, value_parser = clap::value_parser!(u32).range(1..))]
    pub ops_per_key: u32,
    /// Client timeout per operation in ms; a timeout records `info`.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u64).range(1..))]
    pub op_timeout_ms: u64,
    /// Seconds of calm after healing, before the final reads.
    #[arg(long, default_value_t = 3.0, value_parser = seconds_or_zero)]
    pub recovery: f64,
    /// Seconds the checker may take before answering unknown.
    #[arg(long, default_value_t = 60.0, value_parser = seconds)]
    pub check_time_limit: f64,
    /// The node binary (default: built from this source tree).
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// Serve the live dashboard on this address while the run lasts (e.g.
    /// `127.0.0.1:8081`).
    #[arg(long, value_parser = socket_addr)]
    pub dashboard: Option<String>,
    /// Maelstrom's broadcast topology: grid, line, total, tree2, tree3, tree4 (default tree4).
    #[arg(long)]
    pub topology: Option<String>,
    /// Mean latency of every message the Maelstrom router carries, ms.
    #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
    pub latency: f64,
    /// How that latency is drawn: constant, uniform or exponential.
    #[arg(long, default_value = "exponential")]
    pub latency_dist: String,
    /// Share of operations that must succeed for a valid run: `total` or a
    /// fraction such as 0.99 (default: measured, not judged).
    #[arg(long)]
    pub availability: Option<String>,
    /// Copy the nodes' stderr to the harness's (Maelstrom target).
    #[arg(long)]
    pub log_stderr: bool,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// The longest duration a flag takes, in seconds (115 days): far beyond any
/// test, and far from where adding it to a clock would overflow.
pub const MAX_SECONDS: f64 = 1e7;

fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("`{text}` is not a positive number")),
    }
}

fn non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("`{text}` is not a non-negative number")),
    }
}

/// A positive number of seconds, at most [`MAX_SECONDS`].
fn seconds(text: &str) -> Result<f64, String> {
    let x = positive(text)?;
    bounded(text, x)
}

/// Zero or more seconds, at most [`MAX_SECONDS`].
fn seconds_or_zero(text: &str) -> Result<f64, String> {
    let x = non_negative(text)?;
    bounded(text, x)
}

fn bounded(text: &str, x: f64) -> Result<f64, String> {
    if x > MAX_SECONDS {
        return Err(format!(
            "`{text}` seconds is more than the {MAX_SECONDS:.0} a test may last"
        ));
    }
    Ok(x)
}

/// Arguments of `harness check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Model: register, cas-register, kv, append-kv, mutex, fifo-queue, or a
    /// transactional one: list-append, rw-register.
    #[arg(long)]
    pub model: String,
    /// For list-append and rw-register: the consistency model the verdict is
    /// about (read-uncommitted ... strict-serializable; default strict-serializable).
    #[arg(long, value_name = "MODEL")]
    pub consistency: Option<checker::txn::ConsistencyModel>,
    /// For rw-register: each key is a linearizable register, so real time also
    /// orders its versions (unsound if the system does not promise it).
    #[arg(long)]
    pub linearizable_keys: bool,
    /// History format: jsonl (default), jepsen-log, jepsen-edn.
    #[arg(long, default_value = "jsonl")]
    pub format: checker::Format,
    /// Print the result object as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// Give up with `unknown` after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = seconds_or_zero)]
    pub time_limit: Option<f64>,
    /// Give up with `unknown` before the search uses more memory (e.g. 512MiB, 2GiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "2GiB")]
    pub memory_limit: usize,
    /// Check the whole history as one object instead of key by key.
    #[arg(long)]
    pub no_partition: bool,
    /// Try every one of several equal open ops instead of one (slower; for
    /// measuring and cross-checking the symmetry pruning).
    #[arg(long)]
    pub no_symmetry: bool,
    /// Do not refute, before searching, ops that no reachable state accepts (for
    /// measuring and cross-checking that pass).
    #[arg(long)]
    pub no_reachability: bool,
    /// Which search decides each key: `both` (default: the depth-first search,
    /// raced by the configuration-set sweep on keys of more than 256 ops),
    /// `search` or `sweep` alone (for measuring and cross-checking).
    #[arg(long, value_name = "E", default_value = "both", value_parser = parse_engine)]
    pub engine: checker::Engine,
    /// Keep checking other keys after one is found invalid, to report them all.
    #[arg(long)]
    pub all_failures: bool,
    /// The history file.
    pub file: PathBuf,
}

/// Parses `--engine`.
fn parse_engine(s: &str) -> Result<checker::Engine, String> {
    match s {
        "both" => Ok(checker::Engine::Both),
        "search" => Ok(checker::Engine::Search),
        "sweep" => Ok(checker::Engine::Sweep),
        _ => Err(format!(
            "unknown engine {s:?}: expected both, search or sweep"
        )),
    }
}

/// Parses sizes like `1048576`, `512MiB`, `2GiB`, `1.5G`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 512MiB or 2GiB"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit `{other}` (use B, KiB, MiB or GiB)"
            ))
        }
    };
    Ok((n * scale) as usize)
}

/// Runs the chosen subcommand and returns the process exit code.
pub fn dispatch(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::List => {
            list::print();
            ExitCode::SUCCESS
        }
        Command::Run(args) => run::run(&args),
        Command::Report { run_dir } => match reports::render_run(&run_dir) {
            Ok(path) => {
                let store = run_dir.parent().and_then(|p| p.parent());
                if let Some(store) = store.filter(|s| s.join("latest").exists()) {
                    let _ = reports::index::render(store);
                }
                println!("{}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("harness report: {e}");
                ExitCode::from(crate::EXIT_BAD_INPUT)
            }
        },
        Command::Compare(args) => compare::run(&args),
        Command::Bench(args) => bench::command(&args),
        Command::Maelstrom { command } => maelstrom::command(&command),
        Command::Serve { store, port } => serve::run(&store, port),
        Command::Dashboard {
            nodes,
            listen,
            history,
        } => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("harness dashboard: {e}");
                    return ExitCode::from(crate::EXIT_INTERNAL);
                }
            };
            match rt.block_on(crate::dashboard::command(&listen, &nodes, history)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("harness dashboard: {e:#}");
                    ExitCode::from(crate::EXIT_BAD_INPUT)
                }
            }
        }
        Command::Lazyfs {
            backing,
            mount,
            control,
        } => match crate::runtime::lazyfs::serve(&backing, &mount, &control) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("harness lazyfs: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Image { node_bin } => crate::runtime::docker::image::command(node_bin.as_deref()),
    }
}

/// An `IP:PORT` to listen on, checked before anything starts.
fn socket_addr(text: &str) -> Result<String, String> {
    text.parse::<std::net::SocketAddr>()
        .map(|_| text.to_string())
        .map_err(|_| format!("`{text}` is not an IP:PORT address (e.g. 127.0.0.1:8081)"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
    }
}
