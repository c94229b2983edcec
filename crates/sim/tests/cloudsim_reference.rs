//! Keel against CloudSim 3.0.3: every reference row of the PlanetLab
//! benchmark (same day, policy and file order) must print the same figures.
//!
//! The bundled day (20110303, sorted order) is always available; the other
//! days and the listFiles orders come from the shared traces, and the test
//! says loudly when it skips them.

use keel_model::WorkloadTrace;
use keel_policy::ConsolidationPolicy;
use keel_sim::{run, RunReport, SimConfig};
use keel_trace::{load_planetlab, shared_traces_dir, TraceOrder};
use std::path::Path;

/// CloudSim's printed figures for one run.
#[derive(Debug, Clone)]
struct Printed {
    energy_kwh: String,
    migrations: u64,
    slatah_pct: String,
    pdm_pct: String,
    slav_pct: String,
    overall_pct: String,
    average_pct: String,
    host_shutdowns: usize,
}

fn printed(r: &RunReport) -> Printed {
    Printed {
        energy_kwh: format!("{:.2}", r.energy_kwh),
        migrations: r.migrations,
        slatah_pct: format!("{:.2}", r.slatah * 100.0),
        pdm_pct: format!("{:.2}", r.pdm * 100.0),
        slav_pct: format!("{:.5}", r.slav * 100.0),
        overall_pct: format!("{:.2}", r.overall_sla_violation * 100.0),
        average_pct: format!("{:.2}", r.average_sla_violation * 100.0),
        host_shutdowns: r.host_shutdowns,
    }
}

fn simulate(trace: &WorkloadTrace, policy: &str) -> RunReport {
    let policy: ConsolidationPolicy = policy.parse().unwrap();
    run(trace, &SimConfig::planetlab(policy)).unwrap()
}

fn assert_identical(context: &str, ours: &RunReport, theirs: &Printed) {
    let p = printed(ours);
    let pairs = [
        (
            "energy kWh",
            p.energy_kwh.clone(),
            theirs.energy_kwh.clone(),
        ),
        (
            "migrations",
            p.migrations.to_string(),
            theirs.migrations.to_string(),
        ),
        ("SLATAH %", p.slatah_pct.clone(), theirs.slatah_pct.clone()),
        ("PDM %", p.pdm_pct.clone(), theirs.pdm_pct.clone()),
        ("SLAV %", p.slav_pct.clone(), theirs.slav_pct.clone()),
        (
            "overall SLA %",
            p.overall_pct.clone(),
            theirs.overall_pct.clone(),
        ),
        (
            "average SLA %",
            p.average_pct.clone(),
            theirs.average_pct.clone(),
        ),
        (
            "host shutdowns",
            p.host_shutdowns.to_string(),
            theirs.host_shutdowns.to_string(),
        ),
    ];
    for (what, ours, theirs) in pairs {
        assert_eq!(
            ours, theirs,
            "{context}: {what} differs from CloudSim 3.0.3"
        );
    }
}

/// Random selection is unseeded in CloudSim, so only the tolerances apply.
fn assert_within_tolerance(context: &str, ours: &RunReport, theirs: &Printed) {
    let rel = |a: f64, b: f64| ((a - b) / b).abs();
    let energy: f64 = theirs.energy_kwh.parse().unwrap();
    assert!(
        rel(ours.energy_kwh, energy) <= 0.01,
        "{context}: energy {} vs {energy}",
        ours.energy_kwh
    );
    assert!(
        rel(ours.migrations as f64, theirs.migrations as f64) <= 0.02,
        "{context}: migrations {} vs {}",
        ours.migrations,
        theirs.migrations
    );
    let slatah: f64 = theirs.slatah_pct.parse().unwrap();
    assert!(
        rel(ours.slatah * 100.0, slatah) <= 0.05,
        "{context}: SLATAH {} vs {slatah}",
        ours.slatah * 100.0
    );
    let pdm: f64 = theirs.pdm_pct.parse().unwrap();
    assert!(
        rel(ours.pdm * 100.0, pdm) <= 0.05 + 0.005 / pdm,
        "{context}: PDM {} vs {pdm}",
        ours.pdm * 100.0
    );
}

#[test]
fn bundled_day_matches_cloudsim_sorted_order() {
    let trace = keel_trace::bundled_planetlab_day();
    // From cloudsim-3.0.3-results.csv, file_order = sorted, day 20110303.
    let rows = [
        (
            "dvfs",
            ("802.75", 0, "0.00", "0.00", "0.00000", "0.00", "0.00", 455),
        ),
        (
            "lr-mmt-1.2",
            (
                "163.48", 27859, "5.86", "0.08", "0.00464", "0.15", "9.56", 5053,
            ),
        ),
        (
            "thr-mmt-0.8",
            (
                "192.62", 26711, "4.91", "0.06", "0.00318", "0.07", "10.15", 5885,
            ),
        ),
        (
            "iqr-mc-1.5",
            (
                "179.25", 23596, "6.90", "0.10", "0.00712", "0.12", "9.77", 5511,
            ),
        ),
    ];
    for (policy, (e, m, slatah, pdm, slav, overall, average, shutdowns)) in rows {
        let theirs = Printed {
            energy_kwh: e.into(),
            migrations: m,
            slatah_pct: slatah.into(),
            pdm_pct: pdm.into(),
            slav_pct: slav.into(),
            overall_pct: overall.into(),
            average_pct: average.into(),
            host_shutdowns: shutdowns,
        };
        assert_identical(
            &format!("20110303 sorted {policy}"),
            &simulate(&trace, policy),
            &theirs,
        );
    }
}

