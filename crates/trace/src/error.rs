//! The one error type of this crate.
//!
//! Every variant that stems from a file names it, and, where it applies, the
//! 1-based line, the column and the offending value, in the usual
//! `path:line: message` form, so an operator can open the file and fix it.

use std::io;
use std::path::{Path, PathBuf};

use keel_model::TraceError;

/// Result of a trace-loading operation.
pub type Result<T, E = TraceLoadError> = std::result::Result<T, E>;

/// Why a trace could not be loaded (or packed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceLoadError {
    /// The operating system refused a read (or a compressed stream is corrupt).
    #[error("{}: {source}", path.display())]
    Io {
        /// File or folder being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The path does not exist.
    #[error("{}: no such file or folder", path.display())]
    NotFound {
        /// The missing path.
        path: PathBuf,
    },
    /// A folder holds no trace file at all.
    #[error("{}: empty folder: it holds no trace file", path.display())]
    EmptyFolder {
        /// The folder.
        path: PathBuf,
    },
    /// A file name cannot be used as a VM name because it is not UTF-8.
    #[error("{}: file name is not valid UTF-8", path.display())]
    NonUtf8Name {
        /// The file.
        path: PathBuf,
    },
    /// A PlanetLab file has fewer lines than a full day of samples.
    #[error(
        "{}: truncated: the file has {lines} line(s), expected {expected} (one CPU sample every 300 s)",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Lines the file has.
        lines: usize,
        /// Lines required.
        expected: usize,
    },
    /// A PlanetLab line is not an integer.
    #[error("{}:{line}: value {value:?} is not an integer CPU percentage", path.display())]
    NotAnInteger {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The offending text (shortened if very long).
        value: String,
    },
    /// A PlanetLab value is an integer outside 0..=100.
    #[error("{}:{line}: CPU percentage {value} is outside 0..=100", path.display())]
    PercentOutOfRange {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The offending text.
        value: String,
    },
    /// A listing file names a file that is not in the trace folder.
    #[error(
        "{}:{line}: listed file {name:?} is not a regular file in {}",
        listing.display(),
        folder.display()
    )]
    ListedFileMissing {
        /// The listing file.
        listing: PathBuf,
        /// 1-based line of the listing.
        line: usize,
        /// The listed name.
        name: String,
        /// The trace folder.
        folder: PathBuf,
    },
    /// A listing file names the same file twice.
    #[error(
        "{}:{line}: file {name:?} is listed twice (first on line {first_line})",
        listing.display()
    )]
    ListedTwice {
        /// The listing file.
        listing: PathBuf,
        /// 1-based line of the second mention.
        line: usize,
        /// The listed name.
        name: String,
        /// 1-based line of the first mention.
        first_line: usize,
    },
    /// The trace folder holds files the listing does not name.
    #[error(
        "{}: {count} file(s) in {} are not listed, e.g. {example:?}",
        listing.display(),
        folder.display()
    )]
    UnlistedFiles {
        /// The listing file.
        listing: PathBuf,
        /// The trace folder.
        folder: PathBuf,
        /// How many files are not listed.
        count: usize,
        /// The first of them in byte order.
        example: String,
    },
    /// A CSV row (or the header) lacks a required column.
    #[error("{}:{line}: missing column {column:?}", path.display())]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Name of the missing column.
        column: String,
    },
    /// A CSV cell is not a finite number.
    #[error(
        "{}:{line}: column {column:?}: value {value:?} is not a finite number",
        path.display()
    )]
    NotANumber {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Header of the column.
        column: String,
        /// The offending text (shortened if very long).
        value: String,
    },
    /// A Bitbrains folder or archive holds no `N.csv` file.
    #[error("{}: empty: no Bitbrains VM file (N.csv) found", path.display())]
    NoVmFiles {
        /// The folder or archive.
        path: PathBuf,
    },
    /// Two Bitbrains files carry the same VM number (e.g. `7.csv` and `07.csv`).
    #[error("{}: two files for VM {id}: {first:?} and {second:?}", path.display())]
    DuplicateVm {
        /// The folder or archive.
        path: PathBuf,
        /// The VM number.
        id: u64,
        /// First file name.
        first: String,
        /// Second file name.
        second: String,
    },
    /// A file holds a header but no data row.
    #[error("{}: no data row", path.display())]
    NoSamples {
        /// The file.
        path: PathBuf,
    },
    /// The VMs of a Bitbrains trace share no common time window.
    #[error(
        "{}: the VMs share no 300 s grid point: the latest starts at {latest_start} s, the earliest ends at {earliest_end} s",
        path.display()
    )]
    NoCommonWindow {
        /// The folder or archive.
        path: PathBuf,
        /// Latest first timestamp (epoch seconds).
        latest_start: i64,
        /// Earliest last timestamp (epoch seconds).
        earliest_end: i64,
    },
    /// Timestamps span too long a time to be Unix epoch seconds of one trace.
    #[error(
        "{}: timestamps span {first_ts}..{last_ts}: over a million steps of 300 s (are they Unix epoch seconds?)",
        path.display()
    )]
    TimeSpanTooLong {
        /// The file, folder or archive.
        path: PathBuf,
        /// First timestamp, as read.
        first_ts: i64,
        /// Last timestamp, as read.
        last_ts: i64,
    },
    /// A file has no content at all.
    #[error("{}: empty file", path.display())]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// A wide-CSV row has a different number of columns from the header.
    #[error("{}:{line}: expected {expected} columns, got {got}", path.display())]
    RaggedRow {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Columns in the header.
        expected: usize,
        /// Columns in this row.
        got: usize,
    },
    /// A wide-CSV header has no VM column after the time column.
    #[error("{}:1: the header names no VM column", path.display())]
    NoVmColumns {
        /// The file.
        path: PathBuf,
    },
    /// The loaded series do not form a valid trace.
    #[error("{}: {source}", path.display())]
    InvalidTrace {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: TraceError,
    },
    /// A packed trace (see `bundled`) is malformed.
    #[error("packed trace is malformed: {0}")]
    BadPacked(String),
    /// A trace cannot be packed because a value is not an integer percentage.
    #[error("cannot pack VM {vm:?}: {reason}")]
    NotPackable {
        /// Name of the VM.
        vm: String,
        /// What is wrong.
        reason: String,
    },
    /// A trace format name (CLI flag) is not known.
    #[error("unknown trace format {0:?}: expected planetlab, bitbrains or wide-csv")]
    UnknownFormat(String),
}

