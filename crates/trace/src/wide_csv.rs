//! Wide CSV: one row per time step, one column per VM, CPU in percent.
//!
//! The format of the Azure Public Dataset V1 slices
//! (`microsoft_avg_100.csv.gz`, Cortez et al., SOSP 2017):
//!
//! ```text
//! timestamp,1633748,223811,...
//! 1,44.4591,5.86057,...
//! 2,47.9345,5.66275,...
//! ```
//!
//! - The file may be gzip-compressed; this is detected by the gzip magic
//!   bytes, whatever the file is called.
//! - The header names the VMs (`VmSeries::name`); the first column is a step
//!   index or a timestamp in seconds. Fields are separated by `,`;
//!   surrounding whitespace and double quotes around header names are ignored.
//! - Interval: the caller's, if given; else, if the first column's second
//!   value exceeds the first by more than 1, they are taken as timestamps and
//!   the interval is their difference; else 300 s.
//! - `cpu_utilization = value / 100`, clamped to 0..=1. Every cell must be a
//!   finite number; every row must have as many columns as the header. Blank
//!   lines are skipped.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use keel_model::{VmSeries, WorkloadTrace};

use crate::archive::GZIP_MAGIC;
use crate::error::{Result, TraceLoadError};
use crate::util::{next_line, trim};

/// Interval assumed when the first column is a step index.
pub const DEFAULT_WIDE_CSV_INTERVAL_SECONDS: f64 = 300.0;

/// Loads a wide CSV file (plain or gzip'd). `interval_seconds` overrides the
/// interval derived from the first column.
pub fn load_wide_csv(path: &Path, interval_seconds: Option<f64>) -> Result<WorkloadTrace> {
    let file = File::open(path).map_err(|e| TraceLoadError::io(path, e))?;
    let mut input = BufReader::with_capacity(1 << 16, file);
    let head = input.fill_buf().map_err(|e| TraceLoadError::io(path, e))?;
    if head.starts_with(&GZIP_MAGIC) {
        let gz = flate2::bufread::MultiGzDecoder::new(input);
        parse_wide_csv(
            BufReader::with_capacity(1 << 16, gz),
            path,
            interval_seconds,
        )
    } else {
        parse_wide_csv(input, path, interval_seconds)
    }
}

/// Parses wide CSV text from `reader`; `path` is only used in errors.
pub(crate) fn parse_wide_csv(
    mut reader: impl BufRead,
    path: &Path,
    interval_seconds: Option<f64>,
) -> Result<WorkloadTrace> {
    let io_err = |e| TraceLoadError::io(path, e);
    let mut buf = Vec::new();
    let mut line = 0;
    // Header: the first non-blank line.
    let header = loop {
        if !next_line(&mut reader, &mut buf).map_err(io_err)? {
            return Err(TraceLoadError::EmptyFile { path: path.into() });
        }
        line += 1;
        if !trim(&buf).is_empty() {
            let header = buf.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&buf); // UTF-8 BOM
            break header
                .split(|&b| b == b',')
                .map(|h| {
                    let h = trim(h);
                    let h = h
                        .strip_prefix(b"\"")
                        .and_then(|h| h.strip_suffix(b"\""))
                        .unwrap_or(h);
                    String::from_utf8_lossy(h).into_owned()
                })
                .collect::<Vec<_>>();
        }
    };
    if header.len() < 2 {
        return Err(TraceLoadError::NoVmColumns { path: path.into() });
    }
    let mut columns: Vec<Vec<f64>> = vec![Vec::new(); header.len() - 1];
    let mut first_column = Vec::with_capacity(2);
    while next_line(&mut reader, &mut buf).map_err(io_err)? {
        line += 1;
        if trim(&buf).is_empty() {
            continue;
        }
        let got = buf.split(|&b| b == b',').count();
        if got != header.len() {
            return Err(TraceLoadError::RaggedRow {
                path: path.into(),
                line,
                expected: header.len(),
                got,
            });
        }
        for (c, raw) in buf.split(|&b| b == b',').enumerate() {
            let raw = trim(raw);
            let v = crate::util::parse_number(raw, path, line, &header[c])?;
            if c == 0 {
                if first_column.len() < 2 {
                    first_column.push(v);
                }
            } else {
                columns[c - 1].push((v / 100.0).clamp(0.0, 1.0));
            }
        }
    }
    if columns[0].is_empty() {
        return Err(TraceLoadError::NoSamples { path: path.into() });
    }
    let interval = interval_seconds.unwrap_or(match first_column[..] {
        [a, b] if b - a > 1.0 => b - a,
        _ => DEFAULT_WIDE_CSV_INTERVAL_SECONDS,
    });
    let vms = header
        .into_iter()
        .skip(1)
        .zip(columns)
        .map(|(name, cpu_utilization)| VmSeries {
            name,
            cpu_utilization,
            usage: None,
        })
        .collect();
    WorkloadTrace::new(interval, vms).map_err(|source| TraceLoadError::InvalidTrace {
        path: path.into(),
        source,
    })
}

