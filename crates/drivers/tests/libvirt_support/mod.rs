//! A throwaway libvirt lab for the driver's tests: libvirtd daemons in
//! private mount namespaces (optionally in network namespaces joined by a
//! veth pair), a tiny TCG guest, and a guard that removes everything.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why the lab cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root".into());
    }
    for tool in [
        "libvirtd",
        "virsh",
        "qemu-system-x86_64",
        "unshare",
        "nsenter",
        "ip",
        "cpio",
    ] {
        let found = Command::new("sh")
            .args(["-c", "command -v \"$1\"", "sh", tool])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !found {
            return Some(format!("{tool} not installed"));
        }
    }
    if kernel().is_none() {
        return Some("no /boot/vmlinuz-*".into());
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("no /bin/busybox (busybox-static)".into());
    }
    None
}

fn kernel() -> Option<PathBuf> {
    let mut k: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .collect();
    k.sort();
    k.pop()
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One libvirtd "host".
pub struct LabHost {
    /// Its directory (config, sockets, state, logs).
    pub dir: PathBuf,
    /// Keel's URI for it (its unix socket).
    pub uri: String,
    /// Its network namespace, if any.
    pub netns: Option<String>,
    /// Its address in the namespace's veth, if any.
    pub address: Option<String>,
}

/// Everything a test started; removed on drop, even after a failed test.
pub struct Lab {
    /// The lab directory.
    pub dir: PathBuf,
    /// The hosts.
    pub hosts: Vec<LabHost>,
}

/// Starts libvirtd inside a private mount namespace with the host's
/// directories bound over libvirt's own. `$1` is the host directory.
const HOST_SCRIPT: &str = r#"set -e
H="$1"
for d in /etc/libvirt /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do mkdir -p "$d"; done
mount --bind "$H/etc" /etc/libvirt
mount --bind "$H/run" /run/libvirt
mount --bind "$H/lib" /var/lib/libvirt
mount --bind "$H/log" /var/log/libvirt
mount --bind "$H/cache" /var/cache/libvirt
exec libvirtd -d -p "$H/libvirtd.pid" -f /etc/libvirt/libvirtd.conf
"#;

impl Lab {
    /// A lab with `n` hosts; with `networked`, each in its own network
    /// namespace, hosts 0 and 1 joined by a veth pair 10.200.0.1/24 <->
    /// 10.200.0.2/24.
    pub fn start(n: usize, networked: bool) -> Result<Lab, String> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // Limits left by a crashed earlier run must not leak into this one.
        remove_guest_cgroups(&GUEST_NAMES);
        let dir = std::env::temp_dir().join(format!("keel-lv-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut lab = Lab {
            dir,
            hosts: Vec::new(),
        };
        let tag = format!("{}{}", std::process::id() % 100_000, stamp % 100);
        for i in 0..n {
            let netns = networked.then(|| format!("keel{tag}h{i}"));
            let address = netns.as_ref().map(|_| format!("10.200.0.{}", i + 1));
            let hdir = lab.dir.join(format!("h{i}"));
            let uri = format!(
                "qemu+unix:///system?socket={}/sock/libvirt-sock",
                hdir.display()
            );
            lab.hosts.push(LabHost {
                dir: hdir,
                uri,
                netns,
                address,
            });
        }
        if networked {
            for h in &lab.hosts {
                let ns = h.netns.as_deref().expect("networked");
                run("ip", &["netns", "add", ns])?;
                run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
            }
            let (a, b) = (format!("kv{tag}a"), format!("kv{tag}b"));
            run(
                "ip",
                &["link", "add", &a, "type", "veth", "peer", "name", &b],
            )?;
            for (veth, h) in [(&a, &lab.hosts[0]), (&b, &lab.hosts[1])] {
                let ns = h.netns.as_deref().expect("networked");
                let addr = format!("{}/24", h.address.as_deref().expect("networked"));
                run("ip", &["link", "set", veth, "netns", ns])?;
                run("ip", &["-n", ns, "addr", "add", &addr, "dev", veth])?;
                run("ip", &["-n", ns, "link", "set", veth, "up"])?;
            }
        }
        for i in 0..n {
            lab.start_daemon(i)?;
        }
        Ok(lab)
    }

    fn start_daemon(&self, i: usize) -> Result<(), String> {
        let h = &self.hosts[i];
        for d in [
            "etc/qemu",
            "etc/nwfilter",
            "run",
            "lib",
            "log",
            "cache",
            "sock",
        ] {
            std::fs::create_dir_all(h.dir.join(d)).map_err(|e| e.to_string())?;
        }
        let uuid = format!(
            "5ee10000-0000-4000-8000-{:012x}",
            std::process::id() as u64 * 16 + i as u64
        );
        let conf = format!(
            "unix_sock_dir = \"{s}\"\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n\
             listen_tcp = 0\nlisten_tls = 0\nhost_uuid = \"{uuid}\"\n\
             log_outputs = \"3:file:{l}\"\n",
            s = h.dir.join("sock").display(),
            l = h.dir.join("libvirtd.log").display()
        );
        let qemu = "user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\n\
                    security_driver = \"none\"\nstdio_handler = \"file\"\nnamespaces = [ ]\n";
        std::fs::write(h.dir.join("etc/libvirtd.conf"), conf).map_err(|e| e.to_string())?;
        std::fs::write(h.dir.join("etc/qemu.conf"), qemu).map_err(|e| e.to_string())?;
        let hdir = h.dir.to_string_lossy().to_string();
        let mut argv: Vec<String> = Vec::new();
        if let Some(ns) = &h.netns {
            argv.extend(["nsenter".into(), format!("--net=/run/netns/{ns}")]);
        }
        argv.extend(
            [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                HOST_SCRIPT,
                "sh",
            ]
            .map(String::from),
        );
        argv.push(hdir);
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        run(&argv[0], &args)?;
        let sock = h.dir.join("sock/libvirt-sock");
        wait_for(Duration::from_secs(20), || {
            sock.exists() && h.dir.join("libvirtd.pid").exists()
        })
        .map_err(|_| {
            format!(
                "libvirtd of host {i} did not come up (see {})",
                h.dir.display()
            )
        })
    }

    /// Builds the guest's initramfs (busybox, virtio balloon modules, a CPU
    /// loop after printing `KEEL-GUEST-UP` on the serial line).
    pub fn build_initrd(&self) -> Result<PathBuf, String> {
        let root = self.dir.join("initrd");
        for d in ["bin", "proc", "sys", "dev", "mod"] {
            std::fs::create_dir_all(root.join(d)).map_err(|e| e.to_string())?;
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).map_err(|e| e.to_string())?;
        let kernel = kernel().ok_or("no kernel")?;
        let release = kernel
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("vmlinuz-")
            .to_string();
        let mods = Path::new("/lib/modules")
            .join(&release)
            .join("kernel/drivers/virtio");
        let order = [
            "virtio_ring",
            "virtio",
            "virtio_pci_modern_dev",
            "virtio_pci_legacy_dev",
            "virtio_pci",
            "virtio_balloon",
        ];
        for m in order {
            let _ = std::fs::copy(
                mods.join(format!("{m}.ko")),
                root.join(format!("mod/{m}.ko")),
            );
        }
        let init = format!(
            "#!/bin/busybox sh\n/bin/busybox --install -s /bin\n\
             mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev\n\
             for m in {}; do [ -f /mod/$m.ko ] && insmod /mod/$m.ko; done\n\
             echo KEEL-GUEST-UP > /dev/ttyS0\nwhile :; do :; done\n",
            order.join(" ")
        );
        std::fs::write(root.join("init"), init).map_err(|e| e.to_string())?;
        run("chmod", &["755", &root.join("init").to_string_lossy()])?;
        let list = ["init", "bin", "bin/busybox", "proc", "sys", "dev", "mod"]
            .iter()
            .map(|s| s.to_string())
            .chain(
                order
                    .iter()
                    .map(|m| format!("mod/{m}.ko"))
                    .filter(|p| root.join(p).exists()),
            )
            .collect::<Vec<_>>()
            .join("\n");
        let out = self.dir.join("initrd.cpio");
        let file = std::fs::File::create(&out).map_err(|e| e.to_string())?;
        let mut child = Command::new("cpio")
            .args(["-o", "-H", "newc", "--quiet"])
            .current_dir(&root)
            .stdin(Stdio::piped())
            .stdout(file)
            .spawn()
            .map_err(|e| e.to_string())?;
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{list}\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let status = child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("cpio failed".into());
        }
        Ok(out)
    }

    /// A domain XML for a 128 MiB, 1-vCPU TCG guest booting the host's
    /// kernel with `initrd`; its serial line goes to `serial_path(name)`.
    pub fn domain_xml(&self, name: &str, initrd: &Path) -> String {
        format!(
            "<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
             <cmdline>console=ttyS0 quiet</cmdline></os>\
             <cpu mode='custom'><model fallback='allow'>qemu64</model></cpu>\
             <on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>\
             <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>\
             <serial type='file'><source path='{s}'/><target port='0'/></serial>\
             <memballoon model='virtio'><stats period='1'/></memballoon></devices></domain>",
            k = kernel().unwrap().display(),
            i = initrd.display(),
            s = self.serial_path(name).display()
        )
    }

    /// Where a guest's serial output goes.
    pub fn serial_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.serial"))
    }

    /// Waits until the guest printed `KEEL-GUEST-UP`.
    pub fn wait_guest_up(&self, name: &str) -> Result<(), String> {
        let path = self.serial_path(name);
        wait_for(Duration::from_secs(60), || {
            std::fs::read_to_string(&path).is_ok_and(|s| s.contains("KEEL-GUEST-UP"))
        })
        .map_err(|_| {
            format!(
                "guest {name} did not come up (serial log {})",
                path.display()
            )
        })
    }

    /// The QEMU pid of `vm` on host `i`, if libvirt wrote its pid file.
    pub fn qemu_pid(&self, i: usize, vm: &str) -> Option<u32> {
        let text =
            std::fs::read_to_string(self.hosts[i].dir.join(format!("run/qemu/{vm}.pid"))).ok()?;
        text.trim().parse().ok()
    }

    fn pids_using_lab(&self) -> Vec<u32> {
        let needle = self.dir.to_string_lossy().to_string();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
                if String::from_utf8_lossy(&cmd).contains(&needle) {
                    pids.push(pid);
                }
            }
        }
        pids
    }
}

