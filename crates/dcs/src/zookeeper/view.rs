//! Building the [`Cluster`] view from the znodes read in one pass, and the values Patroni
//! writes into them: pure functions, so every reading and writing rule is tested without a
//! server.
//!
//! Reading rules are Patroni's (`ZooKeeper._postgresql_cluster_loader`): `leader` holds the
//! holder's name, `members/<name>` each member's JSON (or a legacy `postgres://` URL),
//! `status` the leader's JSON status (`optime`, `slots`, `retain_slots`; a bare integer in the
//! legacy `optime/leader`), `config`/`history`/`sync`/`failover`/`failsafe` JSON, `initialize`
//! the system identifier. Unreadable values read as absent and come back as warnings.
//!
//! Versions: the config, sync and failover versions are the znode `version` (what a
//! conditional `setData` compares); the config's modify version and the history's version are
//! the znode's `mzxid`, as Patroni's. The leader's version is the znode's `czxid`: the leader
//! znode is created anew by each holder and never modified, so its creation is what tells two
//! holders apart.

use std::collections::BTreeMap;

use patroni_core::{
    Cluster, ClusterConfig, Failover, History, Leader, LeaderStatus, Member, MemberData, SyncState,
};
use serde_json::Value;

use crate::encoding;

/// The parts of a znode's `Stat` the view needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStat {
    /// Number of data changes.
    pub version: i32,
    /// Zxid of the creation.
    pub czxid: i64,
    /// Zxid of the last data change.
    pub mzxid: i64,
    /// Session owning an ephemeral znode; 0 for a persistent one.
    pub ephemeral_owner: i64,
}

/// One znode's data and stat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// The data, as UTF-8 (lossy).
    pub data: String,
    /// Its stat.
    pub stat: NodeStat,
}

/// Every znode of one cluster read in one pass; `None` for those that do not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawCluster {
    /// `initialize`.
    pub initialize: Option<Node>,
    /// `config`.
    pub config: Option<Node>,
    /// `history`.
    pub history: Option<Node>,
    /// `sync`.
    pub sync: Option<Node>,
    /// `leader`.
    pub leader: Option<Node>,
    /// `status`.
    pub status: Option<Node>,
    /// `optime/leader` (legacy status, read only when `status` is absent).
    pub legacy_optime: Option<Node>,
    /// `failover`.
    pub failover: Option<Node>,
    /// `failsafe`.
    pub failsafe: Option<Node>,
    /// `members/<name>`, by name.
    pub members: BTreeMap<String, Node>,
}

/// A cluster view and what was wrong with the znodes it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// The view.
    pub cluster: Cluster,
    /// One line per unreadable value (`znode: problem`).
    pub warnings: Vec<String>,
}

/// Builds the view from one pass of reads.
pub fn build(raw: &RawCluster) -> View {
    let mut warnings = Vec::new();
    let members: Vec<Member> = raw
        .members
        .iter()
        .map(|(name, node)| member(name, node, &mut warnings))
        .collect();
    let config = raw.config.as_ref().map(|n| {
        let text = if n.data.is_empty() { "{}" } else { &n.data };
        let (data, modify_version) = match encoding::parse_config(text) {
            Some(data) => (data, Some(n.stat.mzxid.to_string())),
            None => {
                warnings.push("config: not a JSON object".to_string());
                (Default::default(), None)
            }
        };
        ClusterConfig {
            version: n.stat.version.to_string(),
            modify_version,
            data,
        }
    });
    let history = raw.history.as_ref().map(|n| {
        let text = if n.data.is_empty() { "[]" } else { &n.data };
        let lines = encoding::parse_history(text).unwrap_or_else(|| {
            warnings.push("history: not a JSON array".to_string());
            Vec::new()
        });
        History {
            version: n.stat.mzxid.to_string(),
            lines,
        }
    });
    let leader = raw.leader.as_ref().map(|n| Leader {
        version: n.stat.czxid.to_string(),
        name: n.data.clone(),
        member: members.iter().find(|m| m.name == n.data).cloned(),
    });
    let status = match (&raw.status, &raw.legacy_optime) {
        (Some(n), _) | (None, Some(n)) => status(&n.data, &mut warnings),
        (None, None) => LeaderStatus::default(),
    };
    let failsafe = raw.failsafe.as_ref().and_then(|n| {
        encoding::parse_failsafe(Some(&n.data)).unwrap_or_else(|e| {
            warnings.push(e);
            None
        })
    });
    View {
        cluster: Cluster {
            initialize: raw.initialize.as_ref().map(|n| n.data.clone()),
            config,
            leader,
            status,
            members,
            failover: raw.failover.as_ref().map(failover),
            sync: raw
                .sync
                .as_ref()
                .map(|n| sync_state(n, &mut warnings))
                .unwrap_or_default(),
            history,
            failsafe,
        },
        warnings,
    }
}

