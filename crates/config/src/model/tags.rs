//! The `tags:` section: per-member flags published in the member's DCS record and obeyed by
//! the HA logic of every member (`patroni/tags.py`).
//!
//! `nofailover`/`failover_priority` and `nosync`/`sync_priority` describe the same thing twice.
//! When both are given and disagree, the boolean wins and a warning says so, as in Patroni.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::validate::{Checker, IntRule, Node, Presence};

/// Tags Patroni interprets; everything else is a custom tag.
const KNOWN: [&str; 8] = [
    "nofailover",
    "failover_priority",
    "clonefrom",
    "noloadbalance",
    "replicatefrom",
    "nosync",
    "sync_priority",
    "nostream",
];

/// Typed `tags:` section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tags {
    /// Never take the leader lock; `None` when not given.
    pub nofailover: Option<bool>,
    /// Failover preference (≥ 0, higher wins; 0 means never); `None` when not given.
    pub failover_priority: Option<u32>,
    /// Preferred source for new replicas' base backups.
    pub clonefrom: bool,
    /// Exclude from load balancing (`GET /replica` answers 503).
    pub noloadbalance: bool,
    /// Replicate from this member instead of the leader.
    pub replicatefrom: Option<String>,
    /// Never become a synchronous standby; `None` when not given.
    pub nosync: Option<bool>,
    /// Synchronous standby preference (≥ 0; 0 means never); `None` when not given.
    pub sync_priority: Option<u32>,
    /// Do not stream WAL (archive recovery only).
    pub nostream: bool,
    /// Any other tags, as written.
    pub custom: BTreeMap<String, Value>,
}

// === impl Tags ===

impl Tags {
    /// Reads the optional section at `node`.
    pub(crate) fn read(c: &mut Checker, node: &Node<'_>) -> Self {
        let priority = |c: &mut Checker, key| {
            c.int(node, key, Presence::Optional, IntRule::at_least(0))
                .and_then(|n| u32::try_from(n).ok())
        };
        let tags = Self {
            nofailover: c.boolean(node, "nofailover"),
            failover_priority: priority(c, "failover_priority"),
            clonefrom: c.boolean_or(node, "clonefrom", false),
            noloadbalance: c.boolean_or(node, "noloadbalance", false),
            replicatefrom: c.string(node, "replicatefrom", Presence::Optional),
            nosync: c.boolean(node, "nosync"),
            sync_priority: priority(c, "sync_priority"),
            nostream: c.boolean_or(node, "nostream", false),
            custom: node
                .keys()
                .filter(|k| !KNOWN.contains(&k.as_str()))
                .filter_map(|k| Some((k.clone(), node.get(k)?.clone())))
                .collect(),
        };
        warn_conflict(
            c,
            node,
            "nofailover",
            tags.nofailover,
            "failover_priority",
            tags.failover_priority,
        );
        warn_conflict(
            c,
            node,
            "nosync",
            tags.nosync,
            "sync_priority",
            tags.sync_priority,
        );
        tags
    }

    /// Whether this member must never become leader: `nofailover`, or else
    /// `failover_priority == 0`.
    pub fn is_nofailover(&self) -> bool {
        self.nofailover.unwrap_or(self.failover_priority == Some(0))
    }

    /// Effective failover priority: 0 with `nofailover: true`, else the priority, default 1.
    pub fn effective_failover_priority(&self) -> u32 {
        if self.nofailover == Some(true) {
            0
        } else {
            self.failover_priority.unwrap_or(1)
        }
    }

    /// Whether this member must never be a synchronous standby: `nosync`, or else
    /// `sync_priority == 0`.
    pub fn is_nosync(&self) -> bool {
        self.nosync.unwrap_or(self.sync_priority == Some(0))
    }

    /// Effective sync priority: 0 with `nosync: true`, else the priority, default 1.
    pub fn effective_sync_priority(&self) -> u32 {
        if self.nosync == Some(true) {
            0
        } else {
            self.sync_priority.unwrap_or(1)
        }
    }
}

fn warn_conflict(
    c: &mut Checker,
    node: &Node<'_>,
    bool_name: &str,
    flag: Option<bool>,
    priority_name: &str,
    priority: Option<u32>,
) {
    let (Some(flag), Some(priority)) = (flag, priority) else {
        return;
    };
    if flag == (priority > 0) {
        c.warn(node.path(), {
            // Patroni's words, with Python's spelling of booleans.
            let flag = if flag { "True" } else { "False" };
            format!(
                "Conflicting configuration between {bool_name}: {flag} and {priority_name}: \
                     {priority}. Defaulting to {bool_name}: {flag}"
            )
        });
    }
}
