//! Generated histories (that mostly pair) and JSON event lines (mostly of the
//! common shape the fast path takes).

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};

use super::{hostile, Syntax};

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
