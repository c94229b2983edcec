//! Host-local allocation: each host's resources divided among its VMs by
//! shares, reservations and limits, and enforced.
//!
//! - [`config`]: the per-VM allocation policy (shares or priority class,
//!   reservation and limit for CPU, memory and disk I/O, nested resource
//!   pools), parsed from TOML and validated with admission control.
//! - [`plan`]: entitlements from demand and the policy
//!   ([`keel_policy::balance::entitlement::divvy_tree`]), turned into
//!   per-VM [`plan::Settings`].
//! - [`cgroup`]: writes those settings to a VM's cgroup (v1 or v2),
//!   idempotently and minimally, and undoes them.
//! - [`procfs`]: finds a QEMU process's cgroup from `/proc/<pid>/cgroup`.
//!
//! - [`observe`]: each VM's QEMU process from `/proc` (demand counters,
//!   cgroup, disks); [`balloon`]: memory reclaim through the guest.
//! - [`agent`]: the per-host control loop (`keel agent`), its settings and
//!   its `[daemon]` link (the policy from `keel serve`).
//! - [`units`]: `"2GiB"`, `"1200MHz"`, `"50MB/s"`, `"500 IOPS"` in the TOML.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod agent;
pub mod balloon;
pub mod cgroup;
pub mod config;
pub mod enforce;
pub mod observe;
pub mod plan;
pub mod procfs;
pub mod units;
