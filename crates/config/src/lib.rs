//! Patroni-compatible configuration for patroni-rs.
//!
//! Reads Patroni 4.x configuration (YAML files, a directory of them, `PATRONI_CONFIGURATION`,
//! or `PATRONI_*` environment variables) into validated, typed settings, with Patroni's defaults
//! and coercions. See `docs/configuration.md` for what is supported.
//!
//! ```
//! use patroni_config::{DcsConfig, Environment, load};
//!
//! let env = Environment::new()
//!     .with_var("PATRONI_NAME", "pg-0")
//!     .with_var("PATRONI_SCOPE", "demo")
//!     .with_var("PATRONI_KUBERNETES_LABELS", "{application: patroni}")
//!     .with_var("PATRONI_RESTAPI_LISTEN", "0.0.0.0:8008")
//!     .with_var("PATRONI_RESTAPI_CONNECT_ADDRESS", "10.0.0.5:8008")
//!     .with_var("PATRONI_POSTGRESQL_LISTEN", "0.0.0.0:5432")
//!     .with_var("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "10.0.0.5:5432")
//!     .with_var("PATRONI_POSTGRESQL_DATA_DIR", "/var/lib/postgresql/data")
//!     .with_var("PATRONI_SUPERUSER_USERNAME", "postgres")
//!     .with_var("PATRONI_REPLICATION_USERNAME", "standby");
//! let loaded = load(None, &env).expect("valid configuration");
//! let DcsConfig::Kubernetes(k8s) = &loaded.config.dcs else { panic!("kubernetes") };
//! assert_eq!(k8s.leader_label_value, "primary");
//! assert_eq!(loaded.config.bootstrap.dcs.ttl, 30);
//! ```
//!
//! Nothing here reads or changes the process environment or panics on any input; the
//! filesystem is reached only through [`Filesystem`] and the network only through
//! [`PortProbe`] (used by [`check_system`] for `--validate-config`).

pub mod coerce;
pub mod env;
pub mod fs;
mod load;
pub mod model;
mod problem;
pub mod source;
pub mod system;
mod validate;
mod yaml;

pub use env::{Environment, environment_configuration};
pub use fs::{Filesystem, MemoryFilesystem, OsFilesystem};
pub use load::{LoadError, Loaded, load, load_with};
pub use model::{
    Config,
    address::Address,
    bootstrap::BootstrapConfig,
    citus::CitusConfig,
    dcs::{DcsConfig, DcsKind},
    dynamic::{DynamicConfig, SynchronousMode},
    etcd3::{Etcd3Config, SrvDiscovery},
    kubernetes::{EndpointPort, KubernetesConfig},
    log::{LogConfig, LogFormatType, LogLevel},
    postgresql::{PgAuthentication, PgUser, PostgresqlConfig},
    restapi::{BasicAuth, CtlConfig, RestApiConfig},
    tags::Tags,
    tool_options::ToolOption,
    watchdog::{WatchdogConfig, WatchdogMode},
    zookeeper::ZookeeperConfig,
};
pub use problem::{InvalidConfig, Problem};
pub use source::{Origin, RawConfig, SourceError};
pub use system::{PortProbe, SystemCheckOptions, TcpPortProbe, check_system};
