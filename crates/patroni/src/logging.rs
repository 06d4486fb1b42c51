//! Logging as Patroni's `log` section asks for it, so log shippers and alerts written for
//! Patroni keep working (issue #12):
//! - `type: plain` with `format`, a Python `logging` format string (`%(asctime)s
//!   %(levelname)s: %(message)s` by default, `%(name)-8s`-style width and alignment
//!   honoured) and `dateformat` (`strftime`; without it Python's `2026-12-06 10:00:00,123`);
//! - `type: json` as python-json-logger writes it: the fields named by `format` (a format
//!   string or a list of names and `{name: renamed}` maps), then `static_fields`;
//! - `level`, and `loggers` mapped from Patroni's logger names to this agent's modules;
//! - `dir`: `patroni.log` there instead of stderr, rotated at `file_size` bytes keeping
//!   `file_num` old files (Python's `RotatingFileHandler`), created with `mode`.
//!
//! An event's structured fields follow its message as ` key=value`. `RUST_LOG`, when set,
//! replaces `level` and `loggers`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use patroni_config::{LogConfig, LogFormatType, LogLevel};
use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// Patroni's default `log.format`.
pub const DEFAULT_FORMAT: &str = "%(asctime)s %(levelname)s: %(message)s";

/// One piece of a Python format string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Text copied as is.
    Text(String),
    /// `%(name)<flags><width>s`: a record attribute, padded to `width` (left-aligned with `-`).
    Attr {
        name: String,
        left: bool,
        width: usize,
    },
}

/// How each event is written.
#[derive(Debug, Clone)]
pub struct PatroniFormat {
    kind: Kind,
    /// `log.dateformat`; `None`: Python's default with milliseconds.
    dateformat: Option<String>,
}

#[derive(Debug, Clone)]
enum Kind {
    Plain(Vec<Piece>),
    Json {
        /// `(attribute, key)` in order.
        fields: Vec<(String, String)>,
        static_fields: Vec<(String, Value)>,
    },
}

/// What a record carries, as Python's `LogRecord` names it.
struct Record {
    asctime: String,
    level: Level,
    message: String,
    name: String,
    module: String,
    filename: String,
    lineno: u32,
    created: f64,
    msecs: u32,
}

// === impl PatroniFormat ===

