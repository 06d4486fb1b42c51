//! The REST API over TLS on a real 2-member cluster (ConfigMaps mode), with client
//! certificates required (`verify_client: required`): the members publish `https` API URLs,
//! check each other over TLS with their `ctl` client certificate during the switchover's
//! candidate probe, a client without a certificate is refused at the handshake, one with a
//! certificate signed by the cluster's CA is served, and a switchover requested over HTTPS
//! succeeds.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::*;
use common::*;
use patroni_testlab::{Lab, chown_to_pg_user};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA and one certificate every member uses as server and client certificate. It names
/// no lab address: Patroni's members verify only the chain of their peers' certificates.
fn write_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
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
    let key = KeyPair::generate().expect("member key");
    let mut params = CertificateParams::new(vec!["patroni-member".to_string()]).expect("params");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &issuer).expect("member cert");
    let paths = (
        dir.join("ca.pem"),
        dir.join("member.crt"),
        dir.join("member.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).expect("write CA");
    std::fs::write(&paths.1, cert.pem()).expect("write cert");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write key");
    for p in [dir, &paths.0, &paths.1, &paths.2] {
        chown_to_pg_user(p).expect("chown");
    }
    (paths.0, paths.1, paths.2)
}

/// `curl -k` to `to`'s API over HTTPS, with the client certificate when `cert`; `None` when
/// the request failed (handshake refused).
fn https(
    from: &Member,
    to: &Member,
    method: &str,
    path: &str,
    body: Option<&str>,
    cert: Option<(&Path, &Path)>,
) -> Option<(u16, String)> {
    let url = format!("https://{}:8008{path}", to.host.ip());
    let mut cmd = from.host.command("curl");
    cmd.args(["-s", "-k", "-m", "60", "-X", method, "-w", "\n%{http_code}"]);
    if let Some((crt, key)) = cert {
        cmd.arg("--cert").arg(crt).arg("--key").arg(key);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = cmd.arg(&url).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_string()))
}

#[tokio::test]
async fn rest_api_over_tls_with_client_certificates() {
    init_tracing();
    let lab = Lab::shared();
    let ns = lab.namespace("t62-tls").await.expect("namespace");
    let scope = "tls";
    let pki_dir = tempfile::tempdir().expect("tempdir");
    let (ca, crt, key) = write_pki(pki_dir.path());
    let (mut members, _kubeconfig) = start_cluster(lab, &ns, scope, false, 2, |spec| {
        spec.restapi_extra = format!(
            "  certfile: {}\n  keyfile: {}\n  cafile: {}\n  verify_client: required\n",
            crt.display(),
            key.display(),
            ca.display()
        );
        spec.extra = format!(
            "ctl:\n  certfile: {}\n  keyfile: {}\n  cacert: {}\n",
            crt.display(),
            key.display(),
            ca.display()
        );
    })
    .await;
    let (p, r) = wait_for(FORM_TIMEOUT, "one primary, one streaming", &members, || {
        let w = writable(&members);
        let [primary] = w.as_slice() else { return None };
        let p = members.iter().position(|m| &m.name == primary)?;
        let n = sql(
            &members[p].host,
            &members[p].host,
            &members[p].spec,
            STREAMING_REPLICAS,
        )?;
        (n == "1").then_some((p, 1 - p))
    })
    .await;
    let cert = Some((crt.as_path(), key.as_path()));
    {
        tracing::info!("--- without a client certificate the handshake is refused");
        assert!(https(&members[r], &members[p], "GET", "/patroni", None, None).is_none());
        tracing::info!("--- with one, the member answers; its api_url is https");
        let (status, body) =
            https(&members[r], &members[p], "GET", "/patroni", None, cert).expect("answer");
        assert_eq!(status, 200, "{body}");
        let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(doc["role"], "primary");
        let (_, cluster) =
            https(&members[r], &members[p], "GET", "/cluster", None, cert).expect("answer");
        let cluster: serde_json::Value = serde_json::from_str(&cluster).expect("JSON");
        let urls: Vec<&str> = cluster["members"]
            .as_array()
            .expect("members")
            .iter()
            .filter_map(|m| m["api_url"].as_str())
            .collect();
        assert_eq!(urls.len(), 2, "{cluster}");
        assert!(urls.iter().all(|u| u.starts_with("https://")), "{urls:?}");
    }
    {
        tracing::info!("--- a switchover over HTTPS: the leader probes the candidate over TLS");
        let body = serde_json::json!({"leader": members[p].name, "candidate": members[r].name});
        // The leader refuses with 412 until it has seen the candidate's member record as a
        // running replica (as Patroni's does): ask again until then.
        let (status, answer) = wait_for(
            Duration::from_secs(60),
            "the switchover is accepted",
            &members,
            || {
                let answer = https(
                    &members[r],
                    &members[p],
                    "POST",
                    "/switchover",
                    Some(&body.to_string()),
                    cert,
                );
                answer.filter(|(status, _)| *status != 412)
            },
        )
        .await;
        assert_eq!(status, 200, "{answer}\n{}", logs(&members));
        let new = members[r].name.clone();
        wait_for(
            Duration::from_secs(60),
            "the candidate is the only writable member",
            &members,
            || (writable(&members) == [new.as_str()]).then_some(()),
        )
        .await;
    }
    stop_all(&mut members);
}
