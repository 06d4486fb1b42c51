//! `GET /failsafe` and `POST /failsafe` (failsafe mode): the topology the leader published,
//! and a primary's call, through a DCS outage, asking this member to keep treating it as the
//! leader.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::auth::AuthorizedIgnoringMembers;
use crate::backend::{Backend, FailsafeCall};
use crate::body::read_object;
use crate::dynamic::GlobalFlags;
use crate::failover::BodyError;
use crate::reply::Reply;
use crate::routes::has_length;
use crate::server::AppState;

/// `GET /failsafe`: 200 with `{member: api_url}` as last read from the DCS (or written with
/// the lock), 502 when there is none (Patroni: not a dict).
pub(crate) async fn get<B: Backend>(State(state): State<AppState<B>>) -> Reply {
    match state.backend.ha().failsafe_topology {
        Some(topology) => Reply::json(StatusCode::OK, &topology),
        None => Reply::Error(StatusCode::BAD_GATEWAY, None),
    }
}

/// `POST /failsafe`: 502 unless failsafe mode is on; 200 `Accepted` with this member's WAL
/// position in the `lsn` header, or 500 with the refusal (`Running as a leader`). The access
/// check leaves out the members' hosts, as Patroni's does: they are listed in the DCS, which
/// is away when this is called.
pub(crate) async fn post<B: Backend>(
    _: AuthorizedIgnoringMembers,
    State(state): State<AppState<B>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ha = state.backend.ha();
    let flags = GlobalFlags::resolve(state.backend.cached_cluster().as_ref(), &ha.global);
    if !flags.failsafe_mode {
        return Reply::Error(StatusCode::BAD_GATEWAY, None).into_response();
    }
    let call = match read_object(has_length(&headers), &body, false)
        .and_then(|o| parse_call(&o.into_map()))
    {
        Ok(call) => call,
        Err(e) => return Reply::from(e).into_response(),
    };
    match state.backend.failsafe(call) {
        Ok(lsn) => {
            let mut response = Reply::text(StatusCode::OK, "Accepted").into_response();
            if let Some(lsn) = lsn {
                response.headers_mut().insert("lsn", HeaderValue::from(lsn));
            }
            response
        }
        Err(refusal) => Reply::text(StatusCode::INTERNAL_SERVER_ERROR, refusal).into_response(),
    }
}

/// The call's fields as Patroni's `Failsafe.update` reads them: `name`, `conn_url` and
/// `api_url` required, `slots` optional (`{name: lsn}`).
fn parse_call(body: &Map<String, Value>) -> Result<FailsafeCall, BodyError> {
    let text = |key: &str| -> Result<String, BodyError> {
        match body.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(BodyError::Invalid(format!("{key} must be a string"))),
            None => Err(BodyError::Invalid(format!("{key} is required"))),
        }
    };
    let slots = match body.get("slots") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(
            map.iter()
                .map(|(k, v)| {
                    v.as_u64().map(|lsn| (k.clone(), lsn)).ok_or_else(|| {
                        BodyError::Invalid(format!("slots.{k} must be a non-negative integer"))
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err(BodyError::Invalid("slots must be an object".into())),
    };
    Ok(FailsafeCall {
        name: text("name")?,
        conn_url: Some(text("conn_url")?),
        api_url: Some(text("api_url")?),
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    /// A call as Patroni's primary sends it is read whole; missing or mistyped fields are
    /// named.
    #[test]
    fn calls_are_read_as_patroni_sends_them() {
        let call = parse_call(&map(json!({
            "name": "pg-0",
            "conn_url": "postgres://10.0.0.1:5432/postgres",
            "api_url": "http://10.0.0.1:8008/patroni",
            "slots": {"pg_1": 50331968, "pg_0": 50331968},
        })))
        .expect("valid");
        assert_eq!(call.name, "pg-0");
        assert_eq!(call.slots.map(|s| s.len()), Some(2));
        let err = |v| match parse_call(&map(v)) {
            Err(BodyError::Invalid(why)) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            err(json!({"conn_url": "x", "api_url": "y"})),
            "name is required"
        );
        assert_eq!(
            err(json!({"name": 1, "conn_url": "x", "api_url": "y"})),
            "name must be a string"
        );
        assert_eq!(
            err(json!({"name": "a", "conn_url": "x", "api_url": "y", "slots": {"s": -1}})),
            "slots.s must be a non-negative integer"
        );
    }
}
