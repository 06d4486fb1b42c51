//! Patroni's sample member configurations, Kubernetes flavour, load into the expected types.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf};

use patroni_config::{
    DcsConfig, Environment, KubernetesConfig, LoadError, Origin, SynchronousMode, ToolOption,
    WatchdogMode, load,
};
use serde_json::json;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn kubernetes(dcs: &DcsConfig) -> &KubernetesConfig {
    match dcs {
        DcsConfig::Kubernetes(k) => k,
        other => panic!("expected kubernetes, got {other:?}"),
    }
}

/// postgres0.yml with a kubernetes section loads with every value and default in place.
#[test]
fn postgres0_sample_loads_with_patroni_defaults() {
    let loaded = load(Some(&fixture("postgres0.yml")), &Environment::new()).expect("valid sample");
    let c = &loaded.config;
    assert_eq!(
        (c.name.as_str(), c.scope.as_str()),
        ("postgresql0", "batman")
    );
    assert_eq!(c.restapi.listen.to_string(), "127.0.0.1:8008");
    assert_eq!(c.restapi.connect_address.to_string(), "127.0.0.1:8008");
    assert_eq!(c.restapi.authentication, None);

    let k = kubernetes(&c.dcs);
    assert_eq!(k.namespace, "default");
    assert_eq!(
        k.labels,
        BTreeMap::from([("application".to_owned(), "patroni".to_owned())])
    );
    assert_eq!(
        k.selector_labels("batman")
            .get("cluster-name")
            .map(String::as_str),
        Some("batman")
    );
    assert!(k.use_endpoints);
    assert_eq!(k.pod_ip, Some(IpAddr::from([127, 0, 0, 1])));
    assert_eq!(k.ports[0].name.as_deref(), Some("postgresql"));
    assert_eq!(
        (k.role_label.as_str(), k.leader_label_value.as_str()),
        ("role", "primary")
    );

    let dcs = &c.bootstrap.dcs;
    assert_eq!((dcs.ttl, dcs.loop_wait, dcs.retry_timeout), (30, 10, 10));
    assert_eq!(dcs.maximum_lag_on_failover, 1_048_576);
    assert_eq!(dcs.postgresql.use_pg_rewind, Some(true));
    assert_eq!(dcs.postgresql.pg_hba.as_ref().map(Vec::len), Some(2));
    assert_eq!(
        c.bootstrap.initdb,
        [
            ToolOption::Value {
                name: "encoding".into(),
                value: "UTF8".into()
            },
            ToolOption::Flag("data-checksums".into())
        ]
    );
    assert_eq!(
        c.bootstrap.dcs_raw["postgresql"]["use_pg_rewind"],
        json!(true)
    );

    let pg = &c.postgresql;
    assert_eq!(pg.listen.to_string(), "127.0.0.1:5432");
    assert_eq!(pg.data_dir, PathBuf::from("data/postgresql0"));
    assert_eq!(pg.effective_config_dir(), PathBuf::from("data/postgresql0"));
    assert_eq!(pg.authentication.superuser.username, "postgres");
    assert_eq!(
        pg.authentication.replication.password.as_deref(),
        Some("rep-pass")
    );
    assert_eq!(
        pg.authentication
            .rewind
            .as_ref()
            .map(|u| u.username.as_str()),
        Some("rewind_user")
    );
    assert_eq!(pg.parameters["unix_socket_directories"], json!(".."));
    assert_eq!(pg.create_replica_methods, ["basebackup"]);
    assert_eq!(pg.bin_name["pg_ctl"], "pg_ctl");
    assert!(!c.tags.noloadbalance && !c.tags.is_nofailover());
    assert_eq!(c.tags.effective_failover_priority(), 1);
    assert_eq!(c.watchdog.mode, WatchdogMode::Automatic);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.origin, Origin::Files(vec![fixture("postgres0.yml")]));
}

