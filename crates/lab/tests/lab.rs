//! End-to-end tests of `keel lab`: a real lab (2 hosts, 2 guests) up and
//! down with nothing left behind, and `down` after a simulated crash. Both
//! need root (and the first needs unshare, qemu and libvirtd); without them
//! they print a loud SKIPPED and return.

use keel_lab::prereq::Prereqs;
use keel_lab::state::{Resource, StateFile};
use keel_lab::{cmd, Accel, Lab, UpOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests share the machine's network namespaces: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn test_lab(name: &str, prefix: &str) -> Lab {
    let dir = std::env::temp_dir().join(format!("keel-lab-test-{name}"));
    Lab {
        dir,
        prefix: prefix.to_string(),
    }
}

/// Runs `down` when dropped, so a failing test leaves nothing behind.
struct Guard(Lab);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = keel_lab::down(&self.0);
    }
}

fn netns_list() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect()
}

fn root_links() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .nth(1)
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
        })
        .collect()
}

fn assert_clean(lab: &Lab) {
    let ns: Vec<String> = netns_list()
        .into_iter()
        .filter(|n| n.starts_with(&lab.prefix))
        .collect();
    assert!(ns.is_empty(), "namespaces left: {ns:?}");
    let procs = cmd::pids_mentioning(&lab.dir.to_string_lossy());
    assert!(
        procs.is_empty(),
        "processes mentioning {} left: {procs:?}",
        lab.dir.display()
    );
    let m = mounts_under(&lab.dir);
    assert!(m.is_empty(), "mounts left: {m:?}");
    let links: Vec<String> = root_links()
        .into_iter()
        .filter(|l| l.starts_with('h') && l[1..].bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert!(
        links.is_empty(),
        "veths left in the root namespace: {links:?}"
    );
    if let Some(root) = lab.cgroup_root() {
        for i in 0..4 {
            let cg = root.join(format!("{}-h{i}", lab.prefix));
            assert!(!cg.exists(), "cgroup left: {}", cg.display());
        }
    }
    assert!(
        !lab.dir.exists(),
        "lab directory left: {}",
        lab.dir.display()
    );
}

#[test]
fn lab_up_ticks_and_down_leaves_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let pre = Prereqs::check();
    if let Some(msg) = pre.message() {
        eprintln!("SKIPPED (needs root, unshare, qemu-system-x86_64 and libvirtd: {msg})");
        return;
    }
    let lab = test_lab("full", "keel-labtest");
    let _ = keel_lab::down(&lab);
    let guard = Guard(lab.clone());
    let mut out = Vec::new();
    let opts = UpOptions {
        hosts: 2,
        vms: 2,
        accel: Accel::Auto,
    };
    let sf = match keel_lab::up(&lab, opts, &mut out) {
        Ok(sf) => sf,
        Err(e) => panic!("up failed: {e}\n{}", String::from_utf8_lossy(&out)),
    };
    println!("{}", String::from_utf8_lossy(&out));
    assert_eq!(sf.state.hosts.len(), 2);
    assert_eq!(sf.state.vms.len(), 2);
    assert_ne!(sf.state.vms[0].host, sf.state.vms[1].host, "round-robin");
    // Both guests keep ticking with a growing progress counter.
    let serials: Vec<PathBuf> = sf.state.vms.iter().map(|v| v.serial.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts: Vec<Vec<keel_lab::guests::Tick>> = serials
            .iter()
            .map(|s| {
                keel_lab::guests::ticks(&String::from_utf8_lossy(
                    &std::fs::read(s).unwrap_or_default(),
                ))
            })
            .collect();
        if counts.iter().all(|t| t.len() >= 3) {
            for t in &counts {
                assert!(
                    t.windows(2)
                        .all(|w| w[1].total > w[0].total && w[1].n == w[0].n + 1),
                    "{t:?}"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "guests did not tick 3 times: {counts:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut st = Vec::new();
    keel_lab::status(&lab, Duration::from_secs(1), &mut st).expect("status");
    let st = String::from_utf8_lossy(&st);
    println!("{st}");
    assert_eq!(st.matches("running").count(), 2, "{st}");
    std::mem::forget(guard);
    let r = keel_lab::down(&lab).expect("down");
    assert!(r.failed.is_empty(), "down failed: {:?}", r.failed);
    assert_clean(&lab);
    let again = keel_lab::down(&lab).expect("second down");
    assert!(
        again.failed.is_empty() && again.done.is_empty(),
        "down is idempotent: {again:?}"
    );
}

#[test]
fn down_after_a_crash_cleans_up() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let missing: Vec<&str> = [
        ("root", cmd::is_root()),
        ("ip", cmd::which("ip").is_some()),
        ("mount", cmd::which("mount").is_some()),
    ]
    .iter()
    .filter(|(_, ok)| !ok)
    .map(|(w, _)| *w)
    .collect();
    if !missing.is_empty() {
        eprintln!(
            "SKIPPED (needs root, ip and mount: missing {})",
            missing.join(", ")
        );
        return;
    }
    let lab = test_lab("crash", "keel-labcrash");
    let _ = keel_lab::down(&lab);
    std::fs::create_dir_all(&lab.dir).unwrap();
    let mut sf = StateFile::load(&lab.dir).unwrap();
    // What `up` would have done before being killed: a namespace, a mount
    // and a process, each recorded before it was created.
    let ns = lab.host_ns(0);
    sf.record(Resource::Netns { name: ns.clone() }).unwrap();
    assert!(Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap()
        .success());
    let m = lab.dir.join("ns");
    std::fs::create_dir_all(&m).unwrap();
    sf.record(Resource::Mount { path: m.clone() }).unwrap();
    assert!(Command::new("mount")
        .arg("--bind")
        .arg(&m)
        .arg(&m)
        .status()
        .unwrap()
        .success());
    let idx = sf
        .record(Resource::Process {
            what: "sleeper".into(),
            pidfile: None,
            pid: None,
            start_time: None,
        })
        .unwrap();
    let mut child = Command::new("sleep").arg("300").spawn().unwrap();
    sf.set_pid(idx, child.id()).unwrap();
    drop(sf); // the "crash"
    assert!(netns_list().contains(&ns));
    let r = keel_lab::down(&lab).expect("down");
    assert!(r.failed.is_empty(), "down failed: {:?}", r.failed);
    let status = child.wait().unwrap();
    assert!(!status.success(), "the recorded process was killed");
    assert_clean(&lab);
}
