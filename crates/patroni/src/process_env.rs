//! The single read of the process environment, done once in `main` and then passed around.

use patroni_config::Environment;

/// Snapshot of the process environment. Variables whose name or value is not valid UTF-8 are
/// left out (Patroni could not have used them as settings either), so nothing here can panic.
pub fn snapshot() -> Environment {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}
