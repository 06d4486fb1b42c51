//! Commands acting on selected members through their REST API: `reload`, `restart`,
//! `reinit` and `flush`.

use std::time::Duration;

use patroni_dcs::Dcs as _;
use serde_json::{Map, Value, json};

use super::{
    api_url, confirm_members_action, fail, members_leader_first, parse_scheduled, select_members,
    timestamp,
};
use crate::cli::{Command, GroupArg, Role};
use crate::context::{Ctl, Opened, flags, loop_wait};
use crate::http::Response;
use crate::prompt;

/// How often `reinit --wait` asks the members how they are.
const REINIT_POLL: Duration = Duration::from_secs(2);

/// Dispatches the member commands.
///
/// # Errors
/// Patroni's messages for bad selections and declined confirmations; unreachable members.
pub async fn run(ctl: &Ctl, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Reload {
            cluster_name,
            member_names,
            group,
            role,
            force,
        } => reload(ctl, &cluster_name, &member_names, &group, role, force).await,
        Command::Restart { .. } => restart(ctl, command).await,
        Command::Reinit {
            cluster_name,
            member_names,
            group,
            force,
            from_leader,
            wait,
        } => {
            reinit(
                ctl,
                &cluster_name,
                &member_names,
                &group,
                force,
                from_leader,
                wait,
            )
            .await
        }
        Command::Flush {
            cluster_name,
            mut args,
            group,
            role,
            force,
        } => {
            let target = args.pop().unwrap_or_default();
            if target != "restart" && target != "switchover" {
                return Err(crate::UsageError(format!(
                    "Invalid value for '{{restart|switchover}}': '{target}' is not one of 'restart', 'switchover'."
                ))
                .into());
            }
            flush(ctl, &cluster_name, &args, &group, role, force, &target).await
        }
        _ => Ok(()),
    }
}

async fn reload(
    ctl: &Ctl,
    name: &str,
    names: &[String],
    group: &GroupArg,
    role: Role,
    force: bool,
) -> anyhow::Result<()> {
    let opened = ctl.open(name, group).await?;
    let cluster = opened.cluster().await?;
    let members = select_members(&opened, &cluster, names, role, force, "reload", true)?;
    for m in members {
        let r = ctl
            .rest
            .request(api_url(&m)?, "POST", Some("reload"), None)
            .await?;
        match r.status {
            200 => println!("No changes to apply on member {}", m.name),
            202 => println!(
                "Reload request received for member {} and will be processed within {} seconds",
                m.name,
                loop_wait(&cluster)
            ),
            s => println!(
                "Failed: reload for member {}, status code={s}, ({})",
                m.name, r.body
            ),
        }
    }
    Ok(())
}

/// Checks `X.Y.Z` / `X.Y` as Patroni's `postgres_version_to_int`.
fn check_pg_version(v: &str) -> anyhow::Result<()> {
    let parts: Vec<&str> = v.split('.').collect();
    let numeric = parts
        .iter()
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if !numeric || !(2..=3).contains(&parts.len()) {
        return fail(format!(
            "{v} is not a valid PostgreSQL version string (should be X.Y.Z or X.Y)"
        ));
    }
    Ok(())
}

fn check_response(r: &Response, member: &str, action: &str, silent_success: bool) -> bool {
    if r.status >= 400 {
        println!(
            "Failed: {action} for member {member}, status code={}, ({})",
            r.status, r.body
        );
        false
    } else {
        if !silent_success {
            println!("Success: {action} for member {member}");
        }
        true
    }
}

async fn restart(ctl: &Ctl, command: Command) -> anyhow::Result<()> {
    let Command::Restart {
        cluster_name,
        member_names,
        group,
        role,
        any,
        scheduled,
        pg_version,
        pending,
        timeout,
        force,
    } = command
    else {
        return Ok(());
    };
    let opened = ctl.open(&cluster_name, &group).await?;
    let cluster = opened.cluster().await?;
    let mut members = select_members(
        &opened,
        &cluster,
        &member_names,
        role,
        force,
        "restart",
        false,
    )?;
    let scheduled = match scheduled {
        Some(s) => Some(s),
        None if !force => {
            let next = (jiff::Zoned::now() + jiff::SignedDuration::from_hours(1))
                .strftime("%Y-%m-%dT%H:%M")
                .to_string();
            Some(prompt::prompt(
                &format!("When should the restart take place (e.g. {next}) "),
                Some("now"),
            )?)
        }
        None => None,
    };
    let scheduled_at = parse_scheduled(scheduled.as_deref())?;
    let mut content = Map::new();
    if pending {
        content.insert("restart_pending".into(), json!(true));
        if scheduled_at.is_none() {
            members.retain(|m| {
                m.data
                    .extra
                    .get("pending_restart")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            });
        }
    }
    if any {
        let pick = usize::try_from(jiff::Timestamp::now().subsec_nanosecond().unsigned_abs())
            .unwrap_or(0)
            % members.len().max(1);
        members = members.into_iter().skip(pick).take(1).collect();
    }
    confirm_members_action(&members, force, "restart", scheduled_at.as_deref(), pending)?;
    let version = match pg_version {
        Some(v) => Some(v),
        None if !force => Some(prompt::prompt(
            "Restart if the PostgreSQL version is less than provided (e.g. 9.5.2) ",
            Some(""),
        )?),
        None => None,
    };
    if let Some(v) = version.filter(|v| !v.is_empty()) {
        check_pg_version(&v)?;
        content.insert("postgres_version".into(), json!(v));
    }
    if let Some(at) = &scheduled_at {
        if flags(&cluster).paused {
            return fail("Can't schedule restart in the paused state");
        }
        content.insert("schedule".into(), json!(at));
    }
    if let Some(t) = timeout {
        content.insert("timeout".into(), json!(t));
    }
    let body = Value::Object(content);
    for m in members {
        let url = api_url(&m)?;
        if body.get("schedule").is_some() && force && m.data.extra.contains_key("scheduled_restart")
        {
            let r = ctl
                .rest
                .request(url, "DELETE", Some("restart"), None)
                .await?;
            check_response(&r, &m.name, "flush scheduled restart", true);
        }
        let r = ctl
            .rest
            .request(url, "POST", Some("restart"), Some(&body))
            .await?;
        match r.status {
            200 => println!("Success: restart on member {}", m.name),
            202 => println!("Success: restart scheduled on member {}", m.name),
            409 => println!(
                "Failed: another restart is already scheduled on member {}",
                m.name
            ),
            s => println!(
                "Failed: restart for member {}, status code={s}, ({})",
                m.name, r.body
            ),
        }
    }
    Ok(())
}

