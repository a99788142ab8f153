//! Inputs for fuzzing the history readers: the real Porcupine histories as seeds,
//! mutations of them, generated histories and event lines, and noise.

use std::path::Path;
use std::sync::OnceLock;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};

/// Lines kept from the head of each seed, so one input stays small to check.
const SEED_LINES: usize = 150;
/// Deepest nesting a mutation adds: past both readers' bounds (128 and 1,000).
const MAX_NEST: usize = 3000;

/// The syntax a reader takes, for mutations that write tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// JSON Lines.
    Json,
    /// EDN op maps.
    Edn,
    /// Jepsen text logs (EDN values).
    Log,
}

/// The first [`SEED_LINES`] lines of every file in `tests/data/porcupine/<dir>`.
fn porcupine(dir: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/porcupine")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .expect("porcupine data")
        .map(|e| e.expect("porcupine entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("porcupine file"))
        .filter(|text| !text.trim().is_empty())
        .map(|text| {
            let head: Vec<&str> = text.lines().take(SEED_LINES).collect();
            head.join("\n") + "\n"
        })
        .collect()
}

/// EDN text as JSON: keywords and symbols become strings, `nil` null, lists arrays.
/// Enough for the values of the Porcupine histories.
pub fn edn_to_json(edn: &str) -> String {
    let b = edn.as_bytes();
    let mut out = String::new();
    // For each open collection: is it a map, and how many items it has so far.
    let mut open: Vec<(bool, usize)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if matches!(b[i], b' ' | b',' | b'\t') {
            i += 1;
            continue;
        }
        if matches!(b[i], b'}' | b']' | b')') {
            out.push(if b[i] == b'}' { '}' } else { ']' });
            open.pop();
            i += 1;
            continue;
        }
        if let Some((map, n)) = open.last_mut() {
            if *n > 0 {
                out.push(if *map && *n % 2 == 1 { ':' } else { ',' });
            }
            *n += 1;
        }
        let start = i;
        match b[i] {
            b'{' | b'[' | b'(' => {
                out.push(if b[i] == b'{' { '{' } else { '[' });
                open.push((b[i] == b'{', 0));
                i += 1;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(b.len());
                out.push_str(&edn[start..i]);
            }
            _ => {
                while i < b.len() && !b" ,\t{}[]()\"".contains(&b[i]) {
                    i += 1;
                }
                match &edn[start..i] {
                    "nil" => out.push_str("null"),
                    t if t.starts_with(':') => out.push_str(&format!("\"{}\"", &t[1..])),
                    t => out.push_str(t),
                }
            }
        }
    }
    out
}

/// A Jepsen log line as a JSONL event.
fn log_line_to_json(line: &str) -> String {
    let rest = line.split_once("jepsen.util -").map_or("", |(_, r)| r);
    let mut fields = rest.split_whitespace();
    let process = fields.next().unwrap_or("0");
    let process = if process == ":nemesis" {
        "\"nemesis\"".to_string()
    } else {
        process.to_string()
    };
    let kind = fields.next().unwrap_or(":info").trim_start_matches(':');
    let f = fields.next().unwrap_or(":read").trim_start_matches(':');
    let value: Vec<&str> = fields.collect();
    let value = match value.join(" ") {
        v if v.is_empty() => "null".to_string(),
        v => edn_to_json(&v),
    };
    format!("{{\"type\":\"{kind}\",\"process\":{process},\"f\":\"{f}\",\"value\":{value}}}")
}

/// Seeds for the JSONL reader: the Jepsen logs and kv histories converted, and
/// generated CAS-register histories.
pub fn jsonl_seeds() -> &'static [String] {
    static SEEDS: OnceLock<Vec<String>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut seeds: Vec<String> = log_seeds()
            .iter()
            .map(|text| text.lines().map(|l| log_line_to_json(l) + "\n").collect())
            .collect();
        seeds.extend(edn_seeds().iter().map(|text| {
            text.lines()
                .map(|l| edn_to_json(l) + "\n")
                .collect::<String>()
        }));
        seeds.extend((0..8).map(|seed| {
            checker::generate::cas_register_history(checker::generate::Shape {
                ops: 60,
                keys: 3,
                processes: 4,
                seed,
            })
        }));
        seeds
    })
}

/// Seeds for the EDN reader: the Porcupine kv histories.
pub fn edn_seeds() -> &'static [String] {
    static SEEDS: OnceLock<Vec<String>> = OnceLock::new();
    SEEDS.get_or_init(|| porcupine("kv"))
}

