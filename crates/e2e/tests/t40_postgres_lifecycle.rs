//! The PostgreSQL lifecycle the HA agent drives, against real PostgreSQL 15 on two lab hosts,
//! every program run as the unprivileged `postgres` user inside its host (the crate's
//! `Launcher`): bootstrap a primary with `initdb`, clone a streaming replica with
//! `pg_basebackup`, promote it, demote the old primary, `pg_rewind` it and make it follow the
//! new primary, crash detection, and the refusal to `initdb` over data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{User, chown};
use patroni_config::{Address, PgUser, ToolOption};
use patroni_postgres::{
    BASEBACKUP_RETRY_DELAY, BinDir, ClusterState, ConnParams, DEFAULT_BIN_DIR, DataDirState,
    FollowSpec, InitdbError, InstanceSpec, Launcher, PgClient, Postgres, PostmasterStatus,
    Programs, RecoveryConf, ReplicaMethod, ServerParameters, ServerParametersInput, StopMode,
    UpstreamAddress, create_replication_users, run_post_bootstrap, set_superuser_password,
    slot_name_from_member_name,
};
use patroni_testlab::{Host, Lab, wait_until};
use tokio::time::Instant;

/// Scope of the test cluster (`cluster_name`).
const SCOPE: &str = "t40";
/// PostgreSQL's port on every host.
const PORT: u16 = 5432;
/// How long a start may take (crash recovery of a fresh cluster is quick).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast stop may take before escalating.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `pg_ctl promote` may wait for the end of recovery.
const PROMOTE_WAIT: Duration = Duration::from_secs(60);
/// How long a change may take to reach a standby.
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);
/// The lab network: replication and superuser connections from other hosts need a password.
const PG_HBA: [&str; 3] = [
    "local all all trust",
    "host replication replicator 10.213.0.0/16 scram-sha-256",
    "host all all 10.213.0.0/16 scram-sha-256",
];

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}

fn superuser() -> PgUser {
    PgUser {
        username: "postgres".into(),
        password: Some("su-secret".into()),
        params: BTreeMap::new(),
    }
}

/// A password with every character the conninfo and .pgpass escaping must handle.
fn replicator() -> PgUser {
    PgUser {
        username: "replicator".into(),
        password: Some("rep pass:'\\x".into()),
        params: BTreeMap::new(),
    }
}

/// One member: a lab host, its directory (socket directory and password file; data below it),
/// and the instance the agent would drive.
struct Member {
    host: Host,
    name: String,
    base: PathBuf,
    pg: Postgres,
    params: ServerParameters,
}

impl Member {
    fn new(host: Host, name: &str, root: &Path) -> Self {
        let base = root.join(name);
        std::fs::create_dir(&base).expect("create member directory");
        give_to_postgres(&base);
        let programs = Programs::new(
            BinDir::new(Some(Path::new(DEFAULT_BIN_DIR))),
            Launcher::netns_as(host.netns(), "postgres"),
        );
        let layout = patroni_postgres::Layout::new(base.join("data"), base.join("pgpass"));
        let socket_dir = base.to_string_lossy().into_owned();
        let local: BTreeMap<String, serde_json::Value> =
            BTreeMap::from([("unix_socket_directories".into(), socket_dir.clone().into())]);
        let listen = Address {
            host: host.ip().to_owned(),
            port: PORT,
        };
        let (params, warnings) = ServerParameters::build(&ServerParametersInput {
            scope: SCOPE,
            listen: &listen,
            major_version: 15,
            config_dir: layout.config_dir(),
            local: &local,
            dynamic: &BTreeMap::new(),
        });
        assert!(warnings.is_empty(), "{warnings:?}");
        let pg = Postgres::new(InstanceSpec {
            name: name.to_owned(),
            scope: SCOPE.to_owned(),
            programs,
            layout,
            major_version: 15,
            database: "postgres".into(),
            local: ConnParams::new()
                .with("host", socket_dir)
                .with("port", PORT.to_string()),
            superuser: superuser(),
            replication: replicator(),
            rewind: None,
        });
        Member {
            host,
            name: name.to_owned(),
            base,
            pg,
            params,
        }
    }

