//! Python semantics that documents written by Patroni follow (its code tests values with
//! Python's truthiness), shared by every crate that reads them.

use serde_json::Value;

/// Python's truthiness of a JSON value: `null`, `false`, `0`, `""`, `[]` and `{}` are false.
pub fn python_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}
