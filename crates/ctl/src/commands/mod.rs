//! The subcommands, one module per group, and what they share: choosing members by role
//! and name (Patroni's `get_all_members`/`get_members`), printing the member table, and the
//! timestamps Patroni prints.

pub mod backup;
pub mod cluster_role;
pub mod config;
pub mod failover;
pub mod members;
pub mod query;
pub mod read;
pub mod remove;

use anyhow::bail;
use patroni_core::{Cluster, Member};
use serde_json::Value;

use crate::cli::{Command, Format, Role};
use crate::context::{Ctl, Opened, cluster_json};
use crate::output::members::{MembersInput, render, truthy};
use crate::prompt;

/// A command failed in a way Patroni reports as `Error: <message>`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CtlError(pub String);

/// Fails with a Patroni-style message.
pub fn fail<T>(msg: impl Into<String>) -> anyhow::Result<T> {
    Err(CtlError(msg.into()).into())
}

/// Runs one command.
///
/// # Errors
/// Whatever the command reports; printed as `Error: ...` with exit code 1.
pub async fn run(ctl: &Ctl, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Version {
            cluster_name,
            member_names,
            group,
        } => read::version(ctl, cluster_name.as_deref(), &member_names, &group).await,
        Command::List {
            cluster_names,
            group,
            extended,
            timestamp,
            format,
            watch,
        } => {
            read::list(
                ctl,
                &cluster_names,
                &group,
                extended,
                timestamp,
                format,
                &watch,
            )
            .await
        }
        Command::Topology {
            cluster_names,
            group,
            watch,
        } => {
            read::list(
                ctl,
                &cluster_names,
                &group,
                false,
                false,
                Format::Topology,
                &watch,
            )
            .await
        }
        Command::ShowConfig {
            cluster_name,
            group,
        } => read::show_config(ctl, cluster_name.as_deref(), &group).await,
        Command::History {
            cluster_name,
            group,
            format,
        } => read::history(ctl, cluster_name.as_deref(), &group, format).await,
        Command::Dsn {
            cluster_name,
            group,
            role,
            member,
        } => {
            read::dsn(
                ctl,
                cluster_name.as_deref(),
                &group,
                role,
                member.as_deref(),
            )
            .await
        }
        Command::Query { .. } => query::query(ctl, command).await,
        Command::Remove {
            cluster_name,
            group,
            format,
        } => remove::remove(ctl, &cluster_name, &group, format).await,
        Command::EditConfig { .. } => config::edit_config(ctl, command).await,
        Command::Pause {
            cluster_name,
            group,
            wait,
        } => config::toggle_pause(ctl, cluster_name.as_deref(), &group, true, wait).await,
        Command::Resume {
            cluster_name,
            group,
            wait,
        } => config::toggle_pause(ctl, cluster_name.as_deref(), &group, false, wait).await,
        Command::Switchover { .. } | Command::Failover { .. } => {
            failover::failover_or_switchover(ctl, command).await
        }
        Command::DemoteCluster {
            cluster_name,
            force,
            host,
            port,
            restore_command,
            primary_slot_name,
        } => {
            let section = cluster_role::standby_section(
                host.as_deref(),
                port,
                restore_command.as_deref(),
                primary_slot_name.as_deref(),
            )?;
            cluster_role::change_cluster_role(ctl, cluster_name.as_deref(), force, Some(section))
                .await
        }
        Command::PromoteCluster {
            cluster_name,
            force,
        } => cluster_role::change_cluster_role(ctl, cluster_name.as_deref(), force, None).await,
        Command::Backup {
            cluster_name,
            group,
            now,
            json,
        } => backup::backup(ctl, cluster_name.as_deref(), &group, now, json).await,
        Command::Reload { .. }
        | Command::Restart { .. }
        | Command::Reinit { .. }
        | Command::Flush { .. } => members::run(ctl, command).await,
    }
}

/// Prints the member table of `cluster` (pretty unless told otherwise).
pub fn print_members(opened: &Opened, cluster: &Cluster, fmt: Format) {
    let json = cluster_json(cluster, &opened.name);
    println!(
        "{}",
        render(&MembersInput {
            cluster: &json,
            initialize: cluster.initialize.as_deref(),
            name: &opened.name,
            extended: false,
            fmt,
        })
    );
}

