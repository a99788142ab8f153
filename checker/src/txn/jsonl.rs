//! A fast reader of JSONL transactional histories straight into a
//! [`TxnHistory`], without building a generic history first. It takes only the
//! common shape (integer or string keys and values, well-paired events); on
//! anything else it gives up and [`read_file`] reads the file the general way,
//! which also words every error.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;
use std::path::Path;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Kind, MixBuild, Mop, Status, Txn, TxnHistory};
use crate::error::ReadError;
use crate::history::NEVER;
use crate::value::Value;
use crate::Format;

/// A line's fields: the value is parsed as micro-ops in the same pass when the
/// process (a client) comes first, skipped for the nemesis, kept raw otherwise.
struct Line<'a> {
    kind: Cow<'a, str>,
    process: Process,
    f: Cow<'a, str>,
    value: Slot<'a>,
}

enum Slot<'a> {
    Missing,
    Mops(Vec<RawMop<'a>>),
    Raw(&'a RawValue),
    Skipped,
}

impl<'de: 'a, 'a> Deserialize<'de> for Line<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Line<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Line<'de>, A::Error> {
                let mut kind: Option<Cow<'de, str>> = None;
                let mut process: Option<Process> = None;
                let mut f: Option<Cow<'de, str>> = None;
                let mut value = Slot::Missing;
                let twice = || de::Error::custom("a field appears twice");
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "type" if kind.is_none() => kind = Some(map.next_value()?),
                        "process" if process.is_none() => process = Some(map.next_value()?),
                        "f" if f.is_none() => f = Some(map.next_value()?),
                        "value" if matches!(value, Slot::Missing) => {
                            value = match process {
                                Some(Process::Client(_)) => Slot::Mops(map.next_value()?),
                                Some(Process::Nemesis) => {
                                    map.next_value::<de::IgnoredAny>()?;
                                    Slot::Skipped
                                }
                                None => Slot::Raw(map.next_value()?),
                            }
                        }
                        "type" | "process" | "f" | "value" => return Err(twice()),
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                let missing = || de::Error::custom("a field is missing");
                Ok(Line {
                    kind: kind.ok_or_else(missing)?,
                    process: process.ok_or_else(missing)?,
                    f: f.ok_or_else(missing)?,
                    value,
                })
            }
        }
        d.deserialize_map(V)
    }
}

enum Process {
    Client(i64),
    Nemesis,
}

