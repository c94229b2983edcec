//! GWA-T-12 Bitbrains per-VM CSV traces (Shen, van Beek, Iosup, CCGrid 2015).
//!
//! One file `N.csv` per VM (N its number), from a folder or straight from a
//! tar archive (`.tar.xz` as distributed, also plain or gzip'd tar; detected by
//! magic bytes, never extracted to disk; see `archive` for the memory an xz
//! archive costs). Other files are ignored. Files are parsed on all cores.
//! VMs are ordered by N; `VmSeries::name` is N (the file stem, e.g. `"17"`).
//!
//! Each file: a header, then rows whose fields are separated by `;` (followed
//! by a tab; surrounding whitespace is ignored). Columns are found by header
//! name, so their order does not matter:
//! `Timestamp [ms]; CPU cores; CPU capacity provisioned [MHZ]; CPU usage [MHZ];
//! CPU usage [%]; Memory capacity provisioned [KB]; Memory usage [KB]; Disk
//! read throughput [KB/s]; Disk write throughput [KB/s]; Network received
//! throughput [KB/s]; Network transmitted throughput [KB/s]`.
//! Despite its header, the timestamp holds Unix epoch **seconds**.
//!
//! Values: `cpu_utilization = CPU usage [%] / 100`, clamped to 0..=1 (the Rnd
//! trace has readings up to 126 %); KB become bytes (x1024), KB/s bytes per
//! second (x1024); the other columns are copied. Every cell must be a finite
//! number. Blank lines are skipped.
//!
//! Time grid: the real files have different lengths and start times (in the
//! Rnd July 2013 set, 202 of 250 VMs start on 2013-07-01 and the others up to
//! 30 days later), jittered timestamps (299..301 s apart, some 110 + 190 s
//! pairs), repeated timestamps and gaps (up to 31 h). Every VM is therefore
//! resampled onto one grid: the multiples of 300 s since the Unix epoch. The
//! value at grid time t is the last row whose timestamp is <= t (sample and
//! hold; of rows with equal timestamps the last one wins, rows are stably
//! sorted by time first). A VM covers the grid points from its first to its
//! last timestamp. [`Alignment`] chooses which grid points the trace keeps.

use std::collections::HashMap;
use std::fs;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use keel_model::WorkloadTrace;

use crate::archive::for_each_member;
use crate::error::{shown, Result, TraceLoadError};
use crate::parallel::map_in_parallel;
use crate::util::{list_regular_files, metadata, next_line, trim};
use grid::{align, resample, Resampled};

mod grid;

/// Seconds between two grid points of a loaded Bitbrains trace.
pub const BITBRAINS_INTERVAL_SECONDS: f64 = 300.0;

/// Which grid points a multi-VM Bitbrains trace keeps (`WorkloadTrace` is rectangular).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Alignment {
    /// Only the grid points every VM covers: from the latest first timestamp
    /// to the earliest last timestamp. Every value is measured, none invented;
    /// the window can be short (about 10 h for Rnd VMs 1-250, where two VMs
    /// start on the trace's last day).
    #[default]
    CommonWindow,
    /// Every grid point from the earliest first timestamp to the latest last
    /// timestamp. Before its first and after its last row a VM is taken as
    /// absent: every value of it (CPU and usage) is 0.
    FullSpan,
}

/// The columns read: the timestamp, then the value columns in the order of
/// `Resampled::values` (and of the `ResourceUsage` fields, CPU % in 4th place).
const COLUMNS: [&str; 11] = [
    "Timestamp [ms]",
    "CPU cores",
    "CPU capacity provisioned [MHZ]",
    "CPU usage [MHZ]",
    "CPU usage [%]",
    "Memory capacity provisioned [KB]",
    "Memory usage [KB]",
    "Disk read throughput [KB/s]",
    "Disk write throughput [KB/s]",
    "Network received throughput [KB/s]",
    "Network transmitted throughput [KB/s]",
];
/// Index of `CPU usage [%]` among the values (columns after the timestamp).
const CPU_PERCENT: usize = 3;
/// Number of value columns (all but the timestamp).
const VALUES: usize = COLUMNS.len() - 1;
/// Factor from file unit to model unit, per value column.
const SCALE: [f64; VALUES] = [
    1.0, 1.0, 1.0, 1.0, 1024.0, 1024.0, 1024.0, 1024.0, 1024.0, 1024.0,
];

