//! Anomalies as reported: each names the transactions involved and says, step
//! by step, why they cannot be ordered.

use std::collections::HashMap;

use serde::Serialize;

use super::{Mop, Status, TxnHistory};

/// Edge kinds of the dependency graph.
pub(crate) const WW: u8 = 0;
pub(crate) const WR: u8 = 1;
pub(crate) const RW: u8 = 2;
pub(crate) const PROCESS: u8 = 3;
pub(crate) const REALTIME: u8 = 4;

/// The name of an edge kind as results spell it.
pub(crate) fn kind_name(kind: u8) -> &'static str {
    match kind {
        WW => "ww",
        WR => "wr",
        RW => "rw",
        PROCESS => "process",
        _ => "realtime",
    }
}

/// A transaction as an anomaly shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TxnView {
    /// Its name in this anomaly's steps (`T1`, `T2`, ...).
    pub name: String,
    /// Its index among the history's transactions (by invocation).
    pub index: usize,
    /// Client process.
    pub process: i64,
    /// `ok`, `info` or `fail`.
    pub status: &'static str,
    /// History line of its invocation.
    pub line: u64,
    /// History line of its completion, if any.
    pub ret_line: Option<u64>,
    /// Its micro-ops as recorded (`[append 5 3] [r 5 [1 2]]`).
    pub ops: String,
}

/// One edge of a cycle.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeView {
    /// Name of the earlier transaction.
    pub from: String,
    /// Name of the later one.
    pub to: String,
    /// `ww`, `wr`, `rw`, `process` or `realtime`.
    pub kind: &'static str,
}

/// One anomaly, explained.
#[derive(Clone, Debug, Serialize)]
pub struct Anomaly {
    /// Its class: `G0`, `G1c-realtime`, `internal`, ...
    pub kind: String,
    /// The transactions involved, named as the steps name them.
    pub txns: Vec<TxnView>,
    /// The argument, one sentence per step.
    pub steps: Vec<String>,
    /// For a cycle, its edges in order (the last returns to the first transaction).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cycle: Vec<EdgeView>,
}

/// Names transactions `T1`, `T2`, ... in order of first mention.
pub(crate) struct Namer<'h> {
    h: &'h TxnHistory,
    names: HashMap<usize, usize>,
    txns: Vec<TxnView>,
}

impl<'h> Namer<'h> {
    pub(crate) fn new(h: &'h TxnHistory) -> Self {
        Namer {
            h,
            names: HashMap::new(),
            txns: Vec::new(),
        }
    }

    /// The name of transaction `t`, giving it one if it has none yet.
    pub(crate) fn name(&mut self, t: usize) -> String {
        let next = self.txns.len();
        let n = *self.names.entry(t).or_insert(next);
        if n == next {
            let txn = &self.h.txns[t];
            self.txns.push(TxnView {
                name: format!("T{}", n + 1),
                index: t,
                process: txn.process,
                status: match txn.status {
                    Status::Ok => "ok",
                    Status::Info => "info",
                    Status::Fail => "fail",
                },
                line: txn.line,
                ret_line: txn.ret_line,
                ops: render_ops(self.h, t),
            });
        }
        format!("T{}", n + 1)
    }

    /// The anomaly with the transactions named so far.
    pub(crate) fn anomaly(self, kind: impl Into<String>, steps: Vec<String>) -> Anomaly {
        Anomaly {
            kind: kind.into(),
            txns: self.txns,
            steps,
            cycle: Vec::new(),
        }
    }
}

/// The value with id `v` as text.
pub(crate) fn val(h: &TxnHistory, v: u32) -> String {
    h.values[v as usize].to_string()
}

/// The key with id `k` as text.
pub(crate) fn key(h: &TxnHistory, k: u32) -> String {
    h.keys[k as usize].to_string()
}

/// A list of value ids as `[1 2 3]`, long lists elided in the middle.
pub(crate) fn list(h: &TxnHistory, elems: &[u32]) -> String {
    let show = |s: &[u32]| s.iter().map(|&v| val(h, v)).collect::<Vec<_>>().join(" ");
    if elems.len() <= 12 {
        format!("[{}]", show(elems))
    } else {
        format!(
            "[{} ... {}] ({} elements)",
            show(&elems[..4]),
            show(&elems[elems.len() - 4..]),
            elems.len()
        )
    }
}

/// A transaction's micro-ops as text.
pub(crate) fn render_ops(h: &TxnHistory, t: usize) -> String {
    let write = match h.kind {
        super::Kind::ListAppend => "append",
        super::Kind::RwRegister => "w",
    };
    let mut out = Vec::new();
    for m in h.mops_of(t) {
        out.push(match *m {
            Mop::Write { key: k, value } => format!("[{write} {} {}]", key(h, k), val(h, value)),
            Mop::Read { key: k, known, .. } => {
                let got = if !known {
                    "?".to_string()
                } else {
                    match h.kind {
                        super::Kind::ListAppend => list(h, h.elems(m)),
                        super::Kind::RwRegister => match h.elems(m) {
                            [v] => val(h, *v),
                            _ => "nil".to_string(),
                        },
                    }
                };
                format!("[r {} {got}]", key(h, k))
            }
        });
    }
    out.join(" ")
}
