//! Issue #18, backups with pgBackRest on a filesystem repository, end to end on a real
//! 3-member cluster (docs/backups.md):
//! - WAL is archived through `patroni-backup wal-push` (the stanza is created by the first
//!   push), the leader's agent takes base backups on its cron schedule (`* * * * *`) and on
//!   `POST /backup` (a replica answers 503), `GET /backup` and `/metrics` show them, and
//!   retention keeps `PGBACKUP_RETAIN` of them;
//! - `POST /reinitialize` recreates a replica with `create_replica_methods: [backup,
//!   basebackup]`: from the backup while within Spilo's thresholds, by `pg_basebackup` when the
//!   WAL since the backup exceeds `threshold_megabytes` (the agent's log names the method);
//! - total loss: every member stopped and its data directory deleted, a new cluster bootstraps
//!   with `bootstrap.method: restore` and has every row; a second one restored to a time between
//!   two writes (point-in-time recovery) has exactly the rows before it.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::cluster::*;
use common::*;
use patroni_testlab::{Lab, chown_to_pg_user};

/// The settings every member's environment carries (a pod's env in the chart).
fn backup_env(repo: &Path, lock: &Path, stanza: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("PGBACKUP_TOOL".into(), "pgbackrest".into()),
        ("PGBACKUP_NAME".into(), stanza.into()),
        ("PGBACKUP_PATH".into(), repo.display().to_string()),
        ("PGBACKUP_RETAIN".into(), "2".into()),
        ("PGBACKREST_LOCK_PATH".into(), lock.display().to_string()),
    ])
}

/// Whether `log` says a replica was created with `method`.
fn created_with(log: &str, method: &str) -> bool {
    log.lines()
        .any(|l| l.contains("replica has been created") && l.contains(&format!("method={method}")))
}

