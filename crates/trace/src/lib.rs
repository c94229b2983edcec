//! Trace loaders: turn workload files on disk into [`keel_model::WorkloadTrace`].
//!
//! This crate owns the I/O of workload traces and nothing else: it reads the
//! formats below, checks them, converts their units to the model's, and
//! reports bad input as a [`TraceLoadError`] naming the file, line, column and
//! value. It never panics on input. It must not decide anything: no demand
//! estimation, no placement, no filtering or smoothing of what a trace says
//! beyond the documented format conversions (the one resampling, Bitbrains
//! onto a common 300 s grid, is there because a `WorkloadTrace` is
//! rectangular).
//!
//! | format | module | input |
//! |---|---|---|
//! | [`TraceFormat::PlanetLab`] | [`planetlab`] | folder, one file per VM, 288 integer CPU % |
//! | [`TraceFormat::Bitbrains`] | [`bitbrains`] | folder of `N.csv`, or a `.tar.xz` of them |
//! | [`TraceFormat::WideCsv`] | [`wide_csv`] | one CSV (optionally gzip'd), a column per VM |
//!
//! [`load`] detects the format; [`bundled_planetlab_day`] needs no file at
//! all (one PlanetLab day is compiled in, see [`bundled`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod archive;
pub mod bitbrains;
pub mod bundled;
pub mod error;
mod parallel;
pub mod planetlab;
mod util;
pub mod wide_csv;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use keel_model::WorkloadTrace;

pub use bitbrains::{load_bitbrains, Alignment};
pub use bundled::{bundled_planetlab_day, pack_planetlab, unpack_planetlab};
pub use error::{Result, TraceLoadError};
pub use planetlab::{load_planetlab, TraceOrder};
pub use wide_csv::{load_wide_csv, read_wide_csv};

/// The trace formats this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceFormat {
    /// PlanetLab/CoMon day folder as shipped with CloudSim (`planetlab`).
    PlanetLab,
    /// GWA-T-12 Bitbrains per-VM CSV files, folder or tar archive (`bitbrains`).
    Bitbrains,
    /// One CSV, a column per VM, CPU in percent, e.g. Azure V1 slices (`wide-csv`).
    WideCsv,
}

impl TraceFormat {
    /// Every format, in the order of their CLI names.
    pub const ALL: [TraceFormat; 3] = [Self::PlanetLab, Self::Bitbrains, Self::WideCsv];

    /// The name used on the command line: `planetlab`, `bitbrains` or `wide-csv`.
    pub fn name(self) -> &'static str {
        match self {
            Self::PlanetLab => "planetlab",
            Self::Bitbrains => "bitbrains",
            Self::WideCsv => "wide-csv",
        }
    }

    /// Guesses the format of `path`:
    /// - an xz-compressed file (by magic bytes) is a Bitbrains archive;
    /// - any other file is a wide CSV;
    /// - a folder holding at least one `N.csv` file (N digits) is Bitbrains;
    /// - any other folder is a PlanetLab day.
    pub fn detect(path: &Path) -> Result<Self> {
        if !util::metadata(path)?.is_dir() {
            return Ok(if archive::starts_with(path, &archive::XZ_MAGIC)? {
                Self::Bitbrains
            } else {
                Self::WideCsv
            });
        }
        let files = util::list_regular_files(path)?;
        Ok(
            if files
                .iter()
                .any(|f| bitbrains::vm_number(&f.name).is_some())
            {
                Self::Bitbrains
            } else {
                Self::PlanetLab
            },
        )
    }
}

impl fmt::Display for TraceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TraceFormat {
    type Err = TraceLoadError;

    /// Accepts the CLI names, ignoring ASCII case, and `_` for `-`.
    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|f| f.name() == wanted)
            .ok_or_else(|| TraceLoadError::UnknownFormat(s.to_owned()))
    }
}

/// How [`load`] reads a trace. `LoadOptions::default()` detects the format,
/// sorts PlanetLab VMs by file name, keeps the Bitbrains common window and
/// derives the wide-CSV interval from the file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadOptions {
    /// The format, or `None` to detect it with [`TraceFormat::detect`].
    pub format: Option<TraceFormat>,
    /// PlanetLab only: which VM gets which file.
    pub order: TraceOrder,
    /// Bitbrains only: which grid points to keep.
    pub alignment: Alignment,
    /// Wide CSV only: seconds between rows, overriding what the file implies.
    pub interval_seconds: Option<f64>,
}

