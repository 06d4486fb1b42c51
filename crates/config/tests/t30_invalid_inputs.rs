//! A table of invalid configurations, each with the exact errors expected.

use patroni_config::{Config, Environment, LoadError, load};
use serde_json::{Value, json};

/// A valid Kubernetes member configuration that each case patches.
fn base() -> Value {
    json!({
        "name": "pg-0",
        "scope": "demo",
        "restapi": {"listen": "0.0.0.0:8008", "connect_address": "10.0.0.1:8008"},
        "kubernetes": {"labels": {"application": "patroni"}},
        "bootstrap": {"dcs": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10}},
        "postgresql": {
            "listen": "0.0.0.0:5432",
            "connect_address": "10.0.0.1:5432",
            "data_dir": "/data",
            "authentication": {
                "superuser": {"username": "postgres", "password": "secret"},
                "replication": {"username": "standby", "password": "secret"},
            },
        },
    })
}

fn errors_for(patch: Value) -> Vec<String> {
    let mut doc = base();
    if let (Value::Object(doc), Value::Object(patch)) = (&mut doc, patch) {
        patroni_config::source::patch(doc, patch);
    }
    match Config::from_value(&doc) {
        Ok(_) => Vec::new(),
        Err(invalid) => invalid.errors.iter().map(ToString::to_string).collect(),
    }
}

/// The base configuration itself is valid.
#[test]
fn base_is_valid() {
    assert_eq!(errors_for(json!({})), Vec::<String>::new());
}

