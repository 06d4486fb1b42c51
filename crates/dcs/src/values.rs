//! The values Patroni's etcd3 backend writes, byte for byte: compact JSON in the key order
//! Patroni's dicts have (`json.dumps(v, separators=(',', ':'))`), `None` as `null` where
//! Patroni keeps it.

use std::collections::BTreeMap;

use crate::dcs::FailoverRequest;
use crate::encoding::compact_json;

/// What the `/status` key holds (Patroni's `write_status`): `optime`, then `slots` and
/// `retain_slots` when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusValue {
    /// The leader's WAL position.
    pub optime: u64,
    /// Permanent slots' positions; omitted when `None`.
    pub slots: Option<BTreeMap<String, u64>>,
    /// Member slots to retain; omitted when `None`.
    pub retain_slots: Option<Vec<String>>,
}

// === impl StatusValue ===

impl StatusValue {
    /// `{"optime":N,"slots":{..},"retain_slots":[..]}`, absent parts left out.
    pub fn encode(&self) -> String {
        let mut out = format!("{{\"optime\":{}", self.optime);
        if let Some(slots) = &self.slots {
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
    let standbys =
        (!sync_standby.is_empty()).then(|| crate::encoding::format_sync_standby(sync_standby));
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
    if let Some(l) = leader {
        parts.push(format!("\"leader\":{}", compact_json(l)));
    }
    if let Some(c) = candidate {
        parts.push(format!("\"member\":{}", compact_json(c)));
    }
    if let Some(at) = scheduled_at {
        parts.push(format!("\"scheduled_at\":{}", compact_json(at)));
    }
    format!("{{{}}}", parts.join(","))
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
}
