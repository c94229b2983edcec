//! The libvirt driver against real, throwaway libvirt daemons and TCG
//! guests. Needs root, libvirtd, virsh, qemu-system-x86_64, a kernel in
//! /boot and busybox-static; otherwise each test prints `SKIPPED (why)`.
//! Tests run one at a time (they measure CPU rates on a small machine).
#![cfg(feature = "libvirt")]

mod libvirt_support;

use keel_drivers::libvirt::LibvirtDriver;
use keel_drivers::{usage_between, Driver, DriverError, MigrationRequest, Observation, Tunables};
use libvirt_support::{unavailable, wait_for, Lab};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use virt::connect::Connect;

static SERIAL: Mutex<()> = Mutex::new(());

fn skip(test: &str) -> bool {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED ({test}: {why})");
        return true;
    }
    false
}

/// Defines and starts `name` on host `i`.
fn start_guest(lab: &Lab, i: usize, name: &str) {
    let initrd = lab.build_initrd().expect("initramfs");
    let conn = Connect::open(Some(&lab.hosts[i].uri)).expect("connect");
    let dom = conn
        .define_domain_xml(&lab.domain_xml(name, &initrd))
        .expect("define");
    dom.create().expect("start");
    lab.wait_guest_up(name).expect("guest up");
}

fn cpu_rate(a: &Observation, b: &Observation, vm: &str) -> f64 {
    usage_between(a, b)
        .into_iter()
        .find(|(n, _)| n == vm)
        .map(|(_, r)| r.cpu_cores)
        .unwrap_or_else(|| panic!("{vm} missing from the observations"))
}

fn vm_host(o: &Observation, vm: &str) -> Option<(String, bool)> {
    o.vms
        .iter()
        .find(|v| v.name == vm)
        .map(|v| (v.host.clone(), v.running))
}

#[test]
fn observe_cpu_cap_and_tunables() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if skip("observe_cpu_cap_and_tunables") {
        return;
    }
    let lab = Lab::start(1, false).expect("lab");
    start_guest(&lab, 0, "g1");
    let mut d =
        LibvirtDriver::connect(&[("h0".into(), lab.hosts[0].uri.clone())]).expect("connect");
    assert!(d.capabilities().cpu_tunables);

    // Uncapped: a CPU-bound TCG guest uses about one core. Observe at 1 s
    // sampling and time each observe().
    let mut samples = Vec::new();
    let mut latencies = Vec::new();
    for _ in 0..4 {
        let t = Instant::now();
        samples.push(d.observe().expect("observe"));
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_secs(1));
    }
    let o = &samples[3];
    assert_eq!(o.hosts.len(), 1);
    assert!(o.hosts[0].capacity.cpu_cores >= 1.0 && o.hosts[0].capacity.memory_bytes > 1e8);
    let vm = o.vms.iter().find(|v| v.name == "g1").expect("g1 observed");
    assert!(vm.running && vm.host == "h0");
    assert_eq!(vm.size.cpu_cores, 1.0);
    assert_eq!(vm.size.memory_bytes, 128.0 * 1048576.0);
    let used = vm.memory_used_bytes.expect("memory used");
    assert!(
        used > 1e6 && used <= 128.0 * 1048576.0,
        "memory used {used}"
    );
    let rate = cpu_rate(&samples[0], &samples[3], "g1");
    eprintln!(
        "uncapped rate {rate:.3} cores; memory used {:.1} MiB; observe() latency ms {latencies:.2?}",
        used / 1048576.0
    );
    // ~1 core on an idle machine; less when other work shares the 2 cores.
    assert!((0.3..=1.1).contains(&rate), "uncapped CPU rate {rate}");

    // Capped to 25 % of a core through the vCPU quota.
    let cap = Tunables {
        cpu_limit_cores: Some(0.25),
        cpu_shares: Some(512.0),
        ..Default::default()
    };
    d.apply_tunables("g1", &cap).expect("cpu cap");
    std::thread::sleep(Duration::from_secs(1));
    let a = d.observe().expect("observe");
    std::thread::sleep(Duration::from_secs(10));
    let b = d.observe().expect("observe");
    let capped = cpu_rate(&a, &b, "g1");
    eprintln!("capped to 0.25: observed {capped:.3} cores over 10 s");
    assert!((capped - 0.25).abs() <= 0.03, "capped CPU rate {capped}");

    // Memory: a sane soft and hard limit pass, a hard limit below guest +
    // QEMU overhead is refused before reaching libvirt.
    let mem = Tunables {
        memory_soft_limit_bytes: Some(200.0 * 1048576.0),
        memory_hard_limit_bytes: Some(400.0 * 1048576.0),
        io_weight: Some(500.0),
        ..Default::default()
    };
    d.apply_tunables("g1", &mem)
        .expect("memory and I/O tunables");
    let low = Tunables {
        memory_hard_limit_bytes: Some(160.0 * 1048576.0),
        ..Default::default()
    };
    let err = d
        .apply_tunables("g1", &low)
        .expect_err("too low a hard limit");
    eprintln!("refused: {err}");
    assert!(err.to_string().contains("QEMU overhead"), "{err}");
    let after = d.observe().expect("observe");
    assert_eq!(vm_host(&after, "g1"), Some(("h0".into(), true)));
    assert!(matches!(
        d.apply_tunables("nope", &cap),
        Err(DriverError::Unknown { kind: "VM", .. })
    ));
}

