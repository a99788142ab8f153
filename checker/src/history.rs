//! Histories: events as observed, paired into operations with real-time intervals.
//!
//! Pairing follows Jepsen: a completion belongs to the latest pending invoke of the
//! same process; `fail` ops certainly did not happen and are dropped; `info` and
//! never-completed invokes are indeterminate, so their interval never closes.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::ReadError;
use crate::linearizability::FxBuild;
use crate::value::{Key, Value};

/// What an event reports: an invocation or one of the three completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The client started an operation.
    Invoke,
    /// The operation took effect once, between its invoke and this completion.
    Ok,
    /// The operation certainly did not take effect.
    Fail,
    /// Indeterminate: the operation may take effect at any later time, or never.
    Info,
}

impl EventKind {
    /// Parses the history-file spelling (`invoke`, `ok`, `fail`, `info`).
    pub fn parse(s: &str) -> Option<EventKind> {
        match s {
            "invoke" => Some(EventKind::Invoke),
            "ok" => Some(EventKind::Ok),
            "fail" => Some(EventKind::Fail),
            "info" => Some(EventKind::Info),
            _ => None,
        }
    }

    /// The history-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Invoke => "invoke",
            EventKind::Ok => "ok",
            EventKind::Fail => "fail",
            EventKind::Info => "info",
        }
    }
}

/// Who emitted an event: a logical client process or the fault injector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Process {
    /// A client process; it has at most one operation outstanding.
    Client(i64),
    /// The nemesis, whose events record faults rather than operations.
    Nemesis,
}

/// How an operation ended, as far as the checker is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Completed `ok` with this result (a read's observed value, a write's echo).
    Ok(Value),
    /// Indeterminate: `info`, or no completion before the end of the history.
    Unknown,
}

/// Position of an indeterminate operation's (never seen) completion: after everything.
pub const NEVER: u64 = u64::MAX;

/// One client operation: its invocation paired with its completion.
#[derive(Clone, Debug)]
pub struct Op {
    /// Client process that ran it (any integer: Knossos-converted histories use -1).
    pub process: i64,
    /// Operation name (`read`, `write`, `cas`, ...).
    pub f: Arc<str>,
    /// Index into [`History::keys`], when the op names a key.
    pub key: Option<u32>,
    /// The invocation's argument.
    pub input: Value,
    /// The completion's result, or unknown.
    pub output: Outcome,
    /// Position of the invoke among all events (the order is real time).
    pub call: u64,
    /// Position of the completion, or [`NEVER`] when indeterminate.
    pub ret: u64,
    /// `time` of the invoke (ns since start), when the format has one.
    pub call_time: Option<i64>,
    /// `time` of the completion (also set for `info`), when known.
    pub ret_time: Option<i64>,
    /// Line of the invoke in the input file (1-based).
    pub line: u64,
    /// Line of the completion, if there was one.
    pub ret_line: Option<u64>,
    /// Node the client talked to, if recorded.
    pub node: Option<Arc<str>>,
    /// Error text of an indeterminate completion, if any.
    pub error: Option<Box<str>>,
}

impl Op {
    /// True when the op's outcome is unknown (`info` or never completed).
    pub fn is_indeterminate(&self) -> bool {
        matches!(self.output, Outcome::Unknown)
    }
}

/// A nemesis event, kept for reports (fault windows).
#[derive(Clone, Debug)]
pub struct NemesisEvent {
    /// Invoke or completion.
    pub kind: EventKind,
    /// Fault name (`start-partition`, `kill`, ...).
    pub f: Arc<str>,
    /// What was done.
    pub value: Value,
    /// When, in ns since start.
    pub time: Option<i64>,
    /// Line in the input file.
    pub line: u64,
}

/// Counts of what the reader saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HistoryStats {
    /// Lines that held an event.
    pub events: u64,
    /// Operations that completed `ok`.
    pub ok: u64,
    /// Operations that completed `fail` (dropped from checking).
    pub fail: u64,
    /// Operations that completed `info`.
    pub info: u64,
    /// Invocations with no completion by the end of the file.
    pub unfinished: u64,
}

/// A paired history, ops in invocation order.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Operations that may have taken effect (`ok`, `info`, unfinished), by invocation.
    pub ops: Vec<Op>,
    /// Every distinct key, in order of first appearance; [`Op::key`] indexes it.
    pub keys: Vec<Key>,
    /// Nemesis events in order.
    pub nemesis: Vec<NemesisEvent>,
    /// Operations that completed `fail`, by invocation: no model checks them, but a
    /// transaction checker needs their writes to recognise reads of aborted data.
    pub failed: Vec<Op>,
    /// What was read.
    pub stats: HistoryStats,
}

/// A key as an event names it, borrowed from the input.
#[derive(Debug, Clone, Copy)]
pub enum KeyRef<'a> {
    /// An integer key.
    Int(i64),
    /// A string key.
    Str(&'a str),
}

/// One event handed to [`HistoryBuilder::push`].
#[derive(Debug)]
pub struct EventRecord<'a> {
    /// Invoke or completion kind.
    pub kind: EventKind,
    /// Emitting process.
    pub process: Process,
    /// Operation name.
    pub f: &'a str,
    /// Key, if any.
    pub key: Option<KeyRef<'a>>,
    /// Argument or result.
    pub value: Value,
    /// ns since start, if the format has it.
    pub time: Option<i64>,
    /// Node, if recorded.
    pub node: Option<&'a str>,
    /// Error text, if any.
    pub error: Option<&'a str>,
    /// Line in the input (1-based).
    pub line: u64,
}

