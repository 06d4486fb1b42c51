//! Reading a switchover's `scheduled_at` and comparing it with the wall clock.
//!
//! `scheduled_at` is written by the REST API and `patronictl` as Python's
//! `isoformat()` with an offset (`2025-03-01T10:00:00.123456+00:00`). A value
//! without an offset, or one that does not parse, is invalid: Patroni then
//! deletes the failover key, and so does the decision.

use std::time::Duration;

/// Seconds from the wall clock (`now`, since the Unix epoch) until
/// `scheduled_at`; negative when it has passed. `None` when `scheduled_at`
/// is not an ISO 8601 timestamp with an offset.
pub(super) fn seconds_until(scheduled_at: &str, now: Duration) -> Option<f64> {
    let at = parse_micros(scheduled_at)?;
    let now = i64::try_from(now.as_micros()).ok()?;
    // Precision loss only beyond 2^53 µs (~285 years): irrelevant here.
    #[allow(clippy::cast_precision_loss)]
    Some(at.checked_sub(now)? as f64 / 1e6)
}

/// Microseconds since the Unix epoch of `YYYY-MM-DD[T ]HH:MM[:SS[.frac]]`
/// followed by `Z` or `±HH[:MM]`.
fn parse_micros(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = (s.get(..10)?, s.get(10..)?);
    let sep = rest.chars().next()?;
    if sep != 'T' && sep != 't' && sep != ' ' {
        return None;
    }
    let rest = &rest[1..];
    let mut d = date.split('-');
    let year: i64 = num(d.next()?, 4)?;
    let month: i64 = num(d.next()?, 2)?;
    let day: i64 = num(d.next()?, 2)?;
    if d.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Split the time from the offset at the first 'Z', '+' or '-'.
    let split = rest.find(['Z', 'z', '+', '-'])?;
    let (time, offset) = rest.split_at(split);
    let (clock, frac) = match time.split_once('.') {
        Some((c, f)) => (c, Some(f)),
        None => (time, None),
    };
    let mut t = clock.split(':');
    let hour: i64 = num(t.next()?, 2)?;
    let minute: i64 = num(t.next()?, 2)?;
    let second: i64 = match t.next() {
        Some(sec) => num(sec, 2)?,
        None => 0,
    };
    if t.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let micros = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let padded = format!("{f:0<6}");
            padded.get(..6)?.parse::<i64>().ok()?
        }
        Some(_) => return None,
    };
    let offset_secs = parse_offset(offset)?;
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_secs;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

/// `Z` → 0; `±HH[:MM]` or `±HHMM` → seconds east of UTC.
fn parse_offset(s: &str) -> Option<i64> {
    if s.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let body = s.get(1..)?.replace(':', "");
    let (h, m) = match body.len() {
        2 => (num(&body, 2)?, 0),
        4 => (num(body.get(..2)?, 2)?, num(body.get(2..)?, 2)?),
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h * 3_600 + m * 60))
}

/// A decimal of exactly `width` digits.
fn num(s: &str, width: usize) -> Option<i64> {
    (s.len() == width && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python's isoformat output parses, with its offset applied.
    #[test]
    fn python_isoformat_parses_with_offset() {
        // 2025-03-01T10:00:00Z is 1740823200.
        assert_eq!(
            parse_micros("2025-03-01T10:00:00.123456+00:00"),
            Some(1_740_823_200_123_456)
        );
        assert_eq!(
            parse_micros("2025-03-01T12:00:00+02:00"),
            Some(1_740_823_200_000_000)
        );
        assert_eq!(
            parse_micros("2025-03-01 10:00Z"),
            Some(1_740_823_200_000_000)
        );
        assert_eq!(
            parse_micros("1970-01-01T00:00:00-0100"),
            Some(3_600_000_000)
        );
    }

    /// Values without an offset or with garbage are invalid.
    #[test]
    fn naive_or_garbage_timestamps_are_invalid() {
        for bad in [
            "2025-03-01T10:00:00",
            "2025-13-01T10:00:00Z",
            "tomorrow",
            "",
            "2025-03-01T10:00:00.+00:00",
            "2025-03-01T25:00:00Z",
        ] {
            assert_eq!(parse_micros(bad), None, "{bad:?}");
        }
    }

    /// The distance to the schedule is signed seconds.
    #[test]
    fn seconds_until_is_signed() {
        let now = Duration::from_secs(1_740_823_200);
        assert_eq!(seconds_until("2025-03-01T10:00:30+00:00", now), Some(30.0));
        assert_eq!(seconds_until("2025-03-01T09:59:00+00:00", now), Some(-60.0));
    }
}
