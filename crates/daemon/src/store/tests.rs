//! The store on a real SQLite file in a temporary directory.

use super::*;
use crate::control::VmUsage;
use crate::view::HostView;
use keel_model::Resources;
use keel_policy::balance::Imbalance;

const MIN_MS: u64 = 60_000;
const T0: u64 = 1_700_000_000_000 / (600 * 1000) * (600 * 1000);

fn usage(vm: &str, host: &str, cpu: f64) -> VmUsage {
    VmUsage {
        vm: vm.into(),
        host: host.into(),
        usage: Resources::new(cpu, 1e9, 10.0, 20.0),
    }
}

fn host(name: &str, cpu_load: f64, vms: usize) -> HostView {
    HostView {
        name: name.into(),
        capacity: Resources::new(8.0, 64e9, 0.0, 0.0),
        maintenance: false,
        safe_to_service: false,
        vm_count: vms,
        demand: Resources::ZERO,
        load: Resources::new(cpu_load, 0.5, 0.0, 0.0),
    }
}

fn imbalance(std_dev: f64) -> Imbalance {
    Imbalance {
        std_dev,
        normalized: std_dev / 2.0,
        per_resource_std_dev: Resources::ZERO,
        mean_load: Resources::new(0.4, 0.5, 0.0, 0.0),
        total_demand: Resources::new(12.0, 3e10, 0.0, 0.0),
    }
}

/// One round at `t_ms`: vm-a on host-0 using `cpu` cores.
fn round(store: &Store, t_ms: u64, cpu: f64) {
    store
        .record_round(
            t_ms,
            &[usage("vm-a", "host-0", cpu), usage("vm-b", "host-1", 1.0)],
            &[host("host-0", cpu / 8.0, 1), host("host-1", 0.125, 1)],
            &imbalance(cpu / 10.0),
        )
        .unwrap();
}

fn no_tiers() -> HistoryConfig {
    HistoryConfig {
        tiers: vec![],
        ..HistoryConfig::default()
    }
}

#[test]
fn rounds_are_read_back_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in(dir.path(), HistoryConfig::default()).unwrap();
    for i in 0..5 {
        round(&store, T0 + i * 2_000, i as f64);
    }
    store
        .audit(T0, "alice", "plan.apply", "plan 1", "3 moves")
        .unwrap();
    store.flush();
    let samples = store.vm_samples("vm-a", 0, 1000).unwrap();
    assert_eq!(samples.len(), 5);
    assert_eq!(samples[4].t_ms, T0 + 8_000);
    assert_eq!(samples[4].cpu_cores, 4.0);
    assert_eq!(samples[0].network_bytes_per_second, 20.0);
    let newest = store.vm_samples("vm-a", T0 + 2_000, 2).unwrap();
    let times: Vec<u64> = newest.iter().map(|s| s.t_ms).collect();
    assert_eq!(times, [T0 + 6_000, T0 + 8_000], "newest two, oldest first");
    let hosts = store.host_samples("host-0", 0, 10).unwrap();
    assert_eq!((hosts.len(), hosts[4].vms, hosts[4].cpu_load), (5, 1, 0.5));
    let points = store.imbalance_points(0, 10).unwrap();
    assert_eq!(
        (points[4].imbalance, points[4].r, points[4].l),
        (0.4, 12.0, 0.4)
    );
    assert_eq!(
        store.last_host_of("vm-b").unwrap().as_deref(),
        Some("host-1")
    );
    assert_eq!(store.last_host_of("nope").unwrap(), None);
    assert!(store.knows_host("host-1").unwrap() && !store.knows_host("x").unwrap());
    drop(store);

    let store = Store::open_in(dir.path(), HistoryConfig::default()).unwrap();
    assert_eq!(store.vm_samples("vm-a", 0, 1000).unwrap().len(), 5);
    let audit = store.audit_entries(10).unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (
            audit[0].who.as_str(),
            audit[0].action.as_str(),
            audit[0].t_ms
        ),
        ("alice", "plan.apply", T0)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(dir.path().join(DB_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    let mode: String = store
        .read(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn old_rounds_fold_into_weighted_minute_and_ten_minute_averages() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in(dir.path(), HistoryConfig::default()).unwrap();
    // Minute 0: rounds at 0 s and 30 s (cpu 1 and 3); minute 1: one round
    // (cpu 5); then nothing until two hours later.
    round(&store, T0, 1.0);
    round(&store, T0 + 30_000, 3.0);
    round(&store, T0 + MIN_MS, 5.0);
    let later = T0 + 2 * 3_600_000;
    round(&store, later, 7.0);
    store.compact(later).unwrap();
    let s = store.vm_samples("vm-a", 0, 100).unwrap();
    let got: Vec<(u64, f64)> = s.iter().map(|s| (s.t_ms, s.cpu_cores)).collect();
    assert_eq!(
        got,
        [(T0, 2.0), (T0 + MIN_MS, 5.0), (later, 7.0)],
        "minute buckets hold means; the last hour stays raw"
    );
    let h = store.host_samples("host-0", 0, 100).unwrap();
    assert_eq!((h.len(), h[0].cpu_load, h[0].vms), (3, 0.25, 1));
    assert_eq!(store.imbalance_points(0, 100).unwrap().len(), 3);

    // Two days later both minute buckets (3 rounds) fold into one
    // 10-minute bucket: the mean over rounds, not over buckets.
    let two_days = T0 + 2 * 86_400_000;
    store.compact(two_days).unwrap();
    let s = store.vm_samples("vm-a", 0, 100).unwrap();
    assert_eq!((s[0].t_ms, s[0].cpu_cores), (T0, 3.0));
    // 31 days later the 10-minute buckets are past their 30 days.
    store.compact(T0 + 31 * 86_400_000).unwrap();
    assert!(store.vm_samples("vm-a", 0, 100).unwrap().is_empty());
    assert!(store.imbalance_points(0, 100).unwrap().is_empty());
}

#[test]
fn without_tiers_raw_rounds_are_deleted_after_their_hour() {
    let store = Store::in_memory(no_tiers()).unwrap();
    round(&store, T0, 1.0);
    round(&store, T0 + 3_600_000, 2.0);
    store.compact(T0 + 3_600_001).unwrap();
    let s = store.vm_samples("vm-a", 0, 10).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].t_ms, T0 + 3_600_000);
}

