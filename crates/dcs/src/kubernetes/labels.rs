//! The pod labels Patroni manages on its own pod: `role_label`, optionally
//! `tmp_role_label`, and `bootstrap_labels`. Pure rules, as Patroni 4
//! applies them in `touch_member`:
//!
//! 1. the lock holder: `role_label` = `standby_leader_label_value` when its
//!    role is `standby_leader`, else `leader_label_value`; `tmp_role_label` =
//!    `primary` (whatever PostgreSQL is doing);
//! 2. else, running and not `primary`: `role_label` = `follower_label_value`
//!    for `replica`, else the raw role; `tmp_role_label` = the raw role;
//! 3. else both removed (null).
//!
//! Bootstrap labels are set while initialising or creating a replica and
//! removed otherwise.

use std::collections::BTreeMap;

use patroni_config::KubernetesConfig;

/// PostgreSQL states during which `bootstrap_labels` apply.
const BOOTSTRAP_STATES: [&str; 4] = [
    "initializing new cluster",
    "running custom bootstrap script",
    "starting after custom bootstrap",
    "creating replica",
];

/// Target value (`None` = remove) of every label the member manages.
pub type LabelPatch = BTreeMap<String, Option<String>>;

/// The labels a member should carry.
pub fn target_labels(
    cfg: &KubernetesConfig,
    is_lock_holder: bool,
    role: &str,
    state: &str,
) -> LabelPatch {
    let (role_value, tmp_value) = if is_lock_holder {
        let v = if role == "standby_leader" {
            &cfg.standby_leader_label_value
        } else {
            &cfg.leader_label_value
        };
        (Some(v.clone()), Some("primary".to_string()))
    } else if state == "running" && role != "primary" {
        let v = if role == "replica" {
            cfg.follower_label_value.clone()
        } else {
            role.to_string()
        };
        (Some(v), Some(role.to_string()))
    } else {
        (None, None)
    };
    let mut labels = LabelPatch::from([(cfg.role_label.clone(), role_value)]);
    if let Some(tmp) = &cfg.tmp_role_label {
        labels.insert(tmp.clone(), tmp_value);
    }
    let bootstrapping = BOOTSTRAP_STATES.contains(&state);
    for (k, v) in &cfg.bootstrap_labels {
        labels.insert(k.clone(), bootstrapping.then(|| v.clone()));
    }
    labels
}

/// Whether the pod's labels already have every target value (absent = `None`).
pub fn labels_match(current: &BTreeMap<String, String>, target: &LabelPatch) -> bool {
    target.iter().all(|(k, v)| current.get(k) == v.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> KubernetesConfig {
        KubernetesConfig::default()
    }

    fn l(pairs: &[(&str, Option<&str>)]) -> LabelPatch {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(String::from)))
            .collect()
    }

    /// Defaults: holder primary, running replica replica, anything else removed.
    #[test]
    fn default_labels_follow_the_lock_and_state() {
        let c = cfg();
        assert_eq!(
            target_labels(&c, true, "replica", "starting"),
            l(&[("role", Some("primary"))])
        );
        assert_eq!(
            target_labels(&c, false, "replica", "running"),
            l(&[("role", Some("replica"))])
        );
        assert_eq!(
            target_labels(&c, false, "primary", "running"),
            l(&[("role", None)])
        );
        assert_eq!(
            target_labels(&c, false, "replica", "stopped"),
            l(&[("role", None)])
        );
        assert_eq!(
            target_labels(&c, false, "demoted", "running"),
            l(&[("role", Some("demoted"))])
        );
    }

    /// Custom key and values, tmp_role_label with built-in names, standby leader.
    #[test]
    fn custom_labels_and_tmp_role_label() {
        let mut c = cfg();
        c.role_label = "spilo-role".into();
        c.leader_label_value = "master".into();
        c.follower_label_value = "secondary".into();
        c.standby_leader_label_value = "standby-master".into();
        c.tmp_role_label = Some("tmp_role".into());
        assert_eq!(
            target_labels(&c, true, "primary", "running"),
            l(&[
                ("spilo-role", Some("master")),
                ("tmp_role", Some("primary"))
            ])
        );
        assert_eq!(
            target_labels(&c, true, "standby_leader", "running"),
            l(&[
                ("spilo-role", Some("standby-master")),
                ("tmp_role", Some("primary"))
            ])
        );
        assert_eq!(
            target_labels(&c, false, "replica", "running"),
            l(&[
                ("spilo-role", Some("secondary")),
                ("tmp_role", Some("replica"))
            ])
        );
        assert_eq!(
            target_labels(&c, false, "replica", "stopped"),
            l(&[("spilo-role", None), ("tmp_role", None)])
        );
    }

    /// Bootstrap labels exist only while bootstrapping or cloning.
    #[test]
    fn bootstrap_labels_only_while_bootstrapping() {
        let mut c = cfg();
        c.bootstrap_labels = BTreeMap::from([("initializing".to_string(), "true".to_string())]);
        assert_eq!(
            target_labels(&c, false, "replica", "creating replica").get("initializing"),
            Some(&Some("true".to_string()))
        );
        assert_eq!(
            target_labels(&c, false, "replica", "running").get("initializing"),
            Some(&None)
        );
    }

    /// A label absent from the pod matches a target of "remove".
    #[test]
    fn absent_label_matches_removal() {
        let current = BTreeMap::from([("role".to_string(), "replica".to_string())]);
        assert!(labels_match(
            &current,
            &l(&[("role", Some("replica")), ("tmp_role", None)])
        ));
        assert!(!labels_match(&current, &l(&[("role", None)])));
    }
}
