//! `remove`: deletes every state object of a cluster from Kubernetes after three
//! confirmations (cluster name, `Yes I am aware`, the leader's name when it has one).

use anyhow::Context as _;
use patroni_dcs::Dcs as _;

use super::{fail, print_members};
use crate::cli::{Format, GroupArg};
use crate::context::Ctl;
use crate::prompt;

/// What the second confirmation must say.
const AWARE: &str = "Yes I am aware";

/// `remove CLUSTER`.
///
/// # Errors
/// Any confirmation not matching; the delete failing.
pub async fn remove(ctl: &Ctl, name: &str, group: &GroupArg, fmt: Format) -> anyhow::Result<()> {
    let opened = ctl.open(name, group).await?;
    let cluster = opened.cluster().await?;
    print_members(&opened, &cluster, fmt);
    if prompt::prompt("Please confirm the cluster name to remove", None)? != name {
        return fail("Cluster names specified do not match");
    }
    let answer = prompt::prompt(
        &format!(
            "You are about to remove all information in DCS for {name}, please type: \"{AWARE}\""
        ),
        None,
    )?;
    if answer != AWARE {
        return fail(format!("You did not exactly type \"{AWARE}\""));
    }
    if let Some(leader) = cluster.leader_name() {
        let answer = prompt::prompt(
            "This cluster currently is healthy. Please specify the leader name to continue",
            None,
        )?;
        if answer != leader {
            return fail("You did not specify the current leader of the cluster");
        }
    }
    if !opened
        .dcs
        .delete_cluster()
        .await
        .context("delete the cluster's objects from Kubernetes")?
    {
        return fail(format!("Failed to remove cluster {name} from Kubernetes"));
    }
    Ok(())
}