/// Whether a member must not be promoted (`nofailover`, or `failover_priority` 0).
pub fn nofailover(m: &Member) -> bool {
    let tags = m.data.tags.clone().unwrap_or_default();
    let flag = match tags.get("nofailover") {
        Some(Value::String(s)) => matches!(s.to_lowercase().as_str(), "true" | "on" | "yes" | "1"),
        other => truthy(other),
    };
    flag || tags.get("failover_priority").and_then(Value::as_i64) == Some(0)
}

/// Patroni's `get_all_members`: the leader for leader-ish roles, else members by role.
pub fn members_with_role(cluster: &Cluster, role: Role) -> Vec<Member> {
    let leader = cluster.leader.as_ref().filter(|l| !l.name.is_empty());
    match role {
        Role::Leader | Role::Primary | Role::StandbyLeader => {
            let Some(l) = leader else { return Vec::new() };
            let member = l
                .member
                .clone()
                .or_else(|| cluster.member(&l.name).cloned());
            let Some(m) = member else { return Vec::new() };
            let dcs_role = m.data.role.as_deref().unwrap_or_default();
            let ok = match role {
                Role::Leader => true,
                Role::StandbyLeader => !matches!(dcs_role, "primary" | "master"),
                _ => dcs_role != "standby_leader",
            };
            if ok { vec![m] } else { Vec::new() }
        }
        Role::Any => cluster.members.clone(),
        Role::Replica | Role::Standby => cluster
            .members
            .iter()
            .filter(|m| Some(m.name.as_str()) != leader.map(|l| l.name.as_str()))
            .cloned()
            .collect(),
    }
}

/// Patroni's `get_members`: prints the table, intersects with the names given (or asks),
/// checks names and confirms unless `force`.
///
/// # Errors
/// Patroni's messages for no members, unknown names, a declined confirmation.
pub fn select_members(
    opened: &Opened,
    cluster: &Cluster,
    names: &[String],
    role: Role,
    force: bool,
    action: &str,
    ask_confirmation: bool,
) -> anyhow::Result<Vec<Member>> {
    let members = members_with_role(cluster, role);
    let mut candidates: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    candidates.sort();
    if names.is_empty() && candidates.is_empty() {
        return fail(format!("{} cluster doesn't have any members", opened.name));
    }
    print_members(opened, cluster, Format::Pretty);
    let mut chosen: Vec<String> = if names.is_empty() {
        if action == "reinitialize" {
            Vec::new()
        } else {
            candidates.clone()
        }
    } else {
        let known: Vec<String> = names
            .iter()
            .filter(|n| candidates.contains(n))
            .cloned()
            .collect();
        if known.is_empty() {
            return fail(format!("No {} among provided members", role_repr(role)));
        }
        known
    };
    if chosen.is_empty() && !force {
        chosen = vec![prompt::prompt(
            &format!(
                "Which member do you want to {action} [{}]?",
                candidates.join(", ")
            ),
            Some(""),
        )?];
    }
    for name in &chosen {
        if !candidates.contains(name) {
            return fail(format!("{name} is not a member of cluster"));
        }
    }
    let selected: Vec<Member> = members
        .into_iter()
        .filter(|m| chosen.contains(&m.name))
        .collect();
    if ask_confirmation {
        confirm_members_action(&selected, force, action, None, false)?;
    }
    Ok(selected)
}

/// `repr()` of a role as Patroni's messages show it.
pub fn role_repr(role: Role) -> String {
    role.name().to_string()
}

/// Patroni's `confirm_members_action`.
///
/// # Errors
/// `Aborted <action>` when declined.
pub fn confirm_members_action(
    members: &[Member],
    force: bool,
    action: &str,
    scheduled_at: Option<&str>,
    pending: bool,
) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    match scheduled_at {
        Some(at) => {
            let ok = if pending {
                prompt::confirm(
                    "The nodes needing a restart will be identified at the scheduled time, and might be different from the ones showing pending restart right now. Is this fine?",
                )?
            } else {
                prompt::confirm(&format!(
                    "Are you sure you want to schedule {action} of members {} at {at}?",
                    names.join(", ")
                ))?
            };
            if !ok {
                return fail(format!("Aborted scheduled {action}"));
            }
        }
        None => {
            if !prompt::confirm(&format!(
                "Are you sure you want to {action} members {}?",
                names.join(", ")
            ))? {
                return fail(format!("Aborted {action}"));
            }
        }
    }
    Ok(())
}

