//! Property-based fuzzing of every history reader: random, mutated and hostile
//! input never panics or overflows the stack; it parses into a history that pairs
//! and checks without a panic, or is refused with an error that names the line.

use checker::format::{edn, jepsen_log, jsonl};
use checker::value::Value;
use checker::{check_named, CheckOptions, History, ReadError};

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

fn check_register(history: &History) {
    let _ = check_named("register", history, &CheckOptions::default());
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
        assert!(e.message.contains("nesting deeper than 1000"), "{e}");
        let e: ReadError = on_small_stack(move || {
            let line = format!(
                "INFO  jepsen.util - 0\t:invoke\t:write\t{}\n",
                nested_edn(depth)
            );
            jepsen_log::read(line.as_bytes()).unwrap_err()
        });
        assert_eq!((e.line, e.field), (1, Some("value")), "{e}");
        assert!(e.message.contains("nesting deeper than 1000"), "{e}");
    }
}

#[test]
fn edn_and_jepsen_log_read_and_check_a_value_nested_to_the_bound_on_a_small_stack() {
    on_small_stack(|| {
        let depth = edn::MAX_DEPTH - 1;
        let text = format!(
            "{{:process 0, :type :invoke, :f :write, :value {v}}}\n{{:process 0, :type :ok, :f :write, :value {v}}}\n{{:process 0, :type :invoke, :f :read}}\n{{:process 0, :type :ok, :f :read, :value {v}}}\n",
            v = nested_edn(depth)
        );
        let h = edn::read(text.as_bytes()).unwrap();
        assert_eq!(h.ops.len(), 2);
        check_register(&h);
        let v = nested_edn(edn::MAX_DEPTH);
        let text = format!("INFO  jepsen.util - 0\t:invoke\t:write\t{v}\nINFO  jepsen.util - 0\t:ok\t:write\t{v}\n");
        let h = jepsen_log::read(text.as_bytes()).unwrap();
        check_register(&h);
    });
}

#[test]
fn the_nesting_bound_counts_the_op_map_in_edn_and_the_value_alone_in_jepsen_logs() {
    let op = |depth| {
        format!(
            "{{:process 0, :type :invoke, :f :write, :value {}}}\n",
            nested_edn(depth)
        )
    };
    let log = |depth| {
        format!(
            "INFO  jepsen.util - 0\t:invoke\t:write\t{}\n",
            nested_edn(depth)
        )
    };
    assert!(edn::read(op(edn::MAX_DEPTH - 1).as_bytes()).is_ok());
    assert!(edn::read(op(edn::MAX_DEPTH).as_bytes()).is_err());
    assert!(jepsen_log::read(log(edn::MAX_DEPTH).as_bytes()).is_ok());
    assert!(jepsen_log::read(log(edn::MAX_DEPTH + 1).as_bytes()).is_err());
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
        assert!(e.message.starts_with("nesting deeper than 128"), "{e}");
    }
    let e = jsonl::read(jsonl_event(&"{\"a\":".repeat(200)).as_bytes()).unwrap_err();
    assert!(e.message.starts_with("nesting deeper than 128"), "{e}");
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
