//! Where Patroni keeps each piece of a cluster's state in etcd: every key is
//! `<base>/<name>` with `<base>` = `/<namespace>/<scope>` (Patroni's `client_path`).

/// The keys of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `/<namespace>/<scope>/`, with the trailing slash: the prefix of every key (and of the
    /// watch and the range read).
    prefix: String,
}

/// Relative key of the bootstrap claim and system id.
pub const INITIALIZE: &str = "initialize";
/// Relative key of the dynamic configuration.
pub const CONFIG: &str = "config";
/// Relative key of the leader lock (value: the holder's name, bound to its lease).
pub const LEADER: &str = "leader";
/// Relative key of a failover or switchover request.
pub const FAILOVER: &str = "failover";
/// Relative key of the timeline history.
pub const HISTORY: &str = "history";
/// Relative prefix of members' keys (each bound to its member's lease).
pub const MEMBERS: &str = "members/";
/// Relative key of the leader's status (`optime`, `slots`, `retain_slots`).
pub const STATUS: &str = "status";
/// Relative key of the leader's last WAL position as written before Patroni 2.1.
pub const LEADER_OPTIME: &str = "optime/leader";
/// Relative key of the synchronous replication state.
pub const SYNC: &str = "sync";
/// Relative key of the failsafe topology.
pub const FAILSAFE: &str = "failsafe";

// === impl Keys ===

impl Keys {
    /// The keys under `base` (`/service/demo`, from `Etcd3Config::base_path`).
    pub fn new(base: &str) -> Self {
        Keys {
            prefix: format!("{}/", base.trim_end_matches('/')),
        }
    }

    /// The prefix of every key of the cluster, trailing slash included.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The absolute key of relative key `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The key of member `name`.
    pub fn member(&self, name: &str) -> String {
        self.key(&format!("{MEMBERS}{name}"))
    }

    /// `key` relative to the prefix, if it is one of this cluster's.
    pub fn relative<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(&self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are exactly Patroni's paths.
    #[test]
    fn keys_are_patronis_paths() {
        let k = Keys::new("/service/demo");
        assert_eq!(k.key(LEADER), "/service/demo/leader");
        assert_eq!(k.member("pg-0"), "/service/demo/members/pg-0");
        assert_eq!(k.key(LEADER_OPTIME), "/service/demo/optime/leader");
        assert_eq!(k.relative("/service/demo/sync"), Some("sync"));
        assert_eq!(k.relative("/service/demo2/sync"), None);
        assert_eq!(Keys::new("/service/demo/").prefix(), "/service/demo/");
    }
}
