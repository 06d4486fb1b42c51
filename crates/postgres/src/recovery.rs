//! Recovery configuration for PostgreSQL 12+: how a standby follows its leader.
//!
//! A standby is a data directory with `standby.signal` and, in `postgresql.conf`, a
//! `# recovery.conf` section Patroni writes after the other parameters: `primary_conninfo`
//! (libpq keywords, password through a passfile), `primary_slot_name` (the slot the leader keeps
//! for this member), `recovery_target_timeline = 'latest'` (follow promotions) and every
//! `recovery_target*` blanked so an included file cannot pause, promote or stop the standby.
//!
//! [`RecoveryConf::build`] is pure; [`crate::Layout::write_recovery`] writes the files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use patroni_config::PgUser;
use serde_json::Value;

use crate::conninfo::{ConnParams, use_passfile};
use patroni_core::slots::slot_name_from_member_name;

/// Parameters Patroni blanks on PostgreSQL 12+ so no included file sets a recovery target.
const BLANKED_TARGETS: [&str; 5] = [
    "recovery_target",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
];

/// Which signal file starts recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoverySignal {
    /// `standby.signal`: stay a standby, following `primary_conninfo` (or the archive).
    Standby,
    /// `recovery.signal`: targeted recovery that ends (point-in-time restore).
    Recovery,
}

/// Where the leader is, as its member key's `conn_url` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAddress {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// What a standby should follow.
#[derive(Debug, Clone, Copy)]
pub struct FollowSpec<'a> {
    /// This member's name: `application_name`, and the default slot name.
    pub member_name: &'a str,
    /// The member to stream from; `None` follows nobody (archive recovery only).
    pub upstream: Option<&'a UpstreamAddress>,
    /// Replication credentials and libpq options.
    pub replication: &'a PgUser,
    /// The password file `primary_conninfo` names (`postgresql.pgpass`).
    pub passfile: &'a Path,
    /// `postgresql.use_slots`.
    pub use_slots: bool,
    /// Slot to use instead of this member's own (a standby cluster's `primary_slot_name`).
    pub slot_name: Option<&'a str>,
    /// `postgresql.recovery_conf`: extra settings (`restore_command`, …); any
    /// `recovery_target*`, `primary_conninfo` and `primary_slot_name` in it are ignored.
    pub extra: &'a BTreeMap<String, Value>,
    /// Major version of the server.
    pub major_version: u32,
    /// `postgresql.krbsrvname`.
    pub krbsrvname: Option<&'a str>,
}

/// A standby's recovery settings, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryConf {
    /// Which signal file to create.
    pub signal: RecoverySignal,
    /// Settings by name, values as PostgreSQL reads them (`primary_conninfo` rendered).
    pub params: BTreeMap<String, String>,
    /// The passfile `primary_conninfo` names and the line(s) it must hold, when there is a
    /// replication password.
    pub passfile: Option<(PathBuf, String)>,
}

// === impl RecoveryConf ===

impl RecoveryConf {
    /// Builds the settings Patroni's `build_recovery_params` would. Pure.
    pub fn build(spec: &FollowSpec<'_>) -> Self {
        let mut params: BTreeMap<String, String> = spec
            .extra
            .iter()
            .filter(|(k, _)| {
                let k = k.to_lowercase();
                !k.starts_with("recovery_target")
                    && k != "primary_conninfo"
                    && k != "primary_slot_name"
                    && k != "standby_mode"
            })
            .map(|(k, v)| (k.to_lowercase(), value_text(v)))
            .collect();
        params.insert("recovery_target_timeline".into(), "latest".into());
        if spec.major_version >= 12 {
            for target in BLANKED_TARGETS {
                params.insert(target.into(), String::new());
            }
        }
        let mut passfile = None;
        if let Some(upstream) = spec.upstream {
            let mut conn = primary_conninfo_params(spec, upstream);
            if spec.major_version >= 10 {
                passfile = conn
                    .pgpass_lines()
                    .map(|lines| (spec.passfile.to_path_buf(), lines));
                use_passfile(&mut conn, spec.passfile);
            }
            params.insert("primary_conninfo".into(), conn.to_dsn());
            if spec.use_slots {
                let slot = spec.slot_name.map_or_else(
                    || slot_name_from_member_name(spec.member_name),
                    str::to_owned,
                );
                params.insert("primary_slot_name".into(), slot);
            }
        }
        RecoveryConf {
            signal: RecoverySignal::Standby,
            params,
            passfile,
        }
    }

