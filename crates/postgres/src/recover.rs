//! Reading a stopped data directory the way the divergence check needs it, as Patroni does:
//! crash recovery in single-user mode (`postgres --single`, which never accepts connections, so
//! it can never be a second writable primary) leaves a cleanly shut down data directory whose
//! `pg_control` names the last timeline the server wrote on; `pg_waldump` finds where the last
//! checkpoint record ends (a former primary is in sync with a new leader exactly when its
//! shutdown checkpoint ends at the leader's switch point).
//!
//! A server that crashed right after a promotion still has the old timeline in `pg_control`
//! (the first checkpoint on the new one had not finished): judged from `pg_control` alone it
//! looks in sync with its successor, and `pg_rewind` finds nothing to do (issue #11).

use std::path::Path;

use crate::launcher::Programs;
use crate::lsn::Lsn;
use crate::tool::{self, ToolError};

/// Options of the last postmaster start, from `postmaster.opts`: every `"--name=value"`
/// argument, as Patroni's `read_postmaster_opts` reads them. Pure.
pub fn parse_postmaster_opts(text: &str) -> Vec<(String, String)> {
    text.split("\" \"")
        .filter_map(|opt| {
            let opt = opt.trim_start_matches('"');
            let rest = opt.strip_prefix("--")?;
            let (name, value) = rest.split_once('=')?;
            Some((
                name.trim_matches('-').to_owned(),
                value.trim_end_matches(['"', '\n']).to_owned(),
            ))
        })
        .collect()
}

/// The arguments of `postgres --single` for crash recovery of `data_dir`: the last start's
/// options (so the server recovers with the settings it crashed with), WAL archiving turned
/// off (`archive_mode=on`, `archive_command=false`: nothing is archived twice), and a
/// database to connect to. Options are sorted by name, as in Patroni. Pure.
pub fn single_user_args(data_dir: &Path, opts: &[(String, String)]) -> Vec<String> {
    let mut merged: std::collections::BTreeMap<String, String> = opts.iter().cloned().collect();
    merged.insert("archive_mode".into(), "on".into());
    merged.insert("archive_command".into(), "false".into());
    let mut args = vec![
        "--single".to_owned(),
        "-D".to_owned(),
        data_dir.display().to_string(),
    ];
    for (name, value) in merged {
        args.push("-c".to_owned());
        args.push(format!("{name}={value}"));
    }
    args.push("template1".to_owned());
    args
}

/// Runs crash recovery of the stopped `data_dir` in single-user mode (stdin closed, so it
/// exits at once after recovery and a shutdown checkpoint).
///
/// # Errors
/// `postgres --single` cannot be run or fails.
pub async fn single_user_recovery(programs: &Programs, data_dir: &Path) -> Result<(), ToolError> {
    let opts = std::fs::read_to_string(data_dir.join("postmaster.opts"))
        .map(|t| parse_postmaster_opts(&t))
        .unwrap_or_default();
    let mut cmd = programs.command("postgres");
    cmd.args(single_user_args(data_dir, &opts));
    tool::run(cmd, programs.program("postgres")).await.map(drop)
}

/// Where the checkpoint record at `lsn` on `timeline` ends, from `pg_waldump`'s output, as
/// Patroni's `_get_checkpoint_end`: asked for two records, it prints the checkpoint and fails
/// on the next one with "error in WAL record at <lsn>: invalid record length at <end>". Pure.
pub fn checkpoint_end_from_waldump(stdout: &str, stderr: &str, lsn: Lsn) -> Option<Lsn> {
    let out: Vec<&str> = stdout.trim_end().lines().collect();
    let err: Vec<&str> = stderr.trim_end().lines().collect();
    let full = format!("{:X}/{:08X}", lsn.0 >> 32, lsn.0 & 0xFFFF_FFFF);
    if out.len() != 1 || err.len() != 1 || !out[0].contains(&format!(", lsn: {full}, prev ")) {
        return None;
    }
    let rest = err[0].split_once("error in WAL record at ")?.1;
    let (at, rest) = rest.split_once(": invalid record length at ")?;
    let end = rest.split([':', ' ']).next()?;
    (at.parse::<Lsn>().ok()? == lsn)
        .then(|| end.parse::<Lsn>().ok())
        .flatten()
}

/// Where the checkpoint record at `lsn` on `timeline` in `data_dir`'s WAL ends; `None` when
/// `pg_waldump` cannot tell.
pub async fn checkpoint_end(
    programs: &Programs,
    data_dir: &Path,
    timeline: u32,
    lsn: Lsn,
) -> Option<Lsn> {
    let mut cmd = programs.command("pg_waldump");
    cmd.env("LANG", "C")
        .env("LC_ALL", "C")
        .arg("-p")
        .arg(data_dir.join("pg_wal"))
        .args([
            "-t",
            &timeline.to_string(),
            "-s",
            &lsn.to_string(),
            "-n",
            "2",
        ]);
    let out = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    let end = checkpoint_end_from_waldump(
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
        lsn,
    );
    if end.is_none() {
        tracing::warn!(
            stderr = %String::from_utf8_lossy(&out.stderr).trim(),
            "failed to read the end of the checkpoint record with pg_waldump"
        );
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `postmaster.opts` as PostgreSQL writes it: only `--name=value` options are kept.
    #[test]
    fn postmaster_opts_keep_long_options() {
        let text = "/usr/lib/postgresql/15/bin/postgres \"-D\" \"/data/pg\" \
                    \"--config-file=/data/pg/postgresql.conf\" \"--listen_addresses=10.0.0.1\" \
                    \"--port=5432\" \"--wal_level=replica\"\n";
        assert_eq!(
            parse_postmaster_opts(text),
            [
                ("config-file", "/data/pg/postgresql.conf"),
                ("listen_addresses", "10.0.0.1"),
                ("port", "5432"),
                ("wal_level", "replica"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
    }

    /// Archiving is turned off whatever the last start said; options sorted; a database last.
    #[test]
    fn single_user_args_override_archiving() {
        let opts = vec![
            ("wal_level".to_owned(), "replica".to_owned()),
            ("archive_mode".to_owned(), "always".to_owned()),
        ];
        assert_eq!(
            single_user_args(Path::new("/d"), &opts),
            [
                "--single",
                "-D",
                "/d",
                "-c",
                "archive_command=false",
                "-c",
                "archive_mode=on",
                "-c",
                "wal_level=replica",
                "template1"
            ]
        );
    }

    /// `pg_waldump`'s two spellings of the error after the checkpoint record.
    #[test]
    fn checkpoint_end_is_read_from_the_error_after_it() {
        let lsn: Lsn = "0/182E220".parse().expect("lsn");
        let out = "rmgr: XLOG        len (rec/tot):    114/   114, tx:          0, lsn: 0/0182E220, prev 0/0182E1E8, desc: CHECKPOINT_SHUTDOWN\n";
        for err in [
            "pg_waldump: fatal: error in WAL record at 0/182E220: invalid record length at 0/182E298: wanted 24, got 0\n",
            "pg_waldump: error: error in WAL record at 0/182E220: invalid record length at 0/182E298: expected at least 24, got 0\n",
        ] {
            assert_eq!(
                checkpoint_end_from_waldump(out, err, lsn),
                Some("0/182E298".parse().expect("lsn"))
            );
        }
        assert_eq!(checkpoint_end_from_waldump("", "", lsn), None);
        assert_eq!(
            checkpoint_end_from_waldump(out, "pg_waldump: error: could not find file\n", lsn),
            None
        );
    }
}
