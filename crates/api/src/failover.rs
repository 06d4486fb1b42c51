//! Manual switchover and failover requests (rest-api.md §6.2): the body, Patroni's checks in
//! Patroni's order with its exact messages, and the possible outcomes.
//!
//! Everything here is pure: the handler in `routes/switchover.rs` reads the cluster, calls
//! [`validate`] and [`candidates`], then does the side effects (probe, write, poll) and turns
//! the [`Outcome`] into a reply.

use axum::http::StatusCode;
use jiff::Timestamp;
use patroni_core::{Cluster, Member};
use serde::Deserialize;
use serde_json::Value;

use crate::dynamic::{GlobalFlags, sync_matches};
use crate::reply::Reply;
use crate::schedule::{self, Schedule, ScheduleError};

/// Which endpoint was called (a failover naming a leader becomes a switchover).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// `POST /switchover`: away from a named leader, candidate optional, schedulable.
    Switchover,
    /// `POST /failover`: to a named candidate, allowed without a leader and while paused.
    Failover,
}

/// The JSON body. Unknown keys are ignored, as Patroni ignores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct FailoverBody {
    /// Current leader.
    #[serde(default)]
    pub leader: Option<String>,
    /// Member to promote.
    #[serde(default)]
    pub candidate: Option<String>,
    /// Older spelling of `candidate`.
    #[serde(default)]
    pub member: Option<String>,
    /// When to switch over (ISO 8601 with offset).
    #[serde(default)]
    pub scheduled_at: Option<String>,
}

/// A body that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// No `Content-Length` (411).
    MissingLength,
    /// Not a non-empty JSON object of the right types (400), and why.
    Invalid(String),
}

/// A validated request, ready to be checked against the cluster and written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The action after Patroni's conversion of a failover with a leader.
    pub action: Action,
    /// Leader to switch away from.
    pub leader: Option<String>,
    /// Member to promote.
    pub candidate: Option<String>,
    /// When, for a scheduled switchover.
    pub schedule: Option<Schedule>,
}

/// A refused request: status and Patroni's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// 400, 412 or 422.
    pub status: StatusCode,
    /// The plain-text answer.
    pub message: String,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The body was unusable.
    BadBody(BodyError),
    /// A check failed.
    Rejected(Rejection),
    /// The cluster could not be read from the DCS.
    DcsUnavailable,
    /// The `/failover` key could not be written (503).
    WriteFailed,
    /// A switchover was scheduled (202).
    Scheduled(Action),
    /// The lock moved to `new_leader` (200); `instead_of` names the requested candidate when
    /// another member won.
    Done {
        /// The action performed.
        action: Action,
        /// The new lock holder.
        new_leader: String,
        /// The requested candidate, when it is not `new_leader`.
        instead_of: Option<String>,
    },
    /// The key was cleared without a leader change (503).
    Failed(Action),
    /// Nothing decided within `seconds` (503).
    Unknown {
        /// The action.
        action: Action,
        /// How long the API waited.
        seconds: u64,
    },
}

// === impl Action ===

impl Action {
    /// `switchover` / `failover`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::Switchover => "switchover",
            Action::Failover => "failover",
        }
    }

    /// `Switchover` / `Failover`.
    fn title(self) -> &'static str {
        match self {
            Action::Switchover => "Switchover",
            Action::Failover => "Failover",
        }
    }

    /// `switched` / `failed`: Patroni's `action[:-4] + 'ed'`.
    fn past(self) -> &'static str {
        match self {
            Action::Switchover => "switched",
            Action::Failover => "failed",
        }
    }
}

// === impl Rejection ===

impl Rejection {
    /// A refusal with `status` and Patroni's `message`.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// A 400 refusal.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_possible(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, message)
    }
}

/// Reads a body as Patroni's `_read_json_content`: `Content-Length` required, a non-empty
/// JSON object; here also string-or-null fields.
///
/// # Errors
/// [`BodyError`] says why the body cannot be used.
pub(crate) fn parse_body(has_length: bool, bytes: &[u8]) -> Result<FailoverBody, BodyError> {
    if !has_length {
        return Err(BodyError::MissingLength);
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| BodyError::Invalid(format!("the body is not valid JSON: {e}")))?;
    match &value {
        Value::Object(map) if !map.is_empty() => {}
        _ => {
            return Err(BodyError::Invalid(
                "the body must be a non-empty JSON object".into(),
            ));
        }
    }
    serde_json::from_value(value).map_err(|e| BodyError::Invalid(format!("bad body: {e}")))
}

/// Patroni's checks 1–5 (everything that does not need the cluster members), in order.
///
/// # Errors
/// The first failed check, with Patroni's status and message.
pub(crate) fn validate(
    action: Action,
    body: FailoverBody,
    paused: bool,
    now: Timestamp,
) -> Result<Plan, Rejection> {
    let given = |v: Option<String>| v.filter(|s| !s.is_empty());
    let leader = given(body.leader);
    let candidate = given(body.candidate).or(given(body.member));
    let scheduled_at = given(body.scheduled_at);
    if action == Action::Failover && candidate.is_none() {
        return Err(Rejection::bad_request(
            "Failover could be performed only to a specific candidate",
        ));
    }
    if action == Action::Switchover && leader.is_none() {
        return Err(Rejection::bad_request(
            "Switchover could be performed only from a specific leader",
        ));
    }
    let schedule = match scheduled_at {
        None => None,
        Some(_) if action == Action::Failover => {
            return Err(Rejection::bad_request("Failover can't be scheduled"));
        }
        Some(_) if paused => {
            return Err(Rejection::bad_request(
                "Can't schedule switchover in the paused state",
            ));
        }
        Some(at) => Some(schedule::parse(&at, now).map_err(schedule_rejection)?),
    };
    if paused && candidate.is_none() {
        return Err(Rejection::bad_request(
            "Switchover is possible only to a specific candidate in a paused state",
        ));
    }
    let action = if action == Action::Failover && leader.is_some() {
        tracing::warn!(
            "received failover request with leader specified - performing switchover instead"
        );
        Action::Switchover
    } else {
        action
    };
    if leader == candidate {
        return Err(Rejection::bad_request(
            "Switchover target and source are the same",
        ));
    }
    Ok(Plan {
        action,
        leader,
        candidate,
        schedule,
    })
}

