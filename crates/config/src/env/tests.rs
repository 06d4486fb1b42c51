//! Tests of the environment mapping against Patroni's `config.py` behaviour.

use serde_json::json;

use super::*;

fn build(vars: &[(&str, &str)]) -> EnvConfig {
    environment_configuration(&vars.iter().copied().collect())
}

/// Every fixed section maps as in Patroni's config.py, with its conversions.
#[test]
fn maps_fixed_sections_with_conversions() {
    let env = build(&[
        ("PATRONI_NAME", "pg-0"),
        ("PATRONI_SCOPE", "demo"),
        ("PATRONI_NAMESPACE", "ns"),
        ("PATRONI_THREAD_POOL_SIZE", "7"),
        ("PATRONI_RESTAPI_LISTEN", "0.0.0.0:8008"),
        ("PATRONI_RESTAPI_USERNAME", "admin"),
        ("PATRONI_RESTAPI_PASSWORD", "secret"),
        ("PATRONI_RESTAPI_ALLOWLIST", "127.0.0.1, 10.0.0.0/8"),
        ("PATRONI_RESTAPI_ALLOWLIST_INCLUDE_MEMBERS", "on"),
        ("PATRONI_RESTAPI_REQUEST_QUEUE_SIZE", "10"),
        ("PATRONI_RESTAPI_HTTP_EXTRA_HEADERS", "X-A: 1"),
        ("PATRONI_CTL_INSECURE", "yes"),
        ("PATRONI_CTL_USERNAME", "ctl"),
        ("PATRONI_POSTGRESQL_DATA_DIR", "/data"),
        ("PATRONI_POSTGRESQL_BIN_PG_CTL", "pg_ctl15"),
        ("PATRONI_LOG_MODE", "0644"),
        ("PATRONI_LOG_LOGGERS", "patroni.api: DEBUG"),
        ("PATRONI_LOG_DEDUPLICATE_HEARTBEAT_LOGS", "false"),
        ("PATRONI_RAFT_MIN_TIMEOUT", "0.5"),
        ("PATRONI_RAFT_PARTNER_ADDRS", "'a:1','b:2'"),
    ]);
    assert_eq!(env.errors, []);
    assert_eq!(
        env.value,
        json!({
            "name": "pg-0", "scope": "demo", "namespace": "ns", "thread_pool_size": "7",
            "restapi": {
                "listen": "0.0.0.0:8008",
                "authentication": {"username": "admin", "password": "secret"},
                "allowlist": ["127.0.0.1", "10.0.0.0/8"],
                "allowlist_include_members": true,
                "request_queue_size": 10,
                "http_extra_headers": {"X-A": 1},
            },
            "ctl": {"insecure": true, "authentication": {"username": "ctl"}},
            "postgresql": {"data_dir": "/data", "bin_name": {"pg_ctl": "pg_ctl15"}},
            "log": {"mode": 420, "loggers": {"patroni.api": "DEBUG"}, "deduplicate_heartbeat_logs": false},
            "raft": {"min_timeout": 0.5, "partner_addrs": ["a:1", "b:2"]},
        })
    );
}

/// Postgres users take every libpq connection parameter Patroni allows.
#[test]
fn maps_postgres_users_to_authentication() {
    let env = build(&[
        ("PATRONI_SUPERUSER_USERNAME", "postgres"),
        ("PATRONI_SUPERUSER_PASSWORD", "s"),
        ("PATRONI_REPLICATION_USERNAME", "standby"),
        ("PATRONI_REPLICATION_SSLMODE", "verify-full"),
        ("PATRONI_REWIND_USERNAME", "rewind"),
        ("PATRONI_REWIND_CHANNEL_BINDING", "require"),
    ]);
    assert_eq!(
        env.value,
        json!({"postgresql": {"authentication": {
            "superuser": {"username": "postgres", "password": "s"},
            "replication": {"username": "standby", "sslmode": "verify-full"},
            "rewind": {"username": "rewind", "channel_binding": "require"},
        }}})
    );
}

