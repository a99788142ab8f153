//! `harness list`: the workloads, models, nemeses, planted bugs and runtimes.

/// Prints everything `harness run` and `harness check` accept.
pub fn print() {
    println!("workloads (harness run --workload W):");
    for (name, what, _) in workloads::WORKLOADS {
        println!("  {name:<19} {what}");
    }
    println!("  options: --keys N (live keys), --ops-per-key N, --op-timeout-ms MS");
    println!("nemeses (harness run --nemesis a,b | none | all):");
    for f in crate::nemesis::FAULTS {
        println!("  {:<19} {}", f.name(), f.about());
    }
    println!("planted bugs (harness run --bug NAME):");
    // Only a node binary already built: listing never starts a build.
    match crate::runtime::node_binary::existing()
        .and_then(|b| crate::runtime::node_binary::bugs(&b))
    {
        Ok(bugs) => {
            for (name, what) in bugs {
                println!("  {name:<19} {what}");
            }
        }
        Err(e) => println!("  (cannot ask the node binary: {e:#})"),
    }
    println!("targets (harness run --target T):");
    for t in crate::targets::TARGETS {
        println!("  {:<14} {}", t.name(), t.about());
        println!("  {:<14} faults: {}", "", t.faults().join(", "));
        if t.reads().len() > 1 {
            println!("  {:<14} reads: {}", "", t.reads().join(", "));
        }
    }
    println!("consensus protocols of the builtin target (harness run --consensus P):");
    for (name, what) in crate::targets::builtin::PROTOCOLS {
        println!("  {name:<14} {what}");
    }
    println!("runtimes (harness run --runtime R):");
    println!("  process        local node processes on loopback, a proxy on every link (default)");
    println!("  docker         builtin nodes in containers FROM scratch, on a private network");
    println!("models (harness check --model M):");
    for (name, what) in checker::model::MODELS {
        println!("  {name:<19} {what}");
    }
    println!("transactional models (harness check --model M [--consistency C]):");
    println!("  list-append         txns of [\"append\", k, v] and [\"r\", k, [..]]: Elle-style anomalies");
    println!("  rw-register         txns of [\"w\", k, v] and [\"r\", k, v]: anomalies in what can be inferred");
    let names: Vec<&str> = checker::txn::MODELS.iter().map(|m| m.name()).collect();
    println!(
        "  consistency models: {} (default strict-serializable)",
        names.join(", ")
    );
    println!("history formats (harness check --format F):");
    println!("  jsonl          Faultline JSON Lines (docs/history-format.md), the default");
    println!("  jepsen-log     Jepsen text logs: INFO  jepsen.util - P :type :f value");
    println!("  jepsen-edn     Jepsen EDN op maps, one per line");
}
