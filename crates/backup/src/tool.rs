//! The tool invocations behind each `patroni-backup` command, built from [`Settings`] and
//! nothing else (pure, so every argument is unit-tested). pgBackRest takes its configuration as
//! `PGBACKREST_*` variables (valid for every command, unlike its options); Barman Cloud takes a
//! URL, a server name and options.

use std::path::{Path, PathBuf};

use crate::settings::{Repository, Settings, ToolKind};

/// One program to run: its name (looked up in `$PATH`), arguments and extra environment. The
/// environment is a default: a variable the caller's environment already has is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Program name.
    pub program: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Variables set unless already set.
    pub env: Vec<(String, String)>,
}

/// How a tool reaches the local PostgreSQL server (base backups, pgBackRest's stanza checks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalServer {
    /// Unix socket directory (or host).
    pub host: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// User name.
    pub user: Option<String>,
}

/// What a command needs besides the settings.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The data directory the command works on.
    pub data_dir: Option<PathBuf>,
    /// The local server.
    pub local: LocalServer,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// `GOOGLE_APPLICATION_CREDENTIALS` as found (pgBackRest wants them under its own names).
    pub credentials: Credentials,
}

/// Object-store credentials from their usual variables.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub aws_key: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub aws_secret: Option<String>,
    /// `AWS_SESSION_TOKEN`.
    pub aws_token: Option<String>,
    /// `GOOGLE_APPLICATION_CREDENTIALS`: a key file.
    pub gcs_key: Option<String>,
}

