//! Readers for the history formats `harness check` accepts.

pub mod edn;
pub mod jepsen_log;
pub mod jsonl;
mod jsonl_fast;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::str::FromStr;

use crate::error::ReadError;
use crate::history::History;

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
