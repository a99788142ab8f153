//! Jepsen EDN histories: one op map per line, e.g.
//! `{:process 9, :type :invoke, :f :append, :key "0", :value "x 9 0 y"}`.
//!
//! Only the EDN that Jepsen histories use is understood: maps, vectors, lists,
//! strings, integers, `nil`, booleans and keywords.

use std::io::BufRead;

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
    /// A short EDN rendering for error messages (`-1`, `:foo`, `"x"`, `[...]`).
    pub(crate) fn describe(&self) -> String {
        match self {
            Edn::Nil => "nil".into(),
            Edn::Bool(b) => b.to_string(),
            Edn::Int(i) => i.to_string(),
            Edn::Str(s) => format!("{s:?}"),
            Edn::Keyword(k) => format!(":{k}"),
            Edn::Symbol(s) => s.clone(),
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

    fn err(&self, what: impl Into<String>) -> String {
        format!("{} (column {})", what.into(), self.pos + 1)
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

    /// Parses the next value.
    pub(crate) fn value(&mut self) -> Result<Edn, String> {
        self.skip_ws();
        let Some(&b) = self.text.get(self.pos) else {
            return Err(self.err("unexpected end of line"));
        };
        match b {
            b'{' => {
                self.pos += 1;
                let mut entries = Vec::new();
                loop {
                    self.skip_ws();
                    match self.text.get(self.pos) {
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Edn::Map(entries));
                        }
                        None => return Err(self.err("map is not closed with `}`")),
                        _ => {
                            let k = self.value()?;
                            self.skip_ws();
                            if matches!(self.text.get(self.pos), Some(b'}') | None) {
                                return Err(self.err("map has a key without a value"));
                            }
                            let v = self.value()?;
                            entries.push((k, v));
                        }
                    }
                }
            }
            b'[' | b'(' => {
                let close = if b == b'[' { b']' } else { b')' };
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    match self.text.get(self.pos) {
                        Some(&c) if c == close => {
                            self.pos += 1;
                            return Ok(Edn::Vector(items));
                        }
                        None => return Err(self.err(format!("`{}` is not closed", b as char))),
                        _ => items.push(self.value()?),
                    }
                }
            }
            b'"' => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.text.get(self.pos) {
                        None => return Err(self.err("string is not closed")),
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
                                _ => return Err(self.err("unknown escape in string")),
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
                    .map_err(|_| self.err("string is not valid UTF-8"))
            }
            b'}' | b']' | b')' => Err(self.err(format!("unexpected `{}`", b as char))),
            b':' => {
                self.pos += 1;
                let name = self.token();
                if name.is_empty() {
                    return Err(self.err("empty keyword"));
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
                            Err(self.err(format!("unexpected `{}`", b as char)))
                        } else if tok.as_bytes()[0].is_ascii_digit()
                            || tok.starts_with('-') && tok.len() > 1
                        {
                            Err(self
                                .err(format!("`{tok}` is not an integer this reader understands")))
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
    for (i, line) in input.lines().enumerate() {
        let n = i as u64 + 1;
        let line = line.map_err(|e| ReadError::at(n, None, format!("cannot read: {e}")))?;
        let mut parser = Parser::new(&line);
        if parser.at_end() {
            continue;
        }
        let edn = parser.value().map_err(|m| ReadError::at(n, None, m))?;
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
        builder.push(EventRecord {
            kind,
            process,
            f,
            key,
            value,
            time,
            node: None,
            error: error.as_deref(),
            line: n,
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
    }
}
