//! A real S3-compatible object store for the backup tests (#18): moto's server mode
//! (`moto[server]` 5.2.6 in `$PATRONI_RS_CACHE/venv-s3`, installed by
//! `xtask/scripts/install-test-deps.sh`), serving HTTPS with a certificate of a CA made for
//! it, one bucket created at start, objects in memory.
//!
//! [`S3Server::start_local`] serves on the machine's loopback; [`S3Server::start_on`] serves
//! at a lab host's address, where PostgreSQL's `archive_command` on other hosts reaches it.
//! Dropping the server kills it by pid and removes its directory (certificates, log), even
//! on panic; what it stored goes with it.
//!
//! # Why TLS, and why a wrapper
//! pgBackRest speaks only HTTPS to S3 (`repo1-storage-verify-tls=n` skips the verification,
//! not the TLS), so the server serves TLS for both tools. moto runs through
//! `s3_server.py`, which closes each TLS connection with a close_notify: werkzeug does not,
//! and pgBackRest rejects a `Connection: close` response without one (the file says why).
//!
//! # What the tools need (docs/backups.md, "Testing against S3")
//! The certificate names the address as an IP *and* as a DNS name: pgBackRest 2.45 matches
//! the host only against DNS names ("unable to find hostname '127.0.0.1' in certificate").
//! pgBackRest: `repo1-s3-endpoint=<ip>`, `repo1-storage-port=<port>`,
//! `repo1-s3-uri-style=path`, `repo1-storage-ca-file=<ca>` (or `repo1-storage-verify-tls=n`).
//! Barman Cloud: `--endpoint-url https://<ip>:<port>` with `AWS_CA_BUNDLE=<ca>` (boto3 has
//! no variable that turns verification off). [`S3Server::env`] has both tools' variables.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::server::{ServerProcess, free_port};
use crate::{Error, Host, Result, cache_dir};

/// The server's port on a lab host.
pub const S3_PORT: u16 = 9000;
/// The access key id the server accepts (moto accepts any; the tools need one).
pub const S3_ACCESS_KEY_ID: &str = "testing";
/// The secret access key that goes with [`S3_ACCESS_KEY_ID`].
pub const S3_SECRET_ACCESS_KEY: &str = "testing";
/// The region the tools are told (moto serves every region).
pub const S3_REGION: &str = "us-east-1";
/// How long moto gets to answer (its imports take a few seconds on a busy machine).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll interval of the readiness probe.
const READY_POLL: Duration = Duration::from_millis(250);
/// The wrapper that runs moto's server with clean TLS shutdowns.
const WRAPPER: &str = include_str!("s3_server.py");

/// A running S3-compatible server with one bucket.
#[derive(Debug)]
pub struct S3Server {
    process: ServerProcess,
    ip: String,
    port: u16,
    bucket: String,
    ca: PathBuf,
}

// === impl S3Server ===

impl S3Server {
    /// Starts the server on a free loopback port of the machine, with `bucket` created.
    ///
    /// # Errors
    /// The venv is missing, the server could not be started, did not answer, or the bucket
    /// could not be created.
    pub fn start_local(bucket: &str) -> Result<Self> {
        let port = free_port()?;
        Self::start("127.0.0.1", port, bucket, |p| Command::new(p))
    }

    /// Starts the server on `host`, at `https://<host ip>:9000`, with `bucket` created.
    ///
    /// # Errors
    /// As [`start_local`](Self::start_local).
    pub fn start_on(host: &Host, bucket: &str) -> Result<Self> {
        Self::start(host.ip(), S3_PORT, bucket, |p| host.command(p))
    }

