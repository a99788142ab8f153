//! The JSON Lines history format (docs/history-format.md).
//!
//! The reader streams in two stages: a reader thread cuts the input into blocks
//! of whole lines and parses each block's lines on all cores into owned events;
//! the calling thread pairs them in file order meanwhile, one block behind. So
//! parsing and pairing overlap, and memory holds two blocks, never the file.

use std::borrow::Cow;
use std::io::Read;

use super::jsonl_line::{parse_line, RawEvent, RawProcess};
use crate::error::ReadError;
use crate::history::{EventKind, EventRecord, History, HistoryBuilder, KeyRef, Process};
use crate::value::{RawKey, Value};

/// For tests: a line through the fast path and through serde_json alone.
#[doc(hidden)]
pub use super::jsonl_line::both_paths;
use rayon::prelude::*;

/// Bytes read per block; large enough that splitting work across cores pays.
const BLOCK_BYTES: usize = 8 << 20;
/// Lines parsed per parallel task.
const LINES_PER_TASK: usize = 4096;

/// A parsed line that owns its text, so it can outlive its block.
struct Parsed {
    line: u64,
    kind: EventKind,
    process: Process,
    f: Cow<'static, str>,
    key: Option<OwnedKey>,
    value: Value,
    time: Option<i64>,
    node: Option<Box<str>>,
    error: Option<Box<str>>,
}

/// A key owned without a heap allocation when it is short (most are).
enum OwnedKey {
    Int(i64),
    Short([u8; 22], u8),
    Str(Box<str>),
}

impl OwnedKey {
    fn of(k: RawKey<'_>) -> OwnedKey {
        match k {
            RawKey::Int(i) => OwnedKey::Int(i),
            RawKey::Str(s) if s.len() <= 22 => {
                let mut b = [0u8; 22];
                b[..s.len()].copy_from_slice(s.as_bytes());
                OwnedKey::Short(b, s.len() as u8)
            }
            RawKey::Str(s) => OwnedKey::Str(s.as_ref().into()),
        }
    }

    fn as_ref(&self) -> KeyRef<'_> {
        match self {
            OwnedKey::Int(i) => KeyRef::Int(*i),
            // Built from a whole &str above.
            OwnedKey::Short(b, n) => {
                KeyRef::Str(std::str::from_utf8(&b[..*n as usize]).unwrap_or(""))
            }
            OwnedKey::Str(s) => KeyRef::Str(s),
        }
    }
}

/// Operation names common enough to share instead of copying.
const COMMON_F: &[&str] = &[
    "read",
    "write",
    "cas",
    "get",
    "put",
    "append",
    "txn",
    "enqueue",
    "dequeue",
    "acquire",
    "release",
    "start-partition",
    "stop-partition",
];

fn own(raw: RawEvent<'_>, line: u64) -> Result<Parsed, ReadError> {
    let kind = EventKind::parse(&raw.kind).ok_or_else(|| {
        ReadError::at(
            line,
            Some("type"),
            format!(
                "`{}` is not one of invoke, ok, fail, info",
                super::quote(&raw.kind)
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
                format!(
                    "`{}` is neither an integer nor \"nemesis\"",
                    super::quote(&n)
                ),
            ))
        }
    };
    let f = match COMMON_F.iter().find(|c| **c == raw.f) {
        Some(c) => Cow::Borrowed(*c),
        None => Cow::Owned(raw.f.into_owned()),
    };
    Ok(Parsed {
        line,
        kind,
        process,
        f,
        key: raw.key.map(OwnedKey::of),
        value: raw.value,
        time: raw.time,
        node: raw.node.map(|n| n.as_ref().into()),
        error: raw.error.map(|e| e.as_ref().into()),
    })
}

fn push(builder: &mut HistoryBuilder, p: Parsed) -> Result<(), ReadError> {
    builder.push(EventRecord {
        kind: p.kind,
        process: p.process,
        f: &p.f,
        key: p.key.as_ref().map(OwnedKey::as_ref),
        value: p.value,
        time: p.time,
        node: p.node.as_deref(),
        error: p.error.as_deref(),
        line: p.line,
    })
}

/// One block's events, in file order; an error ends the block (and the read).
type Block = Vec<Result<Vec<Parsed>, ReadError>>;

