//! The `keel` command: thin commands over Keel's layers. It parses
//! arguments, calls the libraries and formats what they return; it holds no
//! logic of its own.
//!
//! Exit codes: 0 success, 1 a command failed (bad input, failed run),
//! 2 bad usage (clap), 3 `keel plan` made a plan but left mandatory moves
//! unresolved.
#![forbid(unsafe_code)]

mod agent_cmd;
mod agent_link;
mod balance_cmd;
mod bench_cmd;
mod bench_suite;
mod gen_cmd;
mod lab_cmd;
mod output;
mod plan_cmd;
mod reference;
mod serve_cmd;
mod sim_cmd;
mod sim_days;
mod toml_input;
mod why_cmd;

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
    /// Generate synthetic inputs: `keel gen cluster --hosts N --vms M --seed S`.
    Gen(gen_cmd::GenArgs),
    /// Plan one balancing round for a cluster state and print the moves.
    ///
    /// Reads the state (JSON, as `keel gen cluster` writes it) and optional
    /// rules (TOML, see examples/rules.toml), plans with Keel's balancer (or
    /// the exact mode, or a baseline), and prints the moves by wave, the
    /// imbalance before and after, the predicted host loads, the mandatory
    /// moves that cannot be made, and plan_ms (the planning call alone).
    ///
    /// Exit codes: 0 a plan was made; 1 bad input (the message names the
    /// file and line, or the item at fault); 2 bad usage; 3 a plan was made
    /// and printed, but some mandatory moves (evacuations, broken hard rules)
    /// are unresolved: they cannot be made without breaking a rule.
    Plan(plan_cmd::PlanArgs),
    /// A real lab of QEMU guests on namespaced hosts, each with its own
    /// libvirtd: `keel lab up --hosts N --vms M`, `keel lab status`,
    /// `keel lab down` (needs root; see docs/lab.md).
    Lab(lab_cmd::LabArgs),
    /// Run the daemon: control loop, REST API (/api/v1), /metrics, bearer
    /// token in the data directory. With no config: a simulated cluster
    /// replaying the bundled PlanetLab day in accelerated time (see
    /// docs/daemon.md).
    Serve(serve_cmd::ServeArgs),
    /// Run the per-host allocation agent: every interval, divide this
    /// host's CPU, memory and disk among its QEMU VMs by the policy in the
    /// config file (shares, reservations, limits, pools) and write the
    /// result to their cgroups; undo everything on exit (see
    /// docs/allocation.md). Needs root.
    Agent(agent_cmd::AgentArgs),
    /// Why did Keel move a VM? Asks `keel serve` for the VM's migrations and
    /// prints, for each, the round and plan that decided it, the reason,
    /// benefit and cost, the inputs the decision used and the outcome.
    Why(why_cmd::WhyArgs),
    /// Benchmarks: `keel bench balance [--suite FILE]` runs every balancer
    /// on every setup of a suite and prints one table and the verdict.
    Bench(bench_cmd::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => sim_cmd::run(args).map(|()| ExitCode::SUCCESS),
        Command::Reference(args) => reference::run(args).map(|()| ExitCode::SUCCESS),
        Command::Gen(args) => gen_cmd::run(args).map(|()| ExitCode::SUCCESS),
        Command::Plan(args) => plan_cmd::run(args),
        Command::Lab(args) => lab_cmd::run(args).map(|()| ExitCode::SUCCESS),
        Command::Serve(args) => serve_cmd::run(args).map(|()| ExitCode::SUCCESS),
        Command::Agent(args) => agent_cmd::run(args).map(|()| ExitCode::SUCCESS),
        Command::Why(args) => why_cmd::run(args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench_cmd::run(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("keel: error: {err:#}");
            ExitCode::from(1)
        }
    }
}
