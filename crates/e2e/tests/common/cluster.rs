//! A cluster of real agents on lab hosts, for the agent's end-to-end tests:
//! members, SQL from hosts, writability, logs, and waiting with logs on failure.

use std::path::PathBuf;
use std::time::Duration;

use patroni_testlab::{AgentSpec, Host, Lab, TestNamespace, chown_to_pg_user};

/// Timings for the test cluster: Patroni's minimum ttl, a short loop.
pub const TTL: u32 = 20;
pub const LOOP_WAIT: u32 = 2;
pub const RETRY_TIMEOUT: u32 = 5;
/// Bootstrap of the first member plus two clones.
pub const FORM_TIMEOUT: Duration = Duration::from_secs(150);
/// Failover after the leader dies: at most the ttl plus a few loops.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(90);

/// How many replicas stream from the queried primary: WAL senders in `streaming` state, not
/// counting a `pg_basebackup` still cloning a new member (its WAL stream is `streaming` too).
pub const STREAMING_REPLICAS: &str = "select count(*) from pg_stat_replication \
     where state = 'streaming' and application_name <> 'pg_basebackup'";

/// One member: its host, configuration and running agent.
pub struct Member {
    pub name: String,
    pub host: Host,
    pub spec: AgentSpec,
    pub config: std::path::PathBuf,
    pub log: std::path::PathBuf,
    /// The running agent, reaped when replaced or at the end.
    pub agent: Option<std::process::Child>,
    _dir: tempfile::TempDir,
}

