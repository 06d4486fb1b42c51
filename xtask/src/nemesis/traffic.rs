//! The client's traffic during a round: one writer and one write probe per member, all on the
//! `client` host (a thread that joined its network namespace runs a current-thread tokio
//! runtime, so every socket is the client host's), with `tokio-postgres` connections kept open
//! between statements, as an application's pool would.
//!
//! - The **writer** finds the primary through the members' REST API (`GET /primary` answers
//!   200 only on the member that runs as primary and holds the leader lock, as HAProxy checks
//!   it), connects there and inserts rows with increasing unique ids into `nemesis_writes`;
//!   an id is recorded as acknowledged only when its `INSERT` returned success. On an error or
//!   after [`WRITE_TIMEOUT`] the connection is dropped and the primary looked up again. It
//!   stays on a member while that member takes writes (an application does not re-check).
//! - Each **probe** asks its member whether it is in recovery and, if not, tries one short
//!   write transaction, every [`PROBE_EVERY`]
//!   (ticks aligned on one grid for all members), bounded by [`PROBE_TIMEOUT`] on the client
//!   side (a server-side `statement_timeout` would cancel a synchronous-replication wait and
//!   still report success), and records whether it committed, for that tick.
//!
//! Timeouts are enforced by dropping the connection, never by a cancel request: a dropped
//! statement's outcome is unknown, so it is not counted as acknowledged. If this stalls, the
//! round waits for it ([`Traffic::stop`] joins the thread); each loop checks the stop flag at
//! least every [`WRITE_TIMEOUT`] + [`CONNECT_TIMEOUT`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use super::check::{Ack, Sample};
use crate::cluster::Cluster;

/// Time between two probes of one member (the split-brain sampling period).
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(150);
/// Longest a probe's write may take before it counts as not accepted.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest the writer waits for one acknowledgement before it gives up on the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a connection attempt may take (a partitioned member never answers).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest a `GET /primary` may take.
const REST_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between two writes (the writer's rate is at most ~1/this).
const WRITE_EVERY: Duration = Duration::from_millis(20);
/// Pause after a failed write or lookup before the next lookup.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// The SQL objects the traffic needs, created on the primary before the first round.
pub(crate) const SCHEMA: &str = "create table if not exists nemesis_writes(id bigint primary key); \
     create table if not exists nemesis_probe(member text primary key, n bigint not null)";

/// What the traffic recorded, times measured from the round's origin.
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    /// Every acknowledged row, in order.
    pub acked: Vec<Ack>,
    /// Every probe outcome.
    pub samples: Vec<Sample>,
    /// Inserts attempted (acknowledged or not).
    pub attempted: u64,
    /// The first and last id the writer used (inclusive), if it tried any.
    pub ids: Option<(i64, i64)>,
}

/// Traffic running on the client host until [`Traffic::stop`].
pub(crate) struct Traffic {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<Recorded>>,
}

/// Where and how to connect.
#[derive(Clone)]
struct Targets {
    ips: Vec<String>,
    names: Vec<String>,
    password: String,
}

// === impl Traffic ===

impl Traffic {
    /// Starts the writer (ids from `next_id` on, `next_id` advanced as they are used) and the
    /// probes; times are measured from `origin`.
    pub(crate) fn start(cluster: &Cluster, next_id: Arc<AtomicI64>, origin: Instant) -> Self {
        let targets = Targets {
            ips: cluster
                .members
                .iter()
                .map(|m| m.host.ip().to_owned())
                .collect(),
            names: cluster.members.iter().map(|m| m.name.clone()).collect(),
            password: cluster.spec.superuser_password.clone(),
        };
        let client = patroni_testlab::Host::attach(cluster.client.info().clone());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            client
                .run_inside(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("start the client's runtime")?;
                    Ok(rt.block_on(run(targets, next_id, origin, flag)))
                })
                .context("enter the client host")?
        });
        Traffic { stop, thread }
    }

    /// Stops the traffic and returns what it recorded.
    ///
    /// # Errors
    /// The client host could not be entered, or the traffic thread panicked.
    pub(crate) fn stop(self) -> anyhow::Result<Recorded> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the traffic thread panicked"))?
    }
}

