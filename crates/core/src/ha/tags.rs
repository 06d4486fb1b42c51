//! The tags of a member as the HA rules read them (`patroni/tags.py`).
//!
//! `nofailover`/`failover_priority` say the same thing twice. The boolean
//! wins when both are given; a priority of 0 or less alone means
//! `nofailover`. Tags arrive from three places: the local configuration,
//! other members' DCS records and their REST answers; all three go through
//! [`MemberTags::from_json`] or are built field by field, so every member is
//! judged by the same rules.

use std::collections::BTreeMap;

use serde_json::Value;

/// Tags that change how the HA rules treat a member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberTags {
    /// `nofailover` as given; `None` when absent.
    pub nofailover: Option<bool>,
    /// `failover_priority` as given; `None` when absent or not an integer.
    pub failover_priority: Option<i64>,
    /// `nosync` as given; `None` when absent.
    pub nosync: Option<bool>,
    /// `sync_priority` as given; `None` when absent or not an integer.
    pub sync_priority: Option<i64>,
    /// `clonefrom`: preferred source for new replicas' base backups.
    pub clonefrom: bool,
    /// `replicatefrom`: stream from this member instead of the leader.
    pub replicatefrom: Option<String>,
    /// `nostream`: no streaming replication at all (archive recovery only).
    pub nostream: bool,
}

// === impl MemberTags ===

impl MemberTags {
    /// Reads tags as published in a member record or a REST answer.
    /// Values that are not understood read as absent, never as an error.
    pub fn from_json(tags: &BTreeMap<String, Value>) -> Self {
        Self {
            nofailover: tags.get("nofailover").and_then(as_bool),
            failover_priority: tags.get("failover_priority").and_then(as_int),
            nosync: tags.get("nosync").and_then(as_bool),
            sync_priority: tags.get("sync_priority").and_then(as_int),
            clonefrom: tags.get("clonefrom").and_then(as_bool).unwrap_or(false),
            replicatefrom: tags
                .get("replicatefrom")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            nostream: tags.get("nostream").and_then(as_bool).unwrap_or(false),
        }
    }

    /// Reads the tags of a JSON object field (`{"tags": {...}}` style);
    /// anything but an object reads as no tags.
    pub fn from_value(tags: Option<&Value>) -> Self {
        match tags {
            Some(Value::Object(map)) => {
                let map: BTreeMap<String, Value> =
                    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                Self::from_json(&map)
            }
            _ => Self::default(),
        }
    }

    /// Whether the member must never be promoted: `nofailover` when given,
    /// else a `failover_priority` of 0 or less.
    pub fn nofailover(&self) -> bool {
        match self.nofailover {
            Some(b) => b,
            None => self.failover_priority.is_some_and(|p| p <= 0),
        }
    }

    /// The effective failover priority: 0 for `nofailover`, else the given
    /// priority, 1 by default. Higher wins among equally advanced replicas.
    pub fn failover_priority(&self) -> i64 {
        if self.nofailover == Some(true) {
            0
        } else {
            self.failover_priority.unwrap_or(1)
        }
    }

    /// Whether the member must never be a synchronous standby: `nosync` when given, else a
    /// `sync_priority` of 0 or less.
    pub fn nosync(&self) -> bool {
        match self.nosync {
            Some(b) => b,
            None => self.sync_priority.is_some_and(|p| p <= 0),
        }
    }

    /// The effective synchronous priority: 0 for `nosync`, else the given priority, 1 by
    /// default. Higher is chosen first.
    pub fn sync_priority(&self) -> i64 {
        if self.nosync == Some(true) {
            0
        } else {
            self.sync_priority.unwrap_or(1)
        }
    }

    /// Consuming setter for `nofailover`.
    pub fn with_nofailover(mut self, value: bool) -> Self {
        self.nofailover = Some(value);
        self
    }

    /// Consuming setter for `failover_priority`.
    pub fn with_failover_priority(mut self, value: i64) -> Self {
        self.failover_priority = Some(value);
        self
    }
}

/// Patroni's reading of boolean tags: JSON booleans, numbers (non-zero is
/// true) and the usual words in any case.
fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" | "1" | "y" | "t" => Some(true),
            "off" | "false" | "no" | "0" | "n" | "f" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Integers as numbers or decimal strings (YAML may quote them).
fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tags(v: Value) -> MemberTags {
        MemberTags::from_value(Some(&v))
    }

    /// The boolean wins over the priority; a non-positive priority alone means nofailover.
    #[test]
    fn nofailover_wins_over_priority_and_zero_priority_means_nofailover() {
        let t = tags(json!({"nofailover": true, "failover_priority": "1"}));
        assert!(t.nofailover());
        assert_eq!(t.failover_priority(), 0);
        let t = tags(json!({"failover_priority": 0}));
        assert!(t.nofailover());
        let t = tags(json!({"nofailover": false, "failover_priority": 0}));
        assert!(!t.nofailover());
        let t = tags(json!({"failover_priority": "3"}));
        assert!(!t.nofailover());
        assert_eq!(t.failover_priority(), 3);
        assert_eq!(MemberTags::default().failover_priority(), 1);
    }

    /// Tags that are not understood read as absent.
    #[test]
    fn garbage_tags_read_as_absent() {
        let t = tags(json!({"nofailover": [1], "clonefrom": "maybe", "replicatefrom": 7}));
        assert_eq!(t, MemberTags::default());
        assert_eq!(
            MemberTags::from_value(Some(&json!("x"))),
            MemberTags::default()
        );
    }
}
