//! `cargo xtask`: developer automation for patroni-rs.
//!
//! - `cargo xtask test`: lints, then every test, against one lab (a real
//!   control plane and test hosts) started for the run and stopped after it.
//! - `cargo xtask lab up|exec|down`: a lab to poke at by hand.
//! - `cargo xtask demo [--node] [down]`: a local HA cluster on the lab (`--node`: pods of
//!   its real node, from the image and the manifests).
//! - `cargo xtask bench`: HA timings and footprint, into `docs/benchmarks.md`.
//! - `cargo xtask nemesis`: fault injection with a safety checker, into a markdown report.
//! - `cargo xtask image`: the container image, as an OCI archive (no Docker, no registry).

#![allow(
    clippy::disallowed_types,
    reason = "the test harness measures real elapsed time (std::time::Instant)"
)]

mod bench;
mod cluster;
mod demo;
mod demo_node;
mod image;
mod lab;
mod nemesis;
mod test;
mod test_run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Developer automation for patroni-rs.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run `cargo fmt --check`, clippy and every test against a fresh lab.
    Test(test::TestArgs),
    /// Start, use and stop a lab by hand.
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// Start a local 3-member HA cluster (`demo down` stops it).
    Demo(demo::DemoArgs),
    /// Measure failover, switchover, drain, footprint; write docs/benchmarks.md.
    Bench(bench::BenchArgs),
    /// Inject faults into a 3-member cluster and check safety and recovery (docs/nemesis.md).
    Nemesis(nemesis::NemesisArgs),
    /// Build the container image as an OCI archive (mmdebstrap + umoci, no Docker).
    Image(image::ImageArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // tokio-postgres logs every server notice (the nemesis' connections see
                // many shutdowns) at INFO.
                "info,tokio_postgres=warn".into()
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) => test::run(args),
        Command::Lab(cmd) => lab::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Image(args) => image::run(args),
        Command::Nemesis(args) => nemesis::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The command line definition is consistent.
    #[test]
    fn cli_definition_is_valid() {
        super::Cli::command().debug_assert();
    }
}
