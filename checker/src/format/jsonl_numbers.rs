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

/// The exact decimal value of a finite float (a double has at most 767 significant digits).
fn exact(x: f64) -> Decimal {
    decimal(&format!("{x:.800e}"))
}

/// When `x` lies exactly halfway between two decimals as short as `shortest`, the
/// other one: printers round such ties differently (serde_json's to even, Rust's
/// up: `1727756845721204.2` or `.3` for `1727756845721204.25`), and either is `x`.
fn tie_twin(x: f64, shortest: &Decimal) -> Option<Decimal> {
    let (negative, digits, power) = exact(x);
    let (_, short, short_power) = shortest;
    // Digits of the exact value kept at the scale of the shortest text's last digit.
    let kept = usize::try_from(power - (short_power - short.len() as i64)).ok()?;
    if digits.len() != kept + 1 || !digits.ends_with('5') {
        return None;
    }
    let down = decimal_digits(negative, &digits[..kept], power);
    let mut up: Vec<u8> = digits[..kept].bytes().collect();
    let mut carry = true;
    for d in up.iter_mut().rev() {
        (*d, carry) = if *d == b'9' {
            (b'0', true)
        } else {
            (*d + 1, false)
        };
        if !carry {
            break;
        }
    }
    let up = if carry {
        decimal_digits(
            negative,
            &format!("1{}", String::from_utf8_lossy(&up)),
            power + 1,
        )
    } else {
        decimal_digits(negative, &String::from_utf8_lossy(&up), power)
    };
    [down, up].into_iter().find(|d| d != shortest)
}

/// A [`Decimal`] from digits that may end in zeros.
fn decimal_digits(negative: bool, digits: &str, power: i64) -> Decimal {
    match digits.trim_end_matches('0') {
        "" => (negative, String::new(), 0),
        digits => (negative, digits.to_string(), power),
    }
}

/// The text a value holds for a literal, or why it holds none: an integer literal
/// that fits 64 bits is held exactly; any other literal only when it is how a
/// printer writes the float it reads as (see [`tie_twin`]).
fn held_as(literal: &str) -> Result<Decimal, String> {
    let written = decimal(literal);
    let integer = !literal.contains(['.', 'e', 'E']);
    if integer && (literal.parse::<i64>().is_ok() || literal.parse::<u64>().is_ok()) {
        return Ok(written);
    }
    let x: f64 = literal.parse().map_err(|_| "not a number".to_string())?;
    let shortest = x.to_string();
    let held = decimal(&shortest);
    if x.is_finite() && (written == held || tie_twin(x, &held) == Some(written)) {
        return Ok(held);
    }
    Err(format!(
        "`{}` cannot be kept exactly: it is not a 64-bit integer, and as a 64-bit float it would be {}",
        super::quote(literal),
        super::quote(&shortest)
    ))
}

/// Checks that `value`, read by serde_json from `line`, holds every number of the
/// line's `value` faithfully; the error says which one it would not.
pub(crate) fn check_exact(line: &str, value: &Value) -> Result<(), String> {
    let mut held = Vec::new();
    if !leaves(value, &mut held) {
        // Only integers: serde_json read each one exactly.
        return Ok(());
    }
    let literals = value_literals(line);
    let mut wanted = literals
        .iter()
        .map(|l| held_as(l))
        .collect::<Result<Vec<_>, _>>()?;
    // serde_json must have read each literal as that float (its float_roundtrip
    // feature); if it ever does not, refuse rather than keep another number.
    held.sort();
    wanted.sort();
    if held != wanted {
        return Err(format!(
            "a number in `{}` was not read exactly",
            super::quote(&literals.join(" "))
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
    fn a_float_is_kept_as_any_printer_writes_it_and_nothing_else() {
        // Every shortest text of a float is held: Rust's, and serde_json's at ties.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut ties = 0;
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let x = f64::from_bits(seed);
            if !x.is_finite() {
                continue;
            }
            let ours = x.to_string();
            let theirs = serde_json::to_string(&x).unwrap();
            assert_eq!(held_as(&ours), Ok(decimal(&ours)), "{ours}");
            assert_eq!(held_as(&theirs), Ok(decimal(&ours)), "{theirs} for {ours}");
            ties += usize::from(decimal(&ours) != decimal(&theirs));
        }
        assert!(ties > 0, "no tie met: the twin rule went untested");
        assert_eq!(
            held_as("1727756845721204.2"),
            Ok(decimal("1727756845721204.3"))
        );
        // Texts that are not how the float prints are refused, short or long.
        for refused in [
            "9007199254740993.0",
            "0.10000000000000000001",
            "18446744073709551617",
            "1727756845721204.1",
            "1e400",
        ] {
            assert!(held_as(refused).is_err(), "{refused}");
        }
        assert_eq!(
            held_as("18446744073709551615"),
            Ok(decimal("18446744073709551615"))
        );
        assert_eq!(held_as("-0"), Ok(decimal("-0")));
    }

    #[test]
    fn literals_are_those_of_the_top_level_value_member() {
        let line = r#"{"time":5,"value":[1.5,{"a":-2e3,"b":"7"}],"x":{"value":9},"v\u0061lue":3}"#;
        assert_eq!(value_literals(line), ["1.5", "-2e3", "3"]);
        assert_eq!(value_literals(r#"{"value":-0,"f":"a\"b:1"}"#), ["-0"]);
    }
}
