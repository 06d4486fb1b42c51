//! `POST /restart` requests (rest-api.md §6.1): Patroni's filter checks, in the order the
//! client wrote the keys, with its statuses and messages, turned into a [`RestartRequest`].
//!
//! Pure: the handler in `routes/restart.rs` reads the body and the cluster, calls
//! [`validate`], then asks the backend to restart or to schedule.

use std::time::Duration;

use axum::http::StatusCode;
use jiff::Timestamp;
use patroni_core::Role;
use serde_json::{Map, Value};

use crate::backend::{RestartOutcome, RestartRequest};
use crate::body::Object;
use crate::failover::Rejection;
use crate::patch::py_str;
use crate::reply::Reply;
use crate::schedule::{self, ScheduleError};
use crate::units::parse_seconds;

/// Patroni's message for a role filter it does not know (`master` is refused since 4.0).
const BAD_ROLE: &str = "PostgreSQL role should be either primary, standby_leader, or replica";

/// Patroni's checks of a restart body, first failure wins:
/// paused with `schedule` → 500; then each key in the client's order: `schedule` (400 no
/// offset, 422 past or unparsable), `role`, `postgres_version`, `timeout` (400), any other key
/// but `restart_pending` → 400 `Unknown filter for the scheduled restart: <k>`.
///
/// `restart_pending` counts when *present*, whatever its value: Patroni tests
/// `'restart_pending' in request`.
///
/// # Errors
/// The first failed check, with Patroni's status and message.
pub(crate) fn validate(
    body: Object,
    paused: bool,
    now: Timestamp,
) -> Result<RestartRequest, Rejection> {
    if paused && body.0.iter().any(|(k, _)| k == "schedule") {
        return Err(Rejection::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Can't schedule restart in the paused state",
        ));
    }
    let mut request = RestartRequest::default();
    let mut document = Map::new();
    for (key, value) in body.0 {
        let stored = match key.as_str() {
            "schedule" => {
                let text = value.as_str().ok_or(ScheduleError::Unparsable);
                let schedule = text
                    .and_then(|t| schedule::parse(t, now))
                    .map_err(schedule_rejection)?;
                request.schedule = Some(schedule.at);
                Value::String(schedule.iso)
            }
            "role" => {
                let role = value
                    .as_str()
                    .filter(|r| ["primary", "standby_leader", "replica"].contains(r))
                    .and_then(|r| r.parse::<Role>().ok())
                    .ok_or_else(|| Rejection::bad_request(BAD_ROLE))?;
                request.role = Some(role);
                value
            }
            "postgres_version" => {
                let version = postgres_version_to_int(&value).map_err(Rejection::bad_request)?;
                request.postgres_version = Some(version);
                value
            }
            "timeout" => {
                let seconds = parse_seconds(&value)
                    .and_then(|s| u64::try_from(s).ok())
                    .filter(|s| *s > 0)
                    .ok_or_else(|| {
                        Rejection::bad_request("Timeout should be a positive number of seconds")
                    })?;
                request.timeout = Some(Duration::from_secs(seconds));
                Value::from(seconds)
            }
            "restart_pending" => {
                request.restart_pending = true;
                value
            }
            other => {
                return Err(Rejection::bad_request(format!(
                    "Unknown filter for the scheduled restart: {other}"
                )));
            }
        };
        document.insert(key, stored);
    }
    request.document = document;
    Ok(request)
}

/// Patroni's `postgres_version_to_int`: `X.Y.Z`, or `X.Y` from 10 on, as `server_version`
/// (`9.6.3` → `90603`, `15.4` → `150004`).
///
/// # Errors
/// Patroni's message: `Invalid PostgreSQL version: <v>` when a part is not a number,
/// `Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: <v>` for the wrong shape.
pub(crate) fn postgres_version_to_int(value: &Value) -> Result<u32, String> {
    let text = py_str(value);
    let invalid = || format!("Invalid PostgreSQL version: {text}");
    let Value::String(version) = value else {
        return Err(invalid());
    };
    let mut parts = version
        .split('.')
        .map(|p| p.trim().parse::<u32>().map_err(|_| invalid()))
        .collect::<Result<Vec<u32>, String>>()?;
    let two_old = parts.len() == 2 && parts[0] < 10;
    if parts.len() < 2 || two_old || parts.len() > 3 {
        return Err(format!(
            "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: {text}"
        ));
    }
    if parts.len() == 2 {
        parts.insert(1, 0);
    }
    let digits: String = parts.iter().map(|p| format!("{p:02}")).collect();
    digits.parse().map_err(|_| invalid())
}

/// Patroni's messages for a restart time it refuses.
fn schedule_rejection(e: ScheduleError) -> Rejection {
    match e {
        ScheduleError::NoTimezone => {
            Rejection::bad_request("Timezone information is mandatory for the scheduled restart")
        }
        ScheduleError::InPast => Rejection::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Cannot schedule restart in the past",
        ),
        ScheduleError::Unparsable => Rejection::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601",
        ),
    }
}

