//! Python Patroni 4.1.5 and our agents in one cluster on etcd v3: two of our members form the
//! cluster; a Python Patroni daemon joins it as a third member (it reads our leader, config
//! and status keys to clone and follow; we read its member key). A switchover through our
//! REST API then hands the leadership to the Python member: it reads our failover key and
//! takes the lock, and our members follow it. A checker never sees two writable members.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::cluster::*;
use common::scenario::*;
use common::*;
use patroni_testlab::{EtcdServer, Lab, PG_USER};

/// `python -m patroni CONFIG` on `m`'s host as the postgres user, logging to `m.log`.
fn spawn_python(m: &Member) -> Child {
    let venv = python_daemon_venv(&["requirements.txt", "requirements-etcd3.txt"]);
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&m.log)
        .expect("open log");
    let err = out.try_clone().expect("clone log");
    m.host
        .command_as(PG_USER, venv.join("bin/python"))
        .args(["-m", "patroni"])
        .arg(&m.config)
        .env("HOME", m.config.parent().expect("config dir"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start Python Patroni")
}

/// The members `GET /cluster` on `m` lists, with their role and state.
fn cluster_members(m: &Member) -> Option<Vec<(String, String, String)>> {
    let (status, body) = rest(m, "GET", "/cluster", None, None)?;
    let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
    (status == 200).then_some(())?;
    Some(
        doc["members"]
            .as_array()?
            .iter()
            .map(|x| {
                let s = |k: &str| x[k].as_str().unwrap_or("").to_string();
                (s("name"), s("role"), s("state"))
            })
            .collect(),
    )
}

/// A Python Patroni member joins our etcd cluster, then takes over by a REST switchover.
#[tokio::test]
async fn python_patroni_joins_our_etcd3_cluster_and_takes_over() {
    init_tracing();
    let lab = Lab::shared();
    let scope = "mixed";
    let etcd_host = lab.host("etcd").expect("etcd host");
    let etcd = EtcdServer::start_on(&etcd_host).expect("etcd on its host");
    let endpoint = etcd.host_port().to_string();
    let (mut members, _) = start_etcd3_cluster(lab, &endpoint, scope, 2, |_| {});
    let primary = {
        tracing::info!("--- our two members form the cluster");
        let primary = wait_for(FORM_TIMEOUT, "one writable member", &members, || {
            let w = writable(&members);
            (w.len() == 1).then(|| w[0].clone())
        })
        .await;
        let p = members
            .iter()
            .position(|m| m.name == primary)
            .expect("member");
        wait_for(FORM_TIMEOUT, "one replica streaming", &members, || {
            let n = sql(
                &members[p].host,
                &members[p].host,
                &members[p].spec,
                STREAMING_REPLICAS,
            )?;
            (n == "1").then_some(())
        })
        .await;
        p
    };
    {
        tracing::info!(
            "--- Python Patroni 4.1.5 joins as m2: it clones from our primary and streams"
        );
        let mut m2 = prepare_etcd3_member(lab, &endpoint, scope, "m2");
        m2.agent = Some(spawn_python(&m2));
        members.push(m2);
        let python = wait_for(
            Duration::from_secs(60),
            "m2's REST API answers",
            &members,
            || {
                let (_, body) = rest(&members[2], "GET", "/patroni", None, None)?;
                let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
                doc["patroni"]["version"].as_str().map(String::from)
            },
        )
        .await;
        assert_eq!(python, "4.1.5", "m2 runs Python Patroni");
        let p = &members[primary];
        wait_for(
            FORM_TIMEOUT,
            "two replicas streaming, the Python one too",
            &members,
            || {
                let n = sql(&p.host, &p.host, &p.spec, STREAMING_REPLICAS)?;
                let listed = cluster_members(p)?;
                let m2 = listed
                    .iter()
                    .any(|(n, r, s)| n == "m2" && r == "replica" && s == "streaming");
                (n == "2" && m2).then_some(())
            },
        )
        .await;
    }
    let checker = NeverTwoWritable::start(&members);
    {
        tracing::info!("--- switchover through our REST API to the Python member");
        let m2 = index(&members, "m2");
        let answer = wait_for(
            Duration::from_secs(60),
            "the switchover is accepted",
            &members,
            || rest_switchover(&members[primary], &members[m2]),
        )
        .await;
        assert!(
            answer.contains("Successfully switched over to \"m2\""),
            "{answer}"
        );
        wait_for(
            FORM_TIMEOUT,
            "the Python member leads, our two stream from it",
            &members,
            || {
                let p = &members[m2];
                (writable(&members) == ["m2"]).then_some(())?;
                (sql(&p.host, &p.host, &p.spec, STREAMING_REPLICAS)? == "2").then_some(())?;
                let ours = cluster_members(&members[primary])?;
                ours.iter()
                    .any(|(n, r, _)| n == "m2" && r == "leader")
                    .then_some(())
            },
        )
        .await;
    }
    checker.finish(&members);
    stop_all(&mut members);
    drop(etcd);
}
