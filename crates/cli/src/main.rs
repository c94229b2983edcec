//! The `keel` command: thin commands over Keel's layers. It parses
//! arguments, calls the libraries and formats what they return; it holds no
//! logic of its own.
//!
//! Exit codes: 0 success, 1 a command failed (bad input, failed run),
//! 2 bad usage (clap).
#![forbid(unsafe_code)]

mod output;
mod reference;
mod sim_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Keel: a resource scheduler and load balancer for KVM clusters, with a
/// trace-driven simulator that runs the very same decision code.
#[derive(Debug, Parser)]
#[command(name = "keel", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a consolidation policy on a workload trace (default: LR-MMT-1.2
    /// on the bundled PlanetLab day, 800 hosts).
    Sim(sim_cmd::SimArgs),
    /// Run every row of CloudSim's reference results and print Keel's figures
    /// beside CloudSim's as a Markdown report (used for docs/benchmarks.md).
    Reference(reference::ReferenceArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => sim_cmd::run(args),
        Command::Reference(args) => reference::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("keel: error: {err:#}");
            ExitCode::from(1)
        }
    }
}
