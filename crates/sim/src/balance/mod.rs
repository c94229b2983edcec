//! Balancing mode's cluster: how a per-VM multi-resource trace becomes
//! identical hosts, VM sizes, per-sample demand and an initial placement
//! ([`setup`]). The run itself goes through the one control loop
//! (`keel_control::replay`), so the figures it reports describe the loop
//! `keel serve` runs; its physics (migration time, CPU served and waited,
//! memory held on both hosts) are the simulated body's
//! (`keel_drivers::sim`).

pub mod setup;
