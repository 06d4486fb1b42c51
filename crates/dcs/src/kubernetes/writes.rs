//! Writes to the state objects and to the member's own pod, shaped exactly
//! like Patroni's: strategic-merge PATCH carrying the full label set (and
//! `resourceVersion` when conditional), or POST without null annotations;
//! in Endpoints mode the leader's `subsets` travel in the same request.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as K8sPort, EndpointSubset, ObjectReference, Service,
};
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use patroni_core::{MemberData, SyncState};
use serde_json::{Value, json};

use super::annotations::{self as ann, key};
use super::errors::{self, http_status};
use super::labels::{labels_match, target_labels};
use super::names::Mode;
use super::objects::{KindObject, PodObject};
use super::retry::Retry;
use super::{Inner, KubernetesDcs};
use crate::Result;
use crate::dcs::{FailoverRequest, written_sync_state};

/// Annotation values to write; `None` deletes the annotation.
pub(crate) type Annotations = BTreeMap<String, Option<String>>;

/// What to do with the leader Endpoints' `subsets` in the same write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subsets {
    /// Leave them alone.
    Keep,
    /// Empty them (voluntary release).
    Clear,
    /// Point them at this member (acquire, renew).
    Mine,
}

/// How a write goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// PATCH if a version is given, else POST.
    Auto,
    /// PATCH even without a version (unconditional).
    Patch,
}

// === impl Inner: primitives ===

impl Inner {
    /// Patroni's `_patch_or_create`: PATCH (conditional on `version` when
    /// given) or POST the object `name`, stores the response in the cache.
    pub(crate) async fn patch_or_create(
        &self,
        name: &str,
        annotations: &Annotations,
        version: Option<&str>,
        method: Method,
        retry: Option<&Retry>,
        subsets: Subsets,
    ) -> Result<KindObject> {
        let patch = method == Method::Patch || version.is_some();
        let mut metadata =
            json!({"namespace": self.k8s.namespace, "name": name, "labels": self.names.labels});
        if patch {
            metadata["annotations"] = json!(annotations);
            if let Some(v) = version {
                metadata["resourceVersion"] = json!(v);
            }
        } else {
            let present: BTreeMap<_, _> = annotations
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
                .collect();
            metadata["annotations"] = json!(present);
        }
        let mut body = json!({"metadata": metadata});
        if self.names.mode == Mode::Endpoints
            && let Some(s) = self.desired_subsets(subsets)
        {
            body["subsets"] = s;
        }
        let what = format!("{} {}", if patch { "patch" } else { "create" }, name);
        let op = || async {
            if patch {
                self.kinds_api
                    .patch(name, &PatchParams::default(), &Patch::Strategic(&body))
                    .await
            } else {
                let mut full = body.clone();
                full["apiVersion"] = json!("v1");
                full["kind"] = json!(if self.names.mode == Mode::Endpoints {
                    "Endpoints"
                } else {
                    "ConfigMap"
                });
                let obj: DynamicObject =
                    serde_json::from_value(full).map_err(kube::Error::SerdeError)?;
                self.kinds_api.create(&PostParams::default(), &obj).await
            }
        };
        let result = match retry {
            Some(r) => r.run(&what, op).await,
            None => op().await.map_err(|source| errors::classify(&what, source)),
        };
        match result {
            Ok(obj) => {
                let obj = KindObject::from(obj);
                self.kinds.set(obj.clone());
                Ok(obj)
            }
            Err(e) => {
                if http_status(&e) == Some(409) && version.is_some() {
                    // The cache may be stale: make both watches re-list.
                    self.kinds.kill_stream();
                    self.pods.kill_stream();
                }
                Err(e)
            }
        }
    }