/// Loads a Bitbrains trace from a folder of `N.csv` files or a tar archive of them.
pub fn load_bitbrains(path: &Path, alignment: Alignment) -> Result<WorkloadTrace> {
    // Files are read (or unpacked) in turn and parsed on all cores.
    let mut vms = map_in_parallel(
        |emit| {
            let mut seen: HashMap<u64, String> = HashMap::new();
            let mut job = |id: u64, name: &str, file: &Path, bytes: Vec<u8>| {
                if let Some(first) = seen.insert(id, name.to_owned()) {
                    return Err(TraceLoadError::DuplicateVm {
                        path: path.into(),
                        id,
                        first,
                        second: name.to_owned(),
                    });
                }
                emit(Job {
                    id,
                    path: file.to_owned(),
                    bytes,
                })
            };
            if metadata(path)?.is_dir() {
                for file in list_regular_files(path)? {
                    if let Some(id) = vm_number(&file.name) {
                        let bytes =
                            fs::read(&file.path).map_err(|e| TraceLoadError::io(&file.path, e))?;
                        job(id, &file.name, &file.path, bytes)?;
                    }
                }
                Ok(())
            } else {
                for_each_member(path, |name, shown, reader| {
                    let Some(id) = vm_number(name) else {
                        return Ok(());
                    };
                    let mut bytes = Vec::new();
                    reader
                        .read_to_end(&mut bytes)
                        .map_err(|e| TraceLoadError::io(shown, e))?;
                    job(id, name, shown, bytes)
                })
            }
        },
        |job| read_vm(job.id, &job.path, &job.bytes[..]),
    )?;
    if vms.is_empty() {
        return Err(TraceLoadError::NoVmFiles { path: path.into() });
    }
    vms.sort_by_key(|vm| vm.id);
    align(path, vms, alignment)
}

/// One VM file to parse.
struct Job {
    id: u64,
    path: PathBuf,
    bytes: Vec<u8>,
}

/// `Some(N)` for a file named `N.csv` (N decimal digits).
pub(crate) fn vm_number(file_name: &str) -> Option<u64> {
    let stem = file_name.strip_suffix(".csv")?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Reads one VM file and resamples it onto the grid.
fn read_vm(id: u64, path: &Path, mut reader: impl BufRead) -> Result<Resampled> {
    let io_err = |e| TraceLoadError::io(path, e);
    let mut buf = Vec::new();
    if !next_line(&mut reader, &mut buf).map_err(io_err)? {
        return Err(TraceLoadError::EmptyFile { path: path.into() });
    }
    let header = buf.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&buf); // UTF-8 BOM
    let index = header_index(header, path)?;
    let width = index.iter().max().map_or(0, |m| m + 1);
    let mut rows: Vec<(i64, [f64; VALUES])> = Vec::new();
    let mut fields: Vec<std::ops::Range<usize>> = Vec::with_capacity(16);
    let mut line = 1;
    while next_line(&mut reader, &mut buf).map_err(io_err)? {
        line += 1;
        if trim(&buf).is_empty() {
            continue;
        }
        // Field boundaries, as ranges into `buf` (reused: no allocation per row).
        fields.clear();
        let mut start = 0;
        for (i, &b) in buf.iter().enumerate() {
            if b == b';' {
                fields.push(start..i);
                start = i + 1;
            }
        }
        fields.push(start..buf.len());
        if fields.len() < width {
            let missing = index.iter().position(|&i| i >= fields.len()).unwrap_or(0);
            return Err(TraceLoadError::MissingColumn {
                path: path.into(),
                line,
                column: COLUMNS[missing].into(),
            });
        }
        let field = |c: usize| trim(&buf[fields[index[c]].clone()]);
        let ts = timestamp(field(0), path, line)?;
        let mut values = [0.0; VALUES];
        for (v, slot) in values.iter_mut().enumerate() {
            *slot = number(field(v + 1), path, line, v + 1)? * SCALE[v];
        }
        values[CPU_PERCENT] = (values[CPU_PERCENT] / 100.0).clamp(0.0, 1.0);
        rows.push((ts, values));
    }
    if rows.is_empty() {
        return Err(TraceLoadError::NoSamples { path: path.into() });
    }
    if rows.windows(2).any(|w| w[0].0 > w[1].0) {
        rows.sort_by_key(|r| r.0); // stable: equal timestamps keep file order
    }
    resample(id, path, &rows)
}

