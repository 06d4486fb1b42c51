//! The HA agent: starts the DCS, the Postgres instance, the REST API and the HA loop, and shuts
//! them down in a fixed order.
//!
//! Start order: DCS (the backend the configuration selects, opened by [`patroni_dcs::connect`]), Postgres instance (nothing is started yet), REST API on
//! `restapi.listen`, then the HA loop ([`runtime`]). On SIGTERM/SIGINT the loop is told to shut
//! down: it keeps deciding until the core's shutdown actions are done (stop Postgres, then
//! release the lock), within [`runtime::SHUTDOWN_DEADLINE`]; then the API stops and the agent
//! exits 0. A fatal decision stops everything with a non-zero exit.

pub mod api_backend;
pub mod backup;
pub mod callbacks;
mod divergence;
mod dynamic_cache;
pub mod execute;
pub mod fake_pg;
mod ha_config;
pub mod hooks;
mod lease_fence;
pub mod member_data;
mod observe;
pub mod operator;
pub mod peers;
pub mod pgctl;
mod publish;
mod queries;
pub mod runtime;
mod slots;
mod sync;
mod sync_release;
mod watchdog;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use patroni_api::{ApiSettings, HaSnapshot, bind, router, serve, serve_tls, tls_acceptor};
use patroni_config::{Config, Environment};
use patroni_core::Role;
use patroni_dcs::{Dcs, Settings};
use patroni_postgres::{BinDir, InstanceSpec, Launcher, Postgres};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::api_backend::{AgentBackend, LoopStatus, Shared, Snapshot};
use self::member_data::{ADVERTISED_PATRONI_VERSION, Identity, PgState, StatusExtras};
use self::peers::PeerClient;
use self::pgctl::RealPostgres;
use self::runtime::Runtime;

/// How the agent ended.
#[derive(Debug)]
pub enum Outcome {
    /// Shut down on request.
    Stopped,
    /// The core said continuing is unsafe.
    Fatal(String),
}

/// Runs the agent until SIGTERM/SIGINT or a fatal decision.
///
/// `home` is where the default password file goes; `env` is the one snapshot of the process
/// environment `main` took (in-cluster DCS credentials offered, what callbacks do not inherit).
///
/// # Errors
/// The DCS, the binaries or the API listener cannot be set up.
pub async fn run(
    config: Config,
    home: PathBuf,
    env: &Environment,
    reloader: operator::Reloader,
) -> anyhow::Result<Outcome> {
    let config = Arc::new(config);
    let boot = &config.bootstrap.dcs;
    let dcs = patroni_dcs::connect(Settings {
        scope: config.scope.clone(),
        name: config.name.clone(),
        dcs: config.dcs.clone(),
        ttl: Duration::from_secs(boot.ttl.into()),
        loop_wait: Duration::from_secs(boot.loop_wait.into()),
        retry_timeout: Duration::from_secs(boot.retry_timeout.into()),
        kubeconfig: None,
        in_cluster: patroni_dcs::in_cluster_offered(env),
    })
    .await
    .with_context(|| {
        format!(
            "start the {} DCS",
            patroni_dcs::backend_name(config.dcs.kind())
        )
    })?;
    let dcs = Arc::new(dcs);

    let peers = PeerClient::from_config(&config).context("set up TLS for peer requests")?;
    if let Some(reason) = duplicate_name(dcs.as_ref(), &config.name, &peers).await {
        tracing::error!("{reason}");
        return Ok(Outcome::Fatal(reason));
    }

    let bin = BinDir::new(config.postgresql.bin_dir.as_deref())
        .with_names(config.postgresql.bin_name.clone());
    let major_version = tokio::task::spawn_blocking(move || bin.major_version())
        .await
        .context("ask the postgres version")?
        .context("read the postgres version")?;
    let spec = InstanceSpec::from_config(
        &config.name,
        &config.scope,
        &config.postgresql,
        &home,
        major_version,
        Launcher::direct().with_environment(env.iter()),
    );
    let pg = Postgres::new(spec);

    let shared = Arc::new(Shared::new(initial_snapshot(&config)));

    // The agent's token: cancelled when the agent ends, after the loop; the API, the signal
    // handlers and the loop's shutdown request hang below it.
    let agent = CancellationToken::new();
    let shutdown = agent.child_token();
    let backup = backup::BackupJob::from_config(&config);
    let backend = Arc::new(
        AgentBackend::new(Arc::clone(&shared), Arc::clone(&dcs))
            .with_peers(peers.clone())
            .with_backup(backup.clone()),
    );
    let settings = ApiSettings::try_from_config(
        &config.restapi,
        ADVERTISED_PATRONI_VERSION,
        &config.scope,
        &config.name,
    )
    .await
    .context("configure the REST API")?;
    let app = router(backend, settings);
    let tls = tls_acceptor(&config.restapi).context("set up TLS for the REST API")?;
    let listener = bind(&config.restapi.listen, config.restapi.request_queue_size)
        .await
        .with_context(|| format!("listen on {:?}", config.restapi.listen))?;
    tracing::info!(listen = ?config.restapi.listen, tls = tls.is_some(), version = ADVERTISED_PATRONI_VERSION, "REST API listening");
    let api_stopped = agent.child_token().cancelled_owned();
    let api = match tls {
        Some(acceptor) => tokio::spawn(serve_tls(listener, acceptor, app, api_stopped)),
        None => tokio::spawn(serve(listener, app, api_stopped)),
    };

    tokio::spawn(stop_on_signal(shutdown.clone()));
    tokio::spawn(reload_on_sighup(Arc::clone(&shared), agent.child_token()));
    if let Some(job) = backup {
        tokio::spawn(backup::run(
            job,
            backup::Launch::from_config(&config),
            Arc::clone(&shared),
            agent.child_token(),
        ));
    }

    let mut runtime = Runtime::new(
        Arc::clone(&config),
        Arc::clone(&dcs),
        RealPostgres::new(pg, Arc::clone(&config)),
        major_version,
        Arc::clone(&shared),
    )
    .with_environment(env)
    .with_reloader(reloader)
    .with_peers(peers);
    match start_fence(&config.postgresql.data_dir) {
        Ok(fence) => {
            tracing::info!(pid = fence.pid(), "lease fence started");
            runtime = runtime.with_fence(fence);
        }
        // Patroni without a watchdog runs the same way: only the HA loop demotes.
        Err(e) => tracing::error!("{e:#}; running without a lease fence"),
    }
    let result = runtime.run(shutdown).await;
    shared.update(|s| s.loop_status = LoopStatus::ShuttingDown);
    agent.cancel();
    match tokio::time::timeout(API_STOP_TIMEOUT, api).await {
        Ok(Ok(Err(e))) => tracing::warn!("failed to serve the REST API: {e:#}"),
        Err(_) => tracing::warn!("the REST API did not stop in time"),
        _ => {}
    }
    Ok(match result {
        Ok(()) => Outcome::Stopped,
        Err(fatal) => Outcome::Fatal(fatal.0),
    })
}

