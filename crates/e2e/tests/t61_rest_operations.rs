//! The member REST API's operations on a real 3-member cluster (Endpoints mode): basic auth
//! on unsafe endpoints, `PATCH /config` applied live (a reloadable parameter everywhere
//! without a restart, `ttl`), a restart-only parameter reported as `pending_restart` and
//! applied by `POST /restart {"restart_pending": true}`, a scheduled restart, bad bodies
//! answered 400, `POST /reinitialize` of a replica, `POST /reload`, `GET /metrics`, a
//! scheduled switchover (nothing before its time, the candidate leads after it), and pause
//! mode: while paused a stopped primary is neither restarted nor replaced; on resume the
//! cluster has a primary again.

mod common;

use std::time::Duration;

use common::cluster::*;
use common::*;
use patroni_testlab::Lab;
use serde_json::{Value, json};

const USER: &str = "admin";
const PASSWORD: &str = "lab-rest-secret";

/// An HTTP answer: status and body.
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// `method path` on `to`'s REST API, from `to`'s own host, with basic auth when `auth`.
fn api(to: &Member, method: &str, path: &str, body: Option<&str>, auth: bool) -> Option<Answer> {
    let (status, body) = rest(to, method, path, body, auth.then_some((USER, PASSWORD)))?;
    Some(Answer { status, body })
}

fn status_doc(m: &Member) -> Option<Value> {
    let a = api(m, "GET", "/patroni", None, false)?;
    (a.status == 200).then(|| a.json())
}

fn show(m: &Member, setting: &str) -> Option<String> {
    sql(&m.host, &m.host, &m.spec, &format!("show {setting}"))
}

