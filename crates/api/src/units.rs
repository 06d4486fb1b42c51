//! Patroni's lenient parsing of numbers, sizes and booleans, and its LSN format.
//!
//! Query parameters (`?lag=16MB`) and dynamic-configuration values reach the API as text written
//! by people, so they are parsed the way Patroni's `parse_int`/`parse_bool` (`patroni/utils.py`)
//! parse them: C `strtol` prefixes (hex, octal, decimal), optional decimals, PostgreSQL memory
//! units, and Python's round-half-to-even. Nothing here panics: anything unparsable is `None`.

use serde_json::Value;

/// Bytes per memory unit, largest first: `(unit, bytes)`. Patroni's table for base unit `B`.
const MEMORY_UNITS: [(&str, f64); 5] = [
    ("TB", 1_099_511_627_776.0),
    ("GB", 1_073_741_824.0),
    ("MB", 1_048_576.0),
    ("kB", 1024.0),
    ("B", 1.0),
];

/// Seconds per time unit, largest first: `(unit, seconds)`. Patroni's table for base unit `s`.
const TIME_UNITS: [(&str, f64); 6] = [
    ("d", 86_400.0),
    ("h", 3_600.0),
    ("min", 60.0),
    ("s", 1.0),
    ("ms", 0.001),
    ("us", 0.000_001),
];

/// Parses a size in bytes as Patroni's `parse_int(value, 'B')`: `1024`, `0x400`, `16kB`,
/// `1.5MB`, ` 64 MB `. Units are case-sensitive (`kB`, `MB`, `GB`, `TB`, `B`).
///
/// Returns `None` for anything Patroni would not parse (callers then use their default).
pub(crate) fn parse_bytes(text: &str) -> Option<i64> {
    parse_with_units(text, &MEMORY_UNITS)
}

/// Parses a duration in whole seconds as Patroni's `parse_int(value, 's')`: `30`, `"30"`,
/// `"1min"`, `"1.5 h"`, `"2500ms"` (rounded half to even). Units are case-sensitive (`d`, `h`,
/// `min`, `s`, `ms`, `us`). JSON numbers are read as Python's `str()` writes them; booleans,
/// `null`, lists and objects are `None`.
pub(crate) fn parse_seconds(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => parse_with_units(s, &TIME_UNITS),
        Value::Number(n) => parse_with_units(&n.to_string(), &TIME_UNITS),
        _ => None,
    }
}

/// Patroni's `parse_int(text, base_unit)` for a base unit whose table is `units`
/// (`(unit, how many base units)`, largest first).
fn parse_with_units(text: &str, units: &[(&str, f64)]) -> Option<i64> {
    let text = text.trim();
    let (mut value, mut unit) = match strtol(text) {
        Some((v, rest)) => (Some(v as f64), rest),
        None => (None, text),
    };
    if (value.is_none() && unit.starts_with('.')) || unit.starts_with(['.', 'e', 'E']) {
        match strtod(text) {
            Some((v, rest)) => (value, unit) = (Some(v), rest),
            None => (value, unit) = (None, text),
        }
    }
    let value = value?;
    let unit = unit.trim();
    if unit.is_empty() {
        return to_i64(value.round_ties_even());
    }
    let position = units.iter().position(|(u, _)| *u == unit)?;
    let mut converted = value * units[position].1;
    // Patroni rounds to a whole number of the next smaller unit before the final rounding.
    if let Some((_, smaller)) = units.get(position + 1) {
        converted = (converted / smaller).round_ties_even() * smaller;
    }
    to_i64(converted.round_ties_even())
}

/// Parses an integer setting as Patroni's `parse_int(value)` without a unit: JSON numbers
/// (floats rounded half to even) and numeric strings.
pub(crate) fn parse_int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().and_then(|f| to_i64(f.round_ties_even()))),
        Value::String(s) => {
            let s = s.trim();
            match strtol(s) {
                Some((v, rest)) if rest.trim().is_empty() => Some(v),
                _ => strtod(s)
                    .filter(|(_, rest)| rest.trim().is_empty())
                    .and_then(|(v, _)| to_i64(v.round_ties_even())),
            }
        }
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