fn member(name: &str, node: &Node, warnings: &mut Vec<String>) -> Member {
    let raw = node.data.as_str();
    let data = if raw.starts_with("postgres") {
        legacy_member_data(raw)
    } else if raw.is_empty() {
        MemberData::default()
    } else {
        serde_json::from_str::<MemberData>(raw).unwrap_or_else(|e| {
            warnings.push(format!("members/{name}: {e}"));
            MemberData::default()
        })
    };
    Member {
        name: name.to_string(),
        version: node.stat.version.to_string(),
        data,
    }
}

/// Very old Patroni wrote the member as a connection URL whose `application_name` parameter
/// is the API URL.
fn legacy_member_data(raw: &str) -> MemberData {
    let (conn_url, query) = raw.split_once('?').unwrap_or((raw, ""));
    let api_url = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "application_name")
        .map(|(_, v)| v.to_string());
    MemberData {
        conn_url: Some(conn_url.to_string()),
        api_url,
        ..Default::default()
    }
}

/// Patroni's `Status.from_node`: a JSON object, or a bare integer (legacy `optime/leader`).
fn status(text: &str, warnings: &mut Vec<String>) -> LeaderStatus {
    let value = match serde_json::from_str::<Value>(text) {
        Ok(v) => v,
        Err(e) => {
            warnings.push(format!("status: {e}"));
            return LeaderStatus::default();
        }
    };
    let map = match value {
        Value::Number(n) => {
            return LeaderStatus {
                last_lsn: n.as_u64().unwrap_or(0),
                ..Default::default()
            };
        }
        Value::Object(map) => map,
        _ => {
            warnings.push("status: not a JSON object".to_string());
            return LeaderStatus::default();
        }
    };
    let last_lsn = match map.get("optime") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => encoding::parse_optime(Some(s)),
        _ => 0,
    };
    let slots = match map.get("slots") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => encoding::parse_slots(Some(s)).unwrap_or_else(|e| {
            warnings.push(format!("status/{e}"));
            None
        }),
        Some(v) => serde_json::from_value::<BTreeMap<String, u64>>(v.clone())
            .map_err(|e| warnings.push(format!("status/slots: {e}")))
            .ok(),
    };
    let retain_slots = match map.get("retain_slots") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => encoding::parse_retain_slots(Some(s)).unwrap_or_else(|e| {
            warnings.push(format!("status/{e}"));
            Vec::new()
        }),
        Some(v) => serde_json::from_value::<Vec<String>>(v.clone()).unwrap_or_else(|e| {
            warnings.push(format!("status/retain_slots: {e}"));
            Vec::new()
        }),
    };
    LeaderStatus {
        last_lsn,
        slots,
        retain_slots,
    }
}

/// Patroni's `Failover.from_node`: a JSON object, or the legacy `leader:candidate`.
fn failover(node: &Node) -> Failover {
    let version = node.stat.version.to_string();
    let text = node.data.trim();
    let empty = || Failover {
        version: version.clone(),
        leader: None,
        candidate: None,
        scheduled_at: None,
    };
    if text.is_empty() {
        return empty();
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => {
            let field = |k: &str| map.get(k).and_then(Value::as_str).map(String::from);
            Failover {
                version: version.clone(),
                leader: field("leader"),
                candidate: field("member"),
                scheduled_at: field("scheduled_at"),
            }
        }
        Ok(_) => empty(),
        Err(_) => {
            let mut parts = text.split(':').map(str::trim);
            Failover {
                version: version.clone(),
                leader: parts.next().map(String::from),
                candidate: parts.next().map(String::from),
                scheduled_at: None,
            }
        }
    }
}

