//! Where the raw configuration document comes from, and how the pieces are merged.
//!
//! Patroni 4.x picks exactly one of three sources (`Config.__init__` in `patroni/config.py`):
//! 1. a path given on the command line, if it exists: a YAML file, or a directory whose `*.yml`
//!    and `*.yaml` files are deep-merged in name order (later files win); the `PATRONI_*`
//!    variables are then deep-merged over the result;
//! 2. otherwise `PATRONI_CONFIGURATION`, a whole YAML document; no other variable is read;
//! 3. otherwise the `PATRONI_*` variables alone.
//!
//! A path that does not exist silently falls back to 2 or 3 in Patroni. Here the fallback is
//! the same, but it comes with a warning.
//!
//! Deep merge follows Patroni's `patch_config`: mappings merge key by key, anything else
//! replaces, and a `null` value deletes the key.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::{
    env::{self, Environment, PATRONI_CONFIGURATION},
    fs::{Filesystem, PathKind},
    problem::Problem,
    yaml,
};

/// Failure to produce a raw configuration document at all. Problems inside a document are not
/// reported here but by validation.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The configuration path exists but is neither a file nor a directory.
    #[error("config path {} is neither a directory nor a file", .path.display())]
    NotFileOrDirectory {
        /// The path given on the command line.
        path: PathBuf,
    },
    /// The configuration directory could not be listed.
    #[error("list config directory {}", .path.display())]
    ListDirectory {
        /// The directory.
        path: PathBuf,
        /// Why listing failed.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file could not be read.
    #[error("read config file {}", .path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file or `PATRONI_CONFIGURATION` is not valid YAML.
    #[error("parse YAML in {origin}")]
    Yaml {
        /// The file path, or `PATRONI_CONFIGURATION`.
        origin: String,
        /// The parser's error, with line and column.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A configuration file or `PATRONI_CONFIGURATION` holds something other than a mapping
    /// (an empty file, a list, a scalar).
    #[error("{origin} does not contain a YAML mapping")]
    NotAMapping {
        /// The file path, or `PATRONI_CONFIGURATION`.
        origin: String,
    },
}

/// Which source the document was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// YAML files, in merge order, with the environment merged over them.
    Files(Vec<PathBuf>),
    /// The `PATRONI_CONFIGURATION` variable.
    ConfigurationVariable,
    /// `PATRONI_*` variables only.
    Environment,
}

/// The merged, not yet validated configuration document.
#[derive(Debug, Clone, PartialEq)]
pub struct RawConfig {
    /// The merged document; always a JSON object.
    pub value: Value,
    /// Which source it came from.
    pub origin: Origin,
    /// Environment variables whose values could not be converted.
    pub errors: Vec<Problem>,
    /// Things worth telling the operator that do not stop loading.
    pub warnings: Vec<Problem>,
}

/// Builds the raw configuration from `path` (a file or directory) or, failing that, from the
/// environment, as described in the module documentation.
///
/// # Errors
///
/// [`SourceError`] when a file or directory cannot be read, is not YAML, or is not a mapping.
pub fn load_raw(
    fs: &dyn Filesystem,
    path: Option<&Path>,
    env: &Environment,
) -> Result<RawConfig, SourceError> {
    let mut warnings = Vec::new();
    if let Some(path) = path {
        if fs.kind(path) != PathKind::Missing {
            return load_files(fs, path, env);
        }
        warnings.push(Problem::new(
            "",
            format!(
                "config path {} does not exist; building the configuration from the environment",
                path.display()
            ),
        ));
    }
    if let Some(text) = env.get(PATRONI_CONFIGURATION).filter(|t| !t.is_empty()) {
        let value = parse_mapping(text, PATRONI_CONFIGURATION)?;
        // Like Patroni, an empty document falls through to the other variables.
        if value.as_object().is_some_and(|m| !m.is_empty()) {
            for var in env::other_patroni_vars(env) {
                warnings.push(Problem::new(
                    var,
                    format!("ignored because {PATRONI_CONFIGURATION} is set"),
                ));
            }
            return Ok(RawConfig {
                value,
                origin: Origin::ConfigurationVariable,
                errors: Vec::new(),
                warnings,
            });
        }
    }
    let env_config = env::environment_configuration(env);
    warnings.extend(env_config.warnings);
    Ok(RawConfig {
        value: env_config.value,
        origin: Origin::Environment,
        errors: env_config.errors,
        warnings,
    })
}

fn load_files(
    fs: &dyn Filesystem,
    path: &Path,
    env: &Environment,
) -> Result<RawConfig, SourceError> {
    let files = match fs.kind(path) {
        PathKind::File => vec![path.to_path_buf()],
        PathKind::Directory => {
            let mut names = fs
                .list_dir(path)
                .map_err(|source| SourceError::ListDirectory {
                    path: path.to_path_buf(),
                    source,
                })?;
            names.sort();
            names
                .into_iter()
                .filter(|n| n.ends_with(".yml") || n.ends_with(".yaml"))
                .map(|n| path.join(n))
                .filter(|p| fs.kind(p) == PathKind::File)
                .collect()
        }
        PathKind::Missing | PathKind::Other => {
            return Err(SourceError::NotFileOrDirectory {
                path: path.to_path_buf(),
            });
        }
    };
    let mut merged = Map::new();
    for file in &files {
        let text = fs
            .read_to_string(file)
            .map_err(|source| SourceError::ReadFile {
                path: file.clone(),
                source,
            })?;
        if let Value::Object(map) = parse_mapping(&text, &file.display().to_string())? {
            patch(&mut merged, map);
        }
    }
    let env_config = env::environment_configuration(env);
    if let Value::Object(map) = env_config.value {
        patch(&mut merged, map);
    }
    Ok(RawConfig {
        value: Value::Object(merged),
        origin: Origin::Files(files),
        errors: env_config.errors,
        warnings: env_config.warnings,
    })
}

