//! Mutations of a history's bytes, and noise.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

use super::{hostile, Syntax};

/// Deepest nesting a mutation adds: far past the readers' bound of 127.
const MAX_NEST: usize = 3000;

/// Fields to put in an op map a second time, or where they do not belong.
fn extra_fields(syntax: Syntax) -> &'static [&'static str] {
    match syntax {
        Syntax::Json => &[
            "\"type\":\"ok\",",
            "\"process\":-1,",
            "\"process\":\"nemesis\",",
            "\"f\":\"read\",",
            "\"key\":\"k1\",",
            "\"key\":null,",
            "\"value\":[1,2],",
            "\"time\":1e400,",
            "\"node\":\"n1\",",
            "\"error\":\"timeout\",",
            "\"other\":{\"x\":[1]},",
        ],
        Syntax::Edn | Syntax::Log => &[
            ":type :ok, ",
            ":process -1, ",
            ":process :nemesis, ",
            ":f :read, ",
            ":key \"k1\", ",
            ":key nil, ",
            ":value [1 2], ",
            ":time 1.5, ",
            ":error :timeout, ",
            ":other {:x [1]}, ",
        ],
    }
}

/// One change to a history's bytes; indices are taken modulo what is there.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Cut the whole text at a byte.
    Truncate(Index),
    /// Cut one line short at a byte.
    CutLine(Index, Index),
    /// Remove a line.
    DeleteLine(Index),
    /// Repeat a line.
    DuplicateLine(Index),
    /// Exchange two lines.
    SwapLines(Index, Index),
    /// Put lines of another seed (or of itself) before a line.
    Splice {
        other: Index,
        from: Index,
        len: usize,
        at: Index,
    },
    /// Overwrite a byte with any byte, invalid UTF-8 included.
    SetByte(Index, u8),
    /// Insert any bytes.
    InsertBytes(Index, Vec<u8>),
    /// Replace the token around a byte with a hostile one.
    ReplaceToken(Index, Index),
    /// Insert a field right after a `{`: a duplicate, or a wrong one.
    AddField(Index, Index),
    /// Remove the field that follows a separator.
    DeleteField(Index),
    /// Nest the token around a byte in vectors (or maps) `depth` deep.
    Nest(Index, usize, bool),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let i = any::<Index>;
    prop_oneof![
        1 => i().prop_map(Mutation::Truncate),
        1 => (i(), i()).prop_map(|(l, at)| Mutation::CutLine(l, at)),
        1 => i().prop_map(Mutation::DeleteLine),
        1 => i().prop_map(Mutation::DuplicateLine),
        1 => (i(), i()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        1 => (i(), i(), 1usize..40, i()).prop_map(|(other, from, len, at)| Mutation::Splice {
            other,
            from,
            len,
            at
        }),
        1 => (i(), any::<u8>()).prop_map(|(at, b)| Mutation::SetByte(at, b)),
        1 => (i(), vec(any::<u8>(), 1..8)).prop_map(|(at, b)| Mutation::InsertBytes(at, b)),
        3 => (i(), i()).prop_map(|(at, t)| Mutation::ReplaceToken(at, t)),
        2 => (i(), i()).prop_map(|(at, f)| Mutation::AddField(at, f)),
        2 => i().prop_map(Mutation::DeleteField),
        1 => (i(), prop_oneof![1usize..200, 200usize..=MAX_NEST], any::<bool>())
            .prop_map(|(at, depth, map)| Mutation::Nest(at, depth, map)),
    ]
}