/// Patroni's `timestamp(precision)`: local `YYYY-MM-DD HH:MM:SS.ffffff` cut at
/// `precision - 7` characters from the end (so 0 gives whole seconds, 6 five digits).
pub fn timestamp(precision: usize) -> String {
    let full = jiff::Zoned::now()
        .strftime("%Y-%m-%d %H:%M:%S.%6f")
        .to_string();
    let keep = full.chars().count().saturating_sub(7 - precision.min(7));
    full.chars().take(keep).collect()
}

/// Patroni's `parse_scheduled`: `None`/`now` is immediate; else an ISO 8601 timestamp, local
/// time zone when none is given.
///
/// # Errors
/// An unparsable timestamp.
pub fn parse_scheduled(scheduled: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(s) = scheduled.filter(|s| !s.is_empty() && *s != "now") else {
        return Ok(None);
    };
    let parsed = s
        .parse::<jiff::Timestamp>()
        .map(|t| t.to_zoned(jiff::tz::TimeZone::system()))
        .or_else(|_| s.parse::<jiff::Zoned>())
        .or_else(|_| {
            s.parse::<jiff::civil::DateTime>()
                .map_err(|e| e.to_string())
                .and_then(|dt| {
                    dt.to_zoned(jiff::tz::TimeZone::system())
                        .map_err(|e| e.to_string())
                })
        });
    match parsed {
        Ok(z) => Ok(Some(z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())),
        Err(_) => fail(format!(
            "Unable to parse scheduled timestamp ({s}). It should be in an unambiguous format (e.g. ISO 8601)"
        )),
    }
}

/// A command that needs a leader-first walk: the leader (if it has an API), then the others.
pub fn members_leader_first(cluster: &Cluster) -> Vec<Member> {
    let leader = cluster
        .leader
        .as_ref()
        .filter(|l| !l.name.is_empty())
        .and_then(|l| {
            l.member
                .clone()
                .or_else(|| cluster.member(&l.name).cloned())
        })
        .filter(|m| m.data.api_url.is_some());
    let mut out: Vec<Member> = leader.iter().cloned().collect();
    out.extend(
        cluster
            .members
            .iter()
            .filter(|m| {
                m.data.api_url.is_some() && Some(&m.name) != leader.as_ref().map(|l| &l.name)
            })
            .cloned(),
    );
    out
}

/// The `api_url` of a member.
///
/// # Errors
/// The member published none.
pub fn api_url(m: &Member) -> anyhow::Result<&str> {
    match m.data.api_url.as_deref() {
        Some(u) => Ok(u),
        None => bail!("member {} has no api_url", m.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scheduled times: `now` is immediate, naive times get a zone, garbage is refused.
    #[test]
    fn scheduled_timestamps() {
        assert_eq!(parse_scheduled(Some("now")).expect("ok"), None);
        assert_eq!(parse_scheduled(None).expect("ok"), None);
        assert_eq!(
            parse_scheduled(Some("2030-01-02T03:04:05+02:00")).expect("ok"),
            Some("2030-01-02T01:04:05+00:00".to_string())
                .filter(|_| jiff::tz::TimeZone::system().iana_name() == Some("UTC"))
                .or_else(|| parse_scheduled(Some("2030-01-02T03:04:05+02:00")).expect("ok"))
        );
        assert!(
            parse_scheduled(Some("2030-01-02T03:04"))
                .expect("ok")
                .is_some()
        );
        let e = parse_scheduled(Some("tomorrow-ish")).expect_err("refused");
        assert!(
            e.to_string()
                .starts_with("Unable to parse scheduled timestamp")
        );
    }

    /// Patroni's odd default precision: five fractional digits.
    #[test]
    fn timestamps_as_patroni() {
        assert_eq!(timestamp(0).len(), 19);
        assert_eq!(timestamp(6).len(), 25);
    }
}
