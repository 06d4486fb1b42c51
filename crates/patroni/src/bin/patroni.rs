//! `patroni`: the HA agent's command line.
//!
//! It loads and validates the configuration exactly as Patroni 4.x reads it, then runs the HA
//! agent ([`patroni::agent`]) with Kubernetes as the DCS.
//!
//! Exit codes: 0 valid (`--validate-config`) or shut down on SIGTERM/SIGINT, 1 invalid
//! (`--validate-config`, as Patroni) or the agent stopped on a fatal error, 64 unusable
//! configuration when starting, 69 the agent could not be set up (DCS, binaries, API port),
//! 2 bad usage.

use std::{io::Write, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::Parser;
use patroni::{agent, exit, process_env, report};
use patroni_config::{
    Config, Environment, LoadError, Loaded, OsFilesystem, SystemCheckOptions, TcpPortProbe,
    check_system, load,
};

const PROGRAM: &str = "patroni";

/// Command-line arguments, matching Patroni's.
#[derive(Debug, Parser)]
#[command(
    name = PROGRAM,
    version,
    about = "Patroni-compatible PostgreSQL high-availability agent (patroni-rs)",
    after_help = "Without CONFIGFILE, the configuration comes from the PATRONI_CONFIGURATION variable, \
                  or else from PATRONI_* environment variables."
)]
struct Cli {
    /// Patroni configuration file, or a directory of *.yml/*.yaml files merged in name order.
    configfile: Option<PathBuf>,
    /// Validate the configuration (including ports, data directory and binaries) and exit.
    #[arg(long)]
    validate_config: bool,
    /// Ignore `listen` ports already in use. Only with --validate-config.
    #[arg(short = 'i', long, requires = "validate_config")]
    ignore_listen_port: bool,
    /// Print the local configuration (with environment overrides) as YAML. Only with
    /// --validate-config.
    #[arg(short = 'p', long = "print", requires = "validate_config")]
    print: bool,
}

fn main() -> ExitCode {
    // The fence process the agent starts (`--lease-fence DATA_DIR`, exactly: not an option of
    // the command line users see) skips the argument parser: it should touch as little of
    // this executable as it can (its resident memory is mostly the code it ran).
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let [flag, data_dir] = args.as_slice()
        && flag == patroni::fence::GUARD_FLAG
    {
        return ExitCode::from(patroni::fence::guard::run(std::path::Path::new(data_dir)));
    }
    let cli = Cli::parse();
    let env = process_env::snapshot();
    let code = if cli.validate_config {
        validate(&cli, &env)
    } else {
        start(&cli, &env)
    };
    ExitCode::from(code)
}

/// `patroni --validate-config [FILE]`.
fn validate(cli: &Cli, env: &Environment) -> u8 {
    let Some(loaded) = load_or_report(cli, env, true) else {
        return exit::INVALID;
    };
    if let Some(message) = unsupported_dcs(&loaded.config) {
        let _ = report::write_warnings(&mut std::io::stderr(), PROGRAM, &loaded.warnings);
        eprintln!("{PROGRAM}: {message}");
        return exit::INVALID;
    }
    let options = SystemCheckOptions {
        ignore_listen_port: cli.ignore_listen_port,
    };
    let problems = check_system(&loaded.config, &OsFilesystem, &TcpPortProbe, env, options);
    if !problems.is_empty() {
        let _ = report::write_problems(&mut std::io::stderr().lock(), PROGRAM, &problems);
        return exit::INVALID;
    }
    if cli.print
        && let Err(e) = print_yaml(&loaded)
    {
        eprintln!("{PROGRAM}: failed to {e:#}");
        return exit::INVALID;
    }
    exit::OK
}

