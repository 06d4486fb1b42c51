//! `patronictl promote-cluster` / `demote-cluster` (#20) on the lab's Kubernetes: cluster A
//! (2 members, namespace `t66-a`) and cluster B (2 members, namespace `t66-b`), a standby
//! cluster of A's primary.
//!
//! 1. Rows written on A appear on B.
//! 2. Our `patronictl promote-cluster beta --force`: B's standby leader is promoted, B accepts
//!    writes.
//! 3. A keeps writing after B's promotion, so A's history diverges from B's.
//! 4. Python Patroni 4.1.5's `patronictl demote-cluster alpha --host B --port 5432 --force`
//!    (the dynamic configuration both write is the same): A's leader becomes a standby leader
//!    following B. Its history is rewound from B with `pg_rewind` (the rows A wrote after B's
//!    promotion are gone, B's are there), not re-cloned: `global/pg_control` and a relation
//!    file keep their inodes, the log shows exactly one `pg_rewind` from `remote_member`, never
//!    `cloning a replica`. A's replica, diverged the same way, is rewound from B too and
//!    follows A's standby leader. Python's patronictl shows A's Standby Leader.

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::*;
use common::*;
use patroni_testlab::Lab;
use tokio::time::Instant;

/// The one writable member of `members` once `replicas` replicas stream from it.
fn primary_streaming_to(members: &[Member], replicas: usize) -> Option<usize> {
    let w = writable(members);
    let [p] = w.as_slice() else { return None };
    let p = members.iter().position(|m| &m.name == p)?;
    let (h, s) = (&members[p].host, &members[p].spec);
    let n: usize = sql(h, h, s, STREAMING_REPLICAS)?.parse().ok()?;
    (n >= replicas).then_some(p)
}

/// The member whose `GET /patroni` says `standby_leader`, once `replicas` stream from it.
fn standby_leader(members: &[Member], replicas: usize) -> Option<usize> {
    let found: Vec<usize> = members
        .iter()
        .enumerate()
        .filter(|(_, m)| {
            get_json(m, "/patroni").is_some_and(|(_, doc)| doc["role"] == "standby_leader")
        })
        .map(|(i, _)| i)
        .collect();
    let [l] = found.as_slice() else { return None };
    let (h, s) = (&members[*l].host, &members[*l].spec);
    let n: usize = sql(h, h, s, STREAMING_REPLICAS)?.parse().ok()?;
    (n >= replicas).then_some(*l)
}

/// How many rows `x = value` of table `t` member `m` has.
fn rows(m: &Member, value: u32) -> Option<String> {
    sql(
        &m.host,
        &m.host,
        &m.spec,
        &format!("select count(*) from t where x = {value}"),
    )
}

/// Whether every member of `members` has `count` rows `x = value`.
fn everywhere(members: &[Member], value: u32, count: &str) -> bool {
    members
        .iter()
        .all(|m| rows(m, value).as_deref() == Some(count))
}

/// Inserts `x = value` on `m`; panics if refused.
fn insert(m: &Member, value: u32) {
    sql(
        &m.host,
        &m.host,
        &m.spec,
        &format!("insert into t values ({value})"),
    )
    .unwrap_or_else(|| panic!("insert {value} on {}", m.name));
}

/// The address `m`'s WAL receiver streams from.
fn streams_from(m: &Member) -> Option<String> {
    sql(
        &m.host,
        &m.host,
        &m.spec,
        "select sender_host from pg_stat_wal_receiver where status = 'streaming'",
    )
}

/// `m`'s data directory.
fn data_dir(m: &Member) -> PathBuf {
    m.config.parent().expect("config dir").join("data")
}

/// Inodes of files a re-clone would create anew and `pg_rewind` rewrites in place:
/// `global/pg_control` and table `t`'s first segment.
fn inodes(m: &Member, t_file: &str) -> (u64, u64) {
    let ino = |p: &Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
            .ino()
    };
    let dir = data_dir(m);
    (ino(&dir.join("global/pg_control")), ino(&dir.join(t_file)))
}

