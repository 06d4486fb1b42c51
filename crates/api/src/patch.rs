//! Patroni's merge and comparison of dynamic-configuration documents (`patch_config` and
//! `deep_compare` in `patroni/utils.py`), used by `PATCH /config` and `PUT /config`.
//!
//! Patroni compares scalar values by their Python `str()`: `10` and `"10"` are the same
//! value, so patching `ttl: "30"` over `ttl: 30` changes nothing and writes nothing.
//! [`py_str`] reproduces `str()` for JSON values (floats as Rust prints them, which matches
//! Python for every value a configuration holds).

use serde_json::{Map, Value};

/// Merges `patch` into `config` as Patroni's `patch_config`: `null` deletes a key, objects
/// merge into objects recursively, any other value replaces the old one when their `str()`
/// differ, new keys are added. Returns whether `config` changed.
pub(crate) fn patch_config(config: &mut Map<String, Value>, patch: Map<String, Value>) -> bool {
    let mut changed = false;
    for (name, value) in patch {
        match value {
            Value::Null => {
                // Python: `config.pop(name, None) is not None`.
                if config.remove(&name).is_some_and(|old| !old.is_null()) {
                    changed = true;
                }
            }
            Value::Object(inner) => match config.get_mut(&name) {
                Some(Value::Object(current)) => changed |= patch_config(current, inner),
                _ => {
                    config.insert(name, Value::Object(inner));
                    changed = true;
                }
            },
            value => match config.get(&name) {
                Some(old) if py_str(old) == py_str(&value) => {}
                _ => {
                    config.insert(name, value);
                    changed = true;
                }
            },
        }
    }
    changed
}

/// Patroni's `deep_compare`: the same keys, objects equal recursively, other values equal
/// by `str()`.
pub(crate) fn deep_compare(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    if a.len() != b.len() || a.keys().any(|k| !b.contains_key(k)) {
        return false;
    }
    a.iter().all(|(key, value)| match (value, b.get(key)) {
        (Value::Object(x), Some(Value::Object(y))) => deep_compare(x, y),
        (Value::Object(_), _) => false,
        (x, Some(y)) => py_str(x) == py_str(y),
        (_, None) => false,
    })
}

/// Python's `str()` of a value decoded from JSON.
pub(crate) fn py_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr()` of a value decoded from JSON.
fn py_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => py_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => py_repr_str(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", py_repr_str(k), py_repr(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// Python's `repr()` of a float: shortest round-trip digits, always with a `.0` or exponent.
pub(crate) fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Python switches to exponent form outside [1e-4, 1e16): `1e+16`, `1.5e-05`.
        let text = format!("{f:e}");
        return match text.split_once('e') {
            Some((mantissa, exp)) => {
                let (sign, digits) = match exp.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', exp),
                };
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => text,
        };
    }
    let text = f.to_string();
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

/// Python's `repr()` of a string: single quotes unless the text holds a single quote and no
/// double quote.
fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    /// `null` deletes, objects merge, scalars compare as strings, new keys are added.
    #[test]
    fn patch_merges_like_patroni() {
        let mut config = map(json!({
            "ttl": 30, "loop_wait": 10, "gone": 1, "nulled": null,
            "postgresql": {"parameters": {"max_connections": 100, "work_mem": "4MB"}},
            "flat": "x"
        }));
        let changed = patch_config(
            &mut config,
            map(json!({
                "ttl": "30", "gone": null, "absent": null,
                "postgresql": {"parameters": {"max_connections": 200, "work_mem": null}},
                "flat": {"now": "an object"}, "new": [1, 2]
            })),
        );
        assert!(changed);
        assert_eq!(
            Value::Object(config),
            json!({
                "ttl": 30, "loop_wait": 10, "nulled": null,
                "postgresql": {"parameters": {"max_connections": 200}},
                "flat": {"now": "an object"}, "new": [1, 2]
            })
        );
    }

    /// Patching with values equal by `str()` changes nothing.
    #[test]
    fn patch_with_equal_values_changes_nothing() {
        let mut config = map(json!({"ttl": 30, "pause": true, "p": {"a": 1.5}, "n": null}));
        let before = config.clone();
        assert!(!patch_config(
            &mut config,
            map(json!({"ttl": "30", "pause": "True", "p": {"a": "1.5"}, "missing": null}))
        ));
        assert_eq!(config, before);
        let mut config = map(json!({"n": null}));
        assert!(!patch_config(&mut config, map(json!({"n": null}))));
        assert!(
            config.is_empty(),
            "the null key is dropped without a change"
        );
    }

    /// `deep_compare` follows Patroni's doctests.
    #[test]
    fn deep_compare_follows_patroni_doctests() {
        assert!(!deep_compare(&map(json!({"1": null})), &map(json!({}))));
        assert!(!deep_compare(
            &map(json!({"1": {}})),
            &map(json!({"1": null}))
        ));
        assert!(!deep_compare(
            &map(json!({"1": [1]})),
            &map(json!({"1": [2]}))
        ));
        assert!(deep_compare(&map(json!({"1": 2})), &map(json!({"1": "2"}))));
        assert!(deep_compare(
            &map(json!({"1": {"2": [3, 4]}})),
            &map(json!({"1": {"2": [3, 4]}}))
        ));
    }

    /// Values print as Python's `str()` prints them.
    #[test]
    fn values_print_as_python_str() {
        for (value, want) in [
            (json!(null), "None"),
            (json!(true), "True"),
            (json!(10), "10"),
            (json!(1.0), "1.0"),
            (json!(1e20), "1e+20"),
            (json!(0.00001), "1e-05"),
            (json!("a'b"), "a'b"),
            (json!(["x", 1, null]), "['x', 1, None]"),
            (json!({"k": "it's"}), "{'k': \"it's\"}"),
        ] {
            assert_eq!(py_str(&value), want, "{value}");
        }
    }
}
