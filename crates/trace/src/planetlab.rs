//! PlanetLab (CoMon) CPU traces as shipped with CloudSim's power examples.
//!
//! A day is a folder with one file per VM. Each file holds one integer CPU
//! percentage per line, one line per 300 s, 288 lines for 24 h. CloudSim's
//! `UtilizationModelPlanetLabInMemory` reads the first 288 lines as
//! `Integer.valueOf(line) / 100.0`; this loader gives bit-identical values
//! (`v as f64 / 100.0`) so simulations can be compared with CloudSim's.
//!
//! Reading rules:
//! - Lines end with `\n` or `\r\n`; a final newline does not start a 289th line.
//! - Only the first 288 lines are read. Lines beyond them (including trailing
//!   blank lines) are ignored, as CloudSim ignores them.
//! - A value may carry surrounding spaces or tabs (CloudSim would reject them;
//!   the value read is the same either way). A blank line among the first 288
//!   is an error, as in CloudSim.
//! - Values must be integers in 0..=100.
//! - Only regular files are VMs (symbolic links are followed); sub-folders and
//!   hidden files (name starting with `.`) are skipped. The VM name is the file
//!   name (some real names contain spaces).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::num::IntErrorKind;
use std::path::{Path, PathBuf};

use keel_model::{VmSeries, WorkloadTrace};

use crate::error::{shown, Result, TraceLoadError};
use crate::util::{list_regular_files, metadata, next_line, trim, FolderFile};

/// Samples per PlanetLab file: one day at one sample per 300 s.
pub const PLANETLAB_SAMPLES: usize = 288;

/// Seconds between two PlanetLab samples.
pub const PLANETLAB_INTERVAL_SECONDS: f64 = 300.0;

/// Which VM gets which file: the order of `WorkloadTrace::vms`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TraceOrder {
    /// File names in lexicographic byte order (CloudSim runs marked "sorted").
    #[default]
    Sorted,
    /// The order of a listing file: one file name per line, e.g. CloudSim's
    /// `File.listFiles()` order recorded in
    /// `reference-cloudsim-3.0.3/listfiles-order/<date>.txt`. Every listed
    /// name must be a regular file of the folder, and every regular file of
    /// the folder must be listed exactly once. Blank lines are skipped; names
    /// are taken verbatim (spaces are part of them), minus the line terminator.
    Listing(PathBuf),
}

