//! Python Patroni 4.1.5 and patroni-rs share one cluster in ZooKeeper: what Patroni's own
//! `ZooKeeper` DCS class (kazoo) writes, our backend reads field by field, and what ours writes,
//! Patroni's class reads. Both run on the machine against a real server on loopback.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::contract::{self, Backend};
use common::zookeeper::Zookeeper;
use patroni_core::MemberData;
use patroni_dcs::{Dcs, FailoverRequest, LeaderStatusUpdate};
use serde_json::{Value, json};

/// Python Patroni's side: opens `get_dcs()` for member `py0` of `$SCOPE` at `$HOSTS` (ttl 10 s:
/// its session, so its lock, outlives it by that much), then
/// `write` (bootstrap, config, member, lock, status with slots and failsafe, history, sync,
/// failover) or `read` (its view as JSON). Prints one JSON line, then keeps its session (and
/// so its ephemeral znodes) until stdin closes.
const PEER: &str = r#"
import json, os, sys
from patroni.dcs import get_dcs
cfg = {'scope': os.environ['SCOPE'], 'name': 'py0', 'ttl': 10, 'loop_wait': 2,
       'retry_timeout': 10, 'zookeeper': {'hosts': [os.environ['HOSTS']]}}
dcs = get_dcs(cfg)
if sys.argv[1] == 'write':
    dcs.get_cluster()
    assert dcs.initialize(create_new=True)
    assert dcs.initialize(create_new=False, sysid='7458224513374582711')
    assert dcs.set_config_value(json.dumps({'ttl': 30, 'loop_wait': 10}, separators=(',', ':')))
    assert dcs.touch_member({'conn_url': 'postgres://10.0.0.9:5432/postgres',
                             'api_url': 'http://10.0.0.9:8008/patroni',
                             'state': 'running', 'role': 'primary', 'version': '4.1.5'})
    assert dcs.attempt_to_acquire_leader()
    cluster = dcs.get_cluster()
    assert dcs.update_leader(cluster, 67110344, slots={'m1': 5},
                             failsafe={'py0': 'http://10.0.0.9:8008/patroni'})
    assert dcs.set_history_value(json.dumps([[1, 25165984, 'no recovery target specified',
                                              '2025-01-01T00:00:00+00:00', 'py0']]))
    assert dcs.write_sync_state('py0', ['m1'], 0) is not None
    assert dcs.manual_failover('py0', 'm1')
    print(json.dumps({'session': dcs._client.client_id[0]}), flush=True)
else:
    c = dcs.get_cluster()
    print(json.dumps({
        'initialize': c.initialize,
        'config': c.config and c.config.data,
        'leader': c.leader and c.leader.name,
        'leader_session_is_member_session': bool(c.leader) and c.leader.session == c.leader.member.session,
        'leader_role': c.leader and c.leader.member.data.get('role'),
        'last_lsn': c.status.last_lsn,
        'retain_slots': c.status.retain_slots,
        'members': sorted(m.name for m in c.members),
        'sync': [c.sync.leader, c.sync.sync_standby, c.sync.quorum],
        'failover': c.failover and [c.failover.leader, c.failover.candidate],
        'history': c.history and c.history.lines,
        'failsafe': c.failsafe,
    }), flush=True)
sys.stdin.read()
"#;

/// A running Python peer and the JSON line it printed.
struct Peer {
    child: Child,
    line: Value,
}

