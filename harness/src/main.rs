//! `harness`: Faultline's command line (docs/cli.md).

mod cmd;
mod dashboard;
mod nemesis;
mod net;
mod run;
mod runtime;
mod targets;

use std::process::ExitCode;

use clap::Parser;

/// Exit code for bad arguments or unreadable input (docs/cli.md).
pub const EXIT_BAD_INPUT: u8 = 254;
/// Exit code for an internal error (docs/cli.md).
pub const EXIT_INTERNAL: u8 = 255;

fn main() -> ExitCode {
    let args = match cmd::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => EXIT_BAD_INPUT,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // Output piped into `head` and closed early ends a printing command quietly,
    // as for other command-line tools, instead of a panic on a failed print.
    // Commands that run nodes keep SIGPIPE ignored: a write to the stdin of a
    // node that just died (killed by the nemesis, or exited) must be an error
    // the router handles, not a signal that kills the harness without a word.
    if !args.writes_to_nodes() {
        // SAFETY: restores the default disposition of SIGPIPE before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match std::panic::catch_unwind(|| cmd::dispatch(args)) {
        Ok(code) => code,
        Err(_) => {
            eprintln!("harness: internal error (a bug in Faultline; please report it with the command line)");
            ExitCode::from(EXIT_INTERNAL)
        }
    }
}
