//! The etcd v3 DCS against a real etcd server (the lab's embedded etcd, started by each test
//! on the machine's loopback): the backend-neutral DCS contract (`common/contract.rs`, the
//! same functions the Kubernetes backend passes), and the keys and values exactly as Patroni
//! writes them, read back raw with an etcd client; several endpoints, credentials and TLS with
//! client certificates.

mod common;

use std::time::Duration;

use common::contract::{self, Backend, Traits};
use common::init_tracing;
use etcd_client::{Client, GetOptions};
use patroni_config::{DcsConfig, Etcd3Config};
use patroni_core::MemberData;
use patroni_dcs::{Dcs, Etcd3Dcs, FailoverRequest, LeaderStatusUpdate, Settings};
use patroni_testlab::EtcdServer;

/// Lock ttl of the lock tests: short, so expiry rounds stay quick.
const TTL: Duration = Duration::from_secs(3);

/// Members of cluster `scope` on one etcd server.
struct Etcd3 {
    server: EtcdServer,
    scope: String,
}

impl Etcd3 {
    fn start(scope: &str) -> Self {
        Etcd3 {
            server: EtcdServer::start_local().expect("etcd"),
            scope: scope.to_string(),
        }
    }

    fn config(&self) -> Etcd3Config {
        Etcd3Config {
            namespace: "/service".into(),
            endpoints: vec![self.server.client_url().to_string()],
            use_proxies: false,
            srv: None,
            username: None,
            password: None,
            cacert: None,
            cert: None,
            key: None,
        }
    }

    /// A raw client, to read what the backend wrote.
    async fn raw(&self) -> Client {
        Client::connect([self.server.client_url()], None)
            .await
            .expect("raw client")
    }

    /// `(value, lease)` of the key `/service/<scope>/<name>`.
    async fn key(&self, name: &str) -> Option<(String, i64)> {
        let key = format!("/service/{}/{name}", self.scope);
        let r = self.raw().await.get(key, None).await.expect("get");
        r.kvs()
            .first()
            .map(|kv| (String::from_utf8_lossy(kv.value()).into_owned(), kv.lease()))
    }
}

impl Backend for Etcd3 {
    type D = Etcd3Dcs;
    const TRAITS: Traits = Traits {
        cached_views: false,
        renewal_wakes_others: true,
        lock_goes_with_session: false,
        config_modify_version_is_version: true,
        delete_cluster_removes_members: true,
    };

    async fn member(&self, name: &str, ttl: Duration, retry_timeout: Duration) -> Etcd3Dcs {
        Etcd3Dcs::start(Settings {
            scope: self.scope.clone(),
            name: name.to_string(),
            dcs: DcsConfig::Etcd3(self.config()),
            ttl,
            loop_wait: Duration::from_secs(10),
            retry_timeout,
            kubeconfig: None,
            in_cluster: false,
        })
        .await
        .expect("etcd3 DCS")
    }
}

/// Contenders race and exactly one wins each round; renew, release and expiry behave.
#[tokio::test]
async fn lock_race_renew_release_expiry() {
    init_tracing();
    let etcd = Etcd3::start("race");
    contract::lock_race_renew_release_expiry(&etcd, TTL).await;
}

/// The watch wakes members on the lock changing hands, others' renewals and config changes.
#[tokio::test]
async fn leader_and_config_changes_wake_members() {
    init_tracing();
    let etcd = Etcd3::start("wake");
    contract::leader_and_config_changes_wake_members(&etcd).await;
}

/// Issue #11 on etcd: a race from an old view never takes a newer lock.
#[tokio::test]
async fn a_race_from_an_old_view_never_takes_a_newer_lock() {
    init_tracing();
    let etcd = Etcd3::start("stale");
    contract::a_race_from_an_old_view_never_takes_a_newer_lock(&etcd, TTL).await;
}

/// Compare-and-set on config, failover, sync; one bootstrap winner.
#[tokio::test]
async fn compare_and_set_on_config_failover_sync_and_initialize() {
    init_tracing();
    let etcd = Etcd3::start("cas");
    contract::compare_and_set_on_config_failover_sync_and_initialize(&etcd).await;
}

/// etcd frozen (SIGSTOP): every operation is unreachable within retry_timeout; after SIGCONT
/// the same handles work again.
#[tokio::test]
async fn a_frozen_etcd_is_unreachable_within_retry_timeout() {
    init_tracing();
    let etcd = Etcd3::start("frozen");
    contract::an_unreachable_store_is_classified_unreachable(
        &etcd,
        || etcd.server.suspend().expect("SIGSTOP"),
        || etcd.server.resume().expect("SIGCONT"),
    )
    .await;
}

