//! Issue #14: the Helm chart `deploy/helm/patroni-rs`, with Helm built from its Go module,
//! installed on the lab's real node.
//! - static: `helm lint --strict` (Helm 4 and Helm 3, which also renders the same objects); every value of values.yaml is set in
//!   `data/helm-all-values.yaml` and listed in the chart's README; that rendering passes the
//!   API server's validation (server-side dry run); the schema refuses a wrong type, an unknown
//!   key, bad DCS and backup combinations, a `walE.*` alias that disagrees with its `backup.*`
//!   value and values the chart owns, with a message naming them; backups render Patroni's
//!   archive, restore, replica and bootstrap settings and patroni-backup's environment; a PodMonitor only where its CRD is served; the chart's Role grants exactly what
//!   `deploy/rbac` grants for the mode;
//! - defaults (ConfigMaps mode, 5 members): 5 pods Ready, 5 PVCs bound, one primary;
//!   `helm test` (write through the primary Service, read through the replicas', by DNS name);
//!   Python `patronictl list`; deleting the primary fails over and the Service follows; an
//!   upgrade that changes the pod spec rolls every pod with a writer running throughout: no
//!   acknowledged write lost, longest gap printed, same passwords; `helm uninstall` keeps the
//!   PVCs and an install with the same name finds the data;
//! - Endpoints mode with the seed's `spilo-role`/`master` labels and `rbac.create=false` with a
//!   ServiceAccount bound to `deploy/rbac/endpoints-mode.yaml`: formed, the leader's Endpoints
//!   route the primary Service, `helm test` and Python `patronictl list` pass.

#![allow(
    clippy::disallowed_types,
    reason = "the test harness measures real elapsed time (std::time::Instant)"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::helm::{chart, helm, helm_test, kubectl, ok, output};