/// Pairs a stream of events into a [`History`], rejecting impossible sequences.
#[derive(Default)]
pub struct HistoryBuilder {
    history: History,
    pending: HashMap<i64, usize, FxBuild>,
    names: HashMap<Box<str>, Arc<str>, FxBuild>,
    int_keys: HashMap<i64, u32, FxBuild>,
    str_keys: HashMap<Box<str>, u32, FxBuild>,
    nodes: HashMap<Box<str>, Arc<str>, FxBuild>,
    failed: Vec<usize>,
}

impl HistoryBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    fn name(&mut self, f: &str) -> Arc<str> {
        if let Some(n) = self.names.get(f) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(f);
        self.names.insert(f.into(), n.clone());
        n
    }

    fn node(&mut self, node: &str) -> Arc<str> {
        if let Some(n) = self.nodes.get(node) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(node);
        self.nodes.insert(node.into(), n.clone());
        n
    }

    fn key_id(&mut self, key: KeyRef<'_>) -> u32 {
        let found = match key {
            KeyRef::Int(i) => self.int_keys.get(&i),
            KeyRef::Str(s) => self.str_keys.get(s),
        };
        if let Some(&id) = found {
            return id;
        }
        let id = self.history.keys.len() as u32;
        match key {
            KeyRef::Int(i) => {
                self.history.keys.push(Key::Int(i));
                self.int_keys.insert(i, id);
            }
            KeyRef::Str(s) => {
                self.history.keys.push(Key::Str(s.into()));
                self.str_keys.insert(s.into(), id);
            }
        }
        id
    }

    /// Adds the next event in observation order.
    pub fn push(&mut self, ev: EventRecord<'_>) -> Result<(), ReadError> {
        let position = self.history.stats.events;
        self.history.stats.events += 1;
        let process = match ev.process {
            Process::Nemesis => {
                let f = self.name(ev.f);
                self.history.nemesis.push(NemesisEvent {
                    kind: ev.kind,
                    f,
                    value: ev.value,
                    time: ev.time,
                    line: ev.line,
                });
                return Ok(());
            }
            Process::Client(p) => p,
        };
        match ev.kind {
            EventKind::Invoke => {
                if let Some(&open) = self.pending.get(&process) {
                    let prev = &self.history.ops[open];
                    return Err(ReadError::at(
                        ev.line,
                        Some("process"),
                        format!(
                            "process {process} invokes `{}` while its `{}` from line {} is still pending (one outstanding op per process)",
                            ev.f, prev.f, prev.line
                        ),
                    ));
                }
                let f = self.name(ev.f);
                let key = ev.key.map(|k| self.key_id(k));
                let node = ev.node.map(|n| self.node(n));
                self.pending.insert(process, self.history.ops.len());
                self.history.ops.push(Op {
                    process,
                    f,
                    key,
                    input: ev.value,
                    output: Outcome::Unknown,
                    call: position,
                    ret: NEVER,
                    call_time: ev.time,
                    ret_time: None,
                    line: ev.line,
                    ret_line: None,
                    node,
                    error: None,
                });
            }
            kind => {
                let Some(index) = self.pending.remove(&process) else {
                    return Err(ReadError::at(
                        ev.line,
                        Some("process"),
                        format!(
                            "`{}` completion of `{}` for process {process} has no pending invoke",
                            kind.as_str(),
                            ev.f
                        ),
                    ));
                };
                // The node that answered is known at completion (the harness records it there).
                let node = ev.node.map(|n| self.node(n));
                let op = &mut self.history.ops[index];
                if node.is_some() {
                    op.node = node;
                }
                if *op.f != *ev.f {
                    return Err(ReadError::at(
                        ev.line,
                        Some("f"),
                        format!(
                            "completion says `{}` but process {process}'s pending invoke at line {} is `{}`",
                            ev.f, op.line, op.f
                        ),
                    ));
                }
                op.ret_time = ev.time;
                op.ret_line = Some(ev.line);
                match kind {
                    EventKind::Ok => {
                        op.output = Outcome::Ok(ev.value);
                        op.ret = position;
                        self.history.stats.ok += 1;
                    }
                    EventKind::Info => {
                        op.error = ev.error.map(Into::into);
                        self.history.stats.info += 1;
                    }
                    EventKind::Fail => {
                        // Set aside at the end: a failed op certainly had no effect.
                        op.ret = position;
                        op.output = Outcome::Unknown;
                        op.error = ev.error.map(Into::into);
                        self.failed.push(index);
                        self.history.stats.fail += 1;
                    }
                    EventKind::Invoke => unreachable!("handled above"),
                }
            }
        }
        Ok(())
    }

    /// Ends the history: unfinished invokes become indeterminate, failed ops move
    /// to [`History::failed`].
    pub fn finish(mut self) -> History {
        self.history.stats.unfinished = self.pending.len() as u64;
        if !self.failed.is_empty() {
            // Completions come in any order; the ops are by invocation.
            self.failed.sort_unstable();
            let mut failed = std::mem::take(&mut self.failed).into_iter().peekable();
            let ops = std::mem::take(&mut self.history.ops);
            for (index, op) in ops.into_iter().enumerate() {
                if failed.peek() == Some(&index) {
                    failed.next();
                    self.history.failed.push(op);
                } else {
                    self.history.ops.push(op);
                }
            }
        }
        self.history
    }
}