impl TraceLoadError {
    /// Wraps an I/O error with the path it concerns; `NotFound` gets its own variant.
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            Self::NotFound { path: path.into() }
        } else {
            Self::Io {
                path: path.into(),
                source,
            }
        }
    }
}

/// Shortens an offending value for an error message (values can be whole lines of garbage).
pub(crate) fn shown(bytes: &[u8]) -> String {
    const MAX: usize = 60;
    let text = String::from_utf8_lossy(bytes);
    if text.chars().count() <= MAX {
        text.into_owned()
    } else {
        let mut short: String = text.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_file_line_and_value() {
        let e = TraceLoadError::NotAnInteger {
            path: "/p/ait05_us_es_root".into(),
            line: 17,
            value: "abc".into(),
        };
        assert_eq!(
            e.to_string(),
            "/p/ait05_us_es_root:17: value \"abc\" is not an integer CPU percentage"
        );
        let e = TraceLoadError::RaggedRow {
            path: "w.csv".into(),
            line: 3,
            expected: 4,
            got: 2,
        };
        assert_eq!(e.to_string(), "w.csv:3: expected 4 columns, got 2");
    }

    #[test]
    fn io_not_found_becomes_not_found() {
        let e = TraceLoadError::io(Path::new("x"), io::ErrorKind::NotFound.into());
        assert!(matches!(e, TraceLoadError::NotFound { .. }));
        let e = TraceLoadError::io(Path::new("x"), io::ErrorKind::PermissionDenied.into());
        assert!(matches!(e, TraceLoadError::Io { .. }));
    }

    #[test]
    fn shown_shortens_long_values() {
        assert_eq!(shown(b"12x"), "12x");
        let long = vec![b'7'; 500];
        assert_eq!(shown(&long).chars().count(), 61);
        assert_eq!(shown(&[0xff, b'1']), "\u{fffd}1");
    }
}