async fn run(
    targets: Targets,
    next_id: Arc<AtomicI64>,
    origin: Instant,
    stop: Arc<AtomicBool>,
) -> Recorded {
    let tick_origin = tokio::time::Instant::now();
    let probes: Vec<_> = (0..targets.ips.len())
        .map(|i| tokio::spawn(probe(targets.clone(), i, origin, tick_origin, stop.clone())))
        .collect();
    let mut recorded = writer(&targets, &next_id, origin, &stop).await;
    for p in probes {
        if let Ok(samples) = p.await {
            recorded.samples.extend(samples);
        }
    }
    recorded
}

/// A connection to the PostgreSQL at `ip` as the superuser, within [`CONNECT_TIMEOUT`].
async fn connect(ip: &str, password: &str) -> Option<Client> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(ip)
        .port(5432)
        .user("postgres")
        .password(password)
        .dbname("postgres")
        .connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
        .await
        .ok()?
        .ok()?;
    tokio::spawn(connection);
    Some(client)
}

/// Whether the member at `ip` answers `GET /primary` with 200.
async fn is_primary(ip: &str) -> bool {
    let ask = async {
        let mut s = tokio::net::TcpStream::connect((ip, 8008)).await.ok()?;
        s.write_all(b"GET /primary HTTP/1.0\r\nHost: nemesis\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 16];
        let mut n = 0;
        while n < head.len() {
            match s.read(&mut head[n..]).await.ok()? {
                0 => break,
                k => n += k,
            }
        }
        let line = String::from_utf8_lossy(&head[..n]).into_owned();
        Some(line.split_whitespace().nth(1) == Some("200"))
    };
    matches!(
        tokio::time::timeout(REST_TIMEOUT, ask).await,
        Ok(Some(true))
    )
}

/// The writer (see the module doc) until `stop`.
async fn writer(
    targets: &Targets,
    next_id: &AtomicI64,
    origin: Instant,
    stop: &AtomicBool,
) -> Recorded {
    let mut recorded = Recorded::default();
    let mut conn: Option<(Client, usize)> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some((client, member)) = conn.take() else {
            for (i, ip) in targets.ips.iter().enumerate() {
                if is_primary(ip).await
                    && let Some(c) = connect(ip, &targets.password).await
                {
                    conn = Some((c, i));
                    break;
                }
            }
            if conn.is_none() {
                tokio::time::sleep(RETRY_EVERY).await;
            }
            continue;
        };
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        recorded.ids = Some((recorded.ids.map_or(id, |(first, _)| first), id));
        recorded.attempted += 1;
        let statement = format!("insert into nemesis_writes values ({id})");
        let insert = client.simple_query(&statement);
        match tokio::time::timeout(WRITE_TIMEOUT, insert).await {
            Ok(Ok(_)) => {
                recorded.acked.push(Ack {
                    id,
                    member,
                    at: origin.elapsed(),
                });
                conn = Some((client, member));
                tokio::time::sleep(WRITE_EVERY).await;
            }
            _ => tokio::time::sleep(RETRY_EVERY).await,
        }
    }
    recorded
}

/// Probe `member` every [`PROBE_EVERY`] until `stop`; one sample per tick it ran in.
async fn probe(
    targets: Targets,
    member: usize,
    origin: Instant,
    tick_origin: tokio::time::Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval_at(tick_origin, PROBE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut conn: Option<Client> = None;
    let statement = format!(
        "insert into nemesis_probe values ('{}', 1) \
         on conflict (member) do update set n = nemesis_probe.n + 1",
        targets.names[member]
    );
    while !stop.load(Ordering::Relaxed) {
        let at = ticks.tick().await;
        let tick = (at - tick_origin).as_millis() / PROBE_EVERY.as_millis();
        let attempt = async {
            let client = match conn.take() {
                Some(c) => c,
                None => connect(&targets.ips[member], &targets.password).await?,
            };
            // A replica is asked first, so it does not log a refused INSERT 7 times a second.
            let primary = match client.simple_query("select pg_is_in_recovery()").await {
                Ok(rows) => rows
                    .iter()
                    .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("f"))),
                Err(_) => false,
            };
            let ok = primary && client.simple_query(&statement).await.is_ok();
            // A refused write (a replica) keeps its connection; a broken one is dropped.
            if !client.is_closed() {
                conn = Some(client);
            }
            Some(ok)
        };
        // On a timeout the attempt, and with it the connection, is dropped.
        let committed = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, attempt).await,
            Ok(Some(true))
        );
        samples.push(Sample {
            tick: u64::try_from(tick).unwrap_or(u64::MAX),
            member,
            committed,
            at: origin.elapsed(),
        });
    }
    samples
}
