//! YAML text to `serde_json::Value`, the one in-memory form of a raw configuration.
//!
//! Patroni keeps its configuration as Python dicts and stores parts of it in the DCS as JSON, so
//! JSON values are the natural raw form. The conversion mirrors what `yaml.safe_load` followed by
//! `json.dumps` does: non-string keys become their text (`1` → `"1"`, `true` → `"true"`), merge
//! keys (`<<: *anchor`) are applied and tags are dropped.
//!
//! Known differences from PyYAML (which implements YAML 1.1): unquoted `on`/`off`/`yes`/`no` stay
//! strings and `0644` stays a string. Every typed setting goes through [`crate::coerce`], which
//! turns those strings into the same booleans and integers Patroni would see, so only
//! pass-through values (Postgres parameters, custom tags) keep the spelling the user wrote.
//! Duplicate keys are an error here; PyYAML silently keeps the last one.

use serde_json::{Map, Number, Value};
use serde_yaml_ng::Value as Yaml;

/// Parses one YAML document. An empty document is `null`.
///
/// # Errors
///
/// Returns the YAML error (with line and column) for malformed text, duplicate keys or a bad
/// merge key.
pub(crate) fn parse(text: &str) -> Result<Value, serde_yaml_ng::Error> {
    let mut yaml: Yaml = serde_yaml_ng::from_str(text)?;
    yaml.apply_merge()?;
    Ok(to_json(yaml))
}

fn to_json(yaml: Yaml) -> Value {
    match yaml {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => number(&n),
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Yaml::Mapping(mapping) => {
            let mut map = Map::new();
            for (key, value) in mapping {
                map.insert(key_text(key), to_json(value));
            }
            Value::Object(map)
        }
        Yaml::Tagged(tagged) => to_json(tagged.value),
    }
}

fn number(n: &serde_yaml_ng::Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::Number(i.into())
    } else if let Some(u) = n.as_u64() {
        Value::Number(u.into())
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        // JSON has no NaN or infinity; keep the YAML spelling so nothing is lost silently.
        Number::from_f64(f).map_or_else(|| Value::String(n.to_string()), Value::Number)
    }
}

fn key_text(key: Yaml) -> String {
    match key {
        Yaml::String(s) => s,
        Yaml::Null => "null".to_owned(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Tagged(tagged) => key_text(tagged.value),
        other => to_json(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Keys are stringified, merge keys applied and flow collections parsed.
    #[test]
    fn converts_like_safe_load_then_json() {
        let text = "base: &b {x: 1}\nderived:\n  <<: *b\n  y: [a:1, 2]\n1: one\ntrue: yes\n";
        let value = parse(text).expect("valid YAML");
        assert_eq!(
            value,
            json!({"base": {"x": 1}, "derived": {"x": 1, "y": ["a:1", 2]}, "1": "one", "true": "yes"})
        );
    }

    /// An empty document is null, like `yaml.safe_load("")`.
    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse("").expect("valid YAML"), Value::Null);
        assert_eq!(
            parse("# only a comment\n").expect("valid YAML"),
            Value::Null
        );
    }
}
