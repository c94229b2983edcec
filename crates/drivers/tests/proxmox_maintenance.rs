//! Contract tests of the Proxmox VE driver with a node in HA maintenance
//! (`ha-manager crm-command node-maintenance enable`), against the FAKE
//! Proxmox VE API server of `proxmox_fake` (requests and answers checked
//! against the published schema): the observation marks the node, the
//! daemon's planner never targets it and evacuates only what is Keel's to
//! move, the status is read with the HA rules (not every interval), and a
//! failed status read is a warning, not a failed observation.

mod proxmox_fake;

use keel_control::ControlLoop;
use keel_drivers::proxmox::ProxmoxDriver;
use keel_drivers::{Driver, MigrationRequest};
use keel_model::Rules;
use keel_policy::balance::{KeelBalancer, MoveReason};
use proxmox_fake::{FakeCluster, FakeGuest, FakeProxmox};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

fn assert_clean(fake: &FakeProxmox) {
    let v = fake.violations();
    assert!(v.is_empty(), "schema violations:\n{}", v.join("\n"));
}

/// Four nodes: a and c hot, b and d idle, b in HA maintenance with an
/// HA-managed VM (110) and a plain one (111) still on it. The cluster
/// plays PVE 8.2, whose nodes carry no `hastate` (8.3+): the HA status is
/// where maintenance is read (`point9_*` of proxmox_versions covers 8.3+).
fn cluster_with_b_in_maintenance() -> FakeCluster {
    let mut c = FakeCluster::new(&["a", "b", "c", "d"], 4, 16);
    c.profile = proxmox_fake::Profile::Pve8;
    c.release_override = Some("8.2");
    c.nodes[1].ha_maintenance = true;
    for (vmid, node) in [(101, "a"), (102, "a"), (103, "c"), (104, "c")] {
        c.guests.push(FakeGuest::new(vmid, "qemu", node, 2, 0.95));
    }
    let mut ha = FakeGuest::new(110, "qemu", "b", 1, 0.2);
    ha.hastate = Some("started".into());
    c.guests.push(ha);
    c.guests.push(FakeGuest::new(111, "qemu", "b", 1, 0.2));
    c
}

fn driver(fake: &FakeProxmox) -> ProxmoxDriver {
    ProxmoxDriver::connect(fake.config()).expect("driver")
}

fn in_maintenance(d: &mut ProxmoxDriver) -> Vec<String> {
    d.observe()
        .expect("observe")
        .hosts
        .into_iter()
        .filter(|h| h.maintenance)
        .map(|h| h.name)
        .collect()
}

