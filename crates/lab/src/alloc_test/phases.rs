//! The four phases of the allocation test and their checks.

use super::{
    policy, say, virsh, Guest, Phase, Report, LIMIT_CORES, LIMIT_TOLERANCE,
    MIN_WORK_CONSERVING_GAIN, RESERVATION_CORES, SHARES_TOLERANCE,
};
use crate::error::Result;
use crate::selftest::meter;
use keel_alloc::agent::{Agent, StepReport};
use keel_alloc::balloon::NoBalloon;
use keel_alloc::config::AllocConfig;
use keel_alloc::observe::ProcSource;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

/// What the phases share.
pub(super) struct Ctx<'a> {
    pub guests: &'a [Guest],
    pub agent: &'a Mutex<Agent<NoBalloon>>,
    pub reports: &'a Mutex<Vec<StepReport>>,
    pub opts: &'a super::Options,
}

impl Ctx<'_> {
    fn set_policy(&self, p: AllocConfig) {
        if let Ok(mut a) = self.agent.lock() {
            a.set_policy(p);
        }
    }

    fn name(&self, k: usize) -> &str {
        &self.guests[k].name
    }

    /// Waits for the agent to settle, then measures progress and CPU time
    /// over the window; records what the agent last enforced.
    fn measure(&self) -> Phase {
        std::thread::sleep(self.opts.settle);
        let src = ProcSource::default();
        let cpu_now = || -> BTreeMap<String, f64> {
            src.scan()
                .into_iter()
                .map(|(n, p)| (n, p.counters.cpu_run_seconds))
                .collect()
        };
        let serials: Vec<PathBuf> = self.guests.iter().map(|g| g.serial.clone()).collect();
        let (t0, c0) = (Instant::now(), cpu_now());
        let rates = meter::progress_rates(&serials, self.opts.window);
        let (wall, c1) = (t0.elapsed().as_secs_f64(), cpu_now());
        let mut phase = Phase::default();
        for (g, r) in self.guests.iter().zip(rates) {
            phase.progress_rate.insert(g.name.clone(), r);
            let used = c1
                .get(&g.name)
                .zip(c0.get(&g.name))
                .map_or(0.0, |(b, a)| b - a);
            phase.cpu_cores.insert(g.name.clone(), used / wall);
        }
        phase.group_core_share = phase.cpu_cores.values().sum();
        if let Some(last) = self.reports.lock().ok().and_then(|r| r.last().cloned()) {
            for v in last.vms {
                phase
                    .cpu_weight
                    .insert(v.name.clone(), v.settings.cpu_weight);
                phase
                    .entitlement_cores
                    .insert(v.name.clone(), v.entitlement.cpu_cores);
                phase
                    .cpu_limit_cores
                    .insert(v.name, v.settings.cpu_limit_cores);
            }
        }
        phase
    }
}

fn rate(p: &Phase, vm: &str) -> Option<f64> {
    p.progress_rate.get(vm).copied().flatten()
}

