//! Issue #17, the Helm chart's part: `etcd.*` and `zookeeper.*` of `deploy/helm/patroni-rs`
//! on the lab's real node, with the lab's own images of the stores (no registry there:
//! `patroni_testlab::etcd_image`, `zookeeper_image`) in place of the upstream ones.
//! - rendering: with every value set (`data/helm-all-values.yaml`) plus etcd or ZooKeeper,
//!   the API server accepts every object (server-side dry run); the members get no
//!   Kubernetes DCS, the store's `PATRONI_*` variables (by default the deployed members'
//!   stable names), the role-labelling callback, and a Role that may only patch pods; the
//!   deployed store names all its members;
//! - etcd (`kubernetes.dcs.enable=false, etcd.enable=true, etcd.deployChart=true`): 3 etcd
//!   members and 3 PostgreSQL members formed, one primary labelled by `patroni-k8s-callback`;
//!   `helm test` writes through the primary Service and reads through the replicas'; our
//!   `patronictl list` in a member pod shows the cluster; etcd holds Patroni's keys
//!   (`/service/<scope>/leader` names the primary); deleting the primary pod (it hands over):
//!   a replica takes over, the labels and the Services follow, the deleted member rejoins as
//!   a replica; deleting the new primary's pod without grace: a primary again (a replica, or
//!   the recreated pod when it returns within ttl with its lock, as in Patroni), writable
//!   through the primary Service, named by the leader key;
//! - ZooKeeper (`zookeeper.enable=true, zookeeper.deployChart=true`): the same, with the
//!   leader znode read by the server jar's own client.

#![allow(
    clippy::disallowed_types,
    reason = "the test harness measures real elapsed time (std::time::Instant)"
)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::helm::{chart, helm, helm_test, kubectl, ok};
use common::init_tracing;
use common::node::{
    Roles, node_with_image, psql_soon, release_passwords, root, superuser_password,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use patroni_testlab::{Lab, NodeInfo, StoreImage, import_image, wait_until};

/// Bootstrap and two base backups, one pod after the other, beside the store's start.
const FORM: Duration = Duration::from_secs(420);
/// The store's members Ready (all start at once).
const STORE_READY: Duration = Duration::from_secs(180);
/// ttl + loop_wait of the defaults, plus the pod's restart.
const TAKEOVER: Duration = Duration::from_secs(90);

/// The two installs share two cores: one at a time.
static INSTALLS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The objects of a multi-document manifest.
fn docs(yaml: &str) -> Vec<serde_json::Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .filter(|v: &serde_json::Value| !v.is_null())
        .collect()
}

