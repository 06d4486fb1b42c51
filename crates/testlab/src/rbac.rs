//! Identities for members under test: the least-privilege Roles shipped in
//! `deploy/rbac/`, bound as-is to one of the control plane's static-token
//! users, so what runs in a test has no more rights than a deployment.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::PostParams;

use crate::lab::wait_until;
use crate::{Error, Lab, Result};

/// How long a new binding may take to reach the authorizer's cache.
const BINDING_TIMEOUT: Duration = Duration::from_secs(10);

/// `deploy/rbac/` of this repository.
fn rbac_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/rbac")
}

/// A Role shipped in `deploy/rbac/` (`configmaps-mode.yaml`, …), parsed.
pub fn shipped_role(file: &str) -> Result<Role> {
    let path = rbac_dir().join(file);
    let text = std::fs::read_to_string(&path).map_err(Error::io("read", &path))?;
    serde_yaml_ng::from_str(&text)
        .map_err(|e| Error::ControlPlane(format!("parse {}: {e}", path.display())))
}

/// The shipped Role members need in a mode.
pub fn member_role(use_endpoints: bool) -> Result<Role> {
    shipped_role(if use_endpoints {
        "endpoints-mode.yaml"
    } else {
        "configmaps-mode.yaml"
    })
}

fn exists_ok<T>(result: std::result::Result<T, kube::Error>, what: String) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(source) => Err(Error::Kube { what, source }),
    }
}

// === impl Lab: identities ===

impl Lab {
    /// Creates `role` in `namespace` (if absent) and binds it to `user`.
    pub async fn bind_role(&self, namespace: &str, role: Role, user: &str) -> Result<()> {
        let admin = self.controlplane().admin_client().await?;
        let pp = PostParams::default();
        let role_name = role.metadata.name.clone().unwrap_or_default();
        exists_ok(
            Api::<Role>::namespaced(admin.clone(), namespace)
                .create(&pp, &role)
                .await,
            format!("create role {role_name}"),
        )?;
        let binding: RoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{role_name}-{user}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }))
        .map_err(|source| Error::Parse {
            path: "role binding".into(),
            source,
        })?;
        exists_ok(
            Api::<RoleBinding>::namespaced(admin, namespace)
                .create(&pp, &binding)
                .await,
            format!("bind {role_name} to {user}"),
        )
    }

    /// A kubeconfig (readable by the postgres user) for static-token user
    /// `user` holding only the shipped member Role of the mode in
    /// `namespace`; `inside_lab` picks the API address reachable from hosts.
    /// Returns once the binding is in effect.
    pub async fn member_kubeconfig(
        &self,
        namespace: &str,
        use_endpoints: bool,
        inside_lab: bool,
        user: usize,
    ) -> Result<PathBuf> {
        let cp = self.controlplane();
        let identity = cp
            .users
            .get(user)
            .ok_or_else(|| Error::ControlPlane(format!("no static user #{user}")))?;
        self.bind_role(namespace, member_role(use_endpoints)?, &identity.name)
            .await?;
        let suffix = if inside_lab { "-lab" } else { "" };
        let path = self
            .info()
            .dir
            .join(format!("{namespace}-{}{suffix}.kubeconfig", identity.name));
        cp.write_kubeconfig(&identity.token, &path, inside_lab)?;
        let pods: Api<Pod> =
            Api::namespaced(cp.client_with_token(&identity.token).await?, namespace);
        wait_until(
            BINDING_TIMEOUT,
            format!("{} may list pods in {namespace}", identity.name),
            || async { pods.list(&Default::default()).await.ok().map(|_| ()) },
        )
        .await?;
        Ok(path)
    }
}