/// Normalises so that the lowest is 1.
fn normalise(x: &[f64]) -> Vec<f64> {
    let lo = x.iter().copied().fold(f64::INFINITY, f64::min);
    x.iter().map(|v| v / lo).collect()
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Runs the phases, filling `report`; an `Err` if a guest could not be
/// suspended or resumed.
pub(super) fn run_all(ctx: &Ctx, report: &mut Report, log: &mut dyn Write) -> Result<()> {
    let (a, b, c) = (ctx.name(0), ctx.name(1), ctx.name(2));
    let g = ctx.guests;

    // 0. Calibration: equal shares, all busy. Identical guests do not run
    // equally fast on one core: where the host's caches and memory put
    // each QEMU makes one up to 10 % slower per CPU second than another,
    // for the whole run (seen in CI). Each guest's rate under an equal
    // split is its yardstick for the phases that compare guests.
    ctx.set_policy(policy(&format!(
        "[[vm]]\nname = \"{a}\"\n[[vm]]\nname = \"{b}\"\n[[vm]]\nname = \"{c}\"\n"
    ))?);
    say(
        log,
        format_args!("phase 0: equal shares, all busy (calibration)"),
    );
    let p0 = ctx.measure();
    let equal: Option<Vec<f64>> = [a, b, c].iter().map(|v| rate(&p0, v)).collect();
    if equal.is_none() {
        report.failures.push(format!(
            "calibration: a guest made no measurable progress: {:?}",
            p0.progress_rate
        ));
    }
    // A guest's progress in multiples of its own rate under the equal split.
    let relative = |p: &Phase| -> Option<Vec<f64>> {
        let eq = equal.as_ref()?;
        [a, b, c]
            .iter()
            .zip(eq)
            .map(|(v, e)| Some(rate(p, v)? / e))
            .collect()
    };

    // 1. Shares 4:2:1.
    ctx.set_policy(policy(&format!(
        "[[vm]]\nname = \"{a}\"\nshares = 4000\n[[vm]]\nname = \"{b}\"\nshares = 2000\n[[vm]]\nname = \"{c}\"\nshares = 1000\n"
    ))?);
    say(log, format_args!("phase 1: shares 4:2:1, all busy"));
    let p1 = ctx.measure();
    let raw: Option<Vec<f64>> = [a, b, c].iter().map(|v| rate(&p1, v)).collect();
    report.shares_ratio_raw = raw.map(|r| normalise(&r).into_iter().map(round3).collect());
    let cpu: Vec<f64> = [a, b, c].iter().map(|v| p1.cpu_cores[*v]).collect();
    report.shares_ratio_cpu = normalise(&cpu).into_iter().map(round3).collect();
    match relative(&p1) {
        Some(r) => {
            let n = normalise(&r);
            report.shares_ratio = n.iter().copied().map(round3).collect();
            let bad = n
                .iter()
                .zip([4.0, 2.0, 1.0])
                .any(|(got, want)| (got / want - 1.0).abs() > SHARES_TOLERANCE);
            if bad {
                report.failures.push(format!(
                    "shares: progress ratio {:?}, not within {}% of 4:2:1",
                    report.shares_ratio,
                    SHARES_TOLERANCE * 100.0
                ));
            }
        }
        None => report.failures.push(format!(
            "shares: a guest made no measurable progress: {:?}",
            p1.progress_rate
        )),
    }
    say(
        log,
        format_args!(
            "shares ratio {:?} (uncalibrated {:?}, cpu {:?})",
            report.shares_ratio, report.shares_ratio_raw, report.shares_ratio_cpu
        ),
    );

    // 2. Work-conserving: the 4-share guest idles (suspended).
    virsh(&g[0].uri, "suspend", a)?;
    say(log, format_args!("phase 2: {a} suspended (idle)"));
    let p2 = ctx.measure();
    virsh(&g[0].uri, "resume", a)?;
    let pair = |p: &super::Phase| Some(rate(p, b)? + rate(p, c)?);
    report.work_conserving_gain = pair(&p2).zip(pair(&p1)).map(|(x, y)| round3(x / y));
    match report.work_conserving_gain {
        Some(gain) if gain >= MIN_WORK_CONSERVING_GAIN => {}
        other => report.failures.push(format!(
            "work-conserving: the others' rate rose {other:?} times (needs >= {MIN_WORK_CONSERVING_GAIN})"
        )),
    }
    say(
        log,
        format_args!("work-conserving gain {:?}", report.work_conserving_gain),
    );

    // 3. Reservation of half a core against two greedy neighbours.
    ctx.set_policy(policy(&format!(
        "[[vm]]\nname = \"{a}\"\ncpu = {{ reservation = {RESERVATION_CORES} }}\n[[vm]]\nname = \"{b}\"\n[[vm]]\nname = \"{c}\"\n"
    ))?);
    say(
        log,
        format_args!("phase 3: {a} reserves {RESERVATION_CORES} core, all busy"),
    );
    let p3 = ctx.measure();
    let all: Option<f64> = [a, b, c].iter().map(|v| rate(&p3, v)).sum();
    report.reservation_share_raw = rate(&p3, a).zip(all).map(|(x, t)| round3(x / t));
    // Progress in each guest's own yardstick, the reserved one's part of it.
    report.reservation_share = relative(&p3).map(|r| round3(r[0] / r.iter().sum::<f64>()));
    match report.reservation_share {
        Some(s) if s >= RESERVATION_CORES - LIMIT_TOLERANCE => {}
        other => report.failures.push(format!(
            "reservation: {a} got {other:?} of the group's progress (needs >= {})",
            RESERVATION_CORES - LIMIT_TOLERANCE
        )),
    }
    say(
        log,
        format_args!(
            "reservation share {:?} (uncalibrated {:?})",
            report.reservation_share, report.reservation_share_raw
        ),
    );

    // 4. Limit of a fifth of a core, the neighbours idle.
    ctx.set_policy(policy(&format!(
        "[[vm]]\nname = \"{a}\"\ncpu = {{ limit = {LIMIT_CORES} }}\n[[vm]]\nname = \"{b}\"\n[[vm]]\nname = \"{c}\"\n"
    ))?);
    virsh(&g[1].uri, "suspend", b)?;
    virsh(&g[2].uri, "suspend", c)?;
    say(
        log,
        format_args!("phase 4: {a} limited to {LIMIT_CORES} core, {b} and {c} suspended"),
    );
    let p4 = ctx.measure();
    virsh(&g[1].uri, "resume", b)?;
    virsh(&g[2].uri, "resume", c)?;
    let share = p4.cpu_cores[a];
    report.limit_share = Some(round3(share));
    if (share - LIMIT_CORES).abs() > LIMIT_TOLERANCE {
        report.failures.push(format!(
            "limit: {a} used {share:.3} core (needs {LIMIT_CORES} +- {LIMIT_TOLERANCE})"
        ));
    }
    say(log, format_args!("limit share {:.3}", share));

    for (k, p) in [
        ("0_equal_shares", p0),
        ("1_shares_4_2_1", p1),
        ("2_work_conserving", p2),
        ("3_reservation", p3),
        ("4_limit", p4),
    ] {
        report.phases.insert(k.into(), p);
    }
    Ok(())
}
