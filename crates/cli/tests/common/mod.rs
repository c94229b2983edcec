//! Helpers shared by the `keel` binary's integration tests.
// Each test file uses a subset of these.
#![allow(dead_code)]

use std::process::Output;

/// The command's standard output.
pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

/// The command's standard error.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the command succeeded, showing its stderr if not.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "keel failed with {:?}; stderr:\n{}",
        out.status,
        stderr(out)
    );
}

/// Asserts a bad-input failure: exit code 1, stderr exactly one non-empty
/// line (`keel: error: ...`) holding every one of `needles`, nothing on
/// stdout. Returns that line.
pub fn assert_one_line_error(out: &Output, needles: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit code 1, got {:?}; stderr: {err:?}",
        out.status
    );
    let line = err.strip_suffix('\n').unwrap_or(&err);
    assert!(
        !line.is_empty() && !line.contains('\n'),
        "stderr is not exactly one line: {err:?}"
    );
    assert!(
        line.starts_with("keel: error: "),
        "unexpected error prefix: {line:?}"
    );
    for needle in needles {
        assert!(
            line.contains(needle),
            "error line {line:?} does not contain {needle:?}"
        );
    }
    assert!(out.stdout.is_empty(), "a failed run printed to stdout");
    line.to_owned()
}
