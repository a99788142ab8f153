//! Jepsen EDN histories: one op map per line, e.g.
//! `{:process 9, :type :invoke, :f :append, :key "0", :value "x 9 0 y"}`.
//!
//! Only the EDN that Jepsen histories use is understood: maps, vectors, lists,
//! strings, integers, `nil`, booleans and keywords.

use std::io::BufRead;

use super::{quote, MAX_DEPTH};
use crate::error::ReadError;
use crate::history::{EventKind, EventRecord, History, HistoryBuilder, KeyRef, Process};
use crate::value::Value;

/// A parsed EDN value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    Str(String),
    Keyword(String),
    Symbol(String),
    Vector(Vec<Edn>),
    Map(Vec<(Edn, Edn)>),
}

impl Edn {
    /// A short EDN rendering for error messages (`-1`, `:foo`, `"x"`, `a vector`).
    pub(crate) fn describe(&self) -> String {
        match self {
            Edn::Nil => "nil".into(),
            Edn::Bool(b) => b.to_string(),
            Edn::Int(i) => i.to_string(),
            Edn::Str(s) => {
                let mut out = String::from("\"");
                for c in quote(s).chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\t' => out.push_str("\\t"),
                        '\r' => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
                out.push('"');
                out
            }
            Edn::Keyword(k) => format!(":{}", quote(k)),
            Edn::Symbol(s) => quote(s),
            Edn::Vector(_) => "a vector".into(),
            Edn::Map(_) => "a map".into(),
        }
    }

    /// The history value this EDN stands for; keywords become their names.
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Edn::Nil => Value::Null,
            Edn::Bool(b) => Value::Bool(*b),
            Edn::Int(i) => Value::Int(*i),
            Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s) => Value::Str(s.as_str().into()),
            Edn::Vector(items) => Value::List(items.iter().map(Edn::to_value).collect()),
            Edn::Map(entries) => {
                let mut out: Vec<(Box<str>, Value)> = entries
                    .iter()
                    .map(|(k, v)| {
                        let name = match k {
                            Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s) => s.clone(),
                            other => other.describe(),
                        };
                        (name.into_boxed_str(), v.to_value())
                    })
                    .collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Map(out.into_boxed_slice())
            }
        }
    }
}

/// Why a line is not EDN, and in which field of the op map when known.
#[derive(Debug)]
pub(crate) struct EdnError {
    pub(crate) message: String,
    pub(crate) field: Option<&'static str>,
}

/// The op map fields an error can name.
const FIELDS: &[&str] = &[
    ":type", ":process", ":f", ":key", ":value", ":time", ":error",
];

/// A map or vector being read: what it holds so far.
enum Open {
    /// Entries, and a key still waiting for its value.
    Map(Vec<(Edn, Edn)>, Option<Edn>),
    /// Items, and the byte that opened it (`[` or `(`).
    Seq(Vec<Edn>, u8),
}

