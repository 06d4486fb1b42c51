//! Request bodies of the unsafe endpoints, read as Patroni's `_read_json_content` reads them:
//! a JSON object whose key order is kept (Patroni checks `POST /restart` filters in the order
//! the client wrote them, and the first failure wins).
//!
//! Nothing here panics on what a client sends: every unusable body is a [`BodyError`], answered
//! 411 or 400 with the reason.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::failover::BodyError;

/// A JSON object as `(key, value)` pairs in the order the client wrote them. A repeated key
/// keeps its first position and its last value, as Python's `json.loads` does.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Object(pub Vec<(String, Value)>);

// === impl Object ===

impl Object {
    /// The pairs as a `serde_json::Map` (whose key order is serde_json's, not the client's).
    pub(crate) fn into_map(self) -> Map<String, Value> {
        self.0.into_iter().collect()
    }

    /// Whether the object has no keys.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Collects a JSON object into [`Object`].
struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Object, A::Error> {
        let mut pairs: Vec<(String, Value)> = Vec::new();
        while let Some((key, value)) = access.next_entry::<String, Value>()? {
            match pairs.iter_mut().find(|(k, _)| *k == key) {
                Some(pair) => pair.1 = value,
                None => pairs.push((key, value)),
            }
        }
        Ok(Object(pairs))
    }
}

/// Reads a body as Patroni's `_read_json_content(body_is_optional)`.
///
/// Required bodies need a `Content-Length` (`has_length`) and a non-empty JSON object.
/// Optional bodies may be absent (no `Content-Length`, or zero bytes) and may be `{}`; when
/// present they must still be a JSON object.
///
/// # Errors
/// [`BodyError::MissingLength`] (411) for a required body without `Content-Length`;
/// [`BodyError::Invalid`] (400) with the reason otherwise.
pub(crate) fn read_object(
    has_length: bool,
    bytes: &[u8],
    optional: bool,
) -> Result<Object, BodyError> {
    if !has_length {
        return if optional {
            Ok(Object::default())
        } else {
            Err(BodyError::MissingLength)
        };
    }
    if optional && bytes.is_empty() {
        return Ok(Object::default());
    }
    let object: Object = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            BodyError::Invalid("the body must be a JSON object".into())
        } else {
            BodyError::Invalid(format!("the body is not valid JSON: {e}"))
        }
    })?;
    if object.is_empty() && !optional {
        return Err(BodyError::Invalid(
            "the body must be a non-empty JSON object".into(),
        ));
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Keys keep the client's order; a repeated key keeps its first place and last value.
    #[test]
    fn keys_keep_the_clients_order() {
        let body = br#"{"timeout": 1, "role": "x", "timeout": 2, "a": null}"#;
        let object = read_object(true, body, false).expect("an object");
        assert_eq!(
            object.0,
            vec![
                ("timeout".to_owned(), json!(2)),
                ("role".to_owned(), json!("x")),
                ("a".to_owned(), json!(null)),
            ]
        );
    }

    /// Required and optional bodies fail as Patroni's `_read_json_content` does.
    #[test]
    fn unusable_bodies_are_refused_with_a_reason() {
        assert_eq!(
            read_object(false, b"", false),
            Err(BodyError::MissingLength)
        );
        assert_eq!(read_object(false, b"", true), Ok(Object::default()));
        assert_eq!(read_object(true, b"", true), Ok(Object::default()));
        assert_eq!(read_object(true, b"{}", true), Ok(Object::default()));
        for (bytes, optional) in [
            (&b""[..], false),
            (b"{}", false),
            (b"[1]", true),
            (b"\"x\"", false),
            (b"{\"a\":", true),
            (b"\xff", true),
        ] {
            assert!(
                matches!(
                    read_object(true, bytes, optional),
                    Err(BodyError::Invalid(_))
                ),
                "{bytes:?} optional={optional}"
            );
        }
    }
}
