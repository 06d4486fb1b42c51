//! The lab's S3 server ([`S3Server`]: moto over TLS on a lab host) is a real repository for
//! both backup tools, driven directly with the options docs/backups.md ("Testing against
//! S3") lists: PostgreSQL on another host archives WAL into it, a base backup goes in, the
//! data directory is thrown away, and a restore from the bucket has every archived row.
//! `patroni-backup` builds on exactly these options; this test pins them down.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{init_tracing, run_ok};
use patroni_postgres::{BinDir, DEFAULT_BIN_DIR};
use patroni_testlab::{Host, Lab, S3Server, chown_to_pg_user, wait_until};

/// pg_ctl's wait for start and stop (a restore replays archived WAL first).
const PG_CTL_TIMEOUT_SECS: &str = "120";
/// How long an archived segment may take to show in `pg_stat_archiver`.
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a restored server may take to finish recovery and promote.
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(120);
/// The pgBackRest stanza / Barman server name.
const NAME: &str = "demo";

/// One PostgreSQL data directory on a lab host, run with pg_ctl as postgres, its socket in
/// `dir`, with `env` (the tools' settings) in the postmaster's environment, so that
/// `archive_command` and `restore_command` see them.
struct Pg<'a> {
    host: &'a Host,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

// === impl Pg ===

