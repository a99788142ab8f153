//! A fast path for the common shape of a history line: one flat JSON object whose
//! values are integers, `null`, booleans, strings without escapes, or flat arrays
//! of those. It recognises exactly that and declines (`None`) anything else, which
//! then goes through serde_json, so every other input and every error message is
//! serde_json's. On a 1M-op history this makes parsing several times cheaper.

use std::borrow::Cow;

use super::jsonl_line::{RawEvent, RawProcess};
use crate::value::{RawKey, Value};

struct Cursor<'a> {
    t: &'a str,
    s: &'a [u8],
    i: usize,
}

/// A scalar or flat array as read.
enum Item<'a> {
    Int(i64),
    Str(&'a str),
    Value(Value),
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.ws();
        (self.s.get(self.i) == Some(&b)).then(|| self.i += 1)
    }

    fn string(&mut self) -> Option<&'a str> {
        self.ws();
        if self.s.get(self.i) != Some(&b'"') {
            return None;
        }
        let start = self.i + 1;
        let len = self.s[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if self.s[start + len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        // Cut at ASCII quotes, so on character boundaries.
        self.t.get(start..start + len)
    }

    fn int(&mut self) -> Option<i64> {
        let negative = self.s.get(self.i) == Some(&b'-');
        if negative {
            self.i += 1;
        }
        let first = self.i;
        // Accumulate negatively so i64::MIN fits; overflow declines.
        let mut n: i64 = 0;
        while let Some(&b) = self.s.get(self.i) {
            if !b.is_ascii_digit() {
                break;
            }
            n = n.checked_mul(10)?.checked_sub((b - b'0') as i64)?;
            self.i += 1;
        }
        let digits = self.i - first;
        if digits == 0 || (digits > 1 && self.s[first] == b'0') {
            return None;
        }
        if matches!(self.s.get(self.i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        if negative {
            // serde_json reads `-0` as a float; leave it to serde_json.
            (n != 0).then_some(n)
        } else {
            n.checked_neg()
        }
    }

    fn word(&mut self, w: &[u8]) -> Option<()> {
        self.s[self.i..].starts_with(w).then(|| self.i += w.len())
    }

    fn scalar(&mut self) -> Option<Item<'a>> {
        self.ws();
        match *self.s.get(self.i)? {
            b'"' => self.string().map(Item::Str),
            b'n' => self.word(b"null").map(|_| Item::Value(Value::Null)),
            b't' => self.word(b"true").map(|_| Item::Value(Value::Bool(true))),
            b'f' => self.word(b"false").map(|_| Item::Value(Value::Bool(false))),
            b'-' | b'0'..=b'9' => self.int().map(Item::Int),
            _ => None,
        }
    }

    fn item(&mut self) -> Option<Item<'a>> {
        self.ws();
        if self.s.get(self.i) != Some(&b'[') {
            return self.scalar();
        }
        self.i += 1;
        let mut list = Vec::new();
        if self.eat(b']').is_some() {
            return Some(Item::Value(Value::List(list.into())));
        }
        loop {
            list.push(into_value(self.scalar()?));
            if self.eat(b',').is_none() {
                self.eat(b']')?;
                return Some(Item::Value(Value::List(list.into())));
            }
        }
    }
}

fn into_value(item: Item<'_>) -> Value {
    match item {
        Item::Int(i) => Value::Int(i),
        Item::Str(s) => Value::Str(s.into()),
        Item::Value(v) => v,
    }
}