/// Seeds for the Jepsen log reader: the Porcupine etcd logs.
pub fn log_seeds() -> &'static [String] {
    static SEEDS: OnceLock<Vec<String>> = OnceLock::new();
    SEEDS.get_or_init(|| porcupine("jepsen"))
}

/// Tokens that are wrong somewhere: huge or odd numbers, other types, bad syntax.
fn hostile(syntax: Syntax) -> &'static [&'static str] {
    match syntax {
        Syntax::Json => &[
            "18446744073709551617",
            "18446744073709551615",
            "9223372036854775808",
            "-9223372036854775809",
            "9223372036854775807",
            "-9223372036854775808",
            "1e400",
            "-1e400",
            "1e-400",
            "0.10000000000000000001",
            "9007199254740993.0",
            "1.5",
            "3.0",
            "-0",
            "01",
            "-",
            "0",
            "-1",
            "\"x\"",
            "\"\"",
            "\"nemesis\"",
            "\"invoke\"",
            "\"ok\"",
            "\"fail\"",
            "\"info\"",
            "\"\\u0000\"",
            "\"\\ud800\"",
            "\"\\q\"",
            "\"é\"",
            "null",
            "true",
            "[]",
            "{}",
            "[1,2]",
            "[[1]]",
            "[1,",
            "{\"a\":1}",
            "\"",
            "}",
            ":",
            ",",
        ],
        Syntax::Edn | Syntax::Log => &[
            "18446744073709551617",
            "9223372036854775808N",
            "-9223372036854775809",
            "9223372036854775807",
            "-9223372036854775808",
            "1.5",
            "1/2",
            "-",
            "0",
            "-1",
            "nil",
            "true",
            ":nemesis",
            ":invoke",
            ":ok",
            ":fail",
            ":info",
            ":timed-out",
            ":",
            "\"x\"",
            "\"\"",
            "\"\\q\"",
            "\"é\"",
            "[]",
            "{}",
            "()",
            "[1 2]",
            "{:a 1}",
            "{:a}",
            "#{1}",
            "#inst \"x\"",
            "\\a",
            "'x",
            "\"",
            "}",
            "]",
            ")",
        ],
    }
}

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

/// A value of a generated history: mostly what a register holds, sometimes not.
#[derive(Clone, Debug)]
pub enum Gen {
    Null,
    Bool(bool),
    Int(i64),
    /// A number literal beyond `i64` or with a fraction.
    Num(&'static str),
    Str(String),
    List(Vec<Gen>),
    Map(Vec<(String, Gen)>),
}

impl Gen {
    /// JSON text.
    pub fn json(&self) -> String {
        match self {
            Gen::Null => "null".into(),
            Gen::Bool(b) => b.to_string(),
            Gen::Int(i) => i.to_string(),
            Gen::Num(n) => n.to_string(),
            Gen::Str(s) => serde_json::to_string(s).expect("a string serializes"),
            Gen::List(items) => {
                let items: Vec<String> = items.iter().map(Gen::json).collect();
                format!("[{}]", items.join(","))
            }
            Gen::Map(entries) => {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{}:{}", Gen::Str(k.clone()).json(), v.json()))
                    .collect();
                format!("{{{}}}", entries.join(","))
            }
        }
    }

    /// EDN text.
    pub fn edn(&self) -> String {
        match self {
            Gen::Null => "nil".into(),
            Gen::Str(s) => {
                let escaped = s
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                format!("\"{escaped}\"")
            }
            Gen::List(items) => {
                let items: Vec<String> = items.iter().map(Gen::edn).collect();
                format!("[{}]", items.join(" "))
            }
            Gen::Map(entries) => {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!(":{} {}", k.replace([' ', '"'], "_"), v.edn()))
                    .collect();
                format!("{{{}}}", entries.join(", "))
            }
            other => other.json(),
        }
    }
}

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9 é\"\\\\\n]{0,6}"
}

/// A generated value: small integers mostly, and every other kind sometimes.
pub fn value() -> impl Strategy<Value = Gen> {
    let leaf = prop_oneof![
        4 => (0i64..5).prop_map(Gen::Int),
        2 => Just(Gen::Null),
        1 => any::<i64>().prop_map(Gen::Int),
        1 => any::<bool>().prop_map(Gen::Bool),
        1 => select(vec!["1.5", "18446744073709551617", "9223372036854775808", "1e400", "0.5", "-0"])
            .prop_map(Gen::Num),
        1 => text().prop_map(Gen::Str),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            3 => vec(inner.clone(), 0..3).prop_map(Gen::List),
            1 => vec(("[a-z]{1,3}", inner), 0..3).prop_map(Gen::Map),
        ]
    })
}

