//! Lab hosts: a hub namespace with a bridge, one network namespace per
//! host joined to it by a veth pair, a persistent private mount namespace
//! with bind mounts over libvirt's directories, and a libvirtd in both.

use crate::cmd::{run, spawn_logged, wait_timeout};
use crate::error::{failed, io, Result};
use crate::state::{HostRecord, Resource, StateFile};
use crate::Lab;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// libvirt's directories, each bind-mounted onto a per-host directory.
pub const LIBVIRT_DIRS: [&str; 5] = [
    "/etc/libvirt",
    "/run/libvirt",
    "/var/lib/libvirt",
    "/var/log/libvirt",
    "/var/cache/libvirt",
];

/// Creates the hub namespace and its bridge.
pub fn create_hub(lab: &Lab, sf: &mut StateFile) -> Result<()> {
    let hub = lab.hub();
    sf.record(Resource::Netns { name: hub.clone() })?;
    run("create hub namespace", "ip", &["netns", "add", &hub], T)?;
    sf.record(Resource::Link {
        name: "br0".into(),
        netns: Some(hub.clone()),
    })?;
    run(
        "create hub bridge",
        "ip",
        &["-n", &hub, "link", "add", "br0", "type", "bridge"],
        T,
    )?;
    run(
        "bring bridge up",
        "ip",
        &["-n", &hub, "link", "set", "br0", "up"],
        T,
    )?;
    Ok(())
}

/// Creates the private mount directory under which mount namespaces are
/// bound (it must not be a shared mount).
pub fn create_ns_dir(lab: &Lab, sf: &mut StateFile) -> Result<()> {
    let d = lab.dir.join("ns");
    std::fs::create_dir_all(&d).map_err(io("create ns dir", &d))?;
    sf.record(Resource::Mount { path: d.clone() })?;
    run(
        "bind ns dir",
        "mount",
        &["--bind".as_ref(), d.as_os_str(), d.as_os_str()],
        T,
    )?;
    run(
        "make ns dir private",
        "mount",
        &["--make-private".as_ref(), d.as_os_str()],
        T,
    )?;
    Ok(())
}

