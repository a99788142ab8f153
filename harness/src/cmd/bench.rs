//! `harness bench`: the same closed-loop kv load against each target in one
//! invocation, one concurrency after another, with durable settings on every
//! target (the builtin node fsyncs each batch before acknowledging; etcd
//! fsyncs its WAL by default; Redis runs with `appendfsync always`). Prints and
//! stores throughput, p50 and p99 per operation with each target's ratio to the
//! first, and the leader failover time: SIGKILL the leader, time until the
//! first acknowledged write, over several trials.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::time::Instant;
use workloads::{Completion, Invocation, Rng, WorkloadOptions};

use crate::cmd::BenchArgs;
use crate::run::{BadInput, TestConfig};

/// What `harness bench` was asked.
pub struct BenchPlan {
    /// Targets, the first being the baseline of the ratios.
    pub targets: Vec<String>,
    /// Client counts.
    pub concurrency: Vec<usize>,
    /// Seconds of load per (target, concurrency).
    pub time_limit: f64,
    /// Cluster size.
    pub nodes: usize,
    /// Leader kills per target.
    pub failover_trials: usize,
    /// Run store.
    pub store: PathBuf,
    /// Builtin node binary, if given.
    pub node_bin: Option<PathBuf>,
    /// Seed of the load.
    pub seed: u64,
    /// Shard counts the suite runs each workload at (0: unsharded).
    pub shards: Vec<usize>,
    /// Extra arguments for the builtin nodes (`--node-arg`).
    pub node_args: Vec<String>,
}

/// A bench target's name and protocol: `builtin:paxos` is the builtin target
/// on Multi-Paxos; a bare name runs Raft (or has no choice).
fn split(target: &str) -> (&str, &str) {
    target.split_once(':').unwrap_or((target, "raft"))
}

pub(crate) fn config(plan: &BenchPlan, target: &str, concurrency: usize) -> TestConfig {
    let (name, consensus) = split(target);
    TestConfig {
        workload: "kv".into(),
        target: name.into(),
        reads: "linearizable".into(),
        bin: None,
        target_config: None,
        runtime: "process".into(),
        // PBFT needs n = 3f+1: at least 4 replicas.
        nodes: if consensus == "pbft" {
            plan.nodes.max(4)
        } else {
            plan.nodes
        },
        concurrency,
        rate: None,
        time_limit: plan.time_limit,
        nemesis: Vec::new(),
        nemesis_interval: 1.0,
        partitions: Vec::new(),
        consensus: consensus.into(),
        shards: 0,
        replicas: 3,
        txn: "2pc".into(),
        byzantine: None,
        bugs: Vec::new(),
        // Node arguments are the builtin node's; other targets keep their own.
        node_args: if name == "builtin" {
            plan.node_args.clone()
        } else {
            Vec::new()
        },
        seed: plan.seed,
        store: plan.store.clone(),
        keys: 6,
        ops_per_key: 150,
        op_timeout_ms: 1500,
        recovery: 0.5,
        check_time_limit: 60.0,
        node_bin: plan.node_bin.clone(),
        topology: None,
        latency_ms: 0.0,
        latency_dist: "exponential".into(),
        availability: None,
        log_stderr: false,
        command: format!("harness bench --targets {target} --concurrency {concurrency}"),
        dashboard: None,
    }
}

/// A new folder for one bench under `STORE/bench/`.
pub(crate) fn new_bench_dir(plan: &BenchPlan) -> anyhow::Result<PathBuf> {
    let out = plan
        .store
        .join("bench")
        .join(crate::run::store::timestamp(std::time::SystemTime::now()));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    Ok(out)
}

/// Writes `bench.json`, `bench.md` and `bench.html` (the plots) to `out` and
/// prints the table.
pub(crate) fn store_bench(out: &Path, result: &Value, table: &str) -> anyhow::Result<()> {
    std::fs::write(out.join("bench.json"), serde_json::to_vec_pretty(result)?)?;
    std::fs::write(out.join("bench.md"), table)?;
    match reports::bench::html(result, table) {
        Ok(page) => std::fs::write(out.join("bench.html"), page)?,
        // The figures are stored; a page that cannot be drawn is no reason to lose them.
        Err(e) => eprintln!("bench: cannot draw bench.html: {e}"),
    }
    // The store's index links every bench page (out is STORE/bench/TIMESTAMP).
    if let Some(store) = out.parent().and_then(Path::parent) {
        let _ = reports::index::render(store);
    }
    print!("{table}");
    Ok(())
}

