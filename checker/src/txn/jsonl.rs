//! A fast reader of JSONL transactional histories straight into a
//! [`TxnHistory`], without building a generic history first. It takes only the
//! common shape (integer or string keys and values, well-paired events); on
//! anything else it gives up and [`read_file`] reads the file the general way,
//! which also words every error.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use rayon::prelude::*;

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

impl Ids {
    /// The id of a value another table interned.
    fn id_of(&mut self, v: &Value) -> u32 {
        match v {
            Value::Int(i) => self.id(&Scalar::Int(*i)),
            Value::Str(t) => self.id(&Scalar::Str(Cow::Borrowed(t))),
            _ => unreachable!("only integers and strings are interned"),
        }
    }
}

/// What an event line is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind2 {
    Invoke,
    Ok,
    Info,
    Fail,
    Nemesis,
}

/// One event of a chunk: its line within the chunk, kind, process and micro-ops
/// (`ok`: with results; `invoke`: reads unknown; others: none).
struct Ev {
    line: u64,
    kind: Kind2,
    process: i64,
    mops: (u32, u32),
}

/// A block of lines parsed on its own, with its own interning tables.
struct Chunk {
    events: Vec<Ev>,
    mops: Vec<Mop>,
    elems: Vec<u32>,
    keys: Ids,
    values: Ids,
    lines: u64,
}

impl Chunk {
    fn mops(&mut self, raw: &[RawMop], known: bool, kind: Kind) -> Result<(), GiveUp> {
        let write = match kind {
            Kind::ListAppend => "append",
            Kind::RwRegister => "w",
        };
        for (f, k, arg) in raw {
            let key = self.keys.id(k);
            if f == write {
                let Arg::One(v) = arg else { return Err(GiveUp) };
                let value = self.values.id(v);
                self.mops.push(Mop::Write { key, value });
                continue;
            }
            if f != "r" {
                return Err(GiveUp);
            }
            let start = self.elems.len() as u32;
            if known {
                match (kind, arg) {
                    (_, Arg::Null) => {}
                    (Kind::ListAppend, Arg::List(items)) => {
                        for e in items {
                            let id = self.values.id(e);
                            self.elems.push(id);
                        }
                    }
                    (Kind::RwRegister, Arg::One(v)) => {
                        let id = self.values.id(v);
                        self.elems.push(id);
                    }
                    _ => return Err(GiveUp),
                }
            }
            self.mops.push(Mop::Read {
                key,
                start,
                len: self.elems.len() as u32 - start,
                known,
            });
        }
        Ok(())
    }