fn parse_mapping(text: &str, origin: &str) -> Result<Value, SourceError> {
    let value = yaml::parse(text).map_err(|source| SourceError::Yaml {
        origin: origin.to_owned(),
        source,
    })?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(SourceError::NotAMapping {
            origin: origin.to_owned(),
        })
    }
}

/// Deep-merges `data` into `config` like Patroni's `patch_config`: a `null` in `data` removes the
/// key, two mappings merge recursively, and anything else replaces.
pub fn patch(config: &mut Map<String, Value>, data: Map<String, Value>) {
    for (key, value) in data {
        match value {
            Value::Null => {
                config.remove(&key);
            }
            Value::Object(inner) => match config.get_mut(&key) {
                Some(Value::Object(existing)) => patch(existing, inner),
                _ => {
                    config.insert(key, Value::Object(inner));
                }
            },
            other => {
                config.insert(key, other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fs::MemoryFilesystem;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    /// Mappings merge, scalars and lists replace, null deletes.
    #[test]
    fn patch_merges_like_patroni() {
        let mut config = object(json!({"a": {"b": 1, "c": [1, 2], "d": 4}, "e": "x"}));
        patch(
            &mut config,
            object(json!({"a": {"c": [3], "d": null, "f": {"g": 1}}, "e": {"h": 1}})),
        );
        assert_eq!(
            Value::Object(config),
            json!({"a": {"b": 1, "c": [3], "f": {"g": 1}}, "e": {"h": 1}})
        );
    }

    /// A directory's YAML files merge in name order; other files are ignored; env wins.
    #[test]
    fn directory_files_merge_in_name_order_then_env() {
        let fs = MemoryFilesystem::new()
            .with_file(
                "/etc/patroni/20-b.yaml",
                "scope: b\nrestapi: {listen: 'x:1'}\n",
            )
            .with_file(
                "/etc/patroni/10-a.yml",
                "scope: a\nname: n\nrestapi: {connect_address: 'y:1'}\n",
            )
            .with_file("/etc/patroni/30-c.txt", "scope: ignored\n")
            .with_dir("/etc/patroni/40-d.yml");
        let env = Environment::new().with_var("PATRONI_NAME", "from-env");
        let raw = load_raw(&fs, Some(Path::new("/etc/patroni")), &env).expect("loads");
        assert_eq!(
            raw.value,
            json!({"scope": "b", "name": "from-env", "restapi": {"listen": "x:1", "connect_address": "y:1"}})
        );
        assert_eq!(
            raw.origin,
            Origin::Files(vec![
                "/etc/patroni/10-a.yml".into(),
                "/etc/patroni/20-b.yaml".into()
            ])
        );
    }

    /// PATRONI_CONFIGURATION replaces every other variable, with a warning for each.
    #[test]
    fn configuration_variable_wins_over_other_variables() {
        let env = Environment::new()
            .with_var("PATRONI_CONFIGURATION", "scope: s\nname: n\n")
            .with_var("PATRONI_NAME", "ignored");
        let raw = load_raw(&MemoryFilesystem::new(), None, &env).expect("loads");
        assert_eq!(raw.value, json!({"scope": "s", "name": "n"}));
        assert_eq!(raw.origin, Origin::ConfigurationVariable);
        assert_eq!(
            raw.warnings,
            vec![Problem::new(
                "PATRONI_NAME",
                "ignored because PATRONI_CONFIGURATION is set"
            )]
        );
    }

    /// A missing path falls back to the environment, as in Patroni, but says so.
    #[test]
    fn missing_path_falls_back_to_environment_with_warning() {
        let env = Environment::new().with_var("PATRONI_SCOPE", "s");
        let raw =
            load_raw(&MemoryFilesystem::new(), Some(Path::new("/nope.yml")), &env).expect("loads");
        assert_eq!(raw.value, json!({"scope": "s"}));
        assert_eq!(raw.origin, Origin::Environment);
        assert_eq!(
            raw.warnings[0].to_string(),
            "config path /nope.yml does not exist; building the configuration from the environment"
        );
    }

    /// An empty file is an error, like in Patroni.
    #[test]
    fn empty_file_is_not_a_mapping() {
        let fs = MemoryFilesystem::new().with_file("/p.yml", "");
        let err = load_raw(&fs, Some(Path::new("/p.yml")), &Environment::new()).expect_err("empty");
        assert_eq!(err.to_string(), "/p.yml does not contain a YAML mapping");
    }
}
