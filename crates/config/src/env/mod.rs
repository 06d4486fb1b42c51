//! `PATRONI_*` environment variables to a raw configuration document, exactly as Patroni 4.x's
//! `Config._build_environment_configuration` (`patroni/config.py`) builds it.
//!
//! The environment is an explicit input ([`Environment`]): this crate never reads or changes the
//! process environment, so tests pass plain maps and nothing races with other threads. The binary
//! reads the process environment once, in `main`.
//!
//! Differences from Patroni, all deliberate:
//! * A value that Patroni fails to convert is silently dropped there (for example
//!   `PATRONI_KUBERNETES_USE_ENDPOINTS=maybe` quietly means ConfigMaps mode). Here it is an error
//!   naming the variable, because a silently ignored mode switch splits a cluster.
//! * Variables that look like Patroni settings but are not read (typos such as
//!   `PATRONI_KUBERNETES_USE_ENDPOINT`, or the `PATRONI_<USER>_PASSWORD` user definitions that
//!   Patroni 4.0 removed) produce warnings instead of being ignored in silence.

mod builder;
mod names;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

pub(crate) use self::names::{AUTH_PARAMETERS, POSTGRES_BINARIES};
use crate::problem::Problem;

/// Prefix of every environment variable Patroni reads.
pub const PATRONI_ENV_PREFIX: &str = "PATRONI_";

/// Name of the variable that may hold the whole YAML configuration document.
pub const PATRONI_CONFIGURATION: &str = "PATRONI_CONFIGURATION";

/// A snapshot of environment variables, passed explicitly to the loader.
///
/// Build it from the process environment once in `main`, or from literal pairs in tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

// === impl Environment ===

impl Environment {
    /// An empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the environment with `name` set to `value`.
    pub fn with_var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Every variable, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Environment {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self {
            vars: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

impl From<BTreeMap<String, String>> for Environment {
    fn from(vars: BTreeMap<String, String>) -> Self {
        Self { vars }
    }
}

/// The configuration built from `PATRONI_*` variables.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvConfig {
    /// The document, shaped like the YAML file (`{"restapi": {"listen": ...}, ...}`). Always an
    /// object; empty when no variable is set.
    pub value: Value,
    /// Variables whose value could not be converted, each located by the variable name.
    pub errors: Vec<Problem>,
    /// Variables that look like Patroni settings but are not read.
    pub warnings: Vec<Problem>,
}

/// Builds the configuration document from the `PATRONI_*` variables in `env`.
pub fn environment_configuration(env: &Environment) -> EnvConfig {
    builder::build(env)
}

/// Names of `PATRONI_*` variables other than `PATRONI_CONFIGURATION`, for the warning that they
/// are ignored when the whole document comes from `PATRONI_CONFIGURATION`.
pub(crate) fn other_patroni_vars(env: &Environment) -> BTreeSet<&str> {
    env.iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with(PATRONI_ENV_PREFIX) && *k != PATRONI_CONFIGURATION)
        .collect()
}

#[cfg(test)]
mod tests;
