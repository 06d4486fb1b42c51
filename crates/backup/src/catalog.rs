//! The tools' backup lists (`pgbackrest info --output=json`, `barman-cloud-backup-list
//! --format json`) read into one shape: only complete backups, oldest first.

use jiff::Timestamp;
use patroni_postgres::Lsn;
use serde::Serialize;
use serde_json::Value;

use crate::settings::ToolKind;

/// One complete base backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupInfo {
    /// The tool's name for it (pgBackRest label, Barman backup id).
    pub name: String,
    /// When it started.
    pub start: Timestamp,
    /// When it finished: a restore of it is consistent from here on.
    pub stop: Timestamp,
    /// The WAL position it started at (what replay begins from).
    #[serde(serialize_with = "lsn_text")]
    pub start_lsn: Lsn,
    /// The WAL position it ended at (a restore is consistent from here on).
    #[serde(serialize_with = "lsn_text")]
    pub stop_lsn: Lsn,
    /// The database's size in bytes, as the tool reports it.
    pub size: Option<u64>,
}

fn lsn_text<S: serde::Serializer>(lsn: &Lsn, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&lsn.to_string())
}

/// The list cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Not JSON.
    #[error("the backup list is not JSON")]
    Json(#[source] serde_json::Error),
    /// JSON of an unexpected shape.
    #[error("unexpected backup list: {0}")]
    Shape(String),
}

/// Parses `tool`'s JSON list.
///
/// # Errors
/// The text is not the tool's list.
pub fn parse(tool: ToolKind, text: &str) -> Result<Vec<BackupInfo>, CatalogError> {
    let v: Value = serde_json::from_str(text).map_err(CatalogError::Json)?;
    let mut list = match tool {
        ToolKind::PgBackRest => pgbackrest(&v)?,
        ToolKind::BarmanCloud => barman(&v)?,
    };
    list.sort_by_key(|b| b.stop);
    Ok(list)
}

fn shape(what: &str) -> CatalogError {
    CatalogError::Shape(what.to_owned())
}

fn pgbackrest(v: &Value) -> Result<Vec<BackupInfo>, CatalogError> {
    let stanzas = v
        .as_array()
        .ok_or_else(|| shape("expected an array of stanzas"))?;
    let mut out = Vec::new();
    for stanza in stanzas {
        let Some(backups) = stanza.get("backup").and_then(Value::as_array) else {
            continue;
        };
        for b in backups {
            if b.get("error").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let field = |path: &[&str]| {
                path.iter()
                    .try_fold(b, |v, k| v.get(*k))
                    .ok_or_else(|| shape(&format!("a backup without {}", path.join("."))))
            };
            let time = |path: &[&str]| -> Result<Timestamp, CatalogError> {
                let secs = field(path)?
                    .as_i64()
                    .ok_or_else(|| shape("a timestamp that is not a number"))?;
                Timestamp::from_second(secs).map_err(|e| shape(&e.to_string()))
            };
            out.push(BackupInfo {
                name: field(&["label"])?
                    .as_str()
                    .ok_or_else(|| shape("a label that is not text"))?
                    .to_owned(),
                start: time(&["timestamp", "start"])?,
                stop: time(&["timestamp", "stop"])?,
                start_lsn: lsn(field(&["lsn", "start"])?)?,
                stop_lsn: lsn(field(&["lsn", "stop"])?)?,
                size: field(&["info", "size"]).ok().and_then(Value::as_u64),
            });
        }
    }
    Ok(out)
}

fn barman(v: &Value) -> Result<Vec<BackupInfo>, CatalogError> {
    let list = v
        .get("backups_list")
        .and_then(Value::as_array)
        .ok_or_else(|| shape("expected backups_list"))?;
    let mut out = Vec::new();
    for b in list {
        if b.get("status").and_then(Value::as_str) != Some("DONE") {
            continue;
        }
        let text = |k: &str| {
            b.get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| shape(&format!("a backup without {k}")))
        };
        out.push(BackupInfo {
            name: text("backup_id")?.to_owned(),
            start: ctime(text("begin_time")?)?,
            stop: ctime(text("end_time")?)?,
            start_lsn: lsn(b.get("begin_xlog").unwrap_or(&Value::Null))?,
            stop_lsn: lsn(b.get("end_xlog").unwrap_or(&Value::Null))?,
            size: b.get("size").and_then(Value::as_u64),
        });
    }
    Ok(out)
}

fn lsn(v: &Value) -> Result<Lsn, CatalogError> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| shape(&format!("{v} is not an LSN")))
}

/// Python's `datetime.ctime()` (`Mon Dec  7 02:30:00 2026`), which Barman's JSON uses without a
/// zone: read as UTC, the zone of the backup host in the image.
fn ctime(s: &str) -> Result<Timestamp, CatalogError> {
    let squeezed = s.split_whitespace().collect::<Vec<_>>().join(" ");
    jiff::civil::DateTime::strptime("%a %b %d %H:%M:%S %Y", &squeezed)
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC))
        .map(|z| z.timestamp())
        .map_err(|e| shape(&format!("{s:?} is not a time: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbackrest_info() {
        let text = r#"[{"backup":[
            {"label":"B","error":false,"timestamp":{"start":200,"stop":210},
             "lsn":{"start":"0/6000028","stop":"0/6000100"},"info":{"size":100}},
            {"label":"A","error":false,"timestamp":{"start":100,"stop":110},
             "lsn":{"start":"0/4000028","stop":"0/4000100"},"info":{"size":90}},
            {"label":"C","error":true,"timestamp":{"start":300,"stop":310},
             "lsn":{"start":"0/8000028","stop":"0/8000100"},"info":{"size":90}}
        ],"name":"s1"}]"#;
        let list = parse(ToolKind::PgBackRest, text).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name, "A");
        assert_eq!(list[0].start_lsn, Lsn(0x400_0028));
        assert_eq!(list[1].stop, Timestamp::from_second(210).unwrap());
        assert_eq!(list[1].size, Some(100));
        assert!(parse(ToolKind::PgBackRest, "[]").unwrap().is_empty());
        assert!(parse(ToolKind::PgBackRest, "{}").is_err());
    }

    #[test]
    fn barman_list() {
        let text = r#"{"backups_list":[
            {"backup_id":"20261207T023000","status":"DONE","begin_time":"Mon Dec  7 02:30:00 2026",
             "end_time":"Mon Dec  7 02:30:05 2026","begin_xlog":"0/4000028","end_xlog":"0/4000100","size":1234},
            {"backup_id":"20261207T033000","status":"FAILED","begin_time":"Mon Dec  7 03:30:00 2026",
             "end_time":null,"begin_xlog":"0/5000028"}
        ]}"#;
        let list = parse(ToolKind::BarmanCloud, text).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(
            list[0].stop,
            "2026-12-07T02:30:05Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(list[0].size, Some(1234));
    }
}
