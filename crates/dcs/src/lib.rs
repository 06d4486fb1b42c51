//! The distributed configuration store (DCS) of patroni-rs: where the
//! cluster's truth lives.
//!
//! The Kubernetes implementation ([`kubernetes::KubernetesDcs`]) writes
//! exactly what Patroni 4 writes, in both of Patroni's modes (ConfigMaps,
//! Endpoints), so Patroni's own tools read our clusters and ours read
//! theirs. See `docs/kubernetes-dcs.md`. The HA loop talks to it through
//! the [`Dcs`] trait; [`MemoryDcs`] is the in-memory fake for its tests.

pub mod accounting;
mod dcs;
mod error;
pub mod kubernetes;
mod memory;

pub use dcs::{Dcs, FailoverRequest, LeaderStatusUpdate};
pub use error::{Error, Result};
pub use kubernetes::{KubernetesDcs, Settings};
pub use memory::{MemoryDcs, MemoryStore};
