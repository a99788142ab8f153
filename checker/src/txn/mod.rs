//! Transactional histories and an Elle-style isolation checker.
//!
//! A transaction is an op with `f: "txn"` whose value is a list of micro-ops:
//! `["append", k, v]` and `["r", k, [..]]` (list-append), or `["w", k, v]` and
//! `["r", k, v]` (rw-register). [`read`] turns a paired [`History`] into a
//! [`TxnHistory`]; [`check`] infers version orders, builds the dependency graph,
//! searches its cycles and names the anomalies and the models they rule out.

mod analysis;
mod consistency;
mod explain;
pub mod generate;
mod graph;
pub mod jsonl;
mod register;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::ReadError;
use crate::history::{History, Op, Outcome, NEVER};
use crate::linearizability::FxBuild;
use crate::value::Value;

pub use analysis::{check, TxnOptions};
pub use consistency::{ConsistencyModel, MODELS};

/// Which transactional data type the history exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kind {
    /// Keys hold lists; `append` adds to the end, `r` returns the whole list.
    #[default]
    ListAppend,
    /// Keys hold one value; `w` replaces it, `r` returns it.
    RwRegister,
}

impl Kind {
    /// The model name `harness check --model` uses for it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ListAppend => "list-append",
            Kind::RwRegister => "rw-register",
        }
    }
}

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Committed; its reads are known.
    Ok,
    /// Indeterminate: it may have committed, or not.
    Info,
    /// Certainly aborted: none of its writes took effect.
    Fail,
}

/// One micro-op; keys and values are interned ([`TxnHistory::keys`], [`TxnHistory::values`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mop {
    /// `append v` to list `key` (list-append) or `w v` to register `key` (rw-register).
    Write {
        /// Key id.
        key: u32,
        /// Value id.
        value: u32,
    },
    /// A read of `key`. List-append: the list is `read_elems[start..start + len]`.
    /// Rw-register: `len` is 1 and the value id is `read_elems[start]`, or `len` is
    /// 0 for nil (in list-append, `null` is the empty list). `known` is false
    /// when the result is not known: the txn did not complete `ok`.
    Read {
        /// Key id.
        key: u32,
        /// Start in [`TxnHistory::read_elems`].
        start: u32,
        /// Elements read.
        len: u32,
        /// Whether the result is known.
        known: bool,
    },
}

impl Mop {
    /// The key the micro-op touches.
    pub fn key(&self) -> u32 {
        match *self {
            Mop::Write { key, .. } | Mop::Read { key, .. } => key,
        }
    }
}

/// One transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    /// Client process.
    pub process: i64,
    /// How it ended.
    pub status: Status,
    /// Its micro-ops are `mops[start..end]` of [`TxnHistory::mops`].
    pub mops: (u32, u32),
    /// Position of the invoke among all events (real time).
    pub call: u64,
    /// Position of the completion, or [`NEVER`] unless `ok`.
    pub ret: u64,
    /// Line of the invoke.
    pub line: u64,
    /// Line of the completion, if any.
    pub ret_line: Option<u64>,
}

/// A history of transactions, interned for checking.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnHistory {
    /// The data type.
    pub kind: Kind,
    /// Every transaction, by invocation (committed, indeterminate and aborted).
    pub txns: Vec<Txn>,
    /// Micro-ops of all transactions.
    pub mops: Vec<Mop>,
    /// Values read, as value ids.
    pub read_elems: Vec<u32>,
    /// Distinct keys, by id.
    pub keys: Vec<Value>,
    /// Distinct written or read values, by id.
    pub values: Vec<Value>,
}

impl TxnHistory {
    /// Micro-ops of transaction `t`.
    pub fn mops_of(&self, t: usize) -> &[Mop] {
        let (a, b) = self.txns[t].mops;
        &self.mops[a as usize..b as usize]
    }

    /// Elements of a read micro-op (empty for an unknown or nil read).
    pub fn elems(&self, mop: &Mop) -> &[u32] {
        match *mop {
            Mop::Read { start, len, .. } => {
                &self.read_elems[start as usize..start as usize + len as usize]
            }
            Mop::Write { .. } => &[],
        }
    }

    /// Transactions that may have taken effect: committed and indeterminate.
    pub fn is_node(&self, t: usize) -> bool {
        self.txns[t].status != Status::Fail
    }
}

/// A hasher for integer keys that mixes every bit into the low ones: keys
/// packed as `key << 32 | value` differ mostly in high bits, which a
/// multiply-only hash leaves out of the bucket index.
#[derive(Default)]
pub(crate) struct MixHasher(u64);

impl Hasher for MixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i))
    }
    fn write_u64(&mut self, i: u64) {
        let mut z = (self.0 ^ i).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.0 = z ^ (z >> 31);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`MixHasher`]s.
pub(crate) type MixBuild = BuildHasherDefault<MixHasher>;

#[derive(Default)]
struct Interner {
    ids: HashMap<Value, u32, FxBuild>,
    values: Vec<Value>,
}

impl Interner {
    fn id(&mut self, v: &Value) -> u32 {
        if let Some(&id) = self.ids.get(v) {
            return id;
        }
        let id = self.values.len() as u32;
        self.ids.insert(v.clone(), id);
        self.values.push(v.clone());
        id
    }
}