/// How long the REST API may take to finish its open requests once the loop has ended.
const API_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the running member of the same name may take to answer (Patroni: 3 s).
const UNIQUE_NAME_TIMEOUT: Duration = Duration::from_secs(3);

/// Patroni's `ensure_unique_name`: when the DCS shows a member of this name whose REST API
/// answers (any HTTP status), another agent runs under this name and starting would make
/// two agents act for one member (issue #12: the duplicate released the real leader's lock).
/// Checked before this agent's own API listens, so a restarted agent never finds itself.
/// Returns Patroni's message when this agent must not start.
async fn duplicate_name(dcs: &impl Dcs, name: &str, peers: &PeerClient) -> Option<String> {
    let cluster = match dcs.get_cluster().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                "failed to read the cluster before starting: {:#}",
                anyhow::Error::from(e)
            );
            return None;
        }
    };
    let api_url = cluster.member(name)?.data.api_url.clone()?;
    let liveness = liveness_url(&api_url)?;
    peers
        .answers(&liveness, UNIQUE_NAME_TIMEOUT)
        .await
        .then(|| format!("Can't start; there is already a node named '{name}' running"))
}

/// `/liveness` on the server of `api_url` (`http://host:8008/patroni` → `http://host:8008/liveness`),
/// as Python's `urljoin(api_url, "/liveness")`.
fn liveness_url(api_url: &str) -> Option<String> {
    let (scheme, rest) = api_url.split_once("://")?;
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    Some(format!("{scheme}://{authority}/liveness"))
}

/// What the API shows before the first cycle: stopped, uninitialized, not the leader.
pub fn initial_snapshot(config: &Config) -> Snapshot {
    let id = Identity::from_config(config);
    let boot = &config.bootstrap.dcs;
    let mut status = member_data::node_status(
        &id,
        &patroni_core::ha::LocalPostgres::Empty,
        PgState::Stopped,
        &StatusExtras::default(),
    );
    status.role = Role::Uninitialized;
    let mut ha = HaSnapshot::new(Duration::from_secs(boot.ttl.into()));
    ha.configured_tags = id.tags;
    Snapshot {
        status,
        ha,
        cluster: None,
        next_due: Instant::now() + Duration::from_secs(boot.loop_wait.into()),
        loop_status: LoopStatus::Starting,
    }
}

/// Resolves at SIGTERM or SIGINT.
/// Queues a reload of the local configuration on every SIGHUP, as Patroni does.
/// Queues a reload on each SIGHUP until `done`.
async fn reload_on_sighup(shared: Arc<Shared>, done: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("failed to install the SIGHUP handler; reload with POST /reload");
        return;
    };
    while done
        .run_until_cancelled(hup.recv())
        .await
        .flatten()
        .is_some()
    {
        tracing::info!("SIGHUP received: reloading the configuration");
        shared.send(api_backend::Command::Reload);
    }
}

/// Cancels `shutdown` on SIGTERM or SIGINT (returns when it is cancelled otherwise).
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("failed to install signal handlers; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
        () = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}

/// The lease fence process for `data_dir`: this executable with `--lease-fence`, started
/// through `/proc/self/exe` (it works where the executable's directory is not searchable by
/// the agent's user, e.g. a binary under root's home run as postgres).
fn start_fence(data_dir: &std::path::Path) -> anyhow::Result<crate::fence::FenceClient> {
    let proc_exe = std::path::Path::new("/proc/self/exe");
    let program = if proc_exe.exists() {
        proc_exe.to_path_buf()
    } else {
        std::env::current_exe().context("find the patroni executable")?
    };
    Ok(crate::fence::FenceClient::start(&program, data_dir)?)
}

#[cfg(test)]
mod tests {
    use super::liveness_url;

    /// The liveness URL keeps scheme and authority and replaces the path.
    #[test]
    fn liveness_url_replaces_the_path() {
        assert_eq!(
            liveness_url("http://10.0.0.1:8008/patroni").as_deref(),
            Some("http://10.0.0.1:8008/liveness")
        );
        assert_eq!(
            liveness_url("https://db-0.db:8443").as_deref(),
            Some("https://db-0.db:8443/liveness")
        );
        assert_eq!(liveness_url("not a url"), None);
    }
}