impl<'de> Deserialize<'de> for Process {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Process;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or \"nemesis\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Process, E> {
                Ok(Process::Client(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Process, E> {
                i64::try_from(v).map(Process::Client).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Process, E> {
                if v == "nemesis" {
                    Ok(Process::Nemesis)
                } else {
                    Err(E::custom("not nemesis"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A key or element: an integer or a string (anything else leaves the fast path).
enum Scalar<'a> {
    Int(i64),
    Str(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v).map(Scalar::Int).map_err(E::custom)
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// A micro-op's third element: null, a scalar or a list of scalars.
enum Arg<'a> {
    Null,
    One(Scalar<'a>),
    List(Vec<Scalar<'a>>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Arg<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Arg<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("null, a scalar or a list of scalars")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Arg::Null)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Arg::One(Scalar::Int(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(|v| Arg::One(Scalar::Int(v)))
                    .map_err(E::custom)
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Arg::One(Scalar::Str(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Arg::One(Scalar::Str(Cow::Owned(v.to_string()))))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(8));
                while let Some(x) = seq.next_element()? {
                    out.push(x);
                }
                Ok(Arg::List(out))
            }
        }
        d.deserialize_any(V)
    }
}

type RawMop<'a> = (Cow<'a, str>, Scalar<'a>, Arg<'a>);

#[derive(Default)]
struct Ids {
    ints: HashMap<i64, u32, MixBuild>,
    strs: HashMap<String, u32>,
    values: Vec<Value>,
}

impl Ids {
    fn id(&mut self, s: &Scalar) -> u32 {
        let next = self.values.len() as u32;
        match s {
            Scalar::Int(i) => *self.ints.entry(*i).or_insert_with(|| {
                self.values.push(Value::Int(*i));
                next
            }),
            Scalar::Str(t) => {
                if let Some(&id) = self.strs.get(t.as_ref()) {
                    return id;
                }
                self.strs.insert(t.to_string(), next);
                self.values.push(Value::Str(t.as_ref().into()));
                next
            }
        }
    }
}

/// Why the fast path stopped: the general reader takes over.
struct GiveUp;

struct Reader {
    out: TxnHistory,
    keys: Ids,
    values: Ids,
    /// Per process: (txn index, the invoke's micro-ops).
    pending: HashMap<i64, (usize, Vec<Mop>), MixBuild>,
    position: u64,
}

impl Reader {
    /// Interns micro-ops; with `elems` false, reads are unknown (an invoke's).
    fn mops(&mut self, raw: &[RawMop], known: bool, into: &mut Vec<Mop>) -> Result<(), GiveUp> {
        let write = match self.out.kind {
            Kind::ListAppend => "append",
            Kind::RwRegister => "w",
        };
        for (f, k, arg) in raw {
            let key = self.keys.id(k);
            if f == write {
                let Arg::One(v) = arg else { return Err(GiveUp) };
                into.push(Mop::Write {
                    key,
                    value: self.values.id(v),
                });
                continue;
            }
            if f != "r" {
                return Err(GiveUp);
            }
            let start = self.out.read_elems.len() as u32;
            if known {
                match (self.out.kind, arg) {
                    (_, Arg::Null) => {}
                    (Kind::ListAppend, Arg::List(items)) => {
                        for e in items {
                            let id = self.values.id(e);
                            self.out.read_elems.push(id);
                        }
                    }
                    (Kind::RwRegister, Arg::One(v)) => {
                        let id = self.values.id(v);
                        self.out.read_elems.push(id);
                    }
                    _ => return Err(GiveUp),
                }
            }
            into.push(Mop::Read {
                key,
                start,
                len: self.out.read_elems.len() as u32 - start,
                known,
            });
        }
        Ok(())
    }

    fn line(&mut self, text: &[u8], number: u64) -> Result<(), GiveUp> {
        let line: Line = serde_json::from_slice(text).map_err(|_| GiveUp)?;
        let position = self.position;
        self.position += 1;
        let p = match line.process {
            Process::Nemesis => return Ok(()),
            Process::Client(p) => p,
        };
        if line.f != "txn" {
            return Err(GiveUp);
        }
        let raw: Vec<RawMop> = match line.value {
            Slot::Mops(m) => m,
            Slot::Raw(r) => serde_json::from_str(r.get()).map_err(|_| GiveUp)?,
            Slot::Missing | Slot::Skipped => return Err(GiveUp),
        };
        match line.kind.as_ref() {
            "invoke" => {
                if self.pending.contains_key(&p) {
                    return Err(GiveUp);
                }
                let mut mops = Vec::with_capacity(raw.len());
                self.mops(&raw, false, &mut mops)?;
                self.pending.insert(p, (self.out.txns.len(), mops));
                self.out.txns.push(Txn {
                    process: p,
                    status: Status::Info,
                    mops: (0, 0),
                    call: position,
                    ret: NEVER,
                    line: number,
                    ret_line: None,
                });
            }
            kind @ ("ok" | "info" | "fail") => {
                let (t, invoked) = self.pending.remove(&p).ok_or(GiveUp)?;
                let start = self.out.mops.len() as u32;
                if kind == "ok" {
                    let mut mops = std::mem::take(&mut self.out.mops);
                    let done = self.mops(&raw, true, &mut mops);
                    self.out.mops = mops;
                    done?;
                } else {
                    self.out.mops.extend(invoked);
                }
                let txn = &mut self.out.txns[t];
                txn.mops = (start, self.out.mops.len() as u32);
                txn.ret_line = Some(number);
                match kind {
                    "ok" => {
                        txn.status = Status::Ok;
                        txn.ret = position;
                    }
                    "fail" => txn.status = Status::Fail,
                    _ => {}
                }
            }
            _ => return Err(GiveUp),
        }
        Ok(())
    }
}

fn fast<R: BufRead>(mut input: R, kind: Kind) -> Result<TxnHistory, GiveUp> {
    let mut r = Reader {
        out: TxnHistory {
            kind,
            ..TxnHistory::default()
        },
        keys: Ids::default(),
        values: Ids::default(),
        pending: HashMap::default(),
        position: 0,
    };
    let mut buf = Vec::with_capacity(4096);
    let mut number = 0u64;
    loop {
        buf.clear();
        number += 1;
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return Err(GiveUp),
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        r.line(&buf, number)?;
    }
    // Unfinished invokes are indeterminate, with their invoke's micro-ops.
    let mut open: Vec<(usize, Vec<Mop>)> = r.pending.drain().map(|(_, v)| v).collect();
    open.sort_by_key(|o| o.0);
    for (t, mops) in open {
        let start = r.out.mops.len() as u32;
        r.out.mops.extend(mops);
        r.out.txns[t].mops = (start, r.out.mops.len() as u32);
    }
    if r.out.txns.is_empty() || r.out.mops.len() > u32::MAX as usize / 2 {
        return Err(GiveUp);
    }
    r.out.keys = r.keys.values;
    r.out.values = r.values.values;
    Ok(r.out)
}

/// Reads a transactional history file: the fast path for JSONL, the general
/// reader for other formats and for whatever the fast path does not take.
pub fn read_file(path: &Path, format: Format, kind: Kind) -> Result<TxnHistory, ReadError> {
    if format == Format::Jsonl {
        if let Ok(file) = std::fs::File::open(path) {
            if let Ok(h) = fast(std::io::BufReader::with_capacity(1 << 20, file), kind) {
                return Ok(h);
            }
        }
    }
    let history = crate::format::read_file(path, format)?;
    super::read(&history, kind).map_err(|e| e.in_file(path))
}

/// The fast path alone, for tests that compare it with the general reader.
pub fn read_fast<R: BufRead>(input: R, kind: Kind) -> Option<TxnHistory> {
    fast(input, kind).ok()
}