/// A step of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// Archive one WAL file.
    WalPush(&'a str),
    /// Fetch WAL file `.0` into `.1`.
    WalFetch(&'a str, &'a str),
    /// Create the pgBackRest stanza (idempotent; Barman needs none).
    Init,
    /// A full base backup of the local server.
    Backup,
    /// Remove backups beyond the retention (pgBackRest expires after each backup by itself).
    Retention,
    /// The backup list as JSON.
    List,
    /// Restore backup `.0` into the context's data directory.
    Restore(&'a str),
}

// === impl Settings ===

impl Settings {
    /// The invocation of `step`, or `None` when the tool has nothing to do for it.
    pub fn invocation(&self, step: Step<'_>, ctx: &Context) -> Option<Invocation> {
        match self.tool {
            ToolKind::PgBackRest => self.pgbackrest(step, ctx),
            ToolKind::BarmanCloud => self.barman(step, ctx),
        }
    }

    fn pgbackrest(&self, step: Step<'_>, ctx: &Context) -> Option<Invocation> {
        let mut env = self.pgbackrest_env(ctx);
        let args: Vec<String> = match step {
            Step::WalPush(path) => vec!["archive-push".into(), path.into()],
            Step::WalFetch(name, dest) => vec!["archive-get".into(), name.into(), dest.into()],
            Step::Init => vec!["stanza-create".into()],
            Step::Backup => vec!["backup".into(), "--type=full".into(), "--start-fast".into()],
            Step::Retention => return None,
            Step::List => vec!["info".into(), "--output=json".into()],
            Step::Restore(label) => {
                // Recovery settings are Patroni's to write: `none` leaves only recovery.signal.
                env.retain(|(k, _)| {
                    !k.starts_with("PGBACKREST_PG1_SOCKET") && k != "PGBACKREST_PG1_PORT"
                });
                vec![
                    "restore".into(),
                    "--type=none".into(),
                    format!("--set={label}"),
                ]
            }
        };
        Some(Invocation {
            program: "pgbackrest".into(),
            args,
            env,
        })
    }

    fn pgbackrest_env(&self, ctx: &Context) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = Vec::new();
        let mut set = |k: &str, v: String| env.push((format!("PGBACKREST_{k}"), v));
        set("STANZA", self.name.clone());
        // A file log needs a writable /var/log/pgbackrest; the console goes to the caller's log.
        set("LOG_LEVEL_FILE", "off".into());
        set("LOG_LEVEL_CONSOLE", "warn".into());
        set("REPO1_RETENTION_FULL", self.retain.to_string());
        match &self.repository {
            Repository::Filesystem { path } => set("REPO1_PATH", path.display().to_string()),
            Repository::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                path_style,
                verify_tls,
            } => {
                set("REPO1_TYPE", "s3".into());
                set("REPO1_S3_BUCKET", bucket.clone());
                set("REPO1_PATH", format!("/{prefix}"));
                set("REPO1_S3_REGION", region.clone());
                let (host, port) = match endpoint {
                    Some(url) => split_endpoint(url),
                    None => (format!("s3.{region}.amazonaws.com"), None),
                };
                set("REPO1_S3_ENDPOINT", host);
                if let Some(port) = port {
                    set("REPO1_STORAGE_PORT", port.to_string());
                }
                set(
                    "REPO1_S3_URI_STYLE",
                    if *path_style { "path" } else { "host" }.into(),
                );
                if !verify_tls {
                    set("REPO1_STORAGE_VERIFY_TLS", "n".into());
                }
                if let Some(k) = &ctx.credentials.aws_key {
                    set("REPO1_S3_KEY", k.clone());
                }
                if let Some(s) = &ctx.credentials.aws_secret {
                    set("REPO1_S3_KEY_SECRET", s.clone());
                }
                if let Some(t) = &ctx.credentials.aws_token {
                    set("REPO1_S3_TOKEN", t.clone());
                }
            }
            Repository::Gcs { bucket, prefix } => {
                set("REPO1_TYPE", "gcs".into());
                set("REPO1_GCS_BUCKET", bucket.clone());
                set("REPO1_PATH", format!("/{prefix}"));
                if let Some(k) = &ctx.credentials.gcs_key {
                    set("REPO1_GCS_KEY", k.clone());
                }
            }
        }
        if let Some(dir) = ctx.data_dir.as_deref().or(self.data_dir.as_deref()) {
            set("PG1_PATH", dir.display().to_string());
        }
        // pgBackRest's pg1-host means a remote host (over SSH or TLS): locally only the
        // socket directory is given.
        if let Some(host) = ctx.local.host.as_ref().filter(|h| h.starts_with('/')) {
            set("PG1_SOCKET_PATH", host.clone());
        }
        if let Some(port) = ctx.local.port {
            set("PG1_PORT", port.to_string());
        }
        if let Some(user) = &ctx.local.user {
            set("PG1_USER", user.clone());
        }
        env
    }

    fn barman(&self, step: Step<'_>, ctx: &Context) -> Option<Invocation> {
        let (url, provider, endpoint) = match &self.repository {
            Repository::S3 {
                bucket,
                prefix,
                endpoint,
                ..
            } => (object_url("s3", bucket, prefix), "aws-s3", endpoint.clone()),
            Repository::Gcs { bucket, prefix } => (
                object_url("gs", bucket, prefix),
                "google-cloud-storage",
                None,
            ),
            Repository::Filesystem { .. } => return None,
        };
        let mut args: Vec<String> = vec!["--cloud-provider".into(), provider.into()];
        if let Some(e) = endpoint {
            args.push("--endpoint-url".into());
            args.push(e);
        }
        let program = match step {
            Step::WalPush(path) => {
                args.extend([url, self.name.clone(), path.to_owned()]);
                "barman-cloud-wal-archive"
            }
            Step::WalFetch(name, dest) => {
                args.extend([url, self.name.clone(), name.to_owned(), dest.to_owned()]);
                "barman-cloud-wal-restore"
            }
            Step::Init => return None,
            Step::Backup => {
                args.push("--immediate-checkpoint".into());
                if let Some(h) = &ctx.local.host {
                    args.extend(["--host".into(), h.clone()]);
                }
                if let Some(p) = ctx.local.port {
                    args.extend(["--port".into(), p.to_string()]);
                }
                if let Some(u) = &ctx.local.user {
                    args.extend(["--user".into(), u.clone()]);
                }
                args.extend([url, self.name.clone()]);
                "barman-cloud-backup"
            }
            Step::Retention => {
                args.extend([
                    "--retention-policy".into(),
                    format!("REDUNDANCY {}", self.retain),
                    url,
                    self.name.clone(),
                ]);
                "barman-cloud-backup-delete"
            }
            Step::List => {
                args.extend(["--format".into(), "json".into(), url, self.name.clone()]);
                "barman-cloud-backup-list"
            }
            Step::Restore(id) => {
                let dir = ctx.data_dir.as_deref().or(self.data_dir.as_deref())?;
                args.extend([
                    url,
                    self.name.clone(),
                    id.to_owned(),
                    dir.display().to_string(),
                ]);
                "barman-cloud-restore"
            }
        };
        Some(Invocation {
            program: program.into(),
            args,
            env: Vec::new(),
        })
    }

    /// Whether Barman needs boto3 told to use path-style addressing (an AWS config file).
    pub fn barman_path_style(&self) -> bool {
        matches!(
            (&self.tool, &self.repository),
            (
                ToolKind::BarmanCloud,
                Repository::S3 {
                    path_style: true,
                    ..
                }
            )
        )
    }

    /// The data directory of `ctx`, else of the settings.
    pub fn data_dir<'a>(&'a self, ctx: &'a Context) -> Option<&'a Path> {
        ctx.data_dir.as_deref().or(self.data_dir.as_deref())
    }
}

/// `s3://bucket/prefix` (no trailing slash).
fn object_url(scheme: &str, bucket: &str, prefix: &str) -> String {
    match prefix {
        "" => format!("{scheme}://{bucket}"),
        p => format!("{scheme}://{bucket}/{p}"),
    }
}