/// Every PATRONI_KUBERNETES_* variable lands in the kubernetes section, converted.
#[test]
fn maps_every_kubernetes_variable() {
    let env = build(&[
        ("PATRONI_KUBERNETES_NAMESPACE", "db"),
        (
            "PATRONI_KUBERNETES_LABELS",
            "{application: patroni-demo, cluster-name: patronidemo}",
        ),
        ("PATRONI_KUBERNETES_BOOTSTRAP_LABELS", "phase: init"),
        ("PATRONI_KUBERNETES_SCOPE_LABEL", "cluster"),
        ("PATRONI_KUBERNETES_ROLE_LABEL", "patroni-role"),
        ("PATRONI_KUBERNETES_LEADER_LABEL_VALUE", "master"),
        ("PATRONI_KUBERNETES_FOLLOWER_LABEL_VALUE", "standby"),
        (
            "PATRONI_KUBERNETES_STANDBY_LEADER_LABEL_VALUE",
            "standby-leader",
        ),
        ("PATRONI_KUBERNETES_TMP_ROLE_LABEL", "tmp-role"),
        ("PATRONI_KUBERNETES_USE_ENDPOINTS", "true"),
        ("PATRONI_KUBERNETES_POD_IP", "10.1.2.3"),
        (
            "PATRONI_KUBERNETES_PORTS",
            r#"[{"name": "postgresql", "port": 5432}]"#,
        ),
        ("PATRONI_KUBERNETES_CACERT", "/ca.crt"),
        ("PATRONI_KUBERNETES_BYPASS_API_SERVICE", "off"),
        ("PATRONI_KUBERNETES_RETRIABLE_HTTP_CODES", "401,403"),
        ("PATRONI_KUBERNETES_CONTEXT", "kind-kind"),
    ]);
    assert_eq!(env.errors, []);
    assert_eq!(
        env.value,
        json!({"kubernetes": {
            "namespace": "db",
            "labels": {"application": "patroni-demo", "cluster-name": "patronidemo"},
            "bootstrap_labels": {"phase": "init"},
            "scope_label": "cluster",
            "role_label": "patroni-role",
            "leader_label_value": "master",
            "follower_label_value": "standby",
            "standby_leader_label_value": "standby-leader",
            "tmp_role_label": "tmp-role",
            "use_endpoints": true,
            "pod_ip": "10.1.2.3",
            "ports": [{"name": "postgresql", "port": 5432}],
            "cacert": "/ca.crt",
            "bypass_api_service": false,
            "retriable_http_codes": [401, 403],
            "context": "kind-kind",
        }})
    );
}

/// Other DCS sections are detected by the generic rule; etcd credentials need the section.
#[test]
fn maps_other_dcs_sections_and_citus() {
    let env = build(&[
        ("PATRONI_ETCD3_HOSTS", "'10.0.0.1:2379','10.0.0.2:2379'"),
        ("PATRONI_ETCD3_USERNAME", "u"),
        ("PATRONI_ETCD_PASSWORD", "orphan"),
        ("PATRONI_CONSUL_PORT", "8500"),
        ("PATRONI_CONSUL_REGISTER_SERVICE", "1"),
        ("PATRONI_ZOOKEEPER_SET_ACLS", "{admin: [ALL]}"),
        ("PATRONI_CITUS_GROUP", "1"),
        ("PATRONI_CITUS_DATABASE", "citus"),
        ("PATRONI_CITUS_HOST", "skipped"),
    ]);
    assert_eq!(
        env.value,
        json!({
            "etcd3": {"hosts": ["10.0.0.1:2379", "10.0.0.2:2379"], "username": "u"},
            "consul": {"port": 8500, "register_service": true},
            "zookeeper": {"set_acls": {"admin": ["ALL"]}},
            "citus": {"group": 1, "database": "citus"},
        })
    );
    assert_eq!(env.warnings[0].path, "PATRONI_ETCD_PASSWORD");
}

/// Old log variable names apply only when the new one is absent.
#[test]
fn legacy_log_names_yield_to_new_ones() {
    let env = build(&[
        ("PATRONI_LOGLEVEL", "DEBUG"),
        ("PATRONI_LOGFORMAT", "%(message)s"),
        ("PATRONI_LOG_FORMAT", "x"),
    ]);
    assert_eq!(
        env.value,
        json!({"log": {"level": "DEBUG", "format": ["x"]}})
    );
}

