//! Patroni's encodings of the values it keeps in any DCS, both ways (the Kubernetes backend
//! stores them in annotations, etcd and ZooKeeper in keys).
//!
//! Writers produce byte-for-byte what Patroni writes: compact JSON with
//! non-ASCII escaped (Python's `json.dumps(..., separators=(',', ':'))`),
//! `retain_slots` with Python's default `", "` separator, decimal strings
//! for numbers, Python `isoformat()` timestamps. Readers are as lenient as
//! Patroni's: a value that does not parse becomes "absent" (or 0, or empty),
//! and the problem is reported so the caller can log it.

use std::collections::BTreeMap;

use patroni_core::MemberData;
use serde::Serialize;
use serde_json::Value;

/// Compact JSON as Python's `json.dumps(v, separators=(',', ':'))`:
/// no spaces, non-ASCII characters escaped as `\u` and four hex digits.
pub fn compact_json<T: Serialize + ?Sized>(value: &T) -> String {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
    escape_non_ascii(&text)
}

/// A member's data as Patroni's `Member.from_node` reads it: JSON (Patroni 1.0+), nothing
/// (no data yet), or a bare `postgres://` connection URL as very old Patroni wrote it, whose
/// `application_name` parameter is the API URL.
///
/// # Errors
/// The JSON problem, as text; the caller reports it and reads no data.
pub fn parse_member_data(raw: &str) -> Result<MemberData, String> {
    if raw.starts_with("postgres") {
        let (conn_url, query) = raw.split_once('?').unwrap_or((raw, ""));
        let api_url = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "application_name")
            .map(|(_, v)| v.to_string());
        return Ok(MemberData {
            conn_url: Some(conn_url.to_string()),
            api_url,
            ..MemberData::default()
        });
    }
    if raw.is_empty() {
        return Ok(MemberData::default());
    }
    serde_json::from_str::<MemberData>(raw).map_err(|e| e.to_string())
}

/// JSON with Python's default separators (`", "` and `": "`), as Patroni
/// writes `retain_slots`.
pub fn python_default_json(names: &[String]) -> String {
    let items: Vec<String> = names.iter().map(compact_json).collect();
    format!("[{}]", items.join(", "))
}

fn escape_non_ascii(text: &str) -> String {
    if text.is_ascii() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// A timestamp as Python's `datetime.now(timezone.utc).isoformat()`:
/// `2025-03-01T10:00:00.123456+00:00`, without the fraction when the
/// microseconds are exactly 0.
pub fn isoformat(ts: jiff::Timestamp) -> String {
    let micros = ts.subsec_microsecond();
    let base = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    if micros == 0 {
        format!("{base}+00:00")
    } else {
        format!("{base}.{micros:06}+00:00")
    }
}

/// Python's `int(s)` for the decimal strings Patroni writes (surrounding
/// whitespace allowed).
pub fn parse_int(s: &str) -> Option<i64> {
    s.trim().parse().ok()
}

/// `optime`: not an integer reads as 0.
pub fn parse_optime(value: Option<&str>) -> u64 {
    value
        .and_then(parse_int)
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}

/// `slots`: a JSON object of integers, else `None`.
pub fn parse_slots(value: Option<&str>) -> Result<Option<BTreeMap<String, u64>>, String> {
    let Some(text) = value else { return Ok(None) };
    serde_json::from_str::<BTreeMap<String, u64>>(text)
        .map(Some)
        .map_err(|e| format!("slots: {e}"))
}

/// `retain_slots`: a JSON array of strings, else empty.
pub fn parse_retain_slots(value: Option<&str>) -> Result<Vec<String>, String> {
    let Some(text) = value else {
        return Ok(Vec::new());
    };
    serde_json::from_str::<Vec<String>>(text).map_err(|e| format!("retain_slots: {e}"))
}

/// `failsafe`: a JSON object `{member: api_url}`, else `None`.
pub fn parse_failsafe(value: Option<&str>) -> Result<Option<BTreeMap<String, String>>, String> {
    let Some(text) = value else { return Ok(None) };
    serde_json::from_str::<BTreeMap<String, String>>(text)
        .map(Some)
        .map_err(|e| format!("failsafe: {e}"))
}

/// `config`: a JSON object; `None` when it is not one (reads as `{}` with
/// no modify version, as Patroni does).
pub fn parse_config(text: &str) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// `history`: a JSON array; `None` when it is not one (reads as `[]`).
pub fn parse_history(text: &str) -> Option<Vec<Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(lines)) => Some(lines),
        _ => None,
    }
}

/// `sync_standby`: comma-separated names (Patroni writes them sorted).
pub fn parse_sync_standby(value: Option<&str>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// `sync_standby` as Patroni writes it: sorted, comma-joined, no spaces.
pub fn format_sync_standby(names: &[String]) -> String {
    let mut names = names.to_vec();
    names.sort();
    names.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timestamps look like Python's isoformat, fraction dropped at 0 µs.
    #[test]
    fn timestamps_match_python_isoformat() {
        let t: jiff::Timestamp = "2025-03-01T10:00:00.123456Z".parse().expect("valid");
        assert_eq!(isoformat(t), "2025-03-01T10:00:00.123456+00:00");
        let t: jiff::Timestamp = "2025-03-01T10:00:00Z".parse().expect("valid");
        assert_eq!(isoformat(t), "2025-03-01T10:00:00+00:00");
        let t: jiff::Timestamp = "2025-03-01T10:00:00.000001Z".parse().expect("valid");
        assert_eq!(isoformat(t), "2025-03-01T10:00:00.000001+00:00");
    }

    /// JSON is compact with non-ASCII escaped; retain_slots keeps `", "`.
    #[test]
    fn json_encodings_match_python() {
        let v = serde_json::json!({"a": [1, 2], "name": "é😀"});
        assert_eq!(
            compact_json(&v),
            r#"{"a":[1,2],"name":"\u00e9\ud83d\ude00"}"#
        );
        assert_eq!(
            python_default_json(&["m_1".into(), "m_2".into()]),
            r#"["m_1", "m_2"]"#
        );
        assert_eq!(
            format_sync_standby(&["pg-2".into(), "pg-1".into()]),
            "pg-1,pg-2"
        );
    }

    /// Readers are lenient: garbage becomes absent, 0 or empty, with a reason.
    #[test]
    fn lenient_readers_turn_garbage_into_defaults() {
        assert_eq!(parse_optime(Some("abc")), 0);
        assert_eq!(parse_optime(Some(" 42 ")), 42);
        assert_eq!(parse_optime(None), 0);
        assert!(parse_slots(Some("{")).is_err());
        assert_eq!(
            parse_slots(Some(r#"{"s":5}"#)),
            Ok(Some(BTreeMap::from([("s".into(), 5)])))
        );
        assert!(parse_retain_slots(Some("{}")).is_err());
        assert!(parse_failsafe(Some("[]")).is_err());
        assert_eq!(parse_config("[1]"), None);
        assert_eq!(parse_history("{}"), None);
        assert_eq!(
            parse_sync_standby(Some("a,b")),
            vec!["a".to_string(), "b".to_string()]
        );
    }
}
