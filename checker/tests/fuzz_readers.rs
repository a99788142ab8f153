//! Property-based fuzzing of every history reader: random, mutated and hostile
//! input never panics or overflows the stack; it parses into a history that pairs
//! and checks without a panic, or is refused with an error that names the line.

mod fuzz;

use std::cell::Cell;
use std::collections::HashSet;
use std::time::Duration;

use checker::format::{edn, jepsen_log, jsonl, MAX_DEPTH};
use checker::history::NEVER;
use checker::value::Value;
use checker::{check_named, CheckOptions, History, ReadError};
use fuzz::Syntax;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};

/// A small stack for the calling thread: no reader may recurse per nesting level.
const SMALL_STACK: usize = 256 << 10;

/// Runs `f` on a thread with [`SMALL_STACK`] bytes of stack.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the reader panicked or overflowed")
}

/// `depth` vectors nested in one another, EDN.
fn nested_edn(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// `depth` maps and vectors nested in turn around `0`, in EDN or in JSON.
fn nested_mixed(depth: usize, json: bool) -> String {
    let (map, vector) = if json {
        ("{\"a\":", "[")
    } else {
        ("{:a ", "[")
    };
    let open: String = (0..depth)
        .map(|i| if i % 2 == 0 { map } else { vector })
        .collect();
    let close: String = (0..depth)
        .rev()
        .map(|i| if i % 2 == 0 { "}" } else { "]" })
        .collect();
    format!("{open}0{close}")
}

/// Checks `history` against every model, and prints its values, as a run would.
fn check_all(history: &History) {
    for model in ["register", "cas-register", "kv", "append-kv"] {
        let _ = check_named(model, history, &CheckOptions::default());
    }
    for op in &history.ops {
        assert!(!op.input.to_string().is_empty());
    }
}

#[test]
fn edn_and_jepsen_log_refuse_nesting_deeper_than_the_bound_on_a_small_stack() {
    for depth in [100_000, 1_000_000] {
        let e: ReadError = on_small_stack(move || {
            let line = format!(
                "{{:process 0, :type :invoke, :f :write, :value {}}}\n",
                nested_edn(depth)
            );
            edn::read(line.as_bytes()).unwrap_err()
        });
        assert_eq!((e.line, e.field), (1, Some(":value")), "{e}");
        assert!(
            e.message
                .contains(&format!("nesting deeper than {MAX_DEPTH}")),
            "{e}"
        );
        let e: ReadError = on_small_stack(move || {
            let line = format!(
                "INFO  jepsen.util - 0\t:invoke\t:write\t{}\n",
                nested_edn(depth)
            );
            jepsen_log::read(line.as_bytes()).unwrap_err()
        });
        assert_eq!((e.line, e.field), (1, Some("value")), "{e}");
        assert!(
            e.message
                .contains(&format!("nesting deeper than {MAX_DEPTH}")),
            "{e}"
        );
    }
}

#[test]
fn every_reader_reads_and_checks_a_value_nested_to_the_bound_on_a_small_stack() {
    on_small_stack(|| {
        // The op map (or object) is one level; a Jepsen log's value stands alone.
        let v = nested_mixed(MAX_DEPTH - 1, false);
        let text = format!(
            "{{:process 0, :type :invoke, :f :write, :value {v}}}\n{{:process 0, :type :ok, :f :write, :value {v}}}\n{{:process 0, :type :invoke, :f :read}}\n{{:process 0, :type :ok, :f :read, :value {v}}}\n"
        );
        let h = edn::read(text.as_bytes()).unwrap();
        assert_eq!(h.ops.len(), 2);
        check_all(&h);
        let v = nested_mixed(MAX_DEPTH, false);
        let text = format!("INFO  jepsen.util - 0\t:invoke\t:write\t{v}\nINFO  jepsen.util - 0\t:ok\t:write\t{v}\n");
        check_all(&jepsen_log::read(text.as_bytes()).unwrap());
        let v = nested_mixed(MAX_DEPTH - 1, true);
        let text = format!(
            "{}{{\"type\":\"ok\",\"process\":0,\"f\":\"write\",\"value\":{v}}}\n",
            jsonl_event(&v)
        );
        check_all(&jsonl::read(text.as_bytes()).unwrap());
    });
}

#[test]
fn the_nesting_bound_counts_the_op_map_in_edn_and_jsonl_and_the_value_alone_in_jepsen_logs() {
    let op = |depth| {
        format!(
            "{{:process 0, :type :invoke, :f :write, :value {}}}\n",
            nested_mixed(depth, false)
        )
    };
    let log = |depth| {
        format!(
            "INFO  jepsen.util - 0\t:invoke\t:write\t{}\n",
            nested_mixed(depth, false)
        )
    };
    assert!(edn::read(op(MAX_DEPTH - 1).as_bytes()).is_ok());
    assert!(edn::read(op(MAX_DEPTH).as_bytes()).is_err());
    assert!(jepsen_log::read(log(MAX_DEPTH).as_bytes()).is_ok());
    assert!(jepsen_log::read(log(MAX_DEPTH + 1).as_bytes()).is_err());
    // serde_json's recursion limit is the same bound.
    assert!(jsonl::read(jsonl_event(&nested_mixed(MAX_DEPTH - 1, true)).as_bytes()).is_ok());
    let e = jsonl::read(jsonl_event(&nested_mixed(MAX_DEPTH, true)).as_bytes()).unwrap_err();
    assert!(
        e.message
            .starts_with(&format!("nesting deeper than {MAX_DEPTH}")),
        "{e}"
    );
}

#[test]
fn invalid_utf8_is_refused_naming_the_line_in_every_reader() {
    let edn_text = b"{:process 0, :type :invoke, :f :read}\n{:process 0, :type :ok, :f :read, :value \"\xff\"}\n";
    let log_text =
        b"INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:ok\t:read\t\xc3\n";
    let json_text = b"{\"type\":\"invoke\",\"process\":0,\"f\":\"read\"}\n{\"type\":\"ok\",\"process\":0,\"f\":\"r\xe9ad\"}\n";
    for e in [
        edn::read(&edn_text[..]).unwrap_err(),
        jepsen_log::read(&log_text[..]).unwrap_err(),
        jsonl::read(&json_text[..]).unwrap_err(),
    ] {
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("not valid UTF-8"), "{e}");
    }
}

