//! `harness check`: read a history, check it, print the verdict, exit with its code.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use checker::linearizability::Counterexample;
use checker::{CheckOptions, Linearizability, Validity};
use serde_json::json;

use crate::cmd::CheckArgs;
use crate::EXIT_BAD_INPUT;

/// Runs the check described by `args`.
pub fn run(args: &CheckArgs) -> ExitCode {
    if args.linearizable_keys && args.model != "rw-register" {
        eprintln!("harness check: --linearizable-keys applies to --model rw-register only");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    if let Some(kind) = txn_kind(&args.model) {
        return run_txn(args, kind);
    }
    let read_started = Instant::now();
    let history = match checker::format::read_file(&args.file, args.format) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("harness check: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let read_ms = read_started.elapsed().as_secs_f64() * 1e3;
    // Nothing to judge is not "valid": a recorder that wrote nothing must not pass.
    let s = &history.stats;
    if s.ok + s.fail + s.info + s.unfinished == 0 {
        eprintln!(
            "harness check: {}: the history holds no client operation ({} events read, {} of them the nemesis'): nothing to check",
            args.file.display(),
            s.events,
            history.nemesis.len()
        );
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    if args.consistency.is_some() {
        eprintln!(
            "harness check: --consistency applies to the transactional models (list-append, rw-register), not `{}`",
            args.model
        );
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let time_limit = match args.time_limit {
        Some(s) if !(s.is_finite() && s >= 0.0) => {
            eprintln!(
                "harness check: --time-limit must be a non-negative number of seconds, got {s}"
            );
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        Some(s) => Some(Duration::from_secs_f64(s)),
        None => None,
    };
    let options = CheckOptions {
        partition: !args.no_partition,
        time_limit,
        memory_limit: args.memory_limit,
        stop_at_first_invalid: !args.all_failures,
        symmetry: !args.no_symmetry,
        reachability: !args.no_reachability,
        engine: args.engine,
    };
    let result = match checker::check_named(&args.model, &history, &options) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("harness check: {}: {e}", args.file.display());
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    // Register models also get the lost-writes check: linear, and it can
    // refute a history the search gives up on.
    let lost = matches!(args.model.as_str(), "register" | "cas-register" | "kv")
        .then(|| checker::lost_writes::check(&history));
    let combined = lost
        .as_ref()
        .map_or(Ok(result.valid), |l| result.valid.with_necessary(l.valid));
    let valid = combined.unwrap_or(Validity::Unknown);
    if args.json {
        let mut checkers = json!({
            "linearizable": result.result().to_value(),
            "stats": {"valid": true, "history": history.stats},
        });
        if let Some(l) = &lost {
            checkers["lost-writes"] = l.result().to_value();
        }
        let mut object = json!({
            "valid": valid,
            "checkers": checkers,
            "file": args.file,
            "read_ms": read_ms,
        });
        if let Err(e) = &combined {
            object["error"] = json!(e.to_string());
        }
        println!("{object}");
    } else {
        print_human(args, &history, &result, read_ms);
        if let Some(l) = &lost {
            print_lost(l);
        }
        if result.valid == Validity::Unknown && valid == Validity::Invalid {
            println!("  overall: INVALID: lost-writes refutes what the search left undecided");
        }
    }
    if let Err(e) = combined {
        eprintln!("harness check: {}: {e}", args.file.display());
        return ExitCode::from(crate::EXIT_INTERNAL);
    }
    ExitCode::from(valid.exit_code() as u8)
}

fn print_lost(l: &checker::lost_writes::LostWrites) {
    if l.reads == 0 {
        println!("  lost-writes: no read missed an acknowledged write");
        return;
    }
    println!(
        "  lost-writes: INVALID: {} acknowledged write(s) lost for good, {} missed by stale reads, on {} key(s)",
        l.lost, l.missed, l.keys
    );
    for e in l.examples.iter().take(3) {
        let key = e
            .key
            .as_ref()
            .map(|k| format!("key {k}: "))
            .unwrap_or_default();
        println!(
            "    {key}{} acknowledged, then {}: {}",
            describe(&e.write),
            describe(&e.read),
            e.reason
        );
    }
}

fn print_human(args: &CheckArgs, history: &checker::History, r: &Linearizability, read_ms: f64) {
    let verdict = match r.valid {
        Validity::Valid => "valid: linearizable",
        Validity::Invalid => "INVALID: not linearizable",
        Validity::Unknown => "unknown: the checker gave up",
    };
    println!("{}: {verdict}", args.file.display());
    println!(
        "  model {}, {} ops ({} indeterminate, {} failed and dropped) over {} {}, read in {:.0} ms, checked in {:.0} ms",
        r.model,
        r.ops,
        r.indeterminate,
        history.stats.fail,
        r.keys,
        if r.keys == 1 { "history" } else { "keys" },
        read_ms,
        r.stats.elapsed_ms
    );
    if let Some(u) = &r.unknown {
        println!(
            "  {} with {} key(s) undecided: {}",
            match u.reason {
                checker::budget::Exhausted::Time => "time limit reached",
                checker::budget::Exhausted::Memory => "memory limit reached",
                checker::budget::Exhausted::Cancelled => "cancelled",
            },
            u.count,
            u.keys.join(", ")
        );
    }
    for c in &r.failures {
        print_counterexample(c);
    }
}

fn describe(op: &checker::linearizability::OpView) -> String {
    let out = match &op.output {
        Some(v) => format!(" -> {v}"),
        None => " -> ? (indeterminate)".to_string(),
    };
    format!(
        "process {} {} {}{} (lines {}-{})",
        op.process,
        op.f,
        op.value,
        out,
        op.invoke_line,
        op.complete_line
            .map_or("end".to_string(), |l| l.to_string())
    )
}

fn print_counterexample(c: &Counterexample) {
    match &c.key {
        Some(k) => println!("  key {k}: cannot linearize {}", describe(&c.op)),
        None => println!("  cannot linearize {}", describe(&c.op)),
    }
    if let Some(reason) = &c.reason {
        println!("    refuted without searching: {reason}");
        return;
    }
    println!(
        "    after the longest linearizable prefix ({} ops), the state is {}",
        c.prefix.len(),
        c.state
    );
    let tail = c.prefix.len().saturating_sub(5);
    for op in &c.prefix[tail..] {
        println!("      ... {}", describe(op));
    }
    if !c.pending.is_empty() {
        println!("    and none of the concurrent ops fits next:");
        for op in c.pending.iter().take(10) {
            println!("      {}", describe(op));
        }
    }
}

fn txn_kind(model: &str) -> Option<checker::txn::Kind> {
    match model {
        "list-append" => Some(checker::txn::Kind::ListAppend),
        "rw-register" => Some(checker::txn::Kind::RwRegister),
        _ => None,
    }
}

/// Checks a transactional history and prints its anomalies, explained.
fn run_txn(args: &CheckArgs, kind: checker::txn::Kind) -> ExitCode {
    let bad = |e: &dyn std::fmt::Display| {
        eprintln!("harness check: {e}");
        ExitCode::from(EXIT_BAD_INPUT)
    };
    let read_started = Instant::now();
    let txns = match checker::txn::jsonl::read_file(&args.file, args.format, kind) {
        Ok(t) => t,
        Err(e) => return bad(&e),
    };
    let read_ms = read_started.elapsed().as_secs_f64() * 1e3;
    // Nothing to judge is not "valid": a recorder that wrote nothing must not pass.
    if txns.txns.is_empty() {
        return bad(&format!(
            "{}: the history holds no transaction: nothing to check",
            args.file.display()
        ));
    }
    let started = Instant::now();
    let options = checker::txn::TxnOptions {
        consistency: args
            .consistency
            .unwrap_or(checker::txn::ConsistencyModel::StrictSerializable),
        linearizable_keys: args.linearizable_keys,
        ..Default::default()
    };
    let result = match checker::txn::check(&txns, &options) {
        Ok(r) => r,
        Err(e) => return bad(&e.in_file(&args.file)),
    };
    let check_ms = started.elapsed().as_secs_f64() * 1e3;
    if args.json {
        let object = json!({
            "valid": result.valid,
            "checkers": {
                "txn": result.to_value(),
            },
            "file": args.file,
            "read_ms": read_ms,
            "check_ms": check_ms,
        });
        println!("{object}");
    } else {
        print_txn(args, &result, read_ms, check_ms);
    }
    ExitCode::from(result.valid.exit_code() as u8)
}

fn print_txn(args: &CheckArgs, r: &checker::CheckerResult, read_ms: f64, check_ms: f64) {
    let d = &r.details;
    let consistency = d["consistency"].as_str().unwrap_or("?");
    let verdict = match r.valid {
        Validity::Valid => format!("valid: {consistency}"),
        Validity::Invalid => format!("INVALID: not {consistency}"),
        Validity::Unknown => format!("unknown: {consistency} undecided"),
    };
    println!("{}: {verdict}", args.file.display());
    println!(
        "  {} txns ({} ok, {} info, {} fail), {}, read in {read_ms:.0} ms, checked in {check_ms:.0} ms",
        d["txns"], d["ok"], d["info"], d["fail"], d["model"].as_str().unwrap_or("?")
    );
    let names = |v: &serde_json::Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    if let Some(counts) = d["anomaly_counts"].as_object().filter(|c| !c.is_empty()) {
        let list: Vec<String> = counts.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        println!("  anomalies: {}", list.join(", "));
        println!("  not {}", names(&d["not"]));
        if !names(&d["also_not"]).is_empty() {
            println!("  and so not {}", names(&d["also_not"]));
        }
    }
    if !names(&d["unknown"]).is_empty() {
        println!("  search budget ran out on: {}", names(&d["unknown"]));
    }
    let Some(by_kind) = d["anomalies"].as_object() else {
        return;
    };
    for (kind, list) in by_kind {
        for a in list.as_array().into_iter().flatten().take(2) {
            println!("  {kind}:");
            for t in a["txns"].as_array().into_iter().flatten() {
                println!(
                    "    {} (process {}, {}, lines {}-{}): {}",
                    t["name"].as_str().unwrap_or("?"),
                    t["process"],
                    t["status"].as_str().unwrap_or("?"),
                    t["line"],
                    t["ret_line"],
                    t["ops"].as_str().unwrap_or("")
                );
            }
            for (i, s) in a["steps"].as_array().into_iter().flatten().enumerate() {
                println!("    {}. {}", i + 1, s.as_str().unwrap_or(""));
            }
        }
    }
}
