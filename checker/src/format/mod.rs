//! Readers for the history formats `harness check` accepts.

pub mod edn;
pub mod jepsen_log;
pub mod jsonl;
mod jsonl_fast;
mod jsonl_line;
mod jsonl_numbers;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::str::FromStr;

use crate::error::ReadError;
use crate::history::History;

/// Deepest nesting of arrays, maps and vectors a line may have, the op map
/// included: what serde_json reads (its recursion limit of 128 refuses the 128th
/// level), and the EDN readers keep to it too. Jepsen's values nest four deep at
/// most; every walk of a value after reading (conversion, comparison, drop)
/// recurses per level, and at this depth all of them fit a 256 KiB stack (700
/// nested EDN maps did not).
pub const MAX_DEPTH: usize = 127;

/// A history file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Faultline's JSON Lines (docs/history-format.md).
    Jsonl,
    /// Jepsen text logs (`INFO  jepsen.util - P :type :f value`).
    JepsenLog,
    /// Jepsen EDN op maps, one per line.
    JepsenEdn,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "jsonl" => Ok(Format::Jsonl),
            "jepsen-log" => Ok(Format::JepsenLog),
            "jepsen-edn" => Ok(Format::JepsenEdn),
            _ => Err(format!(
                "unknown format `{s}` (expected jsonl, jepsen-log or jepsen-edn)"
            )),
        }
    }
}

/// Reads a history file in the given format; errors name the file and line.
pub fn read_file(path: &Path, format: Format) -> Result<History, ReadError> {
    let file = File::open(path)
        .map_err(|e| ReadError::at(0, None, format!("cannot open: {e}")).in_file(path))?;
    let result = match format {
        Format::Jsonl => jsonl::read(file),
        Format::JepsenLog => jepsen_log::read(BufReader::new(file)),
        Format::JepsenEdn => edn::read(BufReader::new(file)),
    };
    result.map_err(|e| e.in_file(path))
}

/// The lines of `input` numbered from 1, without their `\n` or `\r\n`; a line that
/// is not UTF-8 or cannot be read is an error naming it, and ends the lines.
pub(crate) fn numbered_lines<R: BufRead>(
    mut input: R,
) -> impl Iterator<Item = Result<(u64, String), ReadError>> {
    let mut line = 0u64;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        line += 1;
        let mut bytes = Vec::new();
        let next = match input.read_until(b'\n', &mut bytes) {
            Ok(0) => return None,
            Ok(_) => {
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                    if bytes.last() == Some(&b'\r') {
                        bytes.pop();
                    }
                }
                String::from_utf8(bytes)
                    .map(|text| (line, text))
                    .map_err(|e| not_utf8(line, e.utf8_error().valid_up_to()))
            }
            Err(e) => Err(ReadError::at(line, None, format!("cannot read: {e}"))),
        };
        failed = next.is_err();
        Some(next)
    })
}

/// The error for a line whose bytes stop being UTF-8 after `valid` bytes.
pub(crate) fn not_utf8(line: u64, valid: usize) -> ReadError {
    ReadError::at(
        line,
        None,
        format!("the line is not valid UTF-8 (byte {})", valid + 1),
    )
}

/// Longest input text an error message quotes.
const QUOTE_CHARS: usize = 40;

/// `text` for an error message: cut to [`QUOTE_CHARS`] characters, `...` when longer.
pub(crate) fn quote(text: &str) -> String {
    cut(text, QUOTE_CHARS)
}

/// `text` cut to `chars` characters, with `...` when longer.
pub(crate) fn cut(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}
