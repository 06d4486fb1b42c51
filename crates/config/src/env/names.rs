//! The tables of `PATRONI_*` variable names Patroni reads, and how each value is converted.

/// Top-level settings read from `PATRONI_<NAME>` as plain strings.
pub(super) const TOP_LEVEL: [&str; 5] = [
    "name",
    "namespace",
    "scope",
    "thread_pool_size",
    "thread_stack_size",
];

/// `(section, settings)` read from `PATRONI_<SECTION>_<SETTING>` as strings, in Patroni's order.
pub(super) const SECTION_VALUES: [(&str, &[&str]); 6] = [
    // patroni-rs only: scheduled base backups (docs/backups.md).
    ("backup", &["schedule", "command"]),
    (
        "restapi",
        &[
            "listen",
            "connect_address",
            "certfile",
            "keyfile",
            "keyfile_password",
            "cafile",
            "ciphers",
            "verify_client",
            "http_extra_headers",
            "https_extra_headers",
            "allowlist",
            "allowlist_include_members",
            "request_queue_size",
            "server_tokens",
        ],
    ),
    (
        "ctl",
        &[
            "insecure",
            "cacert",
            "certfile",
            "keyfile",
            "keyfile_password",
        ],
    ),
    (
        "postgresql",
        &[
            "listen",
            "connect_address",
            "proxy_address",
            "config_dir",
            "data_dir",
            "pgpass",
            "bin_dir",
        ],
    ),
    (
        "log",
        &[
            "type",
            "level",
            "traceback_level",
            "format",
            "dateformat",
            "static_fields",
            "max_queue_size",
            "dir",
            "mode",
            "file_size",
            "file_num",
            "loggers",
            "deduplicate_heartbeat_logs",
        ],
    ),
    (
        "raft",
        &[
            "data_dir",
            "self_addr",
            "partner_addrs",
            "password",
            "bind_addr",
            "min_timeout",
            "max_timeout",
            "connection_timeout",
            "append_entries_period",
            "connection_retry_time",
            "leader_fallback_timeout",
        ],
    ),
];

/// Postgres binaries whose names can be overridden by `PATRONI_POSTGRESQL_BIN_<BINARY>`.
pub(crate) const POSTGRES_BINARIES: [&str; 7] = [
    "pg_ctl",
    "initdb",
    "pg_controldata",
    "pg_basebackup",
    "postgres",
    "pg_isready",
    "pg_rewind",
];

/// Connection parameters accepted for each Postgres user in `postgresql.authentication`.
pub(crate) const AUTH_PARAMETERS: [&str; 12] = [
    "username",
    "password",
    "sslmode",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "gssencmode",
    "channel_binding",
    "sslnegotiation",
];

/// Suffixes of `PATRONI_<SECTION>_<SUFFIX>` read for any section (the DCS sections and `citus`).
pub(super) const GENERIC_SUFFIXES: [&str; 42] = [
    "HOST",
    "HOSTS",
    "PORT",
    "USE_PROXIES",
    "PROTOCOL",
    "SRV",
    "SRV_SUFFIX",
    "URL",
    "PROXY",
    "CACERT",
    "CERT",
    "KEY",
    "VERIFY",
    "TOKEN",
    "CHECKS",
    "DC",
    "CONSISTENCY",
    "REGISTER_SERVICE",
    "SERVICE_CHECK_INTERVAL",
    "SERVICE_CHECK_TLS_SERVER_NAME",
    "SERVICE_TAGS",
    "NAMESPACE",
    "CONTEXT",
    "USE_ENDPOINTS",
    "SCOPE_LABEL",
    "ROLE_LABEL",
    "POD_IP",
    "PORTS",
    "LABELS",
    "BYPASS_API_SERVICE",
    "RETRIABLE_HTTP_CODES",
    "KEY_PASSWORD",
    "USE_SSL",
    "SET_ACLS",
    "GROUP",
    "DATABASE",
    "LEADER_LABEL_VALUE",
    "FOLLOWER_LABEL_VALUE",
    "STANDBY_LEADER_LABEL_VALUE",
    "TMP_ROLE_LABEL",
    "AUTH_DATA",
    "BOOTSTRAP_LABELS",
];

/// Sections whose unread `PATRONI_<SECTION>_*` variables deserve a warning (likely typos).
/// Other unread `PATRONI_*` variables are left alone: Kubernetes injects `PATRONI_SERVICE_HOST`
/// and friends for a Service named `patroni`.
pub(super) const WATCHED_SECTIONS: [&str; 15] = [
    "RESTAPI",
    "CTL",
    "POSTGRESQL",
    "LOG",
    "RAFT",
    "REPLICATION",
    "SUPERUSER",
    "REWIND",
    "KUBERNETES",
    "ETCD",
    "ETCD3",
    "CONSUL",
    "ZOOKEEPER",
    "EXHIBITOR",
    "CITUS",
];

/// How a variable's text becomes a configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Text,
    Bool,
    Int,
    Real,
    List,
    Dict,
}

/// The conversion Patroni applies to `PATRONI_<SECTION>_<PARAM>` for the fixed sections.
pub(super) fn section_kind(section: &str, param: &str) -> Kind {
    match (section, param) {
        ("restapi", "allowlist_include_members")
        | ("ctl", "insecure")
        | ("log", "deduplicate_heartbeat_logs") => Kind::Bool,
        ("restapi", "request_queue_size")
        | ("log", "max_queue_size" | "file_size" | "file_num" | "mode") => Kind::Int,
        (
            "raft",
            "min_timeout"
            | "max_timeout"
            | "connection_timeout"
            | "append_entries_period"
            | "connection_retry_time"
            | "leader_fallback_timeout",
        ) => Kind::Real,
        ("raft", "partner_addrs") | ("restapi", "allowlist") => Kind::List,
        ("restapi", "http_extra_headers" | "https_extra_headers")
        | ("log", "static_fields" | "loggers") => Kind::Dict,
        _ => Kind::Text,
    }
}

/// The conversion for a generic `PATRONI_<NAME>_<SUFFIX>`, or `None` when Patroni skips it.
pub(super) fn generic_kind(name: &str, suffix: &str) -> Option<Kind> {
    if name == "CITUS" {
        return match suffix {
            "GROUP" => Some(Kind::Int),
            "DATABASE" => Some(Kind::Text),
            _ => None,
        };
    }
    Some(match suffix {
        "PORT" => Kind::Int,
        "HOSTS" | "PORTS" | "CHECKS" | "SERVICE_TAGS" | "RETRIABLE_HTTP_CODES" => Kind::List,
        "LABELS" | "SET_ACLS" | "AUTH_DATA" | "BOOTSTRAP_LABELS" => Kind::Dict,
        "USE_PROXIES" | "REGISTER_SERVICE" | "USE_ENDPOINTS" | "BYPASS_API_SERVICE" | "VERIFY" => {
            Kind::Bool
        }
        _ => Kind::Text,
    })
}