/// Median, smallest and largest of `xs` (empty: `None`).
fn spread(xs: &mut [f64]) -> Option<(f64, f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let median = if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    };
    Some((median, xs[0], xs[n - 1]))
}

/// Folds repeated runs of one (workload, concurrency) into medians with their
/// spread: throughput, and p50 and p99 of every op.
fn summarize(workload: &str, concurrency: usize, runs: &[Value]) -> Value {
    let field = |xs: &mut Vec<f64>| {
        spread(xs).map(|(m, lo, hi)| json!({"median": m, "min": lo, "max": hi}))
    };
    let mut tput: Vec<f64> = runs
        .iter()
        .filter_map(|r| r["ok_per_second"].as_f64())
        .collect();
    let mut names: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r["ops"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(f, _)| f.clone())
        })
        .collect();
    names.sort();
    names.dedup();
    let mut ops = serde_json::Map::new();
    for f in names {
        let mut p50: Vec<f64> = runs
            .iter()
            .filter_map(|r| r["ops"][&f]["p50_ms"].as_f64())
            .collect();
        let mut p99: Vec<f64> = runs
            .iter()
            .filter_map(|r| r["ops"][&f]["p99_ms"].as_f64())
            .collect();
        ops.insert(
            f,
            json!({"p50_ms": field(&mut p50), "p99_ms": field(&mut p99)}),
        );
    }
    let valid = runs.iter().filter(|r| r["valid"] == "valid").count();
    let mut refused: Vec<f64> = runs
        .iter()
        .filter_map(|r| r["availability"].as_f64().map(|a| 100.0 * (1.0 - a)))
        .collect();
    json!({"workload": workload, "concurrency": concurrency, "runs": runs.len(),
           "valid_runs": valid, "ok_per_second": field(&mut tput), "ops": ops,
           "not_ok_percent": field(&mut refused),
           "run_dirs": runs.iter().map(|r| r["run"].clone()).collect::<Vec<_>>()})
}

/// Runs the suite: every workload of our system at every concurrency,
/// `repeat` times each (seeds `seed`, `seed + 1`, ...); answers the stored folder.
pub async fn suite(
    plan: &BenchPlan,
    workloads: &[String],
    repeat: usize,
) -> anyhow::Result<PathBuf> {
    for w in workloads {
        workloads::workload(w).map_err(|e| BadInput(format!("--suite: {e}")))?;
    }
    let out = new_bench_dir(plan)?;
    let mut rows = Vec::new();
    let mut faults = Vec::new();
    for w in workloads {
        for &shards in &plan.shards {
            for &c in &plan.concurrency {
                let mut runs = Vec::new();
                for r in 0..repeat {
                    eprintln!(
                        "bench: {w} on {shards} shards with {c} clients, run {} of {repeat}",
                        r + 1
                    );
                    let mut cfg = config(plan, crate::targets::DEFAULT, c);
                    cfg.workload = w.clone();
                    cfg.seed = plan.seed + r as u64;
                    cfg.shards = shards;
                    cfg.command =
                        format!("harness bench --suite {w} --shards {shards} --concurrency {c}");
                    let outcome = crate::run::run(cfg, true).await?;
                    let valid = format!("{:?}", outcome.valid).to_lowercase();
                    runs.push(row(crate::targets::DEFAULT, c, &outcome.dir, &valid)?);
                }
                let mut summary = summarize(w, c, &runs);
                summary["shards"] = json!(shards);
                rows.push(summary);
            }
            faults.push(fault_runs(plan, w, shards, repeat).await?);
        }
    }
    let result = json!({"suite": workloads, "concurrency": plan.concurrency,
                        "repeat": repeat, "time_limit": plan.time_limit,
                        "nodes": plan.nodes, "rows": rows, "faults": faults});
    store_bench(&out, &result, &render_suite(&result))?;
    Ok(out)
}

/// The suite's standard fault schedule: one side partitioned away, then a node
/// killed and restarted, in turns.
const SUITE_FAULTS: [&str; 2] = ["partition", "kill"];

