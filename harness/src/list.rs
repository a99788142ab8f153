//! `harness list`: what this build can do.

/// Prints the models and formats.
pub fn print() {
    println!("models (harness check --model M):");
    for (name, what) in checker::model::MODELS {
        println!("  {name:<14} {what}");
    }
    println!("history formats (harness check --format F):");
    println!("  jsonl          Faultline JSON Lines (SPEC.md section 1), the default");
    println!("  jepsen-log     Jepsen text logs: INFO  jepsen.util - P :type :f value");
    println!("  jepsen-edn     Jepsen EDN op maps, one per line");
}