fn two_host_driver(lab: &Lab) -> LibvirtDriver {
    let hosts: Vec<(String, String)> = (0..2)
        .map(|i| (format!("h{i}"), lab.hosts[i].uri.clone()))
        .collect();
    let mut d = LibvirtDriver::connect(&hosts).expect("connect");
    for (i, h) in lab.hosts.iter().enumerate() {
        // Peers reach each other's daemon by its socket (the lab directory
        // is visible in every mount namespace) and send memory over the veth.
        let data = format!("tcp://{}", h.address.as_deref().expect("networked"));
        d.set_peer_address(&format!("h{i}"), &h.uri, Some(&data))
            .expect("peer");
    }
    d
}

#[test]
fn live_migration_and_failures() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if skip("live_migration_and_failures") {
        return;
    }
    let lab = Lab::start(2, true).expect("lab");
    start_guest(&lab, 0, "m1");
    let mut d = two_host_driver(&lab);
    let request =
        |from: &'static str, to: &'static str, cap: Option<f64>, timeout: u64| MigrationRequest {
            vm: "m1",
            from,
            to,
            max_bandwidth_bytes_per_second: cap,
            timeout: Duration::from_secs(timeout),
        };

    // There and back, uncapped.
    for (from, to) in [("h0", "h1"), ("h1", "h0")] {
        let out = d.migrate(&request(from, to, None, 120)).expect("migration");
        eprintln!(
            "migrated {from} -> {to}: {:.2} s, downtime {:?} ms, {:?} bytes",
            out.seconds, out.downtime_ms, out.bytes
        );
        let o = d.observe().expect("observe");
        assert_eq!(vm_host(&o, "m1"), Some((to.to_string(), true)));
    }

    // A timeout aborts the job; the VM keeps running on its source.
    let err = d
        .migrate(&request("h0", "h1", Some(1048576.0), 2))
        .expect_err("timeout");
    eprintln!("timeout: {err}");
    assert!(
        matches!(&err, DriverError::MigrationFailed { cause, .. } if cause.contains("timed out")),
        "{err}"
    );
    let o = d.observe().expect("observe");
    assert_eq!(vm_host(&o, "m1"), Some(("h0".into(), true)));

    // The destination QEMU dies mid-migration: MigrationFailed naming the
    // cause, VM still running on the source.
    let err = std::thread::scope(|s| {
        let killer = s.spawn(|| {
            let seen = wait_for(Duration::from_secs(30), || lab.qemu_pid(1, "m1").is_some());
            std::thread::sleep(Duration::from_secs(1));
            if let (Ok(()), Some(pid)) = (seen, lab.qemu_pid(1, "m1")) {
                libvirt_support::kill(pid, "-9");
                true
            } else {
                false
            }
        });
        let result = d.migrate(&request("h0", "h1", Some(1048576.0), 120));
        assert!(killer.join().unwrap(), "never saw the destination QEMU");
        result.expect_err("migration to a killed QEMU")
    });
    eprintln!("destination killed: {err}");
    match &err {
        DriverError::MigrationFailed { cause, .. } => assert!(!cause.is_empty()),
        other => panic!("expected MigrationFailed, got {other}"),
    }
    let o = d.observe().expect("observe");
    assert_eq!(vm_host(&o, "m1"), Some(("h0".into(), true)));

    // Still migratable after all that.
    let out = d
        .migrate(&request("h0", "h1", None, 120))
        .expect("migration after failures");
    eprintln!(
        "migrated again: {:.2} s, downtime {:?} ms",
        out.seconds, out.downtime_ms
    );
}