impl PatroniFormat {
    /// The format `log` asks for. Problems Patroni only warns about (a format of the wrong
    /// shape) fall back to the default format and are returned as warnings.
    pub fn from_config(log: &LogConfig) -> (Self, Vec<String>) {
        let mut warnings = Vec::new();
        let dateformat = log.dateformat.clone().filter(|d| !d.is_empty());
        let kind = match log.format_type {
            LogFormatType::Plain => {
                let text = match &log.format {
                    None => DEFAULT_FORMAT.to_owned(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => {
                        warnings.push(format!(
                            "Expected log format to be a string when log type is plain, but got \"{}\"",
                            type_name(other)
                        ));
                        DEFAULT_FORMAT.to_owned()
                    }
                };
                Kind::Plain(parse(&text))
            }
            LogFormatType::Json => Kind::Json {
                fields: json_fields(log.format.as_ref(), &mut warnings),
                static_fields: log
                    .static_fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
        };
        (Self { kind, dateformat }, warnings)
    }

    /// The line for `record`, without the newline.
    fn render(&self, r: &Record) -> String {
        match &self.kind {
            Kind::Plain(pieces) => {
                let mut out = String::new();
                for p in pieces {
                    match p {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Attr { name, left, width } => {
                            let v = attr(r, name);
                            let _ = if *left {
                                write!(out, "{v:<width$}")
                            } else {
                                write!(out, "{v:>width$}")
                            };
                        }
                    }
                }
                out
            }
            Kind::Json {
                fields,
                static_fields,
            } => {
                // python-json-logger's order: the format's fields, then the static ones.
                let mut doc: Vec<(&str, Value)> = Vec::new();
                for (name, key) in fields {
                    let value = match name.as_str() {
                        "lineno" | "levelno" | "process" | "msecs" => attr(r, name)
                            .parse::<u64>()
                            .map(Value::from)
                            .unwrap_or(Value::Null),
                        "created" => Value::from(r.created),
                        _ => Value::String(attr(r, name)),
                    };
                    doc.retain(|(k, _)| k != key);
                    doc.push((key.as_str(), value));
                }
                for (k, v) in static_fields {
                    doc.retain(|(key, _)| key != k);
                    doc.push((k.as_str(), v.clone()));
                }
                let mut out = String::from("{");
                for (i, (k, v)) in doc.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_python_string(k, &mut out);
                    out.push_str(": ");
                    write_python_json(v, &mut out);
                }
                out.push('}');
                out
            }
        }
    }

    fn asctime(&self, now: &jiff::Zoned) -> String {
        match &self.dateformat {
            Some(f) => now.strftime(f).to_string(),
            None => format!(
                "{},{:03}",
                now.strftime("%Y-%m-%d %H:%M:%S"),
                now.subsec_nanosecond() / 1_000_000
            ),
        }
    }
}

impl<S, N> FormatEvent<S, N> for PatroniFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        let mut message = visitor.message;
        for (k, v) in visitor.rest {
            let _ = write!(message, " {k}={v}");
        }
        let now = jiff::Zoned::now();
        let ts = now.timestamp();
        let record = Record {
            asctime: self.asctime(&now),
            level: *meta.level(),
            message,
            name: meta.target().replace("::", "."),
            module: meta
                .module_path()
                .and_then(|m| m.rsplit("::").next())
                .unwrap_or_default()
                .to_owned(),
            filename: meta
                .file()
                .and_then(|f| Path::new(f).file_name())
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            lineno: meta.line().unwrap_or(0),
            created: ts.as_millisecond() as f64 / 1000.0,
            msecs: (ts.subsec_nanosecond() / 1_000_000).unsigned_abs(),
        };
        writeln!(writer, "{}", self.render(&record))
    }
}

/// Python's level names.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// A record attribute by its Python name (empty when there is no equivalent).
fn attr(r: &Record, name: &str) -> String {
    match name {
        "asctime" => r.asctime.clone(),
        "levelname" => level_name(r.level).to_owned(),
        "levelno" => match r.level {
            Level::ERROR => "40",
            Level::WARN => "30",
            Level::INFO => "20",
            Level::DEBUG | Level::TRACE => "10",
        }
        .to_owned(),
        "message" | "msg" => r.message.clone(),
        "name" => r.name.clone(),
        "module" => r.module.clone(),
        "filename" | "pathname" => r.filename.clone(),
        "funcName" => r.module.clone(),
        "lineno" => r.lineno.to_string(),
        "process" => std::process::id().to_string(),
        "processName" => "MainProcess".to_owned(),
        "thread" => "0".to_owned(),
        "threadName" => "MainThread".to_owned(),
        "created" => format!("{:.6}", r.created),
        "msecs" => r.msecs.to_string(),
        _ => String::new(),
    }
}

