//! `edit-config` (writes `/config` in the DCS with compare-and-swap) and `pause`/`resume`
//! (`PATCH /config` on the first reachable member, leader first).

use std::io::Read;
use std::time::Duration;

use anyhow::Context as _;
use patroni_dcs::Dcs as _;
use serde_json::{Map, Value, json};

use super::{api_url, fail, members_leader_first};
use crate::cli::{Command, GroupArg};
use crate::context::{Ctl, flags, loop_wait};
use crate::edit::{self, InvalidSetting};
use crate::output::table::yaml_block;
use crate::prompt;

/// How often `--wait` re-reads the cluster.
const PAUSE_POLL: Duration = Duration::from_secs(1);

/// Reads YAML from a file or `-` (stdin).
fn read_yaml(source: &str) -> anyhow::Result<Value> {
    let text = if source == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("read stdin")?;
        s
    } else {
        std::fs::read_to_string(source).with_context(|| format!("read {source}"))?
    };
    Ok(edit::parse_yaml_value(&text))
}

/// `format_config_for_editing`.
fn for_editing(data: &Map<String, Value>) -> String {
    yaml_block(&Value::Object(data.clone()))
}

/// Runs `editor` (`$EDITOR`, else `editor`, else `vi`) on the YAML; returns the edited text.
fn invoke_editor(before: &str, cluster: &str, editor: Option<&str>) -> anyhow::Result<String> {
    let editor = editor
        .filter(|e| !e.is_empty())
        .map(String::from)
        .or_else(|| {
            ["editor", "vi"]
                .into_iter()
                .find(|e| {
                    std::process::Command::new("sh")
                        .args(["-c", &format!("command -v {e} >/dev/null")])
                        .status()
                        .is_ok_and(|s| s.success())
                })
                .map(String::from)
        });
    let Some(editor) = editor else {
        return fail("EDITOR environment variable is not set. editor or vi are not available");
    };
    let file = tempfile::Builder::new()
        .prefix(&format!("{}-config-", cluster.replace('/', "_")))
        .suffix(".yaml")
        .tempfile()
        .context("create a temporary file")?;
    std::fs::write(file.path(), before).context("write the temporary file")?;
    let status = std::process::Command::new(&editor)
        .arg(file.path())
        .status()
        .with_context(|| format!("run {editor}"))?;
    if !status.success() {
        return fail(format!(
            "Editor exited with return code {}",
            status.code().unwrap_or(-1)
        ));
    }
    std::fs::read_to_string(file.path()).context("read the edited file")
}

/// `edit-config`.
///
/// # Errors
/// No `/config`; bad settings; a concurrent change; a declined confirmation is not an error.
pub async fn edit_config(ctl: &Ctl, command: Command) -> anyhow::Result<()> {
    let Command::EditConfig {
        cluster_name,
        group,
        quiet,
        set,
        pg,
        apply,
        replace,
        force,
    } = command
    else {
        return Ok(());
    };
    let name = ctl.cluster_name(cluster_name.as_deref())?;
    let opened = ctl.open(&name, &group).await?;
    let cluster = opened.cluster().await?;
    let Some(config) = cluster.config.clone() else {
        return fail(format!(
            "The config key does not exist in the cluster {name}"
        ));
    };
    let before = for_editing(&config.data);
    let mut after: Option<String> = None;
    let mut changed = config.data.clone();
    if let Some(r) = &replace {
        changed = Map::new();
        edit::merge(&mut changed, &read_yaml(r)?);
        after = Some(for_editing(&changed));
    }
    if let Some(a) = &apply {
        edit::merge(&mut changed, &read_yaml(a)?);
        after = Some(for_editing(&changed));
    }
    if !set.is_empty() || !pg.is_empty() {
        let mut pairs = set.clone();
        pairs.extend(
            pg.iter()
                .map(|v| format!("postgresql.parameters.{}", v.trim_start())),
        );
        edit::apply_settings(&mut changed, &pairs).map_err(|InvalidSetting(p)| {
            super::CtlError(format!("Invalid parameter setting {p}"))
        })?;
        after = Some(for_editing(&changed));
    }
    let after = match after {
        Some(a) => a,
        None => {
            let text = invoke_editor(&before, &name, ctl.env.get("EDITOR"))?;
            changed = match edit::parse_yaml_value(&text) {
                Value::Object(m) => m,
                Value::Null => Map::new(),
                _ => return fail("The edited configuration is not a mapping"),
            };
            text
        }
    };
    if changed == config.data {
        if !quiet {
            println!("Not changed");
        }
        return Ok(());
    }
    if !quiet {
        for line in edit::unified_diff(&before, &after) {
            println!("{line}");
        }
    }
    if (apply.as_deref() == Some("-") || replace.as_deref() == Some("-")) && !force {
        println!("Use --force option to apply changes");
        return Ok(());
    }
    if force || prompt::confirm("Apply these changes?")? {
        let value = serde_json::to_string(&Value::Object(changed)).context("encode the config")?;
        if !opened
            .dcs
            .set_config_value(&value, Some(&config.version))
            .await
            .context("write the config to Kubernetes")?
        {
            return fail("Config modification aborted due to concurrent changes");
        }
        println!("Configuration changed");
    }
    Ok(())
}