/// `repeat` runs of workload `w` under [`SUITE_FAULTS`] at the largest client
/// count, folded into availability under faults and time to recover after each
/// heal (median [min-max] over every heal of every run). A run the harness
/// cannot make is named in the row, not fatal to the suite.
async fn fault_runs(
    plan: &BenchPlan,
    w: &str,
    shards: usize,
    repeat: usize,
) -> anyhow::Result<Value> {
    let c = plan.concurrency.iter().copied().max().unwrap_or(1);
    let (mut avail, mut recovery) = (Vec::new(), Vec::new());
    let (mut heals, mut unrecovered, mut valid, mut errors) = (0, 0, 0, Vec::new());
    let mut stretches = 0;
    for r in 0..repeat {
        eprintln!(
            "bench: {w} on {shards} shards with {c} clients under {}, run {} of {repeat}",
            SUITE_FAULTS.join(","),
            r + 1
        );
        let mut cfg = config(plan, crate::targets::DEFAULT, c);
        cfg.workload = w.to_string();
        cfg.seed = plan.seed + r as u64;
        cfg.shards = shards;
        cfg.nemesis = SUITE_FAULTS.iter().map(|f| f.to_string()).collect();
        // Several faults and heals within the run, and time after the last.
        cfg.nemesis_interval = (plan.time_limit / 4.0).max(0.25);
        cfg.recovery = cfg.recovery.max(1.0);
        cfg.command = format!(
            "harness run --workload {w} --shards {shards} --concurrency {c} --nemesis {}",
            SUITE_FAULTS.join(",")
        );
        let outcome = match crate::run::run(cfg, true).await {
            Ok(o) => o,
            Err(e) => {
                errors.push(format!("{e:#}"));
                continue;
            }
        };
        valid += usize::from(outcome.valid == checker::Validity::Valid);
        let run = reports::data::Run::load(&outcome.dir)?;
        let m = reports::recovery::measure(&run.ops, &run.faults, run.load_end);
        avail.extend(m.availability_percent());
        stretches += m.stretches;
        heals += m.recovery_ms.len() + m.unrecovered;
        recovery.extend(m.recovery_ms);
        unrecovered += m.unrecovered;
    }
    let field = |xs: &mut Vec<f64>| {
        spread(xs).map(|(m, lo, hi)| json!({"median": m, "min": lo, "max": hi}))
    };
    Ok(json!({"workload": w, "shards": shards, "concurrency": c,
              "nemesis": SUITE_FAULTS.join(","), "runs": repeat, "valid_runs": valid,
              "ok_percent_under_faults": field(&mut avail),
              "recovery_ms": field(&mut recovery), "fault_stretches": stretches,
              "heals": heals,
              "unrecovered": unrecovered, "errors": errors}))
}

/// The suite's fault-run table, or nothing when the result has none.
fn render_faults(result: &Value) -> String {
    let Some(rows) = result["faults"].as_array().filter(|r| !r.is_empty()) else {
        return String::new();
    };
    let fmt = |v: &Value| match (v["median"].as_f64(), v["min"].as_f64(), v["max"].as_f64()) {
        (Some(m), Some(lo), Some(hi)) => format!("{m:.0} [{lo:.0}-{hi:.0}]"),
        _ => "-".into(),
    };
    let mut s = String::from(
        "\n| workload | shards | clients | faults | ok % under faults | recovery after heal ms | heals not recovered | valid runs |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let errors = r["errors"].as_array().map_or(0, Vec::len);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {}/{} | {}/{}{} |",
            r["workload"].as_str().unwrap_or("?"),
            match r["shards"].as_u64() {
                Some(0) | None => "-".to_string(),
                Some(n) => n.to_string(),
            },
            r["concurrency"],
            r["nemesis"].as_str().unwrap_or("?"),
            fmt(&r["ok_percent_under_faults"]),
            fmt(&r["recovery_ms"]),
            r["unrecovered"],
            r["heals"],
            r["valid_runs"],
            r["runs"],
            if errors > 0 {
                format!(
                    ", {errors} could not run: {}",
                    r["errors"][0].as_str().unwrap_or("")
                )
            } else {
                String::new()
            },
        );
    }
    s
}