/// Patroni's `SyncState.from_node`: a JSON object; anything else is an empty state.
fn sync_state(node: &Node, warnings: &mut Vec<String>) -> SyncState {
    let version = Some(node.stat.version.to_string());
    let empty = || SyncState {
        version: version.clone(),
        ..Default::default()
    };
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&node.data) else {
        if !node.data.is_empty() {
            warnings.push("sync: not a JSON object".to_string());
        }
        return empty();
    };
    let leader = map.get("leader").and_then(Value::as_str).map(String::from);
    let quorum = match (
        leader.as_deref().filter(|l| !l.is_empty()),
        map.get("quorum"),
    ) {
        (Some(_), Some(Value::Number(n))) => n.as_u64().and_then(|q| u32::try_from(q).ok()),
        (Some(_), Some(Value::String(s))) if !s.is_empty() => {
            encoding::parse_int(s).and_then(|q| u32::try_from(q).ok())
        }
        _ => Some(0),
    };
    let Some(quorum) = quorum else {
        warnings.push("sync: quorum is not an integer".to_string());
        return empty();
    };
    let sync_standby = match map.get("sync_standby") {
        Some(Value::String(s)) => encoding::parse_sync_standby(Some(s)),
        Some(Value::Array(items)) => {
            let mut names: Vec<String> = items
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect();
            names.sort();
            names
        }
        _ => Vec::new(),
    };
    SyncState {
        version,
        leader,
        sync_standby,
        quorum,
    }
}

/// The `/status` value as Patroni's `write_status` writes it: compact JSON, keys in
/// Patroni's order (`optime`, `slots`, `retain_slots`), absent ones left out.
pub fn status_value(
    last_lsn: u64,
    slots: Option<&BTreeMap<String, u64>>,
    retain_slots: Option<&[String]>,
) -> String {
    let mut out = format!("{{\"optime\":{last_lsn}");
    if let Some(slots) = slots.filter(|s| !s.is_empty()) {
        out.push_str(",\"slots\":");
        out.push_str(&encoding::compact_json(slots));
    }
    if let Some(retain) = retain_slots {
        out.push_str(",\"retain_slots\":");
        out.push_str(&encoding::compact_json(retain));
    }
    out.push('}');
    out
}

/// The `/sync` value as Patroni's `sync_state` builds it: `leader`, `quorum`, `sync_standby`
/// (sorted, comma-joined; `null` when empty).
pub fn sync_value(leader: Option<&str>, sync_standby: &[String], quorum: Option<u32>) -> String {
    let standbys = (!sync_standby.is_empty()).then(|| encoding::format_sync_standby(sync_standby));
    format!(
        "{{\"leader\":{},\"quorum\":{},\"sync_standby\":{}}}",
        encoding::compact_json(&leader),
        encoding::compact_json(&quorum),
        encoding::compact_json(&standbys)
    )
}

