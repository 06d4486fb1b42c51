//! `patronictl`: the cluster management command line. Only `version` exists so far; the other
//! commands come with the DCS client.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "patronictl",
    about = "Command-line interface for interacting with a Patroni cluster (patroni-rs)"
)]
struct Cli {
    /// Configuration file.
    #[arg(short = 'c', long = "config-file", global = true)]
    config_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// patronictl commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Output the version of patronictl.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => println!("patronictl version {}", env!("CARGO_PKG_VERSION")),
    }
    ExitCode::SUCCESS
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
}