    /// The `subsets` to send, or `None` to leave them out (Patroni's `_map_subsets`).
    fn desired_subsets(&self, intent: Subsets) -> Option<Value> {
        let latest = self
            .kinds
            .get(&self.names.leader())
            .map(|o| o.subsets)
            .unwrap_or_default();
        match intent {
            Subsets::Keep => None,
            Subsets::Clear => (!latest.is_empty()).then(|| json!([])),
            Subsets::Mine => {
                let pod = self.pods.get(&self.name);
                let ip = self
                    .k8s
                    .pod_ip
                    .map(|ip| ip.to_string())
                    .or_else(|| pod.as_ref().and_then(|p| p.pod_ip.clone()))?;
                let ports: Vec<K8sPort> = self
                    .k8s
                    .ports
                    .iter()
                    .map(|p| K8sPort {
                        name: p.name.clone(),
                        port: i32::from(p.port),
                        protocol: p.protocol.clone(),
                        ..Default::default()
                    })
                    .collect();
                if !subsets_changed(&latest, &ip, &ports) {
                    return None;
                }
                let address = match &pod {
                    Some(pod) => EndpointAddress {
                        ip: ip.clone(),
                        hostname: pod.hostname.clone(),
                        node_name: pod.node_name.clone(),
                        target_ref: Some(self.target_ref(&ip, &latest, pod)),
                    },
                    None => EndpointAddress {
                        ip: ip.clone(),
                        ..Default::default()
                    },
                };
                let subset = EndpointSubset {
                    addresses: Some(vec![address]),
                    ports: Some(ports),
                    ..Default::default()
                };
                serde_json::to_value(vec![subset]).ok()
            }
        }
    }

    /// Reuses the existing reference to our pod when it still matches.
    fn target_ref(&self, ip: &str, latest: &[EndpointSubset], pod: &PodObject) -> ObjectReference {
        latest
            .iter()
            .flat_map(|s| s.addresses.iter().flatten())
            .filter(|a| a.ip == ip)
            .filter_map(|a| a.target_ref.clone())
            .find(|r| r.name.as_deref() == Some(self.name.as_str()))
            .unwrap_or_else(|| ObjectReference {
                kind: Some("Pod".into()),
                uid: Some(pod.uid.clone()),
                namespace: Some(self.k8s.namespace.clone()),
                name: Some(self.name.clone()),
                resource_version: Some(pod.resource_version.clone()),
                ..Default::default()
            })
    }

    /// Writes to the config object; in Endpoints mode a create is preceded
    /// by the headless `-config` Service that keeps the object alive.
    async fn patch_or_create_config(
        &self,
        annotations: &Annotations,
        version: Option<&str>,
        method: Method,
        retry: bool,
    ) -> Result<KindObject> {
        if self.names.mode == Mode::Endpoints && method == Method::Auto && version.is_none() {
            self.config_service_pending.store(true, Ordering::Relaxed);
            self.create_config_service().await;
        }
        let r =
            retry.then(|| Retry::new(self.timing().retry_timeout, &self.k8s.retriable_http_codes));
        self.patch_or_create(
            &self.names.config(),
            annotations,
            version,
            method,
            r.as_ref(),
            Subsets::Keep,
        )
        .await
    }

    /// Creates the headless `SCOPE-config` Service; done on success, 409 or 403.
    pub(crate) async fn create_config_service(&self) {
        let svc: Service = match serde_json::from_value(json!({
            "metadata": {"namespace": self.k8s.namespace, "name": self.names.config_service(), "labels": self.names.labels},
            "spec": {"clusterIP": "None"}
        })) {
            Ok(s) => s,
            Err(e) => return tracing::error!("failed to build the config Service: {e}"),
        };
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.k8s.namespace);
        match api.create(&PostParams::default(), &svc).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
            Err(e) => return tracing::error!("failed to create the config Service: {e}"),
        }
        self.config_service_pending.store(false, Ordering::Relaxed);
    }
}

/// Whether the leader Endpoints' subsets need rewriting (Patroni's `subsets_changed`).
pub(crate) fn subsets_changed(latest: &[EndpointSubset], ip: &str, ports: &[K8sPort]) -> bool {
    let [subset] = latest else { return true };
    let addresses = subset.addresses.as_deref().unwrap_or_default();
    let observed = subset.ports.as_deref().unwrap_or_default();
    if addresses.len() != 1 || addresses[0].ip != ip || observed.len() != ports.len() {
        return true;
    }
    let same = |a: &K8sPort, b: &K8sPort| {
        a.name == b.name
            && a.port == b.port
            && a.protocol.as_deref().unwrap_or("TCP") == b.protocol.as_deref().unwrap_or("TCP")
    };
    if ports.len() == 1 {
        return !same(&observed[0], &ports[0]);
    }
    let by_name: BTreeMap<_, _> = observed.iter().map(|p| (p.name.clone(), p)).collect();
    ports
        .iter()
        .any(|p| by_name.get(&p.name).is_none_or(|o| !same(p, o)))
}

