//! After the first start of a new cluster: the users Patroni needs and the user's
//! `bootstrap.post_bootstrap` script.
//!
//! Order, as Patroni's `post_bootstrap`: set the superuser's password (when configured), run
//! `post_bootstrap`, create the replication role, then the rewind role (PostgreSQL 11+, only
//! when it differs from the superuser) with the functions `pg_rewind` needs. Role statements
//! run with statement logging off so passwords never reach the server log, and with
//! `synchronous_commit = local` so they cannot hang on a synchronous standby that does not
//! exist yet. Every step is idempotent (`CREATE` or `ALTER`).

use patroni_config::PgUser;

use crate::client::{PgClient, QueryError};
use crate::conninfo::ConnParams;
use crate::files::FileError;
use crate::launcher::Programs;
use crate::layout::Layout;
use crate::tool::{self, ToolError};

/// Functions `pg_rewind` calls, granted to a dedicated rewind role.
const REWIND_FUNCTIONS: [&str; 4] = [
    "pg_ls_dir(text, boolean, boolean)",
    "pg_stat_file(text, boolean)",
    "pg_read_binary_file(text)",
    "pg_read_binary_file(text, bigint, bigint, boolean)",
];

/// Session settings that keep role statements (and their passwords) out of the server log.
const QUIET_SESSION: &str = "SET log_statement TO none; SET log_min_duration_statement TO -1; \
     SET log_min_error_statement TO 'log'; SET pg_stat_statements.track_utility TO 'off'";
/// Undoes [`QUIET_SESSION`].
const RESET_SESSION: &str = "RESET log_min_error_statement; RESET log_min_duration_statement; \
     RESET log_statement; RESET pg_stat_statements.track_utility";

/// An attribute of a role Patroni creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleOption {
    /// `SUPERUSER`.
    Superuser,
    /// `REPLICATION`.
    Replication,
    /// `LOGIN` (added unless `NOLOGIN` is given).
    Login,
    /// `NOLOGIN`.
    NoLogin,
}

/// `post_bootstrap` could not run or failed (the bootstrap fails with it).
#[derive(Debug, thiserror::Error)]
pub enum PostBootstrapError {
    /// The command line does not parse.
    #[error("cannot split post_bootstrap command {0:?}")]
    BadCommand(String),
    /// The password file could not be written.
    #[error("write the password file")]
    Pgpass(#[source] FileError),
    /// The script failed.
    #[error("post_bootstrap script")]
    Script(#[source] ToolError),
}

// === impl RoleOption ===

impl RoleOption {
    fn sql(self) -> &'static str {
        match self {
            Self::Superuser => "SUPERUSER",
            Self::Replication => "REPLICATION",
            Self::Login => "LOGIN",
            Self::NoLogin => "NOLOGIN",
        }
    }
}

/// `'text'` as an SQL string literal: quotes doubled, and an `E''` literal with doubled
/// backslashes when there are any, so the meaning does not depend on
/// `standard_conforming_strings`.
pub fn quote_literal(text: &str) -> String {
    let body = text.replace('\'', "''");
    if body.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// `"name"` as an SQL identifier, quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The statement that creates role `name`, or alters it when it exists (Patroni's
/// `create_or_update_role`). Pure.
pub fn create_or_update_role_sql(
    name: &str,
    password: Option<&str>,
    options: &[RoleOption],
) -> String {
    let mut words: Vec<String> = options.iter().map(|o| o.sql().to_owned()).collect();
    if !options.contains(&RoleOption::Login) && !options.contains(&RoleOption::NoLogin) {
        words.push("LOGIN".to_owned());
    }
    if let Some(pw) = password {
        words.push("PASSWORD".to_owned());
        words.push(quote_literal(pw));
    }
    let attrs = words.join(" ");
    let ident = quote_ident(name);
    format!(
        "DO $$\nBEGIN\n    SET local synchronous_commit = 'local';\n    \
         PERFORM * FROM pg_catalog.pg_authid WHERE rolname = {lit};\n    \
         IF FOUND THEN\n        ALTER ROLE {ident} WITH {attrs};\n    \
         ELSE\n        CREATE ROLE {ident} WITH {attrs};\n    END IF;\nEND;$$",
        lit = quote_literal(name),
    )
}

/// Creates or alters role `name`, with statement logging off for the session.
///
/// # Errors
/// A statement fails.
pub async fn create_or_update_role(
    client: &PgClient,
    name: &str,
    password: Option<&str>,
    options: &[RoleOption],
) -> Result<(), QueryError> {
    let what = "create or update role";
    let q = |source| QueryError::Query { what, source };
    let db = client.inner();
    db.batch_execute(QUIET_SESSION).await.map_err(q)?;
    let result = db
        .batch_execute(&create_or_update_role_sql(name, password, options))
        .await
        .map_err(q);
    db.batch_execute(RESET_SESSION).await.map_err(q)?;
    result
}

/// Sets the superuser's password when one is configured.
///
/// # Errors
/// A statement fails.
pub async fn set_superuser_password(
    client: &PgClient,
    superuser: &PgUser,
) -> Result<(), QueryError> {
    match &superuser.password {
        Some(pw) => {
            create_or_update_role(
                client,
                &superuser.username,
                Some(pw),
                &[RoleOption::Superuser],
            )
            .await
        }
        None => Ok(()),
    }
}

/// Creates the replication role, and a distinct rewind role with the functions it needs.
///
/// # Errors
/// A statement fails.
pub async fn create_replication_users(
    client: &PgClient,
    superuser: &PgUser,
    replication: &PgUser,
    rewind: Option<&PgUser>,
) -> Result<(), QueryError> {
    create_or_update_role(
        client,
        &replication.username,
        replication.password.as_deref(),
        &[RoleOption::Replication],
    )
    .await?;
    let Some(rewind) = rewind.filter(|r| *r != superuser) else {
        return Ok(());
    };
    create_or_update_role(client, &rewind.username, rewind.password.as_deref(), &[]).await?;
    for function in REWIND_FUNCTIONS {
        let sql = format!(
            "DO $$\nBEGIN\n    SET local synchronous_commit = 'local';\n    \
             GRANT EXECUTE ON function pg_catalog.{function} TO {};\nEND;$$",
            quote_ident(&rewind.username)
        );
        client
            .inner()
            .batch_execute(&sql)
            .await
            .map_err(|source| QueryError::Query {
                what: "grant rewind functions",
                source,
            })?;
    }
    Ok(())
}

/// Runs `bootstrap.post_bootstrap`: the command (shell-split) with one more argument, the
/// local superuser's connection string (no password: it is in `PGPASSFILE`).
///
/// # Errors
/// The command does not parse, the password file cannot be written, or the script fails.
pub async fn run_post_bootstrap(
    programs: &Programs,
    layout: &Layout,
    command: &str,
    local_superuser: &ConnParams,
    dbname: &str,
) -> Result<(), PostBootstrapError> {
    let words = shlex::split(command)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| PostBootstrapError::BadCommand(command.to_owned()))?;
    let (program, rest) = words
        .split_first()
        .ok_or_else(|| PostBootstrapError::BadCommand(command.to_owned()))?;
    let connstring = local_superuser.to_dsn_with_dbname(dbname);
    let mut for_pgpass = local_superuser.clone();
    // `localhost` in .pgpass also matches Unix-socket connections.
    if for_pgpass.get("host").is_none_or(|h| h.starts_with('/')) {
        for_pgpass.set("host", "localhost");
    }
    if let Some(lines) = for_pgpass.pgpass_lines() {
        layout
            .write_pgpass(&lines)
            .map_err(PostBootstrapError::Pgpass)?;
    }
    let mut cmd = programs.launcher().command(program);
    cmd.args(rest)
        .arg(connstring)
        .env("PGPASSFILE", layout.pgpass())
        .env(
            "PGOPTIONS",
            "-c synchronous_commit=local -c statement_timeout=0",
        );
    tracing::info!(command, "running post_bootstrap");
    tool::run(cmd, program.into())
        .await
        .map(drop)
        .map_err(PostBootstrapError::Script)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BinDir, Launcher};

