//! The JSON Lines history format of SPEC.md section 1.
//!
//! The reader streams: it reads the file in blocks of whole lines, parses the lines
//! of a block on all cores (parsing dominates on long histories) and pairs them in
//! file order before reading on, so memory holds one block, not the file.

use std::borrow::Cow;
use std::io::Read;

use rayon::prelude::*;
use serde::Deserialize;

use crate::error::ReadError;
use crate::history::{EventKind, EventRecord, History, HistoryBuilder, Process};
use crate::value::{RawKey, Value};

/// Bytes read per block; large enough that splitting work across cores pays.
const BLOCK_BYTES: usize = 8 << 20;
/// Lines parsed per parallel task.
const LINES_PER_TASK: usize = 4096;

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    process: RawProcess<'a>,
    #[serde(borrow)]
    f: Cow<'a, str>,
    #[serde(default, borrow)]
    key: Option<RawKey<'a>>,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    time: Option<i64>,
    #[serde(default, borrow)]
    node: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    error: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawProcess<'a> {
    Int(u64),
    #[serde(borrow)]
    Name(Cow<'a, str>),
}

/// Parses one line; `Ok(None)` for a blank line.
fn parse_line(text: &str, line: u64) -> Result<Option<RawEvent<'_>>, ReadError> {
    let trimmed = text.trim_end_matches('\r');
    if trimmed.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str::<RawEvent>(trimmed)
        .map(Some)
        .map_err(|e| {
            // serde_json counts columns within the line it was given.
            let msg = e.to_string();
            let msg = msg
                .rsplit_once(" at line ")
                .map(|(head, _)| head.to_string())
                .unwrap_or(msg);
            ReadError::at(line, None, format!("{msg} (column {})", e.column()))
        })
}

fn push_raw(builder: &mut HistoryBuilder, raw: RawEvent<'_>, line: u64) -> Result<(), ReadError> {
    let kind = EventKind::parse(&raw.kind).ok_or_else(|| {
        ReadError::at(
            line,
            Some("type"),
            format!(
                "`{}` is not one of invoke, ok, fail, info",
                raw.kind.as_ref()
            ),
        )
    })?;
    let process = match raw.process {
        RawProcess::Int(p) => Process::Client(p),
        RawProcess::Name(n) if n == "nemesis" => Process::Nemesis,
        RawProcess::Name(n) => {
            return Err(ReadError::at(
                line,
                Some("process"),
                format!("`{n}` is neither an integer nor \"nemesis\""),
            ))
        }
    };
    builder.push(EventRecord {
        kind,
        process,
        f: &raw.f,
        key: raw.key.as_ref().map(RawKey::to_key),
        value: raw.value,
        time: raw.time,
        node: raw.node.as_deref(),
        error: raw.error.as_deref(),
        line,
    })
}

/// Reads a JSONL history from any reader.
pub fn read<R: Read>(mut input: R) -> Result<History, ReadError> {
    let mut builder = HistoryBuilder::new();
    let mut buf: Vec<u8> = Vec::with_capacity(BLOCK_BYTES + 4096);
    let mut first_line: u64 = 1;
    let mut eof = false;
    while !eof {
        // Fill the block up to BLOCK_BYTES, then cut it at the last newline.
        let start = buf.len();
        buf.resize(BLOCK_BYTES.max(start + 4096), 0);
        let mut filled = start;
        while filled < buf.len() {
            let n = input
                .read(&mut buf[filled..])
                .map_err(|e| ReadError::at(first_line, None, format!("cannot read: {e}")))?;
            if n == 0 {
                eof = true;
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        let cut = if eof {
            buf.len()
        } else {
            match buf.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                // A single line longer than a block: keep reading until it ends.
                None => continue,
            }
        };
        let text = std::str::from_utf8(&buf[..cut]).map_err(|e| {
            let line = first_line
                + buf[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count() as u64;
            ReadError::at(line, None, "the line is not valid UTF-8")
        })?;
        let lines: Vec<&str> = text.lines().collect();
        let parsed: Vec<Result<Vec<(u64, RawEvent<'_>)>, ReadError>> = lines
            .par_chunks(LINES_PER_TASK)
            .enumerate()
            .map(|(chunk, chunk_lines)| {
                let base = first_line + (chunk * LINES_PER_TASK) as u64;
                let mut out = Vec::with_capacity(chunk_lines.len());
                for (i, l) in chunk_lines.iter().enumerate() {
                    let line = base + i as u64;
                    if let Some(ev) = parse_line(l, line)? {
                        out.push((line, ev));
                    }
                }
                Ok(out)
            })
            .collect();
        for chunk in parsed {
            for (line, raw) in chunk? {
                push_raw(&mut builder, raw, line)?;
            }
        }
        first_line += lines.len() as u64;
        buf.drain(..cut);
    }
    Ok(builder.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Outcome;

    #[test]
    fn pairs_ops_and_drops_failures() {
        let text = r#"{"type":"invoke","process":0,"f":"write","key":"k1","value":3,"time":1}
{"type":"invoke","process":1,"f":"cas","key":"k1","value":[1,2],"time":2}
{"type":"ok","process":0,"f":"write","key":"k1","value":3,"time":3}
{"type":"fail","process":1,"f":"cas","key":"k1","value":[1,2],"time":4}
{"type":"invoke","process":"nemesis","f":"kill","value":["n1"],"time":5}

{"type":"invoke","process":2,"f":"read","key":7,"value":null,"time":6}
"#;
        let h = read(text.as_bytes()).unwrap();
        assert_eq!(h.ops.len(), 2);
        assert_eq!(h.stats.fail, 1);
        assert_eq!(h.stats.unfinished, 1);
        assert_eq!(h.nemesis.len(), 1);
        assert_eq!(h.ops[0].output, Outcome::Ok(Value::Int(3)));
        assert!(h.ops[1].is_indeterminate());
        assert_eq!(h.keys.len(), 2);
    }

    #[test]
    fn bad_lines_name_line_and_field() {
        let text = "{\"type\":\"invoke\",\"process\":0,\"f\":\"read\",\"value\":null}\n{\"type\":\"done\",\"process\":0,\"f\":\"read\"}\n";
        let e = read(text.as_bytes()).unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.field, Some("type"));

        let e = read("{\"type\":\"ok\",\"process\":0,\"f\":\"read\"}\n".as_bytes()).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("no pending invoke"), "{}", e.message);

        let e = read("{\"type\":\"invoke\",\"process\":0,\"value\":1}\n".as_bytes()).unwrap_err();
        assert!(e.message.contains("missing field `f`"), "{}", e.message);

        let e = read("{\"type\":\"invoke\",\"process\":0,\"f\":\"read\"}\n{oops\n".as_bytes())
            .unwrap_err();
        assert_eq!(e.line, 2);
    }
}
