//! `PATRONI_ETCD3_*` alone configures the etcd v3 DCS, as in Patroni's docker-compose example
//! (`PATRONI_ETCD3_HOSTS`, credentials, TLS files), `PATRONI_NAMESPACE` is the key prefix, and
//! `PATRONI_ETCD3_SRV`/`PATRONI_ETCD3_SRV_SUFFIX` turn on DNS SRV discovery.

use std::path::PathBuf;

use patroni_config::{DcsConfig, Environment, SrvDiscovery, load};

/// A member configured only from the environment.
fn env() -> Environment {
    Environment::new()
        .with_var("PATRONI_NAME", "patroni1")
        .with_var("PATRONI_SCOPE", "demo")
        .with_var("PATRONI_NAMESPACE", "/pg")
        .with_var("PATRONI_RESTAPI_LISTEN", "0.0.0.0:8008")
        .with_var("PATRONI_RESTAPI_CONNECT_ADDRESS", "10.0.0.1:8008")
        .with_var("PATRONI_POSTGRESQL_LISTEN", "0.0.0.0:5432")
        .with_var("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "10.0.0.1:5432")
        .with_var("PATRONI_POSTGRESQL_DATA_DIR", "/data")
        .with_var("PATRONI_SUPERUSER_USERNAME", "postgres")
        .with_var("PATRONI_REPLICATION_USERNAME", "standby")
        .with_var(
            "PATRONI_ETCD3_HOSTS",
            "'etcd1:2379','etcd2:2379','etcd3:2379'",
        )
        .with_var("PATRONI_ETCD3_PROTOCOL", "https")
        .with_var("PATRONI_ETCD3_USERNAME", "patroni")
        .with_var("PATRONI_ETCD3_PASSWORD", "secret")
        .with_var("PATRONI_ETCD3_CACERT", "/etc/etcd/ca.pem")
        .with_var("PATRONI_ETCD3_CERT", "/etc/etcd/client.pem")
        .with_var("PATRONI_ETCD3_KEY", "/etc/etcd/client-key.pem")
}

/// Every `PATRONI_ETCD3_*` setting lands in the typed section.
#[test]
fn etcd3_environment_is_the_dcs() {
    let loaded = load(None, &env()).expect("valid configuration");
    let DcsConfig::Etcd3(e) = &loaded.config.dcs else {
        panic!("etcd3 DCS, got {:?}", loaded.config.dcs.kind())
    };
    assert_eq!(
        e.endpoints,
        [
            "https://etcd1:2379",
            "https://etcd2:2379",
            "https://etcd3:2379"
        ]
    );
    assert_eq!(
        (e.username.as_deref(), e.password.as_deref()),
        (Some("patroni"), Some("secret"))
    );
    assert_eq!(e.cacert, Some(PathBuf::from("/etc/etcd/ca.pem")));
    assert_eq!(e.cert, Some(PathBuf::from("/etc/etcd/client.pem")));
    assert_eq!(e.key, Some(PathBuf::from("/etc/etcd/client-key.pem")));
    assert_eq!(e.base_path("demo"), "/pg/demo");
}

/// `PATRONI_ETCD3_SRV` and `PATRONI_ETCD3_SRV_SUFFIX` configure DNS SRV discovery, the hosts
/// staying as the fallback (Patroni's precedence).
#[test]
fn etcd3_srv_from_the_environment_is_discovery() {
    let env = env()
        .with_var("PATRONI_ETCD3_SRV", "etcd.example.org")
        .with_var("PATRONI_ETCD3_SRV_SUFFIX", "prod");
    let loaded = load(None, &env).expect("valid configuration");
    let DcsConfig::Etcd3(e) = &loaded.config.dcs else {
        panic!("etcd3 DCS, got {:?}", loaded.config.dcs.kind())
    };
    assert_eq!(
        e.srv,
        Some(SrvDiscovery {
            domain: "etcd.example.org".into(),
            suffix: Some("prod".into())
        })
    );
    assert_eq!(e.endpoints.len(), 3, "the hosts stay as the fallback");
}

/// `PATRONI_ETCD3_SRV_SUFFIX` without a domain (and with nothing else saying where etcd is)
/// is refused, naming the setting.
#[test]
fn etcd3_srv_suffix_alone_is_refused_by_name() {
    let env = Environment::new()
        .with_var("PATRONI_NAME", "patroni1")
        .with_var("PATRONI_SCOPE", "demo")
        .with_var("PATRONI_POSTGRESQL_DATA_DIR", "/data")
        .with_var("PATRONI_ETCD3_SRV_SUFFIX", "prod");
    let Err(patroni_config::LoadError::Invalid(invalid)) = load(None, &env) else {
        panic!("srv_suffix alone does not say where etcd is");
    };
    let errors: Vec<String> = invalid.errors.iter().map(|p| p.to_string()).collect();
    assert!(
        errors.iter().any(|e| e.starts_with("etcd3.srv_suffix:")),
        "{errors:?}"
    );
}
