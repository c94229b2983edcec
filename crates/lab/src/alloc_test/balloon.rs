//! Phase 5 of the allocation test: memory taken back through the guests'
//! balloons when the host's memory is contended, and given back when the
//! agent lets go. A second agent (balloons through the lab host's
//! libvirt) divides a memory capacity of 60 % of what the three QEMUs hold;
//! the guests must shrink by at least [`MIN_SHRINK_MIB`] each, keep
//! running their workload while shrunk, and have all their memory back
//! after the agent releases them.

use super::{say, Guest};
use crate::error::Result;
use crate::selftest::meter;
use keel_alloc::agent::{Agent, AgentConfig, Manage, BALLOON_STEP_BYTES};
use keel_alloc::balloon::{Balloon, BalloonState, VirshBalloon};
use keel_alloc::observe::ProcSource;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// Each guest must give back at least this much, MiB.
pub const MIN_SHRINK_MIB: f64 = 16.0;
/// The memory capacity, as a fraction of what the QEMUs hold.
pub const CAPACITY_FRACTION: f64 = 0.6;
const MIB: f64 = 1024.0 * 1024.0;

/// What the balloon phase measured (MiB throughout).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BalloonPhase {
    /// The memory capacity the agent divided.
    pub capacity_mib: f64,
    /// Guest -> configured memory.
    pub configured_mib: BTreeMap<String, f64>,
    /// Guest -> memory it used by its own statistics, before.
    pub guest_used_mib: BTreeMap<String, Option<f64>>,
    /// Guest -> the balloon target the agent last set.
    pub target_mib: BTreeMap<String, f64>,
    /// Guest -> memory it had once every balloon had reached its target
    /// (`actual`).
    pub contended_mib: BTreeMap<String, f64>,
    /// Guest -> whether its workload kept making progress while shrunk.
    pub ticking: BTreeMap<String, bool>,
    /// Guest -> memory it had after the agent released it.
    pub restored_mib: BTreeMap<String, f64>,
    /// Seconds from the agent's first step until every balloon had
    /// reached its target (and given back at least [`MIN_SHRINK_MIB`]).
    pub shrink_seconds: Option<f64>,
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Polls every guest's balloon until `done` holds for all (or `limit`).
fn poll_until(
    balloon: &mut VirshBalloon,
    guests: &[Guest],
    limit: Duration,
    done: impl Fn(&str, &BalloonState) -> bool,
) -> BTreeMap<String, BalloonState> {
    let start = Instant::now();
    loop {
        let states: BTreeMap<String, BalloonState> = guests
            .iter()
            .filter_map(|g| Some((g.name.clone(), balloon.state(&g.name)?)))
            .collect();
        let all = states.len() == guests.len() && states.iter().all(|(n, s)| done(n, s));
        if all || start.elapsed() >= limit {
            return states;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs the phase; failed checks go to `failures`.
pub(super) fn run(
    guests: &[Guest],
    log: &mut dyn Write,
    failures: &mut Vec<String>,
) -> Result<BalloonPhase> {
    let uri = guests[0].uri.clone();
    let mut phase = BalloonPhase::default();
    let mut balloon = VirshBalloon { uri: uri.clone() };
    // The guests report statistics every 2 s once their driver is up.
    let before = poll_until(&mut balloon, guests, Duration::from_secs(20), |_, s| {
        s.guest_used_bytes.is_some()
    });
    let procs = ProcSource::default().scan();
    let mut held = 0.0;
    for g in guests {
        let Some(p) = procs.get(&g.name) else {
            failures.push(format!("balloon: no QEMU process named {}", g.name));
            return Ok(phase);
        };
        held += p.rss_bytes;
        let configured = p.guest_memory_bytes.unwrap_or(0.0);
        phase
            .configured_mib
            .insert(g.name.clone(), configured / MIB);
        let used = before.get(&g.name).and_then(|s| s.guest_used_bytes);
        phase
            .guest_used_mib
            .insert(g.name.clone(), used.map(|u| round1(u / MIB)));
        if used.is_none() {
            failures.push(format!(
                "balloon: {} reports no balloon statistics (is virtio_balloon in the lab image? `keel lab down` and up again)",
                g.name
            ));
        }
    }
    if !failures.is_empty() {
        return Ok(phase);
    }
    let capacity = held * CAPACITY_FRACTION;
    phase.capacity_mib = round1(capacity / MIB);
    say(
        log,
        format_args!(
            "phase 5: memory contended ({:.0} MiB for QEMUs holding {:.0} MiB): balloons first",
            capacity / MIB,
            held / MIB
        ),
    );
    let text: String = guests
        .iter()
        .map(|g| format!("[[vm]]\nname = \"{}\"\n", g.name))
        .collect();
    let policy = super::policy(&text)?;
    let cfg = AgentConfig {
        interval_seconds: 1.0,
        cpu_cores: Some(1.0),
        memory_bytes: Some(capacity),
        manage: Manage::Configured,
        libvirt_uri: Some(uri.clone()),
        policy,
        ..AgentConfig::default()
    };
    let mut agent = Agent::new(cfg, ProcSource::default(), VirshBalloon { uri });
    // Shrunk: given back enough, and at its target (within the agent's
    // step, under which it does not move a balloon).
    let shrunk = |name: &str, s: &BalloonState, phase: &BalloonPhase| {
        let mib = s.actual_bytes / MIB;
        let configured = phase.configured_mib.get(name).copied().unwrap_or(0.0);
        let target = phase.target_mib.get(name).copied().unwrap_or(configured);
        mib <= configured - MIN_SHRINK_MIB && (mib - target).abs() <= BALLOON_STEP_BYTES / MIB
    };
    let start = Instant::now();
    let mut errors = Vec::new();
    let mut states = BTreeMap::new();
    while start.elapsed() < Duration::from_secs(40) {
        let r = agent.step(start.elapsed().as_secs_f64());
        errors.extend(r.errors);
        for v in &r.vms {
            if let Some(t) = v.balloon_target_bytes {
                phase.target_mib.insert(v.name.clone(), round1(t / MIB));
            }
        }
        states = poll_until(&mut balloon, guests, Duration::ZERO, |_, _| true);
        if states.len() == guests.len() && states.iter().all(|(n, s)| shrunk(n, s, &phase)) {
            phase.shrink_seconds = Some(round1(start.elapsed().as_secs_f64()));
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    for (n, s) in &states {
        phase
            .contended_mib
            .insert(n.clone(), round1(s.actual_bytes / MIB));
    }
    for g in guests {
        let alive = meter::advancing(&g.serial, Duration::from_secs(10));
        phase.ticking.insert(g.name.clone(), alive);
    }
    let end = agent.release_all();
    errors.extend(end.errors);
    let restored = poll_until(&mut balloon, guests, Duration::from_secs(20), |n, s| {
        s.actual_bytes / MIB >= phase.configured_mib.get(n).copied().unwrap_or(0.0) - 1.0
    });
    for (n, s) in &restored {
        phase
            .restored_mib
            .insert(n.clone(), round1(s.actual_bytes / MIB));
    }
    say(
        log,
        format_args!(
            "balloons: configured {:?} MiB, target {:?}, contended {:?}, restored {:?}",
            phase.configured_mib, phase.target_mib, phase.contended_mib, phase.restored_mib
        ),
    );
    errors.sort();
    errors.dedup();
    if !errors.is_empty() {
        failures.push(format!("balloon: the agent reported errors: {errors:?}"));
    }
    if phase.shrink_seconds.is_none() {
        failures.push(format!(
            "balloon: not every guest reached its target, {MIN_SHRINK_MIB} MiB or more below its size, within 40 s: {:?} MiB of {:?}, targets {:?}",
            phase.contended_mib, phase.configured_mib, phase.target_mib
        ));
    }
    if let Some((n, _)) = phase.ticking.iter().find(|(_, alive)| !**alive) {
        failures.push(format!("balloon: {n} stopped making progress while shrunk"));
    }
    for (n, c) in &phase.configured_mib {
        let back = phase.restored_mib.get(n).copied().unwrap_or(0.0);
        if back < c - 1.0 {
            failures.push(format!(
                "balloon: {n} has {back} MiB after the release, not its {c} MiB"
            ));
        }
    }
    Ok(phase)
}
