//! The environment of Patroni's Kubernetes StatefulSet (kubernetes/patroni_k8s.yaml), alone and
//! with the file its entrypoint.sh writes.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf};

use patroni_config::{DcsConfig, Environment, LoadError, Origin, ToolOption, load};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The `env:` list of the sample StatefulSet, as the kubelet resolves it for pod patronidemo-0.
fn statefulset_env() -> Environment {
    Environment::new()
        .with_var("PATRONI_KUBERNETES_POD_IP", "10.244.0.5")
        .with_var("PATRONI_KUBERNETES_NAMESPACE", "default")
        .with_var("PATRONI_KUBERNETES_BYPASS_API_SERVICE", "true")
        .with_var("PATRONI_KUBERNETES_USE_ENDPOINTS", "true")
        .with_var(
            "PATRONI_KUBERNETES_LABELS",
            "{application: patroni-demo, cluster-name: patronidemo}",
        )
        .with_var("PATRONI_SUPERUSER_USERNAME", "postgres")
        .with_var("PATRONI_SUPERUSER_PASSWORD", "zalando")
        .with_var("PATRONI_REPLICATION_USERNAME", "standby")
        .with_var("PATRONI_REPLICATION_PASSWORD", "rep-pass")
        .with_var("PATRONI_SCOPE", "patronidemo")
        .with_var("PATRONI_NAME", "patronidemo-0")
        .with_var(
            "PATRONI_POSTGRESQL_DATA_DIR",
            "/home/postgres/pgdata/pgroot/data",
        )
        .with_var("PATRONI_POSTGRESQL_PGPASS", "/tmp/pgpass")
        .with_var("PATRONI_POSTGRESQL_LISTEN", "0.0.0.0:5432")
        .with_var("PATRONI_RESTAPI_LISTEN", "0.0.0.0:8008")
        // Injected by Kubernetes for unrelated Services; must not disturb anything.
        .with_var("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .with_var("PATRONIDEMO_SERVICE_HOST", "10.96.0.10")
}

/// Like Patroni, connect addresses are not derived from POD_IP: the environment alone lacks
/// them, and both are reported at once.
#[test]
fn statefulset_env_alone_lacks_connect_addresses() {
    let err = load(None, &statefulset_env()).expect_err("no connect addresses");
    let LoadError::Invalid(invalid) = err else {
        panic!("expected validation errors")
    };
    let shown: Vec<String> = invalid.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "restapi.connect_address: missing required setting",
            "postgresql.connect_address: missing required setting"
        ]
    );
}

/// With the addresses the entrypoint would write, the environment alone is a valid config.
#[test]
fn statefulset_env_with_connect_addresses_is_valid() {
    let env = statefulset_env()
        .with_var("PATRONI_RESTAPI_CONNECT_ADDRESS", "10.244.0.5:8008")
        .with_var("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "10.244.0.5:5432");
    let loaded = load(None, &env).expect("valid");
    assert_eq!(loaded.origin, Origin::Environment);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = &loaded.config;
    assert_eq!(
        (c.name.as_str(), c.scope.as_str()),
        ("patronidemo-0", "patronidemo")
    );
    let DcsConfig::Kubernetes(k) = &c.dcs else {
        panic!("kubernetes")
    };
    assert_eq!(k.namespace, "default");
    assert!(k.use_endpoints && k.bypass_api_service);
    assert_eq!(k.pod_ip, Some("10.244.0.5".parse::<IpAddr>().expect("ip")));
    assert_eq!(
        k.labels,
        BTreeMap::from([
            ("application".to_owned(), "patroni-demo".to_owned()),
            ("cluster-name".to_owned(), "patronidemo".to_owned()),
        ])
    );
    assert_eq!(c.postgresql.listen.host, "0.0.0.0");
    assert_eq!(c.postgresql.pgpass, Some(PathBuf::from("/tmp/pgpass")));
    assert_eq!(c.postgresql.authentication.replication.username, "standby");
    assert_eq!(c.bootstrap.dcs.ttl, 30);
}

/// The file entrypoint.sh writes plus the StatefulSet environment: the real deployment.
#[test]
fn entrypoint_file_plus_statefulset_env_is_valid() {
    let loaded = load(Some(&fixture("entrypoint.yml")), &statefulset_env()).expect("valid");
    let c = &loaded.config;
    assert_eq!(c.restapi.connect_address.to_string(), "10.244.0.5:8008");
    assert_eq!(c.postgresql.connect_address.to_string(), "10.244.0.5:5432");
    // The file holds only the password; the username comes from the environment.
    assert_eq!(c.postgresql.authentication.superuser.username, "postgres");
    assert_eq!(
        c.postgresql.authentication.superuser.password.as_deref(),
        Some("zalando")
    );
    assert_eq!(c.bootstrap.initdb.len(), 5);
    assert_eq!(
        c.bootstrap.initdb[4],
        ToolOption::Flag("data-checksums".into())
    );
    assert_eq!(c.bootstrap.initdb[0].to_arg(), "--auth-host=md5");
    assert_eq!(
        c.bootstrap.dcs.postgresql.pg_hba.as_ref().map(Vec::len),
        Some(3)
    );
}

/// PATRONI_CONFIGURATION holds the whole document; other variables are ignored with warnings.
#[test]
fn configuration_variable_replaces_the_environment() {
    let document = std::fs::read_to_string(fixture("postgres0.yml")).expect("fixture");
    let env = Environment::new()
        .with_var("PATRONI_CONFIGURATION", document)
        .with_var("PATRONI_NAME", "ignored");
    let loaded = load(None, &env).expect("valid");
    assert_eq!(loaded.config.name, "postgresql0");
    assert_eq!(loaded.origin, Origin::ConfigurationVariable);
    assert_eq!(loaded.warnings.len(), 1);
}