/// The `/failover` value as Patroni's `manual_failover` builds it: only the keys given.
pub fn failover_value(
    leader: Option<&str>,
    candidate: Option<&str>,
    scheduled_at: Option<&str>,
) -> String {
    let mut parts = Vec::new();
    for (key, value) in [
        ("leader", leader),
        ("member", candidate),
        ("scheduled_at", scheduled_at),
    ] {
        if let Some(v) = value {
            parts.push(format!("\"{key}\":{}", encoding::compact_json(v)));
        }
    }
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(data: &str, version: i32, czxid: i64, mzxid: i64, owner: i64) -> Option<Node> {
        Some(Node {
            data: data.into(),
            stat: NodeStat {
                version,
                czxid,
                mzxid,
                ephemeral_owner: owner,
            },
        })
    }

    /// A complete state, as Patroni writes it, reads field by field with Patroni's versions.
    #[test]
    fn patronis_znodes_read_field_by_field() {
        let raw = RawCluster {
            initialize: node("7186662553319358497", 1, 2, 3, 0),
            config: node(r#"{"ttl":30}"#, 4, 5, 60, 0),
            history: node(
                r#"[[1,25165984,"no recovery target specified"]]"#,
                0,
                7,
                70,
                0,
            ),
            sync: node(
                r#"{"leader":"m0","quorum":1,"sync_standby":"m2,m1"}"#,
                3,
                8,
                9,
                0,
            ),
            leader: node("m0", 0, 100, 100, 0x77),
            status: node(
                r#"{"optime":100,"slots":{"m1":90},"retain_slots":["m1"]}"#,
                9,
                1,
                1,
                0,
            ),
            legacy_optime: node("5", 0, 1, 1, 0),
            failover: node(r#"{"leader":"m0","member":"m1"}"#, 2, 1, 1, 0),
            failsafe: node(r#"{"m0":"http://a/patroni"}"#, 0, 1, 1, 0),
            members: BTreeMap::from([
                (
                    "m0".into(),
                    node(r#"{"role":"primary","state":"running"}"#, 5, 1, 1, 0x77).expect("node"),
                ),
                (
                    "m1".into(),
                    node(r#"{"role":"replica"}"#, 6, 1, 1, 0x78).expect("node"),
                ),
            ]),
        };
        let v = build(&raw);
        assert!(v.warnings.is_empty(), "{:?}", v.warnings);
        let c = v.cluster;
        assert_eq!(c.initialize.as_deref(), Some("7186662553319358497"));
        let config = c.config.expect("config");
        assert_eq!(
            (config.version.as_str(), config.modify_version.as_deref()),
            ("4", Some("60"))
        );
        assert_eq!(c.history.expect("history").version, "70");
        let leader = c.leader.expect("leader");
        assert_eq!(
            (leader.version.as_str(), leader.name.as_str()),
            ("100", "m0")
        );
        assert_eq!(leader.member.expect("member").version, "5");
        assert_eq!(c.status.last_lsn, 100);
        assert_eq!(c.status.slots, Some(BTreeMap::from([("m1".into(), 90)])));
        assert_eq!(c.status.retain_slots, ["m1"]);
        assert_eq!(
            c.sync,
            SyncState {
                version: Some("3".into()),
                leader: Some("m0".into()),
                sync_standby: vec!["m2".into(), "m1".into()],
                quorum: 1
            }
        );
        let f = c.failover.expect("failover");
        assert_eq!(
            (f.version.as_str(), f.candidate.as_deref()),
            ("2", Some("m1"))
        );
        assert_eq!(c.failsafe.expect("failsafe").len(), 1);
        assert_eq!(c.members.len(), 2);
    }

    /// Legacy and corrupt values read as Patroni reads them, with warnings, never a panic.
    #[test]
    fn legacy_and_corrupt_values_read_leniently() {
        let raw = RawCluster {
            config: node("[1]", 1, 1, 1, 0),
            history: node("{", 1, 1, 1, 0),
            sync: node("{}", 2, 1, 1, 0),
            legacy_optime: node("42", 0, 1, 1, 0),
            failover: node("m0:m1", 1, 1, 1, 0),
            failsafe: node("[]", 1, 1, 1, 0),
            members: BTreeMap::from([
                ("a".into(), node("{", 1, 1, 1, 1).expect("node")),
                (
                    "b".into(),
                    node(
                        "postgres://u@h:5432/postgres?application_name=http://h:8008/patroni",
                        1,
                        1,
                        1,
                        1,
                    )
                    .expect("node"),
                ),
            ]),
            ..Default::default()
        };
        let v = build(&raw);
        assert_eq!(v.warnings.len(), 4, "{:?}", v.warnings);
        let c = v.cluster;
        assert_eq!(c.config.expect("config").modify_version, None);
        assert_eq!(c.status.last_lsn, 42);
        assert_eq!(c.sync.version.as_deref(), Some("2"));
        assert_eq!(c.sync.leader, None);
        let f = c.failover.expect("failover");
        assert_eq!(
            (f.leader.as_deref(), f.candidate.as_deref()),
            (Some("m0"), Some("m1"))
        );
        assert_eq!(c.failsafe, None);
        assert_eq!(
            c.members[1].data.api_url.as_deref(),
            Some("http://h:8008/patroni")
        );
        assert!(c.leader.is_none());
    }

    /// Values are written byte for byte as Patroni writes them.
    #[test]
    fn values_are_written_as_patroni_writes_them() {
        let slots = BTreeMap::from([("m1".to_string(), 90)]);
        assert_eq!(
            status_value(100, Some(&slots), Some(&["m1".into()])),
            r#"{"optime":100,"slots":{"m1":90},"retain_slots":["m1"]}"#
        );
        assert_eq!(
            status_value(7, Some(&BTreeMap::new()), None),
            r#"{"optime":7}"#
        );
        assert_eq!(
            sync_value(Some("m0"), &["m2".into(), "m1".into()], Some(1)),
            r#"{"leader":"m0","quorum":1,"sync_standby":"m1,m2"}"#
        );
        assert_eq!(
            sync_value(None, &[], None),
            r#"{"leader":null,"quorum":null,"sync_standby":null}"#
        );
        assert_eq!(failover_value(Some("m0"), None, None), r#"{"leader":"m0"}"#);
        assert_eq!(failover_value(None, None, None), "{}");
    }
}
