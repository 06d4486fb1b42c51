//! `query`: runs SQL on a chosen member over a direct PostgreSQL connection
//! (`connect_timeout=5`, `application_name=Patroni ctl`), printing rows as Patroni does.
//!
//! Values arrive in PostgreSQL's text form (simple query protocol), so booleans print as
//! `t`/`f` where Patroni (psycopg) prints `True`/`False`.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};

use super::{fail, timestamp};
use crate::cli::{Command, Format, Role};
use crate::commands::read::any_member;
use crate::context::{Ctl, cluster_json};
use crate::output::table::Table;
use crate::prompt;

/// libpq `connect_timeout` Patroni uses.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `query`.
///
/// # Errors
/// Both or neither of `--command`/`--file`; the DCS cannot be read.
pub async fn query(ctl: &Ctl, command: Command) -> anyhow::Result<()> {
    let Command::Query {
        cluster_name,
        group,
        format,
        file,
        password,
        username,
        watch,
        role,
        member,
        delimiter,
        command,
        dbname,
    } = command
    else {
        return Ok(());
    };
    let sql = match (file, command) {
        (Some(_), Some(_)) => return fail("--file and --command are mutually exclusive options"),
        (Some(f), None) => {
            std::fs::read_to_string(&f).with_context(|| format!("read {}", f.display()))?
        }
        (None, Some(c)) => c,
        (None, None) => return fail("You need to specify either --command or --file"),
    };
    let password = if password {
        Some(prompt::prompt("Password", None)?)
    } else {
        ctl.env.get("PGPASSWORD").map(String::from)
    };
    let name = ctl.cluster_name(cluster_name.as_deref())?;
    let opened = ctl.open(&name, &group).await?;
    let cluster = opened.cluster().await?;
    let interval = watch.watch.or(watch.w.then_some(2.0));
    // libpq's defaults, from the one snapshot of the environment.
    let params = Params {
        user: username
            .or_else(|| ctl.env.get("PGUSER").map(String::from))
            .or_else(|| ctl.env.get("USER").map(String::from))
            .unwrap_or_else(|| "postgres".into()),
        password,
        dbname: dbname.or_else(|| ctl.env.get("PGDATABASE").map(String::from)),
    };
    loop {
        let table = run_once(&cluster, &name, role, member.as_deref(), &sql, &params).await?;
        let out = table.render(format, &delimiter);
        if !(out.is_empty() && format == Format::Tsv) {
            println!("{out}");
        }
        match interval {
            Some(s) if s > 0.0 => tokio::time::sleep(Duration::from_secs_f64(s)).await,
            _ => return Ok(()),
        }
    }
}

struct Params {
    user: String,
    password: Option<String>,
    dbname: Option<String>,
}

fn message_row(text: String) -> Table {
    Table {
        columns: Vec::new(),
        rows: vec![vec![json!(timestamp(0)), json!(text)]],
        right: Vec::new(),
        header: String::new(),
    }
}

async fn run_once(
    cluster: &patroni_core::Cluster,
    name: &str,
    role: Option<Role>,
    member: Option<&str>,
    sql: &str,
    params: &Params,
) -> anyhow::Result<Table> {
    let no_connection = || match (member, role) {
        (Some(m), _) => format!("No connection to member {m} is available"),
        (None, Some(r)) => format!("No connection to role '{}' is available", r.name()),
        (None, None) => "No connection is available".to_string(),
    };
    let Some(m) = any_member(cluster, role, member)? else {
        return Ok(message_row(no_connection()));
    };
    let doc = cluster_json(cluster, name)["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|d| d["name"] == m.name.as_str()).cloned())
        .unwrap_or_default();
    let mut config = tokio_postgres::Config::new();
    config
        .host(doc["host"].as_str().unwrap_or("localhost"))
        .port(
            doc["port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(5432),
        )
        .connect_timeout(CONNECT_TIMEOUT)
        .application_name("Patroni ctl");
    config.user(&params.user);
    if let Some(p) = &params.password {
        config.password(p);
    }
    if let Some(d) = &params.dbname {
        config.dbname(d);
    }
    let client = match config.connect(tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
        }
        Err(e) => return Ok(message_row(db_error(&e))),
    };
    if let Some(r) = role
        && !matches!(r, Role::Any | Role::Leader)
    {
        let in_recovery = match client
            .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])
            .await
        {
            Ok(row) => row.try_get::<_, bool>(0).unwrap_or(true),
            Err(e) => return Ok(message_row(db_error(&e))),
        };
        let fits = if in_recovery {
            matches!(r, Role::Replica | Role::Standby | Role::StandbyLeader)
        } else {
            r == Role::Primary
        };
        if !fits {
            return Ok(message_row(no_connection()));
        }
    }
    match client.simple_query(sql).await {
        Ok(messages) => Ok(rows_table(&messages)),
        Err(e) => Ok(message_row(db_error(&e))),
    }
}

/// The rows of the last statement returning rows, with its column names.
fn rows_table(messages: &[tokio_postgres::SimpleQueryMessage]) -> Table {
    let mut columns: Vec<String> = Vec::new();
    let mut rows: Vec<Vec<Value>> = Vec::new();
    for msg in messages {
        match msg {
            tokio_postgres::SimpleQueryMessage::RowDescription(desc) => {
                columns = desc.iter().map(|c| c.name().to_string()).collect();
                rows.clear();
            }
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                if columns.is_empty() {
                    columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                }
                rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map_or(Value::Null, |v| json!(v)))
                        .collect(),
                );
            }
            _ => {}
        }
    }
    Table {
        columns,
        rows,
        right: Vec::new(),
        header: String::new(),
    }
}

/// `ERROR, SQLSTATE: <code>` (or the message when there is no SQLSTATE).
fn db_error(e: &tokio_postgres::Error) -> String {
    let state = e
        .code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("{e}"));
    format!("ERROR, SQLSTATE: {}", state.replace('\n', " "))
}
