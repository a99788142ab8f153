//! Command-line arguments and dispatch to the subcommands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::EXIT_BAD_INPUT;

/// Faultline: test distributed systems under real faults and check what they did.
#[derive(Parser, Debug)]
#[command(name = "harness", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a history file alone (exit 0 valid, 1 invalid, 2 unknown, 254 bad input).
    Check(CheckArgs),
    /// List the models and history formats available.
    List,
    /// Start a cluster, drive a workload with faults, record and check (not built yet).
    Run {
        /// Workload to run.
        #[arg(long)]
        workload: String,
    },
}

/// Arguments of `harness check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Model: register, cas-register, kv, append-kv, mutex, fifo-queue.
    #[arg(long)]
    pub model: String,
    /// History format: jsonl (default), jepsen-log, jepsen-edn.
    #[arg(long, default_value = "jsonl")]
    pub format: checker::Format,
    /// Print the result object as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// Give up with `unknown` after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub time_limit: Option<f64>,
    /// Give up with `unknown` before the search uses more memory (e.g. 512MiB, 2GiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "2GiB")]
    pub memory_limit: usize,
    /// Check the whole history as one object instead of key by key.
    #[arg(long)]
    pub no_partition: bool,
    /// Keep checking other keys after one is found invalid, to report them all.
    #[arg(long)]
    pub all_failures: bool,
    /// The history file.
    pub file: PathBuf,
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
        Command::Check(args) => crate::check::run(&args),
        Command::List => {
            crate::list::print();
            ExitCode::SUCCESS
        }
        Command::Run { workload } => {
            eprintln!(
                "harness run --workload {workload}: the cluster runner is not built yet; \
                 today `harness check` checks recorded histories (see README.md)"
            );
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
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