/// One event of a generated history.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: &'static str,
    /// `None` for the nemesis.
    pub process: Option<i64>,
    pub f: &'static str,
    pub key: Option<Gen>,
    pub value: Gen,
    pub time: Option<i64>,
}

impl Event {
    /// The event as a line of `syntax`.
    pub fn line(&self, syntax: Syntax) -> String {
        let process = |nemesis: &str| match self.process {
            Some(p) => p.to_string(),
            None => nemesis.to_string(),
        };
        match syntax {
            Syntax::Json => {
                let mut line = format!(
                    "{{\"type\":\"{}\",\"process\":{},\"f\":\"{}\"",
                    self.kind,
                    process("\"nemesis\""),
                    self.f
                );
                if let Some(k) = &self.key {
                    line += &format!(",\"key\":{}", k.json());
                }
                line += &format!(",\"value\":{}", self.value.json());
                if let Some(t) = self.time {
                    line += &format!(",\"time\":{t}");
                }
                line + "}"
            }
            Syntax::Edn => {
                let mut line = format!(
                    "{{:process {}, :type :{}, :f :{}",
                    process(":nemesis"),
                    self.kind,
                    self.f
                );
                if let Some(k) = &self.key {
                    line += &format!(", :key {}", k.edn());
                }
                line += &format!(", :value {}", self.value.edn());
                if let Some(t) = self.time {
                    line += &format!(", :time {t}");
                }
                line + "}"
            }
            Syntax::Log => format!(
                "INFO  jepsen.util - {}\t:{}\t:{}\t{}",
                process(":nemesis"),
                self.kind,
                self.f,
                self.value.edn()
            ),
        }
    }
}

/// One step of a generated history: who acts, and how an op would go.
type Step = (usize, usize, usize, Gen, Option<Gen>, bool);

