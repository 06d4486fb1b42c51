//! The whole-key JSON values Patroni keeps in a key-value store (etcd3 keys, ZooKeeper
//! znodes): `/status`, `/sync` and `/failover`, both ways. The Kubernetes backend keeps the
//! same data as separate annotations (`crate::kubernetes`); the scalar encodings every
//! backend shares are in [`crate::encoding`].
//!
//! Writers produce Patroni's bytes: compact JSON in the key order of Patroni's dicts
//! (`json.dumps(v, separators=(',', ':'))`), `None` as `null` where Patroni keeps it.
//! Readers are Patroni's `from_node` factories (`Status`, `SyncState`, `Failover` in
//! `patroni/dcs/__init__.py`): as lenient as Patroni's, a value that does not parse reads as
//! absent or empty, and the problem is pushed onto `warnings` for the caller to log.

use std::collections::BTreeMap;

use patroni_core::{Failover, LeaderStatus, SyncState};
use serde_json::Value;

use crate::dcs::FailoverRequest;
use crate::encoding::{self, compact_json};

/// What the `/status` key holds (Patroni's `write_status`): `optime`, then `slots` and
/// `retain_slots` when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusValue {
    /// The leader's WAL position.
    pub optime: u64,
    /// Permanent slots' positions; omitted when `None` or empty.
    pub slots: Option<BTreeMap<String, u64>>,
    /// Member slots to retain; omitted when `None`.
    pub retain_slots: Option<Vec<String>>,
}

// === impl StatusValue ===

impl StatusValue {
    /// `{"optime":N,"slots":{..},"retain_slots":[..]}`, absent parts left out.
    pub fn encode(&self) -> String {
        let mut out = format!("{{\"optime\":{}", self.optime);
        if let Some(slots) = self.slots.as_ref().filter(|s| !s.is_empty()) {
            out.push_str(&format!(",\"slots\":{}", compact_json(slots)));
        }
        if let Some(retain) = &self.retain_slots {
            out.push_str(&format!(",\"retain_slots\":{}", compact_json(retain)));
        }
        out.push('}');
        out
    }
}

/// `/sync` as Patroni's `sync_state()` builds it: `{"leader":..,"quorum":..,"sync_standby":..}`
/// with standbys sorted and comma-joined (`null` when none).
pub fn sync_value(leader: Option<&str>, sync_standby: &[String], quorum: Option<u32>) -> String {
    let standbys = (!sync_standby.is_empty()).then(|| encoding::format_sync_standby(sync_standby));
    format!(
        "{{\"leader\":{},\"quorum\":{},\"sync_standby\":{}}}",
        compact_json(&leader),
        compact_json(&quorum),
        compact_json(&standbys)
    )
}

/// `/failover` as Patroni's `manual_failover()` builds it: only the parts that are set
/// (`{}` clears a request).
pub fn failover_value(request: FailoverRequest<'_>) -> String {
    let (leader, candidate, scheduled_at) = request.parts();
    let mut parts = Vec::new();
    for (key, value) in [
        ("leader", leader),
        ("member", candidate),
        ("scheduled_at", scheduled_at),
    ] {
        if let Some(v) = value {
            parts.push(format!("\"{key}\":{}", compact_json(v)));
        }
    }
    format!("{{{}}}", parts.join(","))
}

/// Patroni's `Status.from_node`: a JSON object (`optime`, `slots`, `retain_slots`; `slots`
/// and `retain_slots` may themselves be JSON text), or a bare integer (the legacy
/// `optime/leader`).
pub fn status(text: &str, warnings: &mut Vec<String>) -> LeaderStatus {
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
                ..LeaderStatus::default()
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

/// Patroni's `Failover.from_node` at `version`: a JSON object (`leader`, `member`,
/// `scheduled_at`), or the legacy `leader:candidate` text; empty names read as absent (Patroni
/// treats them as unset).
pub fn failover(version: String, text: &str) -> Failover {
    let nonempty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(String::from);
    let text = text.trim();
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => {
            let field = |k: &str| nonempty(map.get(k).and_then(Value::as_str));
            Failover {
                version,
                leader: field("leader"),
                candidate: field("member"),
                scheduled_at: field("scheduled_at"),
            }
        }
        Err(_) if !text.is_empty() => {
            let mut parts = text.split(':').map(str::trim);
            Failover {
                version,
                leader: nonempty(parts.next()),
                candidate: nonempty(parts.next()),
                scheduled_at: None,
            }
        }
        _ => Failover {
            version,
            leader: None,
            candidate: None,
            scheduled_at: None,
        },
    }
}