    /// The rendered `primary_conninfo`, if following someone.
    pub fn primary_conninfo(&self) -> Option<&str> {
        self.params.get("primary_conninfo").map(String::as_str)
    }

    /// The slot streamed from, if any.
    pub fn primary_slot_name(&self) -> Option<&str> {
        self.params.get("primary_slot_name").map(String::as_str)
    }
}

/// `primary_conninfo` keywords: the upstream's address, replication credentials,
/// `application_name` = member name, and Patroni's `prefer` defaults by version.
fn primary_conninfo_params(spec: &FollowSpec<'_>, upstream: &UpstreamAddress) -> ConnParams {
    let mut conn = ConnParams::for_user(&upstream.host, upstream.port, spec.replication);
    conn.set("application_name", spec.member_name);
    conn.set_default("sslmode", "prefer");
    if spec.major_version >= 12 {
        conn.set_default("gssencmode", "prefer");
    }
    if spec.major_version >= 13 {
        conn.set_default("channel_binding", "prefer");
    }
    if let Some(krb) = spec.krbsrvname {
        conn.set("krbsrvname", krb);
    }
    conn.remove("dbname");
    conn
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicator(password: Option<&str>) -> PgUser {
        PgUser {
            username: "replicator".into(),
            password: password.map(str::to_owned),
            params: BTreeMap::new(),
        }
    }

    /// Following a leader: conninfo through the passfile, the member's slot, latest timeline,
    /// blanked targets; extras kept except the ones Patroni owns.
    #[test]
    fn follow_leader_builds_patroni_recovery_params() {
        let upstream = UpstreamAddress {
            host: "10.213.1.1".into(),
            port: 5432,
        };
        let user = replicator(Some("s3cr:et"));
        let extra: BTreeMap<String, Value> = serde_json::from_value(serde_json::json!({
            "restore_command": "cp /archive/%f %p",
            "recovery_target_time": "2020-01-01",
            "primary_slot_name": "other",
        }))
        .expect("map");
        let conf = RecoveryConf::build(&FollowSpec {
            member_name: "pg-b.1",
            upstream: Some(&upstream),
            replication: &user,
            passfile: Path::new("/var/lib/postgresql/pgpass"),
            use_slots: true,
            slot_name: None,
            extra: &extra,
            major_version: 15,
            krbsrvname: None,
        });
        assert_eq!(conf.signal, RecoverySignal::Standby);
        assert_eq!(
            conf.primary_conninfo(),
            Some(
                "user=replicator passfile=/var/lib/postgresql/pgpass host=10.213.1.1 port=5432 \
                 sslmode=prefer application_name=pg-b.1 gssencmode=prefer channel_binding=prefer"
            )
        );
        assert_eq!(conf.primary_slot_name(), Some("pg_b_1"));
        assert_eq!(
            conf.passfile,
            Some((
                PathBuf::from("/var/lib/postgresql/pgpass"),
                "10.213.1.1:5432:*:replicator:s3cr\\:et".to_owned()
            ))
        );
        let names: Vec<_> = conf.params.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "primary_conninfo",
                "primary_slot_name",
                "recovery_target",
                "recovery_target_lsn",
                "recovery_target_name",
                "recovery_target_time",
                "recovery_target_timeline",
                "recovery_target_xid",
                "restore_command",
            ]
        );
        assert_eq!(conf.params["recovery_target_time"], "");
        assert_eq!(conf.params["restore_command"], "cp /archive/%f %p");
    }

    /// Following nobody, or without slots or password: no conninfo / no slot / no passfile.
    #[test]
    fn follow_nobody_and_slotless_variants() {
        let user = replicator(None);
        let extra = BTreeMap::new();
        let mut spec = FollowSpec {
            member_name: "pg-1",
            upstream: None,
            replication: &user,
            passfile: Path::new("/p"),
            use_slots: true,
            slot_name: None,
            extra: &extra,
            major_version: 15,
            krbsrvname: None,
        };
        let conf = RecoveryConf::build(&spec);
        assert_eq!(conf.primary_conninfo(), None);
        assert_eq!(conf.primary_slot_name(), None);

        let upstream = UpstreamAddress {
            host: "h".into(),
            port: 5433,
        };
        spec.upstream = Some(&upstream);
        spec.use_slots = false;
        spec.major_version = 12;
        let conf = RecoveryConf::build(&spec);
        assert_eq!(conf.primary_slot_name(), None);
        assert_eq!(conf.passfile, None);
        assert_eq!(
            conf.primary_conninfo(),
            Some(
                "user=replicator host=h port=5433 sslmode=prefer application_name=pg-1 gssencmode=prefer"
            )
        );
    }
}