/// Position of every wanted column in the header.
fn header_index(header: &[u8], path: &Path) -> Result<[usize; COLUMNS.len()]> {
    let names: Vec<&[u8]> = header.split(|&b| b == b';').map(trim).collect();
    let mut index = [0; COLUMNS.len()];
    for (slot, wanted) in index.iter_mut().zip(COLUMNS) {
        *slot = names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(wanted.as_bytes()))
            .ok_or_else(|| TraceLoadError::MissingColumn {
                path: path.into(),
                line: 1,
                column: wanted.into(),
            })?;
    }
    Ok(index)
}

fn number(raw: &[u8], path: &Path, line: usize, column: usize) -> Result<f64> {
    crate::util::parse_number(raw, path, line, COLUMNS[column])
}

fn timestamp(raw: &[u8], path: &Path, line: usize) -> Result<i64> {
    let text = std::str::from_utf8(raw).unwrap_or("");
    if let Ok(ts) = text.parse::<i64>() {
        return Ok(ts);
    }
    let v = number(raw, path, line, 0)?;
    if v.abs() < 1e15 {
        Ok(v.floor() as i64)
    } else {
        Err(TraceLoadError::NotANumber {
            path: path.into(),
            line,
            column: COLUMNS[0].into(),
            value: shown(raw),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::fs;

    use super::*;
    use crate::archive::tests::{tar_of, xz};

    const HEADER: &str = "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]";

    /// A file with one row per timestamp; CPU % = `cpu(i)`, memory usage = i KB.
    fn vm_csv(timestamps: &[i64], cpu: impl Fn(usize) -> f64) -> String {
        let mut s = format!("{HEADER}\n");
        for (i, t) in timestamps.iter().enumerate() {
            writeln!(
                s,
                "{t};\t2;\t5851.9989;\t87.7;\t{};\t8218624.0;\t{i}.0;\t1.5;\t0.0;\t0.25;\t2",
                cpu(i)
            )
            .unwrap();
        }
        s
    }

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn regular(start: i64, n: usize) -> Vec<i64> {
        (0..n as i64).map(|i| start + 300 * i).collect()
    }

    #[test]
    fn orders_by_number_converts_units_and_clamps_cpu() {
        let t0 = 1_372_629_900; // a multiple of 300
        let dir = folder(&[
            ("10.csv", &vm_csv(&regular(t0, 3), |_| 50.0)),
            (
                "2.csv",
                &vm_csv(&regular(t0, 3), |i| [126.0, -1.0, 12.5][i]),
            ),
            ("1.csv", &vm_csv(&regular(t0, 3), |_| 1.5)),
            ("README", "not a VM"),
            ("x1.csv", "not a VM either"),
        ]);
        let t = load_bitbrains(dir.path(), Alignment::CommonWindow).unwrap();
        let names: Vec<_> = t.vms.iter().map(|vm| vm.name.as_str()).collect();
        assert_eq!(names, ["1", "2", "10"]);
        assert_eq!(t.interval_seconds, 300.0);
        assert_eq!(t.samples(), 3);
        assert_eq!(t.vms[1].cpu_utilization, [1.0, 0.0, 0.125]);
        assert_eq!(t.vms[0].cpu_utilization[0], 0.015);
        let u = t.vms[0].usage.as_ref().unwrap();
        assert_eq!(u.cpu_cores, [2.0; 3]);
        assert_eq!(u.cpu_capacity_mhz[0], 5851.9989);
        assert_eq!(u.cpu_usage_mhz[0], 87.7);
        assert_eq!(u.memory_capacity_bytes[0], 8_218_624.0 * 1024.0);
        assert_eq!(u.memory_usage_bytes, [0.0, 1024.0, 2048.0]);
        assert_eq!(u.disk_read_bytes_per_second[0], 1536.0);
        assert_eq!(u.disk_write_bytes_per_second[0], 0.0);
        assert_eq!(u.network_rx_bytes_per_second[0], 256.0);
        assert_eq!(u.network_tx_bytes_per_second[0], 2048.0);
    }

    #[test]
    fn resamples_jitter_and_duplicates_by_sample_and_hold() {
        // Grid points at 300, 600, 900, 1200; rows at 250, 310, 310 (dup), 599, 1000, 1210.
        let ts = [250, 310, 310, 599, 1000, 1210];
        let dir = folder(&[("1.csv", &vm_csv(&ts, |i| i as f64 * 10.0))]);
        let t = load_bitbrains(dir.path(), Alignment::CommonWindow).unwrap();
        // 300 <- row 0 (250); 600 <- row 3 (599); 900 <- row 3; 1200 <- row 4 (1000).
        assert_eq!(t.vms[0].cpu_utilization, [0.0, 0.3, 0.3, 0.4]);
        // Rows out of order are sorted first (stably).
        let shuffled = [599, 250, 1210, 1000];
        let dir = folder(&[("1.csv", &vm_csv(&shuffled, |i| i as f64))]);
        let t = load_bitbrains(dir.path(), Alignment::CommonWindow).unwrap();
        assert_eq!(t.vms[0].cpu_utilization, [0.01, 0.0, 0.0, 0.03]);
    }

    #[test]
    fn alignment_common_window_vs_full_span() {
        let dir = folder(&[
            ("1.csv", &vm_csv(&regular(3000, 10), |_| 10.0)), // points 10..=19
            ("2.csv", &vm_csv(&regular(4500, 10), |_| 20.0)), // points 15..=24
        ]);
        let common = load_bitbrains(dir.path(), Alignment::CommonWindow).unwrap();
        assert_eq!(common.samples(), 5);
        assert_eq!(common.vms[1].cpu_utilization, [0.2; 5]);
        let full = load_bitbrains(dir.path(), Alignment::FullSpan).unwrap();
        assert_eq!(full.samples(), 15);
        let a = &full.vms[0];
        assert_eq!(a.cpu_utilization[..10], [0.1; 10]);
        assert_eq!(a.cpu_utilization[10..], [0.0; 5]);
        let b = &full.vms[1];
        assert_eq!(b.cpu_utilization[..5], [0.0; 5]);
        assert_eq!(b.usage.as_ref().unwrap().cpu_cores[..5], [0.0; 5]);
        assert_eq!(b.usage.as_ref().unwrap().cpu_cores[5..], [2.0; 10]);

        let apart = folder(&[
            ("1.csv", &vm_csv(&regular(3000, 2), |_| 10.0)),
            ("2.csv", &vm_csv(&regular(9000, 2), |_| 20.0)),
        ]);
        let err = load_bitbrains(apart.path(), Alignment::CommonWindow).unwrap_err();
        assert!(
            matches!(
                err,
                TraceLoadError::NoCommonWindow {
                    latest_start: 9000,
                    earliest_end: 3300,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            load_bitbrains(apart.path(), Alignment::FullSpan)
                .unwrap()
                .samples(),
            22
        );
    }

    #[test]
    fn header_may_start_with_a_bom() {
        let text = format!("\u{feff}{}", vm_csv(&regular(0, 2), |_| 1.0));
        let dir = folder(&[("1.csv", &text)]);
        assert_eq!(
            load_bitbrains(dir.path(), Alignment::CommonWindow)
                .unwrap()
                .samples(),
            2
        );
    }

    #[test]
    fn missing_column_in_header_and_in_row() {
        let no_mem = vm_csv(&regular(0, 2), |_| 1.0).replace("Memory usage [KB]", "Mem [KB]");
        let dir = folder(&[("3.csv", &no_mem)]);
        let err = load_bitbrains(dir.path(), Alignment::CommonWindow).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("3.csv:1: missing column \"Memory usage [KB]\""),
            "{err}"
        );

        let mut short_row = vm_csv(&regular(0, 2), |_| 1.0);
        short_row.push_str("600;\t2;\t5851.9989;\t87.7\n");
        let dir = folder(&[("4.csv", &short_row)]);
        let err = load_bitbrains(dir.path(), Alignment::CommonWindow).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("4.csv:4: missing column \"CPU usage [%]\""),
            "{err}"
        );
    }

    #[test]
    fn non_numeric_cell_names_line_column_and_value() {
        let text = vm_csv(&regular(0, 3), |_| 1.0).replacen("\t87.7;", "\tn/a;", 2);
        let dir = folder(&[("5.csv", &text)]);
        let err = load_bitbrains(dir.path(), Alignment::CommonWindow).unwrap_err();
        assert!(
            err.to_string().ends_with(
                "5.csv:2: column \"CPU usage [MHZ]\": value \"n/a\" is not a finite number"
            ),
            "{err}"
        );
        let text = vm_csv(&regular(0, 3), |_| 1.0).replacen("\t1;", "\tNaN;", 1);
        let dir = folder(&[("5.csv", &text)]);
        let err = load_bitbrains(dir.path(), Alignment::CommonWindow).unwrap_err();
        assert!(
            matches!(err, TraceLoadError::NotANumber { line: 2, .. }),
            "{err}"
        );
        let text = vm_csv(&regular(0, 3), |_| 1.0).replacen("300;", "3OO;", 1);
        let dir = folder(&[("5.csv", &text)]);
        let err = load_bitbrains(dir.path(), Alignment::CommonWindow).unwrap_err();
        assert!(
            err.to_string()
                .contains("5.csv:3: column \"Timestamp [ms]\""),
            "{err}"
        );
    }

    #[test]
    fn empty_folder_archive_and_files() {
        let dir = folder(&[("notes.txt", "x")]);
        let err = load_bitbrains(dir.path(), Alignment::CommonWindow).unwrap_err();
        assert!(matches!(err, TraceLoadError::NoVmFiles { .. }), "{err}");
        let archive = dir.path().join("empty.tar.xz");
        fs::write(&archive, xz(&tar_of(&[]))).unwrap();
        let err = load_bitbrains(&archive, Alignment::CommonWindow).unwrap_err();
        assert!(matches!(err, TraceLoadError::NoVmFiles { .. }), "{err}");
        assert!(err.to_string().contains("empty.tar.xz: empty"), "{err}");

        let dir = folder(&[("1.csv", "")]);
        let err = load_bitbrains(dir.path(), Alignment::CommonWindow).unwrap_err();
        assert!(matches!(err, TraceLoadError::EmptyFile { .. }), "{err}");
        let dir = folder(&[("1.csv", &format!("{HEADER}\n\n"))]);
        let err = load_bitbrains(dir.path(), Alignment::CommonWindow).unwrap_err();
        assert!(matches!(err, TraceLoadError::NoSamples { .. }), "{err}");
    }

    #[test]
    fn duplicate_vm_numbers_and_absurd_timestamps() {
        let text = vm_csv(&regular(0, 2), |_| 1.0);
        let dir = folder(&[("7.csv", &text), ("07.csv", &text)]);
        let err = load_bitbrains(dir.path(), Alignment::CommonWindow).unwrap_err();
        assert!(
            matches!(err, TraceLoadError::DuplicateVm { id: 7, .. }),
            "{err}"
        );
        let ms = vm_csv(&[1_372_629_804_000, 1_375_221_457_000], |_| 1.0);
        let dir = folder(&[("1.csv", &ms)]);
        let err = load_bitbrains(dir.path(), Alignment::CommonWindow).unwrap_err();
        assert!(
            matches!(err, TraceLoadError::TimeSpanTooLong { .. }),
            "{err}"
        );
    }

    #[test]
    fn tar_xz_gives_the_same_trace_as_the_folder() {
        let a = vm_csv(&regular(1_000_000, 40), |i| i as f64);
        let b = vm_csv(&regular(1_000_150, 30), |i| 100.0 - i as f64);
        let dir = folder(&[("1.csv", &a), ("2.csv", &b)]);
        let archive = tempfile::tempdir().unwrap();
        let path = archive.path().join("vms.tar.xz");
        let tar = tar_of(&[("rnd/2.csv", b.as_bytes()), ("rnd/1.csv", a.as_bytes())]);
        fs::write(&path, xz(&tar)).unwrap();
        for alignment in [Alignment::CommonWindow, Alignment::FullSpan] {
            let from_dir = load_bitbrains(dir.path(), alignment).unwrap();
            let from_tar = load_bitbrains(&path, alignment).unwrap();
            assert_eq!(from_dir, from_tar);
        }
        let bad = b.replacen("\t2\n", "\tlots\n", 1);
        let tar = tar_of(&[("1.csv", a.as_bytes()), ("2.csv", bad.as_bytes())]);
        fs::write(&path, xz(&tar)).unwrap();
        let err = load_bitbrains(&path, Alignment::CommonWindow).unwrap_err();
        assert!(
            err.to_string().contains("vms.tar.xz!/2.csv:2: column"),
            "{err}"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_input_is_a_trace_or_an_error_never_a_panic(
            rows in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::sample::select(vec![
                        "0", "300", "-1", "1e300", "NaN", "x", "", "9223372036854775807",
                        "-9223372036854775808", "1372629804", "55.5", "126",
                    ]),
                    0..13,
                ),
                0..6,
            )
        ) {
            let mut text = format!("{HEADER}\n");
            for row in rows {
                text.push_str(&row.join(";\t"));
                text.push('\n');
            }
            let _ = read_vm(1, Path::new("p.csv"), text.as_bytes());
            let _ = read_vm(1, Path::new("p.csv"), &text.as_bytes()[text.len() / 2..]);
        }
    }

    #[test]
    fn real_rnd_archive_loads() {
        let Some(traces) = crate::shared_traces_dir() else {
            eprintln!("SKIPPED real_rnd_archive_loads: shared traces folder not found (set KEEL_SHARED_DIR)");
            return;
        };
        let path = traces.join("bitbrains-rnd/rnd-2013-7-vms-001-250.tar.xz");
        let t = load_bitbrains(&path, Alignment::FullSpan).unwrap();
        assert_eq!(t.vms.len(), 250);
        assert_eq!(t.vms[0].name, "1");
        assert_eq!(t.vms[249].name, "250");
        // 2013-07-01 00:05 (first grid point) to 2013-07-31 (last timestamp).
        assert_eq!(
            t.samples() as i64,
            1_375_221_457 / 300 - 1_372_629_804 / 300
        );
        // VM 1's first row: 1372629804; 2; ...; CPU 1.5 %; memory 8218624 KB.
        let vm = &t.vms[0];
        assert_eq!(vm.cpu_utilization[0], 0.015);
        assert_eq!(
            vm.usage.as_ref().unwrap().memory_capacity_bytes[0],
            8_218_624.0 * 1024.0
        );
        assert!(t
            .vms
            .iter()
            .all(|vm| vm.cpu_utilization.iter().all(|c| (0.0..=1.0).contains(c))));
        // VM 165 starts on the last day: zeros before.
        assert_eq!(t.vms[164].cpu_utilization[0], 0.0);
    }
}
