//! The `PGBACKUP_*` environment (docs/backups.md): which tool, which repository, how
//! many backups to keep. Read once through a lookup function, so tests pass a map; every
//! problem names its variable.

use std::path::PathBuf;

/// Default number of full backups kept.
pub const DEFAULT_RETAIN: u32 = 2;
/// Default S3 region.
pub const DEFAULT_S3_REGION: &str = "us-east-1";

/// The backup tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    /// pgBackRest (`pgbackrest`), configured through `PGBACKREST_*` variables.
    PgBackRest,
    /// Barman Cloud (`barman-cloud-*`), configured through arguments.
    BarmanCloud,
}

/// Where backups and WAL are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repository {
    /// A directory (pgBackRest only).
    Filesystem {
        /// `PGBACKUP_PATH`.
        path: PathBuf,
    },
    /// An S3 bucket, on AWS or an S3-compatible server.
    S3 {
        /// `PGBACKUP_S3_BUCKET`.
        bucket: String,
        /// `PGBACKUP_S3_PREFIX`, without leading or trailing slashes (may be empty).
        prefix: String,
        /// `PGBACKUP_S3_ENDPOINT`: a URL such as `https://minio:9000`.
        endpoint: Option<String>,
        /// `PGBACKUP_S3_REGION`.
        region: String,
        /// `PGBACKUP_S3_PATH_STYLE`: path-style addressing instead of virtual hosts.
        path_style: bool,
        /// `PGBACKUP_S3_VERIFY_TLS`.
        verify_tls: bool,
    },
    /// A GCS bucket.
    Gcs {
        /// `PGBACKUP_GCS_BUCKET`.
        bucket: String,
        /// `PGBACKUP_GCS_PREFIX`, without leading or trailing slashes (may be empty).
        prefix: String,
    },
}

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `PGBACKUP_TOOL`.
    pub tool: ToolKind,
    /// The stanza / server name: `PGBACKUP_NAME` (required: archive_command, which cannot
    /// see `PATRONI_SCOPE`, and the scheduled backup must agree).
    pub name: String,
    /// The repository.
    pub repository: Repository,
    /// `PGBACKUP_RETAIN`: full backups kept.
    pub retain: u32,
    /// The data directory: `PGBACKUP_DATA_DIR`, else `PGDATA`.
    pub data_dir: Option<PathBuf>,
}

/// A variable is missing or wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// A required variable is not set.
    #[error("{0} is not set: {1}")]
    Missing(&'static str, &'static str),
    /// A variable's value is not accepted.
    #[error("{name}={value:?} is not valid: {why}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is accepted.
        why: &'static str,
    },
    /// Variables that exclude each other are set together.
    #[error("{0} and {1} are both set: choose one repository")]
    Conflict(&'static str, &'static str),
}

// === impl ToolKind ===

impl ToolKind {
    /// The name `PGBACKUP_TOOL` gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PgBackRest => "pgbackrest",
            Self::BarmanCloud => "barman-cloud",
        }
    }
}

// === impl Settings ===

impl Settings {
    /// Reads the settings with `get` (the process environment in production).
    ///
    /// # Errors
    /// A variable is missing, malformed, or conflicts with another one.
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let tool = match get("PGBACKUP_TOOL").as_deref() {
            Some("pgbackrest") => ToolKind::PgBackRest,
            Some("barman-cloud" | "barman_cloud" | "barman") => ToolKind::BarmanCloud,
            Some(other) => {
                return Err(SettingsError::Invalid {
                    name: "PGBACKUP_TOOL",
                    value: other.to_owned(),
                    why: "expected pgbackrest or barman-cloud",
                });
            }
            None => {
                return Err(SettingsError::Missing(
                    "PGBACKUP_TOOL",
                    "expected pgbackrest or barman-cloud",
                ));
            }
        };
        let name = get("PGBACKUP_NAME").ok_or(SettingsError::Missing(
            "PGBACKUP_NAME",
            "name the pgBackRest stanza / Barman server (the cluster's scope, usually)",
        ))?;
        let repository = read_repository(&get, tool)?;
        let retain = match get("PGBACKUP_RETAIN") {
            None => DEFAULT_RETAIN,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(SettingsError::Invalid {
                        name: "PGBACKUP_RETAIN",
                        value: v,
                        why: "expected a whole number of at least 1",
                    });
                }
            },
        };
        let data_dir = get("PGBACKUP_DATA_DIR")
            .or_else(|| get("PGDATA"))
            .map(PathBuf::from);
        Ok(Self {
            tool,
            name,
            repository,
            retain,
            data_dir,
        })
    }
}