async fn reinit(
    ctl: &Ctl,
    name: &str,
    names: &[String],
    group: &GroupArg,
    force: bool,
    from_leader: bool,
    wait: bool,
) -> anyhow::Result<()> {
    let opened = ctl.open(name, group).await?;
    let cluster = opened.cluster().await?;
    let members = select_members(
        &opened,
        &cluster,
        names,
        Role::Replica,
        force,
        "reinitialize",
        true,
    )?;
    let mut waiting = Vec::new();
    for m in members {
        let mut body = json!({"force": force, "from_leader": from_leader});
        let url = api_url(&m)?.to_string();
        loop {
            let r = ctl
                .rest
                .request(&url, "POST", Some("reinitialize"), Some(&body))
                .await?;
            let started = check_response(&r, &m.name, "reinitialize", false);
            if !started
                && r.body.ends_with(" already in progress")
                && !force
                && prompt::confirm("Do you want to cancel it and reinitialize anyway?")?
            {
                body["force"] = json!(true);
                continue;
            }
            if started && wait {
                waiting.push((m.name.clone(), url.clone()));
            }
            break;
        }
    }
    wait_reinit(ctl, waiting).await
}

async fn wait_reinit(ctl: &Ctl, mut waiting: Vec<(String, String)>) -> anyhow::Result<()> {
    let mut shown: Vec<String> = Vec::new();
    while !waiting.is_empty() {
        let names: Vec<String> = waiting.iter().map(|w| w.0.clone()).collect();
        if names != shown {
            println!(
                "Waiting for reinitialize to complete on: {}",
                names.join(", ")
            );
            shown = names;
        }
        tokio::time::sleep(REINIT_POLL).await;
        let mut still = Vec::new();
        for (name, url) in waiting {
            let r = ctl.rest.request(&url, "GET", Some("patroni"), None).await?;
            let state = serde_json::from_str::<Value>(&r.body)
                .ok()
                .and_then(|d| d["state"].as_str().map(String::from));
            if state.as_deref() != Some("creating replica") {
                println!("Reinitialize is completed on: {name}");
            } else {
                still.push((name, url));
            }
        }
        waiting = still;
    }
    Ok(())
}

async fn flush(
    ctl: &Ctl,
    name: &str,
    names: &[String],
    group: &GroupArg,
    role: Role,
    force: bool,
    target: &str,
) -> anyhow::Result<()> {
    let opened = ctl.open(name, group).await?;
    let cluster = opened.cluster().await?;
    if target == "restart" {
        for m in select_members(&opened, &cluster, names, role, force, "flush", true)? {
            if m.data
                .extra
                .get("scheduled_restart")
                .is_some_and(|v| !v.is_null())
            {
                let r = ctl
                    .rest
                    .request(api_url(&m)?, "DELETE", Some("restart"), None)
                    .await?;
                check_response(&r, &m.name, "flush scheduled restart", false);
            } else {
                println!("No scheduled restart for member {}", m.name);
            }
        }
        return Ok(());
    }
    flush_switchover(ctl, &opened, &cluster).await
}

async fn flush_switchover(
    ctl: &Ctl,
    opened: &Opened,
    cluster: &patroni_core::Cluster,
) -> anyhow::Result<()> {
    let Some(failover) = cluster
        .failover
        .as_ref()
        .filter(|f| f.scheduled_at.as_deref().is_some_and(|s| !s.is_empty()))
    else {
        println!("No pending scheduled switchover");
        return Ok(());
    };
    for m in members_leader_first(cluster) {
        match ctl
            .rest
            .request(api_url(&m)?, "DELETE", Some("switchover"), None)
            .await
        {
            Ok(r) if r.status == 200 || r.status == 404 => {
                let prefix = if r.status == 200 { "Success" } else { "Failed" };
                println!("{prefix}: {}", r.body);
                return Ok(());
            }
            Ok(r) => println!(
                "Failed: member={}, status_code={}, ({})",
                m.name, r.status, r.body
            ),
            Err(e) => {
                eprintln!("WARNING - {e:#}");
                eprintln!("WARNING - Member {} is not accessible", m.name);
            }
        }
    }
    println!(
        "{} Could not find any accessible member of cluster {}",
        timestamp(6),
        opened.name
    );
    opened
        .dcs
        .manual_failover(patroni_dcs::FailoverRequest::Clear, Some(&failover.version))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--pg-version` accepts X.Y and X.Y.Z only.
    #[test]
    fn pg_version_validation() {
        assert!(check_pg_version("15.4").is_ok());
        assert!(check_pg_version("9.6.24").is_ok());
        assert!(check_pg_version("15").is_err());
        assert!(check_pg_version("15.x").is_err());
    }
}