/// The event on `line`, if it has the common shape; `None` means "ask serde_json".
pub(crate) fn parse(line: &str) -> Option<RawEvent<'_>> {
    let mut c = Cursor {
        t: line,
        s: line.as_bytes(),
        i: 0,
    };
    c.eat(b'{')?;
    let (mut kind, mut process, mut f) = (None, None, None);
    let (mut key, mut value, mut time, mut node, mut error) = (None, None, None, None, None);
    if c.eat(b'}').is_none() {
        loop {
            let name = c.string()?;
            c.eat(b':')?;
            let item = c.item()?;
            // A repeated field is an error serde_json words better.
            let fresh = match (name, item) {
                ("type", Item::Str(s)) => kind.replace(s).is_none(),
                ("process", Item::Int(p)) => process.replace(RawProcess::Int(p)).is_none(),
                ("process", Item::Str(s)) => process
                    .replace(RawProcess::Name(Cow::Borrowed(s)))
                    .is_none(),
                ("f", Item::Str(s)) => f.replace(s).is_none(),
                ("key", Item::Int(k)) => key.replace(Some(RawKey::Int(k))).is_none(),
                ("key", Item::Str(s)) => key.replace(Some(RawKey::Str(Cow::Borrowed(s)))).is_none(),
                ("key", Item::Value(Value::Null)) => key.replace(None).is_none(),
                ("value", item) => value.replace(into_value(item)).is_none(),
                ("time", Item::Int(t)) => time.replace(Some(t)).is_none(),
                ("time", Item::Value(Value::Null)) => time.replace(None).is_none(),
                ("node", Item::Str(s)) => node.replace(Some(Cow::Borrowed(s))).is_none(),
                ("node", Item::Value(Value::Null)) => node.replace(None).is_none(),
                ("error", Item::Str(s)) => error.replace(Some(Cow::Borrowed(s))).is_none(),
                ("error", Item::Value(Value::Null)) => error.replace(None).is_none(),
                ("type" | "process" | "f" | "key" | "time" | "node" | "error", _) => false,
                // Other fields are ignored, as serde does.
                _ => true,
            };
            if !fresh {
                return None;
            }
            if c.eat(b',').is_none() {
                c.eat(b'}')?;
                break;
            }
        }
    }
    c.ws();
    if c.i != c.s.len() {
        return None;
    }
    Some(RawEvent {
        kind: Cow::Borrowed(kind?),
        process: process?,
        f: Cow::Borrowed(f?),
        key: key.flatten(),
        value: value.unwrap_or_default(),
        time: time.flatten(),
        node: node.flatten(),
        error: error.flatten(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path and serde_json agree wherever the fast path answers.
    fn same(line: &str) {
        let fast = parse(line);
        let slow: Result<RawEvent, _> = serde_json::from_str(line);
        match (fast, slow) {
            (Some(a), Ok(b)) => {
                assert_eq!(a.kind, b.kind, "{line}");
                assert_eq!(a.f, b.f, "{line}");
                assert_eq!(a.value, b.value, "{line}");
                assert_eq!(a.time, b.time, "{line}");
                assert_eq!(a.node, b.node, "{line}");
                assert_eq!(a.error, b.error, "{line}");
                assert_eq!(format!("{:?}", a.key), format!("{:?}", b.key), "{line}");
                assert_eq!(
                    format!("{:?}", a.process),
                    format!("{:?}", b.process),
                    "{line}"
                );
            }
            (None, _) => {}
            (Some(_), Err(e)) => panic!("fast path accepted what serde_json rejects ({e}): {line}"),
        }
    }

    #[test]
    fn agrees_with_serde_json_on_common_and_odd_lines() {
        for line in [
            r#"{"type":"invoke","process":5,"f":"cas","key":"k9","value":[3,6],"time":2000}"#,
            r#"{"type":"ok","process":0,"f":"read","key":"k261","value":null,"time":9000}"#,
            r#" { "type" : "info" , "process" : "nemesis" , "f" : "kill" , "value" : ["n1","n2"] } "#,
            r#"{"type":"ok","process":1,"f":"write","key":7,"value":-3,"node":"n2","extra":true}"#,
            r#"{"type":"info","process":1,"f":"write","value":1,"error":"timeout","time":null}"#,
            r#"{"type":"ok","process":1,"f":"read","value":[]}"#,
            r#"{"type":"ok","process":1,"f":"read","value":[-9223372036854775808,9223372036854775807,0,-7]}"#,
            // Any integer is a process (Knossos-converted histories use -1).
            r#"{"type":"ok","process":-1,"f":"read"}"#,
        ] {
            assert!(
                parse(line).is_some(),
                "fast path declined a common line: {line}"
            );
            same(line);
        }
        // Shapes the fast path leaves to serde_json.
        for line in [
            r#"{"type":"ok","process":1,"f":"read","value":1.5}"#,
            r#"{"type":"ok","process":1,"f":"read","value":"a\"b"}"#,
            r#"{"type":"ok","process":1,"f":"read","value":{"a":1}}"#,
            r#"{"type":"ok","process":1,"f":"read","value":[[1]]}"#,
            r#"{"type":"ok","type":"ok","process":1,"f":"read"}"#,
            r#"{"type":"ok","process":1,"f":"read","value":01}"#,
            r#"{"type":"ok","process":1,"f":"read"} x"#,
            r#"{"type":"ok","process":1}"#,
            r#"{"type":"ok","process":1,"f":"read","value":99999999999999999999}"#,
            r#"{"type":"ok","process":1,"f":"read","value":9223372036854775808}"#,
            r#"{"type":"ok","process":1,"f":"read","value":-}"#,
            r#"{"type":"ok","process":1,"f":"read","value":-0}"#,
        ] {
            assert!(parse(line).is_none(), "fast path should decline: {line}");
            same(line);
        }
    }
}
