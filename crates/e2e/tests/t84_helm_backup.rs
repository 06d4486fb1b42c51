//! Issue #18, the Helm chart's part: `backup.*` of `deploy/helm/patroni-rs` on the lab's real
//! node. A release archives WAL with pgBackRest into a filesystem repository on a directory of
//! the node (`backup.filesystem.hostPath`), takes a base backup on request (`patronictl backup
//! --now` in a pod: `POST /backup` on the leader), keeps archiving; then everything is lost
//! (`helm uninstall`, the PVCs and the cluster's state deleted, only the repository and the
//! Secret with the passwords kept), and `helm install` of the same name with
//! `backup.restore.enable=true` bootstraps from the repository: every row committed before
//! the last archived WAL segment is back, the second member joins, and the restored cluster
//! archives again.

#![allow(
    clippy::disallowed_types,
    reason = "the test harness measures real elapsed time (std::time::Instant)"
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::helm::{chart, helm, kubectl, ok, output};
use common::init_tracing;
use common::node::{Roles, node_with_image, psql_soon, release_passwords, superuser_password};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use patroni_testlab::{Lab, wait_until};

/// Bootstrap (or a restore) and one base backup for the second member, one pod after the
/// other.
const FORM: Duration = Duration::from_secs(420);
/// A base backup of a small cluster into the node's directory.
const BACKUP: Duration = Duration::from_secs(300);
/// A switched WAL segment reaching the repository.
const ARCHIVED: Duration = Duration::from_secs(120);
/// Pods and claims gone after `helm uninstall`.
const GONE: Duration = Duration::from_secs(180);
/// The postgres user's id in the image: the repository's directory must be its.
const PG_UID: u32 = 999;

const RELEASE: &str = "bk";
const FULLNAME: &str = "bk-patroni-rs";
const SELECTOR: &str = "app.kubernetes.io/instance=bk";

/// `kubectl exec` in the member pod `pod`; its stdout (the failure's output in the panic).
fn exec(lab: &Lab, ns: &str, pod: &str, args: &[&str]) -> String {
    ok(
        &format!("kubectl exec {pod} -- {}", args.join(" ")),
        kubectl(lab)
            .args(["exec", "-n", ns, pod, "-c", "patroni", "--"])
            .args(args),
    )
}