/// The pieces of a Python `%`-style format string with named attributes; `%%` is a `%`;
/// anything else is copied as text.
fn parse(format: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = format;
    while let Some(i) = rest.find('%') {
        text.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("%%") {
            text.push('%');
            rest = after;
            continue;
        }
        let parsed = rest.strip_prefix("%(").and_then(|r| {
            let (name, after) = r.split_once(')')?;
            let flags_end = after.find(|c: char| !matches!(c, '-' | '+' | ' ' | '#' | '0'))?;
            let (flags, after) = after.split_at(flags_end);
            let width_end = after.find(|c: char| !c.is_ascii_digit())?;
            let (width, after) = after.split_at(width_end);
            let after = match after.strip_prefix('.') {
                Some(p) => p.trim_start_matches(|c: char| c.is_ascii_digit()),
                None => after,
            };
            let conversion = after.chars().next()?;
            matches!(
                conversion,
                's' | 'd' | 'i' | 'f' | 'r' | 'x' | 'X' | 'e' | 'g' | 'c'
            )
            .then(|| {
                (
                    Piece::Attr {
                        name: name.to_owned(),
                        left: flags.contains('-'),
                        width: width.parse().unwrap_or(0),
                    },
                    &after[conversion.len_utf8()..],
                )
            })
        });
        match parsed {
            Some((piece, after)) => {
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(piece);
                rest = after;
            }
            None => {
                text.push('%');
                rest = &rest[1..];
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

/// The `(attribute, key)` pairs of a JSON `log.format`, as Patroni builds them.
fn json_fields(format: Option<&Value>, warnings: &mut Vec<String>) -> Vec<(String, String)> {
    let from_string = |s: &str| -> Vec<(String, String)> {
        parse(s)
            .into_iter()
            .filter_map(|p| match p {
                Piece::Attr { name, .. } => Some((name.clone(), name)),
                Piece::Text(_) => None,
            })
            .collect()
    };
    match format {
        None => from_string(DEFAULT_FORMAT),
        Some(Value::String(s)) => from_string(s),
        Some(Value::Array(items)) => {
            let mut fields = Vec::new();
            for item in items {
                match item {
                    Value::String(s) => fields.push((s.clone(), s.clone())),
                    Value::Object(m) => {
                        for (original, renamed) in m {
                            match renamed {
                                Value::String(r) => fields.push((original.clone(), r.clone())),
                                other => warnings.push(format!(
                                    "Expected renamed log field to be a string, but got \"{}\"",
                                    type_name(other)
                                )),
                            }
                        }
                    }
                    other => warnings.push(format!(
                        "Expected each item of log format to be a string or dictionary, but got \"{}\"",
                        type_name(other)
                    )),
                }
            }
            if fields.is_empty() {
                from_string(DEFAULT_FORMAT)
            } else {
                fields
            }
        }
        Some(other) => {
            warnings.push(format!(
                "Expected log format to be a string or a list, but got \"{}\"",
                type_name(other)
            ));
            from_string(DEFAULT_FORMAT)
        }
    }
}

/// Python's name of the type of a YAML/JSON value, for warnings.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Writes `v` as Python's `json.dumps` does (`", "` and `": "` separators, non-ASCII escaped).
fn write_python_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            out.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_string(k, out);
                out.push_str(": ");
                write_python_json(v, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_json(v, out);
            }
            out.push(']');
        }
        Value::String(s) => write_python_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_python_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The message and the other fields of an event.
#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.rest.push((field.name().to_owned(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.rest
                .push((field.name().to_owned(), format!("{value:?}")));
        }
    }
}

/// The `EnvFilter` directives for `log.level` and `log.loggers`; unknown logger names (a
/// Python library with no counterpart here) are returned as warnings.
pub fn filter_directives(log: &LogConfig) -> (String, Vec<String>) {
    let level = |l: LogLevel| match l {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warning => "warn",
        LogLevel::Error | LogLevel::Critical => "error",
    };
    let mut directives = vec![level(log.level).to_owned()];
    let mut warnings = Vec::new();
    for (name, value) in &log.loggers {
        let Some(l) = parse_level(value) else {
            warnings.push(format!(
                "log.loggers.{name}: unknown level {value:?}, ignored"
            ));
            continue;
        };
        let targets = logger_targets(name);
        if targets.is_empty() {
            warnings.push(format!(
                "log.loggers.{name}: no patroni-rs module corresponds to this logger; ignored"
            ));
        }
        for t in targets {
            directives.push(format!("{t}={}", level(l)));
        }
    }
    (directives.join(","), warnings)
}

fn parse_level(value: &str) -> Option<LogLevel> {
    match value.trim().to_ascii_uppercase().as_str() {
        "DEBUG" | "NOTSET" => Some(LogLevel::Debug),
        "INFO" => Some(LogLevel::Info),
        "WARN" | "WARNING" => Some(LogLevel::Warning),
        "ERROR" => Some(LogLevel::Error),
        "CRITICAL" | "FATAL" => Some(LogLevel::Critical),
        _ => None,
    }
}