    /// The role statement matches Patroni's, with quoting (golden).
    #[test]
    fn create_role_statement_golden() {
        assert_eq!(
            create_or_update_role_sql("repl\"user", Some("it's"), &[RoleOption::Replication]),
            "DO $$\nBEGIN\n    SET local synchronous_commit = 'local';\n    \
             PERFORM * FROM pg_catalog.pg_authid WHERE rolname = 'repl\"user';\n    \
             IF FOUND THEN\n        ALTER ROLE \"repl\"\"user\" WITH REPLICATION LOGIN PASSWORD 'it''s';\n    \
             ELSE\n        CREATE ROLE \"repl\"\"user\" WITH REPLICATION LOGIN PASSWORD 'it''s';\n    END IF;\nEND;$$"
        );
        let sql = create_or_update_role_sql("r", None, &[RoleOption::NoLogin]);
        assert!(
            sql.contains("WITH NOLOGIN;") && !sql.contains("PASSWORD"),
            "{sql}"
        );
    }

    /// Backslashes make an escape-string literal.
    #[test]
    fn literals_and_identifiers_are_quoted() {
        assert_eq!(quote_literal("a\\b'c"), "E'a\\\\b''c'");
        assert_eq!(quote_literal("plain"), "'plain'");
        assert_eq!(quote_ident("My\"Role"), "\"My\"\"Role\"");
    }

    /// The script gets the connection string as its last argument and the password file in
    /// its environment (real process: `sh`).
    #[tokio::test]
    async fn post_bootstrap_gets_connstring_and_passfile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path(), dir.path().join("pgpass"));
        let programs = Programs::new(BinDir::new(None), Launcher::direct());
        let out = dir.path().join("out");
        let command = format!(
            "sh -c 'echo \"$1\" > {0}; cat \"$PGPASSFILE\" >> {0}; echo $PGOPTIONS >> {0}' script",
            out.display()
        );
        let local = ConnParams::new()
            .with("host", "/run/pg")
            .with("port", "5432")
            .with("user", "postgres")
            .with("password", "pw");
        run_post_bootstrap(&programs, &layout, &command, &local, "postgres")
            .await
            .expect("script runs");
        assert_eq!(
            std::fs::read_to_string(&out).expect("out"),
            "dbname=postgres user=postgres host=/run/pg port=5432\n\
             localhost:5432:*:postgres:pw\n\
             -c synchronous_commit=local -c statement_timeout=0\n"
        );
        let e = run_post_bootstrap(&programs, &layout, "false", &local, "postgres")
            .await
            .expect_err("script fails");
        assert!(matches!(e, PostBootstrapError::Script(_)));
        assert!(matches!(
            run_post_bootstrap(&programs, &layout, "'unbalanced", &local, "postgres").await,
            Err(PostBootstrapError::BadCommand(_))
        ));
    }
}
