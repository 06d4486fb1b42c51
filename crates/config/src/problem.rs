//! One configuration problem (an error or a warning) located by its YAML path, and the error
//! returned when a configuration has at least one error.
//!
//! Validation never stops at the first problem: every check runs and every problem is kept, so
//! an operator fixes a broken configuration in one round. Messages never include secrets: values
//! under keys that look like passwords or tokens are shown as `<redacted>`.

use std::fmt;

use serde_json::Value;

/// One problem found in a configuration, located by the dotted YAML path of the setting
/// (`bootstrap.dcs.ttl`, `kubernetes.ports.0.port`) or by the environment variable that caused it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// Dotted YAML path (list items are numbered from 0), or an environment variable name.
    /// Empty for problems about the document as a whole.
    pub path: String,
    /// What is wrong, starting in lower case, such as `expected an integer ≥ 20, got "abc"`.
    pub message: String,
}

// === impl Problem ===

impl Problem {
    /// Creates a problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The configuration has one or more errors. Carries every error and every warning found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", join(.errors))]
pub struct InvalidConfig {
    /// Every error, in document order. Never empty.
    pub errors: Vec<Problem>,
    /// Warnings found along the way (unknown settings, ignored variables, adjusted values).
    pub warnings: Vec<Problem>,
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Longest rendering of a value inside a message; longer ones are cut with `…`.
const MAX_SHOWN_VALUE_CHARS: usize = 80;

/// Renders `value` for a message about the setting at `path`: compact JSON, with strings quoted,
/// long values shortened, and secrets replaced by `<redacted>`.
pub(crate) fn describe(path: &str, value: &Value) -> String {
    if is_secret(path) {
        return "<redacted>".to_owned();
    }
    let shown = value.to_string();
    if shown.chars().count() > MAX_SHOWN_VALUE_CHARS {
        let cut: String = shown.chars().take(MAX_SHOWN_VALUE_CHARS).collect();
        format!("{cut}…")
    } else {
        shown
    }
}

/// Whether the last path segment names a secret (`password`, `keyfile_password`,
/// `PATRONI_SUPERUSER_PASSWORD`, `token`, `auth_data`).
fn is_secret(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path).to_ascii_lowercase();
    ["password", "token", "auth_data"]
        .iter()
        .any(|s| last.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Passwords never appear in messages, whatever their type.
    #[test]
    fn redacts_secrets() {
        let v = Value::String("hunter2".into());
        assert_eq!(
            describe("postgresql.authentication.superuser.password", &v),
            "<redacted>"
        );
        assert_eq!(describe("PATRONI_REPLICATION_PASSWORD", &v), "<redacted>");
        assert_eq!(describe("consul.token", &v), "<redacted>");
        assert_eq!(describe("scope", &v), "\"hunter2\"");
    }

    /// A problem without a path prints only its message.
    #[test]
    fn displays_path_then_message() {
        assert_eq!(Problem::new("a.b", "bad").to_string(), "a.b: bad");
        assert_eq!(Problem::new("", "bad").to_string(), "bad");
    }
}