/// This agent's module paths for a Patroni (or Python library) logger name.
fn logger_targets(name: &str) -> Vec<&'static str> {
    let first = |prefix: &str| name == prefix || name.starts_with(&format!("{prefix}."));
    if first("patroni.api") || first("patroni.restapi") {
        vec!["patroni_api", "patroni::agent::api_backend"]
    } else if first("patroni.ha") {
        vec!["patroni::agent", "patroni_core"]
    } else if first("patroni.dcs") {
        vec!["patroni_dcs"]
    } else if first("patroni.postgresql") {
        vec!["patroni_postgres", "postgres"]
    } else if first("patroni.config") {
        vec!["patroni_config"]
    } else if name == "patroni" {
        vec![
            "patroni",
            "patroni_core",
            "patroni_dcs",
            "patroni_postgres",
            "patroni_api",
            "patroni_config",
            "postgres",
        ]
    } else if first("urllib3") {
        vec!["hyper", "hyper_util", "kube_client"]
    } else {
        Vec::new()
    }
}

/// `dir/patroni.log`, rotated as Python's `RotatingFileHandler` does: before a write that
/// would reach `max_bytes`, `patroni.log.N-1` → `.N` … `patroni.log` → `.1`, keeping
/// `backups` old files (no rotation when either is 0).
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    backups: u32,
    mode: Option<u32>,
    state: Mutex<Option<(std::fs::File, u64)>>,
}

// === impl RotatingFile ===

impl RotatingFile {
    /// `dir/patroni.log`, created (with `mode`) on the first write.
    pub fn new(dir: &Path, max_bytes: u64, backups: u32, mode: Option<u32>) -> Arc<Self> {
        Arc::new(Self {
            path: dir.join("patroni.log"),
            max_bytes,
            backups,
            mode,
            state: Mutex::new(None),
        })
    }

    fn open(&self) -> std::io::Result<(std::fs::File, u64)> {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        if let Some(mode) = self.mode {
            options.mode(mode);
        }
        let file = options.open(&self.path)?;
        if let Some(mode) = self.mode {
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        let size = file.metadata()?.len();
        Ok((file, size))
    }

    fn rotate(&self) -> std::io::Result<()> {
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        for i in (1..self.backups).rev() {
            if name(i).exists() {
                std::fs::rename(name(i), name(i + 1))?;
            }
        }
        std::fs::rename(&self.path, name(1))
    }

    fn write_line(&self, buf: &[u8]) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.is_none() {
            *state = Some(self.open()?);
        }
        let rotate = self.max_bytes > 0
            && self.backups > 0
            && state
                .as_ref()
                .is_some_and(|(_, size)| *size > 0 && size + buf.len() as u64 >= self.max_bytes);
        if rotate {
            *state = None;
            self.rotate()?;
            *state = Some(self.open()?);
        }
        let (file, size) = state
            .as_mut()
            .ok_or_else(|| std::io::Error::other("log file closed"))?;
        file.write_all(buf)?;
        *size += buf.len() as u64;
        Ok(())
    }
}

/// A writer handle on a [`RotatingFile`].
#[derive(Debug, Clone)]
pub struct RotatingWriter(Arc<RotatingFile>);

impl RotatingWriter {
    /// Writes into `file`.
    pub fn new(file: Arc<RotatingFile>) -> Self {
        Self(file)
    }
}

