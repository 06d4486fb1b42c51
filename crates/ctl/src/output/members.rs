//! Patroni's `output_members`: the member table built from the cluster JSON of `GET /cluster`
//! ([`patroni_api::ClusterDocument`], computed locally from the DCS view), in every format,
//! with the topology ordering and the footer (maintenance mode, scheduled switchover).

use serde_json::{Value, json};

use super::table::{Table, yaml_block, yaml_flow};
use crate::cli::Format;

/// Longest `param: old->new` line shown in pretty/topology output.
const MAX_REASON_LINE: usize = 50;

/// Everything the member table needs.
#[derive(Debug, Clone)]
pub struct MembersInput<'a> {
    /// The `GET /cluster` document, as JSON.
    pub cluster: &'a Value,
    /// The `initialize` key: `None` = uninitialized, `""` = initializing.
    pub initialize: Option<&'a str>,
    /// Cluster name shown.
    pub name: &'a str,
    /// `-e`.
    pub extended: bool,
    /// Output format.
    pub fmt: Format,
}

/// The whole output of `output_members` (without the final newline).
pub fn render(input: &MembersInput<'_>) -> String {
    let mut text = table(input).render(input.fmt, "\t");
    if matches!(input.fmt, Format::Pretty | Format::Topology) {
        let info = service_info(input.cluster);
        if !info.is_empty() {
            text.push_str("\n ");
            text.push_str(&info.join("\n "));
        }
    }
    text
}

/// Footer lines: maintenance mode and a scheduled switchover.
pub fn service_info(cluster: &Value) -> Vec<String> {
    let mut info = Vec::new();
    if cluster.get("pause").and_then(Value::as_bool) == Some(true) {
        info.push("Maintenance mode: on".to_string());
    }
    if let Some(s) = cluster.get("scheduled_switchover") {
        let mut line = format!(
            "Switchover scheduled at: {}",
            s.get("at").and_then(Value::as_str).unwrap_or_default()
        );
        for name in ["from", "to"] {
            if let Some(v) = s.get(name).and_then(Value::as_str) {
                line.push_str(&format!("\n{name:>24}: {v}"));
            }
        }
        info.push(line);
    }
    info
}

/// Members in tree order for `topology`: the leader, then its children, depth first; a
/// replica's parent is its `replicatefrom` tag when that names another replica.
pub fn topology_sort(members: &[Value]) -> Vec<Value> {
    let role = |m: &Value| m["role"].as_str().unwrap_or_default().to_string();
    let name = |m: &Value| m["name"].as_str().unwrap_or_default().to_string();
    let leader = members.iter().find(|m| role(m).ends_with("leader"));
    let replicas: Vec<String> = members
        .iter()
        .filter(|m| !role(m).ends_with("leader"))
        .map(name)
        .collect();
    let parent_of = |m: &Value| -> Option<String> {
        let p = m["tags"]["replicatefrom"].as_str().map(String::from);
        match p {
            Some(p) if p != name(m) && replicas.contains(&p) => Some(p),
            _ => leader.map(name),
        }
    };
    let mut out = Vec::new();
    fn walk(
        level: usize,
        node: Option<&Value>,
        key: Option<String>,
        members: &[Value],
        parent_of: &dyn Fn(&Value) -> Option<String>,
        out: &mut Vec<Value>,
    ) {
        if let Some(n) = node {
            let mut n = n.clone();
            if level > 0 {
                let nm = n["name"].as_str().unwrap_or_default().to_string();
                n["name"] = json!(format!("{}+ {nm}", " ".repeat((level - 1) * 2)));
            }
            if n["name"].as_str().is_some_and(|s| !s.is_empty()) {
                out.push(n);
            }
        }
        for child in members.iter().filter(|m| {
            !m["role"].as_str().unwrap_or_default().ends_with("leader") && parent_of(m) == key
        }) {
            let ckey = child["name"].as_str().map(String::from);
            walk(level + 1, Some(child), ckey, members, parent_of, out);
        }
    }
    walk(0, leader, leader.map(name), members, &parent_of, &mut out);
    out
}