fn scalar(v: &Value) -> bool {
    matches!(v, Value::Int(_) | Value::Num(_) | Value::Str(_))
}

/// Turns a paired history into transactions of `kind`. Every client op must be a
/// `txn`; errors name the line and the field at fault.
pub fn read(history: &History, kind: Kind) -> Result<TxnHistory, ReadError> {
    let mut out = TxnHistory {
        kind,
        ..TxnHistory::default()
    };
    let mut keys = Interner::default();
    let mut values = Interner::default();
    let mut all: Vec<(&Op, Status)> = history
        .ops
        .iter()
        .map(|op| {
            let status = match op.output {
                Outcome::Ok(_) => Status::Ok,
                Outcome::Unknown => Status::Info,
            };
            (op, status)
        })
        .chain(history.failed.iter().map(|op| (op, Status::Fail)))
        .collect();
    all.sort_by_key(|(op, _)| op.call);
    for (op, status) in all {
        if &*op.f != "txn" {
            return Err(ReadError::at(
                op.line,
                Some("f"),
                format!(
                    "`{}` is not a transaction; a {} history holds only `txn` ops",
                    op.f,
                    kind.name()
                ),
            ));
        }
        let (value, line) = match (&op.output, status) {
            (Outcome::Ok(v), Status::Ok) => (v, op.ret_line.unwrap_or(op.line)),
            _ => (&op.input, op.line),
        };
        let start = out.mops.len() as u32;
        let Value::List(items) = value else {
            return Err(ReadError::at(
                line,
                Some("value"),
                format!(
                    "a txn's value must be a list of micro-ops, not {}",
                    value.type_name()
                ),
            ));
        };
        for (i, item) in items.iter().enumerate() {
            let mop = micro_op(
                item,
                i,
                line,
                kind,
                status,
                &mut keys,
                &mut values,
                &mut out,
            )?;
            out.mops.push(mop);
        }
        if out.mops.len() > u32::MAX as usize || out.read_elems.len() > u32::MAX as usize {
            return Err(ReadError::at(
                line,
                None,
                "history too large (over 2^32 micro-ops or read elements)",
            ));
        }
        out.txns.push(Txn {
            process: op.process,
            status,
            mops: (start, out.mops.len() as u32),
            call: op.call,
            ret: if status == Status::Ok { op.ret } else { NEVER },
            line: op.line,
            ret_line: op.ret_line,
        });
    }
    out.keys = keys.values;
    out.values = values.values;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn micro_op(
    item: &Value,
    i: usize,
    line: u64,
    kind: Kind,
    status: Status,
    keys: &mut Interner,
    values: &mut Interner,
    out: &mut TxnHistory,
) -> Result<Mop, ReadError> {
    let bad = |msg: String| ReadError::at(line, Some("value"), format!("micro-op {i}: {msg}"));
    let Value::List(parts) = item else {
        return Err(bad(format!(
            "expected a list like [\"r\", key, value], got {}",
            item.type_name()
        )));
    };
    if parts.len() != 3 {
        return Err(bad(format!(
            "expected three elements [f, key, value], got {}",
            parts.len()
        )));
    }
    let f = parts[0].as_str().unwrap_or("");
    if !scalar(&parts[1]) {
        return Err(bad(format!(
            "the key must be a number or a string, not {}",
            parts[1].type_name()
        )));
    }
    let key = keys.id(&parts[1]);
    let arg = &parts[2];
    let write = match kind {
        Kind::ListAppend => "append",
        Kind::RwRegister => "w",
    };
    if f == write {
        if !scalar(arg) {
            return Err(bad(format!(
                "`{write}` needs a number or a string, not {}",
                arg.type_name()
            )));
        }
        return Ok(Mop::Write {
            key,
            value: values.id(arg),
        });
    }
    if f != "r" {
        return Err(bad(format!(
            "unknown micro-op `{}` ({} has `{write}` and `r`)",
            parts[0],
            kind.name()
        )));
    }
    let start = out.read_elems.len() as u32;
    let known = status == Status::Ok;
    if !known {
        return Ok(Mop::Read {
            key,
            start,
            len: 0,
            known,
        });
    }
    match (kind, arg) {
        (Kind::ListAppend, Value::Null) => {}
        (Kind::ListAppend, Value::List(elems)) => {
            for e in elems.iter() {
                if !scalar(e) {
                    return Err(bad(format!(
                        "a list element must be a number or a string, not {}",
                        e.type_name()
                    )));
                }
                out.read_elems.push(values.id(e));
            }
        }
        (Kind::ListAppend, other) => {
            return Err(bad(format!(
                "a list-append read returns a list (or null), not {}",
                other.type_name()
            )))
        }
        (Kind::RwRegister, Value::Null) => {}
        (Kind::RwRegister, v) if scalar(v) => out.read_elems.push(values.id(v)),
        (Kind::RwRegister, other) => {
            return Err(bad(format!(
                "a register read returns a number, a string or null, not {}",
                other.type_name()
            )))
        }
    }
    Ok(Mop::Read {
        key,
        start,
        len: out.read_elems.len() as u32 - start,
        known,
    })
}
