//! Small I/O helpers shared by the format modules.

use std::fs;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use crate::error::{Result, TraceLoadError};

/// Reads the next line into `buf` without its terminator (`\n` or `\r\n`).
///
/// Returns `false` at end of input. A final line without terminator counts as
/// a line; the empty string after a final `\n` does not (so a file of 288
/// lines that ends with a newline has 288 lines, not 289).
pub(crate) fn next_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.clear();
    if reader.read_until(b'\n', buf)? == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    Ok(true)
}

/// Trims ASCII whitespace on both sides.
pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// One regular file of a trace folder.
#[derive(Debug, Clone)]
pub(crate) struct FolderFile {
    /// File name (UTF-8).
    pub name: String,
    /// Full path.
    pub path: PathBuf,
}

/// Lists the regular files of `dir` (symbolic links followed), skipping hidden
/// files (names starting with `.`), sorted by name in byte order.
pub(crate) fn list_regular_files(dir: &Path) -> Result<Vec<FolderFile>> {
    let entries = fs::read_dir(dir).map_err(|e| TraceLoadError::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| TraceLoadError::io(dir, e))?;
        let path = entry.path();
        let is_file = fs::metadata(&path).map(|m| m.is_file()).unwrap_or(false);
        if !is_file {
            continue;
        }
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| TraceLoadError::NonUtf8Name { path: path.clone() })?;
        if name.starts_with('.') {
            continue;
        }
        files.push(FolderFile { name, path });
    }
    files.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(files)
}

/// Fails with `NotFound` unless `path` exists (following symbolic links).
pub(crate) fn metadata(path: &Path) -> Result<fs::Metadata> {
    fs::metadata(path).map_err(|e| TraceLoadError::io(path, e))
}

/// Parses a finite decimal number from `raw`, or names the file, line,
/// column and value that is not one.
pub(crate) fn parse_number(raw: &[u8], path: &Path, line: usize, column: &str) -> Result<f64> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .ok_or_else(|| TraceLoadError::NotANumber {
            path: path.into(),
            line,
            column: column.into(),
            value: crate::error::shown(raw),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<Vec<u8>> {
        let mut reader = input;
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while next_line(&mut reader, &mut buf).unwrap() {
            out.push(buf.clone());
        }
        out
    }

    #[test]
    fn final_newline_does_not_make_an_extra_line() {
        assert_eq!(lines(b"1\n2\n"), vec![b"1".to_vec(), b"2".to_vec()]);
        assert_eq!(lines(b"1\n2"), vec![b"1".to_vec(), b"2".to_vec()]);
        assert_eq!(lines(b"1\r\n2\r\n"), vec![b"1".to_vec(), b"2".to_vec()]);
        assert_eq!(lines(b"1\n\n"), vec![b"1".to_vec(), b"".to_vec()]);
        assert!(lines(b"").is_empty());
    }

    #[test]
    fn lists_regular_visible_files_in_byte_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b", "a b", "B", ".hidden", "a"] {
            fs::write(dir.path().join(name), "1\n").unwrap();
        }
        fs::create_dir(dir.path().join("sub")).unwrap();
        let names: Vec<_> = list_regular_files(dir.path())
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["B", "a", "a b", "b"]);
    }
}