/// The object of `kind` named `name`.
fn find<'a>(docs: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// `name: value` of the first container's plain variables.
fn env(sts: &serde_json::Value) -> BTreeMap<String, String> {
    sts["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// `helm template` of `release` in `ns` with `args`; its objects.
fn render(lab: &Lab, release: &str, ns: &str, args: &[&str]) -> (String, Vec<serde_json::Value>) {
    let yaml = ok(
        "helm template",
        helm(lab)
            .args(["template", release, "--namespace", ns])
            .arg(chart())
            .args(args),
    );
    let objects = docs(&yaml);
    (yaml, objects)
}

/// With etcd or ZooKeeper as the DCS every object validates, the members get the store's
/// variables, no Kubernetes DCS, the labelling callback and a Role that only patches pods, and
/// the deployed store lists every member by its stable name.
#[tokio::test]
async fn chart_renders_etcd_and_zookeeper_and_validates() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t82-render").await.expect("namespace");
    let all_values = root().join("crates/e2e/tests/data/helm-all-values.yaml");
    let all = all_values.to_str().expect("UTF-8 path");
    // Everything set, with each store as the DCS: the API server accepts every object.
    let not_k8s =
        "kubernetes.dcs.enable=false,kubernetes.configmaps.enable=true,kubernetes.tmpRoleLabel=";
    for (store, set, dcs_env) in [
        (
            "etcd",
            format!("{not_k8s},etcd.enable=true,etcd.deployChart=true"),
            &[
                ("PATRONI_ETCD3_HOSTS", "etcd-a:2379,etcd-b:2379"),
                ("PATRONI_ETCD3_SRV", "etcd.example.org"),
            ][..],
        ),
        (
            "zookeeper",
            format!("{not_k8s},zookeeper.enable=true,zookeeper.deployChart=true"),
            &[("PATRONI_ZOOKEEPER_HOSTS", "zk-a:2181,zk-b")][..],
        ),
    ] {
        let (yaml, objects) = render(lab, "all", &ns.name, &["-f", all, "--set", &set]);
        let file = std::env::temp_dir().join(format!("t82-{store}-{}.yaml", std::process::id()));
        std::fs::write(&file, &yaml).expect("write the rendering");
        let applied = ok(
            "server-side dry run",
            kubectl(lab)
                .args(["apply", "--dry-run=server", "-n", &ns.name, "-f"])
                .arg(&file),
        );
        let _ = std::fs::remove_file(&file);
        for object in [
            format!("statefulset.apps/all-values-{store}"),
            format!("service/all-values-{store}"),
            format!("service/all-values-{store}-headless"),
            format!("poddisruptionbudget.policy/all-values-{store}"),
            "statefulset.apps/all-values".to_owned(),
            "role.rbac.authorization.k8s.io/all-values".to_owned(),
        ] {
            assert!(
                applied.contains(&object),
                "{object} not validated:\n{applied}"
            );
        }
        let members = env(find(&objects, "StatefulSet", "all-values"));
        for (name, value) in dcs_env {
            assert_eq!(
                members.get(*name).map(String::as_str),
                Some(*value),
                "{name}"
            );
        }
        assert!(
            !members.keys().any(|k| k.starts_with("PATRONI_KUBERNETES")),
            "{members:?}"
        );
        let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            find(&objects, "ConfigMap", "all-values")["data"]["50-helm.yml"]
                .as_str()
                .expect("50-helm.yml"),
        )
        .expect("50-helm.yml YAML");
        assert!(config.get("kubernetes").is_none(), "{config:?}");
        let callback = "/usr/local/bin/patroni-k8s-callback --role-label spilo-role \
                        --leader-label-value master --follower-label-value replica \
                        --standby-leader-label-value standby-leader";
        for cb in ["on_start", "on_stop", "on_restart", "on_role_change"] {
            assert_eq!(
                config["postgresql"]["callbacks"][cb].as_str(),
                Some(callback),
                "{cb}"
            );
        }
        assert_eq!(
            find(&objects, "Role", "all-values")["rules"],
            serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}])
        );
    }

    // By default the members use every deployed member by its stable name.
    let ns_name = "db";
    let member = |store: &str, i: u32, port: u16| {
        format!(
            "pg-patroni-rs-{store}-{i}.pg-patroni-rs-{store}-headless.{ns_name}.svc.cluster.local:{port}"
        )
    };
    let (_, objects) = render(
        lab,
        "pg",
        ns_name,
        &[
            "--set",
            "kubernetes.dcs.enable=false,etcd.enable=true,etcd.deployChart=true",
        ],
    );
    let hosts: Vec<String> = (0..3).map(|i| member("etcd", i, 2379)).collect();
    assert_eq!(
        env(find(&objects, "StatefulSet", "pg-patroni-rs"))["PATRONI_ETCD3_HOSTS"],
        hosts.join(",")
    );
    let etcd_args = &find(&objects, "StatefulSet", "pg-patroni-rs-etcd")["spec"]["template"]["spec"]
        ["containers"][0]["args"];
    let cluster: Vec<String> = (0..3)
        .map(|i| format!("pg-patroni-rs-etcd-{i}=http://{}", member("etcd", i, 2380)))
        .collect();
    assert!(
        etcd_args
            .as_array()
            .expect("args")
            .contains(&serde_json::json!(format!(
                "--initial-cluster={}",
                cluster.join(",")
            ))),
        "{etcd_args}"
    );
    let (_, objects) = render(
        lab,
        "pg",
        ns_name,
        &[
            "--set",
            "kubernetes.dcs.enable=false,zookeeper.enable=true,zookeeper.deployChart=true,zookeeper.replicaCount=5",
        ],
    );
    let hosts: Vec<String> = (0..5).map(|i| member("zookeeper", i, 2181)).collect();
    assert_eq!(
        env(find(&objects, "StatefulSet", "pg-patroni-rs"))["PATRONI_ZOOKEEPER_HOSTS"],
        hosts.join(",")
    );
    let zoo_cfg = find(&objects, "ConfigMap", "pg-patroni-rs-zookeeper")["data"]["zoo.cfg"]
        .as_str()
        .expect("zoo.cfg");
    for i in 0..5 {
        let line = format!(
            "server.{}={}",
            i + 1,
            member("zookeeper", i, 2888).replace(":2888", ":2888:3888")
        );
        assert!(zoo_cfg.lines().any(|l| l == line), "{line} in\n{zoo_cfg}");
    }
}

