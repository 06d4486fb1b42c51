//! Scalar coercions that behave exactly like Patroni's `parse_bool`, `strtol`, `strtod`,
//! `parse_int` and `parse_real` (`patroni/utils.py`).
//!
//! Environment variables are always strings, and YAML written by hand often quotes numbers, so
//! every typed setting goes through these functions. Keeping them bit-for-bit compatible with
//! Patroni means a value that Patroni accepts is accepted here with the same meaning (for example
//! `"0644"` is octal, `"30min"` is 1800 seconds when the base unit is seconds, and `"4097.5kB"`
//! rounds half to even).
//!
//! Everything here is pure and total: no input can panic.

/// Parses a boolean the way Patroni's `parse_bool` does.
///
/// Case-insensitive `on`, `true`, `yes`, `1` are `true`; `off`, `false`, `no`, `0` are `false`;
/// anything else is `None`.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// Extracts a leading C-style integer (hex `0x..`, octal `0..` or decimal) from `value`, like
/// `strtol(3)` with base 0. Returns the number and the rest of the trimmed string, or `None` and
/// the trimmed string when there is no number.
pub fn strtol(value: &str) -> (Option<i64>, &str) {
    let value = value.trim();
    let (sign, digits_start) = match value.as_bytes().first() {
        Some(b'-') => (-1, 1),
        Some(b'+') => (1, 1),
        _ => (1, 0),
    };
    let body = &value[digits_start..];
    let (radix, start, len) = if let Some(hex) = body.strip_prefix("0x") {
        let hex = hex.bytes().take_while(u8::is_ascii_hexdigit).count();
        if hex > 0 { (16, 2, hex) } else { (8, 0, 1) }
    } else if let Some(oct) = body.strip_prefix('0') {
        let oct = oct
            .bytes()
            .take_while(|b| (b'0'..=b'7').contains(b))
            .count();
        (8, 0, 1 + oct)
    } else {
        let dec = body.bytes().take_while(u8::is_ascii_digit).count();
        if dec == 0 {
            return (None, value);
        }
        (10, 0, dec)
    };
    let end = digits_start + start + len;
    let number = i64::from_str_radix(&body[start..start + len], radix)
        .ok()
        .and_then(|n| n.checked_mul(sign));
    match number {
        Some(n) => (Some(n), &value[end..]),
        None => (None, value),
    }
}

/// Extracts a leading floating point number from `value`, like `strtod(3)`. Returns the number
/// and the rest of the trimmed string, or `None` and the trimmed string.
pub fn strtod(value: &str) -> (Option<f64>, &str) {
    let value = value.trim();
    let bytes = value.as_bytes();
    let mut i = usize::from(matches!(bytes.first(), Some(b'-' | b'+')));
    let int_digits = count_digits(&bytes[i..]);
    let mut end = i + int_digits;
    if bytes.get(end) == Some(&b'.') && count_digits(&bytes[end + 1..]) > 0 {
        end += 1 + count_digits(&bytes[end + 1..]);
    } else if int_digits == 0 {
        return (None, value);
    }
    i = end;
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(bytes.get(j), Some(b'-' | b'+')) {
            j += 1;
        }
        let exp_digits = count_digits(&bytes[j..]);
        if exp_digits > 0 {
            end = j + exp_digits;
        }
    }
    match value[..end].parse::<f64>() {
        Ok(n) => (Some(n), &value[end..]),
        Err(_) => (None, value),
    }
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// Memory units, largest first, as multiples of one byte.
const MEMORY_UNITS: [(&str, f64); 5] = [
    ("TB", 1024.0 * 1024.0 * 1024.0 * 1024.0),
    ("GB", 1024.0 * 1024.0 * 1024.0),
    ("MB", 1024.0 * 1024.0),
    ("kB", 1024.0),
    ("B", 1.0),
];

/// Time units, largest first, as multiples of one microsecond.
const TIME_UNITS: [(&str, f64); 6] = [
    ("d", 86_400_000_000.0),
    ("h", 3_600_000_000.0),
    ("min", 60_000_000.0),
    ("s", 1_000_000.0),
    ("ms", 1_000.0),
    ("us", 1.0),
];

/// Converts `value` expressed in `unit` into `base_unit` (which may carry a multiplier, such as
/// `8kB` or `16MB`), like Patroni's `convert_to_base_unit`. Returns `None` when either unit is
/// unknown or they measure different things.
pub fn convert_to_base_unit(value: f64, unit: &str, base_unit: &str) -> Option<f64> {
    let (multiplier, base_unit) = strtol(base_unit);
    let multiplier = multiplier.unwrap_or(1) as f64;
    let table: &[(&str, f64)] = match base_unit {
        "B" | "kB" | "MB" => &MEMORY_UNITS,
        "ms" | "s" | "min" => &TIME_UNITS,
        _ => return None,
    };
    let factor = |name: &str| table.iter().find(|(n, _)| *n == name).map(|(_, f)| *f);
    let position = table.iter().position(|(n, _)| *n == unit)?;
    let base_factor = factor(base_unit)?;
    let mut converted = value * (table[position].1 / base_factor) / multiplier;
    // Like Patroni (and Postgres), round to a whole number of the next smaller unit.
    if let Some((_, smaller)) = table.get(position + 1) {
        let step = smaller / base_factor;
        converted = (converted / step).round_ties_even() * step;
    }
    Some(converted)
}

