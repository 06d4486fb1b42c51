//! PostgreSQL runs on a lab host like in a pod: as an unprivileged user, on
//! :5432 at the host's own address, reachable from the other hosts.

use std::path::Path;
use std::process::{Child, Output};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, chown};
use patroni_postgres::{BinDir, DEFAULT_BIN_DIR, PostmasterPid};
use patroni_testlab::{Host, Lab, wait_until};

/// PostgreSQL may take this long to accept connections after a fresh initdb.
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn init_tracing() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
}

fn run_ok(what: &str, out: std::io::Result<Output>) -> String {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `psql -c SQL` on `from` against `to_ip`:5432.
fn psql(from: &Host, to_ip: &str, sql: &str) -> std::io::Result<Output> {
    let bin = BinDir::new(Some(Path::new(DEFAULT_BIN_DIR)));
    from.command_as("postgres", bin.program("psql"))
        .args([
            "-X",
            "-At",
            "-d",
            &format!("host={to_ip} port=5432 user=postgres dbname=postgres connect_timeout=3"),
            "-c",
            sql,
        ])
        .output()
}

/// initdb and start PostgreSQL 15 on `host`, data under `dir` (owned by postgres).
fn start_postgres(host: &Host, dir: &Path) -> Child {
    let bin = BinDir::new(Some(Path::new(DEFAULT_BIN_DIR)));
    let data = dir.join("data");
    run_ok(
        "initdb",
        host.command_as("postgres", bin.program("initdb"))
            .args(["-D"])
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "--no-instructions",
            ])
            .output(),
    );
    let hba = std::fs::read_to_string(data.join("pg_hba.conf")).expect("read pg_hba.conf");
    std::fs::write(
        data.join("pg_hba.conf"),
        format!("{hba}\nhost all all 10.213.0.0/16 trust\n"),
    )
    .expect("write pg_hba.conf");
    host.command_as("postgres", bin.program("postgres"))
        .arg("-D")
        .arg(&data)
        .args([
            "-c",
            &format!("listen_addresses={}", host.ip()),
            "-c",
            "port=5432",
        ])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("postgres.log")).expect("log file"))
        .spawn()
        .expect("spawn postgres")
}

/// A PostgreSQL server started on one member host accepts connections from
/// another member host at its lab address, and stops being reachable while
/// its host is cut off the network.
#[tokio::test]
async fn postgres_on_one_host_serves_another_host_at_its_address() {
    init_tracing();
    let lab = Lab::shared();
    let a = lab.host("pg-a").expect("host a");
    let b = lab.host("pg-b").expect("host b");
    let dir = tempfile::tempdir().expect("tempdir");
    let pg = User::from_name("postgres")
        .expect("passwd lookup")
        .expect("a postgres OS user");
    chown(dir.path(), Some(pg.uid), Some(pg.gid)).expect("chown the data parent to postgres");

    let mut child = {
        tracing::info!("--- initdb and start PostgreSQL on host a, as postgres");
        let child = start_postgres(&a, dir.path());
        let data = dir.path().join("data");
        let pid = child.id();
        wait_until(
            START_TIMEOUT,
            "postmaster.pid says ready".into(),
            || async {
                PostmasterPid::read(&data)
                    .ok()
                    .filter(|p| p.pid == pid && p.accepts_connections())
            },
        )
        .await
        .expect("postgres ready");
        child
    };
    {
        tracing::info!("--- host b connects to host a's address on 5432");
        let addr = run_ok("psql from b", psql(&b, a.ip(), "select inet_server_addr()"));
        assert_eq!(addr, a.ip());
        let user = run_ok(
            "psql from b",
            psql(
                &b,
                a.ip(),
                "select current_setting('data_directory') is not null, session_user",
            ),
        );
        assert_eq!(user, "t|postgres");
        let server_user = run_ok(
            "ps",
            std::process::Command::new("ps")
                .args(["-o", "user=", "-p", &child.id().to_string()])
                .output(),
        );
        assert_eq!(server_user, "postgres", "PostgreSQL must run unprivileged");
    }
    {
        tracing::info!("--- host a cut off: b cannot connect; plugged back: b can");
        a.disconnect().expect("disconnect a");
        let out = psql(&b, a.ip(), "select 1").expect("run psql");
        assert!(
            !out.status.success(),
            "a cut-off host must not be reachable"
        );
        a.reconnect().expect("reconnect a");
        let one = wait_until(
            Duration::from_secs(10),
            "a reachable again".into(),
            || async {
                psql(&b, a.ip(), "select 1")
                    .ok()
                    .filter(|o| o.status.success())
            },
        )
        .await
        .expect("reachable after reconnect");
        assert_eq!(String::from_utf8_lossy(&one.stdout).trim(), "1");
    }
    {
        tracing::info!("--- fast shutdown by pid");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("signal postgres");
        let status = child.wait().expect("wait postgres");
        assert!(status.success(), "postgres exited with {status}");
    }
}
