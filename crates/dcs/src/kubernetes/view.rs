//! Building the [`Cluster`] view from cache snapshots: a pure function, so
//! every parsing rule is tested without a server.
//!
//! Mirrors Patroni's reading rules: every pod matching the selector is a
//! member (unparsable `status` gives empty data); the config object yields
//! `initialize`, `config` and `history`; the leader object the lock and the
//! leader status; missing or invalid values read as absent, and each such
//! problem is returned as a warning for the caller to log.

use std::collections::BTreeMap;

use patroni_core::{
    Cluster, ClusterConfig, Failover, History, Leader, LeaderStatus, Member, MemberData, SyncState,
};

use super::lock::LockState;

use super::annotations::{self as ann, key};
use super::names::Names;
use super::objects::{KindObject, PodObject};

/// A cluster view and what was wrong with the objects it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// The view.
    pub cluster: Cluster,
    /// One line per unreadable value (`object/annotation: problem`).
    pub warnings: Vec<String>,
}

/// Builds the view. `lock` is the lock as judged by the caller's
/// [`LockObserver`](super::lock::LockObserver) for the current leader object.
pub fn build(
    names: &Names,
    kinds: &BTreeMap<String, KindObject>,
    pods: &BTreeMap<String, PodObject>,
    lock: &LockState,
) -> View {
    let mut warnings = Vec::new();
    let members: Vec<Member> = pods
        .values()
        .map(|p| member_from_pod(p, &mut warnings))
        .collect();

    let config_obj = kinds.get(&names.config());
    let initialize = config_obj.and_then(|o| o.annotations.get(key::INITIALIZE).cloned());
    let config = config_obj.map(|o| {
        let raw = o
            .annotations
            .get(key::CONFIG)
            .map(String::as_str)
            .filter(|s| !s.is_empty());
        match raw.map(ann::parse_config) {
            Some(Some(data)) => ClusterConfig {
                version: o.resource_version.clone(),
                modify_version: Some(o.resource_version.clone()),
                data,
            },
            Some(None) => {
                warnings.push(format!("{}/{}: not a JSON object", o.name, key::CONFIG));
                ClusterConfig {
                    version: o.resource_version.clone(),
                    modify_version: None,
                    data: Default::default(),
                }
            }
            // An empty annotation still counts as set (Patroni: `or '{}'`).
            None => ClusterConfig {
                version: o.resource_version.clone(),
                modify_version: o
                    .annotations
                    .contains_key(key::CONFIG)
                    .then(|| o.resource_version.clone()),
                data: Default::default(),
            },
        }
    });
    let history = config_obj.map(|o| {
        let raw = o
            .annotations
            .get(key::HISTORY)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("[]");
        let lines = ann::parse_history(raw).unwrap_or_else(|| {
            warnings.push(format!("{}/{}: not a JSON array", o.name, key::HISTORY));
            Vec::new()
        });
        History {
            version: o.resource_version.clone(),
            lines,
        }
    });

    let leader_obj = kinds.get(&names.leader());
    let empty = BTreeMap::new();
    let leader_ann = leader_obj.map(|o| &o.annotations).unwrap_or(&empty);
    let status = LeaderStatus {
        last_lsn: ann::parse_optime(leader_ann.get(key::OPTIME).map(String::as_str)),
        slots: ann::parse_slots(leader_ann.get(key::SLOTS).map(String::as_str)).unwrap_or_else(
            |e| {
                warnings.push(format!("{}/{e}", names.leader()));
                None
            },
        ),
        retain_slots: ann::parse_retain_slots(
            leader_ann.get(key::RETAIN_SLOTS).map(String::as_str),
        )
        .unwrap_or_else(|e| {
            warnings.push(format!("{}/{e}", names.leader()));
            Vec::new()
        }),
    };
    let failsafe = ann::parse_failsafe(leader_ann.get(key::FAILSAFE).map(String::as_str))
        .unwrap_or_else(|e| {
            warnings.push(format!("{}/{e}", names.leader()));
            None
        });
    let leader = leader_obj.map(|o| {
        let name = match lock {
            LockState::Held { holder, .. } => holder.clone(),
            LockState::Free => String::new(),
        };
        let member = members
            .iter()
            .find(|m| !name.is_empty() && m.name == name)
            .cloned();
        Leader {
            version: o.resource_version.clone(),
            name,
            member,
        }
    });

    let failover = kinds.get(&names.failover()).map(|o| Failover {
        version: o.resource_version.clone(),
        leader: o.annotations.get(key::LEADER).cloned(),
        candidate: o.annotations.get(key::MEMBER).cloned(),
        scheduled_at: o.annotations.get(key::SCHEDULED_AT).cloned(),
    });

    let sync = match kinds.get(&names.sync()) {
        None => SyncState::default(),
        Some(o) => sync_state(o, &mut warnings),
    };

    View {
        cluster: Cluster {
            initialize,
            config,
            leader,
            status,
            members,
            failover,
            sync,
            history,
            failsafe,
        },
        warnings,
    }
}

