//! Scheduled times (`scheduled_at` of a switchover): parsing with Patroni's three outcomes and
//! formatting as Python's `datetime.isoformat()`, the form written to the `/failover` key.
//!
//! Patroni parses with `dateutil`, which is more lenient than ISO 8601; here any RFC 3339 /
//! ISO 8601 / Temporal timestamp is accepted (`T` or space separator, `Z` or numeric offset,
//! date only). A time without an offset is refused, as in Patroni.

use jiff::Timestamp;
use jiff::civil::Time;
use jiff::fmt::temporal::Pieces;

/// A parsed, validated scheduled time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schedule {
    /// The instant.
    pub at: Timestamp,
    /// The time as Python's `isoformat()` writes it, keeping the given offset:
    /// `2024-05-01T12:00:00+02:00`, with `.ffffff` only when there are microseconds.
    pub iso: String,
}

/// Why a scheduled time was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScheduleError {
    /// The time has no offset (HTTP 400 in Patroni).
    NoTimezone,
    /// The time is before now (HTTP 422).
    InPast,
    /// The text is not a timestamp (HTTP 422).
    Unparsable,
}

/// Parses `text` and checks it is not before `now`.
///
/// # Errors
/// [`ScheduleError`] says which of Patroni's checks failed.
pub(crate) fn parse(text: &str, now: Timestamp) -> Result<Schedule, ScheduleError> {
    let pieces = Pieces::parse(text.trim()).map_err(|_| ScheduleError::Unparsable)?;
    let offset = pieces
        .to_numeric_offset()
        .ok_or(ScheduleError::NoTimezone)?;
    let time = pieces.time().unwrap_or(Time::midnight());
    let civil = pieces.date().to_datetime(time);
    let at = offset
        .to_timestamp(civil)
        .map_err(|_| ScheduleError::Unparsable)?;
    if at < now {
        return Err(ScheduleError::InPast);
    }
    let micros = time.subsec_nanosecond() / 1000;
    let fraction = if micros == 0 {
        String::new()
    } else {
        format!(".{micros:06}")
    };
    let seconds = offset.seconds();
    let sign = if seconds < 0 { '-' } else { '+' };
    let abs = seconds.unsigned_abs();
    let iso = format!(
        "{}T{:02}:{:02}:{:02}{fraction}{sign}{:02}:{:02}",
        pieces.date(),
        time.hour(),
        time.minute(),
        time.second(),
        abs / 3600,
        abs % 3600 / 60,
    );
    Ok(Schedule { at, iso })
}

/// `text` in `isoformat()` form when it parses (whatever its time), else `text` unchanged.
pub(crate) fn normalize(text: &str) -> String {
    parse(text, Timestamp::MIN).map_or_else(|_| text.to_owned(), |s| s.iso)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-05-01T10:00:00Z".parse().expect("valid timestamp")
    }

    /// Accepted times are written as Python's `isoformat()`, keeping their offset.
    #[test]
    fn accepted_times_are_written_as_python_isoformat() {
        for (text, iso) in [
            ("2024-05-01T12:00:00+02:00", "2024-05-01T12:00:00+02:00"),
            ("2024-05-01 11:30Z", "2024-05-01T11:30:00+00:00"),
            (
                "2024-05-02T00:00:00.25-05:30",
                "2024-05-02T00:00:00.250000-05:30",
            ),
        ] {
            assert_eq!(parse(text, now()).map(|s| s.iso), Ok(iso.to_owned()));
        }
    }

    /// Each refusal has Patroni's reason.
    #[test]
    fn refusals_have_patronis_reasons() {
        assert_eq!(
            parse("2024-05-01T12:00:00", now()),
            Err(ScheduleError::NoTimezone)
        );
        assert_eq!(
            parse("2024-05-01T09:00:00Z", now()),
            Err(ScheduleError::InPast)
        );
        assert_eq!(parse("tomorrow", now()), Err(ScheduleError::Unparsable));
        assert_eq!(parse("", now()), Err(ScheduleError::Unparsable));
    }

    /// Stored times are shown normalised, and unparsable ones as they are.
    #[test]
    fn stored_times_are_normalised_when_possible() {
        assert_eq!(normalize("2024-05-01T11:30Z"), "2024-05-01T11:30:00+00:00");
        assert_eq!(normalize("garbage"), "garbage");
    }
}
