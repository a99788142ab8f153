//! `harness run` on the command line: validate, run, print the summary, exit with
//! the verdict's code.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use checker::Validity;

use crate::cmd::RunArgs;
use crate::run::{BadInput, Interrupted, TestConfig};
use crate::{EXIT_BAD_INPUT, EXIT_INTERNAL};

fn replay_command(c: &TestConfig) -> String {
    let mut parts = vec![
        "cargo run --release --bin harness -- run".to_string(),
        format!("--workload {}", c.workload),
        format!("--nodes {}", c.nodes),
        format!("--concurrency {}", c.concurrency),
        format!("--time-limit {}", c.time_limit),
        format!(
            "--nemesis {}",
            if c.nemesis.is_empty() {
                "none".to_string()
            } else {
                c.nemesis.join(",")
            }
        ),
        format!("--nemesis-interval {}", c.nemesis_interval),
        if c.partitions.is_empty() {
            String::new()
        } else {
            format!("--partitions {}", c.partitions.join(","))
        },
        format!("--keys {} --ops-per-key {}", c.keys, c.ops_per_key),
        format!("--seed {}", c.seed),
    ];
    if c.target != crate::targets::DEFAULT {
        parts.push(format!("--target {}", c.target));
    }
    if let Some(bin) = &c.bin {
        parts.push(format!("--bin '{bin}'"));
    }
    if let Some(file) = &c.target_config {
        parts.push(format!("--target-config {}", file.display()));
    }
    if c.reads != "linearizable" {
        parts.push(format!("--reads {}", c.reads));
    }
    if let Some(r) = c.rate {
        parts.push(format!("--rate {r}"));
    }
    if c.consensus != "raft" {
        parts.push(format!("--consensus {}", c.consensus));
    }
    if c.shards > 0 {
        parts.push(format!("--shards {} --replicas {}", c.shards, c.replicas));
        if c.txn != "2pc" {
            parts.push(format!("--txn {}", c.txn));
        }
    }
    if let Some(b) = &c.byzantine {
        parts.push(format!("--byzantine {b}"));
    }
    for b in &c.bugs {
        parts.push(format!("--bug {b}"));
    }
    for a in &c.node_args {
        parts.push(format!("--node-arg='{a}'"));
    }
    parts.retain(|p| !p.is_empty());
    parts.join(" ")
}

/// Runs `harness run`.
pub fn run(args: &RunArgs) -> ExitCode {
    let nemesis = match crate::nemesis::parse(&args.nemesis) {
        // `all` means every fault that applies to the target.
        Ok(n) if args.nemesis.trim() == "all" => match crate::targets::get(&args.target) {
            Ok(t) => n
                .into_iter()
                .filter(|k| t.faults().contains(&k.as_str()))
                .filter(|k| {
                    (args.consensus == "raft" && args.shards == 0)
                        || !crate::nemesis::CHANGE_MEMBERS.contains(&k.as_str())
                })
                .filter(|k| args.consensus == "pbft" || k != "byzantine")
                .filter(|k| args.shards > 0 || args.workload == "saga" || k != "crash-points")
                .filter(|k| args.consensus != "pbft" || k != "corrupt")
                .filter(|k| {
                    k != "brownout"
                        || workloads::workload(&args.workload)
                            .is_ok_and(|w| !w.services().is_empty())
                })
                .filter(|k| {
                    crate::nemesis::get(k)
                        .is_ok_and(|f| f.runtimes().contains(&args.runtime.as_str()))
                })
                .collect(),
            Err(_) => n,
        },
        Ok(n) => n,
        Err(e) => {
            eprintln!("harness run: --nemesis: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let partitions = match crate::net::partition::parse_shapes(&args.partitions) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("harness run: --partitions: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    if let Err(e) = workloads::workload(&args.workload) {
        eprintln!("harness run: --workload: {e}");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            % 1_000_000_007
    });
    let mut cfg = TestConfig {
        workload: args.workload.clone(),
        target: args.target.clone(),
        reads: args.reads.clone(),
        bin: args.bin.clone(),
        target_config: args.target_config.clone(),
        runtime: args.runtime.clone(),
        nodes: args
            .nodes
            .unwrap_or(if args.consensus == "pbft" { 4 } else { 5 }) as usize,
        concurrency: args.concurrency as usize,
        rate: args.rate,
        time_limit: args.time_limit,
        nemesis,
        nemesis_interval: args.nemesis_interval,
        partitions,
        consensus: args.consensus.clone(),
        shards: args.shards,
        replicas: args.replicas,
        txn: args.txn.clone(),
        byzantine: args.byzantine.clone(),
        bugs: args.bugs.clone(),
        node_args: args.node_args.clone(),
        seed,
        store: args.store.clone(),
        keys: args.keys as usize,
        ops_per_key: args.ops_per_key as usize,
        op_timeout_ms: args.op_timeout_ms,
        recovery: args.recovery,
        check_time_limit: args.check_time_limit,
        node_bin: args.node_bin.clone(),
        topology: args.topology.clone(),
        latency_ms: args.latency,
        latency_dist: args.latency_dist.clone(),
        availability: args.availability.clone(),
        log_stderr: args.log_stderr,
        command: String::new(),
        dashboard: args.dashboard.clone(),
    };
    cfg.command = replay_command(&cfg);
    if cfg.runtime == "docker" {
        // testcontainers reads DOCKER_HOST once; point it at the API shim while
        // this process has a single thread.
        let shim = crate::runtime::docker::shim_socket();
        std::env::set_var("DOCKER_HOST", format!("unix://{}", shim.display()));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("harness run: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_INTERNAL);
        }
    };
    let quiet = args.quiet;
    let outcome = runtime.block_on(crate::run::run(cfg, quiet));
    drop(runtime);
    match outcome {
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
            eprintln!("harness run: interrupted; the nodes were stopped and removed");
            ExitCode::from(EXIT_INTERNAL)
        }
        Err(e) => {
            if let Some(b) = e.downcast_ref::<BadInput>() {
                eprintln!("harness run: {b}");
                ExitCode::from(EXIT_BAD_INPUT)
            } else {
                eprintln!("harness run: {e:#}");
                ExitCode::from(EXIT_INTERNAL)
            }
        }
        Ok(out) => {
            let verdict = match out.valid {
                Validity::Valid => "valid",
                Validity::Invalid => "INVALID",
                Validity::Unknown => "unknown",
            };
            let results = std::fs::read_to_string(out.dir.join("results.json")).unwrap_or_default();
            let summary: serde_json::Value = serde_json::from_str(&results).unwrap_or_default();
            let perf = &summary["checkers"]["perf"];
            println!("run: {}", out.dir.display());
            // Every checker with a verdict, e.g. "linearizable true, final-reads true".
            let verdicts: Vec<String> = summary["checkers"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(name, _)| !matches!(name.as_str(), "perf" | "stats"))
                .map(|(name, r)| format!("{name} {}", r["valid"]))
                .collect();
            println!(
                "  {verdict}: {}; {} faults; {:.0} ok ops/s, availability {:.1}%",
                verdicts.join(", "),
                summary["faults"],
                perf["ok_per_second"].as_f64().unwrap_or(0.0),
                perf["availability"].as_f64().unwrap_or(0.0) * 100.0
            );
            println!("  history: {}", out.dir.join("history.jsonl").display());
            println!("  results: {}", out.dir.join("results.json").display());
            ExitCode::from(out.valid.exit_code() as u8)
        }
    }
}
