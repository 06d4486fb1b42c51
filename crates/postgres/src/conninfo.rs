//! libpq connection parameters and the two ways Patroni writes them: as a keyword/value
//! connection string (`primary_conninfo`, `--source-server`, `--dbname`, the `post_bootstrap`
//! argument) and as `.pgpass` lines (so passwords never appear in a command line or in
//! `postgresql.conf`).
//!
//! Both renderings follow Patroni's `format_dsn` and `_pgpass_line` byte for byte: a fixed
//! keyword order, values escaped with a backslash before `'`, `\` and space, and `passfile`
//! replacing `password` when both are known.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use patroni_config::PgUser;

/// Keywords a connection string may carry, in the order Patroni writes them. `password` is
/// replaced by `passfile` when a passfile is set (see [`ConnParams::to_dsn`]).
const DSN_KEYWORDS: [&str; 19] = [
    "dbname",
    "user",
    "password",
    "host",
    "port",
    "sslmode",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "application_name",
    "krbsrvname",
    "gssencmode",
    "channel_binding",
    "sslnegotiation",
    "target_session_attrs",
];

/// libpq connection parameters by keyword (`host`, `port`, `user`, `password`, `sslmode`, …).
///
/// `Debug` never prints the password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnParams(BTreeMap<String, String>);

// === impl ConnParams ===

impl ConnParams {
    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// `host`, `port`, and the user's name, password and libpq options (`sslmode`, …), as
    /// Patroni's `Member.conn_kwargs(auth)` builds them for a member's `conn_url`.
    pub fn for_user(host: &str, port: u16, user: &PgUser) -> Self {
        let mut params = Self::new()
            .with("host", host)
            .with("port", port.to_string())
            .with("user", &user.username);
        if let Some(password) = &user.password {
            params.set("password", password);
        }
        for (key, value) in &user.params {
            params.set(key, value);
        }
        params
    }

    /// Sets `key` (consuming builder).
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.set(key, value);
        self
    }

    /// Sets `key`.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.0.insert(key.to_owned(), value.into());
    }

    /// Sets `key` unless it is already set.
    pub fn set_default(&mut self, key: &str, value: &str) {
        self.0
            .entry(key.to_owned())
            .or_insert_with(|| value.to_owned());
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Every parameter, by keyword.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The connection string without `dbname`, as written to `primary_conninfo` and passed to
    /// `pg_rewind --source-server`: `passfile` instead of `password` when a passfile is set.
    pub fn to_dsn(&self) -> String {
        self.render(&["dbname"], None)
    }

    /// The connection string with `dbname` (defaulting to `default_dbname`) and without any
    /// password or passfile, as passed to `pg_basebackup --dbname`, replica-creation scripts
    /// and `post_bootstrap`; the password travels in `PGPASSFILE` instead.
    pub fn to_dsn_with_dbname(&self, default_dbname: &str) -> String {
        self.render(&["password", "passfile"], Some(default_dbname))
    }

    fn render(&self, skip: &[&str], default_dbname: Option<&str>) -> String {
        let has_passfile = self.get("passfile").is_some_and(|p| !p.is_empty());
        DSN_KEYWORDS
            .iter()
            .map(|kw| match *kw {
                "password" if has_passfile => "passfile",
                other => other,
            })
            .filter(|kw| !skip.contains(kw))
            .filter_map(|kw| {
                let value = match (kw, self.get(kw), default_dbname) {
                    (_, Some(v), _) => v,
                    ("dbname", None, Some(db)) => db,
                    _ => return None,
                };
                Some(format!("{kw}={}", escape_dsn_value(value)))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The `.pgpass` line(s) that give this connection its password: `host:port:*:user:password`
    /// with `:` and `\` escaped, `*` for anything unset, one line per comma-separated host.
    /// `None` when there is no password.
    pub fn pgpass_lines(&self) -> Option<String> {
        let password = self.get("password")?;
        let field = |key: &str| escape_pgpass_field(self.get(key).unwrap_or("*"));
        let (port, user, password) = (field("port"), field("user"), escape_pgpass_field(password));
        let host = field("host");
        let lines: Vec<String> = host
            .split(',')
            .map(|h| format!("{h}:{port}:*:{user}:{password}"))
            .collect();
        Some(lines.join("\n"))
    }
}

impl fmt::Debug for ConnParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if k == "password" { "<redacted>" } else { v };
                (k, shown)
            }))
            .finish()
    }
}

