//! The one entry point most callers need: raw document from its source, then validation.

use std::path::Path;

use serde_json::Value;

use crate::{
    env::Environment,
    fs::{Filesystem, OsFilesystem},
    model::Config,
    problem::{InvalidConfig, Problem},
    source::{Origin, SourceError, load_raw},
};

/// A loaded and validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The typed configuration.
    pub config: Config,
    /// The merged raw document (file(s) with the environment merged over, or the environment
    /// alone), exactly as Patroni would hold its local configuration. Unknown settings are kept.
    pub raw: Value,
    /// Where the document came from.
    pub origin: Origin,
    /// Everything worth telling the operator that did not stop loading.
    pub warnings: Vec<Problem>,
}

/// Why loading failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No document could be built: a file is unreadable, not YAML, or not a mapping.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The document has errors; every one of them is listed.
    #[error(transparent)]
    Invalid(#[from] InvalidConfig),
}

/// Loads the configuration the way Patroni does: from `path` (a YAML file or a directory of
/// them) with the `PATRONI_*` variables of `env` merged over it, or from the environment alone
/// when there is no path, then validates it.
///
/// # Errors
///
/// [`LoadError::Source`] when the document cannot be built, [`LoadError::Invalid`] with every
/// problem when it is built but wrong.
pub fn load(path: Option<&Path>, env: &Environment) -> Result<Loaded, LoadError> {
    load_with(&OsFilesystem, path, env)
}

/// [`load`] with an explicit filesystem (a fake in tests).
///
/// # Errors
///
/// As [`load`].
pub fn load_with(
    fs: &dyn Filesystem,
    path: Option<&Path>,
    env: &Environment,
) -> Result<Loaded, LoadError> {
    let raw = load_raw(fs, path, env)?;
    let mut warnings = raw.warnings;
    match Config::from_value(&raw.value) {
        Ok((config, more)) if raw.errors.is_empty() => {
            warnings.extend(more);
            Ok(Loaded {
                config,
                raw: raw.value,
                origin: raw.origin,
                warnings,
            })
        }
        Ok((_, more)) => {
            warnings.extend(more);
            Err(InvalidConfig {
                errors: raw.errors,
                warnings,
            }
            .into())
        }
        Err(invalid) => {
            let mut errors = raw.errors;
            errors.extend(invalid.errors);
            warnings.extend(invalid.warnings);
            Err(InvalidConfig { errors, warnings }.into())
        }
    }
}
