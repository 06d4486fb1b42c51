//! Other members' health, as their REST API reports it.
//!
//! The leader race and the "is a failover possible" check need each other
//! member's own answer, not its DCS record, which may be a cycle old. The
//! runtime asks for them when a decision is [`Action::CheckPeers`]
//! (`GET <api_url>`, 2 s timeout, no retries, all members in parallel) and
//! feeds the answers back in [`CycleOutcomes::peers`].
//!
//! [`Action::CheckPeers`]: super::Action::CheckPeers
//! [`CycleOutcomes::peers`]: super::CycleOutcomes::peers

use serde_json::Value;

use super::MemberTags;

/// A member whose REST API the runtime must query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTarget {
    /// Member name.
    pub name: String,
    /// Its `api_url` from the DCS (`http(s)://host:port/patroni`).
    pub api_url: String,
}

/// One member's answer (or silence).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    /// Member name.
    pub name: String,
    /// Its answer; `None` when it did not answer in time or answered
    /// something unreadable. Such members are ignored by every rule.
    pub reply: Option<PeerReply>,
}

/// What a member's `GET /patroni` says about it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerReply {
    /// Whether it runs in recovery. A reachable member that is not in
    /// recovery is a live primary: nobody else may race.
    pub in_recovery: bool,
    /// The furthest of its received and replayed WAL; 0 for a primary.
    pub wal_position: u64,
    /// Its timeline; 0 when unknown.
    pub timeline: u64,
    /// Its effective tags.
    pub tags: MemberTags,
    /// Whether its watchdog is required but failed.
    pub watchdog_failed: bool,
}

// === impl PeerStatus ===

impl PeerStatus {
    /// A member that answered.
    pub fn answered(name: impl Into<String>, reply: PeerReply) -> Self {
        Self {
            name: name.into(),
            reply: Some(reply),
        }
    }

    /// A member that did not answer.
    pub fn unreachable(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            reply: None,
        }
    }

    /// The answer of a member that may be promoted: reachable, not
    /// `nofailover`, watchdog fine (Patroni's `failover_limitation() is None`).
    pub fn eligible(&self) -> Option<&PeerReply> {
        self.reply
            .as_ref()
            .filter(|r| !r.tags.nofailover() && !r.watchdog_failed)
    }
}

// === impl PeerReply ===

impl PeerReply {
    /// Reads the JSON body of `GET /patroni` the way Patroni does
    /// (`_MemberStatus.from_api_response`): `wal` (or the older `xlog`) must
    /// be an object; the member is a primary when it reports `location` or
    /// role `primary`/`master`; a replica's position is the furthest of
    /// `received_location` and `replayed_location`.
    ///
    /// Returns `None` (treated as unreachable) when the body lacks `wal`/`xlog`.
    pub fn from_patroni_json(body: &Value) -> Option<Self> {
        let wal = body
            .get("wal")
            .filter(|w| w.is_object())
            .or_else(|| body.get("xlog"))?
            .as_object()?;
        let location = wal.get("location").and_then(Value::as_u64).unwrap_or(0);
        let role = body.get("role").and_then(Value::as_str);
        let in_recovery = !(location > 0 || matches!(role, Some("primary" | "master")));
        let received = wal
            .get("received_location")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let replayed = wal
            .get("replayed_location")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Some(Self {
            in_recovery,
            wal_position: if in_recovery {
                received.max(replayed)
            } else {
                0
            },
            timeline: body.get("timeline").and_then(Value::as_u64).unwrap_or(0),
            tags: MemberTags::from_value(body.get("tags")),
            watchdog_failed: body
                .get("watchdog_failed")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A replica's answer gives its furthest position, timeline and tags.
    #[test]
    fn replica_answer_reads_like_patroni() {
        let body = json!({
            "state": "running", "role": "replica", "timeline": 3,
            "xlog": {"received_location": 500, "replayed_location": 400, "paused": false},
            "tags": {"failover_priority": 2}
        });
        let r = PeerReply::from_patroni_json(&body).expect("has xlog");
        assert!(r.in_recovery);
        assert_eq!(r.wal_position, 500);
        assert_eq!(r.timeline, 3);
        assert_eq!(r.tags.failover_priority(), 2);
    }

    /// A primary (location set, or role primary/master) is not in recovery and has position 0.
    #[test]
    fn primary_answer_is_not_in_recovery() {
        for body in [
            json!({"role": "primary", "wal": {"location": 900}}),
            json!({"role": "master", "xlog": {}}),
            json!({"role": "replica", "xlog": {"location": 1}}),
        ] {
            let r = PeerReply::from_patroni_json(&body).expect("has wal");
            assert!(!r.in_recovery, "{body}");
            assert_eq!(r.wal_position, 0);
        }
    }

    /// Without wal/xlog the answer is unusable, as in Patroni.
    #[test]
    fn answer_without_wal_is_unusable() {
        assert_eq!(
            PeerReply::from_patroni_json(&json!({"role": "replica"})),
            None
        );
        assert_eq!(PeerReply::from_patroni_json(&json!({"xlog": 5})), None);
    }

    /// Unreachable, nofailover and watchdog-failed members are not eligible.
    #[test]
    fn ineligible_members_are_recognised() {
        let ok = PeerReply {
            in_recovery: true,
            ..Default::default()
        };
        assert!(PeerStatus::answered("a", ok.clone()).eligible().is_some());
        assert!(PeerStatus::unreachable("a").eligible().is_none());
        let nofailover = PeerReply {
            tags: MemberTags::default().with_nofailover(true),
            ..ok.clone()
        };
        assert!(PeerStatus::answered("a", nofailover).eligible().is_none());
        let wd = PeerReply {
            watchdog_failed: true,
            ..ok
        };
        assert!(PeerStatus::answered("a", wd).eligible().is_none());
    }
}
