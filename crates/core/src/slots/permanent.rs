//! Permanent slots (`slots`) and unmanaged slots (`ignore_slots`) of the dynamic
//! configuration, read with Patroni's leniency: the configuration lives in the DCS and any
//! member or tool may have written it, so a bad entry is reported and skipped, never fatal.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::SlotKind;
use crate::python_truthy as truthy;

/// One entry of `slots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermanentSlot {
    /// A physical slot; `cluster_type` (`primary`/`standby`) limits it to one kind of cluster.
    Physical {
        /// `cluster_type`, when given.
        cluster_type: Option<String>,
    },
    /// A logical slot.
    Logical {
        /// `database`.
        database: String,
        /// `plugin`.
        plugin: String,
    },
    /// A value Patroni refuses ("Bad value for slot"): kept to be reported, never created.
    Invalid(Value),
}

impl PermanentSlot {
    /// Reads one value as Patroni does: an empty value is a physical slot; an object without
    /// `type` is logical when it names both `database` and `plugin`, else physical; a
    /// logical slot without both, an unknown `type` or a non-object value is invalid.
    pub fn from_value(value: &Value) -> Self {
        if !truthy(value) {
            return Self::Physical { cluster_type: None };
        }
        let Value::Object(map) = value else {
            return Self::Invalid(value.clone());
        };
        let text = |key: &str| map.get(key).filter(|v| truthy(v)).map(python_str);
        let database = text("database");
        let plugin = text("plugin");
        let kind = match map.get("type") {
            None => {
                if database.is_some() && plugin.is_some() {
                    "logical".to_owned()
                } else {
                    "physical".to_owned()
                }
            }
            Some(t) => python_str(t),
        };
        match (kind.as_str(), database, plugin) {
            ("physical", _, _) => Self::Physical {
                cluster_type: map.get("cluster_type").map(python_str),
            },
            ("logical", Some(database), Some(plugin)) => Self::Logical { database, plugin },
            _ => Self::Invalid(value.clone()),
        }
    }

    /// The kind of slot this entry makes, unless it is invalid.
    pub fn kind(&self) -> Option<SlotKind> {
        match self {
            Self::Physical { .. } => Some(SlotKind::Physical),
            Self::Logical { database, plugin } => Some(SlotKind::Logical {
                database: database.clone(),
                plugin: plugin.clone(),
            }),
            Self::Invalid(_) => None,
        }
    }

    /// Whether a physical slot is meant for this kind of cluster (`cluster_type`).
    pub fn fits_cluster(&self, standby_cluster: bool) -> bool {
        match self {
            Self::Physical {
                cluster_type: Some(t),
            } => {
                if standby_cluster {
                    t != "primary"
                } else {
                    t != "standby"
                }
            }
            _ => true,
        }
    }
}

/// The permanent slots of a dynamic configuration: `permanent_replication_slots`, else
/// `permanent_slots`, else `slots` (the first that is set and not empty, as Patroni reads
/// them). Anything but an object reads as none.
pub fn permanent_slots(config: &Map<String, Value>) -> BTreeMap<String, PermanentSlot> {
    ["permanent_replication_slots", "permanent_slots", "slots"]
        .iter()
        .filter_map(|k| config.get(*k))
        .find(|v| truthy(v))
        .and_then(Value::as_object)
        .map(|slots| {
            slots
                .iter()
                .map(|(name, v)| (name.clone(), PermanentSlot::from_value(v)))
                .collect()
        })
        .unwrap_or_default()
}

/// One entry of `ignore_slots`: a slot matches when every property given matches (an empty
/// property matches anything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreSlot {
    /// `name`.
    pub name: Option<String>,
    /// `type` (`physical` or `logical`).
    pub slot_type: Option<String>,
    /// `database`.
    pub database: Option<String>,
    /// `plugin`.
    pub plugin: Option<String>,
}