#[test]
fn edn_errors_show_values_as_edn_not_as_rust_debug_text() {
    let e = edn::read("{:process \"p\\\"1\", :type :invoke, :f :read}\n".as_bytes()).unwrap_err();
    assert_eq!(e.field, Some(":process"));
    assert!(e.message.ends_with(r#"got "p\"1""#), "{e}");
    let e = edn::read("{:process 0, :type :invoke, :f :read, :key [1]}\n".as_bytes()).unwrap_err();
    assert!(e.message.ends_with("got a vector"), "{e}");
    let long = "x".repeat(10_000);
    let e = edn::read(format!("{{:process :{long}, :type :invoke, :f :read}}\n").as_bytes())
        .unwrap_err();
    assert!(e.message.len() < 200, "{e}");
}

/// A JSONL event line with `value` spliced in as raw JSON text.
fn jsonl_event(value: &str) -> String {
    format!("{{\"type\":\"invoke\",\"process\":0,\"f\":\"write\",\"value\":{value}}}\n")
}

#[test]
fn jsonl_refuses_nesting_deeper_than_serde_json_reads_naming_line_and_field_on_a_small_stack() {
    for depth in [100_000, 1_000_000] {
        let e: ReadError = on_small_stack(move || {
            let value = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let text = format!("\n{}", jsonl_event(&value));
            jsonl::read(text.as_bytes()).unwrap_err()
        });
        assert_eq!((e.line, e.field), (2, Some("value")), "{e}");
        assert!(
            e.message
                .starts_with(&format!("nesting deeper than {MAX_DEPTH}")),
            "{e}"
        );
    }
    let e = jsonl::read(jsonl_event(&"{\"a\":".repeat(200)).as_bytes()).unwrap_err();
    assert!(
        e.message
            .starts_with(&format!("nesting deeper than {MAX_DEPTH}")),
        "{e}"
    );
}

#[test]
fn jsonl_refuses_an_array_or_scalar_where_an_event_object_belongs() {
    for (line, found) in [
        (r#"["invoke",0,"write","k1",3,1]"#, "found an array"),
        (r#"[]"#, "found an array"),
        (r#"5"#, "integer `5`"),
        (r#""invoke""#, "string"),
        (r#"null"#, "null"),
    ] {
        let e = jsonl::read(format!("{line}\n").as_bytes()).unwrap_err();
        assert_eq!(e.line, 1, "{line}: {e}");
        assert!(e.message.contains("expected a JSON object"), "{line}: {e}");
        assert!(e.message.contains(found), "{line}: {e}");
    }
}

#[test]
fn jsonl_errors_inside_a_field_name_the_field() {
    for (line, field, needle) in [
        (
            r#"{"type":"invoke","process":0,"f":"read","time":"x"}"#,
            "time",
            "expected i64",
        ),
        (
            r#"{"type":"invoke","process":0,"f":"read","time":1.5}"#,
            "time",
            "expected i64",
        ),
        (
            r#"{"type":"invoke","process":0,"f":7}"#,
            "f",
            "expected a string",
        ),
        (
            r#"{"type":["ok"],"process":0,"f":"read"}"#,
            "type",
            "expected a string",
        ),
        (
            r#"{"type":"invoke","process":0,"f":"read","key":[1]}"#,
            "key",
            "a string or an integer",
        ),
        (
            r#"{"type":"invoke","process":0,"f":"read","key":1.5}"#,
            "key",
            "a string or an integer",
        ),
        (
            r#"{"type":"invoke","process":0,"f":"read","node":5}"#,
            "node",
            "expected a string",
        ),
        (
            r#"{"type":"invoke","process":0,"f":"read","error":{}}"#,
            "error",
            "expected a string",
        ),
        (
            r#"{"type":"invoke","process":0,"f":"read","value":[1,}"#,
            "value",
            "",
        ),
        (
            r#"{"type":"invoke","process":0,"f":"read","value":1e400}"#,
            "value",
            "out of range",
        ),
        (
            r#"{"type":"invoke","process":0,"f":"read","f":"read"}"#,
            "f",
            "duplicate field `f`",
        ),
        (
            r#"{"type":"invoke","f":"read"}"#,
            "process",
            "missing field `process`",
        ),
        (
            r#"{"process":0,"f":"read"}"#,
            "type",
            "missing field `type`",
        ),
    ] {
        let e = jsonl::read(format!("{line}\n").as_bytes()).unwrap_err();
        assert_eq!((e.line, e.field), (1, Some(field)), "{line}: {e}");
        assert!(e.message.contains(needle), "{line}: {e}");
    }
    // Not inside a field: the error names no field.
    for line in [
        r#"{"type":"invoke","process":0,"f":"read"} x"#,
        r#"{"type":"invoke","process":0,"#,
        r#"{"extra":[}"#,
    ] {
        let e = jsonl::read(format!("{line}\n").as_bytes()).unwrap_err();
        assert_eq!((e.line, e.field), (1, None), "{line}: {e}");
    }
}

/// The `value` of the first op of a one-line JSONL history.
fn jsonl_value(value: &str) -> Result<Value, ReadError> {
    jsonl::read(jsonl_event(value).as_bytes()).map(|h| h.ops[0].input.clone())
}

#[test]
fn jsonl_numbers_beyond_i64_are_kept_exactly_or_refused_naming_line_and_field() {
    for refused in [
        "18446744073709551617",
        "18446744073709551616",
        "-9223372036854775809",
        "[1,{\"a\":100000000000000000001}]",
        "0.10000000000000000001",
        "9007199254740993.0",
        "1727756845721204.1",
        "1e400",
        "-1e400",
    ] {
        let e = jsonl_value(refused).unwrap_err();
        assert_eq!((e.line, e.field), (1, Some("value")), "{refused}: {e}");
    }
    let e = jsonl_value("18446744073709551617").unwrap_err();
    assert!(
        e.message
            .contains("`18446744073709551617` cannot be kept exactly")
            && e.message.contains("18446744073709552000"),
        "{e}"
    );
    // u64 beyond i64 is exact as text; floats that say exactly their value stay.
    for (kept, want) in [
        (
            "9223372036854775808",
            Value::Num("9223372036854775808".into()),
        ),
        (
            "18446744073709551615",
            Value::Num("18446744073709551615".into()),
        ),
        ("1e20", Value::Num("100000000000000000000".into())),
        ("0.1", Value::Num("0.1".into())),
        ("-2.50", Value::Num("-2.5".into())),
        // An exact tie between two shortest texts: serde_json writes one, Rust the other.
        (
            "1727756845721204.2",
            Value::Num("1727756845721204.3".into()),
        ),
        (
            "1727756845721204.3",
            Value::Num("1727756845721204.3".into()),
        ),
        (
            "[1.5,-7,{\"a\":0.25}]",
            Value::List(
                vec![
                    Value::Num("1.5".into()),
                    Value::Int(-7),
                    Value::Map(vec![("a".into(), Value::Num("0.25".into()))].into()),
                ]
                .into(),
            ),
        ),
    ] {
        assert_eq!(jsonl_value(kept).unwrap(), want, "{kept}");
    }
    // Numbers outside the value are not the value's business.
    let line = "{\"type\":\"invoke\",\"process\":0,\"f\":\"w\",\"extra\":18446744073709551617,\"value\":0.5}\n";
    assert!(jsonl::read(line.as_bytes()).is_ok());
}

#[test]
fn edn_and_jepsen_log_refuse_integers_beyond_i64_naming_the_field() {
    for big in [
        "18446744073709551617",
        "9223372036854775808N",
        "-9223372036854775809",
        "1.5",
    ] {
        let e = edn::read(
            format!("{{:process 0, :type :invoke, :f :write, :value [1 {big}]}}\n").as_bytes(),
        )
        .unwrap_err();
        assert_eq!((e.line, e.field), (1, Some(":value")), "{big}: {e}");
        assert!(e.message.contains("64-bit integers only"), "{e}");
        let e =
            jepsen_log::read(format!("INFO  jepsen.util - 0\t:invoke\t:write\t{big}\n").as_bytes())
                .unwrap_err();
        assert_eq!((e.line, e.field), (1, Some("value")), "{big}: {e}");
    }
    let e = edn::read("{:process 18446744073709551617, :type :invoke, :f :read}\n".as_bytes())
        .unwrap_err();
    assert_eq!(e.field, Some(":process"), "{e}");
}

/// A reader under fuzzing: how to call it, the fields its errors may name, the
/// models a parsed history is checked against.
struct Reader {
    name: &'static str,
    syntax: Syntax,
    read: fn(&[u8]) -> Result<History, ReadError>,
    fields: &'static [&'static str],
    models: &'static [&'static str],
}

const JSONL: Reader = Reader {
    name: "jsonl",
    syntax: Syntax::Json,
    read: |input| jsonl::read(input),
    fields: &[
        "type", "process", "f", "key", "value", "time", "node", "error",
    ],
    models: &["register", "cas-register"],
};

const EDN: Reader = Reader {
    name: "jepsen-edn",
    syntax: Syntax::Edn,
    read: |input| edn::read(input),
    fields: &[
        ":type", ":process", ":f", ":key", ":value", ":time", ":error",
    ],
    models: &["register", "append-kv"],
};

const JEPSEN_LOG: Reader = Reader {
    name: "jepsen-log",
    syntax: Syntax::Log,
    read: |input| jepsen_log::read(input),
    fields: &["process", "type", "f", "value"],
    models: &["register", "cas-register"],
};

/// How long one fuzzed history may be checked: long enough for any seed.
const CHECK_TIME: Duration = Duration::from_millis(200);

/// A parsed history pairs consistently: every op's interval is ordered, its lines
/// exist, its key is known, and the counts add up.
fn assert_pairs(h: &History, lines: u64) {
    let s = &h.stats;
    assert!(s.events <= lines, "{} events on {lines} lines", s.events);
    assert_eq!(h.ops.len() as u64, s.ok + s.info + s.unfinished);
    let mut last_call = None;
    for op in &h.ops {
        assert!((1..=lines).contains(&op.line), "op line {}", op.line);
        assert!(op.call < op.ret && op.call < s.events, "{op:?}");
        assert_eq!(op.is_indeterminate(), op.ret == NEVER, "{op:?}");
        assert!(op.ret == NEVER || op.ret < s.events, "{op:?}");
        if let Some(r) = op.ret_line {
            assert!(r > op.line && r <= lines, "{op:?}");
        }
        if let Some(k) = op.key {
            assert!((k as usize) < h.keys.len(), "{op:?}");
        }
        assert!(last_call < Some(op.call), "ops out of invocation order");
        last_call = Some(op.call);
    }
    assert_eq!(h.keys.iter().collect::<HashSet<_>>().len(), h.keys.len());
    assert!(h.nemesis.iter().all(|e| (1..=lines).contains(&e.line)));
}

/// Reads `input` on a small stack; a history must pair and check without a panic,
/// an error must name a line of the input and, if any, a field of the format.
/// True when the input parsed.
fn exercise(reader: &'static Reader, input: Vec<u8>) -> bool {
    on_small_stack(move || {
        let lines = input.split(|&b| b == b'\n').count() as u64;
        match (reader.read)(&input) {
            Ok(h) => {
                assert_pairs(&h, lines);
                let options = CheckOptions {
                    time_limit: Some(CHECK_TIME),
                    memory_limit: 64 << 20,
                    ..CheckOptions::default()
                };
                for model in reader.models {
                    // A model may refuse the ops (a ModelError); it may not panic.
                    let _ = check_named(model, &h, &options);
                }
                true
            }
            Err(e) => {
                assert!((1..=lines).contains(&e.line), "{}: {e}", reader.name);
                assert!(!e.message.is_empty(), "{}: empty message", reader.name);
                if let Some(f) = e.field {
                    assert!(reader.fields.contains(&f), "{}: {e}", reader.name);
                }
                let shown = e.to_string();
                for debug in ["Some(", "None", "Int(", "Str(", "Edn", "RawEvent", "\\u{"] {
                    assert!(
                        !shown.contains(debug),
                        "{}: Rust debug text in {shown}",
                        reader.name
                    );
                }
                false
            }
        }
    })
}

/// The runner's settings: failing cases are kept beside this file.
fn config() -> Config {
    Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/fuzz_readers.proptest-regressions",
        ))),
        ..Config::default()
    }
}

/// Runs `cases` inputs from `inputs` through `reader` and reports the count.
fn fuzz(reader: &'static Reader, cases: u32, inputs: impl Strategy<Value = Vec<u8>>) {
    let (parsed, refused) = (Cell::new(0u64), Cell::new(0u64));
    let mut runner = TestRunner::new(Config { cases, ..config() });
    let result = runner.run(&inputs, |input| {
        let count = if exercise(reader, input) {
            &parsed
        } else {
            &refused
        };
        count.set(count.get() + 1);
        Ok(())
    });
    let (parsed, refused) = (parsed.get(), refused.get());
    eprintln!(
        "fuzz_readers: {} reader got {} inputs ({parsed} parsed into histories, {refused} refused)",
        reader.name,
        parsed + refused
    );
    if let Err(e) = result {
        panic!("{}: {e}", reader.name);
    }
}

/// Every kind of input a reader gets: mutated seeds most, generated histories,
/// noise, and the other readers' seeds.
fn inputs(reader: &'static Reader) -> impl Strategy<Value = Vec<u8>> {
    let (own, other) = match reader.syntax {
        Syntax::Json => (fuzz::jsonl_seeds(), fuzz::edn_seeds()),
        Syntax::Edn => (fuzz::edn_seeds(), fuzz::log_seeds()),
        Syntax::Log => (fuzz::log_seeds(), fuzz::jsonl_seeds()),
    };
    prop_oneof![
        6 => fuzz::mutated(own, reader.syntax),
        3 => fuzz::history(reader.syntax),
        2 => fuzz::noise(reader.syntax),
        1 => fuzz::mutated(other, reader.syntax),
    ]
}

#[test]
fn every_seed_parses_before_mutation() {
    for (reader, seeds) in [
        (&JSONL, fuzz::jsonl_seeds()),
        (&EDN, fuzz::edn_seeds()),
        (&JEPSEN_LOG, fuzz::log_seeds()),
    ] {
        assert!(seeds.len() >= 6, "{}", reader.name);
        for seed in seeds {
            if let Err(e) = (reader.read)(seed.as_bytes()) {
                panic!("{}: {e}\n{}", reader.name, &seed[..seed.len().min(300)]);
            }
        }
    }
}

#[test]
fn fuzzed_jsonl_parses_and_checks_or_is_refused_naming_the_line() {
    fuzz(&JSONL, 4000, inputs(&JSONL));
}

#[test]
fn fuzzed_jepsen_edn_parses_and_checks_or_is_refused_naming_the_line() {
    fuzz(&EDN, 6000, inputs(&EDN));
}

#[test]
fn fuzzed_jepsen_log_parses_and_checks_or_is_refused_naming_the_line() {
    fuzz(&JEPSEN_LOG, 6000, inputs(&JEPSEN_LOG));
}

#[test]
fn jsonl_fast_path_agrees_with_serde_json_on_generated_event_lines() {
    let (lines, fast) = (Cell::new(0u64), Cell::new(0u64));
    let mut runner = TestRunner::new(Config {
        cases: 20_000,
        ..config()
    });
    let result = runner.run(&fuzz::event_line(), |line| {
        lines.set(lines.get() + 1);
        match jsonl::both_paths(&line) {
            (Some(a), Ok(b)) => {
                fast.set(fast.get() + 1);
                prop_assert_eq!(a, b, "{}", line);
            }
            (Some(a), Err(e)) => {
                prop_assert!(
                    false,
                    "fast path read {} where serde_json refuses ({}): {}",
                    a,
                    e,
                    line
                )
            }
            (None, _) => {}
        }
        Ok(())
    });
    let (fast, lines) = (fast.get(), lines.get());
    eprintln!("fuzz_readers: fast JSONL path answered {fast} of {lines} generated lines, each as serde_json did");
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        fast * 4 > lines,
        "the fast path answered only {fast} of {lines}"
    );
}