/// The member table (Patroni's columns and values).
pub fn table(input: &MembersInput<'_>) -> Table {
    let empty = Vec::new();
    let members = input.cluster["members"].as_array().unwrap_or(&empty);
    let mut columns: Vec<String> = [
        "Cluster",
        "Member",
        "Host",
        "Role",
        "State",
        "TL",
        "Receive LSN",
        "Receive Lag",
        "Replay LSN",
        "Replay Lag",
    ]
    .map(String::from)
    .to_vec();
    let with_host: Vec<&Value> = members.iter().filter(|m| m.get("host").is_some()).collect();
    for c in [
        "Pending restart",
        "Pending restart reason",
        "Scheduled restart",
        "Tags",
    ] {
        let key = c.to_lowercase().replace(' ', "_");
        if input.extended || with_host.iter().any(|m| truthy(m.get(&key))) {
            columns.push(c.to_string());
        }
    }
    let mut hosts: Vec<&str> = with_host
        .iter()
        .filter_map(|m| m["host"].as_str())
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    let append_port = with_host
        .iter()
        .any(|m| m.get("port").is_some_and(|p| p.as_u64() != Some(5432)))
        || hosts.len() < with_host.len();
    let ordered = if input.fmt == Format::Topology {
        topology_sort(members)
    } else {
        members.clone()
    };
    let hide_long = matches!(input.fmt, Format::Pretty | Format::Topology);
    let rows = ordered
        .iter()
        .map(|m| member_row(m, input, &columns, append_port, hide_long))
        .collect();
    let initialize = match input.initialize {
        None => "uninitialized",
        Some("") => "initializing",
        Some(s) => s,
    };
    let mut t = Table {
        columns,
        rows,
        right: vec!["Group", "Receive LSN", "Replay LSN", "Lag", "TL"],
        header: format!(" Cluster: {} ({initialize}) ", input.name),
    };
    prepare_list_table(&mut t, input.fmt);
    t
}

/// What `print_output` does to a member table before rendering: tags as YAML, the
/// `Cluster` column dropped and both lag columns titled `Lag` in pretty/topology.
fn prepare_list_table(t: &mut Table, fmt: Format) {
    if let Some(i) = t.columns.iter().position(|c| c == "Tags") {
        for r in &mut t.rows {
            if truthy(r.get(i)) {
                let text = if fmt == Format::Pretty {
                    yaml_block(&r[i])
                } else {
                    yaml_flow(&r[i])
                };
                r[i] = Value::String(text.trim().to_string());
            }
        }
    }
    if matches!(fmt, Format::Pretty | Format::Topology) {
        for c in &mut t.columns {
            if c == "Receive Lag" || c == "Replay Lag" {
                *c = "Lag".into();
            }
        }
        t.columns.remove(0);
        for r in &mut t.rows {
            r.remove(0);
        }
    }
}