/// `https://host:port/…` → (`host`, `Some(port)`).
fn split_endpoint(url: &str) -> (String, Option<u16>) {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            match port.parse() {
                Ok(p) => (host.trim_matches(['[', ']']).to_owned(), Some(p)),
                Err(_) => (authority.to_owned(), None),
            }
        }
        _ => (authority.to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(tool: ToolKind, repository: Repository) -> Settings {
        Settings {
            tool,
            name: "demo".into(),
            repository,
            retain: 3,
            data_dir: Some("/pg/data".into()),
        }
    }

    fn env_of(inv: &Invocation, key: &str) -> Option<String> {
        inv.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn pgbackrest_s3_environment() {
        let s = settings(
            ToolKind::PgBackRest,
            Repository::S3 {
                bucket: "bk".into(),
                prefix: "a/b".into(),
                endpoint: Some("https://127.0.0.1:9443".into()),
                region: "eu-1".into(),
                path_style: true,
                verify_tls: false,
            },
        );
        let ctx = Context {
            local: LocalServer {
                host: Some("/run/pg".into()),
                port: Some(5433),
                user: Some("su".into()),
            },
            credentials: Credentials {
                aws_key: Some("k".into()),
                aws_secret: Some("s".into()),
                ..Credentials::default()
            },
            ..Context::default()
        };
        let inv = s.invocation(Step::Backup, &ctx).unwrap();
        assert_eq!(inv.program, "pgbackrest");
        assert_eq!(inv.args, ["backup", "--type=full", "--start-fast"]);
        for (k, v) in [
            ("PGBACKREST_STANZA", "demo"),
            ("PGBACKREST_REPO1_TYPE", "s3"),
            ("PGBACKREST_REPO1_PATH", "/a/b"),
            ("PGBACKREST_REPO1_S3_ENDPOINT", "127.0.0.1"),
            ("PGBACKREST_REPO1_STORAGE_PORT", "9443"),
            ("PGBACKREST_REPO1_S3_URI_STYLE", "path"),
            ("PGBACKREST_REPO1_STORAGE_VERIFY_TLS", "n"),
            ("PGBACKREST_REPO1_S3_KEY", "k"),
            ("PGBACKREST_REPO1_S3_KEY_SECRET", "s"),
            ("PGBACKREST_REPO1_RETENTION_FULL", "3"),
            ("PGBACKREST_PG1_PATH", "/pg/data"),
            ("PGBACKREST_PG1_SOCKET_PATH", "/run/pg"),
            ("PGBACKREST_PG1_PORT", "5433"),
            ("PGBACKREST_PG1_USER", "su"),
        ] {
            assert_eq!(env_of(&inv, k).as_deref(), Some(v), "{k}");
        }
        assert_eq!(s.invocation(Step::Retention, &ctx), None);
        let restore = s
            .invocation(
                Step::Restore("L1"),
                &Context {
                    data_dir: Some("/new".into()),
                    ..ctx
                },
            )
            .unwrap();
        assert_eq!(restore.args, ["restore", "--type=none", "--set=L1"]);
        assert_eq!(
            env_of(&restore, "PGBACKREST_PG1_PATH").as_deref(),
            Some("/new")
        );
        assert_eq!(env_of(&restore, "PGBACKREST_PG1_PORT"), None);
    }

    #[test]
    fn barman_arguments() {
        let s = settings(
            ToolKind::BarmanCloud,
            Repository::S3 {
                bucket: "bk".into(),
                prefix: "p".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: "us-east-1".into(),
                path_style: false,
                verify_tls: true,
            },
        );
        let ctx = Context {
            local: LocalServer {
                host: Some("/run/pg".into()),
                port: Some(5433),
                user: None,
            },
            ..Context::default()
        };
        let base = [
            "--cloud-provider",
            "aws-s3",
            "--endpoint-url",
            "http://127.0.0.1:9000",
        ];
        let push = s.invocation(Step::WalPush("pg_wal/0001"), &ctx).unwrap();
        assert_eq!(push.program, "barman-cloud-wal-archive");
        assert_eq!(push.args[..4], base);
        assert_eq!(push.args[4..], ["s3://bk/p", "demo", "pg_wal/0001"]);
        let backup = s.invocation(Step::Backup, &ctx).unwrap();
        assert_eq!(
            backup.args[4..],
            [
                "--immediate-checkpoint",
                "--host",
                "/run/pg",
                "--port",
                "5433",
                "s3://bk/p",
                "demo"
            ]
        );
        let retention = s.invocation(Step::Retention, &ctx).unwrap();
        assert_eq!(retention.program, "barman-cloud-backup-delete");
        assert_eq!(retention.args[4..6], ["--retention-policy", "REDUNDANCY 3"]);
        assert_eq!(s.invocation(Step::Init, &ctx), None);
        let restore = s.invocation(Step::Restore("B1"), &ctx).unwrap();
        assert_eq!(restore.args[4..], ["s3://bk/p", "demo", "B1", "/pg/data"]);
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            split_endpoint("https://minio.ns.svc:9000/x"),
            ("minio.ns.svc".into(), Some(9000))
        );
        assert_eq!(
            split_endpoint("https://s3.example"),
            ("s3.example".into(), None)
        );
        assert_eq!(object_url("gs", "b", ""), "gs://b");
    }
}
