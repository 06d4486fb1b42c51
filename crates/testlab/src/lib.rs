//! Test hosts like pods, for tests that run against the real parts.
//!
//! A [`Lab`] is a private network (a bridge inside a "hub" network
//! namespace) plus a real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager and a fake kubelet, built from the upstream Go
//! modules by `testenv/`) running in a namespace of its own. Each [`Host`] is
//! one more network namespace on that bridge with its own non-loopback
//! address, where a test runs PostgreSQL on :5432 and an agent on :8008, as a
//! pod would. The machine's own namespace has no route into the lab: it
//! reaches the API server only through the control plane's loopback proxy.
//!
//! # Sharing
//! `cargo xtask test` starts one lab for the whole run and exports
//! [`LAB_ENV`]; every test process attaches to it ([`Lab::shared`]). Without
//! the variable, the first test in a process starts a private lab that dies
//! with the process.
//!
//! # Cleanup
//! Everything is stopped by pid: a [`Host`] kills the processes inside its
//! namespace and deletes it on drop (panics included); the control plane
//! supervisor stops its components when the process that started the lab is
//! gone; namespaces left by a killed run carry the dead owner's pid in their
//! name and are swept by the next lab.
//!
//! # The real node
//! [`Lab::start_node`] adds a real Kubernetes node (containerd, kubelet,
//! kube-proxy, kube-scheduler, CoreDNS, a volume provisioner) in one more
//! namespace, for tests that run the product's image in pods ([`node`]).

#![allow(
    clippy::disallowed_types,
    reason = "the test harness measures real elapsed time (std::time::Instant)"
)]

mod agent;
mod controlplane;
mod dns;
mod error;
mod etcd;
mod gobuild;
mod helm;
mod host;
mod lab;
mod netns;
mod node;
mod oci;
mod python;
mod rbac;
mod s3;
mod server;
mod store_images;
mod testenv_bin;
pub mod watchdog;
mod zookeeper;

pub use agent::{AgentSpec, PG_USER, chown_to_pg_user};
pub use controlplane::{ControlPlane, FrozenApiServer, User};
pub use dns::DnsServer;
pub use error::{Error, Result};
pub use etcd::{ETCD_CLIENT_PORT, EtcdServer, EtcdTls};
pub use helm::{HELM_VERSION, HELM3_VERSION, helm_binary, helm3_binary};
pub use host::Host;
pub use host::HostInfo;
pub use lab::{LAB_ENV, Lab, LabInfo, PodSpec, TestNamespace, wait_until};
pub use netns::sweep_stale;
pub use node::{COREDNS_VERSION, NODE_NAME, NodeBinaries, NodeInfo, import_image, node_binaries};
pub use oci::{OciImage, build_archive};
pub use python::python_daemon_venv;
pub use rbac::{member_role, shipped_role};
pub use s3::{S3_ACCESS_KEY_ID, S3_PORT, S3_REGION, S3_SECRET_ACCESS_KEY, S3Server, s3_venv};
pub use server::FrozenServer;
pub use store_images::{
    DEBIAN_SOURCES, ETCD_IMAGE_NAME, ETCD_VERSION, StoreImage, ZOOKEEPER_IMAGE_NAME,
    ZOOKEEPER_VERSION, etcd_image, zookeeper_image,
};
pub use testenv_bin::{cache_dir, testenv_binary};
pub use zookeeper::{ZOOKEEPER_CLIENT_PORT, ZOOKEEPER_JAR, ZookeeperServer};