/// Logs a refused write as Patroni does (409 silently, 403 as permission
/// denied) and turns it into `false`.
fn refused(e: crate::Error) -> Result<bool> {
    match http_status(&e) {
        Some(409) => {}
        Some(403) => tracing::error!("permission denied: {e:#}"),
        _ => tracing::error!("failed to {e:#}"),
    }
    Ok(false)
}

// === impl KubernetesDcs: writes ===

impl KubernetesDcs {
    /// Publishes this member's data in its pod's `status` annotation and
    /// sets its role labels; skipped when both are already as wanted.
    /// Returns whether the pod now carries them.
    pub async fn touch_member(&self, data: &MemberData) -> Result<bool> {
        let inner = &self.inner;
        let holder = inner
            .last_cluster()
            .and_then(|c| c.leader_name().map(String::from));
        let role = data.role.as_deref().unwrap_or("");
        let state = data.state.as_deref().unwrap_or("");
        let target = target_labels(
            &inner.k8s,
            holder.as_deref() == Some(inner.name.as_str()),
            role,
            state,
        );
        let current = inner.pods.get(&inner.name);
        let unchanged = current.as_ref().is_some_and(|pod| {
            let published = pod
                .annotations
                .get(key::STATUS)
                .and_then(|s| serde_json::from_str::<MemberData>(s).ok());
            labels_match(&pod.labels, &target) && published.as_ref() == Some(data)
        });
        let mut ok = true;
        if !unchanged {
            let body = json!({"metadata": {
                "namespace": inner.k8s.namespace, "name": inner.name,
                "labels": target, "annotations": {key::STATUS: ann::compact_json(data)},
            }});
            match inner
                .pods_api
                .patch(
                    &inner.name,
                    &PatchParams::default(),
                    &Patch::Strategic(&body),
                )
                .await
            {
                Ok(pod) => inner.pods.set(PodObject::from(pod)),
                Err(e) => {
                    ok = false;
                    tracing::error!("failed to update pod {}: {e}", inner.name);
                }
            }
        }
        if inner.config_service_pending.load(Ordering::Relaxed) {
            inner.create_config_service().await;
        }
        Ok(ok)
    }

    /// Bootstrap race (`sysid` empty) or recording the system id after
    /// initdb, conditional on the config object's version in the last view.
    pub async fn initialize(&self, sysid: &str) -> Result<bool> {
        let version = self
            .inner
            .last_cluster()
            .and_then(|c| c.config.map(|c| c.version));
        let a = Annotations::from([(key::INITIALIZE.to_string(), Some(sysid.to_string()))]);
        self.inner
            .patch_or_create_config(&a, version.as_deref(), Method::Auto, true)
            .await
            .map(|_| true)
            .or_else(refused)
    }

    /// Cancels a failed bootstrap (removes `initialize`).
    pub async fn cancel_initialization(&self) -> Result<bool> {
        let a = Annotations::from([(key::INITIALIZE.to_string(), None)]);
        self.inner
            .patch_or_create_config(&a, None, Method::Patch, true)
            .await
            .map(|_| true)
            .or_else(refused)
    }

    /// Writes the dynamic configuration (compact JSON), conditionally on
    /// `version` when given.
    pub async fn set_config_value(&self, value: &str, version: Option<&str>) -> Result<bool> {
        let a = Annotations::from([(key::CONFIG.to_string(), Some(value.to_string()))]);
        let method = if self.inner.kinds.get(&self.inner.names.config()).is_some() {
            Method::Patch
        } else {
            Method::Auto
        };
        self.inner
            .patch_or_create_config(&a, version, method, false)
            .await
            .map(|_| true)
            .or_else(refused)
    }

    /// Writes the timeline history (compact JSON array).
    pub async fn set_history_value(&self, value: &str) -> Result<bool> {
        let a = Annotations::from([(key::HISTORY.to_string(), Some(value.to_string()))]);
        let method = if self.inner.kinds.get(&self.inner.names.config()).is_some() {
            Method::Patch
        } else {
            Method::Auto
        };
        self.inner
            .patch_or_create_config(&a, None, method, false)
            .await
            .map(|_| true)
            .or_else(refused)
    }