impl Peer {
    fn run(zk: &Zookeeper, action: &str) -> Peer {
        let mut child = Command::new(common::venv().join("bin/python"))
            .args(["-c", PEER, action])
            .env("SCOPE", &zk.scope)
            .env("HOSTS", zk.server.host_port())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Python peer");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the peer's answer");
        let line = serde_json::from_str(&line).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!("the Python peer failed ({e}): {line:?}")
        });
        Peer { child, line }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Closing stdin lets the peer exit; kill it in case it does not.
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What Patroni's ZooKeeper class writes, ours reads: the lock held by Patroni's session, its
/// member, status (LSN, slots), failsafe topology, config, history, sync and failover keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_read_what_python_patroni_writes() {
    common::init_tracing();
    let zk = Zookeeper::start("pywrites");
    let peer = Peer::run(&zk, "write");
    tracing::info!(answer = %peer.line, "--- Python Patroni wrote a whole cluster");
    let ours = zk
        .member("m1", Duration::from_secs(30), Duration::from_secs(4))
        .await;
    let c = ours.get_cluster().await.expect("view");
    assert_eq!(c.initialize.as_deref(), Some("7458224513374582711"));
    let config = c.config.clone().expect("config");
    assert_eq!(
        Value::Object(config.data),
        json!({"ttl": 30, "loop_wait": 10})
    );
    assert_eq!(c.leader_name(), Some("py0"));
    let leader = c
        .leader
        .as_ref()
        .and_then(|l| l.member.as_ref())
        .expect("leader member");
    assert_eq!(leader.data.role.as_deref(), Some("primary"));
    assert_eq!(
        leader.data.api_url.as_deref(),
        Some("http://10.0.0.9:8008/patroni")
    );
    assert_eq!(c.status.last_lsn, 67110344);
    assert_eq!(c.status.slots, Some([("m1".to_string(), 5)].into()));
    assert_eq!(
        c.failsafe,
        Some(
            [(
                "py0".to_string(),
                "http://10.0.0.9:8008/patroni".to_string()
            )]
            .into()
        )
    );
    assert_eq!(c.history.expect("history").lines.len(), 1);
    assert_eq!(
        (c.sync.leader.as_deref(), c.sync.sync_standby.clone()),
        (Some("py0"), vec!["m1".to_string()])
    );
    let f = c.failover.expect("failover");
    assert_eq!(
        (f.leader.as_deref(), f.candidate.as_deref()),
        (Some("py0"), Some("m1"))
    );
    tracing::info!("--- Patroni holds the lock: ours cannot take it");
    assert!(!contract::acquire(&ours).await);
    assert!(
        !ours
            .update_leader(&contract::optime(1))
            .await
            .expect("renew")
    );
    tracing::info!("--- Patroni's session ends: the lock is free for ours");
    drop(peer);
    contract::wait_view(&ours, Duration::from_secs(30), "py0's lock gone", |v| {
        !v.is_locked()
    })
    .await;
    assert!(contract::acquire(&ours).await);
}

/// What ours writes, Patroni's ZooKeeper class reads: the lock and the holder's member bound to
/// one session, status, config, history, sync, failover and failsafe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_patroni_reads_what_we_write() {
    common::init_tracing();
    let zk = Zookeeper::start("rswrites");
    let m0 = zk
        .member("m0", Duration::from_secs(30), Duration::from_secs(4))
        .await;
    {
        tracing::info!("--- ours writes a whole cluster");
        assert!(m0.initialize("").await.expect("race"));
        assert!(m0.initialize("7458224513374582711").await.expect("sysid"));
        assert!(
            m0.set_config_value(r#"{"ttl":30,"loop_wait":10}"#, None)
                .await
                .expect("config")
        );
        let data = MemberData {
            conn_url: Some("postgres://10.0.0.1:5432/postgres".into()),
            api_url: Some("http://10.0.0.1:8008/patroni".into()),
            state: Some("running".into()),
            role: Some("primary".into()),
            version: Some("4.1.5".into()),
            ..MemberData::default()
        };
        assert!(m0.touch_member(&data).await.expect("touch"));
        assert!(contract::acquire(&m0).await);
        let status = LeaderStatusUpdate {
            last_lsn: Some(67110344),
            retain_slots: Some(vec!["m0".into()]),
            failsafe: Some([("m0".to_string(), "http://10.0.0.1:8008/patroni".to_string())].into()),
            ..LeaderStatusUpdate::default()
        };
        assert!(m0.update_leader(&status).await.expect("renew"));
        let history =
            r#"[[1,25165984,"no recovery target specified","2025-01-01T00:00:00+00:00","m0"]]"#;
        assert!(m0.set_history_value(history).await.expect("history"));
        let sync = m0
            .write_sync_state(Some("m0"), &["m1".into()], Some(1), None)
            .await;
        assert!(sync.expect("sync").is_some());
        let request = FailoverRequest::Request {
            leader: Some("m0"),
            candidate: Some("m1"),
            scheduled_at: None,
        };
        assert!(m0.manual_failover(request, None).await.expect("failover"));
    }
    tracing::info!("--- Python Patroni's view");
    let peer = Peer::run(&zk, "read");
    assert_eq!(
        peer.line,
        json!({
            "initialize": "7458224513374582711",
            "config": {"ttl": 30, "loop_wait": 10},
            "leader": "m0",
            "leader_session_is_member_session": true,
            "leader_role": "primary",
            "last_lsn": 67110344,
            "retain_slots": ["m0"],
            "members": ["m0"],
            "sync": ["m0", "m1", 1],
            "failover": ["m0", "m1"],
            "history": [[1, 25165984, "no recovery target specified", "2025-01-01T00:00:00+00:00", "m0"]],
            "failsafe": {"m0": "http://10.0.0.1:8008/patroni"},
        })
    );
}
