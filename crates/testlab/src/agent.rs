//! Running the `patroni` agent on a lab host, as a pod would: a Patroni
//! configuration for the member, its data directory owned by the
//! unprivileged `postgres` user, and the process started inside the host's
//! network namespace as that user.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::{Error, Host, Result};

/// OS user that runs PostgreSQL and the agent on a host.
pub const PG_USER: &str = "postgres";

/// What makes one member's configuration.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Cluster name.
    pub scope: String,
    /// Member name (= its pod's name).
    pub name: String,
    /// Kubernetes namespace of the cluster's objects and pods.
    pub namespace: String,
    /// Endpoints (true) or ConfigMaps mode.
    pub use_endpoints: bool,
    /// Selector labels (`kubernetes.labels`).
    pub labels: BTreeMap<String, String>,
    /// Lock ttl, loop interval and retry budget (seconds) for `bootstrap.dcs`.
    pub ttl: u32,
    /// See `ttl`.
    pub loop_wait: u32,
    /// See `ttl`.
    pub retry_timeout: u32,
    /// Password of the `postgres` superuser.
    pub superuser_password: String,
    /// Password of the `standby` replication user.
    pub replication_password: String,
    /// PostgreSQL binaries.
    pub bin_dir: PathBuf,
    /// Member tags (`nofailover: true`, `failover_priority: 0`, …), YAML values.
    pub tags: BTreeMap<String, String>,
    /// More `restapi` settings, YAML lines indented by two spaces (`  authentication: ...`).
    pub restapi_extra: String,
    /// More top-level YAML appended to the document (`ctl:` settings, callbacks, …).
    pub extra: String,
    /// `bootstrap.dcs.postgresql.parameters` (YAML values).
    pub dcs_parameters: BTreeMap<String, String>,
    /// More `bootstrap.dcs` settings (YAML values: `synchronous_mode: true`, …).
    pub dcs_extra: BTreeMap<String, String>,
    /// More `postgresql` settings (YAML values: `pre_promote: /path/script`, …).
    pub postgresql_extra: BTreeMap<String, String>,
    /// More `kubernetes` settings (YAML values: `standby_leader_label_value: x`, …).
    pub kubernetes_extra: BTreeMap<String, String>,
    /// ZooKeeper servers (`host:port`): when not empty, the member's DCS is a `zookeeper`
    /// section with these `hosts` instead of the `kubernetes` section.
    pub zookeeper_hosts: Vec<String>,
    /// Environment variables of the agent's process (a pod's `env`), not in the file.
    pub env: BTreeMap<String, String>,
    /// More `bootstrap` settings (YAML values: `method: restore`, a custom method's flow
    /// mapping, …).
    pub bootstrap_extra: BTreeMap<String, String>,
    /// etcd endpoints (`host:port`): when set, the member uses the etcd v3 DCS
    /// (`etcd3.hosts`) instead of Kubernetes, and `namespace`, `use_endpoints` and `labels`
    /// are not used.
    pub etcd3_hosts: Vec<String>,
    /// An `etcd3.srv` domain (with `etcd3_hosts` empty): the member finds etcd through that
    /// domain's DNS SRV records, and nothing else.
    pub etcd3_srv: Option<String>,
}

// === impl AgentSpec ===