/// `psql -c SQL` from `from` to `to`'s PostgreSQL as the superuser.
pub fn sql(from: &Host, to: &Host, spec: &AgentSpec, query: &str) -> Option<String> {
    let out = from
        .command("/usr/lib/postgresql/15/bin/psql")
        .env("PGPASSWORD", &spec.superuser_password)
        .args([
            "-X",
            "-At",
            "-d",
            &format!(
                "host={} port=5432 user=postgres dbname=postgres connect_timeout=2",
                to.ip()
            ),
            "-c",
            query,
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `method path` on `to`'s REST API, sent with curl from `to`'s own host (basic auth with
/// `auth`): the status and the body.
pub fn rest(
    to: &Member,
    method: &str,
    path: &str,
    body: Option<&str>,
    auth: Option<(&str, &str)>,
) -> Option<(u16, String)> {
    let url = format!("http://{}:8008{path}", to.host.ip());
    let mut cmd = to.host.command("curl");
    cmd.args(["-s", "-m", "120", "-X", method, "-w", "\n%{http_code}"]);
    if let Some((user, password)) = auth {
        cmd.args(["-u", &format!("{user}:{password}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = cmd.arg(&url).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_string()))
}

/// Members that accept writes right now.
pub fn writable(members: &[Member]) -> Vec<String> {
    members
        .iter()
        .filter(|m| {
            sql(&m.host, &m.host, &m.spec, "select pg_is_in_recovery()").as_deref() == Some("f")
        })
        .map(|m| m.name.clone())
        .collect()
}

/// The index of member `name`; panics if there is none.
pub fn index(members: &[Member], name: &str) -> usize {
    members
        .iter()
        .position(|m| m.name == name)
        .expect("a member")
}

/// The index of the one member that accepts writes, once two replicas stream from it.
pub fn primary_with_two_streaming(members: &[Member]) -> Option<usize> {
    let w = writable(members);
    let [p] = w.as_slice() else { return None };
    let p = members.iter().position(|m| &m.name == p)?;
    let (h, s) = (&members[p].host, &members[p].spec);
    (sql(h, h, s, STREAMING_REPLICAS)? == "2").then_some(p)
}

/// `GET path` on `m`'s REST API as JSON, with its status.
pub fn get_json(m: &Member, path: &str) -> Option<(u16, serde_json::Value)> {
    let (status, body) = rest(m, "GET", path, None, None)?;
    Some((status, serde_json::from_str(&body).ok()?))
}

/// `PATCH /config` with `patch` through `m`; panics unless 200.
pub fn patch_config(m: &Member, patch: &str) {
    let answer = rest(m, "PATCH", "/config", Some(patch), None);
    assert!(
        answer.as_ref().is_some_and(|(s, _)| *s == 200),
        "PATCH /config {patch}: {answer:?}"
    );
}

/// The primary once it holds the lock (per its `GET /cluster`) and two replicas stream from
/// it; fails with every log after [`FORM_TIMEOUT`].
pub async fn healthy(members: &[Member], what: &str) -> usize {
    wait_for(FORM_TIMEOUT, what, members, || {
        let p = primary_with_two_streaming(members)?;
        let (_, cluster) = get_json(&members[p], "/cluster")?;
        let leader = cluster["members"]
            .as_array()?
            .iter()
            .find(|m| m["role"] == "leader")?;
        (leader["name"] == members[p].name.as_str()).then_some(p)
    })
    .await
}

/// Every member's agent log.
pub fn logs(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| {
            format!(
                "--- {}\n{}",
                m.name,
                std::fs::read_to_string(&m.log).unwrap_or_default()
            )
        })
        .collect()
}

/// Polls `check` every 500 ms; fails with every log after `timeout`.
pub async fn wait_for<T>(
    timeout: Duration,
    what: &str,
    members: &[Member],
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not after {timeout:?}\n{}",
            logs(members)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Member `name` on `host` with configuration `spec` written to a fresh directory of its own
/// (owned by the postgres user, removed with the member), its agent not started yet.
pub fn prepare_member(name: String, host: Host, spec: AgentSpec) -> Member {
    let dir = tempfile::tempdir().expect("tempdir");
    chown_to_pg_user(dir.path()).expect("chown");
    let config = spec.write(host.ip(), dir.path()).expect("write config");
    let log = dir.path().join("patroni.log");
    Member {
        name,
        host,
        spec,
        config,
        log,
        agent: None,
        _dir: dir,
    }
}

/// Starts `n` members `m0..` of `scope` on fresh hosts, each running the
/// agent as postgres with the shipped member Role; `tweak` adjusts each
/// member's configuration.
pub async fn start_cluster(
    lab: &Lab,
    ns: &TestNamespace,
    scope: &str,
    use_endpoints: bool,
    n: usize,
    tweak: impl Fn(&mut AgentSpec),
) -> (Vec<Member>, PathBuf) {
    start_members(lab, ns, scope, use_endpoints, n, tweak, false).await
}

/// As [`start_cluster`], but the others start only once m0 accepts writes, so m0 is the one
/// that bootstraps (Patroni's scenarios start `postgres-0` first).
pub async fn start_cluster_m0_first(
    lab: &Lab,
    ns: &TestNamespace,
    scope: &str,
    use_endpoints: bool,
    n: usize,
    tweak: impl Fn(&mut AgentSpec),
) -> (Vec<Member>, PathBuf) {
    start_members(lab, ns, scope, use_endpoints, n, tweak, true).await
}

async fn start_members(
    lab: &Lab,
    ns: &TestNamespace,
    scope: &str,
    use_endpoints: bool,
    n: usize,
    tweak: impl Fn(&mut AgentSpec),
    m0_first: bool,
) -> (Vec<Member>, PathBuf) {
    let binary = super::agent_binary();
    let kubeconfig = super::restricted_kubeconfig(lab, &ns.name, use_endpoints, true, 0).await;
    let mut members = Vec::new();
    for (i, host) in super::member_pods(lab, ns, scope, n)
        .await
        .into_iter()
        .enumerate()
    {
        let name = format!("m{i}");
        let mut spec = AgentSpec::new(scope, &name, &ns.name, use_endpoints);
        (spec.ttl, spec.loop_wait, spec.retry_timeout) = (TTL, LOOP_WAIT, RETRY_TIMEOUT);
        tweak(&mut spec);
        let mut member = prepare_member(name, host, spec);
        start_agent(&mut member, &binary, &kubeconfig);
        members.push(member);
        if m0_first && i == 0 {
            wait_for(FORM_TIMEOUT, "m0 bootstrapped", &members, || {
                (writable(&members) == ["m0"]).then_some(())
            })
            .await;
        }
    }
    (members, kubeconfig)
}

/// The `KUBECONFIG` of agents whose DCS is not Kubernetes: nothing.
pub const NO_KUBECONFIG: &str = "/dev/null";

/// Starts `n` members `m0..` of `scope` on fresh hosts with a DCS other than Kubernetes (no
/// pods, no Kubernetes objects; `dcs` points each member's configuration at it), each running
/// the agent as postgres; `tweak` adjusts each member's configuration.
fn start_off_kubernetes(
    lab: &Lab,
    scope: &str,
    n: usize,
    dcs: impl Fn(&mut AgentSpec),
    tweak: impl Fn(&mut AgentSpec),
) -> Vec<Member> {
    let binary = super::agent_binary();
    let mut members = Vec::new();
    for i in 0..n {
        let name = format!("m{i}");
        let host = lab.host(&name).expect("host");
        let mut spec = AgentSpec::new(scope, &name, "", false);
        (spec.ttl, spec.loop_wait, spec.retry_timeout) = (TTL, LOOP_WAIT, RETRY_TIMEOUT);
        dcs(&mut spec);
        tweak(&mut spec);
        let mut member = prepare_member(name, host, spec);
        start_agent(&mut member, &binary, NO_KUBECONFIG.as_ref());
        members.push(member);
    }
    members
}

/// [`start_off_kubernetes`] with the ZooKeeper DCS at `zookeeper_hosts`.
pub async fn start_zookeeper_cluster(
    lab: &Lab,
    scope: &str,
    zookeeper_hosts: &[String],
    n: usize,
    tweak: impl Fn(&mut AgentSpec),
) -> Vec<Member> {
    start_off_kubernetes(
        lab,
        scope,
        n,
        |spec| spec.zookeeper_hosts = zookeeper_hosts.to_vec(),
        tweak,
    )
}

/// [`start_off_kubernetes`] with the etcd v3 DCS at `etcd` (`host:port`, reachable from the
/// lab's hosts); also the path that stands where a kubeconfig goes ([`NO_KUBECONFIG`]).
pub fn start_etcd3_cluster(
    lab: &Lab,
    etcd: &str,
    scope: &str,
    n: usize,
    tweak: impl Fn(&mut AgentSpec),
) -> (Vec<Member>, PathBuf) {
    let members = start_off_kubernetes(
        lab,
        scope,
        n,
        |spec| spec.etcd3_hosts = vec![etcd.to_owned()],
        tweak,
    );
    (members, PathBuf::from(NO_KUBECONFIG))
}

/// Member `name` of `scope` on a fresh host with the etcd v3 DCS at `etcd`, its configuration
/// written and no daemon started yet (for a test that starts another daemon, such as Python
/// Patroni, on it).
pub fn prepare_etcd3_member(lab: &Lab, etcd: &str, scope: &str, name: &str) -> Member {
    let host = lab.host(name).expect("host");
    let mut spec = AgentSpec::new(scope, name, "", false).with_etcd3(&[etcd]);
    (spec.ttl, spec.loop_wait, spec.retry_timeout) = (TTL, LOOP_WAIT, RETRY_TIMEOUT);
    prepare_member(name.to_string(), host, spec)
}

/// SIGKILL to every process on `m`'s host (agent and postmaster), reaping the agent.
pub fn kill_member(m: &mut Member) {
    for pid in m.host.pids() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if let Some(mut agent) = m.agent.take() {
        let _ = agent.wait();
    }
}

/// Restarts `m`'s agent with its configuration.
pub fn restart_member(m: &mut Member, kubeconfig: &std::path::Path) {
    start_agent(m, &super::agent_binary(), kubeconfig);
}

/// Starts agent `binary` for `m` with its configuration and `kubeconfig` (reaped by [`stop_all`] or [`kill_member`]).
fn start_agent(m: &mut Member, binary: &std::path::Path, kubeconfig: &std::path::Path) {
    let agent = m
        .host
        .spawn_agent_with_env(binary, &m.config, kubeconfig, &m.log, &m.spec.env)
        .expect("start agent");
    m.agent = Some(agent);
}

/// Stops every agent still running and reaps it.
pub fn stop_all(members: &mut [Member]) {
    for m in members {
        if let Some(mut agent) = m.agent.take() {
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }
}
