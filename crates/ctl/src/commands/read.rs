//! Commands that only read: `version`, `list`/`topology`, `show-config`, `history`, `dsn`.

use std::time::Duration;

use serde_json::{Value, json};

use super::{api_url, fail, members_with_role, timestamp};
use crate::cli::{Format, GroupArg, Role, WatchArgs};
use crate::context::{Ctl, cluster_json};
use crate::output::members::{MembersInput, render};
use crate::output::table::{Table, yaml_block};

/// Interval of `-W`.
const DEFAULT_WATCH: f64 = 2.0;

/// `version [CLUSTER [MEMBER...]]`.
///
/// # Errors
/// The DCS cannot be read.
pub async fn version(
    ctl: &Ctl,
    cluster: Option<&str>,
    names: &[String],
    group: &GroupArg,
) -> anyhow::Result<()> {
    println!("patronictl version {}", env!("CARGO_PKG_VERSION"));
    let Some(cluster_name) = cluster else {
        return Ok(());
    };
    println!();
    let opened = ctl.open(cluster_name, group).await?;
    let cluster = opened.cluster().await?;
    for m in members_with_role(&cluster, Role::Any) {
        if m.data.api_url.is_none() || (!names.is_empty() && !names.contains(&m.name)) {
            continue;
        }
        let answer = async {
            let r = ctl.rest.request(api_url(&m)?, "GET", None, None).await?;
            let data: Value = serde_json::from_str(&r.body)?;
            Ok::<_, anyhow::Error>(data)
        }
        .await;
        match answer {
            Ok(data) => {
                let version = data["patroni"]["version"]
                    .as_str()
                    .map_or_else(|| "None".to_string(), String::from);
                let pg = data["server_version"]
                    .as_u64()
                    .filter(|v| *v != 0)
                    .map(|v| format!(" PostgreSQL {}", format_pg_version(v)))
                    .unwrap_or_default();
                println!("{}: Patroni {version}{pg}", m.name);
            }
            Err(e) => println!("{}: failed to get version: {e:#}", m.name),
        }
    }
    Ok(())
}

/// `160004` → `16.4`, `90624` → `9.6.24`.
pub fn format_pg_version(v: u64) -> String {
    if v < 100_000 {
        format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
    } else {
        format!("{}.{}", v / 10000, v % 100)
    }
}

/// `list` and `topology`.
///
/// # Errors
/// The DCS cannot be read.
pub async fn list(
    ctl: &Ctl,
    names: &[String],
    group: &GroupArg,
    extended: bool,
    ts: bool,
    fmt: Format,
    watch: &WatchArgs,
) -> anyhow::Result<()> {
    let names: Vec<String> = if names.is_empty() {
        match &ctl.scope {
            Some(s) => vec![s.clone()],
            None => {
                eprintln!("WARNING - Listing members: No cluster names were provided");
                return Ok(());
            }
        }
    } else {
        names.to_vec()
    };
    let mut opened = Vec::new();
    for n in &names {
        opened.push(ctl.open(n, group).await?);
    }
    let interval = watch.watch.or(watch.w.then_some(DEFAULT_WATCH));
    loop {
        if interval.is_some() {
            print!("\x1b[2J\x1b[1;1H");
        }
        if ts {
            println!("{}", timestamp(0));
        }
        for o in &opened {
            let cluster = o.cluster().await?;
            let json = cluster_json(&cluster, &o.name);
            println!(
                "{}",
                render(&MembersInput {
                    cluster: &json,
                    initialize: cluster.initialize.as_deref(),
                    name: &o.name,
                    extended,
                    fmt,
                })
            );
        }
        match interval {
            Some(s) if s > 0.0 => tokio::time::sleep(Duration::from_secs_f64(s)).await,
            _ => return Ok(()),
        }
    }
}

