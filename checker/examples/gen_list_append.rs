//! Writes a generated list-append history to standard output, for benchmarks and
//! demos: `cargo run --release -p checker --example gen_list_append -- TXNS
//! PROCESSES [SEED] [PLANT...]` (plants: G0 G1c G1a G1b G-single G2-item
//! G-single-realtime internal incompatible-order duplicate-elements garbage-read
//! dirty-update).

use std::io::Write;

use checker::txn::generate::{list_append_history, Plant, Shape};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: u64| -> u64 {
        args.get(i).map_or(default, |a| {
            a.parse().unwrap_or_else(|_| {
                eprintln!("argument {}: `{a}` is not a number", i + 1);
                std::process::exit(2)
            })
        })
    };
    let mut plant = Vec::new();
    for name in args.iter().skip(3) {
        match Plant::ALL.iter().find(|(_, k)| k == name) {
            Some(&(p, _)) => plant.push(p),
            None => {
                eprintln!("unknown anomaly `{name}` to plant");
                std::process::exit(2)
            }
        }
    }
    let shape = Shape {
        txns: number(0, 100_000) as usize,
        processes: number(1, 10) as usize,
        seed: number(2, 1),
        plant,
        ..Shape::default()
    };
    let text = list_append_history(&shape);
    if std::io::stdout().lock().write_all(text.as_bytes()).is_err() {
        std::process::exit(1);
    }
}