fn read_repository(
    get: &impl Fn(&str) -> Option<String>,
    tool: ToolKind,
) -> Result<Repository, SettingsError> {
    let path = get("PGBACKUP_PATH");
    let s3 = get("PGBACKUP_S3_BUCKET");
    let gcs = get("PGBACKUP_GCS_BUCKET");
    match (&path, &s3, &gcs) {
        (Some(_), Some(_), _) => {
            return Err(SettingsError::Conflict(
                "PGBACKUP_PATH",
                "PGBACKUP_S3_BUCKET",
            ));
        }
        (Some(_), _, Some(_)) => {
            return Err(SettingsError::Conflict(
                "PGBACKUP_PATH",
                "PGBACKUP_GCS_BUCKET",
            ));
        }
        (_, Some(_), Some(_)) => {
            return Err(SettingsError::Conflict(
                "PGBACKUP_S3_BUCKET",
                "PGBACKUP_GCS_BUCKET",
            ));
        }
        _ => {}
    }
    if let Some(path) = path {
        if tool == ToolKind::BarmanCloud {
            return Err(SettingsError::Invalid {
                name: "PGBACKUP_PATH",
                value: path,
                why: "Barman Cloud keeps backups only in object stores: use PGBACKUP_S3_BUCKET or PGBACKUP_GCS_BUCKET",
            });
        }
        if !path.starts_with('/') {
            return Err(SettingsError::Invalid {
                name: "PGBACKUP_PATH",
                value: path,
                why: "expected an absolute path",
            });
        }
        return Ok(Repository::Filesystem {
            path: PathBuf::from(path),
        });
    }
    if let Some(bucket) = s3 {
        let endpoint = get("PGBACKUP_S3_ENDPOINT");
        if let Some(e) = &endpoint
            && !(e.starts_with("https://") || e.starts_with("http://"))
        {
            return Err(SettingsError::Invalid {
                name: "PGBACKUP_S3_ENDPOINT",
                value: e.clone(),
                why: "expected a URL: https://host[:port]",
            });
        }
        let verify_tls = flag(get, "PGBACKUP_S3_VERIFY_TLS", true)?;
        if !verify_tls && tool == ToolKind::BarmanCloud {
            // boto3 has no switch for it: refused rather than read and not acted on.
            return Err(SettingsError::Invalid {
                name: "PGBACKUP_S3_VERIFY_TLS",
                value: "false".into(),
                why: "Barman Cloud cannot skip TLS verification: give the CA in AWS_CA_BUNDLE",
            });
        }
        return Ok(Repository::S3 {
            bucket,
            prefix: prefix(get("PGBACKUP_S3_PREFIX")),
            endpoint,
            region: get("PGBACKUP_S3_REGION").unwrap_or_else(|| DEFAULT_S3_REGION.into()),
            path_style: flag(get, "PGBACKUP_S3_PATH_STYLE", false)?,
            verify_tls,
        });
    }
    if let Some(bucket) = gcs {
        return Ok(Repository::Gcs {
            bucket,
            prefix: prefix(get("PGBACKUP_GCS_PREFIX")),
        });
    }
    Err(SettingsError::Missing(
        "PGBACKUP_PATH",
        "set one repository: PGBACKUP_PATH, PGBACKUP_S3_BUCKET or PGBACKUP_GCS_BUCKET",
    ))
}

fn prefix(v: Option<String>) -> String {
    v.map(|p| p.trim_matches('/').to_owned())
        .unwrap_or_default()
}

