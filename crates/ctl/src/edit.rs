//! `edit-config` as pure functions: `--set path.to.key=VALUE` (values are YAML, `null`
//! deletes, `postgresql.parameters.<rest>` is one GUC name), `--apply` deep merge, and the
//! unified diff Patroni prints (Python's `difflib.unified_diff`, 3 lines of context).

use serde_json::{Map, Value};

/// A `--set`/`--pg` argument that is not `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid parameter setting {0}")]
pub struct InvalidSetting(pub String);

/// Parses a YAML value like `yaml.safe_load` (empty text is `null`).
pub fn parse_yaml_value(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Null;
    }
    serde_yaml_ng::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Applies `KEY=VALUE` pairs in order to `data` (Patroni's `apply_config_changes`).
///
/// # Errors
/// [`InvalidSetting`] for a pair without `=`.
pub fn apply_settings(
    data: &mut Map<String, Value>,
    pairs: &[String],
) -> Result<(), InvalidSetting> {
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(InvalidSetting(pair.clone()));
        };
        let path: Vec<&str> = key.trim().split('.').collect();
        set_path(data, &path, parse_yaml_value(value), &[]);
    }
    Ok(())
}

fn set_path(config: &mut Map<String, Value>, path: &[&str], value: Value, prefix: &[&str]) {
    let joined;
    let path: Vec<&str> = if prefix == ["postgresql", "parameters"] {
        joined = path.join(".");
        vec![joined.as_str()]
    } else {
        path.to_vec()
    };
    let Some((&key, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        if value.is_null() {
            config.remove(key);
        } else {
            config.insert(key.to_string(), value);
        }
        return;
    }
    if !config.get(key).is_some_and(Value::is_object) {
        config.insert(key.to_string(), Value::Object(Map::new()));
    }
    let mut prefix = prefix.to_vec();
    prefix.push(key);
    if let Some(Value::Object(inner)) = config.get_mut(key) {
        set_path(inner, rest, value, &prefix);
        if inner.is_empty() {
            config.remove(key);
        }
    }
}

/// Patroni's `patch_config`: deep merge, `null` deletes.
pub fn merge(data: &mut Map<String, Value>, patch: &Value) {
    if let Value::Object(p) = patch {
        patroni_config::source::patch(data, p.clone());
    }
}

/// `difflib.unified_diff(before, after)` lines, without line terminators.
pub fn unified_diff(before: &str, after: &str) -> Vec<String> {
    let listify = |s: &str| -> Vec<String> {
        s.trim_end_matches('\n')
            .split('\n')
            .map(String::from)
            .collect()
    };
    let (a, b) = (listify(before), listify(after));
    let codes = opcodes(&a, &b);
    let mut out = Vec::new();
    for group in grouped(codes, 3) {
        if out.is_empty() {
            out.push("--- ".to_string());
            out.push("+++ ".to_string());
        }
        let (first, last) = (group[0], group[group.len() - 1]);
        out.push(format!(
            "@@ -{} +{} @@",
            range(first.1, last.2),
            range(first.3, last.4)
        ));
        for (tag, i1, i2, j1, j2) in group {
            if tag == Tag::Equal {
                out.extend(a[i1..i2].iter().map(|l| format!(" {l}")));
                continue;
            }
            if matches!(tag, Tag::Replace | Tag::Delete) {
                out.extend(a[i1..i2].iter().map(|l| format!("-{l}")));
            }
            if matches!(tag, Tag::Replace | Tag::Insert) {
                out.extend(b[j1..j2].iter().map(|l| format!("+{l}")));
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Equal,
    Replace,
    Delete,
    Insert,
}

type Op = (Tag, usize, usize, usize, usize);

fn range(start: usize, stop: usize) -> String {
    let length = stop - start;
    match length {
        1 => format!("{}", start + 1),
        0 => format!("{start},0"),
        _ => format!("{},{length}", start + 1),
    }
}

/// Opcodes from a longest-common-subsequence matching.
fn opcodes(a: &[String], b: &[String]) -> Vec<Op> {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut matches = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if a[i] == b[j] {
            matches.push((i, j));
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    matches.push((n, m));
    let mut codes = Vec::new();
    let (mut i, mut j) = (0, 0);
    let mut k = 0;
    while k < matches.len() {
        let (mi, mj) = matches[k];
        let tag = match (i < mi, j < mj) {
            (true, true) => Some(Tag::Replace),
            (true, false) => Some(Tag::Delete),
            (false, true) => Some(Tag::Insert),
            (false, false) => None,
        };
        if let Some(t) = tag {
            codes.push((t, i, mi, j, mj));
        }
        // Extend the run of consecutive matches.
        let (si, sj) = (mi, mj);
        let mut len = 0;
        while k < matches.len() && matches[k] == (si + len, sj + len) && si + len < n {
            len += 1;
            k += 1;
        }
        if len > 0 {
            codes.push((Tag::Equal, si, si + len, sj, sj + len));
        } else {
            k += 1;
        }
        (i, j) = (si + len, sj + len);
    }
    if codes.is_empty() {
        codes.push((Tag::Equal, 0, 1, 0, 1));
    }
    codes
}

/// `SequenceMatcher.get_grouped_opcodes(n)`.
fn grouped(mut codes: Vec<Op>, n: usize) -> Vec<Vec<Op>> {
    if let Some(c) = codes.first_mut()
        && c.0 == Tag::Equal
    {
        *c = (
            c.0,
            c.1.max(c.2.saturating_sub(n)),
            c.2,
            c.3.max(c.4.saturating_sub(n)),
            c.4,
        );
    }
    if let Some(c) = codes.last_mut()
        && c.0 == Tag::Equal
    {
        *c = (c.0, c.1, c.2.min(c.1 + n), c.3, c.4.min(c.3 + n));
    }
    let mut groups = Vec::new();
    let mut group = Vec::new();
    for (tag, mut i1, i2, mut j1, j2) in codes {
        if tag == Tag::Equal && i2 - i1 > 2 * n {
            group.push((tag, i1, i2.min(i1 + n), j1, j2.min(j1 + n)));
            groups.push(std::mem::take(&mut group));
            i1 = i1.max(i2.saturating_sub(n));
            j1 = j1.max(j2.saturating_sub(n));
        }
        group.push((tag, i1, i2, j1, j2));
    }
    let only_equal = group.len() == 1 && group[0].0 == Tag::Equal;
    if !group.is_empty() && !only_equal {
        groups.push(group);
    }
    groups
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    /// `--set` creates nested maps, parses YAML values and deletes with null.
    #[test]
    fn set_paths_as_patroni() {
        let mut d = obj(json!({"ttl": 30, "postgresql": {"parameters": {"max_connections": 100}}}));
        apply_settings(
            &mut d,
            &[
                "ttl=20".into(),
                "postgresql.parameters.max_connections=null".into(),
                "postgresql.parameters.auto_explain.log_min_duration=1s".into(),
                "a.b.c=[1, 2]".into(),
                "loop_wait= 5".into(),
            ],
        )
        .expect("valid");
        assert_eq!(
            Value::Object(d),
            json!({"ttl": 20, "loop_wait": 5, "a": {"b": {"c": [1, 2]}},
                   "postgresql": {"parameters": {"auto_explain.log_min_duration": "1s"}}})
        );
        let mut d = obj(json!({"x": {"y": 1}}));
        apply_settings(&mut d, &["x.y=null".into()]).expect("valid");
        assert_eq!(Value::Object(d), json!({}));
        assert_eq!(
            apply_settings(&mut Map::new(), &["novalue".into()]),
            Err(InvalidSetting("novalue".into()))
        );
    }

    /// `--apply` deep-merges, null deletes.
    #[test]
    fn apply_merges() {
        let mut d = obj(json!({"a": {"b": 1, "c": 2}, "d": 3}));
        merge(&mut d, &json!({"a": {"b": null, "e": 4}, "d": 5}));
        assert_eq!(Value::Object(d), json!({"a": {"c": 2, "e": 4}, "d": 5}));
    }

    /// The diff is difflib's unified diff (checked against Python 3.11).
    #[test]
    fn unified_diff_matches_difflib() {
        let before = "loop_wait: 2\nmaximum_lag_on_failover: 1048576\npostgresql:\n  parameters:\n    max_connections: 100\n  use_pg_rewind: true\nretry_timeout: 5\nttl: 20\n";
        let after = "loop_wait: 2\nmaximum_lag_on_failover: 1048576\npostgresql:\n  parameters:\n    max_connections: 101\n    work_mem: 8MB\n  use_pg_rewind: true\nretry_timeout: 5\nttl: 20\n";
        assert_eq!(
            unified_diff(before, after),
            [
                "--- ",
                "+++ ",
                "@@ -2,7 +2,8 @@",
                " maximum_lag_on_failover: 1048576",
                " postgresql:",
                "   parameters:",
                "-    max_connections: 100",
                "+    max_connections: 101",
                "+    work_mem: 8MB",
                "   use_pg_rewind: true",
                " retry_timeout: 5",
                " ttl: 20",
            ]
        );
        assert!(unified_diff("a: 1\n", "a: 1\n").is_empty());
    }
}
