//! The cluster view from the keys under a cluster's prefix: a pure function of what one range
//! read returned (Patroni's `Etcd3._cluster_from_nodes`), with Patroni's lenient readers: a
//! value that does not parse reads as absent or empty, and the problem is reported so the
//! caller can log it.
//!
//! Versions are the keys' `mod_revision`s (what compare-and-set writes compare with).

use std::collections::BTreeMap;

use patroni_core::{Cluster, ClusterConfig, History, Leader, Member, MemberData};

use super::keys;
use crate::encoding as enc;
use crate::values;

/// One key as read: its value, `mod_revision` and lease (0 for none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The value, as UTF-8 text (lossy).
    pub value: String,
    /// The key's `mod_revision`.
    pub mod_revision: i64,
    /// The lease the key is bound to; 0 for none.
    pub lease: i64,
}

/// A view and what was unreadable in it.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// The cluster.
    pub cluster: Cluster,
    /// The lease of the leader key, if there is one.
    pub leader_lease: Option<i64>,
    /// Each member's lease.
    pub member_leases: BTreeMap<String, i64>,
    /// Values that did not parse (read as absent or empty).
    pub warnings: Vec<String>,
}

/// Builds the view from `nodes`, keyed by their key relative to the cluster's prefix.
pub fn build(nodes: &BTreeMap<String, Node>) -> View {
    let mut warnings = Vec::new();
    let version = |n: &Node| n.mod_revision.to_string();
    let members: Vec<Member> = nodes
        .iter()
        .filter_map(|(k, n)| {
            let name = k.strip_prefix(keys::MEMBERS).filter(|m| !m.contains('/'))?;
            Some(Member {
                name: name.to_string(),
                version: version(n),
                data: member_data(name, &n.value, &mut warnings),
            })
        })
        .collect();
    let member_leases = nodes
        .iter()
        .filter_map(|(k, n)| Some((k.strip_prefix(keys::MEMBERS)?.to_string(), n.lease)))
        .collect();
    let leader_node = nodes.get(keys::LEADER);
    let leader = leader_node.map(|n| Leader {
        version: version(n),
        name: n.value.clone(),
        member: members.iter().find(|m| m.name == n.value).cloned(),
    });
    let config = nodes.get(keys::CONFIG).map(|n| {
        let data = enc::parse_config(&n.value);
        if data.is_none() {
            warnings.push(format!("config: not a JSON object: {:?}", n.value));
        }
        ClusterConfig {
            version: version(n),
            modify_version: data.is_some().then(|| version(n)),
            data: data.unwrap_or_default(),
        }
    });
    let history = nodes.get(keys::HISTORY).map(|n| History {
        version: version(n),
        lines: enc::parse_history(&n.value).unwrap_or_default(),
    });
    let status = nodes
        .get(keys::STATUS)
        .or_else(|| nodes.get(keys::LEADER_OPTIME))
        .map(|n| values::status(&n.value, &mut warnings))
        .unwrap_or_default();
    let failover = nodes
        .get(keys::FAILOVER)
        .map(|n| values::failover(version(n), &n.value));
    let sync = nodes
        .get(keys::SYNC)
        .map(|n| values::sync_state(version(n), &n.value, &mut warnings))
        .unwrap_or_default();
    let failsafe = nodes.get(keys::FAILSAFE).and_then(|n| {
        enc::parse_failsafe(Some(&n.value))
            .map_err(|e| warnings.push(e))
            .ok()
            .flatten()
    });
    View {
        cluster: Cluster {
            initialize: nodes.get(keys::INITIALIZE).map(|n| n.value.clone()),
            config,
            leader,
            status,
            members,
            failover,
            sync,
            history,
            failsafe,
        },
        leader_lease: leader_node.map(|n| n.lease),
        member_leases,
        warnings,
    }
}