impl std::io::Write for RotatingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_line(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for RotatingWriter {
    type Writer = RotatingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            asctime: "2026-12-06 10:00:00,123".into(),
            level: Level::WARN,
            message: "no action. I am (m0), the leader with the lock".into(),
            name: "patroni.agent.runtime".into(),
            module: "runtime".into(),
            filename: "runtime.rs".into(),
            lineno: 42,
            created: 1_796_551_200.123,
            msecs: 123,
        }
    }

    fn config(edit: impl FnOnce(&mut LogConfig)) -> LogConfig {
        let mut c = LogConfig::default();
        edit(&mut c);
        c
    }

    /// Patroni's default plain format.
    #[test]
    fn default_plain_format_is_patronis() {
        let (f, w) = PatroniFormat::from_config(&LogConfig::default());
        assert!(w.is_empty());
        assert_eq!(
            f.render(&record()),
            "2026-12-06 10:00:00,123 WARNING: no action. I am (m0), the leader with the lock"
        );
    }

    /// Width, alignment, `%%` and unknown attributes as Python's `%` formatting.
    #[test]
    fn python_format_strings() {
        let (f, _) = PatroniFormat::from_config(&config(|c| {
            c.format = Some(Value::from(
                "[%(levelname)-8s] %(name)s:%(lineno)d %(process)5s 100%% %(nosuch)s|%(message)s",
            ));
        }));
        let line = f.render(&record());
        let pid = std::process::id().to_string();
        assert_eq!(
            line,
            format!(
                "[WARNING ] patroni.agent.runtime:42 {pid:>5} 100% |no action. I am (m0), the leader with the lock"
            )
        );
    }

    /// JSON: python-json-logger's fields in format order, renames, then static fields, in
    /// Python's `json.dumps` spelling.
    #[test]
    fn json_records() {
        let (f, w) = PatroniFormat::from_config(&config(|c| {
            c.format_type = LogFormatType::Json;
            c.format =
                Some(serde_json::json!(["asctime", {"levelname": "level"}, "message", "lineno"]));
            c.static_fields = [("app".to_owned(), Value::from("patroni"))].into();
        }));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            f.render(&record()),
            r#"{"asctime": "2026-12-06 10:00:00,123", "level": "WARNING", "message": "no action. I am (m0), the leader with the lock", "lineno": 42, "app": "patroni"}"#
        );
        let (f, _) = PatroniFormat::from_config(&config(|c| c.format_type = LogFormatType::Json));
        assert_eq!(
            f.render(&record()),
            r#"{"asctime": "2026-12-06 10:00:00,123", "levelname": "WARNING", "message": "no action. I am (m0), the leader with the lock"}"#
        );
    }

    /// A plain format that is not a string warns and falls back, as Patroni.
    #[test]
    fn wrong_format_shapes_warn() {
        let (f, w) = PatroniFormat::from_config(&config(|c| {
            c.format = Some(serde_json::json!(["asctime"]))
        }));
        assert_eq!(
            w,
            ["Expected log format to be a string when log type is plain, but got \"list\""]
        );
        assert!(
            f.render(&record())
                .starts_with("2026-12-06 10:00:00,123 WARNING: ")
        );
    }

    /// `dateformat` is `strftime`, without milliseconds.
    #[test]
    fn dateformat_is_strftime() {
        let (f, _) =
            PatroniFormat::from_config(&config(|c| c.dateformat = Some("%Y/%m/%d %H.%M".into())));
        let now: jiff::Zoned = "2026-12-06T10:00:00.5+00:00[UTC]".parse().expect("time");
        assert_eq!(f.asctime(&now), "2026/12/06 10.00");
        let (f, _) = PatroniFormat::from_config(&LogConfig::default());
        assert_eq!(f.asctime(&now), "2026-12-06 10:00:00,500");
    }

    /// `level` and `loggers` become filter directives; loggers without a counterpart warn.
    #[test]
    fn loggers_map_to_modules() {
        let (d, w) = filter_directives(&config(|c| {
            c.level = LogLevel::Warning;
            c.loggers = [
                ("patroni.dcs.kubernetes".to_owned(), "DEBUG".to_owned()),
                ("kazoo".to_owned(), "ERROR".to_owned()),
            ]
            .into();
        }));
        assert_eq!(d, "warn,patroni_dcs=debug");
        assert_eq!(
            w,
            ["log.loggers.kazoo: no patroni-rs module corresponds to this logger; ignored"]
        );
    }

    /// The file rotates before a write that would reach `file_size`, keeping `file_num` files.
    #[test]
    fn file_rotates_like_python() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = RotatingFile::new(dir.path(), 10, 2, Some(0o600));
        let mut w = RotatingWriter::new(file);
        for line in ["aaaaaa\n", "bbbbbb\n", "cccccc\n", "dddddd\n"] {
            w.write_all(line.as_bytes()).expect("write");
        }
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        assert_eq!(read("patroni.log"), "dddddd\n");
        assert_eq!(read("patroni.log.1"), "cccccc\n");
        assert_eq!(read("patroni.log.2"), "bbbbbb\n");
        assert!(!dir.path().join("patroni.log.3").exists());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("patroni.log"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
