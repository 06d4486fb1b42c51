//! Write-ahead log positions (`pg_lsn`), as PostgreSQL prints them (`16/B374D848`) and as
//! Patroni publishes them (a plain integer in `xlog_location`, `/status.optime`).

use std::fmt;
use std::str::FromStr;

/// A WAL position: a byte offset into the write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

/// Text that is not `HI/LO` in hexadecimal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a WAL position (expected X/Y in hexadecimal): {0:?}")]
pub struct LsnParseError(pub String);

// === impl Lsn ===

impl Lsn {
    /// Bytes from `other` up to `self`, zero when `other` is ahead (a lag never goes negative).
    pub fn saturating_sub(self, other: Lsn) -> u64 {
        self.0.saturating_sub(other.0)
    }
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LsnParseError(s.to_owned());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl fmt::Display for Lsn {
    /// PostgreSQL's spelling: `16/B374D848`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL's text form round-trips through the integer Patroni publishes.
    #[test]
    fn lsn_text_round_trips() {
        let lsn: Lsn = "16/B374D848".parse().expect("valid");
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().expect("valid"), Lsn(0));
        assert_eq!(Lsn(0x3000060).to_string(), "0/3000060");
    }

    /// Garbage is an error, never a panic.
    #[test]
    fn malformed_lsn_is_rejected() {
        for bad in ["", "16", "x/1", "1/", "/1", "1/2/3", "100000000/0"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad}");
        }
    }

    /// Lag never goes negative.
    #[test]
    fn lag_saturates() {
        assert_eq!(Lsn(10).saturating_sub(Lsn(4)), 6);
        assert_eq!(Lsn(4).saturating_sub(Lsn(10)), 0);
    }
}
