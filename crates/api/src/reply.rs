//! [`Reply`]: the kinds of answer Patroni's REST server writes, and how each becomes an
//! HTTP response.
//!
//! Patroni distinguishes them on the wire: a *status-only* answer (`HEAD`/`OPTIONS` health
//! checks, `/liveness`, `/readiness`) has no body and no headers; a *written* answer (JSON or a
//! plain message) carries `restapi.http_extra_headers`; an *error page* is Python's
//! `send_error` HTML. The kind travels in a response extension so the server middleware adds
//! the right headers (see `server.rs`).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An answer, before headers from the configuration are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Only the status line (HAProxy-style checks).
    StatusOnly(StatusCode),
    /// A JSON body (`application/json`).
    Json(StatusCode, Vec<u8>),
    /// A plain message; Patroni sends these as `text/html`.
    Text(StatusCode, String),
    /// A `text/plain; charset=utf-8` document (`GET /metrics`).
    Plain(StatusCode, String),
    /// Python's standard HTML error page, with an optional message replacing the reason phrase.
    Error(StatusCode, Option<String>),
}

/// Which kind of [`Reply`] a response came from; set as a response extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyKind {
    /// No body, no headers beyond what HTTP requires.
    StatusOnly,
    /// A normal answer: gets `http_extra_headers` and the `Server` header.
    Written,
    /// An error page: gets the `Server` header only.
    Error,
}

// === impl Reply ===

impl Reply {
    /// `value` as JSON with `status`; a 500 error page if it cannot be serialised.
    pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Reply::Json(status, body),
            Err(e) => {
                tracing::error!("failed to serialise a response: {e}");
                Reply::Error(StatusCode::INTERNAL_SERVER_ERROR, None)
            }
        }
    }

    /// A plain message.
    pub(crate) fn text(status: StatusCode, message: impl Into<String>) -> Self {
        Reply::Text(status, message.into())
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let (status, kind, content_type, body) = match self {
            Reply::StatusOnly(status) => (status, ReplyKind::StatusOnly, None, Body::empty()),
            Reply::Json(status, body) => (
                status,
                ReplyKind::Written,
                Some("application/json"),
                Body::from(body),
            ),
            Reply::Text(status, text) => (
                status,
                ReplyKind::Written,
                Some("text/html"),
                Body::from(text),
            ),
            Reply::Plain(status, text) => (
                status,
                ReplyKind::Written,
                Some("text/plain; charset=utf-8"),
                Body::from(text),
            ),
            Reply::Error(status, message) => (
                status,
                ReplyKind::Error,
                Some("text/html;charset=utf-8"),
                Body::from(error_page(status, message.as_deref())),
            ),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        if let Some(ct) = content_type {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        response.extensions_mut().insert(kind);
        response
    }
}

/// Python's `http.server` error page for `status`, with `message` (or the reason phrase).
fn error_page(status: StatusCode, message: Option<&str>) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    let message = escape(message.unwrap_or(reason));
    let code = status.as_u16();
    let explain = explanation(status);
    format!(
        "<!DOCTYPE HTML>\n<html lang=\"en\">\n    <head>\n        <meta charset=\"utf-8\">\n        \
         <title>Error response</title>\n    </head>\n    <body>\n        <h1>Error response</h1>\n        \
         <p>Error code: {code}</p>\n        <p>Message: {message}.</p>\n        \
         <p>Error code explanation: {code} - {explain}.</p>\n    </body>\n</html>\n"
    )
}

/// Python's `HTTPStatus` descriptions for the codes this API sends as error pages.
fn explanation(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad request syntax or unsupported method",
        404 => "Nothing matches the given URI",
        409 => "Request conflict",
        411 => "Client must specify Content-Length",
        413 => "Content is too large",
        500 => "Server got itself in trouble",
        501 => "Server does not support this operation",
        502 => "Invalid responses from another server/proxy",
        503 => "The server cannot process the request due to a high load",
        _ => "",
    }
}

/// `html.escape(text, quote=False)`.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error page is Python's, with the message in place of the reason phrase.
    #[test]
    fn error_page_matches_python() {
        let page = error_page(
            StatusCode::NOT_IMPLEMENTED,
            Some("Unsupported method ('PUT')"),
        );
        assert!(page.contains("<p>Error code: 501</p>"), "{page}");
        assert!(
            page.contains("<p>Message: Unsupported method ('PUT').</p>"),
            "{page}"
        );
        assert!(
            page.contains("501 - Server does not support this operation."),
            "{page}"
        );
        let page = error_page(StatusCode::BAD_REQUEST, Some("<x> & y"));
        assert!(page.contains("Message: &lt;x&gt; &amp; y."), "{page}");
    }
}
