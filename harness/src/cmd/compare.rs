//! `harness compare`: prints the regression report, writes JUnit/Markdown if asked,
//! exits 1 on a regression.

use std::process::ExitCode;

use reports::compare::{compare, Thresholds};

use crate::cmd::CompareArgs;
use crate::EXIT_BAD_INPUT;

/// Runs `harness compare`.
pub fn run(args: &CompareArgs) -> ExitCode {
    let thresholds = Thresholds {
        max_throughput_drop_pct: args.max_throughput_drop,
        max_p99_rise_pct: args.max_p99_rise,
    };
    let c = match compare(&args.base, &args.current, thresholds) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("harness compare: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    print!("{}", c.markdown());
    for (path, text) in [(&args.junit, c.junit()), (&args.markdown, c.markdown())] {
        if let Some(p) = path {
            if let Err(e) = std::fs::write(p, text) {
                eprintln!("harness compare: cannot write {}: {e}", p.display());
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        }
    }
    if c.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