    /// Requests a switchover (`leader` set) or failover, optionally at
    /// `scheduled_at` (ISO 8601 with offset); all `None` clears the request.
    pub async fn manual_failover(
        &self,
        request: FailoverRequest<'_>,
        version: Option<&str>,
    ) -> Result<bool> {
        let (leader, candidate, scheduled_at) = request.parts();
        let a = Annotations::from([
            (key::LEADER.to_string(), leader.map(String::from)),
            (key::MEMBER.to_string(), candidate.map(String::from)),
            (
                key::SCHEDULED_AT.to_string(),
                scheduled_at.map(String::from),
            ),
        ]);
        let exists = self
            .inner
            .last_cluster()
            .is_some_and(|c| c.failover.is_some());
        let method = if version.is_some() || exists {
            Method::Patch
        } else {
            Method::Auto
        };
        self.inner
            .patch_or_create(
                &self.inner.names.failover(),
                &a,
                version,
                method,
                None,
                Subsets::Keep,
            )
            .await
            .map(|_| true)
            .or_else(refused)
    }

    /// Writes the synchronous replication state; `None` on refusal.
    pub async fn write_sync_state(
        &self,
        leader: Option<&str>,
        sync_standby: &[String],
        quorum: Option<u32>,
        version: Option<&str>,
    ) -> Result<Option<SyncState>> {
        let a = Annotations::from([
            (key::LEADER.to_string(), leader.map(String::from)),
            (
                key::SYNC_STANDBY.to_string(),
                (!sync_standby.is_empty()).then(|| ann::format_sync_standby(sync_standby)),
            ),
            (key::QUORUM.to_string(), quorum.map(|q| q.to_string())),
        ]);
        let retry = Retry::new(
            self.inner.timing().retry_timeout,
            &self.inner.k8s.retriable_http_codes,
        );
        match self
            .inner
            .patch_or_create(
                &self.inner.names.sync(),
                &a,
                version,
                Method::Auto,
                Some(&retry),
                Subsets::Keep,
            )
            .await
        {
            Ok(obj) => Ok(Some(written_sync_state(
                obj.resource_version,
                leader,
                sync_standby,
                quorum,
            ))),
            Err(e) => refused(e).map(|_| None),
        }
    }

    /// Removes `leader`, `sync_standby` and `quorum` from the sync object.
    pub async fn delete_sync_state(&self, version: Option<&str>) -> Result<bool> {
        self.write_sync_state(None, &[], None, version)
            .await
            .map(|s| s.is_some())
    }

    /// `patronictl remove`: deletes every state object of the cluster
    /// (by label selector); pods and the config Service stay.
    pub async fn delete_cluster(&self) -> Result<bool> {
        let retry = Retry::new(
            self.inner.timing().retry_timeout,
            &self.inner.k8s.retriable_http_codes,
        );
        let lp = ListParams::default().labels(&self.inner.names.selector);
        let dp = DeleteParams::default();
        retry
            .run("delete the cluster's objects", || {
                self.inner.kinds_api.delete_collection(&dp, &lp)
            })
            .await
            .map(|_| true)
            .or_else(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: Option<&str>, port: i32, protocol: Option<&str>) -> K8sPort {
        K8sPort {
            name: name.map(String::from),
            port,
            protocol: protocol.map(String::from),
            ..Default::default()
        }
    }

    fn subset(ip: &str, ports: Vec<K8sPort>) -> EndpointSubset {
        EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: ip.into(),
                ..Default::default()
            }]),
            ports: Some(ports),
            ..Default::default()
        }
    }

    /// The cases of Patroni's own `subsets_changed` doctest.
    #[test]
    fn subsets_change_as_patroni_decides() {
        let ip = "1.2.3.4";
        assert!(subsets_changed(&[subset(ip, vec![])], "1.2.3.5", &[]));
        assert!(subsets_changed(
            &[subset(ip, vec![port(None, 1, Some("TCP"))])],
            ip,
            &[port(None, 5432, None)]
        ));
        assert!(!subsets_changed(
            &[subset(ip, vec![port(None, 5432, Some("TCP"))])],
            ip,
            &[port(None, 5432, None)]
        ));
        let (p1, p2, p3) = (
            port(Some("port1"), 1, None),
            port(Some("port2"), 2, None),
            port(Some("port3"), 3, None),
        );
        assert!(subsets_changed(
            &[subset(ip, vec![p1.clone(), p2.clone()])],
            ip,
            &[p2.clone(), p3]
        ));
        assert!(!subsets_changed(
            &[subset(ip, vec![p2.clone(), p1.clone()])],
            ip,
            &[p2, p1]
        ));
        assert!(subsets_changed(&[], ip, &[]));
    }
}
