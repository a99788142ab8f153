//! Inputs for fuzzing the history readers: the real Porcupine histories as seeds,
//! mutations of them, generated histories and event lines, and noise.

mod generate;
mod mutate;
mod seeds;

pub use generate::{event_line, history};
pub use mutate::{mutated, noise};
pub use seeds::{edn_seeds, jsonl_seeds, log_seeds};

/// The syntax a reader takes, for mutations that write tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// JSON Lines.
    Json,
    /// EDN op maps.
    Edn,
    /// Jepsen text logs (EDN values).
    Log,
}

/// Tokens that are wrong somewhere: huge or odd numbers, other types, bad syntax.
pub fn hostile(syntax: Syntax) -> &'static [&'static str] {
    match syntax {
        Syntax::Json => &[
            "18446744073709551617",
            "18446744073709551615",
            "9223372036854775808",
            "-9223372036854775809",
            "9223372036854775807",
            "-9223372036854775808",
            "1e400",
            "-1e400",
            "1e-400",
            "0.10000000000000000001",
            "9007199254740993.0",
            "1.5",
            "3.0",
            "-0",
            "01",
            "-",
            "0",
            "-1",
            "\"x\"",
            "\"\"",
            "\"nemesis\"",
            "\"invoke\"",
            "\"ok\"",
            "\"fail\"",
            "\"info\"",
            "\"\\u0000\"",
            "\"\\ud800\"",
            "\"\\q\"",
            "\"é\"",
            "null",
            "true",
            "[]",
            "{}",
            "[1,2]",
            "[[1]]",
            "[1,",
            "{\"a\":1}",
            "\"",
            "}",
            ":",
            ",",
        ],
        Syntax::Edn | Syntax::Log => &[
            "18446744073709551617",
            "9223372036854775808N",
            "-9223372036854775809",
            "9223372036854775807",
            "-9223372036854775808",
            "1.5",
            "1/2",
            "-",
            "0",
            "-1",
            "nil",
            "true",
            ":nemesis",
            ":invoke",
            ":ok",
            ":fail",
            ":info",
            ":timed-out",
            ":",
            "\"x\"",
            "\"\"",
            "\"\\q\"",
            "\"é\"",
            "[]",
            "{}",
            "()",
            "[1 2]",
            "{:a 1}",
            "{:a}",
            "#{1}",
            "#inst \"x\"",
            "\\a",
            "'x",
            "\"",
            "}",
            "]",
            ")",
        ],
    }
}