/// A `patronictl` command (`program`) run on member `on`'s host with its configuration and
/// `kubeconfig` (the members' REST APIs are reachable from the lab network only), given three
/// minutes.
fn ctl(on: &Member, kubeconfig: &Path, program: &Path) -> std::process::Command {
    let mut cmd = on.host.command("timeout");
    cmd.arg("180")
        .arg(program)
        .env("KUBECONFIG", kubeconfig)
        .arg("-c")
        .arg(&on.config);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_cluster_then_demote_cluster_rewinds_the_old_primary() {
    init_tracing();
    let started = Instant::now();
    let lab = Lab::shared();
    let ns_a = lab.namespace("t66-a").await.expect("namespace a");
    let ns_b = lab.namespace("t66-b").await.expect("namespace b");
    let (mut a, kube_a) = start_cluster(lab, &ns_a, "alpha", false, 2, |_| {}).await;
    let p = wait_for(FORM_TIMEOUT, "cluster A formed", &a, || {
        primary_streaming_to(&a, 1)
    })
    .await;
    let r = 1 - p;
    let remote = a[p].host.ip().to_owned();
    sql(
        &a[p].host,
        &a[p].host,
        &a[p].spec,
        "create table t (x int); insert into t values (1)",
    )
    .expect("create t on A");
    let t_file = sql(
        &a[p].host,
        &a[p].host,
        &a[p].spec,
        "select pg_relation_filepath('t')",
    )
    .expect("t's file");

    let (mut b, kube_b) = {
        tracing::info!("--- cluster B: a standby cluster of A ({remote})");
        let remote = remote.clone();
        start_cluster(lab, &ns_b, "beta", false, 2, move |s| {
            s.dcs_extra.insert(
                "standby_cluster".into(),
                format!("{{host: {remote}, port: 5432}}"),
            );
        })
        .await
    };
    let sl = wait_for(
        FORM_TIMEOUT,
        "B's standby leader with its replica",
        &b,
        || standby_leader(&b, 1),
    )
    .await;
    insert(&a[p], 2);
    wait_for(Duration::from_secs(60), "row 2 on B", &b, || {
        everywhere(&b, 2, "1").then_some(())
    })
    .await;
    tracing::info!(
        "--- A and B formed, row 2 replicated after {:?}",
        started.elapsed()
    );

    {
        tracing::info!("--- our patronictl promote-cluster beta");
        let program = ctl_binary(); // built before the clock starts
        let t = Instant::now();
        let out = ctl(&b[sl], &kube_b, &program)
            .args(["promote-cluster", "beta", "--force"])
            .output()
            .expect("run patronictl");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("cluster is successfully promoted"),
            "promote-cluster: {}\n{stdout}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            logs(&b)
        );
        tracing::info!("promote-cluster took {:?}:\n{stdout}", t.elapsed());

        let name = b[sl].name.clone();
        wait_for(FAILOVER_TIMEOUT, "B's leader writable", &b, || {
            (writable(&b) == [name.clone()]).then_some(())
        })
        .await;
        insert(&b[sl], 10);
        wait_for(Duration::from_secs(60), "B's row 10 on B", &b, || {
            everywhere(&b, 10, "1").then_some(())
        })
        .await;
    }

    {
        tracing::info!("--- A writes on after B's promotion: A's history diverges from B's");
        insert(&a[p], 20);
        wait_for(Duration::from_secs(30), "row 20 on A's replica", &a, || {
            everywhere(&a, 20, "1").then_some(())
        })
        .await;
        // A checkpoint, so the diverged row is in A's data files, not only in its WAL.
        sql(&a[p].host, &a[p].host, &a[p].spec, "checkpoint").expect("checkpoint on A");
    }

    let before: Vec<(u64, u64)> = a.iter().map(|m| inodes(m, &t_file)).collect();
    let log_len: Vec<usize> = a
        .iter()
        .map(|m| std::fs::read_to_string(&m.log).unwrap_or_default().len())
        .collect();
    let b_ip = b[sl].host.ip().to_owned();
    {
        tracing::info!("--- Python patronictl demote-cluster alpha --host {b_ip}");
        let t = Instant::now();
        let out = ctl(&a[r], &kube_a, &venv().join("bin/patronictl"))
            .args([
                "demote-cluster",
                "alpha",
                "--host",
                &b_ip,
                "--port",
                "5432",
                "--force",
            ])
            .output()
            .expect("run Python patronictl");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("cluster is successfully demoted"),
            "demote-cluster: {}\n{stdout}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            logs(&a)
        );
        tracing::info!("demote-cluster took {:?}:\n{stdout}", t.elapsed());
        assert!(
            stdout.contains(&format!("| {} ", a[p].name)) && stdout.contains("Standby Leader"),
            "Python patronictl shows A's standby leader:\n{stdout}"
        );
    }

    {
        tracing::info!("--- A follows B: rewound, not re-cloned");
        let t = Instant::now();
        let sl_a = wait_for(
            Duration::from_secs(120),
            "A's standby leader streaming from B with A's replica streaming from it",
            &a,
            || {
                let l = standby_leader(&a, 1)?;
                (streams_from(&a[l]).as_deref() == Some(b_ip.as_str())).then_some(l)
            },
        )
        .await;
        assert_eq!(sl_a, p, "A's leader kept the lock");
        assert!(writable(&a).is_empty(), "nobody in A is writable");
        insert(&b[sl], 30);
        wait_for(
            Duration::from_secs(60),
            "B's rows on every member of A",
            &a,
            || (everywhere(&a, 10, "1") && everywhere(&a, 30, "1")).then_some(()),
        )
        .await;
        tracing::info!("A follows B after {:?}", t.elapsed());
        assert!(
            everywhere(&a, 20, "0"),
            "A's row written after B's promotion was rewound away"
        );
        assert_eq!(streams_from(&a[r]).as_deref(), Some(remote.as_str()));
        let after: Vec<(u64, u64)> = a.iter().map(|m| inodes(m, &t_file)).collect();
        assert_eq!(
            before, after,
            "A's data files are the same files: no re-clone"
        );
        for (m, len) in a.iter().zip(&log_len) {
            let log = std::fs::read_to_string(&m.log).unwrap_or_default();
            let since = log.get(*len..).unwrap_or_default();
            let rewinds = since.matches("pg_rewind done").count();
            tracing::info!(member = %m.name, rewinds, "pg_rewind runs since the demotion");
            assert_eq!(rewinds, 1, "{} ran pg_rewind once:\n{since}", m.name);
            assert!(
                since.contains("running pg_rewind from remote_member"),
                "{} was rewound from the remote:\n{since}",
                m.name
            );
            for line in since
                .lines()
                .filter(|l| l.contains("pg_rewind done") || l.contains("timeline check"))
            {
                tracing::info!(member = %m.name, "{line}");
            }
            assert!(
                !since.contains("cloning a replica"),
                "{} was not re-cloned:\n{since}",
                m.name
            );
        }
    }
    tracing::info!("--- done after {:?}", started.elapsed());
    stop_all(&mut b);
    stop_all(&mut a);
}