/// Creates host `i`'s network (namespace, veth to the hub, address).
pub fn create_net(lab: &Lab, sf: &mut StateFile, i: usize) -> Result<()> {
    let ns = lab.host_ns(i);
    let hub = lab.hub();
    let port = format!("h{i}");
    sf.record(Resource::Netns { name: ns.clone() })?;
    run("create host namespace", "ip", &["netns", "add", &ns], T)?;
    sf.record(Resource::Link {
        name: port.clone(),
        netns: Some(hub.clone()),
    })?;
    let step = "create veth pair";
    run(
        step,
        "ip",
        &[
            "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ],
        T,
    )?;
    run(
        step,
        "ip",
        &["-n", &hub, "link", "set", &port, "master", "br0", "up"],
        T,
    )?;
    let addr = format!("{}/24", lab.host_addr(i));
    run(
        "address host",
        "ip",
        &["-n", &ns, "addr", "add", &addr, "dev", "eth0"],
        T,
    )?;
    run(
        "bring eth0 up",
        "ip",
        &["-n", &ns, "link", "set", "eth0", "up"],
        T,
    )?;
    run(
        "bring lo up",
        "ip",
        &["-n", &ns, "link", "set", "lo", "up"],
        T,
    )?;
    Ok(())
}

/// Host `i`'s libvirtd.conf.
pub fn libvirtd_conf(hdir: &Path, i: usize) -> String {
    format!(
        "unix_sock_dir = \"{sock}\"\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n\
         unix_sock_group = \"root\"\nlisten_tcp = 1\nlisten_tls = 0\nauth_tcp = \"none\"\n\
         host_uuid = \"{uuid}\"\nlog_outputs = \"3:file:{log}\"\n",
        sock = hdir.join("sock").display(),
        uuid = host_uuid(i),
        log = hdir.join("libvirtd.log").display(),
    )
}

/// A distinct, valid host UUID per lab host.
pub fn host_uuid(i: usize) -> String {
    format!("6b65656c-6c61-4b00-8000-{:012x}", 0x1ab000 + i)
}

/// qemu.conf for every lab host.
pub const QEMU_CONF: &str = "user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\n\
security_driver = \"none\"\nstdio_handler = \"file\"\nnamespaces = [ ]\n";

/// Creates host `i`'s mount namespace and bind mounts, then starts its
/// libvirtd in both namespaces. Returns the host record (times not yet set)
/// and the moment libvirtd was started.
pub fn start_libvirtd(lab: &Lab, sf: &mut StateFile, i: usize) -> Result<(HostRecord, Instant)> {
    let hdir = lab.host_dir(i);
    let step = "prepare host directory";
    for sub in ["etc", "run", "lib", "log", "cache", "sock"] {
        let d = hdir.join(sub);
        std::fs::create_dir_all(&d).map_err(io(step, &d))?;
    }
    std::fs::create_dir_all(hdir.join("etc/qemu")).map_err(io(step, &hdir))?;
    let conf = hdir.join("etc/libvirtd.conf");
    std::fs::write(&conf, libvirtd_conf(&hdir, i)).map_err(io(step, &conf))?;
    let qc = hdir.join("etc/qemu.conf");
    std::fs::write(&qc, QEMU_CONF).map_err(io(step, &qc))?;
    for target in LIBVIRT_DIRS {
        let t = PathBuf::from(target);
        if !t.exists() {
            sf.record(Resource::Dir { path: t.clone() })?;
            std::fs::create_dir_all(&t).map_err(io("create mount point", &t))?;
        }
    }
    let mnt = lab.dir.join("ns").join(format!("h{i}.mnt"));
    std::fs::write(&mnt, b"").map_err(io("create mount namespace file", &mnt))?;
    sf.record(Resource::MountNs { path: mnt.clone() })?;
    let mnt_opt = format!("--mount={}", mnt.display());
    run(
        "create mount namespace",
        "unshare",
        &[mnt_opt.as_str(), "--propagation", "private", "true"],
        T,
    )?;
    for (target, sub) in LIBVIRT_DIRS
        .iter()
        .zip(["etc", "run", "lib", "log", "cache"])
    {
        let src = hdir.join(sub);
        run(
            "bind-mount libvirt directory",
            "nsenter",
            &[
                mnt_opt.as_ref(),
                "mount".as_ref(),
                "--bind".as_ref(),
                src.as_os_str(),
                target.as_ref(),
            ],
            T,
        )?;
    }
    let pidfile = hdir.join("libvirtd.pid");
    let idx = sf.record(Resource::Process {
        what: format!("libvirtd h{i}"),
        pidfile: Some(pidfile.clone()),
        pid: None,
        start_time: None,
    })?;
    let net_opt = format!("--net=/run/netns/{}", lab.host_ns(i));
    let started = Instant::now();
    let mut child = spawn_logged(
        "start libvirtd",
        "nsenter",
        &[
            net_opt.as_ref(),
            mnt_opt.as_ref(),
            "libvirtd".as_ref(),
            "--listen".as_ref(),
            "-d".as_ref(),
            "-p".as_ref(),
            pidfile.as_os_str(),
            "-f".as_ref(),
            conf.as_os_str(),
        ],
        &hdir.join("libvirtd.stderr"),
    )?;
    let status = wait_timeout(&mut child, Duration::from_secs(60));
    let pid = read_pid(&pidfile, Duration::from_secs(30));
    if let Some(pid) = pid {
        sf.set_pid(idx, pid)?;
    }
    let stderr = std::fs::read_to_string(hdir.join("libvirtd.stderr")).unwrap_or_default();
    if !status.is_some_and(|s| s.success()) || pid.is_none() {
        return Err(failed(
            "start libvirtd",
            format!("host h{i}: daemon did not start: {}", stderr.trim()),
        ));
    }
    if let Some(cg) = lab.cgroup_root() {
        let path = cg.join(format!("{}-h{i}", lab.prefix));
        sf.record(Resource::Cgroup { path: path.clone() })?;
        std::fs::create_dir_all(&path).map_err(io("create host cgroup", &path))?;
        let procs = path.join("cgroup.procs");
        std::fs::write(&procs, pid.unwrap_or_default().to_string())
            .map_err(io("move libvirtd into cgroup", &procs))?;
    }
    let addr = lab.host_addr(i);
    let rec = HostRecord {
        index: i,
        netns: lab.host_ns(i),
        addr: addr.clone(),
        dir: hdir.clone(),
        tcp_uri: format!("qemu+tcp://{addr}/system"),
        unix_uri: format!(
            "qemu+unix:///system?socket={}",
            hdir.join("sock/libvirt-sock").display()
        ),
        libvirtd_start_secs: None,
        first_virsh_secs: None,
    };
    Ok((rec, started))
}

/// Waits for a pid file to hold a live pid.
pub fn read_pid(pidfile: &Path, timeout: Duration) -> Option<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(pid) = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            if crate::cmd::alive(pid, None) {
                return Some(pid);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the host's socket exists, then until `virsh list` answers;
/// fills in both times.
pub fn wait_ready(rec: &mut HostRecord, started: Instant) -> Result<()> {
    let sock = rec.dir.join("sock/libvirt-sock");
    let deadline = started + Duration::from_secs(60);
    while !sock.exists() {
        if Instant::now() > deadline {
            return Err(failed(
                "wait for libvirtd",
                format!("{} did not appear", sock.display()),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    rec.libvirtd_start_secs = Some(started.elapsed().as_secs_f64());
    run(
        "first virsh call",
        "virsh",
        &["-c", &rec.unix_uri, "list", "--all"],
        Duration::from_secs(120),
    )?;
    rec.first_virsh_secs = Some(started.elapsed().as_secs_f64());
    Ok(())
}