/// A cursor over one line of EDN text.
pub(crate) struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Parser {
            text: text.as_bytes(),
            pos: 0,
        }
    }

    fn skip_ws(&mut self) {
        while let Some(&b) = self.text.get(self.pos) {
            if b.is_ascii_whitespace() || b == b',' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// True when only whitespace is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.text.len()
    }

    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(&b) = self.text.get(self.pos) {
            if b.is_ascii_whitespace()
                || matches!(b, b',' | b'{' | b'}' | b'[' | b']' | b'(' | b')' | b'"')
            {
                break;
            }
            self.pos += 1;
        }
        // Token boundaries are ASCII, so the slice is valid UTF-8.
        std::str::from_utf8(&self.text[start..self.pos]).unwrap_or("")
    }

    /// Parses the next value. Iterative, with an explicit stack of open maps and
    /// vectors bounded by [`MAX_DEPTH`], so no input can exhaust the thread's stack.
    pub(crate) fn value(&mut self) -> Result<Edn, EdnError> {
        let mut open: Vec<Open> = Vec::new();
        self.value_in(&mut open).map_err(|message| {
            let message = format!("{message} (column {})", self.pos + 1);
            // The op map field the error is in, when the line is an op map.
            let field = match open.first() {
                Some(Open::Map(_, Some(Edn::Keyword(k)))) => {
                    FIELDS.iter().copied().find(|f| f[1..] == **k)
                }
                _ => None,
            };
            EdnError { message, field }
        })
    }

    fn value_in(&mut self, open: &mut Vec<Open>) -> Result<Edn, String> {
        loop {
            self.skip_ws();
            let Some(&b) = self.text.get(self.pos) else {
                return Err(match open.last() {
                    None => "unexpected end of line".into(),
                    Some(Open::Map(_, Some(_))) => "map has a key without a value".into(),
                    Some(Open::Map(_, None)) => "map is not closed with `}`".into(),
                    Some(Open::Seq(_, opener)) => format!("`{}` is not closed", *opener as char),
                });
            };
            let done = match (b, open.last_mut()) {
                (b'}', Some(Open::Map(entries, None))) => {
                    self.pos += 1;
                    let map = Edn::Map(std::mem::take(entries));
                    open.pop();
                    map
                }
                (b'}', Some(Open::Map(_, Some(_)))) => {
                    return Err("map has a key without a value".into())
                }
                (b']', Some(Open::Seq(items, b'['))) | (b')', Some(Open::Seq(items, b'('))) => {
                    self.pos += 1;
                    let vector = Edn::Vector(std::mem::take(items));
                    open.pop();
                    vector
                }
                (b'}' | b']' | b')', _) => return Err(format!("unexpected `{}`", b as char)),
                (b'{' | b'[' | b'(', _) => {
                    if open.len() >= MAX_DEPTH {
                        return Err(format!("nesting deeper than {MAX_DEPTH}"));
                    }
                    self.pos += 1;
                    open.push(if b == b'{' {
                        Open::Map(Vec::new(), None)
                    } else {
                        Open::Seq(Vec::new(), b)
                    });
                    continue;
                }
                _ => self.atom(b)?,
            };
            match open.last_mut() {
                None => return Ok(done),
                Some(Open::Seq(items, _)) => items.push(done),
                Some(Open::Map(entries, waiting)) => match waiting.take() {
                    None => *waiting = Some(done),
                    Some(key) => entries.push((key, done)),
                },
            }
        }
    }

    /// A string, keyword, integer, `nil`, boolean or symbol starting with `b`.
    fn atom(&mut self, b: u8) -> Result<Edn, String> {
        match b {
            b'"' => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.text.get(self.pos) {
                        None => return Err("string is not closed".into()),
                        Some(b'"') => {
                            self.pos += 1;
                            break;
                        }
                        Some(b'\\') => {
                            let esc = self.text.get(self.pos + 1).copied();
                            out.push(match esc {
                                Some(b'n') => b'\n',
                                Some(b't') => b'\t',
                                Some(b'r') => b'\r',
                                Some(b'"') => b'"',
                                Some(b'\\') => b'\\',
                                _ => return Err("unknown escape in string".into()),
                            });
                            self.pos += 2;
                        }
                        Some(&c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                    }
                }
                String::from_utf8(out)
                    .map(Edn::Str)
                    .map_err(|_| "string is not valid UTF-8".into())
            }
            b':' => {
                self.pos += 1;
                let name = self.token();
                if name.is_empty() {
                    return Err("empty keyword".into());
                }
                Ok(Edn::Keyword(name.to_string()))
            }
            _ => {
                let tok = self.token();
                match tok {
                    "nil" => Ok(Edn::Nil),
                    "true" => Ok(Edn::Bool(true)),
                    "false" => Ok(Edn::Bool(false)),
                    _ => {
                        let digits = tok.strip_suffix('N').unwrap_or(tok);
                        if let Ok(i) = digits.parse::<i64>() {
                            Ok(Edn::Int(i))
                        } else if tok.is_empty() {
                            Err(format!("unexpected `{}`", b as char))
                        } else if tok.as_bytes()[0].is_ascii_digit()
                            || tok.starts_with('-') && tok.len() > 1
                        {
                            Err(format!(
                                "`{}` is not a number this reader understands (64-bit integers only)",
                                quote(tok)
                            ))
                        } else {
                            Ok(Edn::Symbol(tok.to_string()))
                        }
                    }
                }
            }
        }
    }
}

fn field<'e>(entries: &'e [(Edn, Edn)], name: &str) -> Option<&'e Edn> {
    entries
        .iter()
        .find(|(k, _)| matches!(k, Edn::Keyword(n) if n == name))
        .map(|(_, v)| v)
}

fn name_of(e: &Edn) -> Option<&str> {
    match e {
        Edn::Keyword(s) | Edn::Str(s) | Edn::Symbol(s) => Some(s),
        _ => None,
    }
}

