//! A cluster member as the DCS shows it: its name, the version of the
//! object it lives in, and the data it last published about itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Role;

/// One member of the cluster (in Kubernetes: one pod matching the selector).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Member name (the pod name).
    pub name: String,
    /// Version of the object holding the member (the pod's resourceVersion).
    pub version: String,
    /// What the member published (the pod's `status` annotation).
    pub data: MemberData,
}

/// What a member publishes about itself, with Patroni's field names, in the
/// order Patroni writes them. Fields this version does not know are kept in
/// `extra`, so a newer peer's data survives a read-modify-write.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberData {
    /// `postgres://HOST:PORT/DBNAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn_url: Option<String>,
    /// `http(s)://HOST:PORT/patroni`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// PostgreSQL state: `running`, `starting`, `stopped`, `creating replica`, ….
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Role as written (`primary`, `replica`, …; `master` from Patroni < 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Agent version, dotted numbers (Patroni compares it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `postgresql.proxy_address`, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
    /// Tags (`nofailover`, `clonefrom`, `nosync`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, Value>>,
    /// Current WAL position (bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xlog_location: Option<u64>,
    /// Replayed WAL position (replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<u64>,
    /// Received WAL position (replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_lsn: Option<u64>,
    /// `streaming` or `in archive recovery` (replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_state: Option<String>,
    /// Timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u64>,
    /// Every other field, as written.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

// === impl MemberData ===

impl MemberData {
    /// The role, parsed (`master` reads as primary); `None` when absent or
    /// a name this version does not know.
    pub fn role(&self) -> Option<Role> {
        self.role.as_deref().and_then(|r| r.parse().ok())
    }

    /// Whether the member asks never to be promoted (`tags.nofailover`).
    pub fn nofailover(&self) -> bool {
        self.tags
            .as_ref()
            .and_then(|t| t.get("nofailover"))
            .is_some_and(truthy)
    }
}

/// Patroni's truthiness for tag values: `true`, non-zero numbers, and the
/// strings `on`/`true`/`yes`/`1` (any case).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "on" | "true" | "yes" | "1"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unknown fields survive a round trip; known ones keep Patroni's order.
    #[test]
    fn unknown_fields_survive_and_known_fields_keep_patronis_order() {
        let text = r#"{"conn_url":"postgres://10.0.0.1:5432/postgres","api_url":"http://10.0.0.1:8008/patroni","state":"running","role":"master","version":"3.3.0","xlog_location":42,"timeline":1,"future_field":{"a":1}}"#;
        let d: MemberData = serde_json::from_str(text).expect("valid");
        assert_eq!(d.role(), Some(Role::Primary));
        assert_eq!(
            d.extra.get("future_field"),
            Some(&serde_json::json!({"a": 1}))
        );
        let back = serde_json::to_string(&d).expect("serialises");
        assert_eq!(back, text);
    }

    /// `nofailover` accepts Patroni's spellings of true.
    #[test]
    fn nofailover_accepts_patroni_truthy_values() {
        for (v, want) in [
            (serde_json::json!(true), true),
            (serde_json::json!("on"), true),
            (serde_json::json!(1), true),
            (serde_json::json!(false), false),
            (serde_json::json!("off"), false),
        ] {
            let d = MemberData {
                tags: Some(BTreeMap::from([("nofailover".into(), v.clone())])),
                ..Default::default()
            };
            assert_eq!(d.nofailover(), want, "{v}");
        }
        assert!(!MemberData::default().nofailover());
    }
}