/// Patroni's messages for a scheduled time it refuses.
fn schedule_rejection(e: ScheduleError) -> Rejection {
    match e {
        ScheduleError::NoTimezone => {
            Rejection::bad_request("Timezone information is mandatory for the scheduled switchover")
        }
        ScheduleError::InPast => Rejection::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Cannot schedule switchover in the past",
        ),
        ScheduleError::Unparsable => Rejection::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601",
        ),
    }
}

/// Patroni's check 6 up to the probe (`is_failover_possible`): the members that could take
/// over an immediate request, which the backend then probes.
///
/// # Errors
/// A 412 with Patroni's message when no member qualifies.
pub(crate) fn candidates(
    plan: &Plan,
    cluster: &Cluster,
    flags: &GlobalFlags,
) -> Result<Vec<Member>, Rejection> {
    let name = plan.action.name();
    let leader_name = cluster.leader_name();
    if plan
        .leader
        .as_deref()
        .is_some_and(|l| Some(l) != leader_name)
    {
        return Err(Rejection::not_possible("leader name does not match"));
    }
    let strict_sync = flags.is_synchronous_mode() && !flags.is_quorum_commit_mode();
    let members: Vec<Member> = if let Some(candidate) = &plan.candidate {
        if plan.action == Action::Switchover
            && strict_sync
            && !sync_matches(&cluster.sync, candidate)
        {
            return Err(Rejection::not_possible(
                "candidate name does not match with sync_standby",
            ));
        }
        let found: Vec<Member> = cluster
            .members
            .iter()
            .filter(|m| &m.name == candidate)
            .cloned()
            .collect();
        if found.is_empty() {
            return Err(Rejection::not_possible("candidate does not exists"));
        }
        found
    } else if strict_sync {
        let found: Vec<Member> = cluster
            .members
            .iter()
            .filter(|m| sync_matches(&cluster.sync, &m.name))
            .cloned()
            .collect();
        if found.is_empty() {
            return Err(Rejection::not_possible(format!(
                "{name} is not possible: can not find sync_standby"
            )));
        }
        found
    } else {
        let found: Vec<Member> = cluster
            .members
            .iter()
            .filter(|m| {
                leader_name.is_none()
                    || (Some(m.name.as_str()) != leader_name && m.data.api_url.is_some())
            })
            .cloned()
            .collect();
        if found.is_empty() {
            return Err(Rejection::not_possible(format!(
                "{name} is not possible: cluster does not have members except leader"
            )));
        }
        found
    };
    Ok(members)
}

/// The 412 when the probe found no member able to take over.
pub(crate) fn no_good_candidates(action: Action) -> Rejection {
    Rejection::not_possible(format!(
        "{} is not possible: no good candidates have been found",
        action.name()
    ))
}

impl From<Rejection> for Reply {
    fn from(r: Rejection) -> Self {
        Reply::text(r.status, r.message)
    }
}

impl From<BodyError> for Reply {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::MissingLength => Reply::Error(StatusCode::LENGTH_REQUIRED, None),
            BodyError::Invalid(why) => Reply::Error(StatusCode::BAD_REQUEST, Some(why)),
        }
    }
}

impl From<Outcome> for Reply {
    fn from(outcome: Outcome) -> Self {
        let unavailable = StatusCode::SERVICE_UNAVAILABLE;
        match outcome {
            Outcome::BadBody(e) => e.into(),
            Outcome::Rejected(r) => r.into(),
            Outcome::DcsUnavailable => Reply::Error(
                unavailable,
                Some("failed to read the cluster from the DCS".into()),
            ),
            Outcome::WriteFailed => {
                Reply::text(unavailable, "failed to write failover key into DCS")
            }
            Outcome::Scheduled(action) => Reply::text(
                StatusCode::ACCEPTED,
                format!("{} scheduled", action.title()),
            ),
            Outcome::Done {
                action,
                new_leader,
                instead_of: None,
            } => Reply::text(
                StatusCode::OK,
                format!("Successfully {} over to \"{new_leader}\"", action.past()),
            ),
            Outcome::Done {
                action,
                new_leader,
                instead_of: Some(candidate),
            } => {
                let mut past = action.past().to_owned();
                past[..1].make_ascii_uppercase();
                Reply::text(
                    StatusCode::OK,
                    format!("{past} over to \"{new_leader}\" instead of \"{candidate}\""),
                )
            }
            Outcome::Failed(action) => {
                Reply::text(unavailable, format!("{} failed", action.title()))
            }
            Outcome::Unknown { action, seconds } => Reply::text(
                unavailable,
                format!(
                    "{} status unknown after {seconds} seconds; operation may still be in progress",
                    action.title()
                ),
            ),
        }
    }
}