fn flag(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, SettingsError> {
    match get(name) {
        None => Ok(default),
        Some(v) => parse_bool(&v).ok_or(SettingsError::Invalid {
            name,
            value: v,
            why: "expected true or false",
        }),
    }
}

/// A boolean as the environment, YAML 1.1 or Python's `str()` spell it (`True`, `on`, `1`).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" | "y" => Some(true),
        "false" | "no" | "off" | "0" | "n" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::read(|k| map.get(k).cloned())
    }

    #[test]
    fn pgbackrest_on_a_directory() {
        let s = read(&[
            ("PGBACKUP_TOOL", "pgbackrest"),
            ("PGBACKUP_NAME", "demo"),
            ("PGBACKUP_PATH", "/backups"),
            ("PGDATA", "/pg/data"),
        ])
        .unwrap();
        assert_eq!(s.tool, ToolKind::PgBackRest);
        assert_eq!(s.name, "demo");
        assert_eq!(s.retain, 2);
        assert_eq!(s.data_dir, Some(PathBuf::from("/pg/data")));
        assert_eq!(
            s.repository,
            Repository::Filesystem {
                path: "/backups".into()
            }
        );
    }

    #[test]
    fn s3_with_endpoint() {
        let s = read(&[
            ("PGBACKUP_TOOL", "pgbackrest"),
            ("PGBACKUP_NAME", "b"),
            ("PGBACKUP_S3_BUCKET", "bk"),
            ("PGBACKUP_S3_PREFIX", "/a/b/"),
            ("PGBACKUP_S3_ENDPOINT", "https://127.0.0.1:9000"),
            ("PGBACKUP_S3_PATH_STYLE", "true"),
            ("PGBACKUP_S3_VERIFY_TLS", "false"),
            ("PGBACKUP_RETAIN", "3"),
        ])
        .unwrap();
        assert_eq!(s.retain, 3);
        assert_eq!(
            s.repository,
            Repository::S3 {
                bucket: "bk".into(),
                prefix: "a/b".into(),
                endpoint: Some("https://127.0.0.1:9000".into()),
                region: DEFAULT_S3_REGION.into(),
                path_style: true,
                verify_tls: false,
            }
        );
    }

    #[test]
    fn barman_refuses_to_skip_tls_verification() {
        let err = read(&[
            ("PGBACKUP_TOOL", "barman-cloud"),
            ("PGBACKUP_NAME", "x"),
            ("PGBACKUP_S3_BUCKET", "b"),
            ("PGBACKUP_S3_VERIFY_TLS", "false"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("PGBACKUP_S3_VERIFY_TLS=\"false\" is not valid"),
            "{err}"
        );
    }

    #[test]
    fn problems_name_the_variable() {
        let cases: [(&[(&str, &str)], &str); 7] = [
            (&[], "PGBACKUP_TOOL is not set"),
            (
                &[("PGBACKUP_TOOL", "wal-e")],
                "PGBACKUP_TOOL=\"wal-e\" is not valid",
            ),
            (
                &[("PGBACKUP_TOOL", "pgbackrest")],
                "PGBACKUP_NAME is not set",
            ),
            (
                &[("PGBACKUP_TOOL", "pgbackrest"), ("PGBACKUP_NAME", "x")],
                "PGBACKUP_PATH is not set",
            ),
            (
                &[
                    ("PGBACKUP_TOOL", "barman-cloud"),
                    ("PGBACKUP_NAME", "x"),
                    ("PGBACKUP_PATH", "/b"),
                ],
                "PGBACKUP_PATH=\"/b\" is not valid: Barman Cloud",
            ),
            (
                &[
                    ("PGBACKUP_TOOL", "pgbackrest"),
                    ("PGBACKUP_NAME", "x"),
                    ("PGBACKUP_PATH", "/b"),
                    ("PGBACKUP_S3_BUCKET", "c"),
                ],
                "PGBACKUP_PATH and PGBACKUP_S3_BUCKET are both set",
            ),
            (
                &[
                    ("PGBACKUP_TOOL", "pgbackrest"),
                    ("PGBACKUP_NAME", "x"),
                    ("PGBACKUP_PATH", "/b"),
                    ("PGBACKUP_RETAIN", "0"),
                ],
                "PGBACKUP_RETAIN=\"0\" is not valid",
            ),
        ];
        for (vars, expected) in cases {
            let err = read(vars).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{vars:?}: {err}");
        }
    }
}
