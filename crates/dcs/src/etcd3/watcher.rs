//! One watch on the cluster's prefix that wakes the HA loop (Patroni's `KVCache`
//! `_process_event`): the leader key's value changing, the config changing (both before and
//! after present), or the leader's `/status` (or legacy `optime/leader`) changing while this
//! member is not the leader. One's own renewal (a lease keepalive, a status write while
//! holding the lock) wakes nobody but the others.
//!
//! The task reads the prefix once (for the current leader and the revision to watch from),
//! then follows the watch; when the stream breaks or is cancelled (compaction, a server
//! restart) it starts over after [`RESTART_DELAY`]. It never decides anything: a missed
//! event only delays a cycle until `loop_wait`, and every cycle reads the store afresh.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use tokio::sync::Notify;

use super::keys::{self, Keys};

/// Pause before reading and watching again after the watch ended.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// What a change to one key means for the HA loop.
#[derive(Debug)]
pub struct WakeRules {
    /// The cluster's keys.
    pub keys: Keys,
    /// This member's name.
    pub me: String,
}

// === impl WakeRules ===

impl WakeRules {
    /// Whether `key` going from `old` to `new` (`None`: absent) wakes this member, given the
    /// leader key's value `leader` after the change.
    pub fn wakes(
        &self,
        key: &str,
        old: Option<&str>,
        new: Option<&str>,
        leader: Option<&str>,
    ) -> bool {
        let Some(rel) = self.keys.relative(key) else {
            return false;
        };
        if old == new {
            return false;
        }
        match rel {
            keys::LEADER => true,
            keys::CONFIG => old.is_some() && new.is_some(),
            keys::STATUS | keys::LEADER_OPTIME => new.is_some() && leader != Some(self.me.as_str()),
            _ => false,
        }
    }
}

/// Follows the prefix forever, notifying `wake` on changes that matter.
pub async fn run(client: Client, rules: WakeRules, wake: Arc<Notify>) {
    loop {
        if let Err(e) = follow(&client, &rules, &wake).await {
            tracing::debug!(error = %e, "etcd watch ended; starting over");
        }
        tokio::time::sleep(RESTART_DELAY).await;
    }
}

/// One read and one watch, until the stream ends.
async fn follow(
    client: &Client,
    rules: &WakeRules,
    wake: &Notify,
) -> Result<(), etcd_client::Error> {
    let prefix = rules.keys.prefix().to_string();
    let leader_key = rules.keys.key(keys::LEADER);
    let mut kv = client.kv_client();
    let read = kv.get(leader_key.clone(), Some(GetOptions::new())).await?;
    let revision = read.header().map(|h| h.revision()).unwrap_or(0);
    let mut leader: Option<String> = read
        .kvs()
        .first()
        .map(|k| String::from_utf8_lossy(k.value()).into_owned());
    let options = WatchOptions::new()
        .with_prefix()
        .with_prev_key()
        .with_start_revision(revision + 1);
    let mut stream = client.watch_client().watch(prefix, Some(options)).await?;
    while let Some(message) = stream.message().await? {
        if message.canceled() {
            tracing::debug!(reason = message.cancel_reason(), "etcd watch cancelled");
            return Ok(());
        }
        let mut woke = false;
        for event in message.events() {
            let Some(kv) = event.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let new = match event.event_type() {
                EventType::Put => Some(String::from_utf8_lossy(kv.value()).into_owned()),
                EventType::Delete => None,
            };
            let old = event
                .prev_kv()
                .map(|p| String::from_utf8_lossy(p.value()).into_owned());
            if key == leader_key {
                leader = new.clone();
            }
            woke |= rules.wakes(&key, old.as_deref(), new.as_deref(), leader.as_deref());
        }
        if woke {
            wake.notify_one();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Patroni's wake rules.
    #[test]
    fn wakes_as_patroni_does() {
        let r = WakeRules {
            keys: Keys::new("/service/demo"),
            me: "m0".into(),
        };
        let k = |n: &str| format!("/service/demo/{n}");
        assert!(r.wakes(&k("leader"), None, Some("m1"), Some("m1")));
        assert!(r.wakes(&k("leader"), Some("m1"), None, None));
        assert!(!r.wakes(&k("leader"), Some("m1"), Some("m1"), Some("m1")));
        assert!(r.wakes(&k("config"), Some("{}"), Some(r#"{"a":1}"#), None));
        assert!(!r.wakes(&k("config"), None, Some("{}"), None));
        assert!(r.wakes(&k("status"), Some("1"), Some("2"), Some("m1")));
        assert!(!r.wakes(&k("status"), Some("1"), Some("2"), Some("m0")));
        assert!(!r.wakes(&k("status"), Some("1"), None, Some("m1")));
        assert!(!r.wakes(&k("members/m1"), None, Some("{}"), None));
        assert!(!r.wakes("/service/other/leader", None, Some("x"), None));
    }
}