/// The suite's table: medians with [min-max] over the repeated runs.
pub fn render_suite(result: &Value) -> String {
    let fmt = |v: &Value, digits: usize| match (
        v["median"].as_f64(),
        v["min"].as_f64(),
        v["max"].as_f64(),
    ) {
        (Some(m), Some(lo), Some(hi)) => format!("{m:.digits$} [{lo:.digits$}-{hi:.digits$}]"),
        _ => "-".into(),
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| workload | shards | clients | ok ops/s, median [min-max] | not ok % | op | p50 ms | p99 ms | valid runs |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for r in result["rows"].as_array().into_iter().flatten() {
        for (f, o) in r["ops"].as_object().into_iter().flatten() {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {f} | {} | {} | {}/{} |",
                r["workload"].as_str().unwrap_or("?"),
                // 0 shards: the unsharded system.
                r["shards"]
                    .as_u64()
                    .filter(|n| *n > 0)
                    .map_or("-".into(), |n| n.to_string()),
                r["concurrency"],
                fmt(&r["ok_per_second"], 0),
                fmt(&r["not_ok_percent"], 1),
                fmt(&o["p50_ms"], 1),
                fmt(&o["p99_ms"], 1),
                r["valid_runs"],
                r["runs"],
            );
        }
    }
    s.push_str(&render_faults(result));
    s
}

/// One load run's figures.
fn row(target: &str, concurrency: usize, dir: &Path, valid: &str) -> anyhow::Result<Value> {
    let results: Value = serde_json::from_slice(&std::fs::read(dir.join("results.json"))?)?;
    let perf = &results["checkers"]["perf"];
    let mut ops = serde_json::Map::new();
    for (f, l) in perf["latency_ms"].as_object().into_iter().flatten() {
        ops.insert(
            f.clone(),
            json!({"p50_ms": l["p50"], "p99_ms": l["p99"], "count": l["count"]}),
        );
    }
    Ok(json!({"target": target, "concurrency": concurrency,
              "ok_per_second": perf["ok_per_second"], "ops": ops,
              "availability": perf["availability"],
              "valid": valid, "run": dir.display().to_string()}))
}

/// Runs the whole bench; answers the stored folder.
pub async fn bench(plan: &BenchPlan) -> anyhow::Result<PathBuf> {
    for t in &plan.targets {
        crate::targets::get(split(t).0).map_err(|e| BadInput(format!("--targets: {e}")))?;
    }
    let out = new_bench_dir(plan)?;
    let mut rows = Vec::new();
    for t in &plan.targets {
        for &c in &plan.concurrency {
            eprintln!("bench: {t} with {c} clients for {} s", plan.time_limit);
            let outcome = crate::run::run(config(plan, t, c), true).await?;
            rows.push(row(
                t,
                c,
                &outcome.dir,
                &format!("{:?}", outcome.valid).to_lowercase(),
            )?);
        }
    }
    let mut failover = serde_json::Map::new();
    for t in &plan.targets {
        if !crate::targets::get(split(t).0)
            .map_err(BadInput)?
            .fails_over()
        {
            continue; // one primary and no election: nothing fails over
        }
        let mut trials = Vec::new();
        for i in 0..plan.failover_trials {
            let dir = out.join(format!("failover-{t}-{i}"));
            let ms = failover_once(&config(plan, t, 1), &dir, plan.seed + i as u64).await?;
            eprintln!("bench: {t} failover trial {i}: {ms:.0} ms");
            trials.push(ms);
        }
        failover.insert(t.clone(), json!(trials));
    }
    let result = json!({"targets": plan.targets, "concurrency": plan.concurrency,
                        "time_limit": plan.time_limit, "nodes": plan.nodes,
                        "rows": rows, "failover_ms": failover});
    store_bench(&out, &result, &render(&result))?;
    Ok(out)
}

