//! Member roles, with the names Patroni writes and the older names it still
//! accepts when reading.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The role a member reports for itself.
///
/// Patroni 4 writes `primary`; data written by Patroni 3 and older says
/// `master`, which still parses as [`Role::Primary`] but is never written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Holds the leader lock and accepts writes.
    #[serde(alias = "master")]
    Primary,
    /// Streams from the primary (or from another replica, cascading).
    Replica,
    /// Leader of a standby cluster: replicates from outside the cluster and
    /// is the source for the cluster's other members.
    StandbyLeader,
    /// Demoted, or not yet knowing what it is.
    Uninitialized,
    /// Being demoted after losing the lock.
    Demoted,
}

/// A role name that Patroni does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (expected primary, replica or standby_leader)")]
pub struct ParseRoleError(pub String);

// === impl Role ===

impl Role {
    /// The name Patroni 4 writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::StandbyLeader => "standby_leader",
            Role::Uninitialized => "uninitialized",
            Role::Demoted => "demoted",
        }
    }

    /// Whether the member is the leader of its cluster (primary or standby leader).
    pub fn is_leader(self) -> bool {
        matches!(self, Role::Primary | Role::StandbyLeader)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ParseRoleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "primary" | "master" => Ok(Role::Primary),
            "replica" => Ok(Role::Replica),
            "standby_leader" | "standby-leader" => Ok(Role::StandbyLeader),
            "uninitialized" => Ok(Role::Uninitialized),
            "demoted" => Ok(Role::Demoted),
            other => Err(ParseRoleError(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Data written by Patroni 3 (`master`) reads as primary, and is written back as `primary`.
    #[test]
    fn master_reads_as_primary_and_writes_as_primary() {
        assert_eq!("master".parse::<Role>(), Ok(Role::Primary));
        let r: Role = serde_json::from_str("\"master\"").expect("valid JSON");
        assert_eq!(r, Role::Primary);
        assert_eq!(
            serde_json::to_string(&r).expect("serialises"),
            "\"primary\""
        );
    }

    /// Every role round-trips through its name.
    #[test]
    fn every_role_round_trips() {
        for r in [
            Role::Primary,
            Role::Replica,
            Role::StandbyLeader,
            Role::Uninitialized,
            Role::Demoted,
        ] {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert_eq!(
            "leader".parse::<Role>(),
            Err(ParseRoleError("leader".into()))
        );
    }
}
