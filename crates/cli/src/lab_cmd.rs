//! `keel lab`: a real lab of QEMU guests on namespaced hosts, each with its
//! own libvirtd (see docs/lab.md). Thin wrapper over keel-lab.

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use keel_lab::{Accel, Lab, UpOptions};
use std::time::Duration;

/// Arguments of `keel lab`.
#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    what: LabWhat,
}

#[derive(Debug, Subcommand)]
enum LabWhat {
    /// Build the guest image, start N hosts (network + mount namespaces, a
    /// libvirtd each) and M guests round-robin; print URIs and boot times.
    /// The lab directory is $KEEL_LAB_DIR or /var/lib/keel-lab. Needs root.
    Up(UpArgs),
    /// Hosts and guests with their state and measured CPU load.
    Status {
        /// Seconds over which the CPU load is measured.
        #[arg(long, default_value_t = 3)]
        window: u64,
    },
    /// Stop and remove everything the lab created (idempotent, works after
    /// a crash of `up`).
    Down,
    /// The end-to-end proof: two CPU-bound guests share one core on h0, h1
    /// is idle; one control iteration of Keel (libvirt driver, Keel's
    /// balancer) must speed the slower guest up at least 1.6 times; then a
    /// migration whose destination QEMU is killed must leave the VM running
    /// on its source. Prints JSON; exits 1 if a check fails. Brings a lab
    /// up (and down at the end) unless one is up. Needs the `libvirt`
    /// feature (`--features keel-cli/libvirt`).
    Selftest {
        /// Leave the lab up at the end.
        #[arg(long)]
        keep: bool,
    },
    /// Host-local allocation on real guests: three CPU-bound guests pinned
    /// to one core, Keel's allocation agent enforcing shares 4:2:1, a
    /// reservation of 0.5 core, a limit of 0.2 core, and work-conserving
    /// redistribution. Prints one JSON object; exits 1 if a check fails.
    /// Brings a lab up (1 host, 3 guests; down at the end) unless one is
    /// up. Needs the `libvirt` feature, like selftest.
    AllocTest {
        /// Leave the lab up at the end.
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Args)]
struct UpArgs {
    /// Number of hosts.
    #[arg(long, default_value_t = 2)]
    hosts: usize,
    /// Number of guests.
    #[arg(long, default_value_t = 2)]
    vms: usize,
    /// Accelerator: probe KVM with a real guest and fall back to TCG (auto).
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    accel: AccelArg,
}

/// Runs `keel lab`.
pub fn run(args: LabArgs) -> Result<()> {
    let lab = Lab::from_env();
    let mut out = std::io::stdout();
    match args.what {
        LabWhat::Up(a) => {
            let accel = match a.accel {
                AccelArg::Auto => Accel::Auto,
                AccelArg::Kvm => Accel::Kvm,
                AccelArg::Tcg => Accel::Tcg,
            };
            let opts = UpOptions {
                hosts: a.hosts,
                vms: a.vms,
                accel,
            };
            if let Err(e) = keel_lab::up(&lab, opts, &mut out) {
                bail!("lab up: {e}\n(whatever was created is recorded in {}: `keel lab down` removes it)", lab.dir.join("state.json").display());
            }
        }
        LabWhat::Status { window } => {
            keel_lab::status(&lab, Duration::from_secs(window), &mut out)?
        }
        LabWhat::Down => {
            let r = keel_lab::down(&lab)?;
            for d in &r.done {
                println!("{d}");
            }
            if !r.failed.is_empty() {
                bail!("lab down left: {}", r.failed.join("; "));
            }
            println!("lab down: nothing left");
        }
        LabWhat::Selftest { keep } => selftest(&lab, keep)?,
        LabWhat::AllocTest { keep } => alloc_test(&lab, keep)?,
    }
    Ok(())
}

/// `keel lab selftest`: progress on stderr, the report as JSON on stdout.
#[cfg(feature = "libvirt")]
fn selftest(lab: &Lab, keep: bool) -> Result<()> {
    let opts = keel_lab::selftest::Options {
        keep,
        ..Default::default()
    };
    let report = keel_lab::selftest::run(lab, &opts, &mut std::io::stderr())?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !report.passed {
        bail!("lab selftest failed: {}", report.failures.join("; "));
    }
    Ok(())
}

/// Without the libvirt driver there is nothing to run the control loop with.
#[cfg(not(feature = "libvirt"))]
fn selftest(_lab: &Lab, _keep: bool) -> Result<()> {
    bail!(
        "keel lab selftest needs the libvirt driver, which this keel was built without: \
         rebuild with --features keel-cli/libvirt (needs libvirt-dev and pkg-config)"
    )
}

/// `keel lab alloc-test`: progress on stderr, the report as JSON on stdout.
#[cfg(feature = "libvirt")]
fn alloc_test(lab: &Lab, keep: bool) -> Result<()> {
    let opts = keel_lab::alloc_test::Options {
        keep,
        ..Default::default()
    };
    let report = keel_lab::alloc_test::run(lab, &opts, &mut std::io::stderr())?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !report.passed {
        bail!("lab alloc-test failed: {}", report.failures.join("; "));
    }
    Ok(())
}

/// Built without the lab's libvirt feature.
#[cfg(not(feature = "libvirt"))]
fn alloc_test(_lab: &Lab, _keep: bool) -> Result<()> {
    bail!(
        "keel lab alloc-test is built with the lab's libvirt feature, which this keel was built without: \
         rebuild with --features keel-cli/libvirt (needs libvirt-dev and pkg-config)"
    )
}