#[test]
fn history_settings_are_checked() {
    assert!(HistoryConfig::default().check().is_ok());
    let mut bad = HistoryConfig::default();
    bad.tiers[1].bucket_seconds = 90;
    let (setting, value, _) = bad.check().unwrap_err();
    assert_eq!(
        (setting.as_str(), value.as_str()),
        ("history.tiers[1].bucket_seconds", "90")
    );
    let mut bad = HistoryConfig::default();
    bad.tiers[0].keep_seconds = 60;
    assert_eq!(bad.check().unwrap_err().0, "history.tiers[0].keep_seconds");
    let bad = HistoryConfig {
        raw_keep_seconds: 0,
        ..HistoryConfig::default()
    };
    assert_eq!(bad.check().unwrap_err().0, "history.raw_keep_seconds");
}

#[test]
fn a_file_from_a_newer_keel_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open_in(dir.path(), HistoryConfig::default()).unwrap());
    let path = dir.path().join(DB_FILE);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", schema::SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let e = Store::open_in(dir.path(), HistoryConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains(&path.display().to_string()), "{e}");
    assert!(e.contains("newer Keel"), "{e}");
}

#[test]
fn a_corrupt_or_foreign_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    std::fs::write(&path, vec![0x5a_u8; 8192]).unwrap();
    let e = Store::open(&path, HistoryConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains(&path.display().to_string()), "{e}");
    assert!(e.contains("not a database"), "{e}");

    let other = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&other).unwrap();
    conn.execute_batch("CREATE TABLE t (x)").unwrap();
    drop(conn);
    let e = Store::open(&other, HistoryConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("other.db") && e.contains("not a Keel history database"),
        "{e}"
    );
}

/// Per VM: (rows, summed rounds, rounds-weighted sum of cpu_cores).
fn totals(store: &Store) -> Vec<(String, i64, i64, f64)> {
    store
        .read(|c| {
            let mut q = c.prepare(
                "SELECT vm, count(*), sum(rounds), sum(cpu_cores * rounds) FROM vm_samples
                 GROUP BY vm ORDER BY vm",
            )?;
            let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect()
        })
        .unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Folding into coarser buckets keeps every round's weight: per VM the
    /// number of rounds and the rounds-weighted sum are unchanged (nothing
    /// is older than the last tier's 30 days), rows never increase, and no
    /// two rows of a VM share a time and resolution.
    #[test]
    fn downsampling_keeps_the_weighted_sums(
        gaps_s in proptest::collection::vec(1u64..900, 1..60),
        cpus in proptest::collection::vec(0.0f64..16.0, 60),
        // At most 27 days in all: nothing reaches the last tier's 30 days.
        passes_h in proptest::collection::vec(0u64..(24 * 9), 1..4),
    ) {
        let store = Store::in_memory(HistoryConfig::default()).unwrap();
        let mut t = T0;
        for (i, gap) in gaps_s.iter().enumerate() {
            t += gap * 1000;
            round(&store, t, cpus[i]);
        }
        let before = totals(&store);
        let mut now = t;
        for h in passes_h {
            now += h * 3_600_000;
            store.compact(now).unwrap();
            let after = totals(&store);
            proptest::prop_assert_eq!(after.len(), before.len());
            for (a, b) in after.iter().zip(&before) {
                proptest::prop_assert_eq!(&a.0, &b.0);
                proptest::prop_assert!(a.1 <= b.1, "rows grew: {:?} -> {:?}", b, a);
                proptest::prop_assert_eq!(a.2, b.2);
                proptest::prop_assert!((a.3 - b.3).abs() < 1e-6 * b.3.abs().max(1.0));
            }
            let dupes: i64 = store
                .read(|c| {
                    c.query_row(
                        "SELECT count(*) FROM (SELECT 1 FROM vm_samples
                         GROUP BY vm, bucket_ms, t_ms HAVING count(*) > 1)",
                        [],
                        |r| r.get(0),
                    )
                })
                .unwrap();
            proptest::prop_assert_eq!(dupes, 0);
        }
    }
}