/// A member's value (see [`enc::parse_member_data`]); unreadable JSON is reported.
fn member_data(name: &str, value: &str, warnings: &mut Vec<String>) -> MemberData {
    enc::parse_member_data(value).unwrap_or_else(|e| {
        warnings.push(format!("members/{name}: {e}"));
        MemberData::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(value: &str, rev: i64, lease: i64) -> Node {
        Node {
            value: value.into(),
            mod_revision: rev,
            lease,
        }
    }

    /// Patroni's values, as its etcd3 backend writes them, read back into the view.
    #[test]
    fn patronis_values_read_back() {
        let nodes = BTreeMap::from([
            ("initialize".into(), node("7345", 2, 0)),
            ("config".into(), node(r#"{"ttl":30}"#, 3, 0)),
            ("leader".into(), node("pg-0", 9, 77)),
            (
                "members/pg-0".into(),
                node(
                    r#"{"conn_url":"postgres://10.0.0.1:5432/postgres","role":"primary"}"#,
                    8,
                    77,
                ),
            ),
            ("members/pg-1".into(), node("{", 7, 78)),
            (
                "status".into(),
                node(
                    r#"{"optime":123,"slots":{"pg_1":100},"retain_slots":["pg_1"]}"#,
                    10,
                    0,
                ),
            ),
            ("optime/leader".into(), node("5", 4, 0)),
            (
                "failover".into(),
                node(r#"{"leader":"pg-0","member":"pg-1"}"#, 11, 0),
            ),
            (
                "sync".into(),
                node(
                    r#"{"leader":"pg-0","quorum":1,"sync_standby":"pg-2,pg-1"}"#,
                    12,
                    0,
                ),
            ),
            (
                "history".into(),
                node(r#"[[1,100,"no recovery target specified"]]"#, 13, 0),
            ),
            (
                "failsafe".into(),
                node(r#"{"pg-0":"http://a/patroni"}"#, 14, 0),
            ),
        ]);
        let v = build(&nodes);
        let c = &v.cluster;
        assert_eq!(c.initialize.as_deref(), Some("7345"));
        assert_eq!(c.config.as_ref().map(|c| c.version.as_str()), Some("3"));
        assert_eq!(c.leader_name(), Some("pg-0"));
        assert_eq!(c.leader.as_ref().map(|l| l.version.as_str()), Some("9"));
        assert!(c.leader.as_ref().is_some_and(|l| l.member.is_some()));
        assert_eq!(v.leader_lease, Some(77));
        assert_eq!(c.members.len(), 2);
        assert_eq!(c.status.last_lsn, 123);
        assert_eq!(c.status.retain_slots, ["pg_1"]);
        assert_eq!(c.status.slots, Some(BTreeMap::from([("pg_1".into(), 100)])));
        let f = c.failover.as_ref().expect("failover");
        assert_eq!(
            (f.leader.as_deref(), f.candidate.as_deref()),
            (Some("pg-0"), Some("pg-1"))
        );
        assert_eq!(c.sync.sync_standby, ["pg-2", "pg-1"]);
        assert_eq!((c.sync.quorum, c.sync.version.as_deref()), (1, Some("12")));
        assert_eq!(c.history.as_ref().map(|h| h.lines.len()), Some(1));
        assert!(c.failsafe.is_some());
        assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
    }

    /// Legacy and broken values read as Patroni reads them.
    #[test]
    fn legacy_and_broken_values() {
        let nodes = BTreeMap::from([
            ("optime/leader".into(), node("42", 4, 0)),
            ("failover".into(), node("pg-0:pg-1", 5, 0)),
            ("sync".into(), node("[]", 6, 0)),
            ("config".into(), node("[", 7, 0)),
        ]);
        let c = build(&nodes).cluster;
        assert_eq!(c.status.last_lsn, 42);
        let f = c.failover.clone().expect("failover");
        assert_eq!(f.candidate.as_deref(), Some("pg-1"));
        assert_eq!(c.sync.leader, None);
        assert_eq!(c.sync.version.as_deref(), Some("6"));
        assert!(c.leader.is_none() && !c.is_locked());
        let cfg = c.config.expect("config");
        assert_eq!(cfg.modify_version, None);
    }
}
