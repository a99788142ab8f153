//! Numbers beyond 64-bit integers in a JSONL `value`. serde_json hands them over as
//! 64-bit floats, which would round `18446744073709551617` to `18446744073709552000`
//! or `0.10000000000000000001` to `0.1` and make it equal to a different number. So
//! a value holding such a number is kept only when every number in it is exactly
//! what its line says; otherwise the line is refused.

use crate::value::Value;

/// A number's exact decimal value: negative, significant digits (none for zero)
/// and the power of ten just above the first digit (`12.5` is `0.125e2`).
type Decimal = (bool, String, i64);

/// The exact value of a JSON number literal (or of a Rust integer or float text).
fn decimal(text: &str) -> Decimal {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => {
            let power = &rest[at + 1..];
            // Past i64 the number is far outside any float, so only its sign matters.
            let saturated = if power.starts_with('-') {
                i64::MIN
            } else {
                i64::MAX
            };
            (&rest[..at], power.parse::<i64>().unwrap_or(saturated))
        }
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = [int, frac].concat();
    let significant = all.trim_start_matches('0');
    let leading_zeros = (all.len() - significant.len()) as i64;
    let digits = significant.trim_end_matches('0');
    if digits.is_empty() {
        return (negative, String::new(), 0);
    }
    let power = (int.len() as i64 - leading_zeros).saturating_add(exponent);
    (negative, digits.to_string(), power)
}

/// The number literals of the top-level `value` member of a line of valid JSON, in order.
fn value_literals(line: &str) -> Vec<&str> {
    let s = line.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    let mut last_key = "";
    let mut in_value = false;
    let mut out = Vec::new();
    while i < s.len() {
        match s[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < s.len() && s[i] != b'"' {
                    i += if s[i] == b'\\' { 2 } else { 1 };
                }
                if depth == 1 {
                    last_key = line.get(start..=i).unwrap_or("");
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b':' if depth == 1 => {
                // A key may spell `value` with escapes; serde_json reads those too.
                in_value = serde_json::from_str::<String>(last_key).is_ok_and(|k| k == "value");
            }
            b',' if depth == 1 => in_value = false,
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < s.len() && matches!(s[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                if in_value {
                    out.push(&line[start..i]);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Every number in `value`, as decimals; true when one is not an `Int`.
fn leaves(value: &Value, out: &mut Vec<Decimal>) -> bool {
    match value {
        Value::Int(i) => {
            out.push(decimal(&i.to_string()));
            false
        }
        Value::Num(text) => {
            out.push(decimal(text));
            true
        }
        Value::List(items) => items.iter().fold(false, |any, v| leaves(v, out) | any),
        Value::Map(entries) => entries
            .iter()
            .fold(false, |any, (_, v)| leaves(v, out) | any),
        Value::Null | Value::Bool(_) | Value::Str(_) => false,
    }
}

/// Checks that `value`, read by serde_json from `line`, holds every number of the
/// line's `value` faithfully; the error says which one it would not. A number is
/// faithful when it is what a float prints itself as: no more significant digits
/// than the shortest text that reads back as the same 64-bit float. Printers
/// may choose differently between two equally short texts (`…697.2` or
/// `…697.3`), so the digits are compared by count, not one by one.
pub(crate) fn check_exact(line: &str, value: &Value) -> Result<(), String> {
    let mut held = Vec::new();
    if !leaves(value, &mut held) {
        // Only integers: serde_json read each one exactly.
        return Ok(());
    }
    for literal in value_literals(line) {
        let (_, digits, _) = decimal(literal);
        let Ok(x) = literal.parse::<f64>() else {
            continue;
        };
        let shortest = x.to_string();
        let (_, kept, _) = decimal(&shortest);
        let integer = !literal.contains(['.', 'e', 'E']);
        if integer && literal.parse::<i64>().is_ok() {
            continue;
        }
        if x.is_finite() && digits.len() <= kept.len() {
            continue;
        }
        return Err(format!(
            "`{}` cannot be kept exactly: it is not a 64-bit integer, and as a 64-bit float it would be {}",
            super::quote(literal),
            super::quote(&shortest)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_and_ignore_spelling() {
        assert_eq!(decimal("12.5"), (false, "125".into(), 2));
        assert_eq!(decimal("1.25e1"), decimal("12.50"));
        assert_eq!(decimal("100"), decimal("1e2"));
        assert_eq!(decimal("-0.001"), (true, "1".into(), -2));
        assert_eq!(decimal("0.0"), decimal("0"));
        assert_ne!(
            decimal("18446744073709551617"),
            decimal("18446744073709552000")
        );
        assert_eq!(decimal("0e99999999999999999999"), decimal("0"));
    }

    #[test]
    fn literals_are_those_of_the_top_level_value_member() {
        let line = r#"{"time":5,"value":[1.5,{"a":-2e3,"b":"7"}],"x":{"value":9},"v\u0061lue":3}"#;
        assert_eq!(value_literals(line), ["1.5", "-2e3", "3"]);
        assert_eq!(value_literals(r#"{"value":-0,"f":"a\"b:1"}"#), ["-0"]);
    }
}
