//! The walk over `PATRONI_*` variables, in Patroni's order, that builds the document.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{
    EnvConfig, Environment, PATRONI_ENV_PREFIX,
    names::{
        AUTH_PARAMETERS, GENERIC_SUFFIXES, Kind, POSTGRES_BINARIES, SECTION_VALUES, TOP_LEVEL,
        WATCHED_SECTIONS, generic_kind, section_kind,
    },
};
use crate::{
    coerce::{parse_bool, parse_int, parse_real},
    problem::{Problem, describe},
    yaml,
};

/// Builds the document: each step pops the variables it reads, like Patroni's `os.environ.pop`.
pub(super) fn build(env: &Environment) -> EnvConfig {
    let mut builder = Builder::new(env);
    builder.top_level();
    builder.legacy_log_names();
    builder.sections();
    builder.auth();
    builder.generic();
    builder.etcd_auth();
    builder.warn_unread();
    builder.finish()
}

/// Walks the variables the way Patroni does, "popping" each one it reads.
struct Builder {
    /// `PATRONI_*` variables not read yet, without the prefix.
    remaining: BTreeMap<String, String>,
    /// Top-level scalar settings (`name`, `scope`, ...).
    top: Map<String, Value>,
    /// Sections (`restapi`, `kubernetes`, ...), created when the first setting lands in them.
    sections: BTreeMap<String, Map<String, Value>>,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

// === impl Builder ===

impl Builder {
    fn new(env: &Environment) -> Self {
        let remaining = env
            .iter()
            .filter_map(|(k, v)| {
                Some((k.strip_prefix(PATRONI_ENV_PREFIX)?.to_owned(), v.to_owned()))
            })
            .filter(|(k, _)| k != "CONFIGURATION")
            .collect();
        Self {
            remaining,
            top: Map::new(),
            sections: BTreeMap::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn finish(self) -> EnvConfig {
        let mut value = self.top;
        for (name, section) in self.sections {
            value.insert(name, Value::Object(section));
        }
        EnvConfig {
            value: Value::Object(value),
            errors: self.errors,
            warnings: self.warnings,
        }
    }

    /// Removes `PATRONI_<NAME>` and returns its value when it is not empty.
    fn pop(&mut self, name: &str) -> Option<String> {
        self.remaining
            .remove(&name.to_ascii_uppercase())
            .filter(|v| !v.is_empty())
    }

    fn section(&mut self, name: &str) -> &mut Map<String, Value> {
        self.sections.entry(name.to_owned()).or_default()
    }

    fn top_level(&mut self) {
        for param in TOP_LEVEL {
            if let Some(value) = self.pop(param) {
                self.top.insert(param.to_owned(), Value::String(value));
            }
        }
    }

    /// `PATRONI_LOGLEVEL`, `PATRONI_LOGFORMAT` and `PATRONI_LOG_DATEFMT` are old names, used
    /// only when the new variable is not set at all.
    fn legacy_log_names(&mut self) {
        for (new, old) in [
            ("LEVEL", "LOGLEVEL"),
            ("FORMAT", "LOGFORMAT"),
            ("DATEFORMAT", "LOG_DATEFMT"),
        ] {
            let Some(value) = self.pop(old) else { continue };
            self.remaining.entry(format!("LOG_{new}")).or_insert(value);
        }
    }

    fn sections(&mut self) {
        for (section, params) in SECTION_VALUES {
            for param in params {
                let var = format!("{section}_{param}");
                let Some(text) = self.pop(&var) else { continue };
                let value =
                    if (section, *param) == ("log", "format") && !has_percent_placeholder(&text) {
                        // A format without `%(field)` placeholders is a list of JSON log fields;
                        // Patroni keeps the text as it is when it does not parse as a list.
                        Some(
                            parse_list(&text)
                                .ok()
                                .filter(patroni_core::python_truthy)
                                .unwrap_or(Value::String(text)),
                        )
                    } else {
                        // These sections drop empty lists and mappings, unlike the generic ones.
                        self.convert(&var, &text, section_kind(section, param))
                            .filter(is_truthy_or_scalar)
                    };
                if let Some(value) = value {
                    self.section(section).insert((*param).to_owned(), value);
                }
            }
        }
        for binary in POSTGRES_BINARIES {
            if let Some(value) = self.pop(&format!("POSTGRESQL_BIN_{binary}")) {
                let bin_name = self
                    .section("postgresql")
                    .entry("bin_name")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = bin_name {
                    map.insert(binary.to_owned(), Value::String(value));
                }
            }
        }
    }

    fn auth(&mut self) {
        for section in ["ctl", "restapi"] {
            let auth = self.auth_params(section, &AUTH_PARAMETERS[..2]);
            if !auth.is_empty() {
                self.section(section)
                    .insert("authentication".to_owned(), Value::Object(auth));
            }
        }
        let mut authentication = Map::new();
        for user in ["replication", "superuser", "rewind"] {
            let entry = self.auth_params(user, &AUTH_PARAMETERS);
            if !entry.is_empty() {
                authentication.insert(user.to_owned(), Value::Object(entry));
            }
        }
        if !authentication.is_empty() {
            self.section("postgresql")
                .insert("authentication".to_owned(), Value::Object(authentication));
        }
    }

    fn auth_params(&mut self, prefix: &str, params: &[&str]) -> Map<String, Value> {
        params
            .iter()
            .filter_map(|p| {
                Some((
                    (*p).to_owned(),
                    Value::String(self.pop(&format!("{prefix}_{p}"))?),
                ))
            })
            .collect()
    }

    /// `PATRONI_<SECTION>_<SUFFIX>` for any section, mostly the DCS ones.
    fn generic(&mut self) {
        let names: Vec<String> = self.remaining.keys().cloned().collect();
        for var in names {
            let Some((name, suffix)) = var.split_once('_') else {
                continue;
            };
            if name.is_empty() || !GENERIC_SUFFIXES.contains(&suffix) {
                continue;
            }
            let Some(text) = self.remaining.remove(&var) else {
                continue;
            };
            let Some(kind) = generic_kind(name, suffix) else {
                continue;
            };
            // Patroni keeps an empty PORT or list value as an empty string, parses an empty
            // mapping value as `{}`, and drops an empty boolean or citus group.
            let known = matches!(
                name,
                "ETCD"
                    | "ETCD3"
                    | "CONSUL"
                    | "ZOOKEEPER"
                    | "EXHIBITOR"
                    | "KUBERNETES"
                    | "RAFT"
                    | "CITUS"
            );
            let value = match kind {
                Kind::Int | Kind::List if text.is_empty() && name != "CITUS" => {
                    Some(Value::String(text))
                }
                Kind::Bool | Kind::Int if text.is_empty() => None,
                // Not a DCS: most likely a Kubernetes service link of a Service named
                // `patroni-…` (`PATRONI_RS_PORT=tcp://10.96.0.5:5432`). Patroni drops a
                // value it cannot convert; so do we, with a warning, instead of refusing.
                _ if !known && self.convertible(&text, kind).is_none() => {
                    self.warnings.push(Problem::new(
                        format!("{PATRONI_ENV_PREFIX}{var}"),
                        "not a section patroni reads and not convertible (a Kubernetes service \
                         link variable?); ignored",
                    ));
                    None
                }
                _ => self.convert(&var, &text, kind),
            };
            if let Some(value) = value {
                self.section(&name.to_ascii_lowercase())
                    .insert(suffix.to_ascii_lowercase(), value);
            }
        }
    }

    /// `PATRONI_ETCD_USERNAME`/`PASSWORD` (and ETCD3) apply only to a section that exists.
    fn etcd_auth(&mut self) {
        for dcs in ["etcd", "etcd3"] {
            if self.sections.contains_key(dcs) {
                let auth = self.auth_params(dcs, &AUTH_PARAMETERS[..2]);
                self.section(dcs).extend(auth);
            }
        }
    }

    fn warn_unread(&mut self) {
        for (name, value) in &self.remaining {
            let section = name.split('_').next().unwrap_or_default();
            let message = if matches!(section, "ETCD" | "ETCD3")
                && (name.ends_with("_USERNAME") || name.ends_with("_PASSWORD"))
            {
                "read only when another variable of the same DCS sets its section; ignored"
            } else if WATCHED_SECTIONS.contains(&section) {
                "not a setting Patroni reads; ignored"
            } else if (name.ends_with("_PASSWORD") || name.ends_with("_OPTIONS"))
                && !value.is_empty()
            {
                "user creation from the environment was removed in Patroni 4.0; ignored \
                 (create users in a bootstrap.post_bootstrap script)"
            } else {
                continue;
            };
            self.warnings
                .push(Problem::new(format!("{PATRONI_ENV_PREFIX}{name}"), message));
        }
    }

    /// Converts `text` from `PATRONI_<var>` to a value of `kind`, recording an error on failure.
    /// `text` as `kind`, or `None`; reports nothing.
    fn convertible(&self, text: &str, kind: Kind) -> Option<Value> {
        match kind {
            Kind::Text => Some(Value::String(text.to_owned())),
            Kind::Bool => parse_bool(text).map(Value::Bool),
            Kind::Int => parse_int(text, None).map(Value::from),
            Kind::Real => parse_real(text, None).map(Value::from),
            Kind::List => parse_list(text).ok(),
            Kind::Dict => parse_dict(text).ok(),
        }
    }

    fn convert(&mut self, var: &str, text: &str, kind: Kind) -> Option<Value> {
        let path = format!("{PATRONI_ENV_PREFIX}{}", var.to_ascii_uppercase());
        let shown = || describe(&path, &Value::String(text.to_owned()));
        let result = match kind {
            Kind::Text => Ok(Value::String(text.to_owned())),
            Kind::Bool => parse_bool(text).map(Value::Bool).ok_or_else(|| {
                format!(
                    "expected a boolean (true/false, on/off, yes/no, 1/0), got {}",
                    shown()
                )
            }),
            Kind::Int => parse_int(text, None)
                .map(Value::from)
                .ok_or_else(|| format!("expected an integer, got {}", shown())),
            Kind::Real => parse_real(text, None)
                .map(Value::from)
                .ok_or_else(|| format!("expected a number, got {}", shown())),
            Kind::List => parse_list(text).map_err(|e| format!("cannot parse as a YAML list: {e}")),
            Kind::Dict => {
                parse_dict(text).map_err(|e| format!("cannot parse as a YAML mapping: {e}"))
            }
        };
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.errors.push(Problem::new(path, message));
                None
            }
        }
    }
}

/// Whether `text` contains a Python `%(name)` placeholder.
fn has_percent_placeholder(text: &str) -> bool {
    text.match_indices("%(").any(|(i, _)| {
        let rest = &text[i + 2..];
        let word = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        word > 0 && rest.as_bytes().get(word) == Some(&b')')
    })
}

/// Patroni's `_parse_list`: a YAML list, with the brackets optional (`a,b` means `[a,b]`).
fn parse_list(text: &str) -> Result<Value, serde_yaml_ng::Error> {
    if text.trim().starts_with('-') || text.contains('[') {
        yaml::parse(text)
    } else {
        yaml::parse(&format!("[{text}]"))
    }
}

/// Patroni's `_parse_dict`: a YAML mapping, with the braces optional (`a: 1` means `{a: 1}`).
fn parse_dict(text: &str) -> Result<Value, serde_yaml_ng::Error> {
    if text.trim().starts_with('{') {
        yaml::parse(text)
    } else {
        yaml::parse(&format!("{{{text}}}"))
    }
}

/// Patroni's fixed sections drop a converted list or mapping that is empty (or parsed to null),
/// but keep `false` and `0`.
fn is_truthy_or_scalar(value: &Value) -> bool {
    match value {
        Value::Bool(_) | Value::Number(_) | Value::String(_) => true,
        other => patroni_core::python_truthy(other),
    }
}
