//! The checker that turns raw JSON into typed settings while collecting every problem.
//!
//! Typed structs in [`crate::model`] are built by reading their fields through a [`Checker`].
//! Each read either yields a value or records a [`Problem`] at the setting's YAML path and yields
//! `None`, in which case the caller falls back to the default so that reading goes on and every
//! other problem is still found. A configuration is valid only when the checker recorded no
//! error at the end.
//!
//! Coercions follow Patroni: strings that look like numbers or booleans are accepted where a
//! number or boolean is expected (environment variables are always strings), numbers are
//! accepted where a string is expected, and `null` means "not set".

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::{
    coerce::{parse_bool, parse_int},
    model::address::{Address, AddressRule},
    problem::{Problem, describe},
};

/// Whether a setting must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    /// Missing is an error.
    Required,
    /// Missing means "use the default".
    Optional,
}

/// The accepted range (and unit) of an integer setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IntRule {
    pub min: Option<i64>,
    pub max: Option<i64>,
    /// Base unit for values with units (`30min` with base `s` is 1800).
    pub unit: Option<&'static str>,
}

// === impl IntRule ===

impl IntRule {
    /// Any integer.
    pub const ANY: Self = Self {
        min: None,
        max: None,
        unit: None,
    };

    /// At least `min`.
    pub const fn at_least(min: i64) -> Self {
        Self {
            min: Some(min),
            max: None,
            unit: None,
        }
    }

    /// Between `min` and `max`, both included.
    pub const fn between(min: i64, max: i64) -> Self {
        Self {
            min: Some(min),
            max: Some(max),
            unit: None,
        }
    }

    /// Values may carry a unit converted into `unit`.
    pub const fn with_unit(self, unit: &'static str) -> Self {
        Self {
            unit: Some(unit),
            ..self
        }
    }

    fn expectation(&self) -> String {
        let range = match (self.min, self.max) {
            (Some(min), Some(max)) => format!("an integer between {min} and {max}"),
            (Some(min), None) => format!("an integer ≥ {min}"),
            (None, Some(max)) => format!("an integer ≤ {max}"),
            (None, None) => "an integer".to_owned(),
        };
        match self.unit {
            Some(unit) => format!("{range} (in {unit}, or with a unit such as 30min)"),
            None => range,
        }
    }

    fn accepts(&self, n: i64) -> bool {
        self.min.is_none_or(|min| n >= min) && self.max.is_none_or(|max| n <= max)
    }
}

/// A mapping in the document and its YAML path. A missing or invalid mapping is represented by
/// a node without entries, so reading from it yields defaults.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    path: String,
    map: Option<&'a Map<String, Value>>,
}

// === impl Node ===

impl<'a> Node<'a> {
    /// The whole document (an empty node when it is not an object).
    pub fn root(value: &'a Value) -> Self {
        Self {
            path: String::new(),
            map: value.as_object(),
        }
    }

    /// A node for `map` at `path`.
    pub fn new(path: String, map: Option<&'a Map<String, Value>>) -> Self {
        Self { path, map }
    }

    /// The dotted path of `key` below this node.
    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// This node's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The value of `key`, treating `null` as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map?.get(key).filter(|v| !v.is_null())
    }

    /// Whether `key` is set to something other than `null`.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Whether this node is a mapping that exists in the document.
    pub fn exists(&self) -> bool {
        self.map.is_some()
    }

    /// Keys present in this mapping (including those set to `null`).
    pub fn keys(&self) -> impl Iterator<Item = &'a String> {
        self.map.into_iter().flat_map(|m| m.keys())
    }
}

/// Joins a parent path and a key with a dot.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Collects errors and warnings while typed settings are read.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

// === impl Checker ===

