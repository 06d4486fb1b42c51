//! Command-line options for Postgres tools, written as Patroni lists them in `bootstrap.initdb`,
//! `postgresql.basebackup` and `postgresql.rewind`:
//!
//! ```yaml
//! initdb:
//! - data-checksums          # --data-checksums
//! - encoding: UTF8          # --encoding=UTF8
//! ```
//!
//! A mapping (`{encoding: UTF8, data-checksums: ...}`) is also accepted, as Patroni does for
//! `basebackup`.

use serde_json::Value;

use crate::validate::{Checker, Node, join};

/// One tool option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOption {
    /// A switch: `--name`.
    Flag(String),
    /// An option with a value: `--name=value`.
    Value {
        /// Option name without dashes.
        name: String,
        /// Option value.
        value: String,
    },
}

// === impl ToolOption ===

impl ToolOption {
    /// The option name without dashes.
    pub fn name(&self) -> &str {
        match self {
            Self::Flag(name) | Self::Value { name, .. } => name,
        }
    }

    /// The command-line argument: `--name` or `--name=value`.
    pub fn to_arg(&self) -> String {
        match self {
            Self::Flag(name) => format!("--{name}"),
            Self::Value { name, value } => format!("--{name}={value}"),
        }
    }
}

/// Reads the options at `key`: a list of names and single-key mappings, or one mapping.
pub(crate) fn read_tool_options(c: &mut Checker, node: &Node<'_>, key: &str) -> Vec<ToolOption> {
    let Some(value) = node.get(key) else {
        return Vec::new();
    };
    let path = node.path_of(key);
    match value {
        Value::Array(items) => {
            let mut options = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let item_path = join(&path, &i.to_string());
                match item {
                    Value::String(name) => options.push(ToolOption::Flag(name.clone())),
                    Value::Object(map) if map.len() == 1 => {
                        options.extend(
                            map.iter()
                                .filter_map(|(k, v)| option_value(c, &item_path, k, v)),
                        );
                    }
                    other => c.error(
                        item_path,
                        format!(
                            "expected an option name or a mapping with one option, got {other}"
                        ),
                    ),
                }
            }
            options
        }
        Value::Object(map) => map
            .iter()
            .filter_map(|(k, v)| option_value(c, &path, k, v))
            .collect(),
        other => {
            c.error(path, format!("expected a list of options, got {other}"));
            Vec::new()
        }
    }
}

fn option_value(c: &mut Checker, path: &str, name: &str, value: &Value) -> Option<ToolOption> {
    let value = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => {
            c.error(
                join(path, name),
                format!("expected a string value, got {other}"),
            );
            return None;
        }
    };
    Some(ToolOption::Value {
        name: name.to_owned(),
        value,
    })
}
