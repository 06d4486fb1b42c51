//! Building the [`Cluster`] view from the znodes read in one pass: a pure function, so every
//! reading rule is tested without a server. The values themselves are read and written by
//! [`crate::values`] and [`crate::encoding`], shared with the etcd3 backend.
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

use patroni_core::{Cluster, ClusterConfig, History, Leader, LeaderStatus, Member, MemberData};

use crate::{encoding, values};

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
        (Some(n), _) | (None, Some(n)) => values::status(&n.data, &mut warnings),
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
            failover: raw
                .failover
                .as_ref()
                .map(|n| values::failover(n.stat.version.to_string(), &n.data)),
            sync: raw
                .sync
                .as_ref()
                .map(|n| values::sync_state(n.stat.version.to_string(), &n.data, &mut warnings))
                .unwrap_or_default(),
            history,
            failsafe,
        },
        warnings,
    }
}

fn member(name: &str, node: &Node, warnings: &mut Vec<String>) -> Member {
    let data = encoding::parse_member_data(&node.data).unwrap_or_else(|e| {
        warnings.push(format!("members/{name}: {e}"));
        MemberData::default()
    });
    Member {
        name: name.to_string(),
        version: node.stat.version.to_string(),
        data,
    }
}

#[cfg(test)]
mod tests {
    use patroni_core::SyncState;

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
}