/// Reads a wide CSV from any reader (plain text, not compressed); `name` is
/// used in error messages in place of a path.
pub fn read_wide_csv(
    reader: impl Read,
    name: &Path,
    interval_seconds: Option<f64>,
) -> Result<WorkloadTrace> {
    parse_wide_csv(BufReader::new(reader), name, interval_seconds)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write;

    use super::*;

    const TEXT: &str = "timestamp,vm a,\"vm-b\"\n1,44.5,5\n2,47.9,150\n3,0,-2\n";

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    fn load_text(text: &str) -> Result<WorkloadTrace> {
        read_wide_csv(text.as_bytes(), Path::new("w.csv"), None)
    }

    #[test]
    fn loads_names_values_and_default_interval() {
        let t = load_text(TEXT).unwrap();
        assert_eq!(t.interval_seconds, 300.0);
        assert_eq!(t.vms.len(), 2);
        assert_eq!(t.vms[0].name, "vm a");
        assert_eq!(t.vms[1].name, "vm-b");
        assert_eq!(t.vms[0].cpu_utilization, [0.445, 0.479, 0.0]);
        assert_eq!(
            t.vms[1].cpu_utilization,
            [0.05, 1.0, 0.0],
            "clamped to 0..=1"
        );
        assert!(t.vms[0].usage.is_none());
        let bom = load_text("\u{feff}t,a\n1,5\n").unwrap();
        assert_eq!(bom.vms[0].name, "a");
    }

    #[test]
    fn timestamps_give_the_interval_unless_overridden() {
        let text = "t,a\n1000,1\n1060,2\n1120,3\n";
        assert_eq!(load_text(text).unwrap().interval_seconds, 60.0);
        let t = read_wide_csv(text.as_bytes(), Path::new("w"), Some(30.0)).unwrap();
        assert_eq!(t.interval_seconds, 30.0);
        assert_eq!(load_text("t,a\n5,1\n").unwrap().interval_seconds, 300.0);
        let err = read_wide_csv(text.as_bytes(), Path::new("w"), Some(0.0)).unwrap_err();
        assert!(matches!(err, TraceLoadError::InvalidTrace { .. }), "{err}");
    }

    #[test]
    fn ragged_row_names_line_and_counts() {
        let err = load_text("t,a,b\n1,2,3\n\n2,3\n").unwrap_err();
        assert_eq!(err.to_string(), "w.csv:4: expected 3 columns, got 2");
        let err = load_text("t,a,b\n1,2,3,4\n").unwrap_err();
        assert!(matches!(
            err,
            TraceLoadError::RaggedRow {
                line: 2,
                expected: 3,
                got: 4,
                ..
            }
        ));
    }

    #[test]
    fn non_numeric_names_line_column_and_value() {
        let err = load_text("t,a,b\n1,2,3\n2,x7,3\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "w.csv:3: column \"a\": value \"x7\" is not a finite number"
        );
        let err = load_text("t,a,b\n1,2,\n").unwrap_err();
        assert!(matches!(err, TraceLoadError::NotANumber { ref column, .. } if column == "b"));
        let err = load_text("t,a\nmonday,2\n").unwrap_err();
        assert!(matches!(err, TraceLoadError::NotANumber { ref column, .. } if column == "t"));
    }

    #[test]
    fn empty_inputs() {
        assert!(matches!(
            load_text("").unwrap_err(),
            TraceLoadError::EmptyFile { .. }
        ));
        assert!(matches!(
            load_text("\n \n").unwrap_err(),
            TraceLoadError::EmptyFile { .. }
        ));
        assert!(matches!(
            load_text("t,a\n").unwrap_err(),
            TraceLoadError::NoSamples { .. }
        ));
        assert!(matches!(
            load_text("t\n1\n").unwrap_err(),
            TraceLoadError::NoVmColumns { .. }
        ));
    }

    #[test]
    fn gzip_is_detected_by_magic_bytes_not_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let plain_gz_name = dir.path().join("plain.csv.gz");
        let gz_csv_name = dir.path().join("packed.csv");
        fs::write(&plain_gz_name, TEXT).unwrap();
        fs::write(&gz_csv_name, gzip(TEXT.as_bytes())).unwrap();
        let expected = load_text(TEXT).unwrap();
        assert_eq!(load_wide_csv(&plain_gz_name, None).unwrap(), expected);
        assert_eq!(load_wide_csv(&gz_csv_name, None).unwrap(), expected);
        let mut corrupt = gzip(TEXT.as_bytes());
        corrupt.truncate(corrupt.len() / 2);
        fs::write(&gz_csv_name, corrupt).unwrap();
        let err = load_wide_csv(&gz_csv_name, None).unwrap_err();
        assert!(err.to_string().contains("packed.csv"), "{err}");
        let err = load_wide_csv(&dir.path().join("absent.csv"), None).unwrap_err();
        assert!(matches!(err, TraceLoadError::NotFound { .. }), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_a_trace_or_an_error_never_a_panic(text in "[0-9a-z,.\"\n\r -]{0,200}") {
            if let Ok(t) = load_text(&text) {
                proptest::prop_assert!(t.samples() > 0);
            }
        }
    }

    #[test]
    fn real_azure_slices_load() {
        let Some(traces) = crate::shared_traces_dir() else {
            eprintln!("SKIPPED real_azure_slices_load: shared traces folder not found (set KEEL_SHARED_DIR)");
            return;
        };
        for name in ["microsoft_avg_100.csv.gz", "microsoft_max_100.csv.gz"] {
            let t = load_wide_csv(&traces.join("azure-v1").join(name), None).unwrap();
            assert_eq!(t.vms.len(), 100, "{name}");
            assert_eq!(t.samples(), 8004, "{name}");
            assert_eq!(t.interval_seconds, 300.0);
        }
        let t = load_wide_csv(&traces.join("azure-v1/microsoft_avg_100.csv.gz"), None).unwrap();
        assert_eq!(t.vms[0].name, "1633748");
        assert_eq!(t.vms[0].cpu_utilization[0], 44.4591 / 100.0);
    }
}