/// The keys and values are exactly Patroni's: the leader key names the holder and is bound to
/// the same lease as its member key; `/status`, `/sync`, `/failover`, `/initialize`,
/// `/failsafe` carry Patroni's JSON; deleting the cluster removes the whole prefix.
#[tokio::test]
async fn keys_and_values_are_patronis() {
    init_tracing();
    let etcd = Etcd3::start("layout");
    let m0 = etcd
        .member("m0", Duration::from_secs(30), Duration::from_secs(4))
        .await;
    {
        tracing::info!("--- member and leader keys share the member's lease of ttl");
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
        let (leader, leader_lease) = etcd.key("leader").await.expect("leader key");
        let (member, member_lease) = etcd.key("members/m0").await.expect("member key");
        assert_eq!(leader, "m0");
        assert_eq!(
            member,
            r#"{"conn_url":"postgres://10.0.0.1:5432/postgres","api_url":"http://10.0.0.1:8008/patroni","state":"running","role":"primary","version":"4.1.5"}"#
        );
        assert_eq!(Some(leader_lease), m0.lease_id());
        assert_eq!(leader_lease, member_lease);
        let ttl = etcd
            .raw()
            .await
            .lease_time_to_live(leader_lease, None)
            .await
            .expect("lease ttl");
        assert_eq!(ttl.granted_ttl(), 30);
    }
    {
        tracing::info!("--- status, failsafe, sync, failover, initialize, config values");
        m0.get_cluster().await.expect("view");
        let update = LeaderStatusUpdate {
            last_lsn: Some(67108960),
            slots: Some([("m1".to_string(), 67108900)].into()),
            retain_slots: Some(vec!["m0".into(), "m1".into()]),
            failsafe: Some([("m0".to_string(), "http://10.0.0.1:8008/patroni".to_string())].into()),
        };
        assert!(m0.update_leader(&update).await.expect("renew"));
        assert_eq!(
            etcd.key("status").await.expect("status").0,
            r#"{"optime":67108960,"slots":{"m1":67108900},"retain_slots":["m0","m1"]}"#
        );
        assert_eq!(
            etcd.key("failsafe").await.expect("failsafe").0,
            r#"{"m0":"http://10.0.0.1:8008/patroni"}"#
        );
        m0.write_sync_state(Some("m0"), &["m2".into(), "m1".into()], None, None)
            .await
            .expect("sync")
            .expect("written");
        assert_eq!(
            etcd.key("sync").await.expect("sync").0,
            r#"{"leader":"m0","quorum":null,"sync_standby":"m1,m2"}"#
        );
        let request = FailoverRequest::Request {
            leader: Some("m0"),
            candidate: Some("m1"),
            scheduled_at: None,
        };
        assert!(m0.manual_failover(request, None).await.expect("failover"));
        assert_eq!(
            etcd.key("failover").await.expect("failover").0,
            r#"{"leader":"m0","member":"m1"}"#
        );
        assert!(m0.initialize("").await.expect("initialize"));
        assert_eq!(etcd.key("initialize").await.expect("initialize").0, "");
        m0.get_cluster().await.expect("view");
        assert!(m0.initialize("7345").await.expect("sysid"));
        assert_eq!(etcd.key("initialize").await.expect("initialize").0, "7345");
        assert!(m0.delete_leader(Some(67109000)).await.expect("release"));
        assert_eq!(etcd.key("leader").await, None);
        assert_eq!(
            etcd.key("status").await.expect("status").0,
            r#"{"optime":67109000,"slots":{"m1":67108900},"retain_slots":["m0","m1"]}"#,
            "a release keeps the last slots, as Patroni's write_status does"
        );
    }
    {
        tracing::info!("--- delete_cluster removes every key under the prefix");
        assert!(m0.delete_cluster().await.expect("remove"));
        let left = etcd
            .raw()
            .await
            .get("/service/layout/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("get");
        assert!(left.kvs().is_empty(), "{:?}", left.kvs());
    }
}

/// Several endpoints: a dead one listed first does not stop the member, which discovers the
/// live server's member list and carries on.
#[tokio::test]
async fn a_dead_endpoint_fails_over_to_a_live_one() {
    init_tracing();
    let etcd = Etcd3::start("endpoints");
    let mut config = etcd.config();
    config.endpoints.insert(0, "http://127.0.0.1:9".into());
    let m0 = Etcd3Dcs::start(Settings {
        scope: "endpoints".into(),
        name: "m0".into(),
        dcs: DcsConfig::Etcd3(config),
        ttl: Duration::from_secs(30),
        loop_wait: Duration::from_secs(10),
        retry_timeout: Duration::from_secs(4),
        kubeconfig: None,
        in_cluster: false,
    })
    .await
    .expect("etcd3 DCS");
    for _ in 0..5 {
        m0.get_cluster()
            .await
            .expect("view through the live endpoint");
    }
    assert!(contract::acquire(&m0).await);
    assert!(
        m0.endpoints()
            .contains(&etcd.server.client_url().to_string())
    );
}

/// Credentials: with etcd's authentication on, a member with `username`/`password` (here a
/// user allowed only the cluster's prefix) works; wrong credentials are refused at start-up
/// (Patroni exits on them), and a member without credentials is refused, not "unreachable".
#[tokio::test]
async fn credentials_authenticate_and_wrong_ones_are_refused() {
    init_tracing();
    let etcd = Etcd3::start("auth");
    {
        tracing::info!("--- etcd with authentication: root, and patroni allowed /service/auth/");
        let mut raw = etcd.raw().await;
        raw.user_add("root", "root-secret", None)
            .await
            .expect("root user");
        raw.user_grant_role("root", "root")
            .await
            .expect("root role");
        raw.role_add("patroni").await.expect("role");
        let perm = etcd_client::Permission::read_write("/service/auth/").with_prefix();
        raw.role_grant_permission("patroni", perm)
            .await
            .expect("grant");
        raw.user_add("patroni", "s3cret", None).await.expect("user");
        raw.user_grant_role("patroni", "patroni")
            .await
            .expect("grant role");
        raw.auth_enable().await.expect("auth on");
    }
    let settings = |user: Option<(&str, &str)>| {
        let mut config = etcd.config();
        config.username = user.map(|u| u.0.to_string());
        config.password = user.map(|u| u.1.to_string());
        Settings {
            scope: "auth".into(),
            name: "m0".into(),
            dcs: DcsConfig::Etcd3(config),
            ttl: Duration::from_secs(30),
            loop_wait: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(3),
            kubeconfig: None,
            in_cluster: false,
        }
    };
    {
        tracing::info!("--- the right credentials: the member works");
        let m0 = Etcd3Dcs::start(settings(Some(("patroni", "s3cret"))))
            .await
            .expect("authenticated");
        assert!(contract::acquire(&m0).await);
        assert!(
            m0.touch_member(&MemberData::default())
                .await
                .expect("touch")
        );
        assert_eq!(
            m0.get_cluster().await.expect("view").leader_name(),
            Some("m0")
        );
    }
    {
        tracing::info!("--- wrong credentials: refused at start-up");
        let e = Etcd3Dcs::start(settings(Some(("patroni", "wrong"))))
            .await
            .err()
            .expect("refused");
        assert!(!e.is_unreachable(), "{e:?}");
    }
    {
        tracing::info!("--- no credentials: every read is refused, not unreachable");
        let anonymous = Etcd3Dcs::start(settings(None)).await;
        let e = match anonymous {
            Ok(d) => d.get_cluster().await.expect_err("refused"),
            Err(e) => e,
        };
        assert!(!e.is_unreachable(), "{e:?}");
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, written under `dir`:
/// `(server files, client certificate, client key)`.
fn write_pki(
    dir: &std::path::Path,
) -> (
    patroni_testlab::EtcdTls,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca, ca_key);
    let issue = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, stem: &str| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names).expect("params");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).expect("cert");
        let (c, k) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    };
    let (cert, key) = issue(
        vec!["127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
        "server",
    );
    let (client_cert, client_key) = issue(
        vec!["patroni".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
        "client",
    );
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).expect("write CA");
    (
        patroni_testlab::EtcdTls {
            ca: ca_path,
            cert,
            key,
        },
        client_cert,
        client_key,
    )
}

