//! A run folder read back for reporting: configuration, results, and the history
//! as completed operations with their intervals, plus the fault windows.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use checker::record::{Record, RecordKind};
use serde_json::Value;

use crate::ReportError;

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Took effect.
    Ok,
    /// Did not take effect.
    Fail,
    /// Unknown (timed out, or never completed).
    Info,
}

impl Outcome {
    /// The history spelling.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }
}

/// One operation with its interval (ns since the start).
#[derive(Clone, Debug)]
pub struct OpRecord {
    /// Client process.
    pub process: i64,
    /// Index into [`Run::names`].
    pub f: u16,
    /// Key, if any.
    pub key: Option<String>,
    /// Argument, as compact JSON text.
    pub input: String,
    /// Result, as compact JSON text (ok only).
    pub output: Option<String>,
    /// Invoke time.
    pub start: u64,
    /// Completion time (the end of the history when none came).
    pub end: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Line of the invoke.
    pub line: u64,
}

/// A fault in force between two times.
#[derive(Clone, Debug)]
pub struct FaultWindow {
    /// Fault kind (`partition`, `kill`, ...).
    pub kind: String,
    /// What was done, as JSON text.
    pub detail: String,
    /// Start, ns.
    pub start: u64,
    /// End, ns.
    pub end: u64,
}

/// Everything a report needs from a run folder.
pub struct Run {
    /// The folder.
    pub dir: PathBuf,
    /// `test.json`.
    pub test: Value,
    /// `results.json`.
    pub results: Value,
    /// Operation names.
    pub names: Vec<String>,
    /// Operations by invocation.
    pub ops: Vec<OpRecord>,
    /// Fault windows.
    pub faults: Vec<FaultWindow>,
    /// Last event time, ns.
    pub end: u64,
    /// When the harness healed everything at the end of the load (its last
    /// `heal-all`), ns: what follows is recovery time and the final reads.
    pub load_end: Option<u64>,
    /// Node ids with a log folder.
    pub nodes: Vec<String>,
}

fn read_json(path: &Path) -> Result<Value, ReportError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ReportError::Parse {
            path: path.to_path_buf(),
            line: e.line() as u64,
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Null),
        Err(e) => Err(ReportError::Io(path.to_path_buf(), e)),
    }
}

fn key_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Run {
    /// Reads a run folder (`history.jsonl` required; `test.json` and `results.json`
    /// used when present).
    pub fn load(dir: &Path) -> Result<Run, ReportError> {
        let test = read_json(&dir.join("test.json"))?;
        let results = read_json(&dir.join("results.json"))?;
        let path = dir.join("history.jsonl");
        let file = std::fs::File::open(&path).map_err(|e| ReportError::Io(path.clone(), e))?;
        let mut names: Vec<String> = Vec::new();
        let mut name_ids: HashMap<String, u16> = HashMap::new();
        let mut ops: Vec<OpRecord> = Vec::new();
        let mut open: HashMap<i64, usize> = HashMap::new();
        let mut fault_open: HashMap<String, (String, u64)> = HashMap::new();
        let mut faults = Vec::new();
        let mut end = 0u64;
        let mut load_end = None;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut text = String::new();
        let mut line_no = 0u64;
        loop {
            text.clear();
            let n = reader
                .read_line(&mut text)
                .map_err(|e| ReportError::Io(path.clone(), e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if text.trim().is_empty() {
                continue;
            }
            let l: Record =
                serde_json::from_str(text.trim_end()).map_err(|e| ReportError::Parse {
                    path: path.clone(),
                    line: line_no,
                    message: e.to_string(),
                })?;
            let time = l.time.map_or(0, |t| t.max(0) as u64);
            end = end.max(time);
            let Some(process) = l.client() else {
                // Nemesis: start-X opens a window, stop-X (or heal-all) closes it.
                if let Some(kind) = l.f.strip_prefix("start-") {
                    fault_open.insert(kind.to_string(), (l.value.to_string(), time));
                } else if let Some(kind) = l.f.strip_prefix("stop-") {
                    if let Some((detail, start)) = fault_open.remove(kind) {
                        faults.push(FaultWindow {
                            kind: kind.to_string(),
                            detail,
                            start,
                            end: time,
                        });
                    }
                } else if l.f == "heal-all" {
                    load_end = Some(time);
                    for (kind, (detail, start)) in fault_open.drain() {
                        faults.push(FaultWindow {
                            kind,
                            detail,
                            start,
                            end: time,
                        });
                    }
                }
                continue;
            };
            if l.kind == RecordKind::Invoke {
                let f = match name_ids.get(l.f.as_str()) {
                    Some(&id) => id,
                    None => {
                        let id = names.len() as u16;
                        names.push(l.f.to_string());
                        name_ids.insert(l.f.to_string(), id);
                        id
                    }
                };
                open.insert(process, ops.len());
                ops.push(OpRecord {
                    process,
                    f,
                    key: l.key.as_ref().filter(|k| !k.is_null()).map(key_text),
                    input: shown(l.value.to_string()),
                    output: None,
                    start: time,
                    end: u64::MAX,
                    outcome: Outcome::Info,
                    line: line_no,
                });
            } else if let Some(i) = open.remove(&process) {
                let op = &mut ops[i];
                op.end = time;
                op.outcome = match l.kind {
                    RecordKind::Ok => Outcome::Ok,
                    RecordKind::Fail => Outcome::Fail,
                    _ => Outcome::Info,
                };
                if op.outcome == Outcome::Ok {
                    op.output = Some(shown(l.value.to_string()));
                }
            }
        }
        for op in &mut ops {
            if op.end == u64::MAX {
                op.end = end;
            }
        }
        for (kind, (detail, start)) in fault_open {
            faults.push(FaultWindow {
                kind,
                detail,
                start,
                end,
            });
        }
        faults.sort_by_key(|f| f.start);
        let mut nodes: Vec<String> = std::fs::read_dir(dir.join("nodes"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        nodes.sort();
        Ok(Run {
            dir: dir.to_path_buf(),
            test,
            results,
            names,
            ops,
            faults,
            end,
            load_end,
            nodes,
        })
    }
}

/// Characters of an op's value the report keeps: a read of a whole set can be
/// megabytes, and the report shows values to people.
const SHOWN: usize = 300;

/// `text`, cut to [`SHOWN`] characters with a note of its full length.
fn shown(text: String) -> String {
    match text.char_indices().nth(SHOWN) {
        Some((i, _)) => format!("{}... ({} bytes)", &text[..i], text.len()),
        None => text,
    }
}