impl From<RestartOutcome> for Reply {
    fn from(outcome: RestartOutcome) -> Self {
        let unavailable = StatusCode::SERVICE_UNAVAILABLE;
        match outcome {
            RestartOutcome::Restarted => Reply::text(StatusCode::OK, "restarted successfully"),
            RestartOutcome::ConditionsNotSatisfied => {
                Reply::text(unavailable, "restart conditions are not satisfied")
            }
            RestartOutcome::InProgress(action) => {
                Reply::text(unavailable, format!("{action} already in progress"))
            }
            RestartOutcome::StillStarting => Reply::text(unavailable, "postgres is still starting"),
            RestartOutcome::Failed => Reply::text(unavailable, "restart failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-05-01T10:00:00Z".parse().expect("valid timestamp")
    }

    fn body(v: &str) -> Object {
        serde_json::from_str(v).expect("an object")
    }

    fn check(v: &str, paused: bool) -> Result<RestartRequest, (u16, String)> {
        validate(body(v), paused, now()).map_err(|r| (r.status.as_u16(), r.message))
    }

    /// Versions convert as Patroni's `postgres_version_to_int` and its doctests.
    #[test]
    fn versions_convert_like_patroni() {
        for (v, want) in [
            (json!("9.5.3"), Ok(90_503)),
            (json!("9.6.3"), Ok(90_603)),
            (json!("10.1"), Ok(100_001)),
            (json!("15.4"), Ok(150_004)),
            (json!("16.0.1"), Ok(160_001)),
            (
                json!("10"),
                Err("Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 10"),
            ),
            (
                json!("9.6"),
                Err("Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 9.6"),
            ),
            (json!("a.b.c"), Err("Invalid PostgreSQL version: a.b.c")),
            (json!(15), Err("Invalid PostgreSQL version: 15")),
            (json!(""), Err("Invalid PostgreSQL version: ")),
        ] {
            assert_eq!(
                postgres_version_to_int(&v),
                want.map_err(str::to_owned),
                "{v}"
            );
        }
    }

    /// A valid body becomes the request, and the document Patroni would show.
    #[test]
    fn valid_body_becomes_a_request_and_document() {
        let r = check(
            r#"{"schedule":"2024-05-01 12:00+02:00","role":"replica","postgres_version":"15.4",
                "timeout":"1min","restart_pending":false}"#,
            false,
        )
        .expect("valid");
        assert_eq!(r.role, Some(Role::Replica));
        assert_eq!(r.postgres_version, Some(150_004));
        assert_eq!(r.timeout, Some(Duration::from_secs(60)));
        assert!(r.restart_pending, "present counts, as in Patroni");
        assert_eq!(r.schedule, "2024-05-01T10:00:00Z".parse().ok());
        assert_eq!(
            Value::Object(r.document),
            json!({"schedule": "2024-05-01T12:00:00+02:00", "role": "replica",
                   "postgres_version": "15.4", "timeout": 60, "restart_pending": false})
        );
        assert_eq!(check("{}", true), Ok(RestartRequest::default()));
    }

    /// Each refusal has Patroni's status and message; the first bad key wins.
    #[test]
    fn refusals_have_patronis_statuses_and_messages() {
        let bad_version = "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 9.6";
        let timeout = "Timeout should be a positive number of seconds";
        let unparsable = "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601";
        for (v, paused, status, message) in [
            (
                r#"{"role":"x","schedule":"2030-01-01T00:00Z"}"#,
                true,
                500,
                "Can't schedule restart in the paused state",
            ),
            (
                r#"{"schedule":"2030-01-01T00:00"}"#,
                false,
                400,
                "Timezone information is mandatory for the scheduled restart",
            ),
            (
                r#"{"schedule":"2020-01-01T00:00Z"}"#,
                false,
                422,
                "Cannot schedule restart in the past",
            ),
            (r#"{"schedule":"soon"}"#, false, 422, unparsable),
            (r#"{"schedule":42}"#, false, 422, unparsable),
            (r#"{"role":"master"}"#, false, 400, BAD_ROLE),
            (r#"{"role":1}"#, false, 400, BAD_ROLE),
            (r#"{"postgres_version":"9.6"}"#, false, 400, bad_version),
            (r#"{"timeout":0}"#, false, 400, timeout),
            (r#"{"timeout":"-1"}"#, false, 400, timeout),
            (r#"{"timeout":"soon"}"#, false, 400, timeout),
            (r#"{"timeout":true}"#, false, 400, timeout),
            (
                r#"{"foo":1,"role":"x"}"#,
                false,
                400,
                "Unknown filter for the scheduled restart: foo",
            ),
            (r#"{"role":"x","foo":1}"#, false, 400, BAD_ROLE),
        ] {
            assert_eq!(check(v, paused), Err((status, message.to_owned())), "{v}");
        }
    }
}
