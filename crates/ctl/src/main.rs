//! `patronictl`: Patroni 4.x's cluster management command line for patroni-rs clusters on
//! the Kubernetes DCS. It reads the cluster straight from Kubernetes, acts on members through
//! their REST API, and writes the DCS itself only for `edit-config`, `remove` and the
//! fallbacks Patroni has (`switchover`, `flush switchover`).
//!
//! Exit codes as click's: 0 success, 1 `Error: <message>` (and `Aborted!`), 2 bad usage.

mod cli;
mod commands;
mod context;
mod edit;
mod http;
mod output;
mod prompt;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use patroni_config::Environment;

use crate::cli::Cli;
use crate::context::Ctl;

/// A usage error found after parsing (exit 2, like click's `BadParameter`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: Environment = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    if let cli::Command::Version {
        cluster_name: None, ..
    } = &cli.command
    {
        println!("patronictl version {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: failed to start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let ctl = Ctl::load(
            cli.config_file.as_deref(),
            cli.dcs_url.as_deref(),
            cli.insecure,
            &env,
        )?;
        commands::run(&ctl, cli.command).await
    });
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<prompt::Aborted>().is_some() => {
            eprintln!("Aborted!");
            ExitCode::from(1)
        }
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            let mut cmd = Cli::command();
            eprintln!("{}", cmd.render_usage());
            eprintln!("Error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}
