//! The command line, as Patroni's `patronictl` (click) defines it: global options, every
//! subcommand and their options. Parsing only; validation that needs the cluster happens in
//! the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `patronictl [-c FILE] [-d URL] [-k] COMMAND`.
#[derive(Debug, Parser)]
#[command(
    name = "patronictl",
    about = "Command-line interface for interacting with a Patroni cluster (patroni-rs)",
    disable_version_flag = true
)]
pub struct Cli {
    /// Configuration file.
    #[arg(short = 'c', long = "config-file", env = "PATRONICTL_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// The DCS connect url: `etcd3://HOST:PORT[/NAMESPACE]` (etcd v3 is the one DCS patroni-rs
    /// reaches by URL; Kubernetes comes from the configuration file).
    #[arg(short = 'd', long = "dcs-url", visible_alias = "dcs", env = "DCS_URL")]
    pub dcs_url: Option<String>,
    /// Allow connections to SSL sites without certs.
    #[arg(short = 'k', long = "insecure")]
    pub insecure: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats of tables (`-f/--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// prettytable.
    Pretty,
    /// Tab-separated values.
    Tsv,
    /// A JSON list of objects.
    Json,
    /// A YAML list of mappings.
    Yaml,
    /// Same as yaml.
    Yml,
    /// The tree view (only `topology`).
    #[value(skip)]
    Topology,
}

/// `-r/--role` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// The lock holder.
    Leader,
    /// The leader, when it is not a standby leader.
    Primary,
    /// The leader of a standby cluster.
    StandbyLeader,
    /// Any member but the leader.
    Replica,
    /// Same as replica.
    Standby,
    /// Any member.
    Any,
}

/// Citus group option: accepted for compatibility, only the default works.
#[derive(Debug, Clone, Args)]
pub struct GroupArg {
    /// Citus group (not supported by patroni-rs).
    #[arg(long = "group")]
    pub group: Option<i64>,
}

/// `-W` / `-w SEC`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Auto update the screen every X seconds.
    #[arg(short = 'w', long = "watch")]
    pub watch: Option<f64>,
    /// Auto update the screen every 2 seconds.
    #[arg(short = 'W')]
    pub w: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the Patroni members for a given Patroni.
    List {
        /// Cluster names (default: scope).
        cluster_names: Vec<String>,
        #[command(flatten)]
        group: GroupArg,
        /// Show some extra information.
        #[arg(short = 'e', long = "extended")]
        extended: bool,
        /// Print timestamp.
        #[arg(short = 't', long = "timestamp")]
        timestamp: bool,
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
        format: Format,
        #[command(flatten)]
        watch: WatchArgs,
    },
    /// Prints ASCII topology for given cluster.
    Topology {
        /// Cluster names (default: scope).
        cluster_names: Vec<String>,
        #[command(flatten)]
        group: GroupArg,
        #[command(flatten)]
        watch: WatchArgs,
    },
    /// Switchover to a replica.
    Switchover {
        /// Cluster name (default: scope).
        cluster_name: Option<String>,
        #[command(flatten)]
        group: GroupArg,
        /// The name of the current leader.
        #[arg(long = "leader", visible_alias = "primary")]
        leader: Option<String>,
        /// The name of the candidate.
        #[arg(long = "candidate")]
        candidate: Option<String>,
        /// Timestamp of a scheduled switchover in unambiguous format (e.g. ISO 8601).
        #[arg(long = "scheduled")]
        scheduled: Option<String>,
        /// Do not ask for confirmation at any point.
        #[arg(long = "force")]
        force: bool,
    },
    /// Failover to a replica.
    Failover {
        /// Cluster name (default: scope).
        cluster_name: Option<String>,
        #[command(flatten)]
        group: GroupArg,
        /// The name of the candidate.
        #[arg(long = "candidate")]
        candidate: Option<String>,
        /// Do not ask for confirmation at any point.
        #[arg(long = "force")]
        force: bool,
    },
    /// Restart cluster member.
    Restart {
        /// Cluster name.
        cluster_name: String,
        /// Members (default: all with the role).
        member_names: Vec<String>,
        #[command(flatten)]
        group: GroupArg,
        /// Restart only members with this role.
        #[arg(short = 'r', long = "role", value_enum, default_value = "any")]
        role: Role,
        /// Restart a single member only.
        #[arg(long = "any")]
        any: bool,
        /// Timestamp of a scheduled restart in unambiguous format (e.g. ISO 8601).
        #[arg(long = "scheduled")]
        scheduled: Option<String>,
        /// Restart if the PostgreSQL version is less than provided (e.g. 9.5.2).
        #[arg(long = "pg-version")]
        pg_version: Option<String>,
        /// Restart if pending.
        #[arg(long = "pending")]
        pending: bool,
        /// Return error and fail over if necessary when restarting takes longer than this.
        #[arg(long = "timeout")]
        timeout: Option<String>,
        /// Do not ask for confirmation at any point.
        #[arg(long = "force")]
        force: bool,
    },
    /// Reload cluster member configuration.
    Reload {
        /// Cluster name.
        cluster_name: String,
        /// Members (default: all with the role).
        member_names: Vec<String>,
        #[command(flatten)]
        group: GroupArg,
        /// Reload only members with this role.
        #[arg(short = 'r', long = "role", value_enum, default_value = "any")]
        role: Role,
        /// Do not ask for confirmation at any point.
        #[arg(long = "force")]
        force: bool,
    },
    /// Reinitialize cluster member.
    Reinit {
        /// Cluster name.
        cluster_name: String,
        /// Members to reinitialize.
        member_names: Vec<String>,
        #[command(flatten)]
        group: GroupArg,
        /// Do not ask for confirmation at any point.
        #[arg(long = "force")]
        force: bool,
        /// Get basebackup directly from leader.
        #[arg(long = "from-leader")]
        from_leader: bool,
        /// Wait until reinitialization completes.
        #[arg(long = "wait")]
        wait: bool,
    },
    /// Show the leader's base-backup schedule; `--now` starts a backup (patroni-rs only).
    Backup {
        /// Cluster name (default: scope).
        cluster_name: Option<String>,
        #[command(flatten)]
        group: GroupArg,
        /// Start a base backup on the leader now.
        #[arg(long = "now")]
        now: bool,
        /// Print the leader's `GET /backup` document as JSON.
        #[arg(long = "json")]
        json: bool,
    },
    /// Discard scheduled events.
    Flush {
        /// Cluster name.
        cluster_name: String,
        /// Members, then the target: `restart` or `switchover`.
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
        #[command(flatten)]
        group: GroupArg,
        /// Flush only members with this role.
        #[arg(short = 'r', long = "role", value_enum, default_value = "any")]
        role: Role,
        /// Do not ask for confirmation at any point.
        #[arg(long = "force")]
        force: bool,
    },
    /// Edit cluster configuration.
    EditConfig {
        /// Cluster name (default: scope).
        cluster_name: Option<String>,
        #[command(flatten)]
        group: GroupArg,
        /// Do not show changes.
        #[arg(short = 'q', long = "quiet")]
        quiet: bool,
        /// Set specific configuration value. Can be specified multiple times.
        #[arg(short = 's', long = "set")]
        set: Vec<String>,
        /// Set specific PostgreSQL parameter value. Shorthand for -s postgresql.parameters.
        #[arg(short = 'p', long = "pg")]
        pg: Vec<String>,
        /// Apply configuration from file. Use - for stdin.
        #[arg(long = "apply")]
        apply: Option<String>,
        /// Apply configuration from file, replacing existing configuration. Use - for stdin.
        #[arg(long = "replace")]
        replace: Option<String>,
        /// Do not ask for confirmation at any point.
        #[arg(long = "force")]
        force: bool,
    },
    /// Show cluster configuration.
    ShowConfig {
        /// Cluster name (default: scope).
        cluster_name: Option<String>,
        #[command(flatten)]
        group: GroupArg,
    },
    /// Disable auto failover.
    Pause {
        /// Cluster name (default: scope).
        cluster_name: Option<String>,
        #[command(flatten)]
        group: GroupArg,
        /// Wait until pause is applied on all nodes.
        #[arg(long = "wait")]
        wait: bool,
    },
    /// Resume auto failover.
    Resume {
        /// Cluster name (default: scope).
        cluster_name: Option<String>,
        #[command(flatten)]
        group: GroupArg,
        /// Wait until pause is cleared on all nodes.
        #[arg(long = "wait")]
        wait: bool,
    },
    /// Show the history of failovers/switchovers.
    History {
        /// Cluster name (default: scope).
        cluster_name: Option<String>,
        #[command(flatten)]
        group: GroupArg,
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
        format: Format,
    },
    /// Remove cluster from DCS.
    Remove {
        /// Cluster name.
        cluster_name: String,
        #[command(flatten)]
        group: GroupArg,
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
        format: Format,
    },
    /// Generate a dsn for the provided member, defaults to a dsn of the leader.
    Dsn {
        /// Cluster name (default: scope).
        cluster_name: Option<String>,
        #[command(flatten)]
        group: GroupArg,
        /// Give a dsn of any member with this role.
        #[arg(short = 'r', long = "role", value_enum)]
        role: Option<Role>,
        /// Generate a dsn for this member.
        #[arg(short = 'm', long = "member")]
        member: Option<String>,
    },
    /// Query a Patroni PostgreSQL member.
    Query {
        /// Cluster name (default: scope).
        cluster_name: Option<String>,
        #[command(flatten)]
        group: GroupArg,
        /// Output format (pretty, tsv, json, yaml).
        #[arg(long = "format", value_enum, default_value = "tsv")]
        format: Format,
        /// Execute the SQL commands from this file.
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Force password prompt.
        #[arg(long = "password")]
        password: bool,
        /// Database user name.
        #[arg(short = 'U', long = "username")]
        username: Option<String>,
        #[command(flatten)]
        watch: WatchArgs,
        /// The role of the query.
        #[arg(short = 'r', long = "role", value_enum)]
        role: Option<Role>,
        /// Query a specific member.
        #[arg(short = 'm', long = "member")]
        member: Option<String>,
        /// The column delimiter.
        #[arg(long = "delimiter", default_value = "\t")]
        delimiter: String,
        /// The SQL commands to execute.
        #[arg(short = 'c', long = "command")]
        command: Option<String>,
        /// Database name to connect to.
        #[arg(short = 'd', long = "dbname")]
        dbname: Option<String>,
    },
    /// Demote cluster to a standby cluster.
    DemoteCluster {
        /// Cluster name (default: scope).
        cluster_name: Option<String>,
        /// Do not ask for confirmation at any point.
        #[arg(long = "force")]
        force: bool,
        /// Address of the remote node.
        #[arg(long = "host")]
        host: Option<String>,
        /// Port of the remote node.
        #[arg(long = "port")]
        port: Option<i64>,
        /// Command to restore WAL records from the remote primary.
        #[arg(long = "restore-command")]
        restore_command: Option<String>,
        /// Name of the slot on the remote node to use for replication.
        #[arg(long = "primary-slot-name")]
        primary_slot_name: Option<String>,
    },
    /// Promote cluster, make it run standalone.
    PromoteCluster {
        /// Cluster name (default: scope).
        cluster_name: Option<String>,
        /// Do not ask for confirmation at any point.
        #[arg(long = "force")]
        force: bool,
    },
    /// Output version of patronictl command or a running Patroni instance.
    Version {
        /// Cluster whose members to ask.
        cluster_name: Option<String>,
        /// Members to ask (default: all).
        member_names: Vec<String>,
        #[command(flatten)]
        group: GroupArg,
    },
}

// === impl Role ===

impl Role {
    /// The name as written on the command line (`repr` in Patroni's messages).
    pub fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Primary => "primary",
            Role::StandbyLeader => "standby-leader",
            Role::Replica => "replica",
            Role::Standby => "standby",
            Role::Any => "any",
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// The clap definition is consistent.
    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    /// Options parse as Patroni's click definitions accept them.
    #[test]
    fn parses_patroni_style_invocations() {
        let cli = Cli::try_parse_from([
            "patronictl",
            "-c",
            "x.yml",
            "switchover",
            "ha",
            "--primary",
            "m0",
            "--candidate",
            "m1",
            "--force",
        ])
        .expect("parses");
        assert!(matches!(
            cli.command,
            Command::Switchover { force: true, .. }
        ));
        let cli = Cli::try_parse_from(["patronictl", "flush", "ha", "m0", "m1", "restart"])
            .expect("parses");
        let Command::Flush { args, .. } = cli.command else {
            panic!("flush")
        };
        assert_eq!(args, ["m0", "m1", "restart"]);
        let cli = Cli::try_parse_from(["patronictl", "list", "-f", "json", "-W"]).expect("parses");
        assert!(matches!(
            cli.command,
            Command::List {
                format: Format::Json,
                ..
            }
        ));
        let cli = Cli::try_parse_from([
            "patronictl",
            "demote-cluster",
            "beta",
            "--host",
            "10.0.0.9",
            "--port",
            "5433",
            "--primary-slot-name",
            "b",
            "--force",
        ])
        .expect("parses");
        assert!(matches!(
            cli.command,
            Command::DemoteCluster {
                port: Some(5433),
                force: true,
                ..
            }
        ));
        let cli =
            Cli::try_parse_from(["patronictl", "promote-cluster", "--force"]).expect("parses");
        assert!(matches!(
            cli.command,
            Command::PromoteCluster {
                cluster_name: None,
                force: true
            }
        ));
        assert!(
            Cli::try_parse_from(["patronictl", "demote-cluster", "--port", "x"]).is_err(),
            "a port is an integer"
        );
        assert!(Cli::try_parse_from(["patronictl", "restart"]).is_err());
        assert!(Cli::try_parse_from(["patronictl", "list", "-f", "topology"]).is_err());
        assert!(Cli::try_parse_from(["patronictl", "dsn", "-r", "master"]).is_err());
    }
}
