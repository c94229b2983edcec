//! `keel lab alloc-test` end to end: a real lab (1 host, 3 TCG guests on
//! one core), keel-alloc's agent enforcing shares 4:2:1, a reservation, a
//! limit and work-conserving redistribution, the figures printed, and
//! nothing left behind afterwards.
//!
//! Needs the `libvirt` feature of keel-lab (`--features keel-lab/libvirt`
//! or `keel-cli/libvirt`), root, QEMU and libvirtd; otherwise it prints a
//! loud SKIPPED and returns. The lab is torn down by a Drop guard even when
//! an assertion fails.

use keel_lab::prereq::Prereqs;

/// Why the test cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    if !cfg!(feature = "libvirt") {
        return Some(
            "keel-lab built without its `libvirt` feature; run with --features keel-lab/libvirt"
                .into(),
        );
    }
    Prereqs::check()
        .message()
        .map(|msg| format!("needs root, unshare, qemu-system-x86_64 and libvirtd: {msg}"))
}

#[test]
fn alloc_test_enforces_shares_reservation_limit_on_real_guests() {
    match unavailable() {
        Some(why) => eprintln!("SKIPPED (lab alloc-test: {why})"),
        #[cfg(feature = "libvirt")]
        None => live::run(),
        #[cfg(not(feature = "libvirt"))]
        None => unreachable!("checked by unavailable()"),
    }
}

#[cfg(feature = "libvirt")]
mod live {
    use keel_lab::{alloc_test, cmd, Lab};

    /// Runs `down` when dropped, so a failing test leaves nothing behind.
    struct Guard(Lab);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = keel_lab::down(&self.0);
        }
    }

    pub fn run() {
        let lab = Lab {
            dir: std::env::temp_dir().join("keel-lab-test-alloc"),
            prefix: "keel-labal".to_string(),
        };
        let _ = keel_lab::down(&lab);
        let guard = Guard(lab.clone());
        let mut log = Vec::new();
        let report = alloc_test::run(&lab, &alloc_test::Options::default(), &mut log);
        eprintln!("{}", String::from_utf8_lossy(&log));
        let report = report.unwrap_or_else(|e| panic!("alloc-test could not run: {e}"));
        // The measured figures, for the CI log.
        println!("{}", serde_json::to_string_pretty(&report).expect("json"));
        eprintln!(
            "alloc-test figures: shares_ratio {:?}, reservation_share {:?}, limit_share {:?}, work_conserving_gain {:?}",
            report.shares_ratio,
            report.reservation_share,
            report.limit_share,
            report.work_conserving_gain
        );
        match &report.balloon {
            Some(b) => eprintln!(
                "alloc-test balloons: configured {:?} MiB, target {:?}, reached {:?} in {:?} s, restored {:?}",
                b.configured_mib, b.target_mib, b.contended_mib, b.shrink_seconds, b.restored_mib
            ),
            None => eprintln!("SKIPPED: {:?}", report.skipped),
        }
        assert!(report.passed, "{:?}", report.failures);
        assert_eq!(report.shares_ratio.len(), 3);
        assert_eq!(report.released.len(), 3, "the agent undid its settings");
        drop(guard);
        let procs = cmd::pids_mentioning(&lab.dir.to_string_lossy());
        assert!(procs.is_empty(), "processes left: {procs:?}");
        assert!(!lab.dir.exists(), "lab directory left");
        assert!(
            !std::path::Path::new("/sys/fs/cgroup/cpu/keel-labal-alloc").exists(),
            "test cgroup left"
        );
    }
}