/// `POST /reinitialize` (force) on `members[i]`; waits until its log shows the replica created
/// again and the cluster streams; returns the log written meanwhile.
async fn reinitialize(members: &[Member], i: usize, streaming: usize) -> String {
    let m = &members[i];
    let before = std::fs::read_to_string(&m.log).unwrap_or_default().len();
    let (code, body) = rest(m, "POST", "/reinitialize", Some(r#"{"force": true}"#), None)
        .expect("POST /reinitialize");
    assert_eq!(code, 200, "{body}");
    let since = wait_for(FORM_TIMEOUT, "the replica created again", members, || {
        let log = std::fs::read_to_string(&m.log).unwrap_or_default();
        let since = log.get(before..)?.to_owned();
        since.contains("replica has been created").then_some(since)
    })
    .await;
    primary_with(members, streaming, "the replica streams again").await;
    since
}

/// Total loss: every agent stopped, every data directory deleted, the members gone.
fn lose_everything(mut members: Vec<Member>) {
    stop_all(&mut members);
    for m in &members {
        let data = m.config.parent().expect("member dir").join("data");
        std::fs::remove_dir_all(&data).expect("delete the data directory");
    }
}

fn query(m: &Member, q: &str) -> Option<String> {
    sql(&m.host, &m.host, &m.spec, q)
}

/// `patroni-backup list --json` on `m`'s host as the postgres user, with `env`.
fn list_backups(m: &Member, pb: &Path, env: &BTreeMap<String, String>) -> Vec<serde_json::Value> {
    let out = m
        .host
        .command_as("postgres", pb)
        .args(["list", "--json"])
        .envs(env)
        .output()
        .expect("run patroni-backup list");
    assert!(
        out.status.success(),
        "patroni-backup list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("list is JSON")
}

/// Waits until the WAL file holding everything written so far is archived.
async fn archived(members: &[Member], primary: usize) {
    let p = &members[primary];
    let wal = query(p, "select pg_walfile_name(pg_current_wal_lsn())").expect("current WAL");
    query(p, "select pg_switch_wal()").expect("switch WAL");
    wait_for(
        Duration::from_secs(60),
        "the current WAL file archived",
        members,
        || {
            let last = query(
                p,
                "select coalesce(last_archived_wal, '') from pg_stat_archiver",
            )?;
            (last.as_str() >= wal.as_str()).then_some(())
        },
    )
    .await;
}

/// Starts a backup with `POST /backup` on the leader and waits until `GET /backup` shows it
/// finished successfully; returns the number of successful backups so far.
async fn backup_now(members: &[Member], primary: usize) -> u64 {
    let p = &members[primary];
    let before = get_json(p, "/backup").expect("GET /backup").1["succeeded"]
        .as_u64()
        .unwrap_or(0);
    // While the scheduled one runs, the answer is 409: ask again.
    wait_for(
        Duration::from_secs(60),
        "POST /backup accepted",
        members,
        || (rest(p, "POST", "/backup", None, None)?.0 == 202).then_some(()),
    )
    .await;
    wait_for(
        Duration::from_secs(120),
        "the base backup finished",
        members,
        || {
            let (_, s) = get_json(p, "/backup")?;
            let n = s["succeeded"].as_u64()?;
            (s["running_since"].is_null() && n > before).then_some(n)
        },
    )
    .await
}

/// Waits until the leader's schedule (`* * * * *`) has run a backup that succeeded.
async fn scheduled_backup(members: &[Member], primary: usize) {
    wait_for(
        Duration::from_secs(90),
        "a scheduled backup",
        members,
        || {
            let (_, s) = get_json(&members[primary], "/backup")?;
            (s["last_success"]["trigger"] == "schedule").then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_schedule_replicas_from_backup_and_point_in_time_restore() {
    init_tracing();
    let lab = Lab::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // The agent's children run as postgres without root's capabilities: the binary must be
    // where they can reach it.
    let pb = dir.path().join("patroni-backup");
    std::fs::copy(backup_binary(), &pb).expect("copy patroni-backup");
    std::fs::set_permissions(&pb, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).expect("repo");
    chown_to_pg_user(&repo).expect("chown repo");
    let locks = dir.path().join("locks");
    std::fs::create_dir(&locks).expect("locks");
    chown_to_pg_user(&locks).expect("chown locks");
    let pb_s = pb.display().to_string();
    let env_for = |member: &str| {
        let lock = locks.join(member);
        backup_env(&repo, &lock, "orders")
    };

    tracing::info!("--- a cluster archiving to pgBackRest, backups every minute on the leader");
    let ns = lab.namespace("t83-backup").await.expect("namespace");
    let (members, kubeconfig) = start_cluster_m0_first(lab, &ns, "orders", false, 3, |spec| {
        spec.env = env_for(&spec.name);
        spec.dcs_parameters
            .insert("archive_mode".into(), "'on'".into());
        spec.dcs_parameters.insert(
            "archive_command".into(),
            format!("'{pb_s} wal-push --tool=pgbackrest \"%p\"'"),
        );
        spec.postgresql_extra.insert(
            "recovery_conf".into(),
            format!("{{restore_command: '{pb_s} wal-fetch \"%f\" \"%p\"'}}"),
        );
        // m1 restores from the backup whenever it can; m2 only while the WAL since the backup
        // stays under 1 MB.
        let megabytes = if spec.name == "m2" { 1 } else { 10240 };
        spec.postgresql_extra.insert(
            "create_replica_methods".into(),
            "[backup, basebackup]".into(),
        );
        spec.postgresql_extra.insert(
            "backup".into(),
            format!(
                "{{command: '{pb_s} restore-replica', threshold_megabytes: {megabytes}, \
                 threshold_backup_size_percentage: 100000}}"
            ),
        );
        spec.extra = format!("backup:\n  schedule: '* * * * *'\n  command: {pb_s} backup\n");
    })
    .await;
    let primary = healthy(&members, "one primary, two streaming").await;
    assert_eq!(members[primary].name, "m0");
    for m in &members {
        let log = std::fs::read_to_string(&m.log).unwrap_or_default();
        if m.name != "m0" {
            assert!(
                log.contains("can not find any backups") && created_with(&log, "basebackup"),
                "{}: no backup yet, so pg_basebackup cloned it\n{log}",
                m.name
            );
        }
    }

    let p = &members[primary];
    query(p, "create table orders (id int primary key, note text)").expect("create table");
    query(
        p,
        "insert into orders select g, 'before' from generate_series(1, 100) g",
    )
    .expect("insert");
    archived(&members, primary).await;

    tracing::info!("--- a replica refuses POST /backup; the leader takes one");
    let replica = (primary + 1) % 3;
    let answer = rest(&members[replica], "POST", "/backup", None, None);
    assert_eq!(answer.as_ref().map(|a| a.0), Some(503), "{answer:?}");
    backup_now(&members, primary).await;
    let (_, status) = get_json(&members[primary], "/backup").expect("GET /backup");
    assert_eq!(status["schedule"], "* * * * *", "{status}");
    assert!(
        status["next_run"].is_string(),
        "the leader schedules: {status}"
    );
    let (_, replica_status) = get_json(&members[replica], "/backup").expect("GET /backup");
    assert!(replica_status["next_run"].is_null(), "{replica_status}");
    // Our patronictl finds the leader in the DCS and shows its schedule.
    let ctl_config = patronictl_config(dir.path(), &ns.name, "orders", false);
    let out = members[replica]
        .host
        .command(ctl_binary())
        .env("KUBECONFIG", &kubeconfig)
        .arg("-c")
        .arg(&ctl_config)
        .args(["backup", "--json"])
        .output()
        .expect("run patronictl backup");
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "patronictl backup --json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(shown["schedule"], "* * * * *", "{shown}");
    assert!(shown["succeeded"].as_u64() >= Some(1), "{shown}");
    let (_, metrics) = rest(&members[primary], "GET", "/metrics", None, None).expect("metrics");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("patroni_backup_last_success_timestamp{"))
        .unwrap_or_else(|| panic!("backup metrics\n{metrics}"));
    assert!(
        !line.ends_with(" 0"),
        "a success timestamp after a backup: {line}"
    );

    tracing::info!("--- m1 reinitialised from the backup");
    let m1 = index(&members, "m1");
    let log = reinitialize(&members, m1, 2).await;
    assert!(
        log.contains("restored backup") && created_with(&log, "backup"),
        "m1 was restored from the backup\n{log}"
    );
    assert_eq!(
        query(&members[m1], "select count(*) from orders").as_deref(),
        Some("100")
    );

    tracing::info!("--- 2 MB of WAL later, m2 (1 MB threshold) is cloned by pg_basebackup");
    query(
        &members[primary],
        "insert into orders select g, repeat('x', 1000) from generate_series(101, 3000) g",
    )
    .expect("insert");
    let m2 = index(&members, "m2");
    let since = reinitialize(&members, m2, 2).await;
    assert!(
        since.contains("not restoring from backup") && created_with(&since, "basebackup"),
        "m2 refused the backup and was cloned\n{since}"
    );

    tracing::info!("--- the schedule ran a backup, retention kept two");
    scheduled_backup(&members, primary).await;
    backup_now(&members, primary).await;
    let list = list_backups(&members[primary], &pb, &env_for("list"));
    assert_eq!(list.len(), 2, "retention keeps 2: {list:?}");

    tracing::info!("--- rows written on both sides of a point in time, all archived");
    query(&members[primary], "delete from orders where id > 100").expect("delete");
    let target = query(&members[primary], "select now()::text").expect("now");
    std::thread::sleep(Duration::from_secs(1));
    query(
        &members[primary],
        "insert into orders select g, 'after' from generate_series(101, 150) g",
    )
    .expect("insert after");
    archived(&members, primary).await;
    tracing::info!(%target, "total loss: every member stopped, every data directory deleted");
    lose_everything(members);

    for (label, recovery_target, expected) in [
        ("latest", String::new(), "150"),
        ("pitr", format!(", recovery_target_time: '{target}'"), "100"),
    ] {
        tracing::info!(label, "--- a new cluster bootstraps from the backup");
        let ns = lab
            .namespace(&format!("t83-{label}"))
            .await
            .expect("namespace");
        let method = format!(
            "{{command: '{pb_s} restore'{recovery_target}, recovery_conf: {{restore_command: \
             '{pb_s} wal-fetch \"%f\" \"%p\"', recovery_target_action: promote{recovery_target}}}}}"
        );
        let (mut restored, _) =
            start_cluster_m0_first(lab, &ns, &format!("r-{label}"), false, 1, |spec| {
                spec.env = env_for(&format!("{label}-{}", spec.name));
                spec.bootstrap_extra
                    .insert("method".into(), "restore".into());
                spec.bootstrap_extra
                    .insert("restore".into(), method.clone());
            })
            .await;
        let count = query(&restored[0], "select count(*) from orders");
        let log = std::fs::read_to_string(&restored[0].log).unwrap_or_default();
        assert_eq!(
            count.as_deref(),
            Some(expected),
            "{label}: rows after the restore\n{log}"
        );
        assert!(log.contains("restored backup"), "{label}\n{log}");
        stop_all(&mut restored);
    }
}

/// The one primary, once `n` replicas stream from it.
async fn primary_with(members: &[Member], n: usize, what: &str) -> usize {
    wait_for(FORM_TIMEOUT, what, members, || {
        let w = writable(members);
        let [p] = w.as_slice() else { return None };
        let p = index(members, p);
        (query(&members[p], STREAMING_REPLICAS)? == n.to_string()).then_some(p)
    })
    .await
}

/// Barman Cloud on the lab's S3 server (moto over TLS): archiving, a scheduled backup with
/// retention (`REDUNDANCY 1`), a replica restored from it, and the cluster restored after a
/// total loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barman_cloud_on_s3() {
    init_tracing();
    let lab = Lab::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let pb = dir.path().join("patroni-backup");
    std::fs::copy(backup_binary(), &pb).expect("copy patroni-backup");
    std::fs::set_permissions(&pb, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let pb_s = pb.display().to_string();
    let s3_host = lab.host("s3-t83").expect("host");
    let s3 = patroni_testlab::S3Server::start_on(&s3_host, "backups").expect("S3 server");
    let mut env: BTreeMap<String, String> = s3
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.extend([
        ("PGBACKUP_TOOL".to_owned(), "barman-cloud".to_owned()),
        ("PGBACKUP_NAME".to_owned(), "ledger".to_owned()),
        ("PGBACKUP_S3_BUCKET".to_owned(), s3.bucket().to_owned()),
        ("PGBACKUP_S3_PREFIX".to_owned(), "barman".to_owned()),
        ("PGBACKUP_S3_ENDPOINT".to_owned(), s3.endpoint_url()),
        ("PGBACKUP_S3_PATH_STYLE".to_owned(), "true".to_owned()),
        ("PGBACKUP_RETAIN".to_owned(), "1".to_owned()),
    ]);

    tracing::info!("--- a 2-member cluster archiving to Barman Cloud");
    let ns = lab.namespace("t83-barman").await.expect("namespace");
    let (members, _) = start_cluster_m0_first(lab, &ns, "ledger", false, 2, |spec| {
        spec.env = env.clone();
        spec.dcs_parameters
            .insert("archive_mode".into(), "'on'".into());
        spec.dcs_parameters.insert(
            "archive_command".into(),
            format!("'{pb_s} wal-push --tool=barman-cloud \"%p\"'"),
        );
        spec.postgresql_extra.insert(
            "create_replica_methods".into(),
            "[backup, basebackup]".into(),
        );
        spec.postgresql_extra.insert(
            "backup".into(),
            // A fresh cluster is tiny: the WAL segment a backup switches to alone is 70 % of it.
            format!(
                "{{command: '{pb_s} restore-replica', threshold_backup_size_percentage: 1000}}"
            ),
        );
        spec.extra = format!("backup:\n  schedule: '* * * * *'\n  command: {pb_s} backup\n");
    })
    .await;
    let primary = primary_with(&members, 1, "one primary, one streaming").await;
    let p = &members[primary];
    query(p, "create table ledger (id int primary key)").expect("create table");
    query(p, "insert into ledger select generate_series(1, 500)").expect("insert");
    archived(&members, primary).await;
    backup_now(&members, primary).await;

    tracing::info!("--- the replica reinitialised from the backup");
    let replica = 1 - primary;
    let log = reinitialize(&members, replica, 1).await;
    assert!(
        log.contains("restored backup") && created_with(&log, "backup"),
        "the replica was restored from the backup\n{log}"
    );

    tracing::info!("--- a scheduled backup; retention keeps one");
    scheduled_backup(&members, primary).await;
    let list = list_backups(&members[primary], &pb, &env);
    assert_eq!(list.len(), 1, "REDUNDANCY 1: {list:?}");

    query(
        &members[primary],
        "insert into ledger select generate_series(501, 600)",
    )
    .expect("insert");
    archived(&members, primary).await;
    tracing::info!("--- total loss; a new cluster restored from the bucket");
    lose_everything(members);
    let ns = lab.namespace("t83-barman-r").await.expect("namespace");
    let method = format!(
        "{{command: '{pb_s} restore', recovery_conf: {{restore_command: \
         '{pb_s} wal-fetch \"%f\" \"%p\"', recovery_target_action: promote}}}}"
    );
    let (mut restored, _) = start_cluster_m0_first(lab, &ns, "ledger-r", false, 1, |spec| {
        spec.env = env.clone();
        spec.bootstrap_extra
            .insert("method".into(), "restore".into());
        spec.bootstrap_extra
            .insert("restore".into(), method.clone());
    })
    .await;
    let count = query(&restored[0], "select count(*) from ledger");
    let log = std::fs::read_to_string(&restored[0].log).unwrap_or_default();
    assert_eq!(
        count.as_deref(),
        Some("600"),
        "rows after the restore\n{log}"
    );
    stop_all(&mut restored);
    drop(s3);
}