/// Backslash before `'`, `\` and space, as Patroni's `format_dsn`; an empty value becomes `''`
/// (libpq needs the quotes).
pub fn escape_dsn_value(value: &str) -> String {
    if value.is_empty() {
        return "''".to_owned();
    }
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\'' | '\\' | ' ') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn escape_pgpass_field(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Sets `passfile` to `path` when `params` carries a password (PostgreSQL 10+ reads it), so the
/// rendered connection string names the file instead of the secret.
pub fn use_passfile(params: &mut ConnParams, path: &Path) {
    if params.get("password").is_some() {
        params.set("passfile", path.to_string_lossy());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicator() -> PgUser {
        PgUser {
            username: "replicator".into(),
            password: Some("rep pass".into()),
            params: BTreeMap::from([("sslmode".to_owned(), "require".to_owned())]),
        }
    }

    /// `primary_conninfo` lists keywords in Patroni's order, with passfile instead of password.
    #[test]
    fn primary_conninfo_uses_patroni_keyword_order_and_passfile() {
        let mut p = ConnParams::for_user("10.0.0.1", 5432, &replicator());
        p.set("application_name", "pg-1");
        p.set_default("sslmode", "prefer");
        p.set_default("gssencmode", "prefer");
        p.set_default("channel_binding", "prefer");
        use_passfile(&mut p, Path::new("/home/postgres/pgpass"));
        assert_eq!(
            p.to_dsn(),
            "user=replicator passfile=/home/postgres/pgpass host=10.0.0.1 port=5432 \
             sslmode=require application_name=pg-1 gssencmode=prefer channel_binding=prefer"
        );
    }

    /// Without a passfile the password is written, escaped.
    #[test]
    fn password_is_written_escaped_without_passfile() {
        let p = ConnParams::for_user("h", 5432, &replicator());
        assert_eq!(
            p.to_dsn(),
            "user=replicator password=rep\\ pass host=h port=5432 sslmode=require"
        );
    }

    /// Quotes, backslashes and spaces get a backslash; empty values are quoted.
    #[test]
    fn dsn_values_are_escaped_like_patroni() {
        assert_eq!(escape_dsn_value("it's a\\b"), "it\\'s\\ a\\\\b");
        assert_eq!(escape_dsn_value(""), "''");
        let p = ConnParams::new()
            .with("application_name", "")
            .with("dbname", "my db");
        assert_eq!(p.to_dsn(), "application_name=''");
        assert_eq!(
            p.to_dsn_with_dbname("postgres"),
            "dbname=my\\ db application_name=''"
        );
    }

    /// The dbname form defaults the database and never carries a secret.
    #[test]
    fn dsn_with_dbname_has_no_secret() {
        let mut p = ConnParams::for_user("h", 5433, &replicator());
        use_passfile(&mut p, Path::new("/p"));
        assert_eq!(
            p.to_dsn_with_dbname("postgres"),
            "dbname=postgres user=replicator host=h port=5433 sslmode=require"
        );
    }

    /// `.pgpass` lines escape `:` and `\` and repeat per host.
    #[test]
    fn pgpass_lines_escape_and_repeat_per_host() {
        let p = ConnParams::new()
            .with("host", "a,b")
            .with("user", "u:x")
            .with("password", "p\\w");
        assert_eq!(
            p.pgpass_lines().as_deref(),
            Some("a:*:*:u\\:x:p\\\\w\nb:*:*:u\\:x:p\\\\w")
        );
        assert_eq!(ConnParams::new().with("host", "a").pgpass_lines(), None);
    }

    /// Debug output hides the password.
    #[test]
    fn debug_redacts_password() {
        let p = ConnParams::for_user("h", 1, &replicator());
        let shown = format!("{p:?}");
        assert!(
            shown.contains("<redacted>") && !shown.contains("rep pass"),
            "{shown}"
        );
    }
}