/// `psql -Atc SQL` through the primary Service, retried while the Service follows.
async fn sql(client: &kube::Client, ns: &str, password: &str, sql: &str) -> String {
    let conn = format!("host={FULLNAME}.{ns}.svc.cluster.local user=postgres dbname=postgres");
    psql_soon(client, ns, password, &["-XAtc", sql, &conn])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Switches WAL on the primary and waits until that segment is in the repository.
async fn archive_all(client: &kube::Client, ns: &str, password: &str) -> String {
    let segment = sql(
        client,
        ns,
        password,
        "select pg_walfile_name(pg_switch_wal())",
    )
    .await;
    let check = format!(
        "select coalesce(last_archived_wal >= '{segment}', false) || ' ' || failed_count \
         from pg_stat_archiver"
    );
    wait_until(ARCHIVED, format!("{segment} archived"), || async {
        let out = sql(client, ns, password, &check).await;
        out.starts_with("true").then_some(out)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    segment
}

/// [`Roles::formed`] with `n` members, printing the pods and their logs when they do not form.
async fn formed(lab: &Lab, roles: &Roles<'_>, client: &kube::Client, ns: &str, n: usize) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    // The inner wait runs longer: the logs are printed before it would panic.
    let inner = FORM + Duration::from_secs(60);
    let formed = tokio::time::timeout(FORM, roles.formed(client, ns, n, inner, "formed")).await;
    if let Ok(primary) = formed {
        return primary;
    }
    let list = pods
        .list(&ListParams::default().labels(SELECTOR))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    for pod in list {
        let name = pod.metadata.name.unwrap_or_default();
        let log = output(
            "kubectl logs",
            kubectl(lab).args(["logs", "-n", ns, "-c", "patroni", "--tail", "60", &name]),
        );
        println!(
            "--- {name}: {:?}\n{}{}",
            pod.status.and_then(|s| s.phase),
            String::from_utf8_lossy(&log.stdout),
            String::from_utf8_lossy(&log.stderr)
        );
    }
    panic!("{n} members did not form within {FORM:?}");
}

/// The repository: a directory of the node (the node shares the machine's filesystem),
/// writable by the image's postgres user.
fn repository(dir: &Path) -> String {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let repo = dir.join("repo");
    std::fs::create_dir(&repo).expect("create the repository");
    nix::unistd::chown(
        &repo,
        Some(nix::unistd::Uid::from_raw(PG_UID)),
        Some(nix::unistd::Gid::from_raw(PG_UID)),
    )
    .expect("chown the repository");
    repo.display().to_string()
}

/// Waits until the release's pods are gone, then deletes its claims and the cluster's state
/// (Patroni's ConfigMaps: `-config` says the cluster exists and would stop a bootstrap) and
/// waits until they are gone too.
async fn lose_everything(client: &kube::Client, ns: &str) {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let by_release = ListParams::default().labels(SELECTOR);
    // The agents release the lock while they stop: their last writes come before this.
    wait_until(GONE, "pods gone".into(), || async {
        pods.list(&by_release)
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    pvcs.delete_collection(&DeleteParams::default(), &by_release)
        .await
        .expect("delete the PVCs");
    configmaps
        .delete_collection(&DeleteParams::default(), &by_release)
        .await
        .expect("delete the cluster's ConfigMaps");
    wait_until(GONE, "PVCs and ConfigMaps gone".into(), || async {
        let claims = pvcs.list(&by_release).await.ok()?.items.len();
        let maps = configmaps.list(&by_release).await.ok()?.items.len();
        (claims + maps == 0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// A release with backups into a filesystem repository on the node is lost entirely, and a
/// new release of the same name restored from the repository has every row committed
/// before the last archived segment, a second member, and archives again.
#[tokio::test]
async fn a_release_lost_entirely_is_restored_from_its_backup_repository() {
    init_tracing();
    let lab = Lab::shared();
    node_with_image(lab).await;
    let ns = lab.namespace("t84-backup").await.expect("namespace");
    let (client, ns_name) = (&ns.client, ns.name.as_str());
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = repository(dir.path());
    let roles = Roles {
        selector: SELECTOR,
        label: "role",
        primary: "primary",
        replica: "replica",
    };
    let values = format!(
        "replicaCount=2,persistentVolume.size=1Gi,backup.enable=true,backup.schedule=,\
         backup.filesystem.path=/backup,backup.filesystem.hostPath={repo}"
    );
    let install = |extra: &str| {
        ok(
            "helm install",
            helm(lab).args(["install", RELEASE]).arg(chart()).args([
                "--namespace",
                ns_name,
                "--set",
                &format!("{values}{extra}"),
            ]),
        )
    };

    let (password, archived) = {
        tracing::info!("--- helm install with backups into the node's directory");
        let started = Instant::now();
        install("");
        let primary = formed(lab, &roles, client, ns_name, 2).await;
        println!("backups on: 2 members formed in {:.1?}", started.elapsed());
        let password = superuser_password(&release_passwords(client, ns_name, FULLNAME).await);
        sql(
            client,
            ns_name,
            &password,
            "create table before_backup as select g as id from generate_series(1, 1000) g",
        )
        .await;

        tracing::info!("--- a base backup on request: patronictl backup --now (POST /backup)");
        let asked = Instant::now();
        let out = exec(lab, ns_name, &primary, &["patronictl", "backup", "--now"]);
        assert!(out.contains("Base backup started"), "{out}");
        let last = wait_until(BACKUP, "the base backup finished".into(), || async {
            let json = exec(lab, ns_name, &primary, &["patronictl", "backup", "--json"]);
            let status: serde_json::Value = serde_json::from_str(&json).expect("JSON");
            (!status["last"].is_null()).then(|| status["last"].clone())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(last["success"], true, "{last}");
        println!("base backup on request: done in {:.1?}", asked.elapsed());
        let list = exec(
            lab,
            ns_name,
            &primary,
            &["patroni-backup", "list", "--json"],
        );
        let backups: serde_json::Value = serde_json::from_str(&list).expect("list JSON");
        assert_eq!(backups.as_array().map(Vec::len), Some(1), "{list}");

        tracing::info!("--- rows after the backup reach the repository only as WAL");
        sql(
            client,
            ns_name,
            &password,
            "create table after_backup as select g as id from generate_series(1, 500) g",
        )
        .await;
        let archived = archive_all(client, ns_name, &password).await;
        (password, archived)
    };
    {
        tracing::info!(%archived, "--- everything lost but the repository and the Secret");
        ok(
            "helm uninstall",
            helm(lab).args(["uninstall", RELEASE, "--namespace", ns_name, "--wait"]),
        );
        lose_everything(client, ns_name).await;
    }
    {
        tracing::info!("--- helm install with backup.restore.enable: the rows are back");
        let started = Instant::now();
        install(",backup.restore.enable=true");
        let primary = formed(lab, &roles, client, ns_name, 2).await;
        println!("restored: 2 members formed in {:.1?}", started.elapsed());
        assert_eq!(
            superuser_password(&release_passwords(client, ns_name, FULLNAME).await),
            password
        );
        let counts = sql(
            client,
            ns_name,
            &password,
            "select (select count(*) from before_backup) || ' ' || (select count(*) from after_backup)",
        )
        .await;
        assert_eq!(counts, "1000 500");
        let timeline = sql(
            client,
            ns_name,
            &password,
            "select timeline_id from pg_control_checkpoint()",
        )
        .await;
        println!("restored primary {primary} on timeline {timeline}");
        let log = output(
            "kubectl logs",
            kubectl(lab)
                .args(["logs", "-n", ns_name, "-c", "patroni"])
                .arg(if primary.ends_with("-0") {
                    format!("{FULLNAME}-1")
                } else {
                    format!("{FULLNAME}-0")
                }),
        );
        let method = String::from_utf8_lossy(&log.stdout)
            .lines()
            .find(|l| l.contains("replica has been created"))
            .map(str::to_owned);
        println!("the restored cluster's replica: {method:?}");

        tracing::info!("--- the restored cluster archives into the same repository");
        archive_all(client, ns_name, &password).await;
        ok(
            "helm uninstall",
            helm(lab).args(["uninstall", RELEASE, "--namespace", ns_name, "--wait"]),
        );
        lose_everything(client, ns_name).await;
    }
}
