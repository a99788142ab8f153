//! One line of the JSON Lines format, read into an event that borrows the line's
//! text. The common shape takes the fast path (`jsonl_fast`); every other line goes
//! through serde_json here, and its errors name the line and the field.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::ReadError;
use crate::value::{RawKey, Value};

/// Longest error message serde_json may give before it is cut (it quotes the input).
const MESSAGE_CHARS: usize = 200;

/// An event as its line states it.
#[derive(Debug)]
pub(crate) struct RawEvent<'a> {
    pub(crate) kind: Cow<'a, str>,
    pub(crate) process: RawProcess<'a>,
    pub(crate) f: Cow<'a, str>,
    pub(crate) key: Option<RawKey<'a>>,
    pub(crate) value: Value,
    pub(crate) time: Option<i64>,
    pub(crate) node: Option<Cow<'a, str>>,
    pub(crate) error: Option<Cow<'a, str>>,
}

/// The `process` field: any integer, or a name (only `"nemesis"` is valid).
#[derive(Debug)]
pub(crate) enum RawProcess<'a> {
    Int(i64),
    Name(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for RawProcess<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = RawProcess<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`process` to be an integer or \"nemesis\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawProcess::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(RawProcess::Int)
                    .map_err(|_| E::custom(format!("`process` {v} is larger than 2^63-1")))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RawProcess::Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawProcess::Name(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// A string field, borrowing the line's text when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// The fields an event reads; any other field is ignored.
const FIELDS: [&str; 8] = [
    "type", "process", "f", "key", "value", "time", "node", "error",
];

/// A field name: its index in [`FIELDS`], or `None` for an ignored field.
struct FieldName(Option<usize>);

impl<'de> Deserialize<'de> for FieldName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl Visitor<'_> for Visit {
            type Value = FieldName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldName, E> {
                Ok(FieldName(FIELDS.iter().position(|f| *f == v)))
            }
        }
        d.deserialize_identifier(Visit)
    }
}

/// Reads a [`RawEvent`] from a JSON object, keeping in `field` the name of the
/// field being read, so that an error can name it.
struct EventSeed<'c> {
    field: &'c Cell<Option<&'static str>>,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = RawEvent<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawEvent<'de>, D::Error> {
        // `any`, not `struct`: serde would read a struct from an array too.
        d.deserialize_any(self)
    }
}

/// Reads a field's value into `slot`, refusing a second one.
fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    name: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = RawEvent<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<RawEvent<'de>, A::Error> {
        Err(de::Error::custom("expected a JSON object, found an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEvent<'de>, A::Error> {
        let (mut kind, mut process, mut f) = (None::<Text>, None, None::<Text>);
        let (mut key, mut value, mut time) = (None::<Option<RawKey>>, None, None::<Option<i64>>);
        let (mut node, mut error) = (None::<Option<Text>>, None::<Option<Text>>);
        while let Some(FieldName(index)) = map.next_key()? {
            let Some(index) = index else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let name = FIELDS[index];
            self.field.set(Some(name));
            match index {
                0 => once(&mut map, &mut kind, name)?,
                1 => once(&mut map, &mut process, name)?,
                2 => once(&mut map, &mut f, name)?,
                3 => once(&mut map, &mut key, name)?,
                4 => once(&mut map, &mut value, name)?,
                5 => once(&mut map, &mut time, name)?,
                6 => once(&mut map, &mut node, name)?,
                _ => once(&mut map, &mut error, name)?,
            }
            self.field.set(None);
        }
        let missing = |name: &'static str| {
            self.field.set(Some(name));
            de::Error::missing_field(name)
        };
        Ok(RawEvent {
            kind: kind.ok_or_else(|| missing("type"))?.0,
            process: process.ok_or_else(|| missing("process"))?,
            f: f.ok_or_else(|| missing("f"))?.0,
            key: key.flatten(),
            value: value.unwrap_or_default(),
            time: time.flatten(),
            node: node.flatten().map(|t| t.0),
            error: error.flatten().map(|t| t.0),
        })
    }
}

impl<'de> Deserialize<'de> for RawEvent<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let field = Cell::new(None);
        EventSeed { field: &field }.deserialize(d)
    }
}

/// Parses one line; `Ok(None)` for a blank line.
pub(crate) fn parse_line(text: &str, line: u64) -> Result<Option<RawEvent<'_>>, ReadError> {
    let trimmed = text.trim_end_matches('\r');
    if trimmed.trim().is_empty() {
        return Ok(None);
    }
    if let Some(ev) = super::jsonl_fast::parse(trimmed) {
        return Ok(Some(ev));
    }
    parse_with_serde(trimmed, line).map(Some)
}

/// Parses a line through serde_json, as the fast path declined it.
fn parse_with_serde(trimmed: &str, line: u64) -> Result<RawEvent<'_>, ReadError> {
    let field = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(trimmed);
    EventSeed { field: &field }
        .deserialize(&mut de)
        .and_then(|ev| de.end().map(|()| ev))
        .map_err(|e| serde_error(&e, line, field.get()))
        .and_then(|ev| {
            super::jsonl_numbers::check_exact(trimmed, &ev.value)
                .map_err(|m| ReadError::at(line, Some("value"), m))?;
            Ok(ev)
        })
}

/// For tests: `line` read by the fast path (`None` when it declines) and by
/// serde_json alone (`Err` with the message when refused), each event as text.
pub fn both_paths(line: &str) -> (Option<String>, Result<String, String>) {
    let fast = super::jsonl_fast::parse(line).map(|ev| format!("{ev:?}"));
    let serde = parse_with_serde(line, 1)
        .map(|ev| format!("{ev:?}"))
        .map_err(|e| e.message);
    (fast, serde)
}

/// serde_json's error as a [`ReadError`]: its column is within the line.
fn serde_error(e: &serde_json::Error, line: u64, field: Option<&'static str>) -> ReadError {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let message = text.strip_suffix(&position).unwrap_or(&text);
    let message = if message == "recursion limit exceeded" {
        // serde_json's recursion limit is this bound (a test holds them together).
        format!("nesting deeper than {}", super::MAX_DEPTH)
    } else {
        super::cut(message, MESSAGE_CHARS)
    };
    ReadError::at(line, field, format!("{message} (column {})", e.column()))
}