/// `patroni [FILE]`: load and validate, then run the agent until it is told to stop.
fn start(cli: &Cli, env: &Environment) -> u8 {
    let Some(loaded) = load_or_report(cli, env, false) else {
        return exit::USAGE;
    };
    if let Some(message) = unsupported_dcs(&loaded.config) {
        let _ = report::write_warnings(&mut std::io::stderr(), PROGRAM, &loaded.warnings);
        eprintln!("{PROGRAM}: {message}");
        return exit::USAGE;
    }
    let config = loaded.config;
    if let Err(e) = init_tracing(&config, env) {
        let _ = report::write_warnings(&mut std::io::stderr(), PROGRAM, &loaded.warnings);
        eprintln!("{PROGRAM}: {e}");
        return exit::USAGE;
    }
    // As Patroni, configuration warnings go to the log, in its format and destination.
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let home = env
        .get("HOME")
        .map(PathBuf::from)
        .or_else(|| config.postgresql.data_dir.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/"));
    // The HA loop runs on this thread (`block_on`); one worker is enough for the rest (REST API
    // connections, DCS watches, log forwarding), which is idle most of the time, and keeps the
    // API answering while the loop is busy. Each extra worker costs a thread stack and a malloc
    // arena of resident memory (docs/benchmarks.md, "Agent memory").
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{PROGRAM}: failed to start the async runtime: {e}");
            return exit::UNAVAILABLE;
        }
    };
    let reloader: agent::operator::Reloader = {
        let path = cli.configfile.clone();
        let env = env.clone();
        Box::new(move || match load(path.as_deref(), &env) {
            Ok(loaded) => Ok(loaded.config),
            Err(LoadError::Invalid(invalid)) => {
                let problems: Vec<String> =
                    invalid.errors.iter().map(ToString::to_string).collect();
                Err(anyhow::anyhow!(
                    "invalid configuration: {}",
                    problems.join("; ")
                ))
            }
            Err(LoadError::Source(e)) => Err(anyhow::Error::from(e)),
        })
    };
    match runtime.block_on(agent::run(config, home, env, reloader)) {
        Ok(agent::Outcome::Stopped) => exit::OK,
        Ok(agent::Outcome::Fatal(reason)) => {
            tracing::error!("the agent stopped: {reason}");
            exit::INVALID
        }
        Err(e) => {
            tracing::error!("failed to {e:#}");
            exit::UNAVAILABLE
        }
    }
}

/// Logs as the `log` section asks (patroni::logging): Patroni's format, to stderr or to a
/// rotated `log.dir/patroni.log`; `RUST_LOG` overrides `log.level` and `log.loggers`.
///
/// # Errors
/// `log.dir` cannot be created or `patroni.log` in it cannot be opened.
fn init_tracing(config: &Config, env: &Environment) -> Result<(), String> {
    use patroni::logging::{PatroniFormat, RotatingFile, RotatingWriter, filter_directives};
    let (directives, mut warnings) = filter_directives(&config.log);
    let filter = env
        .get("RUST_LOG")
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(&directives));
    let (format, format_warnings) = PatroniFormat::from_config(&config.log);
    warnings.extend(format_warnings);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .event_format(format);
    let _ = match &config.log.dir {
        Some(dir) => {
            let log = &config.log;
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("log.dir: create {}: {e}", dir.display()))?;
            let file = RotatingFile::new(dir, log.file_size, log.file_num, log.mode);
            let mut writer = RotatingWriter::new(file);
            std::io::Write::write_all(&mut writer, b"")
                .map_err(|e| format!("log.dir: open {}/patroni.log: {e}", dir.display()))?;
            builder.with_writer(writer).try_init()
        }
        None => builder.with_writer(std::io::stderr).try_init(),
    };
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(())
}

/// Loads the configuration, printing warnings, and every problem when it fails.
fn load_or_report(cli: &Cli, env: &Environment, print_warnings: bool) -> Option<Loaded> {
    let stderr = &mut std::io::stderr().lock();
    match load(cli.configfile.as_deref(), env) {
        Ok(loaded) => {
            if print_warnings {
                let _ = report::write_warnings(stderr, PROGRAM, &loaded.warnings);
            }
            Some(loaded)
        }
        Err(LoadError::Invalid(invalid)) => {
            let _ = report::write_warnings(stderr, PROGRAM, &invalid.warnings);
            let _ = report::write_problems(stderr, PROGRAM, &invalid.errors);
            None
        }
        Err(LoadError::Source(e)) => {
            let _ = writeln!(stderr, "{PROGRAM}: failed to {:#}", anyhow::Error::from(e));
            None
        }
    }
}

/// The refusal message for a DCS this build has no backend for.
fn unsupported_dcs(config: &Config) -> Option<String> {
    let kind = config.dcs.kind();
    let supported: Vec<&str> = patroni_config::DcsKind::ALL
        .into_iter()
        .filter(|k| patroni_dcs::supports(*k))
        .map(patroni_config::DcsKind::section)
        .collect();
    (!patroni_dcs::supports(kind)).then(|| {
        format!(
            "the \"{kind}\" DCS is not supported yet; patroni-rs supports {}",
            supported.join(", ")
        )
    })
}

fn print_yaml(loaded: &Loaded) -> anyhow::Result<()> {
    let yaml = serde_yaml_ng::to_string(&loaded.raw).context("render the configuration as YAML")?;
    std::io::stdout()
        .write_all(yaml.as_bytes())
        .context("write the configuration to stdout")
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

    /// -i and -p only make sense with --validate-config.
    #[test]
    fn validation_flags_require_validate_config() {
        assert!(Cli::try_parse_from(["patroni", "-i", "x.yml"]).is_err());
        assert!(Cli::try_parse_from(["patroni", "--validate-config", "-i", "-p", "x.yml"]).is_ok());
    }
}
