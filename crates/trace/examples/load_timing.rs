//! Times the loaders on the shared real traces (build with `--release`).
//!
//! ```text
//! cargo run --release -p keel-trace --example load_timing
//! ```
//!
//! Uses `shared_traces_dir()` (`../shared/traces`, or `$KEEL_SHARED_DIR`).

use std::time::Instant;

use keel_trace::{Alignment, LoadOptions, TraceOrder};

fn timed<T>(
    what: &str,
    f: impl FnOnce() -> keel_trace::Result<T>,
    describe: impl Fn(&T) -> String,
) {
    let start = Instant::now();
    let result = f();
    let elapsed = start.elapsed();
    match result {
        Ok(value) => println!(
            "{what:<42} {:>9.1} ms  {}",
            elapsed.as_secs_f64() * 1e3,
            describe(&value)
        ),
        Err(e) => println!("{what:<42} failed: {e}"),
    }
}

fn shape(t: &keel_model::WorkloadTrace) -> String {
    format!(
        "{} VMs x {} samples of {} s",
        t.vms.len(),
        t.samples(),
        t.interval_seconds
    )
}

fn main() {
    timed(
        "bundled PlanetLab day (decode)",
        || Ok(keel_trace::bundled_planetlab_day()),
        shape,
    );
    let Some(traces) = keel_trace::shared_traces_dir() else {
        eprintln!("shared traces folder not found: set KEEL_SHARED_DIR");
        return;
    };
    let day = traces.join("planetlab/20110303");
    timed(
        "PlanetLab 20110303 folder (sorted)",
        || keel_trace::load_planetlab(&day, &TraceOrder::Sorted),
        shape,
    );
    let archive = traces.join("bitbrains-rnd/rnd-2013-7-vms-001-250.tar.xz");
    for alignment in [Alignment::CommonWindow, Alignment::FullSpan] {
        timed(
            &format!("Bitbrains Rnd tar.xz ({alignment:?})"),
            || keel_trace::load_bitbrains(&archive, alignment),
            shape,
        );
    }
    let azure = traces.join("azure-v1/microsoft_avg_100.csv.gz");
    timed(
        "Azure V1 avg wide CSV gz",
        || keel_trace::load(&azure, &LoadOptions::default()),
        shape,
    );
}
