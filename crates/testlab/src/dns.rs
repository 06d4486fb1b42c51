//! A real DNS server for tests: CoreDNS (the binary the lab's node uses, built from its Go
//! module and cached) on a lab host, authoritative for one zone read from a zone file that a
//! test can rewrite while it runs ([`DnsServer::set_records`]; CoreDNS's `file` plugin reloads
//! it within a second when the SOA serial grows).
//!
//! Programs on another host use it once that host's resolv.conf names it
//! ([`Host::set_resolv_conf`]). Dropping the server kills it by pid and removes its files,
//! even on panic.

use std::path::PathBuf;
use std::time::Duration;

use crate::server::ServerProcess;
use crate::{Error, Host, Result};

/// How long CoreDNS gets to start serving.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval of its log while starting.
const READY_POLL: Duration = Duration::from_millis(100);
/// TTL of every record, so resolvers do not hold a rewritten answer.
const RECORD_TTL: u32 = 1;

/// A running CoreDNS serving one zone.
#[derive(Debug)]
pub struct DnsServer {
    process: ServerProcess,
    zone: String,
    ip: String,
    zone_file: PathBuf,
    serial: u32,
}

// === impl DnsServer ===

impl DnsServer {
    /// Starts CoreDNS on `host` (port 53 of its address), authoritative for `zone`
    /// (`etcd.test`) with `records`: zone-file lines relative to the zone
    /// (`_etcd-client._tcp.a SRV 0 0 2379 etcd-0`); the SOA, `$TTL` and an `ns` A record are
    /// added.
    ///
    /// # Errors
    /// The binary could not be built or started, a file not written, or CoreDNS did not
    /// start serving.
    pub fn start_on(host: &Host, zone: &str, records: &str) -> Result<Self> {
        let binary = crate::node::coredns_binary()?;
        let dir = ServerProcess::fresh_dir("coredns", &format!("{}_53", host.ip()))?;
        let zone_file = dir.join("zone.db");
        let corefile = dir.join("Corefile");
        let text = format!(
            "{zone}:53 {{\n    bind {ip}\n    file {file} {{\n        reload 1s\n    }}\n    errors\n    log\n}}\n",
            ip = host.ip(),
            file = zone_file.display()
        );
        std::fs::write(&corefile, text).map_err(Error::io("write", &corefile))?;
        write_zone(&zone_file, zone, host.ip(), 1, records)?;
        let mut cmd = host.command(&binary);
        cmd.arg("-conf").arg(&corefile);
        let mut server = DnsServer {
            process: ServerProcess::spawn("coredns", cmd, dir)?,
            zone: zone.to_owned(),
            ip: host.ip().to_owned(),
            zone_file,
            serial: 1,
        };
        let log = server.process.log();
        server.process.wait_ready(
            &format!("{}:53", server.ip),
            READY_TIMEOUT,
            READY_POLL,
            || {
                std::fs::read_to_string(&log)
                    .map(|l| l.contains("CoreDNS-"))
                    .unwrap_or(false)
            },
        )?;
        Ok(server)
    }

    /// The address it answers on (port 53), for a resolv.conf `nameserver` line.
    pub fn ip(&self) -> &str {
        &self.ip
    }

    /// Replaces the zone's records (as [`start_on`](Self::start_on) takes them); CoreDNS
    /// serves them within about a second.
    ///
    /// # Errors
    /// The zone file could not be written.
    pub fn set_records(&mut self, records: &str) -> Result<()> {
        self.serial += 1;
        write_zone(&self.zone_file, &self.zone, &self.ip, self.serial, records)
    }

    /// The server's log (each query is logged).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.process.log()).unwrap_or_default()
    }
}

/// Writes the zone file atomically (CoreDNS never reads half of it).
fn write_zone(
    path: &std::path::Path,
    zone: &str,
    ns_ip: &str,
    serial: u32,
    records: &str,
) -> Result<()> {
    let text = format!(
        "$ORIGIN {zone}.\n$TTL {RECORD_TTL}\n\
         @ IN SOA ns.{zone}. admin.{zone}. {serial} 1 1 1 {RECORD_TTL}\n\
         @ IN NS ns\nns IN A {ns_ip}\n{records}\n"
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(Error::io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io("rename", &tmp))
}
