//! Timeline history files (`pg_wal/0000000N.history`): one line per earlier
//! timeline, `<timeline>\t<switch LSN>\t<reason>`, as PostgreSQL writes them
//! when a standby is promoted. The leader publishes them as the cluster's
//! `history`.

use std::path::Path;

use crate::Lsn;

/// One line of a history file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryLine {
    /// The timeline that ended.
    pub timeline: u32,
    /// Where it ended (the switch point).
    pub switch_lsn: Lsn,
    /// Why (e.g. `no recovery target specified`).
    pub reason: String,
}

/// Parses a history file's text; comments, blank and malformed lines are skipped.
pub fn parse_timeline_history(text: &str) -> Vec<HistoryLine> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let mut parts = line.splitn(3, char::is_whitespace);
            let timeline = parts.next()?.trim().parse().ok()?;
            let switch_lsn = parts.next()?.trim().parse().ok()?;
            let reason = parts.next().unwrap_or("").trim().to_string();
            Some(HistoryLine {
                timeline,
                switch_lsn,
                reason,
            })
        })
        .collect()
}

/// Path of the history file that starts `timeline`.
pub fn history_file(data_dir: &Path, timeline: u32) -> std::path::PathBuf {
    data_dir
        .join("pg_wal")
        .join(format!("{timeline:08X}.history"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL's tab-separated lines parse; junk is skipped.
    #[test]
    fn history_lines_parse() {
        let text = "1\t0/3000060\tno recovery target specified\n\n# c\n2\t0/4000198\tbefore 2000-01-01 00:00:00+00\nbad line\n";
        let lines = parse_timeline_history(text);
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            HistoryLine {
                timeline: 1,
                switch_lsn: Lsn(0x3000060),
                reason: "no recovery target specified".into()
            }
        );
        assert_eq!(lines[1].reason, "before 2000-01-01 00:00:00+00");
        assert_eq!(
            history_file(Path::new("/d"), 10),
            Path::new("/d/pg_wal/0000000A.history")
        );
    }
}
