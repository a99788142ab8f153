//! Request bodies: a JSON object whose integers fit in 64 bits. serde would read
//! a struct from an array (`[1]` as `{"value": 1}`) and turns a larger integer into
//! a rounded float, so both are refused here, naming the field.

use serde::Deserialize;
use serde_json::Value;

/// Longest piece of a number or a key quoted in an error.
const QUOTED_CHARS: usize = 40;

/// Reads `body` as `T`: it must be a JSON object, and every integer in it must
/// fit in an i64 or a u64.
pub fn read<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    // First: serde_json refuses an integer past f64's range without naming it.
    check_integers(body)?;
    let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if !value.is_object() {
        return Err(format!(
            "the body must be a JSON object, found {}",
            kind(&value)
        ));
    }
    T::deserialize(value).map_err(|e| e.to_string())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where the scan is inside the body.
enum Frame {
    /// In an object: the key read last, and whether a key comes next.
    Object { key: String, expect_key: bool },
    /// In an array: the index of the current element.
    Array(usize),
}

fn path(frames: &[Frame]) -> String {
    let mut s = String::new();
    for f in frames {
        match f {
            Frame::Object { key, .. } if s.is_empty() => s.push_str(key),
            Frame::Object { key, .. } => {
                s.push('.');
                s.push_str(key);
            }
            Frame::Array(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Refuses an integer literal outside -2^63 ..= 2^64-1, naming its field.
/// `text` need not be valid JSON: serde_json reads it next.
fn check_integers(text: &[u8]) -> Result<(), String> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                let start = i + 1;
                i = start;
                while i < text.len() && text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                if let Some(Frame::Object { key, expect_key }) = frames.last_mut() {
                    if *expect_key {
                        let raw = &text[start..i.min(text.len())];
                        *key = String::from_utf8_lossy(&raw[..raw.len().min(QUOTED_CHARS)])
                            .into_owned();
                        *expect_key = false;
                    }
                }
            }
            b'{' => frames.push(Frame::Object {
                key: String::new(),
                expect_key: true,
            }),
            b'[' => frames.push(Frame::Array(0)),
            b'}' | b']' => {
                frames.pop();
            }
            b',' => match frames.last_mut() {
                Some(Frame::Array(n)) => *n += 1,
                Some(Frame::Object { expect_key, .. }) => *expect_key = true,
                None => {}
            },
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i + 1 < text.len()
                    && matches!(text[i + 1], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                let number = std::str::from_utf8(&text[start..=i]).unwrap_or("");
                let digits = number.strip_prefix('-').unwrap_or(number);
                let integer = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
                if integer && number.parse::<i64>().is_err() && number.parse::<u64>().is_err() {
                    let quoted = if number.len() > QUOTED_CHARS {
                        format!("{}... ({} digits)", &number[..QUOTED_CHARS], number.len())
                    } else {
                        number.to_string()
                    };
                    return Err(format!(
                        "`{}`: integer {quoted} does not fit in 64 bits (-2^63 to 2^64-1); send it as a string",
                        path(&frames)
                    ));
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Write {
        value: Value,
    }

    #[test]
    fn arrays_and_scalars_are_not_bodies() {
        for (body, found) in [
            ("[1]", "an array"),
            ("1", "a number"),
            ("\"x\"", "a string"),
            ("null", "null"),
        ] {
            let e = read::<Write>(body.as_bytes()).unwrap_err();
            assert!(
                e.contains(&format!("must be a JSON object, found {found}")),
                "{e}"
            );
        }
        assert!(read::<Write>(b"{}")
            .unwrap_err()
            .contains("missing field `value`"));
        assert!(read::<Write>(br#"{"value": 1, "x": 2}"#).is_err());
        assert!(read::<Write>(br#"{"value": [1, {"a": -9223372036854775808}]}"#).is_ok());
    }

    #[test]
    fn integers_beyond_64_bits_are_refused_naming_their_field() {
        for (body, field) in [
            (r#"{"value": 18446744073709551616}"#, "`value`"),
            (
                r#"{"value": {"x": [1, -9223372036854775809]}}"#,
                "`value.x[1]`",
            ),
            (
                r#"{"value": ["a,\"b", {"q\"": 1, "k": [[], 99999999999999999999]}]}"#,
                "`value[1].k[1]`",
            ),
        ] {
            let e = read::<Write>(body.as_bytes()).unwrap_err();
            assert!(
                e.contains(field) && e.contains("does not fit in 64 bits"),
                "{body}: {e}"
            );
        }
        for not_integers in [r#"{"value": -}"#, r#"{"value": 1-2}"#, r#"{"value": "#] {
            let e = read::<Write>(not_integers.as_bytes()).unwrap_err();
            assert!(!e.contains("64 bits"), "{not_integers}: {e}");
        }
        let long = format!("{{\"value\": {}}}", "9".repeat(5000));
        let e = read::<Write>(long.as_bytes()).unwrap_err();
        assert!(e.contains("(5000 digits)") && e.len() < 200, "{e}");
        // Floats and 64-bit integers pass, as do digits inside strings.
        for ok in [
            r#"{"value": 18446744073709551615}"#,
            r#"{"value": 1.8446744073709552e19}"#,
            r#"{"value": "18446744073709551617"}"#,
        ] {
            assert!(read::<Write>(ok.as_bytes()).is_ok(), "{ok}");
        }
    }
}
