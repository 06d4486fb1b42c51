//! The distributed configuration store (DCS) of patroni-rs: where the
//! cluster's truth lives.
//!
//! The Kubernetes implementation ([`kubernetes::KubernetesDcs`]) writes
//! exactly what Patroni 4 writes, in both of Patroni's modes (ConfigMaps,
//! Endpoints), so Patroni's own tools read our clusters and ours read
//! theirs. See `docs/kubernetes-dcs.md`.

pub mod accounting;
mod error;
pub mod kubernetes;

pub use error::{Error, Result};
pub use kubernetes::{KubernetesDcs, Settings};