/// The table: one line per (concurrency, target, op), ratios to the first target.
pub fn render(result: &Value) -> String {
    let rows = result["rows"].as_array().cloned().unwrap_or_default();
    let first = result["targets"][0]
        .as_str()
        .unwrap_or(crate::targets::DEFAULT)
        .to_string();
    let base = |c: &Value, f: &str, field: &str| -> Option<f64> {
        rows.iter()
            .find(|r| r["target"] == first.as_str() && r["concurrency"] == *c)
            .and_then(|r| {
                if f.is_empty() {
                    r["ok_per_second"].as_f64()
                } else {
                    r["ops"][f][field].as_f64()
                }
            })
    };
    let ratio = |v: Option<f64>, b: Option<f64>| match (v, b) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}x", v / b),
        _ => "-".into(),
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| clients | target | ok ops/s (ratio) | op | p50 ms (ratio) | p99 ms (ratio) | valid |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for r in &rows {
        let c = &r["concurrency"];
        let ops = r["ops"].as_object().cloned().unwrap_or_default();
        for (f, o) in ops
            .iter()
            .filter(|(f, _)| matches!(f.as_str(), "read" | "write" | "cas"))
        {
            let (p50, p99) = (o["p50_ms"].as_f64(), o["p99_ms"].as_f64());
            let _ = writeln!(
                s,
                "| {c} | {} | {:.0} ({}) | {f} | {:.1} ({}) | {:.1} ({}) | {} |",
                r["target"].as_str().unwrap_or("?"),
                r["ok_per_second"].as_f64().unwrap_or(0.0),
                ratio(r["ok_per_second"].as_f64(), base(c, "", "")),
                p50.unwrap_or(0.0),
                ratio(p50, base(c, f, "p50_ms")),
                p99.unwrap_or(0.0),
                ratio(p99, base(c, f, "p99_ms")),
                r["valid"].as_str().unwrap_or("?"),
            );
        }
    }
    let _ = writeln!(
        s,
        "\nLeader failover (SIGKILL the leader, time to the first acknowledged write):"
    );
    for (t, trials) in result["failover_ms"].as_object().into_iter().flatten() {
        let ms: Vec<String> = trials
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .map(|m| format!("{m:.0}"))
            .collect();
        let _ = writeln!(s, "  {t}: {} ms", ms.join(", "));
    }
    s
}

/// Starts a cluster, kills its leader with SIGKILL and times the first
/// acknowledged write after the kill, in ms.
async fn failover_once(cfg: &TestConfig, dir: &Path, seed: u64) -> anyhow::Result<f64> {
    std::fs::create_dir_all(dir)?;
    let target = crate::run::cluster::validate(cfg)?;
    let bin = target.binary(cfg, true)?;
    let cluster =
        crate::run::cluster::start(cfg, target, &bin, dir, &Rng::new(seed), &[], &[]).await?;
    let result = async {
        let nodes = &cluster.nodes;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let target = cluster
            .target
            .ready(cfg, &http, nodes, &cluster.net)
            .await?;
        let options = WorkloadOptions {
            keys: 1,
            ops_per_key: 1,
            op_timeout: Duration::from_millis(500),
            target,
            nodes: 0,
        };
        let endpoints = cluster.endpoints();
        let client: Arc<dyn workloads::Client> = workloads::workload("kv")
            .map_err(BadInput)?
            .client(endpoints, &options);
        let mut session = client.open(0);
        let write = Invocation {
            f: "write".into(),
            key: Some("failover".into()),
            value: json!(1),
        };
        let ok = |c: &Completion| matches!(c, Completion::Ok(_));
        let warm = Instant::now();
        while !ok(&session.invoke(&write).await.0) {
            if warm.elapsed() > Duration::from_secs(10) {
                bail!("no write acknowledged before the kill");
            }
        }
        let Some(leader) = cluster.target.leader(cfg, &http, nodes).await else {
            bail!("no node says it leads");
        };
        cluster.runtime.lock().await.kill(&leader).await?;
        let killed = Instant::now();
        while !ok(&session.invoke(&write).await.0) {
            if killed.elapsed() > Duration::from_secs(30) {
                bail!("no write acknowledged within 30 s of killing leader {leader}");
            }
        }
        Ok(killed.elapsed().as_secs_f64() * 1000.0)
    }
    .await;
    let _ = cluster.teardown().await;
    result
}

