//! The synchronous replication checks of the migration tests: what every
//! member, Patroni's `patronictl` and the primary's PostgreSQL say about the
//! synchronous standby, and whether it confirms commits.

use serde_json::Value;

use super::{Ctl, Node, daemon_kind, logs, q, status_doc, wait};
use crate::common::cluster::FORM_TIMEOUT;

/// The HTTP status of `GET path` on `n`'s own REST API.
fn http_code(n: &Node, path: &str) -> Option<u16> {
    let url = format!("http://{}:8008{path}", n.host.ip());
    let out = n
        .host
        .command("curl")
        .args([
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Who `GET /cluster` on one member names in which role.
#[derive(Debug, PartialEq)]
struct Roles {
    /// Members with role `leader`.
    leader: Vec<String>,
    /// Members with role `sync_standby`.
    sync_standby: Vec<String>,
}

/// `GET /cluster` on `n`'s own REST API, as `n` reads the DCS.
fn cluster_roles(n: &Node) -> Option<Roles> {
    let url = format!("http://{}:8008/cluster", n.host.ip());
    let out = n
        .host
        .command("curl")
        .args(["-s", "-m", "5", &url])
        .output()
        .ok()?;
    let doc: Value = serde_json::from_slice(&out.stdout).ok()?;
    let with_role = |role: &str| -> Option<Vec<String>> {
        Some(
            doc["members"]
                .as_array()?
                .iter()
                .filter(|m| m["role"] == role)
                .filter_map(|m| m["name"].as_str().map(String::from))
                .collect(),
        )
    };
    Some(Roles {
        leader: with_role("leader")?,
        sync_standby: with_role("sync_standby")?,
    })
}

/// What the members and the primary's PostgreSQL say about the synchronous
/// standby at one moment.
#[derive(Debug, PartialEq)]
struct SyncView {
    /// Per member, its `GET /cluster`: the `leader` and the `sync_standby`s.
    cluster: Vec<(String, Option<Roles>)>,
    /// Patroni's `patronictl list`: the members shown as `Sync Standby`, with
    /// their state.
    ctl: Option<Vec<(String, String)>>,
    /// The primary's `pg_stat_replication`: `application_name`s in state `sync`.
    reported: Option<String>,
    /// The primary's `synchronous_standby_names`.
    listed: Option<String>,
    /// The members whose own `GET /patroni` says `sync_standby: true`.
    flagged: Vec<String>,
    /// The members whose health check `GET /sync` answers 200.
    healthy_sync: Vec<String>,
}

// === impl SyncView ===

impl SyncView {
    fn observe(ctl: &Ctl, nodes: &[Node], primary: &Node) -> Self {
        let str_of = |v: &Value| v.as_str().unwrap_or_default().to_string();
        SyncView {
            cluster: nodes
                .iter()
                .map(|n| (n.name.clone(), cluster_roles(n)))
                .collect(),
            ctl: ctl.list().map(|rows| {
                rows.iter()
                    .filter(|r| r["Role"] == "Sync Standby")
                    .map(|r| (str_of(&r["Member"]), str_of(&r["State"])))
                    .collect()
            }),
            reported: q(
                primary,
                "select string_agg(application_name, ',') from pg_stat_replication \
                 where sync_state = 'sync'",
            ),
            listed: q(primary, "show synchronous_standby_names"),
            flagged: nodes
                .iter()
                .filter(|n| status_doc(n).is_some_and(|d| d["sync_standby"] == true))
                .map(|n| n.name.clone())
                .collect(),
            healthy_sync: nodes
                .iter()
                .filter(|n| http_code(n, "/sync") == Some(200))
                .map(|n| n.name.clone())
                .collect(),
        }
    }

    /// The one synchronous standby everything names, if they agree.
    fn agreed(&self, primary: &str) -> Option<&str> {
        let mut named: Option<&str> = None;
        for (_, roles) in &self.cluster {
            let roles = roles.as_ref()?;
            let [sync] = roles.sync_standby.as_slice() else {
                return None;
            };
            if roles.leader != [primary] || named.is_some_and(|s| s != sync) {
                return None;
            }
            named = Some(sync);
        }
        let named = named?;
        let shown = self.ctl.as_ref()?;
        (shown.len() == 1 && shown[0].0 == named && shown[0].1 == "streaming").then_some(())?;
        (self.reported.as_deref() == Some(named)
            && self.listed.as_deref().map(|l| l.trim_matches('"')) == Some(named)
            && self.flagged == [named]
            && self.healthy_sync == [named])
        .then_some(named)
    }
}

/// Waits until every member agrees on the synchronous standby of the
/// primary `nodes[p]` and returns it: `GET /cluster` on each member's REST
/// API (Python's and ours, each reading `/sync` from the DCS) shows `p` as
/// the leader and the same single `sync_standby`; Patroni's `patronictl list`
/// shows it as the only, streaming, `Sync Standby`; the primary's PostgreSQL
/// lists exactly it in `synchronous_standby_names` and reports it, and only
/// it, `sync` in `pg_stat_replication`; and only its own `GET /patroni` says
/// `sync_standby: true` and only its health check `GET /sync` answers 200.
/// Which standby it is may change as members restart.
pub async fn sync_agreed(ctl: &Ctl, nodes: &[Node], p: usize) -> usize {
    let primary = &nodes[p];
    let mut last: Option<SyncView> = None;
    let s = wait(
        FORM_TIMEOUT,
        &format!(
            "every member agrees on {}'s synchronous standby",
            primary.name
        ),
        nodes,
        || {
            let view = SyncView::observe(ctl, nodes, primary);
            let agreed = view.agreed(&primary.name);
            let agreed = agreed.and_then(|a| nodes.iter().position(|n| n.name == a));
            if agreed.is_none() && last.as_ref() != Some(&view) {
                tracing::info!(
                    ?view,
                    "the members do not agree on the synchronous standby yet"
                );
                last = Some(view);
            }
            agreed
        },
    )
    .await;
    let daemons: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}: {}", n.name, daemon_kind(n)))
        .collect();
    tracing::info!(
        primary = %primary.name, sync_standby = %nodes[s].name, ?daemons,
        "every member agrees on the synchronous standby"
    );
    s
}

/// Inserts `v` on the primary `nodes[p]` with `synchronous_commit =
/// remote_apply`: the commit is acknowledged (within a minute) only once the
/// synchronous standby `nodes[s]` has applied it, so the row is there as soon
/// as the insert returns.
pub fn acknowledged_by_sync_standby(nodes: &[Node], p: usize, s: usize, v: u32) {
    let (primary, standby) = (&nodes[p], &nodes[s]);
    let out = primary
        .host
        .command("timeout")
        .args(["60", "/usr/lib/postgresql/15/bin/psql", "-X", "-At"])
        .arg("-d")
        .arg(format!(
            "host={} port=5432 user=postgres dbname=postgres connect_timeout=2",
            primary.host.ip()
        ))
        .args(["-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!("insert into t values ({v})"))
        .env("PGPASSWORD", &primary.spec.superuser_password)
        .env("PGOPTIONS", "-c synchronous_commit=remote_apply")
        .output()
        .expect("run psql");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("synchronous replication"),
        "insert {v} on {} acknowledged by {}: {:?} {stderr}\n{}",
        primary.name,
        standby.name,
        out.status,
        logs(nodes)
    );
    assert_eq!(
        q(standby, &format!("select count(*) from t where v = {v}")).as_deref(),
        Some("1"),
        "row {v} applied on the synchronous standby {} when acknowledged\n{}",
        standby.name,
        logs(nodes)
    );
}