/// TLS: against an etcd that serves https and requires client certificates, `cacert`,
/// `cert` and `key` connect and the member works; without the client certificate every
/// operation fails (the handshake is refused) instead of reaching etcd.
#[tokio::test]
async fn tls_with_client_certificates() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client_cert, client_key) = write_pki(dir.path());
    let etcd = EtcdServer::start_local_tls(&server).expect("etcd with TLS");
    assert!(etcd.client_url().starts_with("https://"));
    let settings = |cert: Option<(&std::path::Path, &std::path::Path)>| Settings {
        scope: "tls".into(),
        name: "m0".into(),
        dcs: DcsConfig::Etcd3(Etcd3Config {
            namespace: "/service".into(),
            endpoints: vec![etcd.client_url().to_string()],
            use_proxies: true,
            srv: None,
            username: None,
            password: None,
            cacert: Some(server.ca.clone()),
            cert: cert.map(|c| c.0.to_path_buf()),
            key: cert.map(|c| c.1.to_path_buf()),
        }),
        ttl: Duration::from_secs(30),
        loop_wait: Duration::from_secs(10),
        retry_timeout: Duration::from_secs(3),
        kubeconfig: None,
        in_cluster: false,
    };
    {
        tracing::info!("--- CA and client certificate: the member works over TLS");
        let m0 = Etcd3Dcs::start(settings(Some((&client_cert, &client_key))))
            .await
            .expect("TLS");
        assert!(contract::acquire(&m0).await);
        assert_eq!(
            m0.get_cluster().await.expect("view").leader_name(),
            Some("m0")
        );
    }
    {
        tracing::info!("--- no client certificate: nothing reaches etcd");
        let e = match Etcd3Dcs::start(settings(None)).await {
            Ok(d) => d.get_cluster().await.expect_err("refused handshake"),
            Err(e) => e,
        };
        tracing::info!("without a client certificate: {e:#}");
        // As in Patroni, a handshake that fails is a connection failure: retried, then the
        // DCS is reported not accessible.
        assert!(e.is_unreachable(), "{e:?}");
    }
}
