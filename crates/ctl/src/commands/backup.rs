//! `patronictl backup` (patroni-rs only, docs/backups.md): the leader's base-backup schedule
//! from its `GET /backup`, and with `--now` a backup started through `POST /backup`.

use anyhow::bail;
use serde_json::Value;

use super::api_url;
use crate::cli::GroupArg;
use crate::context::Ctl;

/// Shows the leader's backup state; with `now`, starts a backup there first.
///
/// # Errors
/// No leader, its API unreachable, or the backup refused.
pub async fn backup(
    ctl: &Ctl,
    name: Option<&str>,
    group: &GroupArg,
    now: bool,
    json: bool,
) -> anyhow::Result<()> {
    let name = ctl.cluster_name(name)?;
    let cluster = ctl.open(&name, group).await?.cluster().await?;
    let Some(leader) = cluster.leader_name().and_then(|l| cluster.member(l)) else {
        bail!("Cluster {name} has no leader: base backups run on the leader");
    };
    let url = api_url(leader)?;
    if now {
        let r = ctl.rest.request(url, "POST", Some("backup"), None).await?;
        match r.status {
            202 => println!("Base backup started on {}", leader.name),
            s => bail!(
                "Failed: backup on {}, status code={s}, ({})",
                leader.name,
                r.body.trim()
            ),
        }
    }
    let r = ctl.rest.request(url, "GET", Some("backup"), None).await?;
    if r.status != 200 {
        bail!(
            "Failed: backup status of {}, status code={}, ({})",
            leader.name,
            r.status,
            r.body.trim()
        );
    }
    let status: Value = serde_json::from_str(&r.body)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let text = |v: &Value| v.as_str().map_or_else(|| "-".to_owned(), str::to_owned);
    println!("Leader:      {}", leader.name);
    println!("Schedule:    {}", text(&status["schedule"]));
    println!("Command:     {}", text(&status["command"]));
    println!("Next run:    {}", text(&status["next_run"]));
    println!("Running:     {}", text(&status["running_since"]));
    for (label, key) in [("Last:", "last"), ("Last good:", "last_success")] {
        let run = &status[key];
        if run.is_null() {
            println!("{label:<12} -");
        } else {
            println!(
                "{label:<12} {} → {} ({}, {}, exit code {})",
                text(&run["started"]),
                text(&run["finished"]),
                if run["success"] == true { "ok" } else { "failed" },
                text(&run["trigger"]),
                run["exit_code"]
            );
        }
    }
    println!(
        "Since start: {} succeeded, {} failed",
        status["succeeded"], status["failed"]
    );
    Ok(())
}
