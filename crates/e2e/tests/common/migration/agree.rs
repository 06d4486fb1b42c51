//! Whether the members agree on the cluster, as each reads it from the DCS: every member's
//! `GET /cluster`, and Patroni's `patronictl list` against ours.

use std::time::Duration;

use serde_json::Value;

use super::{Ctl, Node, ctl_consistent, get_doc, wait};

/// What a member's `GET /cluster` says of one member: name, role, state, timeline.
type MemberView = (String, String, String, Option<i64>);

/// What a member's `GET /cluster` says of each member, sorted by name.
fn cluster_view(n: &Node) -> Option<Vec<MemberView>> {
    let doc = get_doc(n, "/cluster")?;
    let mut view: Vec<_> = doc["members"]
        .as_array()?
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("role"), s("state"), m["timeline"].as_i64())
        })
        .collect();
    view.sort();
    Some(view)
}

/// Waits until every member's `GET /cluster` (Python's and ours, each reading the DCS) shows
/// the same members, with `leader` as the running leader and every other member streaming,
/// all on one timeline.
pub async fn cluster_agreed(nodes: &[Node], leader: &str) {
    let mut last = None;
    wait(
        Duration::from_secs(60),
        &format!("every member's GET /cluster agrees that {leader} leads"),
        nodes,
        || {
            let views: Vec<_> = nodes.iter().map(cluster_view).collect();
            let first = views.first()?.as_ref()?;
            let agreed = views.iter().all(|v| v.as_ref() == Some(first))
                && first.len() == nodes.len()
                && first.iter().all(|(name, role, state, tl)| {
                    let ok = if name == leader {
                        role == "leader" && state == "running"
                    } else {
                        (role == "replica" || role == "sync_standby") && state == "streaming"
                    };
                    ok && tl.is_some() && *tl == first[0].3
                });
            if agreed {
                tracing::info!(view = ?first, "every member's GET /cluster agrees");
            } else if last.as_ref() != Some(&views) {
                tracing::info!(?views, "the members' GET /cluster do not agree yet");
                last = Some(views);
            }
            agreed.then_some(())
        },
    )
    .await;
}

/// The columns two `patronictl list`s must agree on: member, host, role, state, timeline
/// (`null` where a row has no such column).
fn ctl_rows(rows: &[Value]) -> Vec<[String; 5]> {
    let mut out: Vec<[String; 5]> = rows
        .iter()
        .map(|r| ["Member", "Host", "Role", "State", "TL"].map(|k| r[k].to_string()))
        .collect();
    out.sort();
    out
}

/// Every row has every column [`ctl_rows`] compares.
fn complete(rows: &[[String; 5]]) -> bool {
    rows.iter().all(|r| r.iter().all(|c| c != "null"))
}

/// Waits until Patroni's `patronictl list` (`python`) and ours (`ours`) both show `leader`
/// leading every other member streaming, and show the same member, host, role, state and
/// timeline for each member.
pub async fn ctls_agree(python: &Ctl, ours: &Ctl, nodes: &[Node], leader: &str) {
    let mut last = None;
    wait(
        Duration::from_secs(60),
        &format!("Python's and our patronictl list agree that {leader} leads"),
        nodes,
        || {
            let (p, o) = (python.list(), ours.list());
            let agreed = match (&p, &o) {
                (Some(p), Some(o)) => {
                    ctl_consistent(p, nodes, leader)
                        && ctl_consistent(o, nodes, leader)
                        && complete(&ctl_rows(p))
                        && ctl_rows(p) == ctl_rows(o)
                }
                _ => false,
            };
            let seen = (p.as_deref().map(ctl_rows), o.as_deref().map(ctl_rows));
            if agreed {
                tracing::info!(rows = ?seen.0, "Python's and our patronictl list agree");
            } else if last.as_ref() != Some(&seen) {
                tracing::info!(python = ?seen.0, ours = ?seen.1, "the patronictls do not agree yet");
                last = Some(seen);
            }
            agreed.then_some(())
        },
    )
    .await;
}
