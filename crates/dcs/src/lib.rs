//! The distributed configuration store (DCS) of patroni-rs: where the
//! cluster's truth lives.
//!
//! The HA loop and patronictl see the DCS only through the [`Dcs`] trait, open
//! it only with [`connect`] (which picks the backend from the configuration's
//! DCS choice and returns an [`AnyDcs`]), and get back the backend-neutral
//! [`Error`]: unreachable / not ready ("the DCS is not accessible"), or a
//! conflict, refusal or configuration problem. [`encoding`] is how Patroni writes
//! values into any DCS; [`values`] the whole-key JSON values (`/status`, `/sync`,
//! `/failover`) of the key-value stores (etcd3, ZooKeeper), both ways.
//!
//! The Kubernetes backend ([`kubernetes::KubernetesDcs`]) writes exactly what
//! Patroni 4 writes, in both of Patroni's modes (ConfigMaps, Endpoints), so
//! Patroni's own tools read our clusters and ours read theirs. See
//! `docs/kubernetes-dcs.md`. The etcd v3 backend ([`etcd3::Etcd3Dcs`]) and the ZooKeeper
//! backend ([`zookeeper::ZookeeperDcs`]) do the same with Patroni's keys and znodes under
//! `/<namespace>/<scope>/` (`docs/etcd3.md`, `docs/zookeeper.md`). [`MemoryDcs`] is the
//! in-memory fake for tests of
//! the agent, with fault injection: the whole store unreachable, one member
//! partitioned, one operation of one member failing once.

pub mod accounting;
mod any;
mod connect;
mod dcs;
pub mod encoding;
mod error;
pub mod etcd3;
pub mod kubernetes;
mod memory;
pub mod values;
pub mod zookeeper;

pub use any::AnyDcs;
pub use connect::{Settings, backend_name, connect, in_cluster_offered, supports};
pub use dcs::{Dcs, FailoverRequest, LeaderStatusUpdate};
pub use error::{BoxError, Error, Result};
pub use etcd3::Etcd3Dcs;
pub use kubernetes::KubernetesDcs;
pub use memory::{Fault, MemoryDcs, MemoryStore, Op};
pub use zookeeper::ZookeeperDcs;