    /// Recovery settings following `leader`.
    fn following(&self, leader: &Member) -> RecoveryConf {
        let upstream = UpstreamAddress {
            host: leader.host.ip().to_owned(),
            port: PORT,
        };
        RecoveryConf::build(&FollowSpec {
            member_name: &self.name,
            upstream: Some(&upstream),
            replication: &replicator(),
            passfile: self.pg.spec().layout.pgpass(),
            use_slots: true,
            slot_name: None,
            extra: &BTreeMap::new(),
            major_version: 15,
            krbsrvname: None,
        })
    }

    async fn client(&self) -> PgClient {
        self.pg
            .connect()
            .await
            .expect("connect over the Unix socket")
    }
}

fn give_to_postgres(path: &Path) {
    let pg = User::from_name("postgres")
        .expect("passwd lookup")
        .expect("a postgres OS user");
    chown(path, Some(pg.uid), Some(pg.gid)).expect("chown to postgres");
}

async fn count(client: &PgClient, sql: &str) -> i64 {
    client
        .inner()
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Waits until `sql` (a count) returns `want` on `member`.
async fn wait_count(member: &Member, sql: &str, want: i64) {
    let client = member.client().await;
    wait_until(
        REPLICATION_TIMEOUT,
        format!("{sql} = {want} on {}", member.name),
        || async { (count(&client, sql).await == want).then_some(()) },
    )
    .await
    .expect("change replicated");
}

/// A primary bootstrapped with initdb streams to a replica cloned with pg_basebackup; the
/// replica is promoted; the old primary, diverged meanwhile, is demoted, rewound and follows
/// the new primary without the diverged change; crashes are detected; initdb refuses data.
#[tokio::test]
async fn primary_replica_promote_rewind_follow() {
    init_tracing();
    let lab = Lab::shared();
    let root = tempfile::tempdir().expect("tempdir");
    give_to_postgres(root.path());
    let mut a = Member::new(lab.host("pg40-a").expect("host a"), "pg40-a", root.path());
    let mut b = Member::new(lab.host("pg40-b").expect("host b"), "pg40-b", root.path());
    let mut timings = Vec::new();

    {
        tracing::info!("--- bootstrap: initdb on a, pg_hba, start as primary at a's address");
        let t = Instant::now();
        a.pg.initdb(&[
            ToolOption::Value {
                name: "encoding".into(),
                value: "UTF8".into(),
            },
            ToolOption::Flag("data-checksums".into()),
        ])
        .await
        .expect("initdb");
        timings.push(("initdb", t.elapsed()));
        a.pg.spec()
            .layout
            .write_pg_hba(&PG_HBA.map(String::from))
            .expect("write pg_hba.conf");
        let t = Instant::now();
        let status =
            a.pg.start(&a.params, None, START_TIMEOUT)
                .await
                .expect("start a");
        timings.push(("start primary", t.elapsed()));
        assert_eq!(status, PostmasterStatus::Ready);
        let conf = std::fs::read_to_string(a.pg.spec().layout.postgresql_conf()).expect("conf");
        assert!(
            conf.starts_with("# Do not edit this file manually!"),
            "{conf}"
        );
        assert!(
            a.pg.spec().layout.base_conf().exists(),
            "initdb's file became the base"
        );
    }
    {
        tracing::info!(
            "--- post-bootstrap: superuser password, post_bootstrap script, replication user, slot"
        );
        let client = a.client().await;
        set_superuser_password(&client, &superuser())
            .await
            .expect("superuser password");
        let psql = Path::new(DEFAULT_BIN_DIR).join("psql");
        run_post_bootstrap(
            &a.pg.spec().programs,
            &a.pg.spec().layout,
            &format!(
                "{} -X -q -v ON_ERROR_STOP=1 -c 'CREATE TABLE t (id int PRIMARY KEY, who text)'",
                psql.display()
            ),
            &a.pg.local_superuser(),
            "postgres",
        )
        .await
        .expect("post_bootstrap creates the table");
        create_replication_users(&client, &superuser(), &replicator(), None)
            .await
            .expect("replication user");
        let slot = slot_name_from_member_name(&b.name);
        assert_eq!(slot, "pg40_b");
        assert!(
            client
                .create_physical_slot(&slot)
                .await
                .expect("create slot")
        );
        assert!(
            !client
                .create_physical_slot(&slot)
                .await
                .expect("idempotent")
        );
        assert_eq!(count(&client, "SELECT count(*) FROM t").await, 0);
    }
    {
        tracing::info!("--- clone b from a with pg_basebackup, start b as a's standby");
        let t = Instant::now();
        let method =
            b.pg.clone_from(
                Some((a.host.ip(), PORT)),
                &[ReplicaMethod::Basebackup { options: vec![] }],
                BASEBACKUP_RETRY_DELAY,
            )
            .await
            .expect("pg_basebackup");
        timings.push(("pg_basebackup", t.elapsed()));
        assert_eq!(method, "basebackup");
        let recovery = b.following(&a);
        let t = Instant::now();
        let status =
            b.pg.start(&b.params, Some(&recovery), START_TIMEOUT)
                .await
                .expect("start b");
        timings.push(("start standby", t.elapsed()));
        assert_eq!(status, PostmasterStatus::Ready, "a hot standby says ready");
        assert!(b.client().await.is_in_recovery().await.expect("recovery"));
        assert!(b.pg.spec().layout.has_standby_signal());
    }
    {
        tracing::info!("--- a write on a reaches b over the slot; a's view of b");
        let client_a = a.client().await;
        client_a
            .inner()
            .batch_execute("INSERT INTO t VALUES (1, 'a')")
            .await
            .expect("insert on a");
        wait_count(&b, "SELECT count(*) FROM t WHERE id = 1", 1).await;
        let status = b.client().await.status().await.expect("b status");
        assert!(status.in_recovery);
        assert_eq!(status.timeline, 1);
        assert_eq!(status.wal_receiver.as_deref(), Some("streaming"));
        assert!(status.replay_lsn.is_some() && status.flush_lsn.is_none());
        let primary = client_a.status().await.expect("a status");
        assert!(!primary.in_recovery && primary.flush_lsn.is_some());
        let lsn = client_a.current_wal_lsn().await.expect("current lsn");
        assert!(lsn >= status.replay_lsn.unwrap_or_default());
        let stats = client_a
            .replication_stats()
            .await
            .expect("pg_stat_replication");
        assert_eq!(stats.len(), 1, "{stats:?}");
        assert_eq!(stats[0].application_name, "pg40-b");
        assert_eq!(stats[0].usename.as_deref(), Some("replicator"));
        assert_eq!(
            stats[0].client_addr.as_deref(),
            Some(b.host.ip().to_string().as_str())
        );
        let slots = client_a.replication_slots().await.expect("slots");
        assert!(
            slots
                .iter()
                .any(|s| s.name == "pg40_b" && s.active && s.slot_type == "physical"),
            "{slots:?}"
        );
    }
    {
        tracing::info!(
            "--- from inside host b, over TCP with the superuser's password, a answers at its address"
        );
        let params = ConnParams::for_user(a.host.ip(), PORT, &superuser());
        let a_ip = a.host.ip().to_owned();
        let addr = b
            .host
            .run_inside(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    let client = PgClient::connect(&params)
                        .await
                        .expect("TCP connect from b");
                    let row = client
                        .inner()
                        .query_one("SELECT inet_server_addr()::text", &[])
                        .await
                        .expect("query");
                    row.get::<_, String>(0)
                })
            })
            .expect("run inside b");
        assert_eq!(addr, format!("{a_ip}/32"));
    }
    {
        tracing::info!("--- promote b; checkpoint so a can rewind from it");
        let t = Instant::now();
        b.pg.promote(Some(PROMOTE_WAIT))
            .await
            .expect("pg_ctl promote");
        timings.push(("promote", t.elapsed()));
        let client_b = b.client().await;
        let status = client_b.status().await.expect("b status");
        assert!(!status.in_recovery);
        assert_eq!(status.timeline, 2);
        assert!(
            !b.pg.spec().layout.has_standby_signal(),
            "PostgreSQL removes the signal"
        );
        client_b.checkpoint().await.expect("checkpoint");
        client_b
            .inner()
            .batch_execute("INSERT INTO t VALUES (2, 'b')")
            .await
            .expect("insert on b");
        assert!(
            client_b
                .create_physical_slot("pg40_a")
                .await
                .expect("slot for a")
        );
    }
    {
        tracing::info!("--- split brain: a (still primary) diverges, then is demoted to follow b");
        a.client()
            .await
            .inner()
            .batch_execute("INSERT INTO t VALUES (3, 'diverged')")
            .await
            .expect("insert on a");
        let recovery = a.following(&b);
        let status =
            a.pg.demote(
                StopMode::Fast,
                Some(STOP_TIMEOUT),
                &a.params,
                &recovery,
                START_TIMEOUT,
            )
            .await
            .expect("demote a");
        assert_eq!(status, PostmasterStatus::Ready);
        assert!(a.client().await.is_in_recovery().await.expect("recovery"));
    }
    {
        tracing::info!("--- rewind a from b and start it as b's standby");
        let stopped =
            a.pg.stop(StopMode::Fast, Some(STOP_TIMEOUT))
                .await
                .expect("stop a")
                .expect("a was running");
        assert_eq!(stopped.escalated, None);
        let cd = a.pg.controldata().await.expect("pg_controldata a");
        assert_eq!(cd.state().expect("state"), ClusterState::ShutDownInRecovery);
        assert_eq!(cd.checkpoint_timeline().expect("timeline"), 1);
        assert!(cd.rewind_possible());
        assert!(cd.data_checksums());
        let sysid = cd.system_identifier().expect("sysid");
        let t = Instant::now();
        a.pg.rewind_from(b.host.ip(), PORT, &[], false)
            .await
            .expect("pg_rewind");
        timings.push(("pg_rewind", t.elapsed()));
        let recovery = a.following(&b);
        let status =
            a.pg.start(&a.params, Some(&recovery), START_TIMEOUT)
                .await
                .expect("start a after rewind");
        assert_eq!(status, PostmasterStatus::Ready);
        wait_count(&a, "SELECT count(*) FROM t WHERE id = 2", 1).await;
        let client_a = a.client().await;
        assert_eq!(
            count(&client_a, "SELECT count(*) FROM t WHERE id = 3").await,
            0,
            "the diverged write is gone"
        );
        let status = client_a.status().await.expect("a status");
        assert!(status.in_recovery);
        assert_eq!(status.timeline, 2);
        let stats = b
            .client()
            .await
            .replication_stats()
            .await
            .expect("b's standbys");
        assert_eq!(
            stats
                .iter()
                .map(|s| s.application_name.as_str())
                .collect::<Vec<_>>(),
            ["pg40-a"]
        );
        let cd_b = b.pg.controldata().await.expect("pg_controldata b");
        assert_eq!(
            cd_b.system_identifier().expect("sysid"),
            sysid,
            "one cluster"
        );
    }
    {
        tracing::info!("--- crash detection: b's postmaster killed; a stopped fast");
        let pid = b.pg.pid().expect("b runs");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL)
            .expect("kill b");
        let crash = wait_until(Duration::from_secs(10), "b's crash seen".into(), || {
            let crash = b.pg.take_crash();
            async move { crash }
        })
        .await
        .expect("crash detected");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(crash.and_then(|s| s.signal()), Some(9));
        assert!(!b.pg.is_running());
        let stopped =
            a.pg.stop(StopMode::Fast, Some(STOP_TIMEOUT))
                .await
                .expect("stop a")
                .expect("a was running");
        assert!(stopped.status.is_some_and(|s| s.success()));
        assert_eq!(
            a.pg.controldata()
                .await
                .expect("pg_controldata")
                .state()
                .expect("state"),
            ClusterState::ShutDownInRecovery
        );
    }
    {
        tracing::info!("--- initdb never runs over data");
        match a.pg.initdb(&[]).await {
            Err(InitdbError::DataDirNotEmpty { state, .. }) => {
                assert_eq!(state, DataDirState::Initialized { major_version: 15 });
            }
            other => panic!("initdb over data: {other:?}"),
        }
        assert!(a.base.join("data/PG_VERSION").exists());
    }
    for (what, took) in &timings {
        tracing::info!("timing: {what} took {took:?}");
        eprintln!("timing: {what} took {took:?}");
    }
}