/// Runs `harness bench` from its arguments.
pub fn command(args: &BenchArgs) -> ExitCode {
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    };
    let concurrency: Result<Vec<usize>, _> = list(&args.concurrency)
        .iter()
        .map(|c| c.parse::<usize>())
        .collect();
    let bad = |m: String| {
        eprintln!("harness bench: {m}");
        ExitCode::from(crate::EXIT_BAD_INPUT)
    };
    let concurrency = match concurrency {
        Ok(c) if !c.is_empty() && !c.contains(&0) => c,
        _ => {
            return bad(format!(
                "--concurrency `{}`: expected positive integers separated by commas",
                args.concurrency
            ))
        }
    };
    let shards: Result<Vec<usize>, _> = list(&args.shards)
        .iter()
        .map(|c| c.parse::<usize>())
        .collect();
    let shards = match shards {
        Ok(s) if !s.is_empty() => s,
        _ => {
            return bad(format!(
                "--shards `{}`: expected shard counts (0 for unsharded) separated by commas",
                args.shards
            ))
        }
    };
    if args.suite.is_none() && shards != [0] {
        return bad("--shards: only a --suite runs sharded".into());
    }
    if let Some(names) = &args.suite {
        let workloads = list(names);
        if workloads.is_empty() {
            return bad("--suite: name at least one workload".into());
        }
        let plan = BenchPlan {
            targets: vec![crate::targets::DEFAULT.into()],
            concurrency,
            time_limit: args.time_limit,
            nodes: args.nodes as usize,
            failover_trials: 0,
            store: args.store.clone(),
            node_bin: args.node_bin.clone(),
            seed: args.seed,
            node_args: args.node_args.clone(),
            shards,
        };
        return drive(suite(&plan, &workloads, args.repeat as usize));
    }
    if args.mesh {
        let plan = BenchPlan {
            targets: vec![crate::targets::DEFAULT.into()],
            concurrency: vec![1],
            time_limit: args.time_limit,
            nodes: args.nodes as usize,
            failover_trials: 0,
            store: args.store.clone(),
            node_bin: args.node_bin.clone(),
            seed: args.seed,
            node_args: args.node_args.clone(),
            shards: vec![0],
        };
        return drive(super::bench_mesh::mesh_hops(&plan));
    }
    if args.workload != "kv" {
        return bad(format!(
            "--workload {}: only kv runs on every target",
            args.workload
        ));
    }
    let mut targets = list(&args.targets);
    if let Some(protocols) = &args.consensus {
        let protocols = list(protocols);
        targets = targets
            .into_iter()
            .flat_map(|t| match t == crate::targets::DEFAULT {
                true => protocols
                    .iter()
                    .map(|p| format!("{t}:{p}"))
                    .collect::<Vec<_>>(),
                false => vec![t],
            })
            .collect();
    }
    if targets.is_empty() {
        return bad("--targets: name at least one target".into());
    }
    let plan = BenchPlan {
        targets,
        concurrency,
        time_limit: args.time_limit,
        nodes: args.nodes as usize,
        failover_trials: args.failover_trials as usize,
        store: args.store.clone(),
        node_bin: args.node_bin.clone(),
        seed: args.seed,
        node_args: args.node_args.clone(),
        shards: vec![0],
    };
    drive(bench(&plan))
}

/// Runs a bench to its end on a fresh async runtime; the exit code says how it went.
fn drive(job: impl std::future::Future<Output = anyhow::Result<PathBuf>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("harness bench: cannot start the async runtime: {e}");
            return ExitCode::from(crate::EXIT_INTERNAL);
        }
    };
    match runtime.block_on(job) {
        Ok(dir) => {
            println!("bench: {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) if e.downcast_ref::<crate::run::BadInput>().is_some() => {
            eprintln!("harness bench: {e:#}");
            ExitCode::from(crate::EXIT_BAD_INPUT)
        }
        Err(e) => {
            eprintln!("harness bench: {e:#}");
            ExitCode::from(crate::EXIT_INTERNAL)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_the_median_with_the_extremes() {
        assert_eq!(spread(&mut []), None);
        assert_eq!(spread(&mut [3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(spread(&mut [4.0, 1.0, 2.0, 10.0]), Some((3.0, 1.0, 10.0)));
    }

    #[test]
    fn repeated_runs_fold_into_medians_per_op_and_a_table() {
        let run = |tput: f64, p50: f64, valid: &str| {
            json!({"ok_per_second": tput, "valid": valid, "run": "r",
                   "availability": 1.0 - p50 / 100.0,
                   "ops": {"acquire": {"p50_ms": p50, "p99_ms": p50 * 4.0}}})
        };
        let runs = [
            run(100.0, 2.0, "valid"),
            run(300.0, 1.0, "valid"),
            run(200.0, 3.0, "invalid"),
        ];
        let row = summarize("lock", 8, &runs);
        assert_eq!(
            row["ok_per_second"],
            json!({"median": 200.0, "min": 100.0, "max": 300.0})
        );
        assert_eq!(row["ops"]["acquire"]["p50_ms"]["median"], 2.0);
        assert_eq!(row["ops"]["acquire"]["p99_ms"]["max"], 12.0);
        assert_eq!(row["valid_runs"], 2);
        let mut row = row;
        row["shards"] = json!(2);
        let table = render_suite(&json!({"rows": [row]}));
        assert!(
            table.contains(
                "| lock | 2 | 8 | 200 [100-300] | 2.0 [1.0-3.0] | acquire | 2.0 [1.0-3.0] | 8.0 [4.0-12.0] | 2/3 |"
            ),
            "{table}"
        );
    }
}