/// Patroni's `SyncState.from_node` at `version`: a JSON object (`leader`, `quorum`,
/// `sync_standby` as comma-joined text or a list); anything else, or a `quorum` that is not
/// an integer, is an empty state at that version. `quorum` counts only with a leader.
pub fn sync_state(version: String, text: &str, warnings: &mut Vec<String>) -> SyncState {
    let empty = || SyncState {
        version: Some(version.clone()),
        ..SyncState::default()
    };
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
        if !text.is_empty() {
            warnings.push("sync: not a JSON object".to_string());
        }
        return empty();
    };
    let leader = map
        .get("leader")
        .and_then(Value::as_str)
        .filter(|l| !l.is_empty())
        .map(String::from);
    let quorum = match (&leader, map.get("quorum")) {
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
        version: Some(version),
        leader,
        sync_standby,
        quorum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact bytes Patroni 4 writes.
    #[test]
    fn values_are_patronis_bytes() {
        let s = StatusValue {
            optime: 67108960,
            slots: Some(BTreeMap::from([("pg_1".into(), 67108960)])),
            retain_slots: Some(vec!["pg_0".into(), "pg_1".into()]),
        };
        assert_eq!(
            s.encode(),
            r#"{"optime":67108960,"slots":{"pg_1":67108960},"retain_slots":["pg_0","pg_1"]}"#
        );
        assert_eq!(
            StatusValue {
                optime: 5,
                ..Default::default()
            }
            .encode(),
            r#"{"optime":5}"#
        );
        assert_eq!(
            sync_value(Some("pg-0"), &["pg-2".into(), "pg-1".into()], None),
            r#"{"leader":"pg-0","quorum":null,"sync_standby":"pg-1,pg-2"}"#
        );
        assert_eq!(
            sync_value(None, &[], Some(0)),
            r#"{"leader":null,"quorum":0,"sync_standby":null}"#
        );
        assert_eq!(failover_value(FailoverRequest::Clear), "{}");
        assert_eq!(
            failover_value(FailoverRequest::Request {
                leader: Some("pg-0"),
                candidate: Some(""),
                scheduled_at: Some("2025-01-01T00:00:00+00:00"),
            }),
            r#"{"leader":"pg-0","scheduled_at":"2025-01-01T00:00:00+00:00"}"#
        );
    }

    /// Status with its parts as JSON values or as JSON text, and the legacy bare integer.
    #[test]
    fn status_reads_as_patroni_reads_it() {
        let mut warnings = Vec::new();
        let s = status(
            r#"{"optime":100,"slots":{"m1":90},"retain_slots":["m1"]}"#,
            &mut warnings,
        );
        assert_eq!(
            (s.last_lsn, s.slots, s.retain_slots),
            (
                100,
                Some(BTreeMap::from([("m1".into(), 90)])),
                vec!["m1".into()]
            )
        );
        let s = status(
            r#"{"optime":"7","slots":"{\"m1\": 5}","retain_slots":"[\"m1\"]"}"#,
            &mut warnings,
        );
        assert_eq!(
            (s.last_lsn, s.slots, s.retain_slots),
            (
                7,
                Some(BTreeMap::from([("m1".into(), 5)])),
                vec!["m1".into()]
            )
        );
        assert_eq!(status("42", &mut warnings).last_lsn, 42);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(status("{", &mut warnings), LeaderStatus::default());
        assert_eq!(status("[]", &mut warnings), LeaderStatus::default());
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }

    /// Failover: JSON, the legacy `leader:candidate`, empty names and values as absent.
    #[test]
    fn failover_reads_as_patroni_reads_it() {
        let f = failover(
            "3".into(),
            r#"{"leader":"m0","member":"m1","scheduled_at":"2030-01-01T00:00:00+00:00"}"#,
        );
        assert_eq!(
            (
                f.version.as_str(),
                f.leader.as_deref(),
                f.candidate.as_deref(),
                f.scheduled_at.is_some()
            ),
            ("3", Some("m0"), Some("m1"), true)
        );
        let f = failover("4".into(), " m0 : m1 ");
        assert_eq!(
            (f.leader.as_deref(), f.candidate.as_deref()),
            (Some("m0"), Some("m1"))
        );
        let f = failover("5".into(), ":m1");
        assert_eq!((f.leader, f.candidate.as_deref()), (None, Some("m1")));
        for empty in ["", "{}", "[1]", r#"{"leader":"","member":""}"#] {
            let f = failover("6".into(), empty);
            assert!(
                f.leader.is_none() && f.candidate.is_none() && f.scheduled_at.is_none(),
                "{empty}"
            );
            assert_eq!(f.version, "6");
        }
    }

    /// Sync: standbys as text or a list, quorum only with a leader, an unreadable quorum or
    /// value an empty state at its version.
    #[test]
    fn sync_state_reads_as_patroni_reads_it() {
        let mut warnings = Vec::new();
        let s = sync_state(
            "2".into(),
            r#"{"leader":"m0","quorum":"1","sync_standby":["m2","m1"]}"#,
            &mut warnings,
        );
        assert_eq!(
            (
                s.version.as_deref(),
                s.leader.as_deref(),
                s.sync_standby.clone(),
                s.quorum
            ),
            (Some("2"), Some("m0"), vec!["m1".into(), "m2".into()], 1)
        );
        let s = sync_state("3".into(), r#"{"leader":"","quorum":2}"#, &mut warnings);
        assert_eq!((s.leader, s.quorum), (None, 0));
        assert!(warnings.is_empty(), "{warnings:?}");
        for broken in [r#"{"leader":"m0","quorum":"x"}"#, "[]", "{"] {
            let s = sync_state("4".into(), broken, &mut warnings);
            assert_eq!(
                s,
                SyncState {
                    version: Some("4".into()),
                    ..SyncState::default()
                },
                "{broken}"
            );
        }
        assert_eq!(sync_state("5".into(), "", &mut warnings).leader, None);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
    }

    /// ZooKeeper's and etcd3's writers were one: empty slots are left out of `/status`.
    #[test]
    fn empty_slots_are_left_out() {
        let s = StatusValue {
            optime: 7,
            slots: Some(BTreeMap::new()),
            retain_slots: None,
        };
        assert_eq!(s.encode(), r#"{"optime":7}"#);
    }
}