/// The byte ranges of `text`'s lines, each with its `\n`.
fn line_ranges(text: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in text.iter().enumerate() {
        if b == b'\n' {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < text.len() {
        out.push((start, text.len()));
    }
    out
}

/// True for bytes that belong to a token (a number, keyword, symbol or literal).
fn in_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-+._:/*?!<>=N".contains(&b) || b >= 0x80
}

/// The token around `at`: a string, or a run of token bytes; empty between tokens.
fn token_at(text: &[u8], at: usize) -> (usize, usize) {
    if text[at] == b'"' {
        let mut end = at + 1;
        while end < text.len() && text[end] != b'"' {
            end += if text[end] == b'\\' { 2 } else { 1 };
        }
        return (at, (end + 1).min(text.len()));
    }
    let (mut start, mut end) = (at, at);
    while start > 0 && in_token(text[start - 1]) {
        start -= 1;
    }
    while end < text.len() && in_token(text[end]) {
        end += 1;
    }
    (start, end)
}

/// Applies `m` to `text`; `seeds` are the other histories a splice may take from.
pub fn apply(text: &mut Vec<u8>, m: &Mutation, seeds: &[String], syntax: Syntax) {
    let lines = line_ranges(text);
    let line = |i: &Index| lines[i.index(lines.len())];
    match m {
        Mutation::Truncate(at) if !text.is_empty() => text.truncate(at.index(text.len())),
        Mutation::CutLine(l, at) if !lines.is_empty() => {
            let (start, end) = line(l);
            let cut = start + at.index(end - start);
            text.drain(cut..end.saturating_sub(1).max(cut));
        }
        Mutation::DeleteLine(l) if !lines.is_empty() => {
            let (start, end) = line(l);
            text.drain(start..end);
        }
        Mutation::DuplicateLine(l) if !lines.is_empty() => {
            let (start, end) = line(l);
            let copy = text[start..end].to_vec();
            text.splice(end..end, copy);
        }
        Mutation::SwapLines(a, b) if !lines.is_empty() => {
            let (mut a, mut b) = (line(a), line(b));
            if a.0 > b.0 {
                std::mem::swap(&mut a, &mut b);
            }
            if a != b {
                let (la, lb) = (text[a.0..a.1].to_vec(), text[b.0..b.1].to_vec());
                text.splice(b.0..b.1, la);
                text.splice(a.0..a.1, lb);
            }
        }
        Mutation::Splice {
            other,
            from,
            len,
            at,
        } => {
            let source = seeds[other.index(seeds.len())].as_bytes();
            let source_lines = line_ranges(source);
            if source_lines.is_empty() {
                return;
            }
            let first = from.index(source_lines.len());
            let last = (first + len).min(source_lines.len()) - 1;
            let piece = source[source_lines[first].0..source_lines[last].1].to_vec();
            let at = if lines.is_empty() { 0 } else { line(at).0 };
            text.splice(at..at, piece);
        }
        Mutation::SetByte(at, b) if !text.is_empty() => {
            let at = at.index(text.len());
            text[at] = *b;
        }
        Mutation::InsertBytes(at, bytes) => {
            let at = at.index(text.len() + 1);
            text.splice(at..at, bytes.iter().copied());
        }
        Mutation::ReplaceToken(at, t) if !text.is_empty() => {
            let (start, end) = token_at(text, at.index(text.len()));
            let tokens = hostile(syntax);
            text.splice(start..end, tokens[t.index(tokens.len())].bytes());
        }
        Mutation::AddField(at, f) => {
            let braces: Vec<usize> = (0..text.len()).filter(|&i| text[i] == b'{').collect();
            if let Some(&brace) = braces.get(at.index(braces.len().max(1))) {
                let fields = extra_fields(syntax);
                let field = fields[f.index(fields.len())];
                text.splice(brace + 1..brace + 1, field.bytes());
            }
        }
        Mutation::DeleteField(at) if !text.is_empty() => {
            // From a separator to the next one (or the closing brace), not past the line.
            let start = at.index(text.len());
            let Some(sep) = text[start..].iter().position(|&b| b == b',') else {
                return;
            };
            let sep = start + sep;
            let end = text[sep + 1..]
                .iter()
                .position(|&b| matches!(b, b',' | b'}' | b'\n'))
                .map_or(text.len(), |e| sep + 1 + e);
            text.drain(sep..end);
        }
        Mutation::Nest(at, depth, map) => {
            let at = at.index(text.len() + 1);
            let (start, end) = if at < text.len() {
                token_at(text, at)
            } else {
                (at, at)
            };
            let (open, close): (&str, &str) = match (syntax, map) {
                (Syntax::Json, false) => ("[", "]"),
                (Syntax::Json, true) => ("{\"a\":", "}"),
                (_, false) => ("[", "]"),
                (_, true) => ("{:a ", "}"),
            };
            let inner = if start == end {
                "0".as_bytes().to_vec()
            } else {
                text[start..end].to_vec()
            };
            let mut nested = open.repeat(*depth).into_bytes();
            nested.extend(inner);
            nested.extend(close.repeat(*depth).bytes());
            text.splice(start..end, nested);
        }
        _ => {}
    }
}

/// A seed with one to four mutations applied.
pub fn mutated(seeds: &'static [String], syntax: Syntax) -> impl Strategy<Value = Vec<u8>> {
    (any::<Index>(), vec(mutation(), 1..5)).prop_map(move |(seed, changes)| {
        let mut text = seeds[seed.index(seeds.len())].as_bytes().to_vec();
        for m in &changes {
            apply(&mut text, m, seeds, syntax);
        }
        text
    })
}

/// Pieces of the syntax in random order, and random bytes.
pub fn noise(syntax: Syntax) -> impl Strategy<Value = Vec<u8>> {
    let pieces: &'static [&'static str] = match syntax {
        Syntax::Json => &[
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            " ",
            "\n",
            "\"",
            "\\",
            "\"type\"",
            "\"process\"",
            "\"f\"",
            "\"key\"",
            "\"value\"",
            "\"time\"",
            "\"node\"",
            "\"error\"",
            "\"invoke\"",
            "\"ok\"",
            "\"fail\"",
            "\"info\"",
            "\"nemesis\"",
            "\"read\"",
            "\"write\"",
            "0",
            "1",
            "-1",
            "1e400",
            "18446744073709551617",
            "1.5",
            "null",
            "true",
            "é",
            "\r",
            "\t",
        ],
        Syntax::Edn => &[
            "{",
            "}",
            "[",
            "]",
            "(",
            ")",
            ",",
            " ",
            "\n",
            "\"",
            "\\",
            ":process",
            ":type",
            ":f",
            ":key",
            ":value",
            ":time",
            ":error",
            ":invoke",
            ":ok",
            ":fail",
            ":info",
            ":nemesis",
            ":read",
            ":write",
            "0",
            "1",
            "-1",
            "18446744073709551617",
            "1N",
            "1.5",
            "nil",
            "true",
            "#",
            "é",
            "\r",
            "\t",
        ],
        Syntax::Log => &[
            "INFO  jepsen.util - ",
            "jepsen.util -",
            "\t",
            " ",
            "\n",
            "0",
            "-1",
            "7",
            "18446744073709551617",
            ":nemesis",
            ":invoke",
            ":ok",
            ":fail",
            ":info",
            ":read",
            ":write",
            ":cas",
            "nil",
            "[",
            "]",
            "{",
            "}",
            "(",
            ")",
            "\"",
            ":timed-out",
            "é",
            ":",
        ],
    };
    prop_oneof![
        vec(any::<u8>(), 0..300),
        vec(select(pieces), 0..80).prop_map(|p| p.concat().into_bytes()),
    ]
}
