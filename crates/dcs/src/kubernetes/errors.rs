//! How a `kube::Error` becomes a backend-neutral [`Error`]: the one place that knows which
//! API answers are a lost compare-and-swap (409), which are refusals, and which mean the API
//! server is not reachable. The `kube::Error` stays the `source`, so a caller in this module
//! that needs the HTTP status reads it back with [`http_status`].

use crate::Error;

/// A failure of one request, not retried: an API answer is [`refused`], anything else
/// (connection, timeout) is [`Error::Unreachable`].
pub(crate) fn classify(what: &str, source: kube::Error) -> Error {
    match source {
        kube::Error::Api(_) | kube::Error::SerdeError(_) => refused(what, source),
        source => Error::Unreachable {
            what: what.to_string(),
            source: Box::new(source),
        },
    }
}

/// An answer retrying will not fix: 409 is [`Error::Conflict`], the rest (403, 404, 422, an
/// object that does not serialize, …) [`Error::Refused`].
pub(crate) fn refused(what: &str, source: kube::Error) -> Error {
    let what = what.to_string();
    match &source {
        kube::Error::Api(s) if s.code == 409 => Error::Conflict {
            what,
            source: Box::new(source),
        },
        _ => Error::Refused {
            what,
            source: Box::new(source),
        },
    }
}

/// The API server gave no answer in time, or only retriable ones, until the budget ran out.
pub(crate) fn unreachable(what: &str, source: kube::Error) -> Error {
    Error::Unreachable {
        what: what.to_string(),
        source: Box::new(source),
    }
}

/// The HTTP status of the API answer behind `e`, if it came from one (also when retrying it
/// ran out of time: a code listed in `retriable_http_codes` ends as unreachable).
pub(crate) fn http_status(e: &Error) -> Option<u16> {
    let source = match e {
        Error::Unreachable { source, .. }
        | Error::Conflict { source, .. }
        | Error::Refused { source, .. } => source,
        Error::NotReady(_) | Error::Config { .. } => return None,
    };
    match source.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(s)) => Some(s.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("refused", "Reason")
                .with_code(code)
                .boxed(),
        )
    }

    /// 409 is a lost compare-and-swap, other answers refusals, the rest unreachability; the
    /// status survives the conversion.
    #[test]
    fn api_answers_keep_their_status() {
        let conflict = classify("patch x", api(409));
        assert!(matches!(conflict, Error::Conflict { .. }), "{conflict:?}");
        assert_eq!(http_status(&conflict), Some(409));
        let forbidden = classify("patch x", api(403));
        assert!(matches!(forbidden, Error::Refused { .. }), "{forbidden:?}");
        assert_eq!(http_status(&forbidden), Some(403));
        let timeout = classify("patch x", kube::Error::Service("timed out".into()));
        assert!(timeout.is_unreachable());
        assert_eq!(http_status(&timeout), None);
        assert_eq!(http_status(&unreachable("patch x", api(503))), Some(503));
    }
}