/// Reads a Jepsen EDN history (one op map per line).
pub fn read<R: BufRead>(input: R) -> Result<History, ReadError> {
    let mut builder = HistoryBuilder::new();
    for line in super::numbered_lines(input) {
        let (n, line) = line?;
        let mut parser = Parser::new(&line);
        if parser.at_end() {
            continue;
        }
        let edn = parser
            .value()
            .map_err(|e| ReadError::at(n, e.field, e.message))?;
        if !parser.at_end() {
            return Err(ReadError::at(n, None, "text after the op map"));
        }
        let Edn::Map(entries) = edn else {
            return Err(ReadError::at(
                n,
                None,
                "expected an op map `{:process .., :type .., :f ..}`",
            ));
        };
        let kind = field(&entries, "type")
            .and_then(name_of)
            .and_then(EventKind::parse)
            .ok_or_else(|| {
                ReadError::at(
                    n,
                    Some(":type"),
                    "missing or not one of :invoke, :ok, :fail, :info",
                )
            })?;
        let process = match field(&entries, "process") {
            Some(Edn::Int(p)) => Process::Client(*p),
            Some(Edn::Keyword(k)) if k == "nemesis" => Process::Nemesis,
            other => {
                return Err(ReadError::at(
                    n,
                    Some(":process"),
                    match other {
                        None => "missing; expected an integer or :nemesis".to_string(),
                        Some(v) => format!("expected an integer or :nemesis, got {}", v.describe()),
                    },
                ))
            }
        };
        let f = field(&entries, "f")
            .and_then(name_of)
            .ok_or_else(|| ReadError::at(n, Some(":f"), "missing or not a keyword"))?;
        let key = match field(&entries, "key") {
            None | Some(Edn::Nil) => None,
            Some(Edn::Int(i)) => Some(KeyRef::Int(*i)),
            Some(Edn::Str(s)) | Some(Edn::Keyword(s)) => Some(KeyRef::Str(s.as_str())),
            Some(other) => {
                return Err(ReadError::at(
                    n,
                    Some(":key"),
                    format!("expected a string or integer, got {}", other.describe()),
                ))
            }
        };
        let value = field(&entries, "value")
            .map(Edn::to_value)
            .unwrap_or_default();
        let time = match field(&entries, "time") {
            Some(Edn::Int(t)) => Some(*t),
            _ => None,
        };
        let error = field(&entries, "error").map(|e| e.to_value().to_string());
        builder
            .push(EventRecord {
                kind,
                process,
                f,
                key,
                value,
                time,
                node: None,
                error: error.as_deref(),
                line: n,
            })
            .map_err(|mut e| {
                // Pairing names fields as JSONL spells them; say them as this format does.
                e.field = e
                    .field
                    .map(|f| FIELDS.iter().copied().find(|k| k[1..] == *f).unwrap_or(f));
                e
            })?;
    }
    Ok(builder.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_values() {
        let mut p = Parser::new(r#"{:a [1 -2 nil], "s\"q" :kw, :m {:x true}}"#);
        let v = p.value().unwrap();
        assert!(p.at_end());
        let Edn::Map(entries) = v else {
            panic!("not a map")
        };
        assert_eq!(
            entries[0].1,
            Edn::Vector(vec![Edn::Int(1), Edn::Int(-2), Edn::Nil])
        );
        assert_eq!(entries[1].0, Edn::Str("s\"q".into()));
    }

    #[test]
    fn reads_ops_and_reports_bad_lines() {
        let text = "{:process 0, :type :invoke, :f :put, :key \"1\", :value \"a\"}\n{:process 0, :type :ok, :f :put, :key \"1\", :value \"a\"}\n";
        let h = read(text.as_bytes()).unwrap();
        assert_eq!(h.ops.len(), 1);
        assert_eq!(h.ops[0].input, Value::Str("a".into()));

        let e = read("{:process 0, :type :invoke, :f :put\n".as_bytes()).unwrap_err();
        assert_eq!(e.line, 1);
        let e = read("{:process 0, :type :bogus, :f :put}\n".as_bytes()).unwrap_err();
        assert_eq!(e.field, Some(":type"));
        let e = read("{:process 0, :type :ok, :f :put}\n".as_bytes()).unwrap_err();
        assert_eq!((e.line, e.field), (1, Some(":process")));
    }
}
