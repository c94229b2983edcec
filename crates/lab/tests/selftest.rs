//! `keel lab selftest` end to end: a real lab (2 hosts, 2 guests on h0),
//! one control iteration of Keel through the libvirt driver, the 1.6x
//! check, the failure injection, and nothing left behind afterwards.
//!
//! Needs the `libvirt` feature of keel-lab (`--features keel-lab/libvirt`
//! or `keel-cli/libvirt`), root, QEMU, libvirtd and 2 CPUs; otherwise it
//! prints a loud SKIPPED and returns. The lab is torn down by a Drop guard
//! even when an assertion fails.

use keel_lab::prereq::Prereqs;

/// Why the test cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    if !cfg!(feature = "libvirt") {
        return Some(
            "keel-lab built without its `libvirt` feature; run with --features keel-lab/libvirt"
                .into(),
        );
    }
    if let Some(msg) = Prereqs::check().message() {
        return Some(format!(
            "needs root, unshare, qemu-system-x86_64 and libvirtd: {msg}"
        ));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus < 2).then(|| format!("needs 2 CPUs, this machine has {cpus}"))
}

#[test]
fn selftest_balances_and_survives_a_killed_destination() {
    match unavailable() {
        Some(why) => eprintln!("SKIPPED (lab selftest: {why})"),
        #[cfg(feature = "libvirt")]
        None => live::run(),
        #[cfg(not(feature = "libvirt"))]
        None => unreachable!("checked by unavailable()"),
    }
}

#[cfg(feature = "libvirt")]
mod live {
    use keel_lab::{cmd, Lab};
    use std::process::Command;

    fn netns_with(prefix: &str) -> Vec<String> {
        let out = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .filter(|n| n.starts_with(prefix))
            .collect()
    }

    /// Runs `down` when dropped, so a failing test leaves nothing behind.
    struct Guard(Lab);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = keel_lab::down(&self.0);
        }
    }

    /// The selftest on a lab of its own, then the check that nothing is left.
    pub fn run() {
        let lab = Lab {
            dir: std::env::temp_dir().join("keel-lab-test-selftest"),
            prefix: "keel-labst".to_string(),
        };
        let _ = keel_lab::down(&lab);
        let guard = Guard(lab.clone());
        let mut log = Vec::new();
        let opts = keel_lab::selftest::Options::default();
        let report = keel_lab::selftest::run(&lab, &opts, &mut log);
        eprintln!("{}", String::from_utf8_lossy(&log));
        let report = report.unwrap_or_else(|e| panic!("selftest could not run: {e}"));
        println!("{}", serde_json::to_string_pretty(&report).expect("json"));
        assert!(report.passed, "{:?}", report.failures);
        assert!(report.slower_guest_speedup.unwrap_or(0.0) >= keel_lab::selftest::MIN_SPEEDUP);
        assert!(report.guests_lost.is_empty());
        let inj = report.failure_injection.as_ref().expect("injection ran");
        assert_eq!(
            inj.error_kind.as_deref(),
            Some("MigrationFailed"),
            "{inj:?}"
        );
        assert_eq!(inj.vm_running_on.as_deref(), Some(inj.from.as_str()));
        drop(guard);
        // The selftest brought the lab up, so it took it down: nothing is left.
        assert!(netns_with(&lab.prefix).is_empty(), "namespaces left");
        let procs = cmd::pids_mentioning(&lab.dir.to_string_lossy());
        assert!(procs.is_empty(), "processes left: {procs:?}");
        assert!(!lab.dir.exists(), "lab directory left");
    }
}
