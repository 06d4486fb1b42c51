//! Issue #12, the start-up bugs a Patroni user meets on day one, each with the real agent on
//! lab hosts, running as the postgres OS user as Patroni's samples do:
//! - the password file in `/tmp` (owned by root, as in Patroni's `postgres0.yml`) and a
//!   data directory whose parents do not exist yet: the cluster bootstraps;
//! - a bootstrap that fails (initdb cannot create the data directory) ends the agent with
//!   Patroni's "Failed to bootstrap cluster" instead of retrying forever;
//! - a second agent with the name of a running member refuses to start, and the running
//!   leader keeps its lock;
//! - `watchdog.mode: required` without a watchdog: the member never holds the lock;
//! - a postmaster that dies while the cluster is paused is `stopped`, not `crashed`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::*;
use common::*;
use patroni_testlab::{AgentSpec, Host, Lab, TestNamespace, chown_to_pg_user};

/// One agent started from `spec` on `host`, its YAML passed through `edit` first.
struct Agent {
    child: std::process::Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start(
        host: &Host,
        spec: &AgentSpec,
        kubeconfig: &Path,
        edit: impl Fn(String) -> String,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        chown_to_pg_user(dir.path()).expect("chown");
        let yaml = edit(spec.render(host.ip(), dir.path()));
        let config = dir.path().join("patroni.yml");
        std::fs::write(&config, yaml).expect("write config");
        chown_to_pg_user(&config).expect("chown config");
        let log = dir.path().join("patroni.log");
        let child = host
            .spawn_agent(&agent_binary(), &config, kubeconfig, &log)
            .expect("start agent");
        Self {
            child,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for the agent to exit (it stops PostgreSQL first).
    async fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        assert!(
            self.exit_code(Duration::from_secs(60)).await.is_some(),
            "agent did not stop"
        );
    }

    /// Starts the agent again with the same configuration and data directory.
    fn restart(&mut self, host: &Host, kubeconfig: &Path) {
        let config = self._dir.path().join("patroni.yml");
        self.child = host
            .spawn_agent(&agent_binary(), &config, kubeconfig, &self.log)
            .expect("restart agent");
    }

    /// Waits up to `timeout` for the agent to exit; its exit code.
    async fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn setup(
    lab: &Lab,
    name: &str,
    scope: &str,
    n: usize,
) -> (TestNamespace, Vec<Host>, PathBuf) {
    let ns = lab.namespace(name).await.expect("namespace");
    let hosts = member_pods(lab, &ns, scope, n).await;
    let kubeconfig = restricted_kubeconfig(lab, &ns.name, false, true, 0).await;
    (ns, hosts, kubeconfig)
}

fn spec(ns: &TestNamespace, scope: &str, name: &str) -> AgentSpec {
    let mut spec = AgentSpec::new(scope, name, &ns.name, false);
    (spec.ttl, spec.loop_wait, spec.retry_timeout) = (TTL, LOOP_WAIT, RETRY_TIMEOUT);
    spec
}

/// The value of the `postgresql` setting `key` in `yaml` (as `AgentSpec` renders it).
fn setting(yaml: &str, key: &str) -> String {
    let prefix = format!("  {key}: ");
    yaml.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_default()
        .to_owned()
}

/// `yaml` with the `postgresql` setting `key` set to `value`.
fn set(yaml: &str, key: &str, value: &str) -> String {
    let prefix = format!("  {key}: ");
    yaml.lines()
        .map(|l| {
            if l.starts_with(&prefix) {
                format!("{prefix}{value}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A DCS client of `scope` in `ns` that only reads (named after no member).
async fn observer(lab: &Lab, ns: &TestNamespace, scope: &str) -> patroni_dcs::KubernetesDcs {
    dcs(
        lab,
        scope,
        "observer",
        kubernetes_config(&ns.name, false),
        Duration::from_secs(30),
    )
    .await
}

/// Waits until `spec`'s PostgreSQL on `host` accepts writes, failing with `agent`'s log.
async fn until_primary(host: &Host, spec: &AgentSpec, agent: &Agent) {
    let ok =
        patroni_testlab::wait_until(FORM_TIMEOUT, format!("{} primary", spec.name), || async {
            (query(host, spec, "select pg_is_in_recovery()")? == "f").then_some(())
        })
        .await;
    assert!(ok.is_ok(), "{ok:?}\n{}", agent.log());
}

/// `psql` to `host` as the superuser of `spec`.
fn query(host: &Host, spec: &AgentSpec, q: &str) -> Option<String> {
    sql(host, host, spec, q)
}

/// The password file in `/tmp` (root's directory, sticky) and a data directory three levels
/// below an existing one: the member bootstraps and accepts writes.
#[tokio::test]
async fn pgpass_in_tmp_and_missing_data_dir_parents_bootstrap() {
    init_tracing();
    let lab = Lab::shared();
    let scope = "pgpass";
    let (ns, hosts, kubeconfig) = setup(lab, "t53-pgpass", scope, 1).await;
    let spec = spec(&ns, scope, "m0");
    let pgpass = format!("/tmp/pgpass-t53-{}", std::process::id());
    let agent = Agent::start(&hosts[0], &spec, &kubeconfig, |yaml| {
        let data = setting(&yaml, "data_dir").replace("/data", "/missing/parents/data");
        let yaml = set(&yaml, "pgpass", &pgpass);
        set(&yaml, "data_dir", &data)
    });
    let yaml = std::fs::read_to_string(agent._dir.path().join("patroni.yml")).expect("config");
    assert!(yaml.contains(&format!("pgpass: {pgpass}")), "{yaml}");
    until_primary(&hosts[0], &spec, &agent).await;
    let _ = std::fs::remove_file(&pgpass);
}

/// initdb cannot create the data directory (its parent belongs to root): the agent ends with
/// Patroni's "Failed to bootstrap cluster" and gives the initialize key back.
#[tokio::test]
async fn a_failed_bootstrap_ends_the_agent() {
    init_tracing();
    let lab = Lab::shared();
    let scope = "failboot";
    let (ns, hosts, kubeconfig) = setup(lab, "t53-failboot", scope, 1).await;
    let spec = spec(&ns, scope, "m0");
    let forbidden = tempfile::tempdir().expect("tempdir");
    let data = forbidden.path().join("data");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(forbidden.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    let mut agent = Agent::start(&hosts[0], &spec, &kubeconfig, |yaml| {
        set(&yaml, "data_dir", &data.display().to_string())
    });
    let code = agent.exit_code(Duration::from_secs(90)).await;
    let log = agent.log();
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("Failed to bootstrap cluster"), "{log}");
    let node = observer(lab, &ns, scope).await;
    let view = node.get_cluster().await.expect("view");
    assert_eq!(view.initialize, None, "the initialize key is given back");
}

/// A second agent named like the running leader refuses to start with Patroni's message; the
/// leader keeps its lock (its `acquireTime` and `transitions` do not move).
#[tokio::test]
async fn a_duplicate_member_name_refuses_to_start() {
    init_tracing();
    let lab = Lab::shared();
    let scope = "dup";
    let (ns, hosts, kubeconfig) = setup(lab, "t53-dup", scope, 2).await;
    let spec0 = spec(&ns, scope, "m0");
    let leader = Agent::start(&hosts[0], &spec0, &kubeconfig, |y| y);
    until_primary(&hosts[0], &spec0, &leader).await;
    let node = observer(lab, &ns, scope).await;
    wait_for_leader(&node, "m0").await;
    let before = record(&ns, scope).await;
    {
        tracing::info!("--- a second agent named m0 on another host");
        let mut duplicate = Agent::start(&hosts[1], &spec0, &kubeconfig, |y| y);
        let code = duplicate.exit_code(Duration::from_secs(60)).await;
        let log = duplicate.log();
        assert_eq!(code, Some(1), "{log}");
        assert!(
            log.contains("Can't start; there is already a node named 'm0' running"),
            "{log}"
        );
    }
    tokio::time::sleep(Duration::from_secs(u64::from(2 * LOOP_WAIT))).await;
    assert_eq!(
        node.get_cluster().await.expect("view").leader_name(),
        Some("m0")
    );
    let after = record(&ns, scope).await;
    assert_eq!(
        (before.0, before.1),
        (after.0, after.1),
        "the leader's acquireTime and transitions\n{}",
        leader.log()
    );
}

/// `(acquireTime, transitions)` of the leader ConfigMap.
async fn record(ns: &TestNamespace, scope: &str) -> (String, String) {
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(ns.client.clone(), &ns.name);
    let a = api
        .get(&format!("{scope}-leader"))
        .await
        .expect("leader object")
        .metadata
        .annotations
        .unwrap_or_default();
    let get = |k: &str| a.get(k).cloned().unwrap_or_default();
    (get("acquireTime"), get("transitions"))
}

/// `watchdog.mode: required` and no watchdog: the only member bootstraps, cancels the
/// bootstrap as Patroni does ("watchdog activation failed"), and never holds the lock.
#[tokio::test]
async fn required_watchdog_without_a_device_never_leads() {
    init_tracing();
    let lab = Lab::shared();
    let scope = "wd";
    let (ns, hosts, kubeconfig) = setup(lab, "t53-watchdog", scope, 1).await;
    let spec = spec(&ns, scope, "m0");
    let mut agent = Agent::start(&hosts[0], &spec, &kubeconfig, |yaml| {
        format!("{yaml}watchdog:\n  mode: required\n")
    });
    let code = agent.exit_code(Duration::from_secs(90)).await;
    let log = agent.log();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("Cancelling bootstrap because watchdog activation failed"),
        "{log}"
    );
    let node = observer(lab, &ns, scope).await;
    let view = node.get_cluster().await.expect("view");
    assert!(!view.is_locked(), "{view:?}");
    assert_eq!(view.initialize, None);
}

/// In pause a postmaster that dies is reported `stopped` (Patroni), not `crashed`, and is
/// left stopped.
#[tokio::test]
async fn a_postmaster_that_dies_in_pause_is_stopped() {
    init_tracing();
    let lab = Lab::shared();
    let scope = "pause";
    let ns = lab.namespace("t53-pause").await.expect("namespace");
    let (mut members, _kubeconfig) = start_cluster(lab, &ns, scope, false, 2, |_| {}).await;
    let primary = wait_for(FORM_TIMEOUT, "a primary", &members, || {
        let w = writable(&members);
        (w.len() == 1).then(|| w[0].clone())
    })
    .await;
    let replica = members
        .iter()
        .position(|m| m.name != primary)
        .expect("replica");
    let m = &members[replica];
    wait_for(FORM_TIMEOUT, "the replica runs", &members, || {
        (sql(&m.host, &m.host, &m.spec, "select pg_is_in_recovery()")? == "t").then_some(())
    })
    .await;
    let api = |path: &str, method: &str, body: Option<&str>| {
        let mut cmd = m.host.command("curl");
        cmd.args(["-s", "-X", method]);
        if let Some(b) = body {
            cmd.args(["-d", b]);
        }
        cmd.arg(format!("http://{}:8008{path}", m.host.ip()));
        cmd.output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    {
        tracing::info!("--- pause, then kill -9 of the replica's postmaster");
        let answer = api("/config", "PATCH", Some(r#"{"pause": true}"#)).expect("PATCH /config");
        assert!(answer.contains("\"pause\""), "{answer}");
        wait_for(Duration::from_secs(30), "paused", &members, || {
            let doc: serde_json::Value =
                serde_json::from_str(&api("/patroni", "GET", None)?).ok()?;
            (doc["pause"] == true).then_some(())
        })
        .await;
        let pid = std::fs::read_to_string(m.config.with_file_name("data").join("postmaster.pid"))
            .expect("postmaster.pid");
        let pid: i32 = pid
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill postmaster");
    }
    {
        tracing::info!("--- the member reports stopped, not crashed, and stays stopped");
        wait_for(Duration::from_secs(30), "state stopped", &members, || {
            let doc: serde_json::Value =
                serde_json::from_str(&api("/patroni", "GET", None)?).ok()?;
            (doc["state"] == "stopped").then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(u64::from(2 * LOOP_WAIT))).await;
        let doc: serde_json::Value =
            serde_json::from_str(&api("/patroni", "GET", None).expect("status")).expect("json");
        assert_eq!(doc["state"], "stopped", "{doc}");
    }
    stop_all(&mut members);
}

/// `log` as Patroni's users configure it: JSON records with renamed fields and static fields
/// in `log.dir/patroni.log`, rotated at `file_size` keeping `file_num` files.
#[tokio::test]
async fn logging_follows_the_log_section() {
    init_tracing();
    let lab = Lab::shared();
    let scope = "logs";
    let (ns, hosts, kubeconfig) = setup(lab, "t53-logs", scope, 1).await;
    let spec = spec(&ns, scope, "m0");
    let logs = tempfile::tempdir().expect("tempdir");
    chown_to_pg_user(logs.path()).expect("chown");
    let dir = logs.path().join("patroni");
    let agent = Agent::start(&hosts[0], &spec, &kubeconfig, |yaml| {
        format!(
            "{yaml}log:\n  type: json\n  format: [asctime, {{levelname: level}}, message]\n  static_fields: {{app: t53}}\n  dir: {}\n  file_size: 1000\n  file_num: 2\n  mode: 0640\n",
            dir.display()
        )
    });
    until_primary(&hosts[0], &spec, &agent).await;
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    // Patroni's heartbeat: every cycle's message at INFO.
    let heartbeat =
        patroni_testlab::wait_until(Duration::from_secs(30), "heartbeat".into(), || async {
            read("patroni.log")
                .contains("no action. I am (m0), the leader with the lock")
                .then_some(())
        })
        .await;
    let all = format!(
        "{}{}{}",
        read("patroni.log.2"),
        read("patroni.log.1"),
        read("patroni.log")
    );
    assert!(
        dir.join("patroni.log.1").exists(),
        "rotated at 1000 bytes: {all}"
    );
    assert!(!dir.join("patroni.log.3").exists());
    for line in all.lines() {
        let record: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(record.len(), 4, "{line}");
        let at = |k: &str| line.find(&format!("\"{k}\": ")).unwrap_or(usize::MAX);
        let order = ["asctime", "level", "message", "app"].map(at);
        assert!(
            order.windows(2).all(|w| w[0] < w[1] && w[1] != usize::MAX),
            "fields in format order, then static ones: {line}"
        );
        assert!(
            line.starts_with("{\"asctime\": \""),
            "Python's spelling: {line}"
        );
    }
    assert!(heartbeat.is_ok(), "Patroni's heartbeat at INFO: {all}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.join("patroni.log"))
        .expect("log file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    assert!(agent.log().is_empty(), "nothing on stderr: {}", agent.log());
}

/// Custom bootstrap (`bootstrap.method`): a script restores another cluster's base backup,
/// recovery stops at the consistent point and promotes (`recovery_conf`); the new cluster has
/// the source's rows, its system identifier and a new timeline, and the script got Patroni's
/// arguments. A failing method never falls back to initdb.
#[tokio::test]
async fn custom_bootstrap_restores_a_backup_and_never_falls_back_to_initdb() {
    init_tracing();
    let lab = Lab::shared();
    let (ns, hosts, kubeconfig) = setup(lab, "t53-custom", "src", 1).await;
    let work = tempfile::tempdir().expect("tempdir");
    chown_to_pg_user(work.path()).expect("chown");
    let src = spec(&ns, "src", "m0");
    let source = Agent::start(&hosts[0], &src, &kubeconfig, |y| y);
    let ok = patroni_testlab::wait_until(FORM_TIMEOUT, "source bootstrapped".into(), || async {
        query(
            &hosts[0],
            &src,
            "create table restored as select generate_series(1, 500) v",
        )
    })
    .await;
    assert!(ok.is_ok(), "{ok:?}\n{}", source.log());
    let sysid = query(
        &hosts[0],
        &src,
        "select system_identifier from pg_control_system()",
    )
    .expect("sysid");
    let backup = work.path().join("backup");
    {
        tracing::info!("--- a base backup of the source cluster");
        base_backup(&hosts[0], &src, &backup).await;
    }
    let script = work.path().join("restore.sh");
    let args_file = work.path().join("restore-args");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\necho \"$@\" > {args}\nfor a in \"$@\"; do case \"$a\" in --datadir=*) d=\"${{a#--datadir=}}\";; esac; done\n\
             mkdir -p \"$d\"\ncp -a {backup}/. \"$d\"/\nchmod 700 \"$d\"\n",
            args = args_file.display(),
            backup = backup.display()
        ),
    )
    .expect("write script");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let (rns, restore_hosts, rkubeconfig) = setup(lab, "t53-custom-r", "restored", 1).await;
    let restored = spec(&rns, "restored", "m0");
    let method = |command: &str| {
        let command = command.to_owned();
        move |yaml: String| {
            yaml.replacen(
                "bootstrap:\n",
                &format!(
                    "bootstrap:\n  method: restore\n  restore:\n    command: {command}\n    target: latest\n    recovery_conf:\n      restore_command: 'false'\n      recovery_target: immediate\n      recovery_target_action: promote\n"
                ),
                1,
            )
        }
    };
    {
        tracing::info!("--- the restore method: the new cluster is the backup, promoted");
        let agent = Agent::start(
            &restore_hosts[0],
            &restored,
            &rkubeconfig,
            method(&script.display().to_string()),
        );
        let h = &restore_hosts[0];
        until_primary(h, &restored, &agent).await;
        assert_eq!(
            query(h, &restored, "select count(*) from restored").as_deref(),
            Some("500")
        );
        assert_eq!(
            query(
                h,
                &restored,
                "select system_identifier from pg_control_system()"
            ),
            Some(sysid.clone())
        );
        let node = observer(lab, &rns, "restored").await;
        let recorded = patroni_testlab::wait_until(
            Duration::from_secs(30),
            "sysid recorded".into(),
            || async { (node.get_cluster().await.ok()?.initialize? == sysid).then_some(()) },
        )
        .await;
        assert!(recorded.is_ok(), "{recorded:?}");
        let args = std::fs::read_to_string(&args_file).expect("the script ran");
        assert!(
            args.starts_with("--scope=restored --datadir=")
                && !args.contains("--command=")
                && args.contains("--target=latest"),
            "{args}"
        );
        assert!(
            agent.log().contains("Running custom bootstrap script"),
            "{}",
            agent.log()
        );
    }
    {
        tracing::info!("--- a method that fails: the agent stops, and no initdb cluster appears");
        let (fns, fail_hosts, fkubeconfig) = setup(lab, "t53-custom-f", "failing", 1).await;
        let failing = spec(&fns, "failing", "m0");
        let mut agent = Agent::start(&fail_hosts[0], &failing, &fkubeconfig, method("/bin/false"));
        let code = agent.exit_code(Duration::from_secs(60)).await;
        let log = agent.log();
        assert_eq!(code, Some(1), "{log}");
        assert!(log.contains("Failed to bootstrap cluster"), "{log}");
        assert!(!log.contains("initializing a new cluster"), "{log}");
        assert!(
            !agent._dir.path().join("data/PG_VERSION").exists(),
            "never initdb instead"
        );
    }
}

/// `patroni.dynamic.json` in the data directory holds the dynamic configuration, as Patroni
/// keeps it: written once the cluster exists and again when `PATCH /config` changes it, and
/// read at start-up: after a restart with the DCS's `config` gone, the leader writes back
/// the cached settings, not `bootstrap.dcs`.
#[tokio::test]
async fn the_dynamic_configuration_is_cached_in_the_data_directory() {
    init_tracing();
    let lab = Lab::shared();
    let scope = "cache";
    let (ns, hosts, kubeconfig) = setup(lab, "t53-cache", scope, 1).await;
    let spec = spec(&ns, scope, "m0");
    let agent = Agent::start(&hosts[0], &spec, &kubeconfig, |y| y);
    let cache = agent._dir.path().join("data/patroni.dynamic.json");
    let read = || -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(&cache).ok()?).ok()
    };
    let written = patroni_testlab::wait_until(FORM_TIMEOUT, "cache written".into(), || async {
        (read()?["ttl"] == TTL).then_some(())
    })
    .await;
    assert!(written.is_ok(), "{written:?}\n{}", agent.log());
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&cache)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let url = format!("http://{}:8008/config", hosts[0].ip());
    // PATCH /config answers 503 until the bootstrap wrote the configuration to the DCS.
    let patched =
        patroni_testlab::wait_until(Duration::from_secs(30), "PATCH /config".into(), || async {
            let out = hosts[0]
                .command("curl")
                .args([
                    "-s",
                    "-XPATCH",
                    &url,
                    "-d",
                    r#"{"postgresql": {"parameters": {"work_mem": "8MB"}}}"#,
                ])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("8MB")
                .then_some(())
        })
        .await;
    assert!(patched.is_ok(), "{patched:?}");
    let updated =
        patroni_testlab::wait_until(Duration::from_secs(30), "cache updated".into(), || async {
            (read()?["postgresql"]["parameters"]["work_mem"] == "8MB").then_some(())
        })
        .await;
    assert!(updated.is_ok(), "{updated:?}: {:?}", read());
    assert_eq!(read().expect("cache")["loop_wait"], LOOP_WAIT);

    // The cache wins over bootstrap.dcs at start-up: with the DCS's configuration gone (or
    // the DCS unreachable), the agent runs with the cluster's last settings, and the leader
    // writes those back, not its bootstrap defaults.
    let mut agent = agent;
    agent.stop().await;
    let configs: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(ns.client.clone(), &ns.name);
    configs
        .delete(&format!("{scope}-config"), &Default::default())
        .await
        .expect("delete the config object");
    agent.restart(&hosts[0], &kubeconfig);
    let restored =
        patroni_testlab::wait_until(FORM_TIMEOUT, "config written back".into(), || async {
            let cm = configs.get(&format!("{scope}-config")).await.ok()?;
            let config = cm.metadata.annotations?.get("config")?.clone();
            let config: serde_json::Value = serde_json::from_str(&config).ok()?;
            (config["postgresql"]["parameters"]["work_mem"] == "8MB").then_some(())
        })
        .await;
    assert!(restored.is_ok(), "{restored:?}\n{}", agent.log());
}

/// `pg_basebackup` of `host`'s cluster into `backup`, retried while the replication role of a
/// fresh cluster does not exist yet.
async fn base_backup(host: &Host, spec: &AgentSpec, backup: &Path) {
    let taken =
        patroni_testlab::wait_until(Duration::from_secs(30), "base backup".into(), || async {
            let _ = std::fs::remove_dir_all(backup);
            let out = host
                .command_as("postgres", "/usr/lib/postgresql/15/bin/pg_basebackup")
                .env("PGPASSWORD", &spec.replication_password)
                .arg("-D")
                .arg(backup)
                .args(["-X", "stream", "-U", "standby", "-h", host.ip()])
                .output()
                .ok()?;
            out.status.success().then_some(())
        })
        .await;
    assert!(taken.is_ok(), "{taken:?}");
}

/// A replica creation method with `no_leader: true` runs while the cluster has no leader: the
/// only member left restores a backup, starts, and takes over the leaderless cluster.
#[tokio::test]
async fn a_no_leader_replica_method_runs_without_a_leader() {
    init_tracing();
    let lab = Lab::shared();
    let scope = "noleader";
    let (ns, hosts, kubeconfig) = setup(lab, "t53-noleader", scope, 2).await;
    let work = tempfile::tempdir().expect("tempdir");
    chown_to_pg_user(work.path()).expect("chown");
    let first = spec(&ns, scope, "m0");
    let mut leader = Agent::start(&hosts[0], &first, &kubeconfig, |y| y);
    let ok = patroni_testlab::wait_until(FORM_TIMEOUT, "m0 bootstrapped".into(), || async {
        query(
            &hosts[0],
            &first,
            "create table kept as select generate_series(1, 300) v",
        )
    })
    .await;
    assert!(ok.is_ok(), "{ok:?}\n{}", leader.log());
    let backup = work.path().join("backup");
    base_backup(&hosts[0], &first, &backup).await;
    {
        tracing::info!("--- the only member stops (SIGTERM releases the lock)");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(leader.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        assert_eq!(leader.exit_code(Duration::from_secs(60)).await, Some(0));
    }
    let script = work.path().join("restore.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\nfor a in \"$@\"; do case \"$a\" in --datadir=*) d=\"${{a#--datadir=}}\";; esac; done\n\
             printf '%s\\n' \"$@\" > {}\n\
             mkdir -p \"$d\"\ncp -a {}/. \"$d\"/\nchmod 700 \"$d\"\n",
            work.path().join("args").display(),
            backup.display()
        ),
    )
    .expect("write script");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let second = spec(&ns, scope, "m1");
    let agent = Agent::start(&hosts[1], &second, &kubeconfig, |yaml| {
        yaml.replacen(
            "\npostgresql:\n",
            &format!(
                "\npostgresql:\n  create_replica_methods: [restore]\n  restore:\n    command: {}\n    no_leader: true\n",
                script.display()
            ),
            1,
        )
    });
    let h = &hosts[1];
    let ok = patroni_testlab::wait_until(
        Duration::from_secs(120),
        "m1 restored and leading".into(),
        || async {
            (query(
                h,
                &second,
                "select count(*) from kept where not pg_is_in_recovery()",
            )? == "300")
                .then_some(())
        },
    )
    .await;
    assert!(ok.is_ok(), "{ok:?}\n{}", agent.log());
    assert!(
        agent.log().contains("bootstrap (without leader)"),
        "{}",
        agent.log()
    );
    // Patroni passes the section's flags with the rest when `no_params` is not set.
    let args = std::fs::read_to_string(work.path().join("args")).expect("the script's arguments");
    let args: Vec<&str> = args.lines().collect();
    assert!(args.contains(&"--no_leader=True"), "{args:?}");
    assert!(args.contains(&"--role=replica"), "{args:?}");
    assert!(args.contains(&"--scope=noleader"), "{args:?}");
}

/// Patroni's own sample configurations (`postgres0.yml`, `postgres1.yml`, `postgres2.yml`,
/// unchanged but for the DCS section, `etcd` swapped for `kubernetes`) start a 3-member
/// cluster on one host as the postgres user: relative data directories, `/tmp/pgpass0..2`,
/// loopback addresses, Patroni's users and passwords.
#[tokio::test]
async fn patronis_sample_configurations_start_a_cluster() {
    init_tracing();
    let lab = Lab::shared();
    let scope = "batman";
    let ns = lab.namespace("t53-samples").await.expect("namespace");
    let host = lab.host("samples").expect("host");
    for i in 0..3 {
        let spec = patroni_testlab::PodSpec {
            name: format!("postgresql{i}"),
            labels: member_labels(scope),
            service_account: None,
        };
        lab.pod(&ns.client, &ns.name, &host, spec)
            .await
            .expect("pod");
    }
    let kubeconfig = restricted_kubeconfig(lab, &ns.name, false, true, 0).await;
    let work = tempfile::tempdir().expect("tempdir");
    chown_to_pg_user(work.path()).expect("chown");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/patroni-samples");
    let mut agents = Vec::new();
    for i in 0..3 {
        let text =
            std::fs::read_to_string(samples.join(format!("postgres{i}.yml"))).expect("sample");
        let yaml = text.replacen(
            "\netcd:\n",
            &format!(
                "\nkubernetes:\n  namespace: {}\n  labels:\n    application: patroni\n  context: testenv\n#etcd:\n",
                ns.name
            ),
            1,
        );
        let yaml = yaml.replacen(
            "\n  host: 127.0.0.1:2379\n",
            "\n#  host: 127.0.0.1:2379\n",
            1,
        );
        let config = work.path().join(format!("postgres{i}.yml"));
        std::fs::write(&config, yaml).expect("write config");
        chown_to_pg_user(&config).expect("chown");
        let _ = std::fs::remove_file(format!("/tmp/pgpass{i}"));
        let log = std::fs::File::create(work.path().join(format!("postgres{i}.log"))).expect("log");
        let err = log.try_clone().expect("log");
        let child = host
            .command_as("postgres", agent_binary())
            .current_dir(work.path())
            .arg(&config)
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info")
            // The samples name no bin_dir: PostgreSQL's programs come from PATH, as a Patroni
            // user's environment provides them.
            .env("PATH", "/usr/lib/postgresql/15/bin:/usr/bin:/bin")
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start agent");
        agents.push(child);
    }
    let psql = |port: u16, q: &str| -> Option<String> {
        let out = host
            .command("/usr/lib/postgresql/15/bin/psql")
            .env("PGPASSWORD", "patroni")
            .args([
                "-X",
                "-At",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", "postgres", "-c", q])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let logs = || {
        (0..3)
            .map(|i| {
                std::fs::read_to_string(work.path().join(format!("postgres{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let formed = patroni_testlab::wait_until(FORM_TIMEOUT, "samples formed".into(), || async {
        let primaries: Vec<u16> = [5432, 5433, 5434]
            .into_iter()
            .filter(|p| psql(*p, "select pg_is_in_recovery()").as_deref() == Some("f"))
            .collect();
        let [primary] = primaries.as_slice() else {
            return None;
        };
        (psql(*primary, STREAMING_REPLICAS)? == "2").then_some(())
    })
    .await;
    for mut a in agents {
        let _ = a.kill();
        let _ = a.wait();
    }
    for i in 0..3 {
        let _ = std::fs::remove_file(format!("/tmp/pgpass{i}"));
    }
    assert!(formed.is_ok(), "{formed:?}\n{}", logs());
    assert!(work.path().join("data/postgresql0/PG_VERSION").exists());
}