/// A history that mostly pairs: each step lets one process invoke, or complete
/// its pending op. Processes include negative ones; some events are the nemesis.
pub fn history(syntax: Syntax) -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        12 => (0i64..3).prop_map(Gen::Int),
        12 => "k[0-2]".prop_map(Gen::Str),
        1 => value(),
    ];
    // What a register holds, and a cas pair; anything else rarely, so that most
    // generated histories read and reach the checker.
    let register = prop_oneof![
        4 => (0i64..5).prop_map(Gen::Int),
        1 => Just(Gen::Null),
        2 => (0i64..5, 0i64..5).prop_map(|(a, b)| Gen::List(vec![Gen::Int(a), Gen::Int(b)])),
    ];
    let step = (
        0usize..5,
        0usize..4,
        0usize..3,
        prop_oneof![40 => register, 1 => value()],
        option::of(key),
        any::<bool>(),
    );
    vec(step, 0..40).prop_map(move |steps: Vec<Step>| {
        const PROCESSES: [Option<i64>; 5] = [Some(0), Some(1), Some(-1), Some(i64::MIN), None];
        const KINDS: [&str; 4] = ["ok", "ok", "fail", "info"];
        const FS: [&str; 3] = ["read", "write", "cas"];
        let mut pending: [Option<(&'static str, Option<Gen>)>; 5] = Default::default();
        let mut out = String::new();
        for (time, (who, kind, f, value, key, timed)) in steps.into_iter().enumerate() {
            let (kind, f, key) = match pending[who].take() {
                Some((f, key)) => (KINDS[kind], f, key),
                None => {
                    pending[who] = Some((FS[f], key.clone()));
                    ("invoke", FS[f], key)
                }
            };
            let event = Event {
                kind,
                process: PROCESSES[who],
                f,
                key,
                value,
                time: timed.then_some(time as i64),
            };
            out += &event.line(syntax);
            out.push('\n');
        }
        out.into_bytes()
    })
}

/// A string in JSON: plain mostly, with escapes or of another type sometimes.
fn json_string(wild: bool) -> BoxedStrategy<String> {
    let plain = "[a-z0-9_-]{0,8}".prop_map(|s| format!("\"{s}\""));
    if wild {
        prop_oneof![
            2 => plain,
            1 => text().prop_map(|s| Gen::Str(s).json()),
            1 => any_json(),
        ]
        .boxed()
    } else {
        plain.boxed()
    }
}

/// Any JSON value, hostile tokens included.
fn any_json() -> BoxedStrategy<String> {
    prop_oneof![
        value().prop_map(|v| v.json()),
        select(hostile(Syntax::Json)).prop_map(String::from),
    ]
    .boxed()
}

/// The common shape's values: integers (any), null, booleans, plain strings, and
/// flat arrays of those.
fn flat_json() -> BoxedStrategy<String> {
    let scalar = prop_oneof![
        3 => any::<i64>().prop_map(|i| i.to_string()),
        3 => (-3i64..10).prop_map(|i| i.to_string()),
        1 => Just("null".to_string()),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        2 => json_string(false),
    ];
    prop_oneof![
        3 => scalar.clone(),
        1 => vec(scalar, 0..4).prop_map(|items| format!("[{}]", items.join(","))),
    ]
    .boxed()
}

/// A JSON event line, fields in any order, whitespace varied. Common lines have the
/// shape the fast path takes (any integer as process, negative included); wild
/// lines also have wrong types, escapes, floats, nesting, repeated or missing fields.
fn json_event(wild: bool) -> BoxedStrategy<String> {
    let pick = |common: BoxedStrategy<String>, odd: BoxedStrategy<String>| {
        if wild {
            prop_oneof![3 => common, 1 => odd].boxed()
        } else {
            common
        }
    };
    let kind = pick(
        select(vec!["invoke", "ok", "fail", "info"])
            .prop_map(|k| format!("\"{k}\""))
            .boxed(),
        prop_oneof![Just("\"bogus\"".to_string()), any_json()].boxed(),
    );
    let process = pick(
        prop_oneof![
            any::<i64>().prop_map(|p| p.to_string()),
            (-3i64..5).prop_map(|p| p.to_string()),
            Just("\"nemesis\"".to_string()),
        ]
        .boxed(),
        prop_oneof![Just("\"p1\"".to_string()), any_json()].boxed(),
    );
    let key = pick(
        prop_oneof![
            any::<i64>().prop_map(|k| k.to_string()),
            json_string(false),
            Just("null".to_string()),
        ]
        .boxed(),
        any_json(),
    );
    let time = pick(
        prop_oneof![
            any::<i64>().prop_map(|t| t.to_string()),
            Just("null".to_string())
        ]
        .boxed(),
        any_json(),
    );
    let name = || {
        pick(
            prop_oneof![json_string(false), Just("null".to_string())].boxed(),
            json_string(true),
        )
    };
    let fields = (
        kind,
        process,
        json_string(wild),
        option::of(key),
        option::of(pick(flat_json(), any_json())),
        option::of(time),
        option::of(name()),
        option::of(name()),
        option::of(pick(flat_json(), any_json())),
    )
        .prop_map(|(kind, process, f, key, value, time, node, error, extra)| {
            let mut fields = vec![
                format!("\"type\":{kind}"),
                format!("\"process\":{process}"),
                format!("\"f\":{f}"),
            ];
            let optional = [
                ("key", key),
                ("value", value),
                ("time", time),
                ("node", node),
                ("error", error),
                ("extra", extra),
            ];
            for (name, v) in optional {
                if let Some(v) = v {
                    fields.push(format!("\"{name}\":{v}"));
                }
            }
            fields
        })
        .prop_shuffle();
    let space = select(vec!["", "", "", " ", "\t", "  "]);
    let sometimes = move || {
        if wild {
            option::weighted(0.2, any::<Index>()).boxed()
        } else {
            Just(None).boxed()
        }
    };
    let (duplicate, drop) = (sometimes(), sometimes());
    (fields, duplicate, drop, space)
        .prop_map(|(mut fields, duplicate, drop, space)| {
            if let Some(d) = duplicate {
                let copy = fields[d.index(fields.len())].clone();
                fields.push(copy);
            }
            if let Some(d) = drop {
                fields.remove(d.index(fields.len()));
            }
            let fields: Vec<String> = fields
                .iter()
                .map(|f| f.replacen(':', &format!("{space}:{space}"), 1))
                .collect();
            let comma = format!("{space},{space}");
            format!("{space}{{{space}{}{space}}}{space}", fields.join(&comma))
        })
        .boxed()
}

/// A JSON event line: the common shape mostly, a wild one sometimes.
pub fn event_line() -> impl Strategy<Value = String> {
    prop_oneof![3 => json_event(false), 1 => json_event(true)]
}
