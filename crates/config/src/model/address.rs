//! `host:port` addresses as Patroni writes them (`restapi.listen`, `postgresql.connect_address`).
//!
//! Parsing follows Patroni's `split_host_port`: the port is after the last `:`, and hosts that
//! contain `:` (IPv6) may be written in square brackets, which are removed.

use std::fmt;

/// A host (or, for `postgresql.listen`, a comma-separated list of hosts) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// Host name or IP address, without IPv6 brackets. For `postgresql.listen` this can be a
    /// comma-separated list (it becomes Postgres' `listen_addresses`) or `*`. Empty in a listen
    /// address means "every interface".
    pub host: String,
    /// TCP port, 1-65535.
    pub port: u16,
}

/// What a particular address setting allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddressRule {
    /// An address others connect to: one non-empty host.
    Connect,
    /// An address to bind: one host, possibly empty.
    Listen,
    /// An address to bind with several comma-separated hosts, or `*` alone.
    ListenMany,
}

/// What a malformed address was expected to look like.
const EXPECT_HOST_PORT: &str = "\"host:port\" (port 1-65535)";
const EXPECT_HOSTS_PORT: &str = "\"host[,host...]:port\" (port 1-65535)";
const EXPECT_STAR_ALONE: &str = "\"*\" alone rather than in a list of hosts";

// === impl Address ===

impl Address {
    /// Parses `text` according to `rule`; on failure returns what was expected.
    pub(crate) fn parse(text: &str, rule: AddressRule) -> Result<Self, &'static str> {
        let expected = if rule == AddressRule::ListenMany {
            EXPECT_HOSTS_PORT
        } else {
            EXPECT_HOST_PORT
        };
        let (host, port) = text.rsplit_once(':').ok_or(expected)?;
        let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or(expected)?;
        let host = if host.contains(':') {
            host.split(',')
                .map(|h| h.trim().trim_matches(['[', ']']))
                .collect::<Vec<_>>()
                .join(",")
        } else {
            host.to_owned()
        };
        let several = host.contains(',');
        match rule {
            AddressRule::Connect if host.is_empty() || several => Err(expected),
            AddressRule::Listen if several => Err(expected),
            AddressRule::ListenMany if several && host.split(',').any(|h| h.trim() == "*") => {
                Err(EXPECT_STAR_ALONE)
            }
            _ => Ok(Self { host, port }),
        }
    }

    /// Each host of a comma-separated host list, trimmed.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.host.split(',').map(str::trim)
    }
}

impl fmt::Display for Address {
    /// Formats as `host:port`, with a single IPv6 host in brackets (`[::1]:5432`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') && !self.host.contains(',') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Valid spellings parse, and IPv6 brackets are removed.
    #[test]
    fn parses_patroni_spellings() {
        let a = Address::parse("[::1]:8008", AddressRule::Connect).expect("valid");
        assert_eq!((a.host.as_str(), a.port), ("::1", 8008));
        assert_eq!(a.to_string(), "[::1]:8008");
        let l = Address::parse("127.0.0.1,10.0.0.1:5432", AddressRule::ListenMany).expect("valid");
        assert_eq!(l.hosts().collect::<Vec<_>>(), ["127.0.0.1", "10.0.0.1"]);
        assert_eq!(
            Address::parse(":8008", AddressRule::Listen)
                .expect("valid")
                .host,
            ""
        );
        assert_eq!(
            Address::parse("*:5432", AddressRule::ListenMany)
                .expect("valid")
                .host,
            "*"
        );
    }

    /// Missing ports, bad ports, empty hosts and `*` in a list are rejected.
    #[test]
    fn rejects_malformed_addresses() {
        for (text, rule) in [
            ("localhost", AddressRule::Connect),
            ("h:0", AddressRule::Connect),
            ("h:65536", AddressRule::Connect),
            ("h:abc", AddressRule::Listen),
            (":5432", AddressRule::Connect),
            ("a,b:5432", AddressRule::Listen),
            ("*,a:5432", AddressRule::ListenMany),
        ] {
            assert!(Address::parse(text, rule).is_err(), "{text}");
        }
    }
}