/// Parses the lines of `text` (which starts at line `first_line`) on all cores.
fn parse_block(text: &str, first_line: u64) -> (Block, u64) {
    let lines: Vec<&str> = text.lines().collect();
    let parsed = lines
        .par_chunks(LINES_PER_TASK)
        .enumerate()
        .map(|(chunk, chunk_lines)| {
            let base = first_line + (chunk * LINES_PER_TASK) as u64;
            let mut out = Vec::with_capacity(chunk_lines.len());
            for (i, l) in chunk_lines.iter().enumerate() {
                let line = base + i as u64;
                if let Some(ev) = parse_line(l, line)? {
                    out.push(own(ev, line)?);
                }
            }
            Ok(out)
        })
        .collect();
    (parsed, lines.len() as u64)
}

/// Reads blocks of whole lines and sends each block's parsed events on.
fn produce<R: Read>(mut input: R, out: std::sync::mpsc::SyncSender<Block>) {
    let mut buf: Vec<u8> = Vec::with_capacity(BLOCK_BYTES + 4096);
    let mut first_line: u64 = 1;
    let mut eof = false;
    let fail = |out: &std::sync::mpsc::SyncSender<Block>, e: ReadError| {
        let _ = out.send(vec![Err(e)]);
    };
    while !eof {
        // Fill the block up to BLOCK_BYTES, then cut it at the last newline. The
        // buffer grows as it fills, so a small input never touches a whole block.
        let want = BLOCK_BYTES.max(buf.len() + 4096) - buf.len();
        match (&mut input).take(want as u64).read_to_end(&mut buf) {
            Ok(n) => eof = n < want,
            Err(e) => {
                return fail(
                    &out,
                    ReadError::at(first_line, None, format!("cannot read: {e}")),
                )
            }
        }
        let cut = if eof {
            buf.len()
        } else {
            match buf.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                // A single line longer than a block: keep reading until it ends.
                None => continue,
            }
        };
        let text = match std::str::from_utf8(&buf[..cut]) {
            Ok(t) => t,
            Err(e) => {
                let valid = &buf[..e.valid_up_to()];
                let line = first_line + valid.iter().filter(|&&b| b == b'\n').count() as u64;
                let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                return fail(&out, super::not_utf8(line, valid.len() - line_start));
            }
        };
        let (block, lines) = parse_block(text, first_line);
        let failed = block.iter().any(Result::is_err);
        if out.send(block).is_err() || failed {
            return;
        }
        first_line += lines;
        buf.drain(..cut);
    }
}

/// Reads a JSONL history from any reader.
pub fn read<R: Read + Send>(input: R) -> Result<History, ReadError> {
    let mut builder = HistoryBuilder::new();
    // One block in flight: the parser works on the next while this thread pairs.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Block>(1);
    std::thread::scope(|scope| {
        scope.spawn(move || produce(input, tx));
        for block in rx {
            for chunk in block {
                for p in chunk? {
                    push(&mut builder, p)?;
                }
            }
        }
        Ok::<(), ReadError>(())
    })?;
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

    #[test]
    fn any_integer_is_a_process_and_other_processes_are_named_in_the_error() {
        let text = "{\"type\":\"invoke\",\"process\":-1,\"f\":\"write\",\"value\":0}\n{\"type\":\"ok\",\"process\":-1,\"f\":\"write\",\"value\":0}\n{\"type\":\"invoke\",\"process\":-9223372036854775808,\"f\":\"read\",\"value\":null}\n";
        let h = read(text.as_bytes()).unwrap();
        assert_eq!((h.ops[0].process, h.ops[1].process), (-1, i64::MIN));
        for (bad, needle) in [
            ("true", "`process` to be an integer or \"nemesis\""),
            ("[1]", "`process` to be an integer or \"nemesis\""),
            ("1.5", "`process` to be an integer or \"nemesis\""),
            ("18446744073709551615", "larger than 2^63-1"),
            ("\"client\"", "neither an integer nor \"nemesis\""),
        ] {
            let line = format!("{{\"type\":\"invoke\",\"process\":{bad},\"f\":\"read\"}}\n");
            let e = read(line.as_bytes()).unwrap_err();
            assert!(e.message.contains(needle), "{bad}: {}", e.message);
            assert_eq!(e.line, 1);
        }
    }
}