/// Patroni's quirks for empty values: strings and lists stay "", dicts become {}, bools vanish.
#[test]
fn empty_values_follow_patroni() {
    let env = build(&[
        ("PATRONI_NAME", ""),
        ("PATRONI_KUBERNETES_NAMESPACE", ""),
        ("PATRONI_KUBERNETES_PORTS", ""),
        ("PATRONI_KUBERNETES_LABELS", ""),
        ("PATRONI_KUBERNETES_USE_ENDPOINTS", ""),
        ("PATRONI_CITUS_GROUP", ""),
    ]);
    assert_eq!(
        env.value,
        json!({"kubernetes": {"namespace": "", "ports": "", "labels": {}}})
    );
    assert_eq!(env.errors, []);
}

/// Values Patroni would silently drop are errors here, naming the variable.
#[test]
fn unconvertible_values_are_errors() {
    let env = build(&[
        ("PATRONI_KUBERNETES_USE_ENDPOINTS", "maybe"),
        ("PATRONI_RESTAPI_REQUEST_QUEUE_SIZE", "many"),
        ("PATRONI_KUBERNETES_LABELS", "{a: [}"),
    ]);
    let shown: Vec<String> = env.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown[0],
        "PATRONI_RESTAPI_REQUEST_QUEUE_SIZE: expected an integer, got \"many\""
    );
    assert!(
        shown[1].starts_with("PATRONI_KUBERNETES_LABELS: cannot parse as a YAML mapping: "),
        "{}",
        shown[1]
    );
    assert_eq!(
        shown[2],
        "PATRONI_KUBERNETES_USE_ENDPOINTS: expected a boolean (true/false, on/off, yes/no, 1/0), got \"maybe\""
    );
    assert_eq!(env.value, json!({}));
}

/// Typos in known sections and removed user variables produce warnings; others are silent.
#[test]
fn warns_about_unread_patroni_variables() {
    let env = build(&[
        ("PATRONI_KUBERNETES_USE_ENDPOINT", "true"),
        ("PATRONI_ADMIN_PASSWORD", "x"),
        ("PATRONI_ADMIN_OPTIONS", "createrole"),
        ("PATRONI_SERVICE_PORT_API", "8008"),
        ("HOME", "/root"),
    ]);
    let shown: Vec<String> = env.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(
        shown[0]
            .starts_with("PATRONI_ADMIN_OPTIONS: user creation from the environment was removed")
    );
    assert_eq!(
        shown[2],
        "PATRONI_KUBERNETES_USE_ENDPOINT: not a setting Patroni reads; ignored"
    );
}

/// Kubernetes service links of a Service named `patroni-rs` (`PATRONI_RS_PORT=tcp://…`) are
/// not Patroni settings: skipped with a warning, as Patroni drops them, never refused.
#[test]
fn service_link_variables_are_skipped() {
    let env: Environment = [
        ("PATRONI_NAME", "pg-0"),
        ("PATRONI_RS_PORT", "tcp://10.96.189.99:5432"),
        ("PATRONI_RS_REPL_PORT", "tcp://10.96.0.7:5432"),
        ("PATRONI_KUBERNETES_PORT", "6443"),
    ]
    .into_iter()
    .collect();
    let cfg = environment_configuration(&env);
    assert!(cfg.errors.is_empty(), "{:?}", cfg.errors);
    let warned: Vec<String> = cfg.warnings.iter().map(|w| w.path.clone()).collect();
    assert!(warned.contains(&"PATRONI_RS_PORT".to_owned()), "{warned:?}");
    assert!(cfg.value.get("rs").is_none());
    assert_eq!(cfg.value["kubernetes"]["port"], 6443);
    let bad: Environment = [("PATRONI_KUBERNETES_PORT", "tcp://x")]
        .into_iter()
        .collect();
    assert_eq!(
        environment_configuration(&bad).errors.len(),
        1,
        "known sections stay strict"
    );
}