impl AgentSpec {
    /// A member of `scope` with Patroni's default timings and the lab's
    /// conventions (labels `application: patroni`, PostgreSQL 15).
    pub fn new(scope: &str, name: &str, namespace: &str, use_endpoints: bool) -> Self {
        AgentSpec {
            scope: scope.to_string(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            use_endpoints,
            labels: BTreeMap::from([("application".to_string(), "patroni".to_string())]),
            ttl: 30,
            loop_wait: 10,
            retry_timeout: 10,
            superuser_password: "lab-superuser-secret".into(),
            replication_password: "lab-replication-secret".into(),
            bin_dir: PathBuf::from("/usr/lib/postgresql/15/bin"),
            tags: BTreeMap::new(),
            restapi_extra: String::new(),
            extra: String::new(),
            dcs_parameters: BTreeMap::new(),
            dcs_extra: BTreeMap::new(),
            postgresql_extra: BTreeMap::new(),
            kubernetes_extra: BTreeMap::new(),
            zookeeper_hosts: Vec::new(),
            env: BTreeMap::new(),
            bootstrap_extra: BTreeMap::new(),
            etcd3_hosts: Vec::new(),
            etcd3_srv: None,
        }
    }

    /// This member on the etcd v3 DCS at `hosts` (`host:port` each) instead of Kubernetes.
    pub fn with_etcd3(mut self, hosts: &[&str]) -> Self {
        self.etcd3_hosts = hosts.iter().map(|h| (*h).to_string()).collect();
        self
    }

    /// The labels the member's pod must carry to be selected.
    pub fn pod_labels(&self) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        l.insert("cluster-name".into(), self.scope.clone());
        l
    }

    /// The member's Patroni configuration (YAML) for a host at `ip` with
    /// its files under `dir` (data directory `dir/data`).
    pub fn render(&self, ip: &str, dir: &Path) -> String {
        let labels: String = self
            .labels
            .iter()
            .map(|(k, v)| format!("\n    {k}: {v}"))
            .collect();
        let tags: String = if self.tags.is_empty() {
            String::new()
        } else {
            let items: String = self
                .tags
                .iter()
                .map(|(k, v)| format!("\n  {k}: {v}"))
                .collect();
            format!("tags:{items}\n")
        };
        let dcs_parameters: String = if self.dcs_parameters.is_empty() {
            String::new()
        } else {
            let items: String = self
                .dcs_parameters
                .iter()
                .map(|(k, v)| format!("\n        {k}: {v}"))
                .collect();
            format!("      parameters:{items}\n")
        };
        let dcs_extra: String = self
            .dcs_extra
            .iter()
            .map(|(k, v)| format!("    {k}: {v}\n"))
            .collect();
        let bootstrap_extra: String = self
            .bootstrap_extra
            .iter()
            .map(|(k, v)| format!("  {k}: {v}\n"))
            .collect();
        let postgresql_extra: String = self
            .postgresql_extra
            .iter()
            .map(|(k, v)| format!("  {k}: {v}\n"))
            .collect();
        let d = dir.display();
        let dcs = if let Some(domain) = &self.etcd3_srv {
            format!("etcd3:\n  srv: {domain}\n")
        } else if !self.etcd3_hosts.is_empty() {
            format!("etcd3:\n  hosts: {}\n", self.etcd3_hosts.join(","))
        } else if !self.zookeeper_hosts.is_empty() {
            format!(
                "zookeeper:\n  hosts: [{}]\n",
                self.zookeeper_hosts.join(", ")
            )
        } else {
            format!(
                "kubernetes:\n  namespace: {namespace}\n  labels:{labels}\n  use_endpoints: \
                 {use_endpoints}\n  pod_ip: {ip}\n  ports:\n    - name: postgresql\n      \
                 port: 5432\n  context: testenv\n{kubernetes_extra}",
                namespace = self.namespace,
                use_endpoints = self.use_endpoints,
                kubernetes_extra = self
                    .kubernetes_extra
                    .iter()
                    .map(|(k, v)| format!("  {k}: {v}\n"))
                    .collect::<String>(),
            )
        };
        format!(
            r#"scope: {scope}
name: {name}
restapi:
  listen: {ip}:8008
  connect_address: {ip}:8008
{restapi_extra}{dcs}bootstrap:
  dcs:
    ttl: {ttl}
    loop_wait: {loop_wait}
    retry_timeout: {retry_timeout}
    maximum_lag_on_failover: 1048576
{dcs_extra}    postgresql:
      use_pg_rewind: true
{dcs_parameters}  initdb:
    - encoding: UTF8
    - data-checksums
{bootstrap_extra}postgresql:
  listen: {ip}:5432
  connect_address: {ip}:5432
  data_dir: {d}/data
  bin_dir: {bin_dir}
  pgpass: {d}/pgpass
  authentication:
    superuser:
      username: postgres
      password: {su}
    replication:
      username: standby
      password: {repl}
  pg_hba:
    - local all all trust
    - host replication standby 10.213.0.0/16 scram-sha-256
    - host all all 10.213.0.0/16 scram-sha-256
  parameters:
    unix_socket_directories: {d}
{postgresql_extra}{tags}{extra}"#,
            scope = self.scope,
            name = self.name,
            ttl = self.ttl,
            loop_wait = self.loop_wait,
            retry_timeout = self.retry_timeout,
            bin_dir = self.bin_dir.display(),
            su = self.superuser_password,
            repl = self.replication_password,
            restapi_extra = lines(&self.restapi_extra),
            extra = lines(&self.extra),
            dcs_parameters = dcs_parameters,
            dcs_extra = dcs_extra,
            postgresql_extra = postgresql_extra,
            bootstrap_extra = bootstrap_extra,
        )
    }

