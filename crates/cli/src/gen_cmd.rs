//! `keel gen`: synthetic inputs for the balancer (`keel gen cluster`).

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `keel gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    #[command(subcommand)]
    what: GenWhat,
}

#[derive(Debug, Subcommand)]
enum GenWhat {
    /// A synthetic cluster state (JSON, as `keel plan --state` reads it):
    /// identical hosts (32 cores, 256 GiB, 2 GB/s disk, 25 Gbit/s network)
    /// and VMs with Azure V1 flavours and CPU demand, placed by a skewed
    /// random first fit so the cluster starts unbalanced. Hosts are named
    /// host-0001, ..., VMs vm-00001, ...; the same seed gives the same cluster.
    Cluster(ClusterArgs),
}

/// Arguments of `keel gen cluster`.
#[derive(Debug, Args)]
struct ClusterArgs {
    /// Number of hosts (at least 1).
    #[arg(long)]
    hosts: usize,
    /// Number of VMs.
    #[arg(long)]
    vms: usize,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the JSON to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Runs `keel gen`.
pub fn run(args: GenArgs) -> Result<()> {
    match args.what {
        GenWhat::Cluster(args) => cluster(args),
    }
}

fn cluster(args: ClusterArgs) -> Result<()> {
    if args.hosts == 0 {
        anyhow::bail!("--hosts must be at least 1, got 0");
    }
    let snapshot = keel_sim::generate::synthetic_cluster(args.hosts, args.vms, args.seed);
    match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            serde_json::to_writer_pretty(&mut out, &snapshot)
                .map_err(anyhow::Error::from)
                .and_then(|()| Ok(writeln!(out)?))
                .and_then(|()| Ok(out.flush()?))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            serde_json::to_writer_pretty(&mut out, &snapshot)?;
            writeln!(out)?;
            out.flush()?;
        }
    }
    Ok(())
}
