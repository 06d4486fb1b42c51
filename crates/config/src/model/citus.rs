//! The `citus:` section: this member belongs to a Citus group (0 is the coordinator).

use crate::validate::{Checker, IntRule, Node, Presence};

/// Typed `citus:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitusConfig {
    /// Citus group; 0 is the coordinator.
    pub group: u32,
    /// Database in which the Citus extension lives.
    pub database: String,
}

// === impl CitusConfig ===

impl CitusConfig {
    /// Reads the section at `node`; both settings are required.
    pub(crate) fn read(c: &mut Checker, node: &Node<'_>) -> Option<Self> {
        let group = c.int(
            node,
            "group",
            Presence::Required,
            IntRule::between(0, i64::from(u32::MAX)),
        );
        let database = c.string(node, "database", Presence::Required);
        Some(Self {
            group: u32::try_from(group?).ok()?,
            database: database?,
        })
    }
}