impl Checker {
    /// Records an error at `path`.
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Problem::new(path, message));
    }

    /// Records a warning at `path`.
    pub fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem::new(path, message));
    }

    /// Records a missing required setting, unless its parent is itself missing or invalid
    /// (that problem is already recorded, and one problem per mistake is enough).
    fn missing(&mut self, node: &Node<'_>, key: &str, presence: Presence) {
        if presence == Presence::Required && node.exists() {
            self.error(node.path_of(key), "missing required setting");
        }
    }

    fn mismatch(&mut self, path: &str, expected: &str, value: &Value) {
        self.error(
            path,
            format!("expected {expected}, got {}", describe(path, value)),
        );
    }

    /// The mapping at `key`. Records an error when it is missing but required, or not a mapping.
    pub fn section<'a>(&mut self, node: &Node<'a>, key: &str, presence: Presence) -> Node<'a> {
        let path = node.path_of(key);
        match node.get(key) {
            None => {
                self.missing(node, key, presence);
                Node::new(path, None)
            }
            Some(Value::Object(map)) => Node::new(path, Some(map)),
            Some(other) => {
                self.mismatch(&path, "a mapping", other);
                Node::new(path, None)
            }
        }
    }

    /// A string setting; numbers are accepted and turned into their text.
    pub fn string(&mut self, node: &Node<'_>, key: &str, presence: Presence) -> Option<String> {
        let Some(value) = node.get(key) else {
            self.missing(node, key, presence);
            return None;
        };
        self.string_value(&node.path_of(key), value)
    }

    /// A string setting with a default.
    pub fn string_or(&mut self, node: &Node<'_>, key: &str, default: &str) -> String {
        self.string(node, key, Presence::Optional)
            .unwrap_or_else(|| default.to_owned())
    }

    /// `value` (at `path`) as a string.
    pub fn string_value(&mut self, path: &str, value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            other => {
                self.mismatch(path, "a string", other);
                None
            }
        }
    }

    /// A boolean setting, accepting Patroni's spellings (`on`, `yes`, `1`, ...).
    pub fn boolean(&mut self, node: &Node<'_>, key: &str) -> Option<bool> {
        let value = node.get(key)?;
        self.bool_value(&node.path_of(key), value)
    }

    /// A boolean setting with a default.
    pub fn boolean_or(&mut self, node: &Node<'_>, key: &str, default: bool) -> bool {
        self.boolean(node, key).unwrap_or(default)
    }

    /// `value` (at `path`) as a boolean.
    pub fn bool_value(&mut self, path: &str, value: &Value) -> Option<bool> {
        let parsed = match value {
            Value::Bool(b) => Some(*b),
            Value::String(s) => parse_bool(s),
            Value::Number(n) => parse_bool(&n.to_string()),
            _ => None,
        };
        if parsed.is_none() {
            self.mismatch(path, "a boolean (true/false, on/off, yes/no, 1/0)", value);
        }
        parsed
    }

    /// An integer setting within `rule`.
    pub fn int(
        &mut self,
        node: &Node<'_>,
        key: &str,
        presence: Presence,
        rule: IntRule,
    ) -> Option<i64> {
        let Some(value) = node.get(key) else {
            self.missing(node, key, presence);
            return None;
        };
        self.int_value(&node.path_of(key), value, rule)
    }

    /// An optional integer setting with a default.
    pub fn int_or(&mut self, node: &Node<'_>, key: &str, rule: IntRule, default: i64) -> i64 {
        self.int(node, key, Presence::Optional, rule)
            .unwrap_or(default)
    }

    /// `value` (at `path`) as an integer within `rule`, coerced like Patroni's `parse_int`.
    pub fn int_value(&mut self, path: &str, value: &Value, rule: IntRule) -> Option<i64> {
        let parsed = match value {
            Value::Number(n) => n.as_i64().or_else(|| parse_int(&n.to_string(), rule.unit)),
            Value::String(s) => parse_int(s, rule.unit),
            _ => None,
        };
        match parsed {
            Some(n) if rule.accepts(n) => Some(n),
            _ => {
                self.mismatch(path, &rule.expectation(), value);
                None
            }
        }
    }

    /// A list of strings. A single string is not accepted.
    pub fn string_list(&mut self, node: &Node<'_>, key: &str) -> Option<Vec<String>> {
        let value = node.get(key)?;
        let path = node.path_of(key);
        let Value::Array(items) = value else {
            self.mismatch(&path, "a list of strings", value);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.string_value(&join(&path, &i.to_string()), item) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A mapping whose values are strings (numbers are turned into their text).
    pub fn string_map(&mut self, node: &Node<'_>, key: &str) -> Option<BTreeMap<String, String>> {
        let value = node.get(key)?;
        let path = node.path_of(key);
        let Value::Object(map) = value else {
            self.mismatch(&path, "a mapping of strings", value);
            return None;
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, v) in map {
            match self.string_value(&join(&path, k), v) {
                Some(s) => {
                    out.insert(k.clone(), s);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A mapping with any values, kept as JSON.
    pub fn map(&mut self, node: &Node<'_>, key: &str) -> Option<BTreeMap<String, Value>> {
        let value = node.get(key)?;
        match value {
            Value::Object(map) => Some(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            other => {
                self.mismatch(&node.path_of(key), "a mapping", other);
                None
            }
        }
    }

    /// One of a fixed set of string values. `choices` pairs each accepted spelling with its value.
    pub fn choice<T: Copy>(
        &mut self,
        node: &Node<'_>,
        key: &str,
        choices: &[(&str, T)],
        case_sensitive: bool,
    ) -> Option<T> {
        let value = node.get(key)?;
        let found = value.as_str().and_then(|s| {
            choices.iter().find(|(name, _)| {
                if case_sensitive {
                    *name == s
                } else {
                    name.eq_ignore_ascii_case(s)
                }
            })
        });
        if found.is_none() {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            self.mismatch(
                &node.path_of(key),
                &format!("one of {}", names.join(", ")),
                value,
            );
        }
        found.map(|(_, v)| *v)
    }

    /// A `host:port` address checked against `rule`.
    pub fn address(
        &mut self,
        node: &Node<'_>,
        key: &str,
        presence: Presence,
        rule: AddressRule,
    ) -> Option<Address> {
        let path = node.path_of(key);
        let text = self.string(node, key, presence)?;
        match Address::parse(&text, rule) {
            Ok(address) => Some(address),
            Err(expected) => {
                self.mismatch(&path, expected, &Value::String(text));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Every failing read is recorded with its path, and reading goes on.
    #[test]
    fn records_every_problem_with_its_path() {
        let doc = json!({"s": {"a": "abc", "b": "maybe", "c": [1, {}], "d": 5}});
        let mut checker = Checker::default();
        let root = Node::root(&doc);
        let s = checker.section(&root, "s", Presence::Required);
        assert_eq!(
            checker.int(&s, "a", Presence::Optional, IntRule::at_least(20)),
            None
        );
        assert_eq!(checker.boolean(&s, "b"), None);
        assert_eq!(checker.string_list(&s, "c"), None);
        assert_eq!(
            checker.int(&s, "d", Presence::Optional, IntRule::between(0, 3)),
            None
        );
        assert_eq!(checker.string(&s, "e", Presence::Required), None);
        let shown: Vec<String> = checker.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "s.a: expected an integer ≥ 20, got \"abc\"",
                "s.b: expected a boolean (true/false, on/off, yes/no, 1/0), got \"maybe\"",
                "s.c.1: expected a string, got {}",
                "s.d: expected an integer between 0 and 3, got 5",
                "s.e: missing required setting",
            ]
        );
    }

    /// Strings from the environment coerce to numbers and booleans.
    #[test]
    fn coerces_strings_like_patroni() {
        let doc = json!({"n": "30", "u": "30min", "b": "on", "s": 5432});
        let mut checker = Checker::default();
        let root = Node::root(&doc);
        assert_eq!(
            checker.int(&root, "n", Presence::Required, IntRule::at_least(20)),
            Some(30)
        );
        assert_eq!(
            checker.int(&root, "u", Presence::Required, IntRule::ANY.with_unit("s")),
            Some(1800)
        );
        assert_eq!(checker.boolean(&root, "b"), Some(true));
        assert_eq!(
            checker.string(&root, "s", Presence::Required).as_deref(),
            Some("5432")
        );
        assert!(checker.errors.is_empty());
    }
}