/// Loads one PlanetLab day from `folder`, VMs in the given `order`.
pub fn load_planetlab(folder: &Path, order: &TraceOrder) -> Result<WorkloadTrace> {
    if !metadata(folder)?.is_dir() {
        return Err(TraceLoadError::io(
            folder,
            std::io::Error::other("not a folder"),
        ));
    }
    let files = list_regular_files(folder)?;
    if files.is_empty() {
        return Err(TraceLoadError::EmptyFolder {
            path: folder.into(),
        });
    }
    let files = match order {
        TraceOrder::Sorted => files,
        TraceOrder::Listing(listing) => order_by_listing(folder, files, listing)?,
    };
    let mut buf = Vec::new();
    let vms = files
        .into_iter()
        .map(|file| {
            Ok(VmSeries {
                cpu_utilization: read_planetlab_file(&file.path, &mut buf)?,
                name: file.name,
                usage: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    WorkloadTrace::new(PLANETLAB_INTERVAL_SECONDS, vms).map_err(|source| {
        TraceLoadError::InvalidTrace {
            path: folder.into(),
            source,
        }
    })
}

/// Reads one VM file: the first 288 values, each `v as f64 / 100.0`.
fn read_planetlab_file(path: &Path, buf: &mut Vec<u8>) -> Result<Vec<f64>> {
    let file = File::open(path).map_err(|e| TraceLoadError::io(path, e))?;
    parse_planetlab(BufReader::new(file), path, buf)
}

/// Parses PlanetLab lines from `reader`; `path` is only used in errors.
fn parse_planetlab(mut reader: impl BufRead, path: &Path, buf: &mut Vec<u8>) -> Result<Vec<f64>> {
    let mut values = Vec::with_capacity(PLANETLAB_SAMPLES);
    while values.len() < PLANETLAB_SAMPLES {
        if !next_line(&mut reader, buf).map_err(|e| TraceLoadError::io(path, e))? {
            return Err(TraceLoadError::Truncated {
                path: path.into(),
                lines: values.len(),
                expected: PLANETLAB_SAMPLES,
            });
        }
        let line = values.len() + 1;
        values.push(f64::from(parse_percent(buf, path, line)?) / 100.0);
    }
    Ok(values)
}

/// Parses one integer CPU percentage in 0..=100.
fn parse_percent(raw: &[u8], path: &Path, line: usize) -> Result<u8> {
    let not_integer = || TraceLoadError::NotAnInteger {
        path: path.into(),
        line,
        value: shown(raw),
    };
    let out_of_range = || TraceLoadError::PercentOutOfRange {
        path: path.into(),
        line,
        value: shown(trim(raw)),
    };
    let text = std::str::from_utf8(trim(raw)).map_err(|_| not_integer())?;
    match text.parse::<i64>() {
        Ok(v) => u8::try_from(v)
            .ok()
            .filter(|v| *v <= 100)
            .ok_or_else(out_of_range),
        Err(e)
            if matches!(
                e.kind(),
                IntErrorKind::PosOverflow | IntErrorKind::NegOverflow
            ) =>
        {
            Err(out_of_range())
        }
        Err(_) => Err(not_integer()),
    }
}

/// Reorders `files` (all regular files of `folder`) as `listing` says.
fn order_by_listing(
    folder: &Path,
    files: Vec<FolderFile>,
    listing: &Path,
) -> Result<Vec<FolderFile>> {
    let file = File::open(listing).map_err(|e| TraceLoadError::io(listing, e))?;
    let mut reader = BufReader::new(file);
    let mut by_name: HashMap<String, FolderFile> =
        files.into_iter().map(|f| (f.name.clone(), f)).collect();
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    let mut ordered = Vec::with_capacity(by_name.len());
    let mut buf = Vec::new();
    let mut line = 0;
    while next_line(&mut reader, &mut buf).map_err(|e| TraceLoadError::io(listing, e))? {
        line += 1;
        if trim(&buf).is_empty() {
            continue;
        }
        let name = String::from_utf8_lossy(&buf).into_owned();
        if let Some(&first_line) = first_seen.get(&name) {
            return Err(TraceLoadError::ListedTwice {
                listing: listing.into(),
                line,
                name,
                first_line,
            });
        }
        let Some(file) = by_name.remove(&name) else {
            return Err(TraceLoadError::ListedFileMissing {
                listing: listing.into(),
                line,
                name,
                folder: folder.into(),
            });
        };
        first_seen.insert(name, line);
        ordered.push(file);
    }
    if let Some(example) = by_name.keys().min_by(|a, b| a.as_bytes().cmp(b.as_bytes())) {
        return Err(TraceLoadError::UnlistedFiles {
            listing: listing.into(),
            folder: folder.into(),
            count: by_name.len(),
            example: example.clone(),
        });
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::fs;

    use super::*;

    fn day_text(f: impl Fn(usize) -> u32) -> String {
        (0..PLANETLAB_SAMPLES).fold(String::new(), |mut s, i| {
            writeln!(s, "{}", f(i)).unwrap();
            s
        })
    }

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn loads_sorted_with_exact_cloudsim_values() {
        let a = day_text(|i| (i % 101) as u32);
        let dir = folder(&[("b node", &day_text(|_| 7)), ("a", &a)]);
        let t = load_planetlab(dir.path(), &TraceOrder::Sorted).unwrap();
        assert_eq!(t.interval_seconds, 300.0);
        assert_eq!(t.samples(), 288);
        assert_eq!(t.vms[0].name, "a");
        assert_eq!(t.vms[1].name, "b node");
        for (i, v) in t.vms[0].cpu_utilization.iter().enumerate() {
            assert_eq!(v.to_bits(), ((i % 101) as f64 / 100.0).to_bits());
        }
        assert_eq!(t.vms[1].cpu_utilization[5], 0.07);
        assert!(t.vms.iter().all(|vm| vm.usage.is_none()));
    }

    #[test]
    fn truncated_file_names_file_and_line_count() {
        let short: String = day_text(|_| 1)
            .lines()
            .take(200)
            .map(|l| l.to_owned() + "\n")
            .collect();
        let dir = folder(&[("ok", &day_text(|_| 1)), ("short", &short)]);
        let err = load_planetlab(dir.path(), &TraceOrder::Sorted).unwrap_err();
        assert!(matches!(
            err,
            TraceLoadError::Truncated {
                lines: 200,
                expected: 288,
                ..
            }
        ));
        let msg = err.to_string();
        assert!(
            msg.contains("short") && msg.contains("200 line(s)"),
            "{msg}"
        );
    }

    #[test]
    fn non_numeric_value_names_file_line_and_value() {
        let mut text = day_text(|_| 3);
        text = text.replacen("3\n", "3\n3\nabc\n", 1);
        let dir = folder(&[("ait05_us_es_root", &text)]);
        let err = load_planetlab(dir.path(), &TraceOrder::Sorted).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.ends_with("ait05_us_es_root:3: value \"abc\" is not an integer CPU percentage"),
            "{msg}"
        );
        for bad in ["4.5", "", "1e2", "0x10"] {
            let text = day_text(|_| 3).replacen("3\n", &format!("{bad}\n"), 1);
            let dir = folder(&[("x", &text)]);
            let err = load_planetlab(dir.path(), &TraceOrder::Sorted).unwrap_err();
            assert!(
                matches!(err, TraceLoadError::NotAnInteger { line: 1, .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        for bad in ["101", "-1", "99999999999999999999999"] {
            let text = day_text(|_| 3).replacen("3\n", &format!("{bad}\n"), 1);
            let dir = folder(&[("x", &text)]);
            let err = load_planetlab(dir.path(), &TraceOrder::Sorted).unwrap_err();
            assert!(
                matches!(err, TraceLoadError::PercentOutOfRange { line: 1, ref value, .. } if value == bad),
                "{bad}: {err}"
            );
        }
        let text = day_text(|_| 100);
        let dir = folder(&[("x", &text)]);
        let t = load_planetlab(dir.path(), &TraceOrder::Sorted).unwrap();
        assert_eq!(t.vms[0].cpu_utilization[0], 1.0);
    }

    #[test]
    fn line_endings_extra_lines_and_spaces() {
        let crlf = day_text(|_| 5).replace('\n', "\r\n");
        let no_final_newline = day_text(|_| 6).trim_end().to_owned();
        let extra = day_text(|_| 8) + "\n\n9\nrubbish\n";
        let spaced = day_text(|_| 9).replace('\n', " \n");
        let dir = folder(&[
            ("a", &crlf),
            ("b", &no_final_newline),
            ("c", &extra),
            ("d", &spaced),
        ]);
        let t = load_planetlab(dir.path(), &TraceOrder::Sorted).unwrap();
        let firsts: Vec<f64> = t.vms.iter().map(|vm| vm.cpu_utilization[287]).collect();
        assert_eq!(firsts, [0.05, 0.06, 0.08, 0.09]);
        assert_eq!(t.samples(), 288);
    }

    #[test]
    fn blank_line_inside_the_day_is_an_error() {
        let text = day_text(|_| 1).replacen("1\n", "\n", 1);
        let dir = folder(&[("x", &text)]);
        let err = load_planetlab(dir.path(), &TraceOrder::Sorted).unwrap_err();
        assert!(
            matches!(err, TraceLoadError::NotAnInteger { line: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn empty_and_missing_folders() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join(".hidden"), "1\n").unwrap();
        let err = load_planetlab(dir.path(), &TraceOrder::Sorted).unwrap_err();
        assert!(matches!(err, TraceLoadError::EmptyFolder { .. }), "{err}");
        assert!(err.to_string().contains("empty folder"));
        let missing = dir.path().join("nope");
        let err = load_planetlab(&missing, &TraceOrder::Sorted).unwrap_err();
        assert!(matches!(err, TraceLoadError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("nope"));
    }

    #[test]
    fn listing_order_and_its_errors() {
        let dir = folder(&[("a", &day_text(|_| 1)), ("b c", &day_text(|_| 2))]);
        let lst = tempfile::tempdir().unwrap();
        let listing = lst.path().join("order.txt");

        fs::write(&listing, "b c\r\n\na\n").unwrap();
        let t = load_planetlab(dir.path(), &TraceOrder::Listing(listing.clone())).unwrap();
        let names: Vec<_> = t.vms.iter().map(|vm| vm.name.as_str()).collect();
        assert_eq!(names, ["b c", "a"]);

        fs::write(&listing, "a\nb c\nzzz\n").unwrap();
        let err = load_planetlab(dir.path(), &TraceOrder::Listing(listing.clone())).unwrap_err();
        assert!(
            matches!(err, TraceLoadError::ListedFileMissing { line: 3, ref name, .. } if name == "zzz"),
            "{err}"
        );
        assert!(err.to_string().contains("order.txt:3:"), "{err}");

        fs::write(&listing, "a\n").unwrap();
        let err = load_planetlab(dir.path(), &TraceOrder::Listing(listing.clone())).unwrap_err();
        assert!(
            matches!(err, TraceLoadError::UnlistedFiles { count: 1, ref example, .. } if example == "b c"),
            "{err}"
        );

        fs::write(&listing, "a\nb c\na\n").unwrap();
        let err = load_planetlab(dir.path(), &TraceOrder::Listing(listing.clone())).unwrap_err();
        assert!(
            matches!(
                err,
                TraceLoadError::ListedTwice {
                    line: 3,
                    first_line: 1,
                    ..
                }
            ),
            "{err}"
        );

        let err =
            load_planetlab(dir.path(), &TraceOrder::Listing(lst.path().join("no"))).unwrap_err();
        assert!(matches!(err, TraceLoadError::NotFound { .. }), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_a_series_or_an_error_never_a_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)
        ) {
            let mut buf = Vec::new();
            if let Ok(values) = parse_planetlab(&bytes[..], Path::new("p"), &mut buf) {
                proptest::prop_assert_eq!(values.len(), PLANETLAB_SAMPLES);
            }
        }
    }

    #[test]
    fn real_days_load_in_both_orders() {
        let Some(traces) = crate::shared_traces_dir() else {
            eprintln!("SKIPPED real_days_load_in_both_orders: shared traces folder not found (set KEEL_SHARED_DIR)");
            return;
        };
        let expected = [
            ("20110303", 1052),
            ("20110306", 898),
            ("20110309", 1061),
            ("20110322", 1516),
            ("20110325", 1078),
        ];
        for (day, vms) in expected {
            let folder = traces.join("planetlab").join(day);
            let sorted = load_planetlab(&folder, &TraceOrder::Sorted).unwrap();
            assert_eq!(sorted.vms.len(), vms, "{day}");
            assert_eq!(sorted.samples(), 288);
            assert!(sorted.vms.iter().any(|vm| vm.name.contains(' ')));
            let listing = traces
                .join("planetlab/reference-cloudsim-3.0.3/listfiles-order")
                .join(format!("{day}.txt"));
            let listed = load_planetlab(&folder, &TraceOrder::Listing(listing)).unwrap();
            assert_eq!(listed.vms.len(), vms);
            let mut resorted = listed.vms.clone();
            resorted.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
            assert_eq!(resorted, sorted.vms, "{day}: same VMs, other order");
        }
    }
}