/// Each invalid input yields exactly the expected errors, located by YAML path.
#[test]
fn each_invalid_input_reports_exact_errors() {
    let cases: Vec<(Value, &[&str])> = vec![
        (json!({"name": null}), &["name: missing required setting"]),
        (json!({"name": ""}), &["name: must not be empty"]),
        (json!({"scope": null}), &["scope: missing required setting"]),
        (
            json!({"scope": ["a"]}),
            &["scope: expected a string, got [\"a\"]"],
        ),
        (
            json!({"bootstrap": {"dcs": {"ttl": "abc"}}}),
            &["bootstrap.dcs.ttl: expected an integer, got \"abc\""],
        ),
        (
            json!({"bootstrap": {"dcs": {"ttl": "30s"}}}),
            &["bootstrap.dcs.ttl: expected an integer, got \"30s\""],
        ),
        (
            json!({"bootstrap": {"dcs": {"maximum_lag_on_failover": "lots"}}}),
            &["bootstrap.dcs.maximum_lag_on_failover: expected an integer ≥ 0, got \"lots\""],
        ),
        (
            json!({"bootstrap": {"dcs": {"synchronous_mode": "sometimes"}}}),
            &[
                "bootstrap.dcs.synchronous_mode: expected a boolean or \"quorum\", got \"sometimes\"",
            ],
        ),
        (
            json!({"bootstrap": {"dcs": {"member_slots_ttl": "1 fortnight"}}}),
            &[
                "bootstrap.dcs.member_slots_ttl: expected an integer ≥ 0 (in s, or with a unit such as 30min), got \"1 fortnight\"",
            ],
        ),
        (
            json!({"bootstrap": {"dcs": {"standby_cluster": {"primary_slot_name": "x"}}}}),
            &[
                "bootstrap.dcs.standby_cluster: missing required setting: one of host, port, restore_command",
            ],
        ),
        (
            json!({"bootstrap": {"dcs": {"postgresql": {"parameters": {"max_connections": 0}}}}}),
            &[
                "bootstrap.dcs.postgresql.parameters.max_connections: expected an integer between 1 and 262143, got 0",
            ],
        ),
        (
            json!({"bootstrap": {"initdb": [{"pgdata": "/x"}, "data-checksums"]}}),
            &["bootstrap.initdb.0: option \"pgdata\" is set by Patroni and cannot be configured"],
        ),
        (
            json!({"bootstrap": {"method": "restore"}}),
            &["bootstrap.restore: missing required setting"],
        ),
        (
            json!({"restapi": null}),
            &["restapi: missing required setting"],
        ),
        (
            json!({"restapi": {"listen": "8008"}}),
            &["restapi.listen: expected \"host:port\" (port 1-65535), got \"8008\""],
        ),
        (
            json!({"restapi": {"connect_address": null}}),
            &["restapi.connect_address: missing required setting"],
        ),
        (
            json!({"restapi": {"connect_address": ":8008"}}),
            &["restapi.connect_address: expected \"host:port\" (port 1-65535), got \":8008\""],
        ),
        (
            json!({"restapi": {"verify_client": "maybe"}}),
            &[
                "restapi.verify_client: expected one of \"none\", \"optional\", \"required\", got \"maybe\"",
            ],
        ),
        (
            json!({"restapi": {"request_queue_size": 5000}}),
            &["restapi.request_queue_size: expected an integer between 0 and 4096, got 5000"],
        ),
        (
            json!({"restapi": {"authentication": {"username": "u"}}}),
            &["restapi.authentication.password: missing required setting"],
        ),
        (
            json!({"postgresql": {"data_dir": null}}),
            &["postgresql.data_dir: missing required setting"],
        ),
        (
            json!({"postgresql": {"data_dir": ""}}),
            &["postgresql.data_dir: must not be empty"],
        ),
        (
            json!({"postgresql": {"listen": "*,127.0.0.1:5432"}}),
            &[
                "postgresql.listen: expected \"*\" alone rather than in a list of hosts, got \"*,127.0.0.1:5432\"",
            ],
        ),
        (
            json!({"postgresql": {"listen": "127.0.0.1"}}),
            &[
                "postgresql.listen: expected \"host[,host...]:port\" (port 1-65535), got \"127.0.0.1\"",
            ],
        ),
        (
            json!({"postgresql": {"authentication": {"replication": null}}}),
            &["postgresql.authentication.replication: missing required setting"],
        ),
        (
            json!({"postgresql": {"authentication": {"superuser": {"password": {"a": 1}}}}}),
            &["postgresql.authentication.superuser.password: expected a string, got <redacted>"],
        ),
        (
            json!({"postgresql": {"parameters": {"shared_preload_libraries": ["a"]}}}),
            &[
                "postgresql.parameters.shared_preload_libraries: expected a string, number or boolean, got [\"a\"]",
            ],
        ),
        (
            json!({"kubernetes": {"use_endpoints": "maybe"}}),
            &[
                "kubernetes.use_endpoints: expected a boolean (true/false, on/off, yes/no, 1/0), got \"maybe\"",
            ],
        ),
        (
            json!({"kubernetes": {"labels": null}}),
            &["kubernetes.labels: missing required setting"],
        ),
        (
            json!({"kubernetes": {"labels": ["a"]}}),
            &["kubernetes.labels: expected a mapping of strings, got [\"a\"]"],
        ),
        (
            json!({"kubernetes": {"labels": {"app": {"x": 1}}}}),
            &["kubernetes.labels.app: expected a string, got {\"x\":1}"],
        ),
        (
            json!({"kubernetes": {"ports": [{"name": "pg", "port": 70000}]}}),
            &["kubernetes.ports.0.port: expected an integer between 1 and 65535, got 70000"],
        ),
        (
            json!({"kubernetes": {"ports": [{"port": 5432}, {"name": "b", "port": 5433}]}}),
            &["kubernetes.ports.0.name: missing required setting (several ports need names)"],
        ),
        (
            json!({"kubernetes": {"pod_ip": "10.0.0"}}),
            &["kubernetes.pod_ip: expected an IPv4 or IPv6 address, got \"10.0.0\""],
        ),
        (
            json!({"kubernetes": {"retriable_http_codes": "401,abc"}}),
            &[
                "kubernetes.retriable_http_codes: expected an integer between 100 and 599, got \"abc\"",
            ],
        ),
        (
            json!({"kubernetes": {"namespace": "Not_Valid"}}),
            &["kubernetes.namespace: \"Not_Valid\" is not a valid Kubernetes namespace name"],
        ),
        (
            json!({"namespace": "/service/"}),
            &["namespace: \"/service/\" is not a valid Kubernetes namespace name"],
        ),
        (
            json!({"scope": "Batman_DB"}),
            &[
                "scope: \"Batman_DB\" cannot be used with Kubernetes: it must be a valid label value and object name (at most 63 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)",
            ],
        ),
        (
            json!({"kubernetes": null}),
            &[
                "no DCS section found; expected exactly one of consul, etcd, etcd3, exhibitor, kubernetes, raft, zookeeper",
            ],
        ),
        (
            json!({"etcd3": {"hosts": "127.0.0.1:2379"}}),
            &["expected exactly one DCS section, found etcd3, kubernetes"],
        ),
        (
            json!({"kubernetes": null, "etcd3": {"protocol": "https"}}),
            &["etcd3: missing required setting: one of host, hosts, srv, srv_suffix, url, proxy"],
        ),
        (
            json!({"tags": {"failover_priority": -1}}),
            &["tags.failover_priority: expected an integer ≥ 0, got -1"],
        ),
        (
            json!({"tags": {"nofailover": "sometimes"}}),
            &[
                "tags.nofailover: expected a boolean (true/false, on/off, yes/no, 1/0), got \"sometimes\"",
            ],
        ),
        (
            json!({"watchdog": {"mode": "sometimes"}}),
            &[
                "watchdog.mode: expected one of \"off\", \"automatic\", \"required\", got \"sometimes\"",
            ],
        ),
        (
            json!({"watchdog": {"driver": "testing"}}),
            &["watchdog.driver: expected \"default\" (the Linux watchdog device), got \"testing\""],
        ),
        (
            json!({"watchdog": {"safety_margin": -2}}),
            &["watchdog.safety_margin: expected an integer ≥ -1, got -2"],
        ),
        (
            json!({"log": {"level": "verbose"}}),
            &[
                "log.level: expected one of \"DEBUG\", \"INFO\", \"WARN\", \"WARNING\", \"ERROR\", \"FATAL\", \"CRITICAL\", got \"verbose\"",
            ],
        ),
        (
            json!({"log": {"mode": 1024}}),
            &["log.mode: expected an integer between 0 and 511, got 1024"],
        ),
        (
            json!({"citus": {"group": -1}}),
            &[
                "citus.group: expected an integer between 0 and 4294967295, got -1",
                "citus.database: missing required setting",
            ],
        ),
        (
            json!({"name": "__patroni_strict_sync_replica_placeholder__"}),
            &[
                "name: must not be \"__patroni_strict_sync_replica_placeholder__\" (reserved by Patroni)",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (patch, expected) in cases {
        let got = errors_for(patch.clone());
        if got != expected {
            failures.push(format!(
                "patch {patch}\n  expected {expected:?}\n  got      {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every problem in a document is reported, section by section, not just the first.
#[test]
fn reports_every_problem_at_once() {
    let mut doc = base();
    if let Value::Object(doc) = &mut doc {
        let Value::Object(patch) = json!({
            "name": null,
            "restapi": {"listen": "8008"},
            "kubernetes": {"use_endpoints": "maybe"},
            "bootstrap": {"dcs": {"ttl": "abc", "loop_wait": 0}},
            "postgresql": {"data_dir": null},
        }) else {
            unreachable!()
        };
        patroni_config::source::patch(doc, patch);
    }
    let invalid = Config::from_value(&doc).expect_err("invalid");
    let shown: Vec<String> = invalid.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "name: missing required setting",
            "restapi.listen: expected \"host:port\" (port 1-65535), got \"8008\"",
            "kubernetes.use_endpoints: expected a boolean (true/false, on/off, yes/no, 1/0), got \"maybe\"",
            "postgresql.data_dir: missing required setting",
            "bootstrap.dcs.ttl: expected an integer, got \"abc\"",
        ]
    );
}

/// Environment conversion errors and document errors are reported together.
#[test]
fn environment_and_document_errors_are_reported_together() {
    let env = Environment::new()
        .with_var("PATRONI_NAME", "pg-0")
        .with_var("PATRONI_KUBERNETES_USE_ENDPOINTS", "maybe")
        .with_var("PATRONI_KUBERNETES_LABELS", "{}");
    let Err(LoadError::Invalid(invalid)) = load(None, &env) else {
        panic!("expected invalid")
    };
    let shown: Vec<String> = invalid.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "PATRONI_KUBERNETES_USE_ENDPOINTS: expected a boolean (true/false, on/off, yes/no, 1/0), got \"maybe\"",
            "scope: missing required setting",
            "restapi: missing required setting",
            "postgresql: missing required setting",
        ]
    );
}

/// Unknown settings and timing adjustments are warnings, never errors.
#[test]
fn unknown_settings_and_adjustments_are_warnings() {
    let mut doc = base();
    if let Value::Object(doc) = &mut doc {
        let Value::Object(patch) = json!({
            "colour": "blue",
            "kubernetes": {"use_endpoint": true},
            "bootstrap": {"dcs": {"ttl": 25, "retry_timeout": "2"}, "users": {"admin": {"password": "x"}}},
            "tags": {"nofailover": true, "failover_priority": 3},
        }) else {
            unreachable!()
        };
        patroni_config::source::patch(doc, patch);
    }
    let (config, warnings) = Config::from_value(&doc).expect("valid");
    assert_eq!(config.bootstrap.dcs.loop_wait, 10);
    assert_eq!(config.bootstrap.dcs.retry_timeout, 2);
    let shown: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "colour: unknown setting; ignored",
            "kubernetes.use_endpoint: unknown setting; ignored",
            "bootstrap.dcs.retry_timeout: retry_timeout=2 is below Patroni's minimum of 3 (Patroni raises it); patroni-rs keeps it: a short lease, safe because the primary is fenced before the lease can expire (docs/lease.md). Python Patroni members of this cluster use 3",
            "bootstrap.users: user creation was removed in Patroni 4.0; ignored (create users in a post_bootstrap script)",
            "tags: Conflicting configuration between nofailover: True and failover_priority: 3. Defaulting to nofailover: True",
        ]
    );
    assert!(config.tags.is_nofailover());
}

/// Python logging's queue size and traceback switch are validated, then said to have no effect.
#[test]
fn log_settings_without_effect_are_warned_about() {
    let mut doc = base();
    if let Value::Object(doc) = &mut doc {
        let Value::Object(patch) =
            json!({"log": {"max_queue_size": 500, "traceback_level": "DEBUG"}})
        else {
            unreachable!()
        };
        patroni_config::source::patch(doc, patch);
    }
    let (_, warnings) = Config::from_value(&doc).expect("valid");
    let shown: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert!(
        shown
            .iter()
            .any(|w| w.starts_with("log.max_queue_size: has no effect")),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|w| w.starts_with("log.traceback_level: has no effect")),
        "{shown:?}"
    );
    let mut bad = base();
    if let Value::Object(doc) = &mut bad {
        let Value::Object(patch) = json!({"log": {"max_queue_size": "lots"}}) else {
            unreachable!()
        };
        patroni_config::source::patch(doc, patch);
    }
    assert!(Config::from_value(&bad).is_err(), "still validated");
}