#[test]
fn every_reference_row_matches_cloudsim() {
    let Some(traces) = shared_traces_dir() else {
        eprintln!("SKIPPED every_reference_row_matches_cloudsim: no shared traces (set KEEL_SHARED_DIR or put shared/ beside the checkout)");
        return;
    };
    let planetlab = traces.join("planetlab");
    let reference = planetlab.join("reference-cloudsim-3.0.3");
    let text = std::fs::read_to_string(reference.join("cloudsim-3.0.3-results.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap();
    let rows: Vec<Vec<String>> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    assert!(
        rows.len() >= 26,
        "expected every reference row, got {}",
        rows.len()
    );
    // Two workers: the machine has two cores.
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(row) = rows.get(i) else { break };
                let day = &row[col("workload")];
                let (detector, selector, param) = (
                    &row[col("overload")],
                    &row[col("selection")],
                    &row[col("param")],
                );
                let policy = if selector.is_empty() {
                    detector.clone()
                } else {
                    format!("{detector}-{selector}-{param}")
                };
                let listfiles = row[col("file_order")] == "listFiles";
                let order = if listfiles {
                    TraceOrder::Listing(
                        reference.join("listfiles-order").join(format!("{day}.txt")),
                    )
                } else {
                    TraceOrder::Sorted
                };
                let trace = load_planetlab(&planetlab.join(day), &order).unwrap();
                let theirs = Printed {
                    energy_kwh: format!("{:.2}", row[col("energy_kwh")].parse::<f64>().unwrap()),
                    migrations: row[col("migrations")].parse().unwrap(),
                    slatah_pct: row[col("slatah_pct")].clone(),
                    pdm_pct: row[col("pdm_pct")].clone(),
                    slav_pct: row[col("slav_printed_pct")].clone(),
                    overall_pct: row[col("overall_sla_pct")].clone(),
                    average_pct: row[col("average_sla_pct")].clone(),
                    host_shutdowns: row[col("host_shutdowns")].parse().unwrap(),
                };
                let context = format!(
                    "{day} {} {policy}",
                    if listfiles { "listFiles" } else { "sorted" }
                );
                let ours = simulate(&trace, &policy);
                if selector == "rs" {
                    assert_within_tolerance(&context, &ours, &theirs);
                } else {
                    assert_identical(&context, &ours, &theirs);
                }
            });
        }
    });
}

#[test]
fn step_trace_matches_cloudsim_every_step() {
    let Some(traces) = shared_traces_dir() else {
        eprintln!("SKIPPED step_trace_matches_cloudsim_every_step: no shared traces");
        return;
    };
    let file =
        traces.join("planetlab/reference-cloudsim-3.0.3/trace_lr_mmt_1.2_20110303_sorted.csv");
    let text = std::fs::read_to_string(Path::new(&file)).unwrap();
    let trace = keel_trace::bundled_planetlab_day();
    let mut steps = Vec::new();
    let config = SimConfig::planetlab("lr-mmt-1.2".parse().unwrap());
    keel_sim::run_observed(&trace, &config, &mut steps).unwrap();
    let reference: Vec<Vec<f64>> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("time"))
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(reference.len(), steps.len(), "number of scheduling steps");
    for (theirs, ours) in reference.iter().zip(&steps) {
        let t = ours.time_seconds;
        assert_eq!(format!("{:.1}", t), format!("{:.1}", theirs[0]));
        assert!(
            (ours.energy_kwh - theirs[1]).abs() <= 1.1e-6,
            "energy at t={t}: {} vs {}",
            ours.energy_kwh,
            theirs[1]
        );
        assert_eq!(
            ours.migrations_total as f64, theirs[2],
            "migrations at t={t}"
        );
        assert_eq!(
            ours.migrations_started as f64, theirs[3],
            "migrations started at t={t}"
        );
        assert_eq!(ours.active_hosts as f64, theirs[4], "active hosts at t={t}");
        assert_eq!(ours.vms_alive as f64, theirs[5], "VMs alive at t={t}");
        // The reference prints one decimal; summation order may move the
        // last printed digit by one.
        assert!(
            (ours.requested_mips - theirs[6]).abs() <= 0.06,
            "requested MIPS at t={t}: {} vs {}",
            ours.requested_mips,
            theirs[6]
        );
        assert!(
            (ours.host_utilization_mips - theirs[7]).abs() <= 0.06,
            "host MIPS at t={t}: {} vs {}",
            ours.host_utilization_mips,
            theirs[7]
        );
    }
}