#[test]
fn a_node_in_ha_maintenance_is_observed_as_in_maintenance() {
    let Some(fake) = FakeProxmox::start(cluster_with_b_in_maintenance()) else {
        return;
    };
    let mut d = driver(&fake);
    assert_eq!(in_maintenance(&mut d), ["b"]);
    assert_eq!(d.nodes_in_ha_maintenance().collect::<Vec<_>>(), ["b"]);
    // Its HA-managed guest is the HA stack's to move; the plain one is not pinned.
    let rules = d.cluster_rules();
    let pinned: Vec<(&str, &[String])> = rules
        .pin
        .iter()
        .map(|p| (p.name.as_str(), p.vms.as_slice()))
        .collect();
    assert_eq!(pinned.len(), 1, "{pinned:?}");
    assert!(pinned[0].0.contains("HA maintenance"), "{pinned:?}");
    assert_eq!(pinned[0].1, ["110"]);
    // A move onto it (a plan made before it entered maintenance) is dropped.
    let err = d
        .migrate(&MigrationRequest {
            vm: "101",
            from: "a",
            to: "b",
            max_bandwidth_bytes_per_second: None,
            timeout: Duration::from_secs(30),
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("node b is in HA maintenance"), "{err}");
    assert!(!fake.requests().iter().any(|r| r.starts_with("POST")));
    // Out of maintenance again: an ordinary node at the next read.
    fake.with(|c| c.nodes[1].ha_maintenance = false);
    assert!(in_maintenance(&mut d).is_empty());
    assert!(d.cluster_rules().pin.is_empty());
    assert_clean(&fake);
}

#[test]
fn the_daemons_planner_never_targets_it_and_evacuates_only_what_is_keels() {
    let Some(fake) = FakeProxmox::start(cluster_with_b_in_maintenance()) else {
        return;
    };
    let mut control = ControlLoop::new(
        driver(&fake),
        Box::new(KeelBalancer::default()),
        Rules::default(),
    );
    for _ in 0..3 {
        control.sample().expect("observe");
        std::thread::sleep(Duration::from_millis(50));
    }
    let proposal = control.propose().expect("a plan");
    assert!(
        proposal.moves.iter().all(|m| m.to != "b"),
        "{:?}",
        proposal.moves
    );
    let evacuation: Vec<(&str, &str)> = proposal
        .moves
        .iter()
        .filter(|m| m.reason == MoveReason::Evacuation)
        .map(|m| (m.vm.as_str(), m.from.as_str()))
        .collect();
    assert_eq!(evacuation, [("111", "b")], "{:?}", proposal.moves);
    assert!(proposal.moves.iter().all(|m| m.vm != "110"));
    assert!(
        proposal
            .unresolved
            .iter()
            .any(|(vm, why)| vm == "110" && why.contains("pinned")),
        "HA's guest is reported, not moved: {:?}",
        proposal.unresolved
    );
    assert!(
        proposal
            .moves
            .iter()
            .any(|m| m.reason == MoveReason::Balance),
        "the hot nodes are still balanced (onto d): {:?}",
        proposal.moves
    );
    let outcomes = control.execute(&proposal.moves);
    assert!(outcomes.iter().all(|o| o.error.is_none()), "{outcomes:?}");
    let on_b: Vec<u64> = fake.with(|c| {
        c.guests
            .iter()
            .filter(|g| g.node == "b")
            .map(|g| g.vmid)
            .collect()
    });
    assert_eq!(on_b, [110], "only HA's guest is left for HA to move");
    assert_clean(&fake);
}

#[test]
fn the_ha_status_is_read_with_the_rules_not_every_interval() {
    let Some(fake) = FakeProxmox::start(cluster_with_b_in_maintenance()) else {
        return;
    };
    let mut config = fake.config();
    config.rules_refresh_seconds = 3600.0;
    let mut d = ProxmoxDriver::connect(config).unwrap();
    assert_eq!(in_maintenance(&mut d), ["b"]);
    let status_reads = |fake: &FakeProxmox| {
        fake.requests()
            .iter()
            .filter(|r| *r == "GET /cluster/ha/status/current")
            .count()
    };
    assert_eq!(status_reads(&fake), 1);
    fake.clear_requests();
    // Maintenance ends, but the next read is due only after the refresh period.
    fake.with(|c| c.nodes[1].ha_maintenance = false);
    for _ in 0..3 {
        assert_eq!(in_maintenance(&mut d), ["b"]);
    }
    assert_eq!(fake.requests(), vec!["GET /cluster/resources"; 3]);
    assert_clean(&fake);
}

/// The log lines written while the guard lives, on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn count(&self, needle: &str) -> usize {
        let text =
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
        text.matches(needle).count()
    }
}

#[test]
fn a_refused_status_read_keeps_the_last_state_and_warns_once() {
    let Some(fake) = FakeProxmox::start(cluster_with_b_in_maintenance()) else {
        return;
    };
    let log = Captured::default();
    let _guard = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .finish()
        .set_default();
    let forbid = |c: &mut FakeCluster| {
        c.forbidden = vec![(
            "GET".into(),
            "/cluster/ha/status".into(),
            "Sys.Audit".into(),
        )]
    };
    const WARNING: &str = "reading the HA status failed";
    fake.with(forbid);
    let mut d = driver(&fake);
    for _ in 0..3 {
        assert!(
            in_maintenance(&mut d).is_empty(),
            "nothing known yet: no node in maintenance"
        );
    }
    assert_eq!(log.count(WARNING), 1, "warned once");
    assert_eq!(
        log.count("Sys.Audit on /"),
        1,
        "the warning names the privilege"
    );
    fake.with(|c| c.forbidden.clear());
    assert_eq!(in_maintenance(&mut d), ["b"]);
    fake.with(forbid);
    for _ in 0..3 {
        assert_eq!(in_maintenance(&mut d), ["b"], "the last known state");
    }
    assert_eq!(log.count(WARNING), 2, "warned again once after a good read");
    let reads = fake
        .requests()
        .iter()
        .filter(|r| *r == "GET /cluster/ha/status/current")
        .count();
    assert_eq!(reads, 7, "every refresh tries again");
    assert_clean(&fake);
}
