//! Seeds: the Porcupine histories (the head of each), and for JSONL the same
//! converted, with generated CAS-register histories.

use std::path::Path;
use std::sync::OnceLock;

/// Lines kept from the head of each seed, so one input stays small to check.
const SEED_LINES: usize = 150;

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