/// Parses an integer setting like Patroni's `parse_int`: C-style integers, floats rounded half to
/// even, and values with a unit (`30min`, `16MB`) converted into `base_unit` when one is given.
pub fn parse_int(value: &str, base_unit: Option<&str>) -> Option<i64> {
    let (int, rest) = strtol(value);
    if rest.starts_with(['.', 'e', 'E']) {
        let (float, unit) = strtod(value);
        let float = float?;
        let unit = unit.trim();
        let number = if unit.is_empty() {
            float
        } else {
            convert_to_base_unit(float, unit, base_unit?)?
        };
        return float_to_i64(number.round_ties_even());
    }
    let int = int?;
    let unit = rest.trim();
    if unit.is_empty() {
        return Some(int);
    }
    float_to_i64(convert_to_base_unit(int as f64, unit, base_unit?)?.round_ties_even())
}

/// Parses a real setting like Patroni's `parse_real`.
pub fn parse_real(value: &str, base_unit: Option<&str>) -> Option<f64> {
    let (number, unit) = strtod(value);
    let number = number?;
    let unit = unit.trim();
    if unit.is_empty() {
        Some(number)
    } else {
        convert_to_base_unit(number, unit, base_unit?)
    }
}

fn float_to_i64(value: f64) -> Option<i64> {
    // i64::MAX as f64 rounds up to 2^63, which is out of range, hence the strict comparison.
    (value.is_finite() && value >= i64::MIN as f64 && value < i64::MAX as f64)
        .then_some(value as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The doctest examples from Patroni's `utils.py` hold here too.
    #[test]
    fn matches_patroni_doctests() {
        assert_eq!(strtol("0"), (Some(0), ""));
        assert_eq!(strtol(" +0x400MB"), (Some(1024), "MB"));
        assert_eq!(strtol(" -070d"), (Some(-56), "d"));
        assert_eq!(strtol(" d "), (None, "d"));
        assert_eq!(strtol(" 1 d "), (Some(1), " d"));
        assert_eq!(strtod(" A "), (None, "A"));
        assert_eq!(strtod("1 A "), (Some(1.0), " A"));
        assert_eq!(strtod("1.5A"), (Some(1.5), "A"));
        assert_eq!(strtod("8.325e-10A B C"), (Some(8.325e-10), "A B C"));
        assert_eq!(parse_int("1", None), Some(1));
        assert_eq!(parse_int(" 0x400 MB ", Some("16384kB")), Some(64));
        assert_eq!(parse_int("1MB", Some("kB")), Some(1024));
        assert_eq!(parse_int("1000 ms", Some("s")), Some(1));
        assert_eq!(parse_int("1TB", Some("GB")), None);
        assert_eq!(parse_int("nonsense", None), None);
        assert_eq!(parse_int("nonsense", Some("kB")), None);
        assert_eq!(parse_int("6GB", Some("16MB")), Some(384));
        assert_eq!(parse_int("4097.4kB", Some("kB")), Some(4097));
        assert_eq!(parse_int("4097.5kB", Some("kB")), Some(4098));
        assert_eq!(parse_real(" +0.0005 ", None), Some(0.0005));
        assert_eq!(parse_real("0.0005ms", Some("ms")), Some(0.0));
        assert_eq!(parse_real("0.00051ms", Some("ms")), Some(0.001));
    }

    /// Octal, units without a base unit, and floats behave like Python.
    #[test]
    fn parses_integers_like_python() {
        assert_eq!(parse_int("0644", None), Some(420));
        assert_eq!(parse_int("30s", None), None);
        assert_eq!(parse_int("30min", Some("s")), Some(1800));
        assert_eq!(parse_int("10.5", None), Some(10));
        assert_eq!(parse_int("11.5", None), Some(12));
        assert_eq!(parse_int("1e3", None), Some(1000));
        assert_eq!(parse_int("-1", None), Some(-1));
        assert_eq!(parse_int("08", None), None);
        assert_eq!(parse_int("", None), None);
        assert_eq!(parse_int("99999999999999999999", None), None);
    }

    /// Only Patroni's six spellings are booleans.
    #[test]
    fn parses_booleans_like_patroni() {
        for t in ["on", "TRUE", "Yes", "1"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["off", "False", "NO", "0"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for n in ["", "y", "2", "enabled"] {
            assert_eq!(parse_bool(n), None, "{n}");
        }
    }
}