    /// Writes the configuration to `dir/patroni.yml` and prepares `dir`
    /// (owned by the postgres user, so the agent can create its data
    /// directory there). Returns the configuration's path.
    pub fn write(&self, ip: &str, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
        let path = dir.join("patroni.yml");
        std::fs::write(&path, self.render(ip, dir)).map_err(Error::io("write", &path))?;
        chown_to_pg_user(dir)?;
        chown_to_pg_user(&path)?;
        Ok(path)
    }
}

/// `text` as whole lines (a final newline added when missing).
fn lines(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') {
        text.to_owned()
    } else {
        format!("{text}\n")
    }
}

/// Hands `path` to the postgres OS user.
pub fn chown_to_pg_user(path: &Path) -> Result<()> {
    let user = nix::unistd::User::from_name(PG_USER)
        .ok()
        .flatten()
        .ok_or_else(|| Error::Command {
            what: format!("look up OS user {PG_USER}"),
            detail: "no such user".into(),
        })?;
    nix::unistd::chown(path, Some(user.uid), Some(user.gid)).map_err(|e| Error::Command {
        what: format!("chown {}", path.display()),
        detail: e.to_string(),
    })
}

// === impl Host: agents ===

impl Host {
    /// Starts `binary CONFIG` on this host as the postgres user with
    /// `KUBECONFIG`, output appended to `log`. The returned child's pid is
    /// the agent's own; dropping the host kills it with everything else.
    pub fn spawn_agent(
        &self,
        binary: &Path,
        config: &Path,
        kubeconfig: &Path,
        log: &Path,
    ) -> Result<Child> {
        self.spawn_agent_with_env(binary, config, kubeconfig, log, &BTreeMap::new())
    }

    /// [`Host::spawn_agent`] with extra environment variables (a pod's `env`).
    pub fn spawn_agent_with_env(
        &self,
        binary: &Path,
        config: &Path,
        kubeconfig: &Path,
        log: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<Child> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(Error::io("open", log))?;
        let err = out.try_clone().map_err(Error::io("clone", log))?;
        self.command_as(PG_USER, binary)
            .arg(config)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", config.parent().unwrap_or(Path::new("/tmp")))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::Command {
                what: format!("start the agent on {}", self.name()),
                detail: e.to_string(),
            })
    }
}

// === impl Lab: agent members ===

