//! Pure rules: which backup a restore uses, and whether a new replica is restored from the
//! latest backup instead of cloned from the leader (Spilo's `wale_restore`, which the seed
//! chart's `walE.backupThreshold*` values configure).

use jiff::Timestamp;
use patroni_postgres::Lsn;

use crate::catalog::BackupInfo;

/// Spilo's default `threshold_megabytes`.
pub const DEFAULT_THRESHOLD_MEGABYTES: u64 = 10_240;
/// Spilo's default `threshold_backup_size_percentage`.
pub const DEFAULT_THRESHOLD_PERCENTAGE: u64 = 30;

/// A point-in-time recovery target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The end of the archive.
    Latest,
    /// `recovery_target_time`.
    Time(Timestamp),
    /// `recovery_target_lsn`.
    Lsn(Lsn),
}

/// The backup a restore to `target` starts from: the newest that finished before it (Spilo's
/// `choose_backup`), or the newest of all. `backups` is oldest first.
pub fn choose(backups: &[BackupInfo], target: Target) -> Option<&BackupInfo> {
    backups.iter().rev().find(|b| match target {
        Target::Latest => true,
        Target::Time(t) => b.stop < t,
        Target::Lsn(l) => b.stop_lsn <= l,
    })
}

/// What the leader reports for the replica rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderPosition {
    /// Bytes of WAL written since the backup started (`pg_wal_lsn_diff` against its start).
    pub wal_since_backup: i64,
    /// The sum of the leader's database sizes.
    pub cluster_size: i64,
}

/// Why a replica is not restored from the backup (the method fails and Patroni goes on to the
/// next one, `basebackup`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// More WAL than `threshold_megabytes` would have to be replayed.
    #[error("not restoring from backup: {wal} bytes of WAL since the backup exceed {megabytes} MB")]
    TooMuchWal {
        /// WAL since the backup.
        wal: i64,
        /// The threshold.
        megabytes: u64,
    },
    /// The WAL to replay exceeds `threshold_backup_size_percentage` of the cluster's size.
    #[error(
        "not restoring from backup: {wal} bytes of WAL since the backup exceed {percentage}% of the cluster size {size}"
    )]
    TooLarge {
        /// WAL since the backup.
        wal: i64,
        /// The threshold.
        percentage: u64,
        /// The cluster size.
        size: i64,
    },
}

/// Spilo's rule: restore from the backup unless the WAL since it started exceeds
/// `threshold_megabytes`, or `threshold_percentage` % of the cluster's size. Without a leader
/// (`None`, a `no_leader` method) the backup is used.
///
/// # Errors
/// [`Refusal`] when a threshold is exceeded.
pub fn replica_from_backup(
    leader: Option<LeaderPosition>,
    threshold_megabytes: u64,
    threshold_percentage: u64,
) -> Result<(), Refusal> {
    let Some(p) = leader else { return Ok(()) };
    let wal = i128::from(p.wal_since_backup);
    if wal > i128::from(threshold_megabytes) * 1_048_576 {
        return Err(Refusal::TooMuchWal {
            wal: p.wal_since_backup,
            megabytes: threshold_megabytes,
        });
    }
    // Spilo: threshold_bytes = cluster_size * percentage / 100 (integer arithmetic).
    let threshold_bytes = i128::from(p.cluster_size) * i128::from(threshold_percentage) / 100;
    if threshold_bytes < wal {
        return Err(Refusal::TooLarge {
            wal: p.wal_since_backup,
            percentage: threshold_percentage,
            size: p.cluster_size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(name: &str, stop: i64) -> BackupInfo {
        BackupInfo {
            name: name.into(),
            start: Timestamp::from_second(stop - 5).unwrap(),
            stop: Timestamp::from_second(stop).unwrap(),
            start_lsn: Lsn(0),
            stop_lsn: Lsn(0),
            size: None,
        }
    }

    #[test]
    fn chooses_the_newest_before_the_target() {
        let list = [backup("a", 100), backup("b", 200), backup("c", 300)];
        assert_eq!(choose(&list, Target::Latest).unwrap().name, "c");
        let t = |s| Target::Time(Timestamp::from_second(s).unwrap());
        assert_eq!(choose(&list, t(250)).unwrap().name, "b");
        assert_eq!(choose(&list, t(200)).unwrap().name, "a");
        assert_eq!(choose(&list, t(100)), None);
        assert_eq!(choose(&[], Target::Latest), None);
    }

    #[test]
    fn spilo_thresholds() {
        let at = |wal, size| {
            Some(LeaderPosition {
                wal_since_backup: wal,
                cluster_size: size,
            })
        };
        assert_eq!(replica_from_backup(None, 0, 0), Ok(()));
        assert_eq!(replica_from_backup(at(100, 1000), 1, 10), Ok(()));
        assert_eq!(
            replica_from_backup(at(101, 1000), 1, 10).unwrap_err(),
            Refusal::TooLarge {
                wal: 101,
                percentage: 10,
                size: 1000
            }
        );
        assert_eq!(
            replica_from_backup(at(2 * 1_048_576, i64::MAX), 1, 100).unwrap_err(),
            Refusal::TooMuchWal {
                wal: 2 * 1_048_576,
                megabytes: 1
            }
        );
        assert_eq!(
            replica_from_backup(at(1_048_576, 1_048_576), 1, 100),
            Ok(())
        );
    }
}