fn member_row(
    m: &Value,
    input: &MembersInput<'_>,
    columns: &[String],
    append_port: bool,
    hide_long: bool,
) -> Vec<Value> {
    let get = |k: &str| m.get(k).cloned().unwrap_or(json!(""));
    let reason = m
        .get("pending_restart_reason")
        .and_then(Value::as_object)
        .map(|r| {
            r.iter()
                .map(|(k, v)| {
                    let full = format!(
                        "{k}: {}->{}",
                        str_of(&v["old_value"]),
                        str_of(&v["new_value"])
                    );
                    if hide_long && full.chars().count() > MAX_REASON_LINE {
                        format!("{k}: [hidden - too long]")
                    } else {
                        full
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let (mut receive_lsn, mut replay_lsn) = (get("receive_lsn"), get("replay_lsn"));
    let (mut receive_lag, mut replay_lag) = (get("receive_lag"), get("replay_lag"));
    let lsn = get("lsn");
    if receive_lsn == "unknown" && replay_lsn == "unknown" && lsn != "" && lsn != "unknown" {
        if m["state"] == "streaming" {
            (receive_lag, receive_lsn) = (get("lag"), lsn);
        } else {
            (replay_lag, replay_lsn) = (get("lag"), lsn);
        }
    }
    let mb = |lag: Value| match lag {
        Value::Number(n) => n
            .as_u64()
            .map(|b| json!(python_round(b as f64 / 1024.0 / 1024.0)))
            .unwrap_or(Value::Number(n)),
        Value::String(s) if s == "unknown" => json!(""),
        other => other,
    };
    let mut host = get("host");
    if append_port
        && let (Some(h), Some(p)) = (host.as_str().filter(|h| !h.is_empty()), m.get("port"))
    {
        host = json!(format!("{h}:{}", str_of(p)));
    }
    let scheduled = m.get("scheduled_restart").map(|s| {
        let mut v = str_of(&s["schedule"]);
        if let Some(pv) = s.get("postgres_version") {
            v.push_str(&format!(" if version < {}", str_of(pv)));
        }
        json!(v)
    });
    let role = m["role"]
        .as_str()
        .unwrap_or_default()
        .split('_')
        .map(title_case)
        .collect::<Vec<_>>()
        .join(" ");
    columns
        .iter()
        .map(|c| match c.as_str() {
            "Cluster" => json!(input.name),
            "Member" => get("name"),
            "Host" => host.clone(),
            "Role" => json!(role),
            "State" => get("state"),
            "TL" => get("timeline"),
            "Receive LSN" => receive_lsn.clone(),
            "Receive Lag" => mb(receive_lag.clone()),
            "Replay LSN" => replay_lsn.clone(),
            "Replay Lag" => mb(replay_lag.clone()),
            "Pending restart" => json!(if truthy(m.get("pending_restart")) {
                "*"
            } else {
                ""
            }),
            "Pending restart reason" => json!(reason),
            "Scheduled restart" => scheduled.clone().unwrap_or(json!("")),
            "Tags" => get("tags"),
            _ => json!(""),
        })
        .collect()
}

/// Python's truthiness of an optional JSON value (absent is false).
pub fn truthy(v: Option<&Value>) -> bool {
    v.is_some_and(patroni_core::python_truthy)
}

/// Python `str()` of a JSON value.
pub fn str_of(v: &Value) -> String {
    super::table::cell_text(v)
}

fn title_case(word: &str) -> String {
    let mut c = word.chars();
    match c.next() {
        Some(f) => f
            .to_uppercase()
            .chain(c.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

/// Python 3 `round()`: halves go to the even neighbour.
fn python_round(x: f64) -> i64 {
    let r = x.round();
    let out = if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    };
    out as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Value {
        json!({
            "members": [
                {"name": "m0", "role": "leader", "state": "running", "api_url": "http://10.213.1.1:8008/patroni",
                 "host": "10.213.1.1", "port": 5432, "timeline": 2},
                {"name": "m1", "role": "sync_standby", "state": "streaming", "api_url": "http://10.213.1.2:8008/patroni",
                 "host": "10.213.1.2", "port": 5432, "timeline": 2,
                 "receive_lsn": "0/5000000", "receive_lag": 3_145_728, "replay_lsn": "0/4000000", "replay_lag": 2_621_440,
                 "lsn": "0/4000000", "lag": 0},
                {"name": "m2", "role": "replica", "state": "stopped", "api_url": "http://10.213.1.3:8008/patroni",
                 "host": "10.213.1.3", "port": 5432, "tags": {"replicatefrom": "m1"},
                 "receive_lsn": "unknown", "receive_lag": "unknown", "replay_lsn": "unknown", "replay_lag": "unknown",
                 "lsn": "unknown", "lag": "unknown"}
            ],
            "pause": true,
            "scheduled_switchover": {"at": "2026-11-22T10:00:00+00:00", "from": "m0", "to": "m1"},
            "scope": "ha"
        })
    }

    /// `list`: roles title-cased, lags in rounded MB, tags column shown, footer printed.
    #[test]
    fn list_pretty_matches_patroni() {
        let c = cluster();
        let out = render(&MembersInput {
            cluster: &c,
            initialize: Some("7412345678901234567"),
            name: "ha",
            extended: false,
            fmt: Format::Pretty,
        });
        let want = "\
+ Cluster: ha (7412345678901234567) -+-----------+----+-------------+-----+------------+-----+-------------------+
| Member | Host       | Role         | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Tags              |
+--------+------------+--------------+-----------+----+-------------+-----+------------+-----+-------------------+
| m0     | 10.213.1.1 | Leader       | running   |  2 |             |     |            |     |                   |
| m1     | 10.213.1.2 | Sync Standby | streaming |  2 |   0/5000000 |   3 |  0/4000000 |   2 |                   |
| m2     | 10.213.1.3 | Replica      | stopped   |    |     unknown |     |    unknown |     | replicatefrom: m1 |
+--------+------------+--------------+-----------+----+-------------+-----+------------+-----+-------------------+
 Maintenance mode: on
 Switchover scheduled at: 2026-11-22T10:00:00+00:00
                    from: m0
                      to: m1";
        assert_eq!(out, want);
    }

    /// `topology`: cascading replicas are indented under their upstream.
    #[test]
    fn topology_orders_as_a_tree() {
        let c = cluster();
        let sorted = topology_sort(c["members"].as_array().expect("members"));
        let names: Vec<&str> = sorted.iter().filter_map(|m| m["name"].as_str()).collect();
        assert_eq!(names, ["m0", "+ m1", "  + m2"]);
    }

    /// A standby cluster's leader (`/cluster` role `standby_leader`) shows as `Standby Leader`,
    /// as Python patronictl shows it.
    #[test]
    fn a_standby_leader_is_listed_as_standby_leader() {
        let mut c = cluster();
        c["members"][0]["role"] = json!("standby_leader");
        let out = render(&MembersInput {
            cluster: &c,
            initialize: Some("7412345678901234567"),
            name: "ha",
            extended: false,
            fmt: Format::Json,
        });
        let rows: Vec<Value> = serde_json::from_str(&out).expect("json");
        assert_eq!(rows[0]["Role"], "Standby Leader");
    }

    /// Python rounds halves to even.
    #[test]
    fn rounds_like_python() {
        assert_eq!(python_round(2.5), 2);
        assert_eq!(python_round(3.5), 4);
        assert_eq!(python_round(0.4), 0);
    }
}