impl IgnoreSlot {
    /// Whether the slot `name` of `kind` matches.
    pub fn matches(&self, name: &str, kind: &SlotKind) -> bool {
        let (database, plugin) = match kind {
            SlotKind::Physical => (None, None),
            SlotKind::Logical { database, plugin } => {
                (Some(database.as_str()), Some(plugin.as_str()))
            }
        };
        let fits = |want: &Option<String>, have: Option<&str>| {
            want.as_deref()
                .filter(|w| !w.is_empty())
                .is_none_or(|w| Some(w) == have)
        };
        self.name.as_deref().is_none_or(|n| n == name)
            && fits(&self.slot_type, Some(kind.type_name()))
            && fits(&self.database, database)
            && fits(&self.plugin, plugin)
    }
}

/// `ignore_slots`: a list of objects. Entries that are not objects are returned as problems
/// (Patroni's schema refuses them) and skipped.
pub fn parse_ignore_slots(config: &Map<String, Value>) -> (Vec<IgnoreSlot>, Vec<String>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    match config.get("ignore_slots") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                let Value::Object(map) = item else {
                    problems.push(format!("ignore_slots: entry {item} is not an object"));
                    continue;
                };
                let text = |key: &str| map.get(key).filter(|v| !v.is_null()).map(python_str);
                out.push(IgnoreSlot {
                    name: text("name"),
                    slot_type: text("type"),
                    database: text("database"),
                    plugin: text("plugin"),
                });
            }
        }
        Some(other) => problems.push(format!("ignore_slots: {other} is not a list")),
    }
    (out, problems)
}

/// A scalar as Python's `str()` prints it; strings without quotes.
fn python_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    /// Empty values are physical, `type` is inferred, bad values are kept as invalid.
    #[test]
    fn slot_values_read_like_patroni() {
        let slots = permanent_slots(&obj(json!({"slots": {
            "a": null, "b": 0, "c": {}, "d": {"type": "physical", "cluster_type": "standby"},
            "e": {"database": "db", "plugin": "pgoutput"},
            "f": {"type": "logical", "database": "db"},
            "g": 7, "h": {"type": "other"}, "i": {"database": "db"}
        }})));
        let physical = PermanentSlot::Physical { cluster_type: None };
        assert_eq!(slots["a"], physical);
        assert_eq!(slots["b"], physical);
        assert_eq!(slots["c"], physical);
        assert_eq!(
            slots["d"],
            PermanentSlot::Physical {
                cluster_type: Some("standby".into())
            }
        );
        assert_eq!(
            slots["e"],
            PermanentSlot::Logical {
                database: "db".into(),
                plugin: "pgoutput".into()
            }
        );
        assert!(matches!(slots["f"], PermanentSlot::Invalid(_)));
        assert!(matches!(slots["g"], PermanentSlot::Invalid(_)));
        assert!(matches!(slots["h"], PermanentSlot::Invalid(_)));
        assert_eq!(slots["i"], physical);
        assert!(!slots["d"].fits_cluster(false));
        assert!(slots["d"].fits_cluster(true));
    }

    /// The older spellings win over `slots`; an empty map falls through.
    #[test]
    fn older_keys_are_read_first() {
        let c = obj(
            json!({"permanent_slots": {}, "permanent_replication_slots": {"x": null}, "slots": {"y": null}}),
        );
        assert_eq!(permanent_slots(&c).keys().collect::<Vec<_>>(), ["x"]);
        let c = obj(json!({"permanent_slots": {}, "slots": {"y": null}}));
        assert_eq!(permanent_slots(&c).keys().collect::<Vec<_>>(), ["y"]);
        assert!(permanent_slots(&obj(json!({"slots": [1]}))).is_empty());
    }

    /// Every given property must match; absent ones match anything.
    #[test]
    fn ignore_slots_match_on_given_properties() {
        let (m, problems) = parse_ignore_slots(&obj(json!({"ignore_slots": [
            {"name": "keep_me"}, {"type": "logical", "plugin": "wal2json"}, 5
        ]})));
        assert_eq!(problems.len(), 1);
        let logical = |p: &str| SlotKind::Logical {
            database: "db".into(),
            plugin: p.into(),
        };
        assert!(m[0].matches("keep_me", &SlotKind::Physical));
        assert!(!m[0].matches("other", &SlotKind::Physical));
        assert!(m[1].matches("any", &logical("wal2json")));
        assert!(!m[1].matches("any", &logical("pgoutput")));
        assert!(!m[1].matches("any", &SlotKind::Physical));
    }
}
