//! Patroni's `print_output` as pure functions: prettytable (with the cluster title in the
//! top border), tsv, json and yaml renderings of a list of rows.
//!
//! Cells are JSON values so that numbers stay numbers in json/yaml, as in Patroni. Golden
//! tests compare with text produced by Patroni 4.1's own `print_output` (prettytable 3.x).

use serde_json::{Map, Value};

use crate::cli::Format;

/// Horizontal alignment of a column in pretty output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Left (default).
    Left,
    /// Right.
    Right,
}

/// A table to print.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Column titles (may repeat, e.g. `Lag`).
    pub columns: Vec<String>,
    /// Rows, as long as `columns`.
    pub rows: Vec<Vec<Value>>,
    /// Right-aligned column titles.
    pub right: Vec<&'static str>,
    /// Title put into the top border (pretty only); empty for none.
    pub header: String,
}

/// Python's `str()` of a cell.
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

// === impl Table ===

impl Table {
    /// Renders in `fmt` exactly as Patroni prints it (without `click.echo`'s final newline).
    pub fn render(&self, fmt: Format, delimiter: &str) -> String {
        match fmt {
            Format::Json => self.render_json(),
            Format::Yaml | Format::Yml => self.render_yaml(),
            Format::Tsv => self.render_tsv(delimiter),
            Format::Pretty | Format::Topology => self.render_pretty(),
        }
    }

    fn elements(&self) -> Vec<Vec<(&str, &Value)>> {
        self.rows
            .iter()
            .map(|r| {
                self.columns
                    .iter()
                    .zip(r)
                    .filter(|(_, v)| self.header.is_empty() || !cell_text(v).is_empty())
                    .map(|(k, v)| (k.as_str(), v))
                    .collect()
            })
            .collect()
    }

    fn render_json(&self) -> String {
        let objects: Vec<String> = self
            .elements()
            .iter()
            .map(|e| {
                let fields: Vec<String> = e
                    .iter()
                    .map(|(k, v)| format!("{}: {}", json_text(&Value::from(*k)), json_text(v)))
                    .collect();
                format!("{{{}}}", fields.join(", "))
            })
            .collect();
        format!("[{}]", objects.join(", "))
    }

    fn render_yaml(&self) -> String {
        let list: Vec<Value> = self
            .elements()
            .into_iter()
            .map(|e| {
                Value::Object(
                    e.into_iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect::<Map<_, _>>(),
                )
            })
            .collect();
        yaml_block(&Value::Array(list))
    }

    fn render_tsv(&self, delimiter: &str) -> String {
        let mut lines = Vec::new();
        if !self.columns.is_empty() {
            lines.push(self.columns.join(delimiter));
        }
        for r in &self.rows {
            lines.push(r.iter().map(cell_text).collect::<Vec<_>>().join(delimiter));
        }
        lines.join("\n")
    }