fn sync_state(o: &KindObject, warnings: &mut Vec<String>) -> SyncState {
    let version = Some(o.resource_version.clone());
    let leader = o.annotations.get(key::LEADER).cloned();
    let quorum = match (
        leader.as_deref().filter(|l| !l.is_empty()),
        o.annotations.get(key::QUORUM).filter(|q| !q.is_empty()),
    ) {
        (Some(_), Some(q)) => match ann::parse_int(q).and_then(|q| u32::try_from(q).ok()) {
            Some(q) => q,
            None => {
                warnings.push(format!("{}/{}: not an integer: {q:?}", o.name, key::QUORUM));
                return SyncState {
                    version,
                    ..Default::default()
                };
            }
        },
        _ => 0,
    };
    SyncState {
        version,
        leader,
        sync_standby: ann::parse_sync_standby(
            o.annotations.get(key::SYNC_STANDBY).map(String::as_str),
        ),
        quorum,
    }
}

/// A member from its pod: the `status` annotation, leniently.
pub fn member_from_pod(pod: &PodObject, warnings: &mut Vec<String>) -> Member {
    let raw = pod
        .annotations
        .get(key::STATUS)
        .map(String::as_str)
        .unwrap_or("");
    let data = crate::encoding::parse_member_data(raw).unwrap_or_else(|e| {
        warnings.push(format!("pod {}/{}: {e}", pod.name, key::STATUS));
        MemberData::default()
    });
    Member {
        name: pod.name.clone(),
        version: pod.resource_version.clone(),
        data,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::kubernetes::names::Mode;

    fn names() -> Names {
        Names::new(
            Mode::ConfigMaps,
            "demo",
            &BTreeMap::from([("application".into(), "patroni".into())]),
            "cluster-name",
        )
    }

    fn obj(name: &str, rv: &str, ann: &[(&str, &str)]) -> (String, KindObject) {
        (
            name.to_string(),
            KindObject {
                name: name.into(),
                resource_version: rv.into(),
                annotations: ann
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            },
        )
    }

    fn pod(name: &str, status: &str) -> (String, PodObject) {
        let mut annotations = BTreeMap::new();
        if !status.is_empty() {
            annotations.insert("status".to_string(), status.to_string());
        }
        (
            name.to_string(),
            PodObject {
                name: name.into(),
                resource_version: "7".into(),
                annotations,
                ..Default::default()
            },
        )
    }

    /// A complete, valid state reads field by field.
    #[test]
    fn valid_state_reads_field_by_field() {
        let kinds = BTreeMap::from([
            obj(
                "demo-leader",
                "11",
                &[
                    ("leader", "m0"),
                    ("ttl", "30"),
                    ("optime", "100"),
                    ("slots", r#"{"m1":90}"#),
                    ("retain_slots", r#"["m1"]"#),
                ],
            ),
            obj(
                "demo-config",
                "12",
                &[
                    ("config", r#"{"ttl":30}"#),
                    ("initialize", "7186662553319358497"),
                    (
                        "history",
                        r#"[[1,25165984,"no recovery target specified"]]"#,
                    ),
                ],
            ),
            obj("demo-failover", "13", &[("leader", "m0"), ("member", "m1")]),
            obj(
                "demo-sync",
                "14",
                &[("leader", "m0"), ("sync_standby", "m1"), ("quorum", "0")],
            ),
        ]);
        let pods = BTreeMap::from([
            pod("m0", r#"{"role":"master","state":"running"}"#),
            pod("m1", r#"{"role":"replica","state":"running"}"#),
        ]);
        let lock = LockState::Held {
            holder: "m0".into(),
            expires_at: Duration::from_secs(30),
        };
        let v = build(&names(), &kinds, &pods, &lock);
        assert!(v.warnings.is_empty(), "{:?}", v.warnings);
        let c = v.cluster;
        assert_eq!(c.initialize.as_deref(), Some("7186662553319358497"));
        let config = c.config.expect("config");
        assert_eq!(
            (config.version.as_str(), config.modify_version.as_deref()),
            ("12", Some("12"))
        );
        assert_eq!(config.data.get("ttl"), Some(&serde_json::json!(30)));
        let leader = c.leader.expect("leader");
        assert_eq!(
            (leader.version.as_str(), leader.name.as_str()),
            ("11", "m0")
        );
        assert_eq!(
            leader.member.expect("leader member").data.role(),
            Some(patroni_core::Role::Primary)
        );
        assert_eq!(c.status.last_lsn, 100);
        assert_eq!(c.status.retain_slots, vec!["m1".to_string()]);
        assert_eq!(
            c.failover.expect("failover").candidate.as_deref(),
            Some("m1")
        );
        assert_eq!(c.sync.sync_standby, vec!["m1".to_string()]);
        assert_eq!(c.history.expect("history").lines.len(), 1);
        assert_eq!(c.members.len(), 2);
    }

    /// Corrupt or foreign values give a view plus warnings, never a panic.
    #[test]
    fn corrupt_annotations_give_a_view_and_warnings() {
        let kinds = BTreeMap::from([
            obj(
                "demo-leader",
                "11",
                &[
                    ("leader", "m0"),
                    ("optime", "x"),
                    ("slots", "{"),
                    ("retain_slots", "7"),
                    ("failsafe", "[]"),
                ],
            ),
            obj(
                "demo-config",
                "12",
                &[("config", "[1,2]"), ("history", "{")],
            ),
            obj("demo-sync", "14", &[("leader", "m0"), ("quorum", "many")]),
        ]);
        let pods = BTreeMap::from([
            pod("m0", "{not json"),
            pod("m1", "[1]"),
            pod("m2", ""),
            pod("m3", r#"{"role":7}"#),
        ]);
        let v = build(&names(), &kinds, &pods, &LockState::Free);
        assert_eq!(v.warnings.len(), 9, "{:#?}", v.warnings);
        let c = v.cluster;
        assert_eq!(c.status, LeaderStatus::default());
        assert_eq!(c.failsafe, None);
        let config = c.config.expect("config object exists");
        assert_eq!((config.modify_version, config.data.len()), (None, 0));
        assert_eq!(
            c.history.expect("history").lines,
            Vec::<serde_json::Value>::new()
        );
        assert_eq!(
            c.sync,
            SyncState {
                version: Some("14".into()),
                ..Default::default()
            }
        );
        assert_eq!(c.members.len(), 4);
        assert!(c.members.iter().all(|m| m.data == MemberData::default()));
        assert_eq!(c.leader.expect("leader object").name, "");
    }

    /// Legacy connection-URL member values still read.
    #[test]
    fn legacy_connection_url_member_reads() {
        let (_, p) = pod(
            "m0",
            "postgres://u@10.0.0.1:5432/postgres?application_name=http://10.0.0.1:8008/patroni",
        );
        let m = member_from_pod(&p, &mut Vec::new());
        assert_eq!(
            m.data.conn_url.as_deref(),
            Some("postgres://u@10.0.0.1:5432/postgres")
        );
        assert_eq!(
            m.data.api_url.as_deref(),
            Some("http://10.0.0.1:8008/patroni")
        );
    }
}