impl crate::Lab {
    /// A member the way a pod runs one: a fresh host named `spec.name`, a
    /// Running/Ready pod at its address with the member labels, the
    /// configuration under `dir`, and the agent started there (log
    /// `dir/patroni.log`).
    pub async fn start_agent_member(
        &self,
        client: &kube::Client,
        spec: &AgentSpec,
        binary: &Path,
        kubeconfig: &Path,
        dir: &Path,
    ) -> Result<(Host, Child)> {
        let host = self.host(&spec.name)?;
        let pod = crate::PodSpec {
            name: spec.name.clone(),
            labels: spec.pod_labels(),
            service_account: None,
        };
        self.pod(client, &spec.namespace, &host, pod).await?;
        let config = spec.write(host.ip(), dir)?;
        let agent = host.spawn_agent(binary, &config, kubeconfig, &dir.join("patroni.log"))?;
        Ok((host, agent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rendered member configuration is a valid Patroni configuration
    /// with the Kubernetes DCS, as our own loader reads it.
    #[test]
    fn rendered_configuration_is_valid_patroni_configuration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = AgentSpec::new("demo", "member-0", "default", true);
        spec.tags.insert("nofailover".into(), "true".into());
        spec.dcs_extra
            .insert("synchronous_mode".into(), "true".into());
        let path = dir.path().join("patroni.yml");
        std::fs::write(&path, spec.render("10.213.1.1", dir.path())).expect("write");
        let loaded = patroni_config::load(Some(&path), &patroni_config::Environment::new())
            .expect("valid configuration");
        let patroni_config::DcsConfig::Kubernetes(k) = &loaded.config.dcs else {
            panic!("kubernetes DCS")
        };
        assert!(k.use_endpoints);
        assert_eq!(k.context, "testenv");
        assert_eq!(loaded.config.name, "member-0");
        assert_eq!(loaded.config.bootstrap.dcs.ttl, 30);
        assert!(loaded.config.tags.is_nofailover());
        assert_eq!(
            loaded.config.bootstrap.dcs.synchronous_mode,
            patroni_config::SynchronousMode::On
        );
    }

    /// With ZooKeeper servers, the member's DCS is a `zookeeper` section with those hosts.
    #[test]
    fn zookeeper_hosts_make_a_zookeeper_section() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = AgentSpec::new("demo", "member-0", "default", false);
        spec.zookeeper_hosts = vec!["10.213.1.9:2181".into()];
        let path = dir.path().join("patroni.yml");
        std::fs::write(&path, spec.render("10.213.1.1", dir.path())).expect("write");
        let loaded = patroni_config::load(Some(&path), &patroni_config::Environment::new())
            .expect("valid configuration");
        let patroni_config::DcsConfig::Zookeeper(z) = &loaded.config.dcs else {
            panic!("zookeeper DCS")
        };
        assert_eq!(z.hosts, ["10.213.1.9:2181"]);
    }

    /// With etcd hosts, the member's DCS is etcd3 at those endpoints; with an SRV domain,
    /// etcd3 found through it.
    #[test]
    fn etcd3_members_render_an_etcd3_section() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = AgentSpec::new("demo", "member-0", "default", false)
            .with_etcd3(&["10.213.1.9:2379", "10.213.1.10:2379"]);
        let path = dir.path().join("patroni.yml");
        std::fs::write(&path, spec.render("10.213.1.1", dir.path())).expect("write");
        let loaded = patroni_config::load(Some(&path), &patroni_config::Environment::new())
            .expect("valid configuration");
        let patroni_config::DcsConfig::Etcd3(e) = &loaded.config.dcs else {
            panic!("etcd3 DCS")
        };
        assert_eq!(
            e.endpoints,
            ["http://10.213.1.9:2379", "http://10.213.1.10:2379"]
        );
        let mut spec = AgentSpec::new("demo", "member-0", "default", false);
        spec.etcd3_srv = Some("etcd.test".into());
        std::fs::write(&path, spec.render("10.213.1.1", dir.path())).expect("write");
        let loaded = patroni_config::load(Some(&path), &patroni_config::Environment::new())
            .expect("valid configuration");
        let patroni_config::DcsConfig::Etcd3(e) = &loaded.config.dcs else {
            panic!("etcd3 DCS")
        };
        assert_eq!(e.srv.as_ref().map(|s| s.domain.as_str()), Some("etcd.test"));
        assert!(e.endpoints.is_empty());
    }
}