/// Loads the trace at `path` in the format `options.format`, detected if `None`.
pub fn load(path: &Path, options: &LoadOptions) -> Result<WorkloadTrace> {
    let format = match options.format {
        Some(format) => format,
        None => TraceFormat::detect(path)?,
    };
    match format {
        TraceFormat::PlanetLab => load_planetlab(path, &options.order),
        TraceFormat::Bitbrains => load_bitbrains(path, options.alignment),
        TraceFormat::WideCsv => load_wide_csv(path, options.interval_seconds),
    }
}

/// The folder of the project's shared real traces (`planetlab/`,
/// `bitbrains-rnd/`, `azure-v1/`, ...), for tests, examples and benchmarks.
///
/// `$KEEL_SHARED_DIR/traces` (or `$KEEL_SHARED_DIR` itself if it holds
/// `planetlab/`) when that variable is set, else `../shared/traces` beside the
/// workspace root. `None` if the folder does not exist.
pub fn shared_traces_dir() -> Option<PathBuf> {
    let candidates = match std::env::var_os("KEEL_SHARED_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            vec![dir.join("traces"), dir]
        }
        None => vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/traces")],
    };
    candidates
        .into_iter()
        .find(|d| d.join("planetlab").is_dir())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn format_names_round_trip() {
        for f in TraceFormat::ALL {
            assert_eq!(f.to_string().parse::<TraceFormat>().unwrap(), f);
        }
        assert_eq!(
            "Wide_CSV".parse::<TraceFormat>().unwrap(),
            TraceFormat::WideCsv
        );
        let err = "swf".parse::<TraceFormat>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown trace format \"swf\": expected planetlab, bitbrains or wide-csv"
        );
    }

    #[test]
    fn detects_and_loads_each_format() {
        let dir = tempfile::tempdir().unwrap();
        let pl = dir.path().join("pl");
        fs::create_dir(&pl).unwrap();
        fs::write(pl.join("node_slice"), "5\n".repeat(288)).unwrap();
        let bb = dir.path().join("bb");
        fs::create_dir(&bb).unwrap();
        fs::write(
            bb.join("1.csv"),
            "Timestamp [ms]; CPU cores; CPU capacity provisioned [MHZ]; CPU usage [MHZ]; CPU usage [%]; Memory capacity provisioned [KB]; Memory usage [KB]; Disk read throughput [KB/s]; Disk write throughput [KB/s]; Network received throughput [KB/s]; Network transmitted throughput [KB/s]\n\
             0; 1; 1; 1; 50; 1; 1; 1; 1; 1; 1\n300; 1; 1; 1; 50; 1; 1; 1; 1; 1; 1\n",
        )
        .unwrap();
        let xz_archive = dir.path().join("vms.tar.xz");
        let tar = archive::tests::tar_of(&[("1.csv", &fs::read(bb.join("1.csv")).unwrap())]);
        fs::write(&xz_archive, archive::tests::xz(&tar)).unwrap();
        let csv = dir.path().join("wide");
        fs::write(&csv, "step,a\n1,5\n").unwrap();
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();

        let cases = [
            (&pl, TraceFormat::PlanetLab, 288),
            (&bb, TraceFormat::Bitbrains, 2),
            (&xz_archive, TraceFormat::Bitbrains, 2),
            (&csv, TraceFormat::WideCsv, 1),
        ];
        for (path, format, samples) in cases {
            assert_eq!(TraceFormat::detect(path).unwrap(), format, "{path:?}");
            let t = load(path, &LoadOptions::default()).unwrap();
            assert_eq!(t.samples(), samples, "{path:?}");
        }
        let err = load(&empty, &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, TraceLoadError::EmptyFolder { .. }), "{err}");
        let err = load(&dir.path().join("absent"), &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, TraceLoadError::NotFound { .. }), "{err}");
        // An explicit format wins over detection.
        let forced = LoadOptions {
            format: Some(TraceFormat::PlanetLab),
            ..LoadOptions::default()
        };
        assert!(matches!(
            load(&bb, &forced).unwrap_err(),
            TraceLoadError::NotAnInteger { line: 1, .. }
        ));
    }
}
