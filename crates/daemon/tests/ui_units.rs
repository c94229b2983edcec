//! The dashboard's JavaScript unit tests (`crates/daemon/ui/tests/`: tick
//! steps, time ticks, clock labels, the heat map's colour scale), run with
//! Node.js's built-in test runner. Skips loudly where `node` is missing.

use std::path::Path;
use std::process::Command;

#[test]
fn the_dashboard_javascript_unit_tests_pass() {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
    let node = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("node"))
            .find(|p| p.is_file())
    });
    let Some(node) = node else {
        eprintln!(
            "SKIPPED: the dashboard's JavaScript unit tests because `node` is not on PATH \
             (Debian: apt-get install nodejs)"
        );
        return;
    };
    let out = Command::new(&node)
        .arg("--test")
        .arg("tests/")
        .current_dir(&ui)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", node.display()));
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(
        out.status.success(),
        "node --test failed ({:?}):\n{report}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("# fail 0"), "{report}");
}