/// The store's image in the node, built (once per recipe) and imported (once per process).
async fn import_store_image(
    node: &NodeInfo,
    build: fn() -> patroni_testlab::Result<StoreImage>,
) -> StoreImage {
    let node = node.clone();
    tokio::task::spawn_blocking(move || {
        let image = build().expect("the store's image");
        import_image(&node, &image.archive, image.name).expect("import");
        image
    })
    .await
    .expect("join")
}

/// Waits until `n` pods of `selector` are Ready.
async fn ready_pods(client: &kube::Client, ns: &str, selector: &str, n: usize) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_until(
        STORE_READY,
        format!("{n} pods {selector} Ready"),
        || async {
            let list = pods
                .list(&ListParams::default().labels(selector))
                .await
                .ok()?;
            let ready = list
                .items
                .iter()
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count();
            (ready == n).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// `kubectl exec POD -- ARGS` in `ns`; its stdout.
fn exec(lab: &Lab, ns: &str, pod: &str, args: &[&str]) -> String {
    ok(
        &format!("kubectl exec {pod} -- {}", args.join(" ")),
        kubectl(lab).args(["exec", "-n", ns, pod, "--"]).args(args),
    )
}

/// Our `patronictl list -f json` in a member pod: `member: role`.
fn patronictl_list(lab: &Lab, ns: &str, pod: &str) -> BTreeMap<String, String> {
    let out = exec(lab, ns, pod, &["patronictl", "list", "-f", "json"]);
    let members: Vec<serde_json::Value> = serde_json::from_str(&out).expect("JSON");
    members
        .iter()
        .map(|m| {
            (
                m["Member"].as_str().unwrap_or_default().to_owned(),
                m["Role"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// What one store's scenario needs.
struct Store {
    /// `etcd` or `zookeeper`: the chart's values and the objects' suffix.
    name: &'static str,
    /// The release.
    release: &'static str,
    /// Builds the store's image.
    image: fn() -> patroni_testlab::Result<StoreImage>,
    /// `kubectl exec` into the store's first pod, printing the leader key's value.
    leader_key: fn(&Lab, &str, &str, &str) -> String,
    /// etcd only: the members find the deployed etcd by DNS SRV discovery (`etcd.discovery`,
    /// the cluster DNS's records of the headless Service's named ports) instead of its
    /// members' names; the scenario ends once the cluster is formed and checked.
    srv_discovery: bool,
}

/// etcd's `/service/<scope>/leader`, read with the image's etcdctl.
fn etcd_leader_key(lab: &Lab, ns: &str, pod: &str, scope: &str) -> String {
    let keys = exec(
        lab,
        ns,
        pod,
        &[
            "etcdctl",
            "get",
            "--prefix",
            "--keys-only",
            &format!("/service/{scope}/"),
        ],
    );
    for key in ["leader", "config", "initialize", "status", "members/"] {
        assert!(
            keys.lines()
                .any(|k| k.starts_with(&format!("/service/{scope}/{key}"))),
            "/service/{scope}/{key} not in:\n{keys}"
        );
    }
    exec(
        lab,
        ns,
        pod,
        &[
            "etcdctl",
            "get",
            "--print-value-only",
            &format!("/service/{scope}/leader"),
        ],
    )
    .trim()
    .to_owned()
}

/// ZooKeeper's `/service/<scope>/leader`, read with the server jar's own client.
fn zookeeper_leader_key(lab: &Lab, ns: &str, pod: &str, scope: &str) -> String {
    let cli = |cmd: &str| {
        exec(
            lab,
            ns,
            pod,
            &[
                "java",
                "-cp",
                "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-nop.jar",
                "org.apache.zookeeper.ZooKeeperMain",
                "-server",
                "127.0.0.1:2181",
                cmd,
                &format!(
                    "/service/{scope}{}",
                    if cmd == "ls" { "" } else { "/leader" }
                ),
            ],
        )
    };
    let children = cli("ls");
    for key in ["leader", "config", "initialize", "status", "members"] {
        assert!(
            children.contains(key),
            "/service/{scope}/{key} not in: {children}"
        );
    }
    let value = cli("get");
    value
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_default()
        .to_owned()
}

/// Installs the chart with `store` as the DCS (deployed by the chart), forms, checks and
/// fails over.
async fn install_and_fail_over(store: Store) {
    let _one = INSTALLS.lock().await;
    let lab = Lab::shared();
    let node = node_with_image(lab).await;
    let image = import_store_image(&node, store.image).await;
    let ns = lab
        .namespace(&format!("t82-{}", store.release))
        .await
        .expect("namespace");
    let (client, ns_name) = (&ns.client, ns.name.as_str());
    let release = store.release;
    let fullname = format!("{release}-patroni-rs");
    let selector =
        format!("app.kubernetes.io/instance={release},app.kubernetes.io/name=patroni-rs");
    let roles = Roles {
        selector: &selector,
        label: "role",
        primary: "primary",
        replica: "replica",
    };
    let s = store.name;

    tracing::info!("--- helm install with {s} deployed by the chart, 3 members");
    let started = Instant::now();
    ok(
        "helm install",
        helm(lab)
            .args(["install", release])
            .arg(chart())
            .args(["--namespace", ns_name, "--set"])
            .arg(format!(
                "replicaCount=3,kubernetes.dcs.enable=false,{s}.enable=true,{s}.deployChart=true,\
                 {s}.image.repository={},{s}.image.tag={}{}",
                image.name,
                image.tag,
                if store.srv_discovery {
                    format!(",etcd.discovery={fullname}-etcd-headless.{ns_name}.svc.cluster.local")
                } else {
                    String::new()
                }
            )),
    );
    if store.srv_discovery {
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns_name);
        let members =
            serde_json::to_value(sets.get(&fullname).await.expect("StatefulSet")).expect("JSON");
        let env = env(&members);
        assert!(env.contains_key("PATRONI_ETCD3_SRV"), "{env:?}");
        assert!(!env.contains_key("PATRONI_ETCD3_HOSTS"), "{env:?}");
    }
    ready_pods(
        client,
        ns_name,
        &format!("app.kubernetes.io/instance={release},app.kubernetes.io/name=patroni-rs-{s}"),
        3,
    )
    .await;
    println!(
        "{s}: 3 {s} members Ready {:.1?} after helm install",
        started.elapsed()
    );
    let primary = roles.formed(client, ns_name, 3, FORM, "3 members").await;
    println!(
        "{s}: 3 PostgreSQL members formed {:.1?} after helm install, primary {primary}",
        started.elapsed()
    );

    tracing::info!("--- helm test, patronictl list, Patroni's keys in {s}");
    helm_test(lab, ns_name, release);
    let listed = patronictl_list(lab, ns_name, &primary);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(
        listed.get(&primary).map(String::as_str),
        Some("Leader"),
        "{listed:?}"
    );
    let store_pod = format!("{fullname}-{s}-0");
    assert_eq!(
        (store.leader_key)(lab, ns_name, &store_pod, &fullname),
        primary
    );
    if store.srv_discovery {
        ok(
            "helm uninstall",
            helm(lab).args(["uninstall", release, "--namespace", ns_name, "--wait"]),
        );
        return;
    }

    tracing::info!(
        "--- the primary pod deleted: it hands over, a replica takes over, labels and Services follow"
    );
    let password = superuser_password(&release_passwords(client, ns_name, &fullname).await);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns_name);
    // A graceful delete (SIGTERM): the agent stops Postgres and releases the lock, a replica
    // wins the race. (Without grace the kubelet gives the agent 2 s before SIGKILL; a lock left
    // behind is still the recreated pod's own when it returns within ttl, and Patroni then keeps
    // it: that case is the last phase.)
    let deleted = Instant::now();
    pods.delete(&primary, &DeleteParams::default())
        .await
        .expect("delete the primary");
    let new_primary = roles.takeover(client, ns_name, &primary, TAKEOVER).await;
    println!(
        "{s}: primary pod {primary} deleted, {new_primary} labelled primary {:.1?} later",
        deleted.elapsed()
    );
    let conn = format!("host={fullname}.{ns_name}.svc.cluster.local user=postgres dbname=postgres");
    let write = |table: &'static str| {
        let (client, password, conn) = (client.clone(), password.clone(), conn.clone());
        async move {
            let sql = format!("create table if not exists {table}(); select pg_is_in_recovery()");
            let wrote = psql_soon(&client, ns_name, &password, &["-Atqc", &sql, &conn])
                .await
                .unwrap_or_else(|e| panic!("write through the primary Service: {e}"));
            assert_eq!(wrote, "f", "the primary Service reached a replica");
        }
    };
    write("after_takeover").await;
    println!(
        "{s}: a write through the primary Service succeeded {:.1?} after the delete",
        deleted.elapsed()
    );
    roles
        .formed(client, ns_name, 3, FORM, "the deleted pod rejoined")
        .await;
    let listed = patronictl_list(lab, ns_name, &new_primary);
    assert_eq!(
        listed.get(&new_primary).map(String::as_str),
        Some("Leader"),
        "{listed:?}"
    );
    assert_eq!(
        listed.get(&primary).map(String::as_str),
        Some("Replica"),
        "{listed:?}"
    );
    assert_eq!(
        (store.leader_key)(lab, ns_name, &store_pod, &fullname),
        new_primary
    );
    helm_test(lab, ns_name, release);

    tracing::info!(
        "--- the primary pod deleted without grace: a primary again, the Service follows"
    );
    let killed = Instant::now();
    pods.delete(&new_primary, &DeleteParams::default().grace_period(0))
        .await
        .expect("delete the primary");
    let again = roles
        .formed(
            client,
            ns_name,
            3,
            FORM,
            "a primary again after a hard delete",
        )
        .await;
    write("after_hard_delete").await;
    println!(
        "{s}: primary pod {new_primary} deleted without grace: {again} primary, 3 members Ready \
         and a write through the primary Service {:.1?} later ({})",
        killed.elapsed(),
        if again == new_primary {
            "the recreated pod kept its lock"
        } else {
            "a replica took over"
        }
    );
    assert_eq!(
        (store.leader_key)(lab, ns_name, &store_pod, &fullname),
        again
    );
    ok(
        "helm uninstall",
        helm(lab).args(["uninstall", release, "--namespace", ns_name, "--wait"]),
    );
}

/// Members on the etcd the chart deploys form, keep Patroni's keys there, and the primary
/// Service follows the primary through deletions of its pod.
#[tokio::test]
async fn etcd_deployed_by_the_chart_forms_and_fails_over() {
    init_tracing();
    install_and_fail_over(Store {
        name: "etcd",
        release: "pe",
        image: patroni_testlab::etcd_image,
        leader_key: etcd_leader_key,
        srv_discovery: false,
    })
    .await;
}

/// Members told only `etcd.discovery` find the deployed etcd through DNS SRV records and form.
#[tokio::test]
async fn etcd_found_by_dns_srv_discovery_forms() {
    init_tracing();
    install_and_fail_over(Store {
        name: "etcd",
        release: "ps",
        image: patroni_testlab::etcd_image,
        leader_key: etcd_leader_key,
        srv_discovery: true,
    })
    .await;
}

/// The same on the ZooKeeper ensemble the chart deploys.
#[tokio::test]
async fn zookeeper_deployed_by_the_chart_forms_and_fails_over() {
    init_tracing();
    install_and_fail_over(Store {
        name: "zookeeper",
        release: "pz",
        image: patroni_testlab::zookeeper_image,
        leader_key: zookeeper_leader_key,
        srv_discovery: false,
    })
    .await;
}