    fn line(&mut self, text: &[u8], number: u64, kind: Kind) -> Result<(), GiveUp> {
        let line: Line = serde_json::from_slice(text).map_err(|_| GiveUp)?;
        let process = match line.process {
            Process::Nemesis => {
                self.events.push(Ev {
                    line: number,
                    kind: Kind2::Nemesis,
                    process: 0,
                    mops: (0, 0),
                });
                return Ok(());
            }
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
        let event = match line.kind.as_ref() {
            "invoke" => Kind2::Invoke,
            "ok" => Kind2::Ok,
            "info" => Kind2::Info,
            "fail" => Kind2::Fail,
            _ => return Err(GiveUp),
        };
        let start = self.mops.len() as u32;
        if matches!(event, Kind2::Invoke | Kind2::Ok) {
            self.mops(&raw, event == Kind2::Ok, kind)?;
        }
        self.events.push(Ev {
            line: number,
            kind: event,
            process,
            mops: (start, self.mops.len() as u32),
        });
        Ok(())
    }
}

fn parse_chunk(text: &[u8], kind: Kind) -> Result<Chunk, GiveUp> {
    let mut c = Chunk {
        events: Vec::with_capacity(text.len() / 100),
        mops: Vec::new(),
        elems: Vec::new(),
        keys: Ids::default(),
        values: Ids::default(),
        lines: 0,
    };
    for line in text.split_inclusive(|&b| b == b'\n') {
        c.lines += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        c.line(line, c.lines, kind)?;
    }
    Ok(c)
}

/// Cuts `text` into blocks of about `size` bytes, each ending with a line.
fn blocks(text: &[u8], size: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let cut = if rest.len() <= size {
            rest.len()
        } else {
            rest[size..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| size + i + 1)
        };
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

/// Parses blocks on all cores, then pairs the events in order on one.
fn fast<R: Read>(mut input: R, kind: Kind) -> Result<TxnHistory, GiveUp> {
    let mut text = Vec::new();
    input.read_to_end(&mut text).map_err(|_| GiveUp)?;
    let chunks: Vec<Chunk> = blocks(&text, 4 << 20)
        .into_par_iter()
        .map(|b| parse_chunk(b, kind))
        .collect::<Result<_, _>>()?;
    drop(text);
    let mut out = TxnHistory {
        kind,
        ..TxnHistory::default()
    };
    let (mut keys, mut values) = (Ids::default(), Ids::default());
    // Per process: (txn index, the invoke's micro-ops, already in global ids).
    let mut pending: HashMap<i64, (usize, Vec<Mop>), MixBuild> = HashMap::default();
    let mut position = 0u64;
    let mut first_line = 0u64;
    for c in chunks {
        let kmap: Vec<u32> = c.keys.values.iter().map(|v| keys.id_of(v)).collect();
        let vmap: Vec<u32> = c.values.values.iter().map(|v| values.id_of(v)).collect();
        let remap = |m: &Mop, elems: &mut Vec<u32>| match *m {
            Mop::Write { key, value } => Mop::Write {
                key: kmap[key as usize],
                value: vmap[value as usize],
            },
            Mop::Read {
                key,
                start,
                len,
                known,
            } => {
                let at = elems.len() as u32;
                elems.extend(
                    c.elems[start as usize..(start + len) as usize]
                        .iter()
                        .map(|&v| vmap[v as usize]),
                );
                Mop::Read {
                    key: kmap[key as usize],
                    start: at,
                    len,
                    known,
                }
            }
        };
        for ev in &c.events {
            let here = position;
            position += 1;
            let number = first_line + ev.line;
            let local = &c.mops[ev.mops.0 as usize..ev.mops.1 as usize];
            match ev.kind {
                Kind2::Nemesis => {}
                Kind2::Invoke => {
                    if pending.contains_key(&ev.process) {
                        return Err(GiveUp);
                    }
                    let mops: Vec<Mop> = local
                        .iter()
                        .map(|m| remap(m, &mut out.read_elems))
                        .collect();
                    pending.insert(ev.process, (out.txns.len(), mops));
                    out.txns.push(Txn {
                        process: ev.process,
                        status: Status::Info,
                        mops: (0, 0),
                        call: here,
                        ret: NEVER,
                        line: number,
                        ret_line: None,
                    });
                }
                done => {
                    let (t, invoked) = pending.remove(&ev.process).ok_or(GiveUp)?;
                    let start = out.mops.len() as u32;
                    if done == Kind2::Ok {
                        for m in local {
                            let m = remap(m, &mut out.read_elems);
                            out.mops.push(m);
                        }
                    } else {
                        out.mops.extend(invoked);
                    }
                    let txn = &mut out.txns[t];
                    txn.mops = (start, out.mops.len() as u32);
                    txn.ret_line = Some(number);
                    match done {
                        Kind2::Ok => {
                            txn.status = Status::Ok;
                            txn.ret = here;
                        }
                        Kind2::Fail => txn.status = Status::Fail,
                        _ => {}
                    }
                }
            }
        }
        first_line += c.lines;
    }
    // Unfinished invokes are indeterminate, with their invoke's micro-ops.
    let mut open: Vec<(usize, Vec<Mop>)> = pending.drain().map(|(_, v)| v).collect();
    open.sort_by_key(|o| o.0);
    for (t, mops) in open {
        let start = out.mops.len() as u32;
        out.mops.extend(mops);
        out.txns[t].mops = (start, out.mops.len() as u32);
    }
    if out.txns.is_empty()
        || out.mops.len() > u32::MAX as usize / 2
        || out.read_elems.len() > u32::MAX as usize / 2
    {
        return Err(GiveUp);
    }
    out.keys = keys.values;
    out.values = values.values;
    Ok(out)
}

/// Reads a transactional history file: the fast path for JSONL, the general
/// reader for other formats and for whatever the fast path does not take.
pub fn read_file(path: &Path, format: Format, kind: Kind) -> Result<TxnHistory, ReadError> {
    if format == Format::Jsonl {
        if let Ok(file) = std::fs::File::open(path) {
            if let Ok(h) = fast(file, kind) {
                return Ok(h);
            }
        }
    }
    let history = crate::format::read_file(path, format)?;
    super::read(&history, kind).map_err(|e| e.in_file(path))
}

/// The fast path alone, for tests that compare it with the general reader.
pub fn read_fast<R: Read>(input: R, kind: Kind) -> Option<TxnHistory> {
    fast(input, kind).ok()
}
