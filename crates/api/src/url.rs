//! The host and port of the URLs members publish (`api_url`, `conn_url`), read as Python's
//! `urlparse` reads them: user info dropped, IPv6 brackets removed, host lower-cased.

/// Host and explicit port of `url` (`scheme://[user[:pass]@]host[:port][/path]`); `None` when
/// there is no host or the port is not a number.
pub(crate) fn host_port(url: &str) -> Option<(String, Option<u16>)> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) if !p.is_empty() => Some(p.parse().ok()?),
        _ => None,
    };
    Some((host.to_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hosts and ports come out as `urlparse` gives them.
    #[test]
    fn hosts_and_ports_as_urlparse_gives_them() {
        let hp = |u| host_port(u);
        assert_eq!(
            hp("postgres://10.0.0.1:5433/postgres"),
            Some(("10.0.0.1".into(), Some(5433)))
        );
        assert_eq!(
            hp("http://User@PG-0.Example:8008/patroni"),
            Some(("pg-0.example".into(), Some(8008)))
        );
        assert_eq!(
            hp("https://[fd00::1]/patroni"),
            Some(("fd00::1".into(), None))
        );
        assert_eq!(hp("postgres://h:/db"), Some(("h".into(), None)));
        assert_eq!(hp("postgres://:5432/db"), None);
        assert_eq!(hp("postgres://h:x/db"), None);
        assert_eq!(hp("no scheme"), None);
    }
}