use common::init_tracing;
use common::node::{
    Roles, apply, node_with_image, psql_soon, release_passwords, root, run_pod, superuser_password,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Endpoints, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use patroni_testlab::{Lab, helm3_binary, wait_until};

/// Bootstrap and up to four base backups, one pod after the other.
const FORM: Duration = Duration::from_secs(420);
/// ttl + loop_wait of the defaults, plus the pod's restart.
const TAKEOVER: Duration = Duration::from_secs(90);

/// The two installs share two cores: one at a time.
static INSTALLS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Dotted names of the leaves of a YAML map (`image.tag`, `affinity`, …).
fn leaves(prefix: &str, value: &serde_yaml_ng::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_yaml_ng::Value::Mapping(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = k.as_str().expect("string keys");
                let name = if prefix.is_empty() {
                    key.to_owned()
                } else {
                    format!("{prefix}.{key}")
                };
                leaves(&name, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

fn yaml_file(path: &std::path::Path) -> serde_yaml_ng::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// The rules of the Role in a multi-document manifest.
fn role_rules(yaml: &str) -> serde_json::Value {
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value: serde_json::Value = serde::Deserialize::deserialize(doc).expect("YAML");
        if value["kind"] == "Role" {
            return value["rules"].clone();
        }
    }
    panic!("no Role in:\n{yaml}")
}

#[tokio::test]
async fn chart_lints_renders_and_validates() {
    init_tracing();
    let lab = Lab::shared();
    ok(
        "helm lint",
        helm(lab).args(["lint", "--strict"]).arg(chart()),
    );

    // Every value is documented and set in the all-values file.
    let mut names = BTreeSet::new();
    leaves("", &yaml_file(&chart().join("values.yaml")), &mut names);
    let mut set = BTreeSet::new();
    let all_values = root().join("crates/e2e/tests/data/helm-all-values.yaml");
    leaves("", &yaml_file(&all_values), &mut set);
    let readme = std::fs::read_to_string(chart().join("README.md")).expect("chart README");
    // A leaf counts as documented when it or a map above it has a row; as set when the file
    // sets it, something under it, or the whole map above it.
    let prefixes = |name: &str| -> Vec<String> {
        let parts: Vec<&str> = name.split('.').collect();
        (1..=parts.len()).map(|i| parts[..i].join(".")).collect()
    };
    for name in &names {
        assert!(
            set.iter().any(|s| s == name
                || s.starts_with(&format!("{name}."))
                || name.starts_with(&format!("{s}."))),
            "{name} is not set in {}",
            all_values.display()
        );
        assert!(
            prefixes(name)
                .iter()
                .any(|p| readme.contains(&format!("`{p}`"))),
            "{name} is not in the chart's README"
        );
    }
    for seed in [
        "nameOverride",
        "fullnameOverride",
        "replicaCount",
        "image.repository",
        "image.tag",
        "image.pullPolicy",
        "credentials.superuser",
        "credentials.admin",
        "credentials.standby",
        "kubernetes.dcs.enable",
        "kubernetes.configmaps.enable",
        "etcd.enable",
        "etcd.deployChart",
        "etcd.host",
        "etcd.discovery",
        "zookeeper.enable",
        "zookeeper.deployChart",
        "zookeeper.hosts",
        "walE.enable",
        "walE.scheduleCronJob",
        "walE.retainBackups",
        "walE.s3Bucket",
        "walE.gcsBucket",
        "walE.kubernetesSecret",
        "walE.backupThresholdMegabytes",
        "walE.backupThresholdPercentage",
        "resources",
        "nodeSelector",
        "tolerations",
        "affinity",
        "persistentVolume.accessModes",
        "persistentVolume.annotations",
        "persistentVolume.mountPath",
        "persistentVolume.size",
        "persistentVolume.storageClass",
        "persistentVolume.subPath",
        "rbac.create",
        "serviceAccount.create",
        "serviceAccount.name",
    ] {
        assert!(names.contains(seed), "the seed chart's {seed} is missing");
    }

    // Everything set: the API server accepts every object.
    let ns = lab.namespace("t81-render").await.expect("namespace");
    let rendered = ok(
        "helm template with every value",
        helm(lab)
            .args(["template", "all", "--namespace", &ns.name])
            .arg(chart())
            .arg("-f")
            .arg(&all_values),
    );
    let file = std::env::temp_dir().join(format!("t81-all-{}.yaml", std::process::id()));
    std::fs::write(&file, &rendered).expect("write the rendering");
    let applied = ok(
        "server-side dry run",
        kubectl(lab)
            .args(["apply", "--dry-run=server", "-n", &ns.name, "-f"])
            .arg(&file),
    );
    let _ = std::fs::remove_file(&file);
    for kind in [
        "statefulset.apps/all-values",
        "service/all-values",
        "service/all-values-repl",
        "secret/all-values",
        "configmap/all-values",
        "role.rbac.authorization.k8s.io/all-values",
        "poddisruptionbudget.policy/all-values",
        "serviceaccount/all-values-sa",
    ] {
        assert!(applied.contains(kind), "{kind} not validated:\n{applied}");
    }

    // The schema's refusals name the value.
    for (set, expect) in [
        (
            "replicaCount=abc",
            "'/replicaCount': got string, want integer",
        ),
        (
            "etcd.enabled=true",
            "additional properties 'enabled' not allowed",
        ),
        (
            "etcd.enable=true",
            "kubernetes.dcs.enable and etcd.enable are true: set exactly one of",
        ),
        (
            "kubernetes.dcs.enable=false",
            "no DCS: set exactly one of kubernetes.dcs.enable, etcd.enable, zookeeper.enable",
        ),
        (
            "kubernetes.dcs.enable=false,etcd.enable=true,etcd.host=e,zookeeper.enable=true,zookeeper.hosts=z",
            "etcd.enable and zookeeper.enable are true",
        ),
        (
            "kubernetes.dcs.enable=false,etcd.enable=true",
            "etcd.enable: the members need to know where etcd is: set etcd.host",
        ),
        (
            "kubernetes.dcs.enable=false,zookeeper.enable=true",
            "zookeeper.enable: the members need to know where ZooKeeper is",
        ),
        (
            "etcd.deployChart=true",
            "etcd.deployChart: deploys an etcd for the members, but etcd.enable is false",
        ),
        (
            "zookeeper.deployChart=true",
            "zookeeper.deployChart: deploys a ZooKeeper for the members, but zookeeper.enable is false",
        ),
        ("etcd.host=http://etcd:2379", "'/etcd/host'"),
        ("zookeeper.hosts=zk:2181/chroot", "'/zookeeper/hosts'"),
        ("etcd.replicaCount=0", "'/etcd/replicaCount'"),
        (
            "kubernetes.dcs.enable=false,etcd.enable=true,etcd.host=e,patroni.etcd3.hosts=x",
            "patroni.etcd3.hosts: set by the chart from etcd.host",
        ),
        (
            "kubernetes.dcs.enable=false,etcd.enable=true,etcd.host=e,patroni.kubernetes.labels.a=b",
            "patroni.kubernetes: a second DCS; the chart's DCS is etcd3 (etcd.enable)",
        ),
        (
            "patroni.zookeeper.hosts=z",
            "patroni.zookeeper: a second DCS; the chart's DCS is kubernetes",
        ),
        (
            "kubernetes.dcs.enable=false,zookeeper.enable=true,zookeeper.hosts=z,patroni.postgresql.callbacks.on_role_change=x",
            "patroni.postgresql.callbacks.on_role_change: set by the chart",
        ),
        (
            "kubernetes.dcs.enable=false,etcd.enable=true,etcd.host=e,kubernetes.tmpRoleLabel=t",
            "kubernetes.tmpRoleLabel: Patroni's tmp_role_label needs the Kubernetes DCS",
        ),
        // Backups (#18): the seed's walE.* are aliases; bad combinations name the values.
        (
            "walE.retainBackups=3,backup.retain=4",
            "walE.retainBackups (3) and backup.retain (4) disagree",
        ),
        (
            "backup.enable=true,walE.enable=false",
            "walE.enable (false) and backup.enable (true) disagree",
        ),
        ("walE.enable=yes", "'/walE/enable'"),
        ("backup.tool=wal-g", "'/backup/tool'"),
        (
            "backup.enable=true",
            "backup.enable: no repository: set one of backup.s3.bucket (walE.s3Bucket)",
        ),
        (
            "walE.enable=true,walE.s3Bucket=bkt,backup.filesystem.path=/b,backup.filesystem.hostPath=/h",
            "backup.s3.bucket and backup.filesystem.path are set",
        ),
        (
            "backup.enable=true,backup.tool=barman-cloud,backup.filesystem.path=/b,backup.filesystem.hostPath=/h",
            "backup.filesystem.path: a filesystem repository is pgBackRest's only",
        ),
        (
            "backup.enable=true,backup.filesystem.path=/b",
            "backup.filesystem.path: the repository needs a volume",
        ),
        (
            "backup.enable=true,backup.tool=barman-cloud,backup.gcs.bucket=g",
            "backup.gcs.bucket: the image's Barman Cloud has no GCS client",
        ),
        (
            "backup.restore.enable=true",
            "backup.restore.enable: bootstraps the cluster from the backup repository, but backup.enable (walE.enable) is false",
        ),
        (
            "walE.enable=true,walE.s3Bucket=bkt,backup.restore.enable=true,backup.restore.targetTime=t,backup.restore.targetLsn=0/1",
            "backup.restore.targetTime and backup.restore.targetLsn are set",
        ),
        (
            "walE.enable=true,walE.s3Bucket=bkt,patroni.postgresql.parameters.archive_command=x",
            "patroni.postgresql.parameters.archive_command: set by the chart with backup.enable",
        ),
        (
            "persistentVolume.mountPath=relative",
            "/persistentVolume/mountPath",
        ),
        (
            "credentials.existingSecret=mine,credentials.admin=a",
            "credentials.existingSecret: the passwords come from that Secret",
        ),
        (
            "patroni.kubernetes.labels.app=x",
            "patroni.kubernetes.labels: set by the chart",
        ),
        (
            "patroni.postgresql.data_dir=/data",
            "set by the chart from persistentVolume.mountPath",
        ),
    ] {
        let out = output(
            set,
            helm(lab)
                .args(["template", "bad"])
                .arg(chart())
                .args(["--set", set]),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(err.contains(expect), "--set {set}: {err}");
    }

    // Helm 3 reads the chart too: lint, the full rendering, a refusal.
    let helm3 = || {
        let mut cmd = Command::new(helm3_binary().expect("build helm 3"));
        cmd.env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("t81-helm3-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("t81-helm3-config"),
        );
        cmd
    };
    ok(
        "helm 3 lint",
        helm3().args(["lint", "--strict"]).arg(chart()),
    );
    let rendered3 = ok(
        "helm 3 template with every value",
        helm3()
            .args(["template", "all", "--namespace", &ns.name])
            .arg(chart())
            .arg("-f")
            .arg(&all_values),
    );
    assert_eq!(
        rendered3.matches("\nkind: ").count(),
        rendered.matches("\nkind: ").count(),
        "Helm 3 and Helm 4 render different objects"
    );
    let out = output(
        "helm 3 refusal",
        helm3()
            .args(["template", "bad"])
            .arg(chart())
            .args(["--set", "etcd.enable=true"]),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("kubernetes.dcs.enable and etcd.enable are true"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // metrics: a PodMonitor only where its CRD is served.
    for (api_versions, expect) in [(None, 0), (Some("monitoring.coreos.com/v1/PodMonitor"), 1)] {
        let mut cmd = helm(lab);
        cmd.args(["template", "m"])
            .arg(chart())
            .args(["--set", "metrics.enabled=true"]);
        if let Some(v) = api_versions {
            cmd.args(["--api-versions", v]);
        }
        let rendered = ok("helm template metrics", &mut cmd);
        assert_eq!(rendered.matches("kind: PodMonitor").count(), expect);
        assert!(rendered.contains("prometheus.io/scrape: \"true\""));
    }

    // Backups with the seed's names render Patroni's mechanisms (docs/backups.md).
    {
        let rendered = ok(
            "helm template backups",
            helm(lab).args(["template", "b"]).arg(chart()).args([
                "--set",
                "walE.enable=true,walE.s3Bucket=bkt,walE.retainBackups=3,walE.kubernetesSecret=creds,\
                 walE.backupThresholdMegabytes=64,backup.tool=barman-cloud,\
                 backup.s3.endpoint=https://s3.lab:9000,backup.s3.pathStyle=true,\
                 backup.restore.enable=true,backup.restore.targetLsn=0/3000060",
            ]),
        );
        let config: serde_yaml_ng::Value = serde_yaml_ng::Deserializer::from_str(&rendered)
            .map(|doc| serde::Deserialize::deserialize(doc).expect("YAML"))
            .find(|v: &serde_yaml_ng::Value| v["kind"] == "ConfigMap")
            .map(|cm| serde_yaml_ng::from_str(cm["data"]["50-helm.yml"].as_str().expect("file")))
            .expect("the ConfigMap")
            .expect("50-helm.yml");
        let pg = &config["postgresql"];
        assert_eq!(pg["parameters"]["archive_mode"], "on");
        assert_eq!(
            pg["parameters"]["archive_command"],
            "patroni-backup wal-push --tool=barman-cloud \"%p\""
        );
        assert_eq!(
            pg["recovery_conf"]["restore_command"],
            "patroni-backup wal-fetch \"%f\" \"%p\""
        );
        assert_eq!(
            serde_yaml_ng::to_string(&pg["create_replica_methods"]).expect("yaml"),
            "- backup\n- basebackup\n"
        );
        assert_eq!(pg["backup"]["command"], "patroni-backup restore-replica");
        assert_eq!(pg["backup"]["threshold_megabytes"], 64);
        assert_eq!(pg["backup"]["threshold_backup_size_percentage"], 30);
        assert_eq!(config["backup"]["schedule"], "00 01 * * *");
        let boot = &config["bootstrap"];
        assert_eq!(boot["method"], "restore");
        assert_eq!(boot["restore"]["command"], "patroni-backup restore");
        assert_eq!(boot["restore"]["recovery_target_lsn"], "0/3000060");
        let recovery = &boot["restore"]["recovery_conf"];
        assert_eq!(recovery["recovery_target_lsn"], "0/3000060");
        assert_eq!(recovery["recovery_target_action"], "promote");
        assert_eq!(
            recovery["restore_command"],
            pg["recovery_conf"]["restore_command"]
        );
        for env in [
            "{name: PGBACKUP_TOOL, value: \"barman-cloud\"}",
            "{name: PGBACKUP_NAME, value: \"b-patroni-rs\"}",
            "{name: PGBACKUP_RETAIN, value: \"3\"}",
            "{name: PGBACKUP_S3_BUCKET, value: \"bkt\"}",
            "{name: PGBACKUP_S3_ENDPOINT, value: \"https://s3.lab:9000\"}",
            "{name: PGBACKUP_S3_PATH_STYLE, value: \"true\"}",
            "secretRef: {name: \"creds\"}",
        ] {
            assert!(rendered.contains(env), "{env} missing:\n{rendered}");
        }
        // Without backups none of it.
        let plain = ok(
            "helm template",
            helm(lab).args(["template", "p"]).arg(chart()),
        );
        assert!(!plain.contains("archive_command") && !plain.contains("PGBACKUP_"));
    }

    // The Role is deploy/rbac's for the mode.
    for (configmaps, file) in [
        (true, "configmaps-mode.yaml"),
        (false, "endpoints-mode.yaml"),
    ] {
        let rendered = ok(
            "helm template rbac",
            helm(lab).args(["template", "r"]).arg(chart()).args([
                "--show-only",
                "templates/rbac.yaml",
                "--set",
                &format!("kubernetes.configmaps.enable={configmaps}"),
            ]),
        );
        let shipped = std::fs::read_to_string(root().join("deploy/rbac").join(file)).expect("rbac");
        assert_eq!(role_rules(&rendered), role_rules(&shipped), "{file}");
    }
}

/// Python `patronictl list -f json` of a release: `member: role`.
fn python_list(
    lab: &Lab,
    ns: &str,
    release: &str,
    scope: &str,
    use_endpoints: bool,
) -> BTreeMap<String, String> {
    let dir = std::env::temp_dir().join(format!("t81-{}-{release}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = dir.join("patronictl.yml");
    std::fs::write(
        &cfg,
        format!(
            "scope: {scope}\nkubernetes:\n  namespace: {ns}\n  labels:\n    app.kubernetes.io/name: patroni-rs\n    app.kubernetes.io/instance: {release}\n  use_endpoints: {use_endpoints}\n  context: testenv\n"
        ),
    )
    .expect("config");
    let out = ok(
        "python patronictl list",
        Command::new(common::venv().join("bin/patronictl"))
            .env("KUBECONFIG", &lab.controlplane().kubeconfig)
            .arg("-c")
            .arg(&cfg)
            .args(["list", "-f", "json"]),
    );
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

/// Waits until the StatefulSet runs its current template on every pod.
async fn rolled_out(client: &kube::Client, ns: &str, name: &str, n: i32) {
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    wait_until(FORM, format!("{name} rolled out"), || async {
        let s = sets.get(name).await.ok()?;
        let generation = s.metadata.generation?;
        let st = s.status?;
        (st.observed_generation? >= generation
            && st.updated_replicas? == n
            && st.ready_replicas? == n
            && st.current_revision? == st.update_revision?)
            .then_some(())
    })
    .await
    .expect("rollout");
}

#[tokio::test]
async fn default_install_fails_over_upgrades_and_reinstalls() {
    init_tracing();
    let _one = INSTALLS.lock().await;
    let lab = Lab::shared();
    node_with_image(lab).await;
    let ns = lab.namespace("t81-helm").await.expect("namespace");
    let (client, ns_name) = (&ns.client, ns.name.as_str());
    let (release, fullname) = ("pg", "pg-patroni-rs");
    let roles = Roles {
        selector: "app.kubernetes.io/instance=pg",
        label: "role",
        primary: "primary",
        replica: "replica",
    };
    let install = |cmd: &str, extra: &[&str]| {
        let mut c = helm(lab);
        c.args([cmd, release])
            .arg(chart())
            .args(["--namespace", ns_name])
            .args(extra);
        ok(&format!("helm {cmd}"), &mut c)
    };

    tracing::info!("--- helm install with the defaults: 5 members");
    let started = Instant::now();
    install("install", &[]);
    let primary = roles.formed(client, ns_name, 5, FORM, "5 members").await;
    println!(
        "helm install: 5 members formed in {:.1?}",
        started.elapsed()
    );
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns_name);
    let bound = || async {
        pvcs.list(&ListParams::default())
            .await
            .expect("pvcs")
            .items
            .iter()
            .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
            .count()
    };
    assert_eq!(bound().await, 5);
    helm_test(lab, ns_name, release);
    let listed = python_list(lab, ns_name, release, fullname, false);
    assert_eq!(listed.len(), 5, "{listed:?}");
    assert_eq!(listed.get(&primary).map(String::as_str), Some("Leader"));
    let before = release_passwords(client, ns_name, fullname).await;
    let password = superuser_password(&before);
    let primary_dns = format!("{fullname}.{ns_name}.svc.cluster.local");
    let conn = format!("host={primary_dns} user=postgres dbname=postgres");

    tracing::info!("--- the primary pod deleted: failover, the Service follows");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns_name);
    let deleted = Instant::now();
    // The pod's grace period, as `kubectl delete pod` (not grace 0: see t80_real_node).
    pods.delete(&primary, &DeleteParams::default())
        .await
        .expect("delete the primary");
    let new_primary = roles.takeover(client, ns_name, &primary, TAKEOVER).await;
    println!(
        "primary pod deleted: {new_primary} took over in {:.1?}",
        deleted.elapsed()
    );
    roles
        .formed(client, ns_name, 5, FORM, "the deleted pod rejoined")
        .await;
    helm_test(lab, ns_name, release);

    tracing::info!("--- helm upgrade rolls every pod, a writer runs throughout");
    psql_soon(
        client,
        ns_name,
        &password,
        &[
            "-Atc",
            "create table w (id int primary key, at timestamptz not null default clock_timestamp()); create table stop_writer (x int)",
            &conn,
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("writer tables: {e}"));
    let writer = {
        let (client, ns_name, conn, password) = (
            client.clone(),
            ns_name.to_owned(),
            format!("{conn} connect_timeout=1"),
            password.clone(),
        );
        tokio::spawn(async move {
            let script = format!(
                "i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); \
                 if out=$(psql -XAtq -v ON_ERROR_STOP=1 '{conn}' -c \"insert into w(id) values ($i) returning (select count(*) from stop_writer)\" 2>/dev/null); then \
                 echo ack $i; [ \"$out\" = 1 ] && exit 0; fi; sleep 0.05; done"
            );
            run_pod(
                &client,
                &ns_name,
                &[("PGPASSWORD", &password)],
                "sh",
                &["-c", &script],
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let upgraded = Instant::now();
    install("upgrade", &["--set", "podAnnotations.rolled=yes"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    rolled_out(client, ns_name, fullname, 5).await;
    roles
        .formed(client, ns_name, 5, FORM, "formed after the upgrade")
        .await;
    println!(
        "helm upgrade: every pod rolled in {:.1?}",
        upgraded.elapsed()
    );
    psql_soon(
        client,
        ns_name,
        &password,
        &["-Atc", "insert into stop_writer values (1)", &conn],
    )
    .await
    .unwrap_or_else(|e| panic!("stop the writer: {e}"));
    let log = writer
        .await
        .expect("writer")
        .unwrap_or_else(|e| panic!("writer: {e}"));
    let acked: BTreeSet<i64> = log
        .lines()
        .filter_map(|l| l.strip_prefix("ack ")?.parse().ok())
        .collect();
    let stored = psql_soon(
        client,
        ns_name,
        &password,
        &["-Atc", "select id from w", &conn],
    )
    .await
    .unwrap_or_else(|e| panic!("read w: {e}"));
    let stored: BTreeSet<i64> = stored.lines().filter_map(|l| l.parse().ok()).collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(acked.len() > 20, "the writer wrote little: {}", acked.len());
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let gap = psql_soon(
        client,
        ns_name,
        &password,
        &[
            "-Atc",
            "select extract(epoch from max(d)) from (select at - lag(at) over (order by at) d from w) s",
            &conn,
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("gap: {e}"));
    let gap: f64 = gap.parse().expect("seconds");
    println!(
        "helm upgrade with a writer: {} writes acknowledged, none lost, longest write gap {gap:.2} s",
        acked.len()
    );
    // Each hand-over publishes the new role label at once; a label published a loop later
    // shows up as a gap of loop_wait (10 s) or more.
    assert!(gap < 10.0, "longest write gap {gap} s");
    assert_eq!(
        release_passwords(client, ns_name, fullname).await,
        before,
        "the upgrade changed the passwords"
    );

    tracing::info!("--- helm uninstall keeps the PVCs; installing again finds the data");
    ok(
        "helm uninstall",
        helm(lab).args(["uninstall", release, "--namespace", ns_name, "--wait"]),
    );
    wait_until(Duration::from_secs(120), "pods gone".into(), || async {
        let l = pods
            .list(&ListParams::default().labels(roles.selector))
            .await
            .ok()?;
        l.items
            .iter()
            .all(|p| p.metadata.name.as_deref() == Some(&format!("{fullname}-test")))
            .then_some(())
    })
    .await
    .expect("uninstalled");
    assert_eq!(bound().await, 5, "the PVCs went with the release");
    install("install", &[]);
    roles
        .formed(client, ns_name, 5, FORM, "installed again")
        .await;
    let count = psql_soon(
        client,
        ns_name,
        &password,
        &["-Atc", "select count(*) from w", &conn],
    )
    .await
    .unwrap_or_else(|e| panic!("read w again: {e}"));
    assert_eq!(
        count,
        stored.len().to_string(),
        "the data of the first install"
    );
    assert_eq!(release_passwords(client, ns_name, fullname).await, before);
    helm_test(lab, ns_name, release);
    ok(
        "helm uninstall",
        helm(lab).args(["uninstall", release, "--namespace", ns_name, "--wait"]),
    );
}

#[tokio::test]
async fn endpoints_mode_custom_labels_and_a_premade_account() {
    init_tracing();
    let _one = INSTALLS.lock().await;
    let lab = Lab::shared();
    node_with_image(lab).await;
    let ns = lab.namespace("t81-helm-ep").await.expect("namespace");
    let (client, ns_name) = (&ns.client, ns.name.as_str());
    let (release, fullname) = ("seed", "seed-patroni-rs");
    let role =
        std::fs::read_to_string(root().join("deploy/rbac/endpoints-mode.yaml")).expect("rbac");
    apply(
        client,
        ns_name,
        &format!(
            "{role}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: premade\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: premade\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: patroni}}\n\
             subjects: [{{kind: ServiceAccount, name: premade, namespace: {ns_name}}}]\n"
        ),
    )
    .await;
    ok(
        "helm install (Endpoints mode)",
        helm(lab)
            .args(["install", release])
            .arg(chart())
            .args([
                "--namespace",
                ns_name,
                "--set",
                "replicaCount=3,kubernetes.configmaps.enable=false,kubernetes.roleLabel=spilo-role,kubernetes.leaderLabelValue=master,rbac.create=false,serviceAccount.create=false,serviceAccount.name=premade",
            ]),
    );
    let roles = Roles {
        selector: "app.kubernetes.io/instance=seed",
        label: "spilo-role",
        primary: "master",
        replica: "replica",
    };
    let primary = roles.formed(client, ns_name, 3, FORM, "3 members").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns_name);
    let pod = pods.get(&primary).await.expect("primary pod");
    assert_eq!(
        pod.spec.and_then(|s| s.service_account_name).as_deref(),
        Some("premade")
    );
    let ip = pod.status.and_then(|s| s.pod_ip).expect("pod IP");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), ns_name);
    wait_until(
        Duration::from_secs(30),
        "the leader's Endpoints route the primary Service".into(),
        || async {
            let ep = endpoints.get(fullname).await.ok()?;
            let addr = ep.subsets?.first()?.addresses.as_ref()?.first()?.ip.clone();
            (addr == ip).then_some(())
        },
    )
    .await
    .expect("leader Endpoints");
    helm_test(lab, ns_name, release);
    let listed = python_list(lab, ns_name, release, fullname, true);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed.get(&primary).map(String::as_str), Some("Leader"));
    ok(
        "helm uninstall",
        helm(lab).args(["uninstall", release, "--namespace", ns_name, "--wait"]),
    );
}
