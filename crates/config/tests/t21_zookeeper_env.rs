//! A member configured for ZooKeeper from the environment alone, as Patroni's Docker images do
//! (`PATRONI_ZOOKEEPER_HOSTS`).

use patroni_config::{DcsConfig, Environment, LoadError, load};

/// Everything but the DCS, from the environment.
fn member_env() -> Environment {
    Environment::new()
        .with_var("PATRONI_SCOPE", "demo")
        .with_var("PATRONI_NAME", "m0")
        .with_var("PATRONI_RESTAPI_LISTEN", "10.0.0.1:8008")
        .with_var("PATRONI_RESTAPI_CONNECT_ADDRESS", "10.0.0.1:8008")
        .with_var("PATRONI_POSTGRESQL_LISTEN", "10.0.0.1:5432")
        .with_var("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "10.0.0.1:5432")
        .with_var("PATRONI_POSTGRESQL_DATA_DIR", "/var/lib/postgresql/data")
        .with_var("PATRONI_SUPERUSER_USERNAME", "postgres")
        .with_var("PATRONI_REPLICATION_USERNAME", "standby")
}

/// `PATRONI_ZOOKEEPER_HOSTS` as a comma string or a YAML list, and `PATRONI_NAMESPACE`, make
/// the typed `zookeeper` section.
#[test]
fn zookeeper_hosts_come_from_the_environment() {
    for hosts in ["zk1:2181,zk2", "['zk1:2181', 'zk2']"] {
        let env = member_env()
            .with_var("PATRONI_ZOOKEEPER_HOSTS", hosts)
            .with_var("PATRONI_NAMESPACE", "/db/");
        let loaded = load(None, &env).expect("valid configuration");
        let DcsConfig::Zookeeper(z) = &loaded.config.dcs else {
            panic!("zookeeper DCS: {:?}", loaded.config.dcs)
        };
        assert_eq!(z.hosts, ["zk1:2181", "zk2:2181"], "{hosts}");
        assert_eq!(z.base_path("demo"), "/db/demo");
    }
}

/// `PATRONI_ZOOKEEPER_SET_ACLS` is refused by name, not ignored.
#[test]
fn zookeeper_acls_from_the_environment_are_refused() {
    let env = member_env()
        .with_var("PATRONI_ZOOKEEPER_HOSTS", "zk1:2181")
        .with_var("PATRONI_ZOOKEEPER_SET_ACLS", "{admin: [ALL]}");
    let Err(LoadError::Invalid(invalid)) = load(None, &env) else {
        panic!("set_acls must be refused")
    };
    let shown: Vec<String> = invalid.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "zookeeper.set_acls: ACLs on Patroni's znodes (set_acls) are not supported by patroni-rs yet"
        ]
    );
}