    fn render_pretty(&self) -> String {
        let cells: Vec<Vec<Vec<String>>> = self
            .rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|c| cell_text(c).split('\n').map(String::from).collect())
                    .collect()
            })
            .collect();
        let multiline = cells.iter().any(|r| r.iter().any(|c| c.len() > 1));
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, title)| {
                cells
                    .iter()
                    .filter_map(|r| r.get(i))
                    .flat_map(|c| c.iter().map(|l| l.chars().count()))
                    .chain([title.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let rule: String = std::iter::once("+".to_string())
            .chain(widths.iter().map(|w| format!("{}+", "-".repeat(w + 2))))
            .collect();
        let aligns: Vec<Align> = self
            .columns
            .iter()
            .map(|c| {
                if self.right.contains(&c.as_str()) {
                    Align::Right
                } else {
                    Align::Left
                }
            })
            .collect();
        let line = |texts: &[&str]| -> String {
            let mut s = String::from("|");
            for ((t, w), a) in texts.iter().zip(&widths).zip(&aligns) {
                s.push(' ');
                s.push_str(&justify(t, *w, *a));
                s.push_str(" |");
            }
            s
        };
        let mut out = vec![top_border(&rule, &self.header)];
        let titles: Vec<&str> = self.columns.iter().map(String::as_str).collect();
        out.push(line(&titles));
        out.push(rule.clone());
        for (i, r) in cells.iter().enumerate() {
            let height = r.iter().map(Vec::len).max().unwrap_or(1);
            for l in 0..height {
                let texts: Vec<&str> = (0..widths.len())
                    .map(|c| {
                        r.get(c)
                            .and_then(|lines| lines.get(l))
                            .map_or("", String::as_str)
                    })
                    .collect();
                out.push(line(&texts));
            }
            if multiline && i + 1 < cells.len() {
                out.push(rule.clone());
            }
        }
        out.push(rule);
        out.join("\n")
    }
}

/// The top border with `header` written over its start, as `PatronictlPrettyTable` does.
fn top_border(rule: &str, header: &str) -> String {
    if header.is_empty() {
        return rule.to_string();
    }
    let chars: Vec<char> = rule.chars().collect();
    let room = chars.len().saturating_sub(2);
    let h: String = header.chars().take(room).collect();
    let used = h.chars().count();
    let mut s = String::new();
    s.push(chars.first().copied().unwrap_or('+'));
    s.push_str(&h);
    s.extend(chars.iter().skip(1 + used));
    s
}

fn justify(text: &str, width: usize, align: Align) -> String {
    let pad = width.saturating_sub(text.chars().count());
    match align {
        Align::Left => format!("{text}{}", " ".repeat(pad)),
        Align::Right => format!("{}{text}", " ".repeat(pad)),
    }
}

/// `json.dumps` of one value (Python's `", "` / `": "` separators).
pub fn json_text(v: &Value) -> String {
    match v {
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(json_text).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", json_text(&Value::from(k.as_str())), json_text(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// `yaml.safe_dump(data, default_flow_style=False)`: block style, keys sorted.
pub fn yaml_block(v: &Value) -> String {
    serde_yaml_ng::to_string(v).unwrap_or_default()
}

/// `yaml.safe_dump(data, default_flow_style=True)` for tags: `{a: 1, b: true}`.
pub fn yaml_flow(v: &Value) -> String {
    match v {
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!(
                    "{}: {}",
                    yaml_scalar(&Value::from(k.as_str())),
                    yaml_flow(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(yaml_flow).collect::<Vec<_>>().join(", ")
        ),
        other => yaml_scalar(other),
    }
}

fn yaml_scalar(v: &Value) -> String {
    yaml_block(v).trim_end_matches('\n').to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn members_table() -> Table {
        Table {
            columns: [
                "Member",
                "Host",
                "Role",
                "State",
                "TL",
                "Receive LSN",
                "Lag",
                "Replay LSN",
                "Lag",
            ]
            .map(String::from)
            .to_vec(),
            rows: vec![
                vec![
                    json!("m0"),
                    json!("10.213.1.1"),
                    json!("Leader"),
                    json!("running"),
                    json!(1),
                    json!(""),
                    json!(""),
                    json!(""),
                    json!(""),
                ],
                vec![
                    json!("m1"),
                    json!("10.213.1.2"),
                    json!("Replica"),
                    json!("streaming"),
                    json!(12),
                    json!("0/4000060"),
                    json!(0),
                    json!("0/4000060"),
                    json!(0),
                ],
            ],
            right: vec!["TL", "Receive LSN", "Replay LSN", "Lag"],
            header: " Cluster: ha (7412345678901234567) ".into(),
        }
    }

    /// The member table matches Patroni's prettytable output character for character.
    #[test]
    fn pretty_member_table_matches_patroni() {
        let want = "\
+ Cluster: ha (7412345678901234567) --------+----+-------------+-----+------------+-----+
| Member | Host       | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag |
+--------+------------+---------+-----------+----+-------------+-----+------------+-----+
| m0     | 10.213.1.1 | Leader  | running   |  1 |             |     |            |     |
| m1     | 10.213.1.2 | Replica | streaming | 12 |   0/4000060 |   0 |  0/4000060 |   0 |
+--------+------------+---------+-----------+----+-------------+-----+------------+-----+";
        assert_eq!(members_table().render(Format::Pretty, "\t"), want);
    }

    /// Multi-line cells put rules between all rows; a long title is cut to the border.
    #[test]
    fn pretty_multiline_and_empty_tables_match_patroni() {
        let t = Table {
            columns: ["Member", "Pending restart reason", "Tags"]
                .map(String::from)
                .to_vec(),
            rows: vec![
                vec![
                    json!("m0"),
                    json!("max_connections: 100->200\nwork_mem: 4MB->8MB"),
                    json!("clonefrom: true\nnofailover: true"),
                ],
                vec![json!("m1"), json!(""), json!("")],
            ],
            right: vec![],
            header: String::new(),
        };
        let want = "\
+--------+---------------------------+------------------+
| Member | Pending restart reason    | Tags             |
+--------+---------------------------+------------------+
| m0     | max_connections: 100->200 | clonefrom: true  |
|        | work_mem: 4MB->8MB        | nofailover: true |
+--------+---------------------------+------------------+
| m1     |                           |                  |
+--------+---------------------------+------------------+";
        assert_eq!(t.render(Format::Pretty, "\t"), want);
        let mut empty = members_table();
        empty.rows.clear();
        empty.header = " Cluster: averyveryveryverylongclustername (uninitialized) ".into();
        let want = "\
+ Cluster: averyveryveryverylongclustername (uninitialized) ---------+-----+
| Member | Host | Role | State | TL | Receive LSN | Lag | Replay LSN | Lag |
+--------+------+------+-------+----+-------------+-----+------------+-----+
+--------+------+------+-------+----+-------------+-----+------------+-----+";
        assert_eq!(empty.render(Format::Pretty, "\t"), want);
    }

    /// json and yaml drop empty cells when a title is set; json keeps column order.
    #[test]
    fn json_and_yaml_match_patroni() {
        let mut t = members_table();
        t.columns[6] = "Receive Lag".into();
        t.columns[8] = "Replay Lag".into();
        assert_eq!(
            t.render(Format::Json, "\t"),
            r#"[{"Member": "m0", "Host": "10.213.1.1", "Role": "Leader", "State": "running", "TL": 1}, {"Member": "m1", "Host": "10.213.1.2", "Role": "Replica", "State": "streaming", "TL": 12, "Receive LSN": "0/4000060", "Receive Lag": 0, "Replay LSN": "0/4000060", "Replay Lag": 0}]"#
        );
        let want = "\
- Host: 10.213.1.1
  Member: m0
  Role: Leader
  State: running
  TL: 1
- Host: 10.213.1.2
  Member: m1
  Receive LSN: 0/4000060
  Receive Lag: 0
  Replay LSN: 0/4000060
  Replay Lag: 0
  Role: Replica
  State: streaming
  TL: 12
";
        assert_eq!(t.render(Format::Yaml, "\t"), want);
    }

    /// tsv prints every cell, Python-`str`ed.
    #[test]
    fn tsv_matches_patroni() {
        let t = members_table();
        assert_eq!(
            t.render(Format::Tsv, "\t"),
            "Member\tHost\tRole\tState\tTL\tReceive LSN\tLag\tReplay LSN\tLag\n\
             m0\t10.213.1.1\tLeader\trunning\t1\t\t\t\t\n\
             m1\t10.213.1.2\tReplica\tstreaming\t12\t0/4000060\t0\t0/4000060\t0"
        );
    }

    /// Tags in flow style as Patroni's tsv/topology show them.
    #[test]
    fn tags_flow_style() {
        assert_eq!(
            yaml_flow(&json!({"nofailover": true, "clonefrom": "x y"})),
            "{clonefrom: x y, nofailover: true}"
        );
    }
}
