//! `demote-cluster` and `promote-cluster` (Patroni's `change_cluster_role`): turn a primary
//! cluster into a standby cluster of a remote primary and back, by `PATCH /config` of
//! `standby_cluster` on the leader (the section for a demotion, `null` for a promotion), then
//! watching the DCS every second until the leader runs in the new role.
//!
//! The dynamic configuration is written by the leader's REST API exactly as Patroni's
//! patronictl has it written, so either patronictl can turn either cluster around.

use std::time::Duration;

use patroni_core::{Cluster, Member};
use serde_json::{Map, Value, json};

use super::{api_url, fail, print_members};
use crate::cli::{Format, GroupArg};
use crate::context::Ctl;
use crate::prompt;

/// How often the new role is looked for (Patroni's `watching(True, 1)`).
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The `standby_cluster` section `demote-cluster` writes: the options given, in Patroni's
/// order, leaving out empty ones (Python's falsy values: an empty string, port 0).
///
/// # Errors
/// None of `--host`, `--port`, `--restore-command` (Patroni's message).
pub fn standby_section(
    host: Option<&str>,
    port: Option<i64>,
    restore_command: Option<&str>,
    primary_slot_name: Option<&str>,
) -> anyhow::Result<Map<String, Value>> {
    let host = host.filter(|h| !h.is_empty());
    let port = port.filter(|p| *p != 0);
    let restore_command = restore_command.filter(|c| !c.is_empty());
    if host.is_none() && port.is_none() && restore_command.is_none() {
        return fail("At least --host, --port or --restore-command should be specified");
    }
    let mut section = Map::new();
    if let Some(h) = host {
        section.insert("host".into(), json!(h));
    }
    if let Some(p) = port {
        section.insert("port".into(), json!(p));
    }
    if let Some(s) = primary_slot_name.filter(|s| !s.is_empty()) {
        section.insert("primary_slot_name".into(), json!(s));
    }
    if let Some(c) = restore_command {
        section.insert("restore_command".into(), json!(c));
    }
    Ok(section)
}

/// What the leader of `cluster` shows: its name, role and state (Patroni reads
/// `cluster.leader.data`, the leader's member record).
fn leader_record(cluster: &Cluster) -> Option<(String, Option<Member>)> {
    let name = cluster.leader_name()?.to_owned();
    let member = cluster
        .leader
        .as_ref()
        .and_then(|l| l.member.clone())
        .or_else(|| cluster.member(&name).cloned());
    Some((name, member))
}

/// Python's `str()` of an optional string (`None` when missing).
fn py_str(v: Option<&str>) -> String {
    v.map_or_else(|| "None".to_owned(), str::to_owned)
}

/// Python's `repr()` of a string.
fn py_repr(v: &str) -> String {
    if v.contains('\'') && !v.contains('"') {
        format!("\"{v}\"")
    } else {
        format!("'{}'", v.replace('\'', "\\'"))
    }
}

/// One line of progress, or `None` when the change is done: the leader key is held, its
/// holder runs in `target` and, for a demotion, the former leader runs too.
pub fn progress(
    cluster: &Cluster,
    old_leader: &str,
    target: &str,
    demote: bool,
    now: &str,
) -> Option<String> {
    let leader = leader_record(cluster);
    let is_unlocked = leader.is_none();
    let data = leader
        .as_ref()
        .and_then(|(_, m)| m.as_ref())
        .map(|m| &m.data);
    let leader_role = data.and_then(|d| d.role.as_deref());
    let leader_state = data.and_then(|d| d.state.as_deref());
    let old_state = cluster
        .member(old_leader)
        .and_then(|m| m.data.state.as_deref());
    if !is_unlocked
        && leader_role == Some(target)
        && leader_state == Some("running")
        && (!demote || old_state == Some("running"))
    {
        return None;
    }
    let mut line = format!(
        "{now} cluster is unlocked: {}, leader role: {}, leader state: {}",
        if is_unlocked { "True" } else { "False" },
        py_str(leader_role),
        py_str(leader_state)
    );
    if demote
        && let Some((name, _)) = &leader
        && name != old_leader
        && let Some(s) = old_state.filter(|s| !s.is_empty())
    {
        line.push_str(&format!(", previous leader state: {}", py_repr(s)));
    }
    Some(line)
}

