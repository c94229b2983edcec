//! Packs a PlanetLab day folder into the compact `keeltrace` file bundled with keel-trace.
//!
//! ```text
//! cargo run --release -p keel-trace --example pack_planetlab -- \
//!     ../shared/traces/planetlab/20110303 data/planetlab-20110303.keeltrace.gz
//! ```
//!
//! VMs are taken in sorted (byte) order of their file names.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [src, dst] = args.as_slice() else {
        eprintln!("usage: pack_planetlab SRC_DAY_FOLDER DST_FILE");
        return ExitCode::from(2);
    };
    let result = keel_trace::load_planetlab(src, &keel_trace::TraceOrder::Sorted)
        .and_then(|trace| Ok((keel_trace::pack_planetlab(&trace)?, trace)));
    match result {
        Ok((bytes, trace)) => {
            if let Err(e) = std::fs::write(dst, &bytes) {
                eprintln!("{}: {e}", dst.display());
                return ExitCode::FAILURE;
            }
            println!(
                "{}: {} VMs x {} samples -> {} bytes",
                dst.display(),
                trace.vms.len(),
                trace.samples(),
                bytes.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
