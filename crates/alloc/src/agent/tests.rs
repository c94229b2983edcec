use super::*;
use crate::cgroup::V1_MEMORY_UNLIMITED;
use std::fs;
use std::path::PathBuf;

const MIB: f64 = 1048576.0;

/// A fake host: /proc entries for QEMU processes and v1 cgroup
/// directories with the kernel's defaults, in a temporary directory.
struct FakeHost {
    dir: tempfile::TempDir,
}

impl FakeHost {
    fn new() -> Self {
        FakeHost {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn source(&self) -> ProcSource {
        ProcSource {
            proc_root: self.dir.path().join("proc"),
            cgroup_root: self.dir.path().join("cg"),
            sys_dev_block: self.dir.path().join("sys"),
        }
    }
    fn cg(&self, vm: &str) -> PathBuf {
        self.dir.path().join("cg/cpu,memory,blkio/machine").join(vm)
    }
    /// Adds (or updates the counters of) a VM's QEMU.
    fn vm(&self, pid: u32, name: &str, run_s: f64, wait_s: f64) {
        let p = self.dir.path().join(format!("proc/{pid}"));
        let cg = self.cg(name);
        if !p.exists() {
            fs::create_dir_all(&p).unwrap();
            let args = format!("qemu-system-x86_64\0-name\0guest={name}\0-m\0128\0");
            fs::write(p.join("cmdline"), args).unwrap();
            fs::write(p.join("status"), "VmRSS:\t100000 kB\n").unwrap();
            fs::write(
                p.join("cgroup"),
                format!("1:cpu,memory,blkio:/machine/{name}\n"),
            )
            .unwrap();
            fs::create_dir_all(&cg).unwrap();
            for (f, v) in [
                ("cpu.shares", "1024".to_string()),
                ("cpu.cfs_quota_us", "-1".into()),
                ("cpu.cfs_period_us", "100000".into()),
                ("memory.limit_in_bytes", V1_MEMORY_UNLIMITED.to_string()),
                (
                    "memory.soft_limit_in_bytes",
                    V1_MEMORY_UNLIMITED.to_string(),
                ),
                ("blkio.weight", "500".into()),
            ] {
                fs::write(cg.join(f), v).unwrap();
            }
        }
        let ns = |s: f64| (s * 1e9) as u64;
        fs::write(
            p.join("schedstat"),
            format!("{} {} 1\n", ns(run_s), ns(wait_s)),
        )
        .unwrap();
        // No task/ directory: the scan sums the process's own schedstat.
        fs::create_dir_all(p.join("task/1")).unwrap();
        fs::write(
            p.join("task/1/schedstat"),
            format!("{} {} 1\n", ns(run_s), ns(wait_s)),
        )
        .unwrap();
    }
    fn read(&self, vm: &str, file: &str) -> String {
        fs::read_to_string(self.cg(vm).join(file)).unwrap()
    }
}

fn policy(text: &str) -> AgentConfig {
    let mut c = AgentConfig::from_toml(text, None).unwrap();
    c.cpu_cores = c.cpu_cores.or(Some(1.0));
    c.memory_bytes = c.memory_bytes.or(Some(64.0 * 1024.0 * MIB));
    c
}

const SHARES_421: &str = "[[vm]]\nname = \"a\"\nshares = 4000\n[[vm]]\nname = \"b\"\nshares = 2000\n[[vm]]\nname = \"c\"\nshares = 1000\n";

fn shares_of(h: &FakeHost) -> Vec<f64> {
    ["a", "b", "c"]
        .map(|v| h.read(v, "cpu.shares").parse::<f64>().unwrap())
        .to_vec()
}

#[test]
fn three_busy_vms_get_weights_4_2_1_and_release_restores_defaults() {
    let h = FakeHost::new();
    for (pid, n) in [(10, "a"), (11, "b"), (12, "c")] {
        h.vm(pid, n, 0.0, 0.0);
    }
    let mut agent = Agent::new(policy(SHARES_421), h.source(), crate::balloon::NoBalloon);
    let r = agent.step(0.0);
    assert!(r.errors.is_empty(), "{r:?}");
    // One core for three: each ran a third and waited two thirds.
    for (pid, n, run) in [
        (10, "a", 4.0 / 7.0),
        (11, "b", 2.0 / 7.0),
        (12, "c", 1.0 / 7.0),
    ] {
        h.vm(pid, n, run, 1.0 - run);
    }
    let r = agent.step(1.0);
    let s = shares_of(&h);
    assert!(
        (s[0] / s[2] - 4.0).abs() < 0.02 && (s[1] / s[2] - 2.0).abs() < 0.02,
        "{s:?}"
    );
    // Entitlements 4/7, 2/7, 1/7 of the core; the three weigh 3 * 1024.
    assert!((s.iter().sum::<f64>() - 3072.0).abs() <= 2.0, "{s:?}");
    assert!((r.vms[0].entitlement.cpu_cores - 4.0 / 7.0).abs() < 1e-9);
    // Same demand again: nothing to write.
    for (pid, n, run) in [
        (10, "a", 8.0 / 7.0),
        (11, "b", 4.0 / 7.0),
        (12, "c", 2.0 / 7.0),
    ] {
        h.vm(pid, n, run, 2.0 - run);
    }
    let r = agent.step(2.0);
    assert!(r.vms.iter().all(|v| v.files_written == 0), "{r:?}");
    let r = agent.release_all();
    assert_eq!(r.released.len(), 3);
    assert_eq!(shares_of(&h), vec![1024.0; 3]);
}

#[test]
fn reservation_and_limit_become_weights_and_quota() {
    let h = FakeHost::new();
    for (pid, n) in [(10, "a"), (11, "b"), (12, "c")] {
        h.vm(pid, n, 0.0, 0.0);
    }
    let text = "[[vm]]\nname = \"a\"\ncpu = { reservation = 0.5 }\n[[vm]]\nname = \"c\"\ncpu = { limit = 0.2 }\n";
    let mut agent = Agent::new(policy(text), h.source(), crate::balloon::NoBalloon);
    agent.step(0.0);
    // a: 0.5 reserved; b and c split the rest, c capped at 0.2: 0.5/0.3/0.2.
    let s = shares_of(&h);
    assert!(
        (s[0] / s[2] - 2.5).abs() < 0.02 && (s[1] / s[2] - 1.5).abs() < 0.02,
        "{s:?}"
    );
    assert_eq!(h.read("c", "cpu.cfs_quota_us"), "20000");
    assert_eq!(h.read("a", "cpu.cfs_quota_us"), "-1");
}

#[test]
fn an_idle_vm_gives_its_share_away() {
    let h = FakeHost::new();
    for (pid, n) in [(10, "a"), (11, "b"), (12, "c")] {
        h.vm(pid, n, 0.0, 0.0);
    }
    let mut agent = Agent::new(policy(SHARES_421), h.source(), crate::balloon::NoBalloon);
    agent.step(0.0);
    // a idles (1 % of a core); b and c want the whole core.
    h.vm(10, "a", 0.01, 0.0);
    h.vm(11, "b", 0.66, 0.34);
    h.vm(12, "c", 0.33, 0.67);
    let r = agent.step(1.0);
    let e: Vec<f64> = r.vms.iter().map(|v| v.entitlement.cpu_cores).collect();
    assert!((e[0] - 0.01).abs() < 1e-6, "{e:?}");
    assert!((e[1] / e[2] - 2.0).abs() < 1e-6, "{e:?}");
    assert!((e.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{e:?}");
}

#[test]
fn stopped_and_unconfigured_vms_are_released() {
    let h = FakeHost::new();
    for (pid, n) in [(10, "a"), (11, "b"), (12, "c")] {
        h.vm(pid, n, 0.0, 0.0);
    }
    let mut cfg = policy(SHARES_421);
    cfg.manage = Manage::Configured;
    let mut agent = Agent::new(cfg, h.source(), crate::balloon::NoBalloon);
    agent.step(0.0);
    assert_ne!(h.read("c", "cpu.shares"), "1024");
    // c leaves the policy: undone while it runs on.
    agent.set_policy(
        AllocConfig::from_toml("[[vm]]\nname = \"a\"\n[[vm]]\nname = \"b\"\n").unwrap(),
    );
    let r = agent.step(1.0);
    assert_eq!(r.released, vec!["c".to_string()]);
    assert_eq!(h.read("c", "cpu.shares"), "1024");
    // b stops (process and cgroup gone): forgotten, no error.
    fs::remove_dir_all(h.dir.path().join("proc/11")).unwrap();
    fs::remove_dir_all(h.cg("b")).unwrap();
    let r = agent.step(2.0);
    assert_eq!(r.released, vec!["b".to_string()]);
    assert!(r.errors.is_empty(), "{r:?}");
}

#[test]
fn a_vm_stopping_between_observation_and_action_is_released() {
    let h = FakeHost::new();
    h.vm(10, "a", 0.0, 0.0);
    let mut agent = Agent::new(
        policy(SHARES_421.split("[[vm]]\nname = \"b\"").next().unwrap()),
        h.source(),
        crate::balloon::NoBalloon,
    );
    // The cgroup is gone but /proc still lists the process (it is exiting).
    fs::remove_dir_all(h.cg("a")).unwrap();
    let r = agent.step(0.0);
    assert_eq!(r.released, vec!["a".to_string()]);
    assert!(r.errors.is_empty() && r.vms.is_empty(), "{r:?}");
}

#[test]
fn admission_control_refuses_a_reservation_that_cannot_be_met() {
    let h = FakeHost::new();
    for (pid, n) in [(10, "a"), (11, "b")] {
        h.vm(pid, n, 0.0, 0.0);
    }
    let text = "[[vm]]\nname = \"a\"\ncpu = { reservation = 0.7 }\n[[vm]]\nname = \"b\"\ncpu = { reservation = 0.6 }\n";
    let mut agent = Agent::new(policy(text), h.source(), crate::balloon::NoBalloon);
    let r = agent.step(0.0);
    assert_eq!(r.refused.len(), 1, "{r:?}");
    assert_eq!(r.refused[0].0, "b");
    assert!(r.refused[0].1.contains("does not fit"), "{r:?}");
    // a keeps its reservation; b runs with default settings.
    assert_eq!(r.vms.len(), 2);
    assert!((r.vms[0].entitlement.cpu_cores - 0.7).abs() < 1e-9);
}

/// A fake balloon: records targets, the guest gives memory back at once.
#[derive(Default)]
struct FakeBalloon {
    actual: BTreeMap<String, f64>,
    used: f64,
    usable: Option<f64>,
    targets: Vec<(String, f64)>,
}

impl Balloon for FakeBalloon {
    fn state(&mut self, vm: &str) -> Option<BalloonState> {
        Some(BalloonState {
            actual_bytes: *self.actual.get(vm).unwrap_or(&(128.0 * MIB)),
            guest_used_bytes: Some(self.used),
            guest_usable_bytes: self.usable,
        })
    }
    fn set_target(&mut self, vm: &str, bytes: f64) -> Result<(), String> {
        self.targets.push((vm.into(), bytes));
        self.actual.insert(vm.into(), bytes);
        Ok(())
    }
}

#[test]
fn memory_is_reclaimed_by_balloon_before_any_cap_and_given_back() {
    let h = FakeHost::new();
    for (pid, n) in [(10, "a"), (11, "b")] {
        h.vm(pid, n, 0.0, 0.0);
    }
    // Each QEMU holds ~98 MiB; 150 MiB of host memory for both.
    let mut cfg = policy("[[vm]]\nname = \"a\"\nshares = 3000\n[[vm]]\nname = \"b\"\n");
    cfg.memory_bytes = Some(150.0 * MIB);
    cfg.libvirt_uri = Some("test:///fake".into());
    let balloon = FakeBalloon {
        used: 30.0 * MIB,
        ..Default::default()
    };
    let mut agent = Agent::new(cfg, h.source(), balloon);
    let r = agent.step(0.0);
    // b is entitled to less than it holds: its balloon shrinks first, no
    // lower than what it needs (36 MiB = 30 * 1.2; a quarter of 128 is 32).
    let b = r.vms.iter().find(|v| v.name == "b").unwrap();
    let t = b.balloon_target_bytes.expect("balloon moved");
    assert!((36.0 * MIB - 1.0..128.0 * MIB).contains(&t), "{t}");
    // The hard cap is not set (no limit), the soft cap follows the
    // balloon's new size plus QEMU's overhead, never below it.
    assert_eq!(
        h.read("b", "memory.limit_in_bytes"),
        V1_MEMORY_UNLIMITED.to_string()
    );
    let soft: f64 = h.read("b", "memory.soft_limit_in_bytes").parse().unwrap();
    assert!(soft >= t + MEMORY_OVERHEAD_BYTES - 4096.0, "{soft} {t}");
    // Memory no longer contended: the balloon goes back, and on release.
    agent.cfg.memory_bytes = None;
    agent.capacity.memory_bytes = 1e12;
    let r = agent.step(1.0);
    assert!(
        r.vms
            .iter()
            .any(|v| v.balloon_target_bytes == Some(128.0 * MIB)),
        "{r:?}"
    );
    agent.release_all();
}

#[test]
fn a_hard_cap_never_goes_below_what_qemu_holds() {
    let h = FakeHost::new();
    h.vm(10, "a", 0.0, 0.0);
    // QEMU holds 400 MiB beside a 128 MiB guest; the policy asks 64 MiB.
    fs::write(h.dir.path().join("proc/10/status"), "VmRSS:\t409600 kB\n").unwrap();
    let cfg = policy("[[vm]]\nname = \"a\"\nmemory = { limit = \"64MiB\" }\n");
    let mut agent = Agent::new(cfg, h.source(), crate::balloon::NoBalloon);
    agent.step(0.0);
    let hard: f64 = h.read("a", "memory.limit_in_bytes").parse().unwrap();
    assert!(hard >= 400.0 * MIB * RSS_FLOOR_FACTOR - 4096.0, "{hard}");
}

#[test]
fn runs_until_stopped_then_undoes() {
    let h = FakeHost::new();
    h.vm(10, "a", 0.0, 0.0);
    let mut cfg = policy("[[vm]]\nname = \"a\"\ncpu = { limit = 0.5 }\n");
    cfg.interval_seconds = 0.05;
    let mut agent = Agent::new(cfg, h.source(), crate::balloon::NoBalloon);
    let stop = AtomicBool::new(false);
    let mut steps = 0;
    let end = agent.run(&stop, |_, r| {
        assert!(r.errors.is_empty(), "{r:?}");
        steps += 1;
        if steps == 3 {
            stop.store(true, Ordering::Relaxed);
        }
    });
    assert_eq!(steps, 3);
    assert_eq!(end.released, vec!["a".to_string()]);
    assert_eq!(h.read("a", "cpu.cfs_quota_us"), "-1");
}

#[test]
fn a_policy_given_between_steps_applies_at_the_next_step() {
    let h = FakeHost::new();
    h.vm(10, "a", 0.0, 0.0);
    let mut cfg = policy("[[vm]]\nname = \"a\"\n");
    cfg.interval_seconds = 0.05;
    let mut agent = Agent::new(cfg, h.source(), crate::balloon::NoBalloon);
    let stop = AtomicBool::new(false);
    let mut quotas = Vec::new();
    agent.run(&stop, |agent, _| {
        quotas.push(h.read("a", "cpu.cfs_quota_us"));
        if quotas.len() == 1 {
            // What `keel agent` does when the daemon's policy changed.
            agent.set_policy(
                AllocConfig::from_toml("[[vm]]\nname = \"a\"\ncpu = { limit = 0.5 }\n").unwrap(),
            );
        }
        if quotas.len() == 2 {
            stop.store(true, Ordering::Relaxed);
        }
    });
    assert_eq!(quotas[0], "-1");
    assert_ne!(quotas[1], "-1", "the new limit was written: {quotas:?}");
}

#[test]
fn the_survival_floor_counts_what_the_guest_cannot_give() {
    // The lab guest's figures: 128 MiB, MemTotal 92.7, MemFree 65.5,
    // MemAvailable 70.9 MiB (its balloon stalls at ~63 MiB).
    let b = BalloonState {
        actual_bytes: 128.0 * MIB,
        guest_used_bytes: Some((92.7 - 65.5) * MIB),
        guest_usable_bytes: Some(70.9 * MIB),
    };
    let floor = survival_bytes(128.0 * MIB, &b).unwrap();
    assert!(
        (floor / MIB - (128.0 - 70.9) * 1.2).abs() < 1e-6,
        "{}",
        floor / MIB
    );
    // Stable: 40 MiB in the balloon take 40 off the size and MemAvailable.
    let shrunk = BalloonState {
        actual_bytes: 88.0 * MIB,
        guest_usable_bytes: Some(30.9 * MIB),
        ..b
    };
    let again = survival_bytes(128.0 * MIB, &shrunk).unwrap();
    assert!((again - floor).abs() < 1.0, "{again} {floor}");
    // Without MemAvailable: used memory, a quarter of the size at least.
    let plain = BalloonState {
        guest_usable_bytes: None,
        guest_used_bytes: Some(20.0 * MIB),
        ..b
    };
    assert_eq!(survival_bytes(128.0 * MIB, &plain), Some(32.0 * MIB));
    let busy = BalloonState {
        guest_used_bytes: Some(50.0 * MIB),
        ..plain
    };
    assert_eq!(survival_bytes(128.0 * MIB, &busy), Some(60.0 * MIB));
    let silent = BalloonState {
        guest_used_bytes: None,
        ..b
    };
    assert_eq!(survival_bytes(128.0 * MIB, &silent), None);
}