#[tokio::test]
async fn rest_operations_on_a_real_cluster() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t61-rest").await.expect("namespace");
    let scope = "restops";
    let (mut members, _kubeconfig) = start_cluster(lab, &ns, scope, true, 3, |spec| {
        spec.restapi_extra =
            format!("  authentication:\n    username: {USER}\n    password: {PASSWORD}\n");
    })
    .await;
    let primary = wait_for(FORM_TIMEOUT, "one primary, two streaming", &members, || {
        let w = writable(&members);
        let [p] = w.as_slice() else { return None };
        let i = members.iter().position(|m| &m.name == p)?;
        let n = sql(
            &members[i].host,
            &members[i].host,
            &members[i].spec,
            STREAMING_REPLICAS,
        )?;
        (n == "2").then_some(i)
    })
    .await;
    let replica = (primary + 1) % 3;
    let other = (primary + 2) % 3;
    let mut primary = primary;

    {
        tracing::info!("--- GET /patroni lists the primary's WAL senders under replication");
        // A replica still cloning shows as a `pg_basebackup` sender first (Patroni lists it too).
        let replicas = [members[replica].name.clone(), members[other].name.clone()];
        let doc = wait_for(
            FORM_TIMEOUT,
            "two streaming replication rows",
            &members,
            || {
                let d = status_doc(&members[primary])?;
                let rows = d["replication"].as_array()?;
                (rows.len() == 2
                    && rows.iter().all(|r| {
                        r["state"] == "streaming"
                            && replicas.iter().any(|n| r["application_name"] == n.as_str())
                    }))
                .then_some(d)
            },
        )
        .await;
        let mut names: Vec<&str> = doc["replication"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                assert_eq!(r["state"], "streaming", "{r}");
                assert_eq!(r["sync_state"], "async", "{r}");
                assert_eq!(r["sync_priority"], 0, "{r}");
                assert!(
                    r["usename"].is_string() && r["client_addr"].is_string(),
                    "{r}"
                );
                r["application_name"].as_str().expect("application_name")
            })
            .collect();
        names.sort_unstable();
        let mut want = vec![members[replica].name.as_str(), members[other].name.as_str()];
        want.sort_unstable();
        assert_eq!(names, want);
        let d = status_doc(&members[replica]).expect("replica status");
        assert!(d.get("replication").is_none(), "{d}");
    }
    {
        tracing::info!("--- unsafe endpoints need basic auth; bad bodies are 400");
        let a = api(&members[replica], "POST", "/reload", None, false).expect("answer");
        assert_eq!(a.status, 401, "{}", a.body);
        let a = api(
            &members[replica],
            "PATCH",
            "/config",
            Some(r#"{"ttl": 21}"#),
            false,
        )
        .expect("answer");
        assert_eq!(a.status, 401, "{}", a.body);
        let a = api(&members[replica], "POST", "/reload", None, true).expect("answer");
        assert_eq!((a.status, a.body.as_str()), (202, "reload scheduled"));
        for (path, body) in [
            ("/config", "not json"),
            ("/config", "[1, 2]"),
            ("/restart", r#"{"role": "master"}"#),
            ("/restart", r#"{"unknown": 1}"#),
            ("/restart", r#"{"timeout": -5}"#),
            ("/restart", r#"{"postgres_version": "abc"}"#),
        ] {
            let method = if path == "/config" { "PATCH" } else { "POST" };
            let a = api(&members[replica], method, path, Some(body), true).expect("answer");
            assert_eq!(a.status, 400, "{method} {path} {body}: {}", a.body);
            assert!(
                !a.body.is_empty(),
                "{method} {path} {body}: no reason given"
            );
        }
    }
    {
        tracing::info!("--- PATCH /config: work_mem reloaded everywhere, ttl changed");
        let patch = json!({"ttl": 25, "postgresql": {"parameters": {"work_mem": "8MB"}}});
        let a = api(
            &members[replica],
            "PATCH",
            "/config",
            Some(&patch.to_string()),
            true,
        )
        .expect("answer");
        assert_eq!(a.status, 200, "{}", a.body);
        let config = a.json();
        assert_eq!(config["ttl"], 25);
        assert_eq!(config["postgresql"]["parameters"]["work_mem"], "8MB");
        assert_eq!(config["loop_wait"], LOOP_WAIT, "other keys kept: {config}");
        let starts: Vec<Value> = wait_for(
            Duration::from_secs(20),
            "every member reports its postmaster start time",
            &members,
            || {
                members
                    .iter()
                    .map(|m| {
                        let t = status_doc(m)?["postmaster_start_time"].clone();
                        t.is_string().then_some(t)
                    })
                    .collect()
            },
        )
        .await;
        wait_for(
            Duration::from_secs(30),
            "work_mem = 8MB on every member",
            &members,
            || {
                members
                    .iter()
                    .all(|m| show(m, "work_mem").as_deref() == Some("8MB"))
                    .then_some(())
            },
        )
        .await;
        for (m, start) in members.iter().zip(&starts) {
            assert_eq!(
                &status_doc(m).expect("status")["postmaster_start_time"],
                start,
                "{} was restarted for a reloadable parameter",
                m.name
            );
        }
        let a = api(&members[other], "GET", "/config", None, false).expect("answer");
        assert_eq!(a.json()["ttl"], 25);
    }
    {
        tracing::info!("--- a restart-only parameter is pending; POST /restart applies it");
        let patch = json!({"postgresql": {"parameters": {"max_connections": 123}}});
        let a = api(
            &members[primary],
            "PATCH",
            "/config",
            Some(&patch.to_string()),
            true,
        )
        .expect("answer");
        assert_eq!(a.status, 200, "{}", a.body);
        wait_for(
            Duration::from_secs(30),
            "pending_restart on every member",
            &members,
            || {
                members
                    .iter()
                    .all(|m| {
                        status_doc(m).is_some_and(|d| {
                            d["pending_restart"] == true
                                && d["pending_restart_reason"]["max_connections"]["new_value"]
                                    == "123"
                        })
                    })
                    .then_some(())
            },
        )
        .await;
        let a = api(
            &members[replica],
            "POST",
            "/restart",
            Some(r#"{"role": "primary"}"#),
            true,
        )
        .expect("answer");
        assert_eq!(
            (a.status, a.body.as_str()),
            (503, "restart conditions are not satisfied")
        );
        let a = api(
            &members[replica],
            "POST",
            "/restart",
            Some(r#"{"restart_pending": true}"#),
            true,
        )
        .expect("answer");
        assert_eq!((a.status, a.body.as_str()), (200, "restarted successfully"));
        assert_eq!(
            show(&members[replica], "max_connections").as_deref(),
            Some("123")
        );
        wait_for(
            Duration::from_secs(20),
            "pending_restart cleared on the restarted replica",
            &members,
            || {
                status_doc(&members[replica])
                    .is_some_and(|d| d.get("pending_restart").is_none())
                    .then_some(())
            },
        )
        .await;
    }
    {
        tracing::info!("--- a scheduled restart runs at its time");
        let before = status_doc(&members[other]).expect("status")["postmaster_start_time"].clone();
        let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(6);
        let body = json!({"schedule": at.to_string()}).to_string();
        let a = api(&members[other], "POST", "/restart", Some(&body), true).expect("answer");
        assert_eq!((a.status, a.body.as_str()), (202, "Restart scheduled"));
        let a = api(&members[other], "POST", "/restart", Some(&body), true).expect("answer");
        assert_eq!(
            (a.status, a.body.as_str()),
            (409, "Another restart is already scheduled")
        );
        assert!(
            status_doc(&members[other]).expect("status")["scheduled_restart"]["schedule"]
                .is_string()
        );
        wait_for(
            Duration::from_secs(60),
            "the scheduled restart ran",
            &members,
            || {
                let d = status_doc(&members[other])?;
                (d["state"] == "running"
                    && d["postmaster_start_time"] != before
                    && d.get("scheduled_restart").is_none())
                .then_some(())
            },
        )
        .await;
        assert_eq!(
            show(&members[other], "max_connections").as_deref(),
            Some("123")
        );
        let a = api(&members[other], "DELETE", "/restart", None, true).expect("answer");
        assert_eq!(
            (a.status, a.body.as_str()),
            (404, "no restarts are scheduled")
        );
    }
    {
        tracing::info!("--- POST /reinitialize: refused on the leader, rebuilds a replica");
        let a = api(&members[primary], "POST", "/reinitialize", Some("{}"), true).expect("answer");
        assert_eq!(
            (a.status, a.body.as_str()),
            (503, "I am the leader, can not reinitialize")
        );
        let (p, s) = (&members[primary].host, &members[primary].spec);
        sql(
            p,
            p,
            s,
            "create table reinit_marker(v int); insert into reinit_marker values (7)",
        )
        .expect("write on the primary");
        let a = api(
            &members[other],
            "POST",
            "/reinitialize",
            Some(r#"{"force": true}"#),
            true,
        )
        .expect("answer");
        assert_eq!((a.status, a.body.as_str()), (200, "reinitialize started"));
        wait_for(
            FORM_TIMEOUT,
            "the reinitialised replica streams again with the data",
            &members,
            || {
                let m = &members[other];
                let v = sql(&m.host, &m.host, &m.spec, "select v from reinit_marker")?;
                let d = status_doc(m)?;
                (v == "7" && d["replication_state"] == "streaming").then_some(())
            },
        )
        .await;
    }
    {
        tracing::info!("--- GET /metrics");
        let a = api(&members[primary], "GET", "/metrics", None, false).expect("answer");
        assert_eq!(a.status, 200);
        let name = &members[primary].name;
        let line = format!("patroni_primary{{scope=\"{scope}\",name=\"{name}\"}} 1");
        assert!(a.body.contains(&line), "no {line:?} in\n{}", a.body);
        assert!(!a.body.contains("patroni_master"), "{}", a.body);
    }
    {
        tracing::info!("--- a scheduled switchover happens at its time, not before");
        let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(8);
        let body = json!({
            "leader": members[primary].name,
            "candidate": members[other].name,
            "scheduled_at": at.to_string(),
        });
        let a = api(
            &members[primary],
            "POST",
            "/switchover",
            Some(&body.to_string()),
            true,
        )
        .expect("answer");
        assert_eq!((a.status, a.body.as_str()), (202, "Switchover scheduled"));
        let a = api(&members[replica], "GET", "/cluster", None, false).expect("answer");
        assert_eq!(
            a.json()["scheduled_switchover"]["to"],
            members[other].name.as_str(),
            "{}",
            a.body
        );
        while jiff::Timestamp::now() < at - jiff::SignedDuration::from_secs(2) {
            assert_eq!(
                writable(&members),
                [members[primary].name.clone()],
                "switched over before the scheduled time"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let new = members[other].name.clone();
        wait_for(
            Duration::from_secs(60),
            "the candidate leads after the scheduled time",
            &members,
            || (writable(&members) == [new.as_str()]).then_some(()),
        )
        .await;
        primary = other;
    }
    {
        tracing::info!("--- pause: a stopped primary is neither restarted nor replaced");
        // Right after a switchover the new leader writes its history into the same config
        // object: a PATCH read before that write is refused with 409, as Patroni's is. A
        // client sends it again.
        let a = wait_for(
            Duration::from_secs(30),
            "PATCH /config pause not refused by a concurrent write",
            &members,
            || {
                let a = api(
                    &members[replica],
                    "PATCH",
                    "/config",
                    Some(r#"{"pause": true}"#),
                    true,
                )?;
                (a.status != 409).then_some(a)
            },
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        wait_for(
            Duration::from_secs(30),
            "every member reports pause",
            &members,
            || {
                members
                    .iter()
                    .all(|m| status_doc(m).is_some_and(|d| d["pause"] == true))
                    .then_some(())
            },
        )
        .await;
        let m = &members[primary];
        let data = m.config.with_file_name("data");
        let out = m
            .host
            .command_as("postgres", "/usr/lib/postgresql/15/bin/pg_ctl")
            .args(["stop", "-m", "fast", "-D"])
            .arg(&data)
            .output()
            .expect("pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let watch_for = Duration::from_secs(u64::from(TTL + 5 * LOOP_WAIT));
        let deadline = tokio::time::Instant::now() + watch_for;
        while tokio::time::Instant::now() < deadline {
            assert!(
                writable(&members).is_empty(),
                "something was started or promoted while paused\n{}",
                logs(&members)
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tracing::info!("--- resume: the cluster gets a primary again");
        let a = api(
            &members[replica],
            "PATCH",
            "/config",
            Some(r#"{"pause": null}"#),
            true,
        )
        .expect("answer");
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.json().get("pause").is_none(), "{}", a.body);
        wait_for(FAILOVER_TIMEOUT, "a primary after resume", &members, || {
            (writable(&members).len() == 1).then_some(())
        })
        .await;
    }
    stop_all(&mut members);
}