/// The environment overrides the file key by key.
#[test]
fn environment_overrides_the_file() {
    let env = Environment::new()
        .with_var("PATRONI_NAME", "postgresql1")
        .with_var("PATRONI_KUBERNETES_USE_ENDPOINTS", "false")
        .with_var("PATRONI_SUPERUSER_PASSWORD", "from-env")
        .with_var("PATRONI_RESTAPI_USERNAME", "admin")
        .with_var("PATRONI_RESTAPI_PASSWORD", "admin-pass");
    let loaded = load(Some(&fixture("postgres0.yml")), &env).expect("valid");
    let c = &loaded.config;
    assert_eq!(c.name, "postgresql1");
    assert!(!kubernetes(&c.dcs).use_endpoints);
    assert_eq!(c.postgresql.authentication.superuser.username, "postgres");
    assert_eq!(
        c.postgresql.authentication.superuser.password.as_deref(),
        Some("from-env")
    );
    assert_eq!(
        c.restapi
            .authentication
            .as_ref()
            .map(|a| a.username.as_str()),
        Some("admin")
    );
    assert_eq!(
        loaded.raw["postgresql"]["authentication"]["superuser"],
        json!({"username": "postgres", "password": "from-env"})
    );
}

/// A directory's YAML files merge in name order; coercions and aliases apply.
#[test]
fn directory_of_files_merges_in_order() {
    let loaded = load(Some(&fixture("conf.d")), &Environment::new()).expect("valid directory");
    let c = &loaded.config;
    assert_eq!((c.name.as_str(), c.scope.as_str()), ("demo-1", "demo"));
    assert_eq!(kubernetes(&c.dcs).namespace, "databases");
    let dcs = &c.bootstrap.dcs;
    assert_eq!((dcs.ttl, dcs.loop_wait, dcs.retry_timeout), (40, 5, 15));
    assert_eq!(dcs.primary_start_timeout, 120);
    assert_eq!(dcs.synchronous_mode, SynchronousMode::On);
    assert_eq!(dcs.member_slots_ttl, 1800);
    assert_eq!(c.postgresql.parameters["max_connections"], json!(300));
    assert_eq!(c.postgresql.parameters["wal_log_hints"], json!("on"));
    assert_eq!(c.tags.failover_priority, Some(2));
    assert_eq!(c.tags.custom["datacenter"], json!("west"));
    let Origin::Files(files) = &loaded.origin else {
        panic!("files")
    };
    assert_eq!(files.len(), 2);
}

/// The same directory works from a real temporary directory, and a later file deletes with null.
#[test]
fn real_directory_later_file_can_delete_with_null() {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(fixture("conf.d")).expect("fixture dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
    }
    std::fs::write(
        dir.path().join("20-override.yml"),
        "tags: {datacenter: null}\nkubernetes: {namespace: null}\n",
    )
    .expect("write");
    let loaded = load(Some(dir.path()), &Environment::new()).expect("valid");
    assert!(!loaded.config.tags.custom.contains_key("datacenter"));
    assert_eq!(kubernetes(&loaded.config.dcs).namespace, "default");
}

/// Malformed YAML is a source error naming the file.
#[test]
fn malformed_yaml_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yml");
    std::fs::write(&file, "scope: [unclosed\n").expect("write");
    let err = load(Some(&file), &Environment::new()).expect_err("malformed");
    assert!(matches!(err, LoadError::Source(_)));
    assert_eq!(err.to_string(), format!("parse YAML in {}", file.display()));
}

/// Custom replica methods keep their own section (command, flags, extra
/// arguments) for the agent to run them with.
#[test]
fn custom_replica_method_sections_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = std::fs::read_to_string(fixture("postgres0.yml")).expect("read sample");
    let extra = "\n  create_replica_methods:\n    - wal_e\n    - basebackup\n  wal_e:\n    command: /bin/wale-restore\n    keep_data: true\n    threads: 4\n";
    let text = base.replacen("\npostgresql:\n", &format!("\npostgresql:{extra}"), 1);
    let path = dir.path().join("patroni.yml");
    std::fs::write(&path, text).expect("write");
    let loaded = load(Some(&path), &Environment::new()).expect("valid configuration");
    let pg = &loaded.config.postgresql;
    assert_eq!(pg.create_replica_methods, ["wal_e", "basebackup"]);
    let wal_e = pg
        .replica_method_sections
        .get("wal_e")
        .expect("wal_e section");
    assert_eq!(wal_e.get("command"), Some(&json!("/bin/wale-restore")));
    assert_eq!(wal_e.get("threads"), Some(&json!(4)));
    assert!(!pg.replica_method_sections.contains_key("basebackup"));
}