    /// Starts moto at `ip:port`, its commands (and the probes') made by `command` (on the
    /// machine, or inside a host).
    fn start(
        ip: &str,
        port: u16,
        bucket: &str,
        command: impl Fn(&Path) -> Command,
    ) -> Result<Self> {
        let python = s3_venv().join("bin/python");
        if !python.exists() {
            return Err(Error::Command {
                what: "start moto's S3 server".into(),
                detail: format!(
                    "{} is missing: run xtask/scripts/install-test-deps.sh",
                    python.display()
                ),
            });
        }
        let address = format!("{ip}:{port}");
        let dir = ServerProcess::fresh_dir("s3", &address)?;
        let (ca, cert, key) = write_pki(&dir, ip)?;
        let mut cmd = command(&python);
        cmd.args(["-c", WRAPPER, "-H", ip, "-p", &port.to_string(), "-c"])
            .arg(&cert)
            .arg("-k")
            .arg(&key);
        let mut process = ServerProcess::spawn("moto", cmd, dir)?;
        let url = format!("https://{address}");
        let curl = |args: &[&str]| {
            command(Path::new("curl"))
                .args(["-sf", "-o", "/dev/null", "-m", "5", "--cacert"])
                .arg(&ca)
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        process.wait_ready(&url, READY_TIMEOUT, READY_POLL, || curl(&[&url]))?;
        if !curl(&["-X", "PUT", &format!("{url}/{bucket}")]) {
            return Err(Error::Command {
                what: format!("create bucket {bucket} at {url}"),
                detail: std::fs::read_to_string(process.log()).unwrap_or_default(),
            });
        }
        Ok(S3Server {
            process,
            ip: ip.to_owned(),
            port,
            bucket: bucket.to_owned(),
            ca,
        })
    }

    /// `https://<ip>:<port>`: Barman Cloud's `--endpoint-url`, `PGBACKUP_S3_ENDPOINT`.
    pub fn endpoint_url(&self) -> String {
        format!("https://{}:{}", self.ip, self.port)
    }

    /// The address the server listens on (pgBackRest's `repo1-s3-endpoint`).
    pub fn ip(&self) -> &str {
        &self.ip
    }

    /// The port (pgBackRest's `repo1-storage-port`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bucket created at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The CA certificate (PEM, world-readable) that signed the server's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca
    }

    /// The server's pid.
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// The environment of a client of this server, for both tools with TLS verified:
    /// credentials and region (`AWS_*`, read by boto3 and by `patroni-backup`), the CA for
    /// boto3 (`AWS_CA_BUNDLE`) and for pgBackRest (`PGBACKREST_REPO1_STORAGE_CA_FILE`; an
    /// option pgBackRest reads from its environment).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let ca = self.ca.display().to_string();
        vec![
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_ACCESS_KEY.into()),
            ("AWS_DEFAULT_REGION", S3_REGION.into()),
            ("AWS_CA_BUNDLE", ca.clone()),
            ("PGBACKREST_REPO1_STORAGE_CA_FILE", ca),
        ]
    }
}

/// The venv with moto's server (`$PATRONI_RS_CACHE/venv-s3`).
pub fn s3_venv() -> PathBuf {
    cache_dir().join("venv-s3")
}

/// Writes a CA (`ca.pem`) and a server certificate for `ip` signed by it (`server.pem`,
/// `server.key`) into `dir`; returns their paths. All readable by everyone: the tools run as
/// the postgres user.
fn write_pki(dir: &Path, ip: &str) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let fail = |e: rcgen::Error| Error::Command {
        what: "make the S3 server's certificate".into(),
        detail: e.to_string(),
    };
    let ca_key = KeyPair::generate().map_err(fail)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca.distinguished_name
        .push(DnType::CommonName, "patroni-rs test S3 CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(fail)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().map_err(fail)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    params.distinguished_name.push(DnType::CommonName, ip);
    let addr = ip
        .parse()
        .map_err(|e: std::net::AddrParseError| Error::Command {
            what: "make the S3 server's certificate".into(),
            detail: format!("{ip}: {e}"),
        })?;
    // The IP as a DNS name too: pgBackRest compares the host with DNS names only.
    params.subject_alt_names = vec![
        SanType::IpAddress(addr),
        SanType::DnsName(Ia5String::try_from(ip).map_err(fail)?),
        SanType::DnsName(Ia5String::try_from("localhost").map_err(fail)?),
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).map_err(fail)?;
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    for (path, text) in [
        (&paths.0, ca_cert.pem()),
        (&paths.1, cert.pem()),
        (&paths.2, key.serialize_pem()),
    ] {
        std::fs::write(path, text).map_err(Error::io("write", path))?;
    }
    Ok(paths)
}
