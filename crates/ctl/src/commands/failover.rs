//! `switchover` and `failover` (Patroni's `_do_failover_or_switchover`): checks and prompts,
//! then `POST /switchover|/failover` to the leader (no leader: to the candidate), falling back
//! to writing the `/failover` key when the API cannot be reached.

use patroni_dcs::Dcs as _;
use serde_json::{Value, json};

use super::{api_url, fail, nofailover, parse_scheduled, print_members, timestamp};
use crate::cli::{Command, Format};
use crate::context::{Ctl, flags};
use crate::prompt;

/// `switchover` / `failover`.
///
/// # Errors
/// Patroni's messages for a missing leader or candidate, declined confirmations.
pub async fn failover_or_switchover(ctl: &Ctl, command: Command) -> anyhow::Result<()> {
    let (action, cluster_name, group, leader_arg, candidate, scheduled, force) = match command {
        Command::Switchover {
            cluster_name,
            group,
            leader,
            candidate,
            scheduled,
            force,
        } => (
            "switchover",
            cluster_name,
            group,
            leader,
            candidate,
            scheduled,
            force,
        ),
        Command::Failover {
            cluster_name,
            group,
            candidate,
            force,
        } => (
            "failover",
            cluster_name,
            group,
            None,
            candidate,
            None,
            force,
        ),
        _ => return Ok(()),
    };
    let name = ctl.cluster_name(cluster_name.as_deref())?;
    let opened = ctl.open(&name, &group).await?;
    let cluster = opened.cluster().await?;
    println!("Current cluster topology");
    print_members(&opened, &cluster, Format::Pretty);
    let config = flags(&cluster);
    let cluster_leader = cluster.leader_name().map(String::from);
    let mut switchover_leader = leader_arg;
    if action == "switchover" {
        let Some(current) = cluster_leader.clone() else {
            return fail("This cluster has no leader");
        };
        let chosen = match switchover_leader.take() {
            Some(l) => l,
            None if force => current.clone(),
            None => {
                let text = if config.standby_cluster {
                    "Standby Leader"
                } else {
                    "Primary"
                };
                prompt::prompt(text, Some(&current))?
            }
        };
        if chosen != current {
            return fail(format!(
                "Member {chosen} is not the leader of cluster {name}"
            ));
        }
        switchover_leader = Some(chosen);
    }
    let mut candidates: Vec<String> = cluster
        .members
        .iter()
        .filter(|m| Some(&m.name) != cluster_leader.as_ref() && !nofailover(m))
        .map(|m| m.name.clone())
        .collect();
    candidates.sort();
    if candidates.is_empty() {
        return fail(format!("No candidates found to {action} to"));
    }
    let candidate = match candidate {
        Some(c) => Some(c),
        None if !force => {
            let list = candidates
                .iter()
                .map(|c| format!("'{c}'"))
                .collect::<Vec<_>>()
                .join(", ");
            Some(prompt::prompt(&format!("Candidate [{list}]"), Some(""))?)
                .filter(|c| !c.is_empty())
        }
        None => None,
    };
    if action == "failover" && candidate.is_none() {
        return fail("Failover could be performed only to a specific candidate");
    }
    if let Some(c) = &candidate
        && !candidates.contains(c)
    {
        if Some(c) == cluster_leader.as_ref() {
            return fail(format!(
                "Member {c} is already the leader of cluster {name}"
            ));
        }
        return fail(format!(
            "Member {c} does not exist in cluster {name} or is tagged as nofailover"
        ));
    }
    if !force
        && action == "failover"
        && config.is_synchronous_mode()
        && cluster.sync.leader.is_some()
        && let Some(c) = &candidate
        && !cluster
            .sync
            .sync_standby
            .iter()
            .any(|s| s.eq_ignore_ascii_case(c))
        && !prompt::confirm(&format!(
            "Are you sure you want to failover to the asynchronous node {c}?"
        ))?
    {
        return fail(format!("Aborting {action}"));
    }
    let mut scheduled_at = None;
    if action == "switchover" {
        let when = match scheduled {
            Some(s) => Some(s),
            None if !force => {
                let next = (jiff::Zoned::now() + jiff::SignedDuration::from_hours(1))
                    .strftime("%Y-%m-%dT%H:%M")
                    .to_string();
                Some(prompt::prompt(
                    &format!("When should the switchover take place (e.g. {next} ) "),
                    Some("now"),
                )?)
            }
            None => None,
        };
        scheduled_at = parse_scheduled(when.as_deref())?;
        if scheduled_at.is_some() && config.paused {
            return fail("Can't schedule switchover in the paused state");
        }
    }
    let mut body = json!({"candidate": candidate});
    if action == "switchover" {
        body["leader"] = json!(switchover_leader);
    }
    if let Some(at) = &scheduled_at {
        body["scheduled_at"] = json!(at);
    }
    if !force {
        let demote = cluster_leader
            .as_ref()
            .map(|l| format!(", demoting current leader {l}"))
            .unwrap_or_default();
        let (question, abort) = match &scheduled_at {
            Some(at) => (
                format!(
                    "Are you sure you want to schedule switchover of cluster {name} at {at}{demote}?"
                ),
                format!("Aborting scheduled {action}"),
            ),
            None => (
                format!("Are you sure you want to {action} cluster {name}{demote}?"),
                format!("Aborting {action}"),
            ),
        };
        if !prompt::confirm(&question)? {
            return fail(abort);
        }
    }
    let target = match &cluster_leader {
        Some(l) => cluster
            .leader
            .as_ref()
            .and_then(|x| x.member.clone())
            .or_else(|| cluster.member(l).cloned()),
        None => candidate
            .as_deref()
            .and_then(|c| cluster.member(c).cloned()),
    };
    let sent = match &target {
        Some(m) => send(ctl, m, action, &body).await,
        None => Err(anyhow::anyhow!("no member to send the request to")),
    };
    let cluster = match sent {
        Ok(Some(())) => opened.cluster().await?,
        Ok(None) => return Ok(()),
        Err(e) => {
            eprintln!("WARNING - {e:#}");
            println!(
                "{} Could not {action} using Patroni api, falling back to DCS",
                timestamp(6)
            );
            opened
                .dcs
                .manual_failover(
                    patroni_dcs::FailoverRequest::Request {
                        leader: switchover_leader.as_deref(),
                        candidate: candidate.as_deref(),
                        scheduled_at: scheduled_at.as_deref(),
                    },
                    None,
                )
                .await?;
            cluster
        }
    };
    print_members(&opened, &cluster, Format::Pretty);
    Ok(())
}

/// Sends the request; `Ok(Some(()))` on 200/202 (printed), `Ok(None)` on a refusal (printed).
async fn send(
    ctl: &Ctl,
    m: &patroni_core::Member,
    action: &str,
    body: &Value,
) -> anyhow::Result<Option<()>> {
    let url = api_url(m)?;
    let mut r = ctl
        .rest
        .request(url, "POST", Some(action), Some(body))
        .await?;
    if r.status == 501
        && action == "switchover"
        && r.body.contains("Server does not support this operation")
    {
        r = ctl
            .rest
            .request(url, "POST", Some("failover"), Some(body))
            .await?;
    }
    if r.status == 200 || r.status == 202 {
        println!("{} {}", timestamp(6), r.body);
        Ok(Some(()))
    } else {
        let result = if r.body.to_lowercase().contains("status unknown") {
            "result unknown"
        } else {
            "failed"
        };
        let title = format!("{}{}", &action[..1].to_uppercase(), &action[1..]);
        println!("{title} {result}, details: {}, {}", r.status, r.body);
        Ok(None)
    }
}