/// Sends `signal` to `pid` (a process this test started).
pub fn kill(pid: u32, signal: &str) {
    let _ = run("kill", &[signal, &pid.to_string()]);
}

/// Polls `ready` every 100 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> Result<(), ()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(())
}

/// Removes the (empty) cgroups libvirt made for guests called `names`
/// (`machine/qemu-<id>-<name>.libvirt-qemu` in every controller). libvirt
/// removes them when a guest shuts down, but not when its QEMU and daemon
/// are killed, and a later guest of the same name and id would inherit the
/// old limits (a CPU cap of a previous run, say).
pub fn remove_guest_cgroups(names: &[&str]) {
    let controllers = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten();
    for controller in controllers {
        let machine = controller.path().join("machine");
        for entry in std::fs::read_dir(&machine).into_iter().flatten().flatten() {
            let file = entry.file_name().to_string_lossy().to_string();
            let ours = names.iter().any(|n| {
                file.starts_with("qemu-") && file.ends_with(&format!("-{n}.libvirt-qemu"))
            });
            if !ours {
                continue;
            }
            // Children (vcpuN, emulator) first; rmdir fails harmlessly on a
            // cgroup that still has tasks.
            for child in std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if child.path().is_dir() {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// Guest names the tests use.
pub const GUEST_NAMES: [&str; 2] = ["g1", "m1"];

impl Drop for Lab {
    fn drop(&mut self) {
        // QEMUs first (libvirt's pid files, then anything naming the lab
        // directory), then the daemons; their mount namespaces go with them.
        for (i, h) in self.hosts.iter().enumerate() {
            for entry in std::fs::read_dir(h.dir.join("run/qemu"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().to_string();
                if let Some(vm) = name.strip_suffix(".pid") {
                    if let Some(pid) = self.qemu_pid(i, vm) {
                        kill(pid, "-9");
                    }
                }
            }
        }
        for pid in self.pids_using_lab() {
            kill(pid, "-9");
        }
        for h in &self.hosts {
            if let Ok(text) = std::fs::read_to_string(h.dir.join("libvirtd.pid")) {
                if let Ok(pid) = text.trim().parse::<u32>() {
                    kill(pid, "-TERM");
                    let gone = wait_for(Duration::from_secs(5), || {
                        !Path::new(&format!("/proc/{pid}")).exists()
                    });
                    if gone.is_err() {
                        kill(pid, "-9");
                    }
                }
            }
        }
        for h in &self.hosts {
            if let Some(ns) = &h.netns {
                let _ = run("ip", &["netns", "del", ns]);
            }
        }
        // The QEMUs are gone (killed, so libvirt did not tidy up after them).
        std::thread::sleep(Duration::from_millis(200));
        remove_guest_cgroups(&GUEST_NAMES);
        if std::env::var_os("KEEL_KEEP_LAB").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