/// `demote-cluster` (`standby` is the section to write) or `promote-cluster` (`None`).
///
/// # Errors
/// Patroni's messages: no leader, already in the required state, declined, a failed
/// `PATCH /config`.
pub async fn change_cluster_role(
    ctl: &Ctl,
    name: Option<&str>,
    force: bool,
    standby: Option<Map<String, Value>>,
) -> anyhow::Result<()> {
    let demote = standby.is_some();
    let action = if demote { "demot" } else { "promot" };
    let target = if demote { "standby_leader" } else { "primary" };
    let name = ctl.cluster_name(name)?;
    let opened = ctl.open(&name, &GroupArg { group: None }).await?;
    let cluster = opened.cluster().await?;
    let Some((leader_name, leader)) = leader_record(&cluster) else {
        return fail(format!(
            "Cluster has no leader, {action}ion is not possible"
        ));
    };
    if leader.as_ref().and_then(|m| m.data.role.as_deref()) == Some(target) {
        return fail("Cluster is already in the required state");
    }
    println!("Current cluster topology");
    print_members(&opened, &cluster, Format::Pretty);
    if !force
        && !prompt::confirm(&format!(
            "Are you sure you want to {action}e {name} cluster?"
        ))?
    {
        return fail(format!("Aborted cluster {action}ion"));
    }
    let body = json!({"standby_cluster": standby.map_or(Value::Null, Value::Object)});
    let failed = |e: String| format!("Failed to {action}e {name} cluster: {e}");
    let Some(leader) = leader else {
        return fail(failed(format!("member {leader_name} has no api_url")));
    };
    let url = api_url(&leader).map_err(|e| super::CtlError(failed(format!("{e:#}"))))?;
    match ctl
        .rest
        .request(url, "PATCH", Some("config"), Some(&body))
        .await
    {
        // Patroni raises inside its `try` and wraps its own message once more.
        Ok(r) if r.status != 200 => {
            return fail(failed(failed(format!(
                "/config PATCH status code={}, ({})",
                r.status, r.body
            ))));
        }
        Ok(_) => {}
        Err(e) => return fail(failed(format!("{e:#}"))),
    }
    let mut cluster;
    loop {
        cluster = opened.cluster().await?;
        let now = jiff::Zoned::now().strftime("%Y-%m-%d %H:%M:%S").to_string();
        match progress(&cluster, &leader_name, target, demote, &now) {
            None => {
                println!("{now} cluster is successfully {action}ed");
                break;
            }
            Some(line) => println!("{line}"),
        }
        tokio::time::sleep(WATCH_INTERVAL).await;
    }
    print_members(&opened, &cluster, Format::Pretty);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The section as Patroni builds it; nothing to point at is refused.
    #[test]
    fn standby_sections() {
        let s = standby_section(Some("10.0.0.9"), Some(5433), None, Some("b")).expect("ok");
        assert_eq!(
            Value::Object(s).to_string(),
            r#"{"host":"10.0.0.9","port":5433,"primary_slot_name":"b"}"#
        );
        let s = standby_section(None, None, Some("cp /a/%f %p"), None).expect("ok");
        assert_eq!(
            Value::Object(s).to_string(),
            r#"{"restore_command":"cp /a/%f %p"}"#
        );
        for (h, p, r) in [(None, None, None), (Some(""), Some(0), Some(""))] {
            let e = standby_section(h, p, r, Some("slot")).expect_err("refused");
            assert_eq!(
                e.to_string(),
                "At least --host, --port or --restore-command should be specified"
            );
        }
    }

    fn member(name: &str, role: &str, state: &str) -> Member {
        let mut m = Member {
            name: name.into(),
            version: "1".into(),
            data: patroni_core::MemberData::default(),
        };
        m.data.role = Some(role.into());
        m.data.state = Some(state.into());
        m
    }

    fn cluster(leader: Option<&str>, members: Vec<Member>) -> Cluster {
        let mut c = Cluster {
            members,
            ..Default::default()
        };
        c.leader = leader.map(|l| patroni_core::Leader {
            version: "1".into(),
            name: l.into(),
            member: None,
        });
        c
    }

    /// Progress lines as Patroni prints them, and the end condition.
    #[test]
    fn progress_lines() {
        let now = "2026-12-06 22:00:00";
        let c = cluster(None, vec![member("a", "primary", "stopped")]);
        assert_eq!(
            progress(&c, "a", "standby_leader", true, now).as_deref(),
            Some(
                "2026-12-06 22:00:00 cluster is unlocked: True, leader role: None, leader state: None"
            )
        );
        let c = cluster(
            Some("b"),
            vec![
                member("a", "replica", "starting"),
                member("b", "standby_leader", "running"),
            ],
        );
        assert_eq!(
            progress(&c, "a", "standby_leader", true, now).as_deref(),
            Some(
                "2026-12-06 22:00:00 cluster is unlocked: False, leader role: standby_leader, leader state: running, previous leader state: 'starting'"
            )
        );
        assert_eq!(progress(&c, "b", "standby_leader", true, now), None);
        let c = cluster(Some("a"), vec![member("a", "primary", "running")]);
        assert_eq!(progress(&c, "a", "primary", false, now), None);
        assert_eq!(
            progress(&c, "a", "standby_leader", true, now).as_deref(),
            Some(
                "2026-12-06 22:00:00 cluster is unlocked: False, leader role: primary, leader state: running"
            )
        );
    }
}