/// `pause` / `resume`.
///
/// # Errors
/// Already in the requested state; no reachable member.
pub async fn toggle_pause(
    ctl: &Ctl,
    name: Option<&str>,
    group: &GroupArg,
    paused: bool,
    wait: bool,
) -> anyhow::Result<()> {
    let name = ctl.cluster_name(name)?;
    let opened = ctl.open(&name, group).await?;
    let cluster = opened.cluster().await?;
    if flags(&cluster).paused == paused {
        return fail(format!(
            "Cluster is {} paused",
            if paused { "already" } else { "not" }
        ));
    }
    let body = json!({"pause": if paused { json!(true) } else { Value::Null }});
    let (verb, done) = if paused {
        ("pause", "paused")
    } else {
        ("resume", "resumed")
    };
    for m in members_leader_first(&cluster) {
        let r = match ctl
            .rest
            .request(api_url(&m)?, "PATCH", Some("config"), Some(&body))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("WARNING - {e:#}");
                eprintln!("WARNING - Member {} is not accessible", m.name);
                continue;
            }
        };
        if r.status == 200 {
            if wait {
                wait_for_pause(&opened, &cluster, paused).await?;
            } else {
                println!("Success: cluster management is {done}");
            }
        } else {
            println!(
                "Failed: {verb} cluster management status code={}, ({})",
                r.status, r.body
            );
        }
        return Ok(());
    }
    fail("Can not find accessible cluster member")
}

/// Patroni's `wait_until_pause_is_applied`.
async fn wait_for_pause(
    opened: &crate::context::Opened,
    old: &patroni_core::Cluster,
    paused: bool,
) -> anyhow::Result<()> {
    println!(
        "'{}' request sent, waiting until it is recognized by all nodes",
        if paused { "pause" } else { "resume" }
    );
    let old_versions: Vec<(String, String)> = old
        .members
        .iter()
        .filter(|m| m.data.api_url.is_some())
        .map(|m| (m.name.clone(), m.version.clone()))
        .collect();
    let lw = loop_wait(old);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(lw + 1);
    let member_paused = |m: &patroni_core::Member| {
        m.data
            .extra
            .get("pause")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    loop {
        let cluster = opened.cluster().await?;
        let pending: Vec<&patroni_core::Member> = cluster
            .members
            .iter()
            .filter(|m| {
                old_versions.iter().any(|(n, _)| *n == m.name) && member_paused(m) != paused
            })
            .collect();
        if pending.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let remaining: Vec<&str> = pending
                .iter()
                .filter(|m| {
                    old_versions
                        .iter()
                        .any(|(n, v)| *n == m.name && *v != m.version)
                })
                .map(|m| m.name.as_str())
                .collect();
            if !remaining.is_empty() {
                println!(
                    "{} members didn't recognized pause state after {lw} seconds",
                    remaining.join(", ")
                );
                return Ok(());
            }
            break;
        }
        tokio::time::sleep(PAUSE_POLL).await;
    }
    println!(
        "Success: cluster management is {}",
        if paused { "paused" } else { "resumed" }
    );
    Ok(())
}