/// Patroni's `parse_bool`: `on`/`true`/`yes`/`1` are true, `off`/`false`/`no`/`0` false (any
/// case, Python's `str()` of the value); anything else is `None`.
pub(crate) fn parse_bool(value: &Value) -> Option<bool> {
    let text = match value {
        Value::Bool(b) => return Some(*b),
        Value::String(s) => s.to_lowercase(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    match text.as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// Formats an LSN the way PostgreSQL and Patroni print it: `16/B374D848`.
pub(crate) fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// C `strtol` with base 0 on an already trimmed string: an optional sign, then a hex (`0x..`),
/// octal (`0..`) or decimal number. Returns the value and the rest of the text.
fn strtol(text: &str) -> Option<(i64, &str)> {
    let negative = text.starts_with('-');
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let digits = |s: &str, pred: fn(&u8) -> bool| s.bytes().take_while(pred).count();
    let (value, rest) = if let Some(hex) = body
        .strip_prefix("0x")
        .filter(|h| digits(h, u8::is_ascii_hexdigit) > 0)
    {
        let n = digits(hex, u8::is_ascii_hexdigit);
        (i64::from_str_radix(&hex[..n], 16).ok()?, &hex[n..])
    } else if let Some(oct) = body.strip_prefix('0') {
        let n = digits(oct, |c| (b'0'..=b'7').contains(c));
        let value = if n == 0 {
            0
        } else {
            i64::from_str_radix(&oct[..n], 8).ok()?
        };
        (value, &oct[n..])
    } else {
        let n = digits(body, u8::is_ascii_digit);
        if n == 0 {
            return None;
        }
        (body[..n].parse().ok()?, &body[n..])
    };
    Some((if negative { -value } else { value }, rest))
}

/// C `strtod` as Patroni's regex `[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?` reads it.
fn strtod(text: &str) -> Option<(f64, &str)> {
    let bytes = text.as_bytes();
    let count = |from: usize| {
        bytes[from..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let mut end = usize::from(bytes.first().is_some_and(|c| matches!(c, b'-' | b'+')));
    let int_digits = count(end);
    end += int_digits;
    let frac_digits = if bytes.get(end) == Some(&b'.') {
        count(end + 1)
    } else {
        0
    };
    if frac_digits > 0 {
        end += 1 + frac_digits;
    } else if int_digits == 0 {
        return None;
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(end + 1), Some(b'-' | b'+')));
        let exp_digits = count(end + 1 + sign);
        if exp_digits > 0 {
            end += 1 + sign + exp_digits;
        }
    }
    Some((text[..end].parse().ok()?, &text[end..]))
}

/// Converts a rounded float to `i64`, refusing values out of range or not finite.
fn to_i64(value: f64) -> Option<i64> {
    (value.is_finite() && value.abs() < 9.2e18).then_some(value as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Sizes parse like Patroni's `parse_int(value, 'B')`, including its examples.
    #[test]
    fn sizes_parse_like_patroni() {
        for (text, want) in [
            ("1024", Some(1024)),
            (" 16kB ", Some(16_384)),
            ("64MB", Some(67_108_864)),
            ("1GB", Some(1_073_741_824)),
            ("0x400", Some(1024)),
            ("010", Some(8)),
            ("1.5kB", Some(1536)),
            ("1e3", Some(1000)),
            ("-5", Some(-5)),
            ("16 kB", Some(16_384)),
            ("16kb", None),
            ("nonsense", None),
            ("", None),
            ("08", None),
        ] {
            assert_eq!(parse_bytes(text), want, "{text:?}");
        }
    }

    /// Durations parse like Patroni's `parse_int(value, 's')`.
    #[test]
    fn seconds_parse_like_patroni() {
        for (value, want) in [
            (json!(30), Some(30)),
            (json!("30"), Some(30)),
            (json!("1min"), Some(60)),
            (json!(" 2 h "), Some(7200)),
            (json!("1000 ms"), Some(1)),
            (json!("2500ms"), Some(2)),
            (json!(1.5), Some(2)),
            (json!("-5"), Some(-5)),
            (json!("1 fortnight"), None),
            (json!(true), None),
            (json!(null), None),
        ] {
            assert_eq!(parse_seconds(&value), want, "{value}");
        }
    }

    /// Integers in the dynamic configuration accept numbers and numeric strings.
    #[test]
    fn integers_accept_numbers_and_numeric_strings() {
        assert_eq!(parse_int(&json!(1_048_576)), Some(1_048_576));
        assert_eq!(parse_int(&json!("100")), Some(100));
        assert_eq!(parse_int(&json!(2.5)), Some(2));
        assert_eq!(parse_int(&json!("2.5")), Some(2));
        assert_eq!(parse_int(&json!("12 apples")), None);
        assert_eq!(parse_int(&json!(null)), None);
    }

    /// Booleans follow Patroni's spellings; anything else is unknown.
    #[test]
    fn booleans_follow_patroni_spellings() {
        assert_eq!(parse_bool(&json!("ON")), Some(true));
        assert_eq!(parse_bool(&json!(true)), Some(true));
        assert_eq!(parse_bool(&json!(0)), Some(false));
        assert_eq!(parse_bool(&json!("quorum")), None);
    }

    /// LSNs print as PostgreSQL prints them.
    #[test]
    fn lsns_print_as_postgres_prints_them() {
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(format_lsn(67_395_656), "0/4046048");
    }
}