impl Pg<'_> {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn bin(program: &str) -> PathBuf {
        BinDir::new(Some(Path::new(DEFAULT_BIN_DIR))).program(program)
    }

    /// A command run on the host as postgres, with the tools' environment.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = self.host.command_as("postgres", program);
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    /// initdb, then `settings` appended to postgresql.conf.
    fn init(&self, settings: &str) {
        run_ok(
            "initdb",
            self.command(Self::bin("initdb"))
                .arg("-D")
                .arg(self.data())
                .args(["-A", "trust", "-U", "postgres", "--no-sync"]),
        );
        self.append_conf(settings);
    }

    fn append_conf(&self, settings: &str) {
        let conf = self.data().join("postgresql.conf");
        let text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
        std::fs::write(
            &conf,
            format!(
                "{text}\nlisten_addresses = ''\nunix_socket_directories = '{}'\n{settings}\n",
                self.dir.display()
            ),
        )
        .expect("write postgresql.conf");
    }

    fn pg_ctl(&self, args: &[&str]) {
        run_ok(
            "pg_ctl",
            self.command(Self::bin("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.join("postgres.log"))
                .args(["-t", PG_CTL_TIMEOUT_SECS, "-w"])
                .args(args),
        );
    }

    fn sql(&self, sql: &str) -> String {
        run_ok(
            &format!("psql -c {sql}"),
            self.command(Self::bin("psql"))
                .args(["-X", "-At", "-h"])
                .arg(&self.dir)
                .args(["-U", "postgres", "-d", "postgres", "-c", sql]),
        )
        .trim()
        .to_owned()
    }

    /// Switches WAL and waits until the segment holding everything so far is archived.
    async fn archive_all(&self) {
        let segment = self.sql("select pg_walfile_name(pg_switch_wal())");
        wait_until(ARCHIVE_TIMEOUT, format!("{segment} archived"), || async {
            let last = self.sql("select coalesce(last_archived_wal, '') from pg_stat_archiver");
            (last.as_str() >= segment.as_str()).then_some(())
        })
        .await
        .unwrap_or_else(|e| {
            let log = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
            panic!("{e}\n{log}")
        });
    }

    /// Stops the server at once and throws its data directory away (the total loss).
    fn lose(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
        std::fs::remove_dir_all(self.data()).expect("remove the data directory");
        std::fs::create_dir(self.data()).expect("create an empty data directory");
        chown_to_pg_user(&self.data()).expect("chown the data directory");
        std::fs::set_permissions(self.data(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod the data directory");
    }

    /// Starts a restored data directory and waits until recovery ended and it promoted.
    async fn start_restored(&self) {
        self.pg_ctl(&["start"]);
        wait_until(
            PROMOTE_TIMEOUT,
            "the restored server promoted".into(),
            || async { (self.sql("select pg_is_in_recovery()") == "f").then_some(()) },
        )
        .await
        .expect("promoted");
    }
}

/// A tempdir owned by postgres (data directories, sockets).
fn pg_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    chown_to_pg_user(dir.path()).expect("chown the tempdir");
    dir
}

/// pgBackRest's options for `s3`, as environment variables (`PGBACKREST_*`), with small
/// files bundled (`repo1-bundle`: a base backup is then a few dozen objects, not ~1,000).
fn pgbackrest_env(s3: &S3Server, data: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("STANZA", NAME.to_owned()),
        ("REPO1_TYPE", "s3".into()),
        ("REPO1_S3_BUCKET", s3.bucket().into()),
        ("REPO1_S3_ENDPOINT", s3.ip().into()),
        ("REPO1_STORAGE_PORT", s3.port().to_string()),
        ("REPO1_S3_REGION", patroni_testlab::S3_REGION.into()),
        ("REPO1_S3_KEY", patroni_testlab::S3_ACCESS_KEY_ID.into()),
        (
            "REPO1_S3_KEY_SECRET",
            patroni_testlab::S3_SECRET_ACCESS_KEY.into(),
        ),
        ("REPO1_S3_URI_STYLE", "path".into()),
        ("REPO1_STORAGE_CA_FILE", s3.ca_file().display().to_string()),
        ("REPO1_PATH", "/pgbackrest".into()),
        ("REPO1_BUNDLE", "y".into()),
        ("REPO1_RETENTION_FULL", "2".into()),
        ("PG1_PATH", data.display().to_string()),
        ("LOG_LEVEL_FILE", "off".into()),
        ("LOG_LEVEL_CONSOLE", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("PGBACKREST_{k}"), v))
    .collect();
    env.push((
        "PGBACKREST_PG1_SOCKET_PATH".into(),
        data.parent()
            .expect("data has a parent")
            .display()
            .to_string(),
    ));
    env
}

/// pgBackRest archives WAL into the S3 server, backs up into it, and a data directory
/// restored from it after the original is gone has every row committed before the last
/// archived segment; the server's certificate verifies (and `verify-tls=n` also works).
#[tokio::test]
async fn pgbackrest_restores_every_archived_row_from_the_s3_server() {
    init_tracing();
    let lab = Lab::shared();
    let s3_host = lab.host("s3-pgbr").expect("host");
    let pg_host = lab.host("pg-pgbr").expect("host");
    let s3 = S3Server::start_on(&s3_host, "backups").expect("S3 server");
    let dir = pg_dir();
    let pg = Pg {
        host: &pg_host,
        dir: dir.path().to_owned(),
        env: pgbackrest_env(&s3, &dir.path().join("data")),
    };
    {
        tracing::info!("--- archive into S3 and take a full backup");
        pg.init("archive_mode = on\narchive_command = 'pgbackrest archive-push %p'");
        pg.pg_ctl(&["start"]);
        run_ok(
            "stanza-create",
            pg.command("pgbackrest").arg("stanza-create"),
        );
        pg.sql("create table t (i int); insert into t values (1)");
        run_ok(
            "backup",
            pg.command("pgbackrest")
                .args(["--type=full", "--start-fast", "backup"]),
        );
        pg.sql("insert into t values (2)");
        pg.archive_all().await;
        let info = run_ok("info", pg.command("pgbackrest").arg("info"));
        assert!(info.contains("full backup"), "{info}");
    }
    {
        tracing::info!("--- without verification the same server answers too");
        let listed = run_ok(
            "repo-ls without verification",
            pg.command("pgbackrest")
                .env_remove("PGBACKREST_REPO1_STORAGE_CA_FILE")
                .env("PGBACKREST_REPO1_STORAGE_VERIFY_TLS", "n")
                .args(["repo-ls", "backup"]),
        );
        assert!(listed.contains(NAME), "{listed}");
    }
    {
        tracing::info!("--- lose the data directory, restore from S3");
        pg.lose();
        run_ok("restore", pg.command("pgbackrest").arg("restore"));
        pg.start_restored().await;
        assert_eq!(
            pg.sql("select string_agg(i::text, ',' order by i) from t"),
            "1,2"
        );
    }
}

/// Barman Cloud archives WAL into the S3 server (`--endpoint-url`, the CA in
/// `AWS_CA_BUNDLE`), backs up into it, lists the backup, and a data directory restored from
/// it with `barman-cloud-wal-restore` as `restore_command` has every archived row.
#[tokio::test]
async fn barman_cloud_restores_every_archived_row_from_the_s3_server() {
    init_tracing();
    let lab = Lab::shared();
    let s3_host = lab.host("s3-barman").expect("host");
    let pg_host = lab.host("pg-barman").expect("host");
    let s3 = S3Server::start_on(&s3_host, "backups").expect("S3 server");
    let dir = pg_dir();
    let env = s3
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let pg = Pg {
        host: &pg_host,
        dir: dir.path().to_owned(),
        env,
    };
    let endpoint = s3.endpoint_url();
    let url = format!("s3://{}/barman", s3.bucket());
    let backup_id = {
        tracing::info!("--- archive into S3 and take a backup");
        pg.init(&format!(
            "archive_mode = on\narchive_command = \
             'barman-cloud-wal-archive --endpoint-url {endpoint} {url} {NAME} %p'"
        ));
        pg.pg_ctl(&["start"]);
        pg.sql("create table t (i int); insert into t values (1)");
        run_ok(
            "barman-cloud-backup",
            pg.command("barman-cloud-backup")
                .args(["--endpoint-url", &endpoint, "--immediate-checkpoint", "-h"])
                .arg(&pg.dir)
                .args(["-U", "postgres", &url, NAME]),
        );
        pg.sql("insert into t values (2)");
        pg.archive_all().await;
        let list = run_ok(
            "barman-cloud-backup-list",
            pg.command("barman-cloud-backup-list").args([
                "--format",
                "json",
                "--endpoint-url",
                &endpoint,
                &url,
                NAME,
            ]),
        );
        let list: serde_json::Value = serde_json::from_str(&list).expect("backup list JSON");
        let backups = list["backups_list"].as_array().expect("backups_list");
        assert_eq!(backups.len(), 1, "{list}");
        assert_eq!(backups[0]["status"], "DONE", "{list}");
        backups[0]["backup_id"]
            .as_str()
            .expect("backup_id")
            .to_owned()
    };
    {
        tracing::info!("--- lose the data directory, restore from S3");
        pg.lose();
        run_ok(
            "barman-cloud-restore",
            pg.command("barman-cloud-restore")
                .args(["--endpoint-url", &endpoint, &url, NAME, &backup_id])
                .arg(pg.data()),
        );
        pg.append_conf(&format!(
            "restore_command = 'barman-cloud-wal-restore --endpoint-url {endpoint} {url} {NAME} %f %p'"
        ));
        run_ok(
            "recovery.signal",
            pg.command("touch").arg(pg.data().join("recovery.signal")),
        );
        pg.start_restored().await;
        assert_eq!(
            pg.sql("select string_agg(i::text, ',' order by i) from t"),
            "1,2"
        );
    }
}