/// `show-config`: `/config` as block YAML.
///
/// # Errors
/// The DCS cannot be read.
pub async fn show_config(ctl: &Ctl, name: Option<&str>, group: &GroupArg) -> anyhow::Result<()> {
    let name = ctl.cluster_name(name)?;
    let cluster = ctl.open(&name, group).await?.cluster().await?;
    if let Some(config) = &cluster.config {
        println!("{}", yaml_block(&Value::Object(config.data.clone())));
    }
    Ok(())
}

/// The `history` table.
pub fn history_table(lines: &[Value]) -> Table {
    let columns = ["TL", "LSN", "Reason", "Timestamp", "New Leader"];
    let rows = lines
        .iter()
        .map(|l| {
            let mut row: Vec<Value> = l.as_array().cloned().unwrap_or_default();
            while row.len() < columns.len() {
                row.push(json!(""));
            }
            row
        })
        .collect();
    Table {
        columns: columns.map(String::from).to_vec(),
        rows,
        right: vec!["TL", "LSN"],
        header: String::new(),
    }
}

/// `history`.
///
/// # Errors
/// The DCS cannot be read.
pub async fn history(
    ctl: &Ctl,
    name: Option<&str>,
    group: &GroupArg,
    fmt: Format,
) -> anyhow::Result<()> {
    let name = ctl.cluster_name(name)?;
    let cluster = ctl.open(&name, group).await?.cluster().await?;
    let lines = cluster.history.map(|h| h.lines).unwrap_or_default();
    println!("{}", history_table(&lines).render(fmt, "\t"));
    Ok(())
}

/// Patroni's `get_any_member`.
///
/// # Errors
/// Both `--role` and `--member`.
pub fn any_member(
    cluster: &patroni_core::Cluster,
    role: Option<Role>,
    member: Option<&str>,
) -> anyhow::Result<Option<patroni_core::Member>> {
    let role = match (role, member) {
        (Some(_), Some(_)) => return fail("--role and --member are mutually exclusive options"),
        (_, Some(_)) => Role::Any,
        (Some(r), None) => r,
        (None, None) => Role::Leader,
    };
    Ok(members_with_role(cluster, role)
        .into_iter()
        .find(|m| member.is_none_or(|n| n == m.name)))
}

/// `dsn`.
///
/// # Errors
/// No suitable member.
pub async fn dsn(
    ctl: &Ctl,
    name: Option<&str>,
    group: &GroupArg,
    role: Option<Role>,
    member: Option<&str>,
) -> anyhow::Result<()> {
    let name = ctl.cluster_name(name)?;
    let cluster = ctl.open(&name, group).await?.cluster().await?;
    let Some(m) = any_member(&cluster, role, member)? else {
        return fail("Can not find a suitable member");
    };
    let json = cluster_json(&cluster, &name);
    let doc = json["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|d| d["name"] == m.name.as_str()))
        .cloned()
        .unwrap_or_default();
    println!(
        "host={} port={}",
        doc["host"].as_str().unwrap_or("None"),
        doc["port"]
            .as_u64()
            .map_or("None".into(), |p| p.to_string())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL versions print as Patroni prints them.
    #[test]
    fn pg_versions() {
        assert_eq!(format_pg_version(150_012), "15.12");
        assert_eq!(format_pg_version(90_624), "9.6.24");
    }

    /// History rows are padded to five columns; TL and LSN right-aligned.
    #[test]
    fn history_matches_patroni() {
        let t = history_table(&[
            json!([
                1,
                25_165_984,
                "no recovery target specified",
                "2026-11-21T23:00:00.123456+00:00",
                "m1"
            ]),
            json!([2, 1234, "x"]),
        ]);
        let want = "\
+----+----------+------------------------------+----------------------------------+------------+
| TL |      LSN | Reason                       | Timestamp                        | New Leader |
+----+----------+------------------------------+----------------------------------+------------+
|  1 | 25165984 | no recovery target specified | 2026-11-21T23:00:00.123456+00:00 | m1         |
|  2 |     1234 | x                            |                                  |            |
+----+----------+------------------------------+----------------------------------+------------+";
        assert_eq!(t.render(Format::Pretty, "\t"), want);
    }
}
