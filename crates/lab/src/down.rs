//! `down`: removes everything the state file records, plus anything of the
//! lab's naming found on the machine; idempotent, works after a crash.

use crate::cmd::{self, run};
use crate::error::Result;
use crate::state::{Resource, StateFile};
use crate::Lab;
use std::path::PathBuf;
use std::time::Duration;

const T: Duration = Duration::from_secs(15);
const GRACE: Duration = Duration::from_secs(5);

/// What `down` did and what it could not undo.
#[derive(Debug, Default, Clone)]
pub struct DownReport {
    /// Actions taken.
    pub done: Vec<String>,
    /// Resources left behind, with the reason.
    pub failed: Vec<String>,
}

/// Programs `down` may kill when their command line names the lab directory.
const LAB_PROGRAMS: [&str; 5] = ["qemu-system-x86", "libvirtd", "nsenter", "unshare", "virsh"];

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Stops every guest and libvirtd, kills every recorded process, deletes
/// namespaces, links, mounts, cgroups and the files the lab created.
pub fn down(lab: &Lab) -> Result<DownReport> {
    let mut r = DownReport::default();
    let sf = StateFile::load(&lab.dir)?;
    let res = &sf.state.resources;
    // 1. Guests, gracefully, while their libvirtd still runs.
    for x in res {
        if let Resource::Domain { name, uri } = x {
            let sock_ok = uri
                .split("socket=")
                .nth(1)
                .is_some_and(|s| std::path::Path::new(s).exists());
            if sock_ok && run("destroy guest", "virsh", &["-c", uri, "destroy", name], T).is_ok() {
                r.done.push(format!("destroyed {name}"));
            }
        }
    }
    // 2. Recorded processes (only if still the same process).
    for x in res.iter().rev() {
        if let Resource::Process {
            what,
            pidfile,
            pid,
            start_time,
        } = x
        {
            let from_file = pidfile
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .and_then(|s| s.trim().parse::<u32>().ok());
            for (p, st) in [(*pid, *start_time), (from_file, None)] {
                if let Some(p) = p {
                    let ok = st.is_some() || LAB_PROGRAMS.iter().any(|c| comm(p).starts_with(c));
                    if ok && cmd::kill(p, st, GRACE) {
                        r.done.push(format!("killed {what} (pid {p})"));
                    }
                }
            }
        }
    }
    // 3. Namespaces: recorded ones and any of the lab's naming.
    let mut nss: Vec<String> = res
        .iter()
        .filter_map(|x| match x {
            Resource::Netns { name } => Some(name.clone()),
            _ => None,
        })
        .collect();
    if let Ok(list) = run("list namespaces", "ip", &["netns", "list"], T) {
        for l in list.lines() {
            let n = l.split_whitespace().next().unwrap_or("");
            if lab.owns_netns(n) && !nss.iter().any(|x| x == n) {
                nss.push(n.to_string());
            }
        }
    }
    // Any process still inside them is the lab's (qemu started by libvirtd).
    for ns in &nss {
        if let Ok(pids) = run("list namespace processes", "ip", &["netns", "pids", ns], T) {
            for p in pids.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                if cmd::kill(p, cmd::start_time(p), GRACE) {
                    r.done.push(format!("killed pid {p} ({}) in {ns}", comm(p)));
                }
            }
        }
    }
    // 4. Processes whose command line names the lab directory.
    let needle = lab.dir.to_string_lossy().to_string();
    for p in cmd::pids_mentioning(&needle) {
        let c = comm(p);
        if LAB_PROGRAMS.iter().any(|x| c.starts_with(x)) && cmd::kill(p, cmd::start_time(p), GRACE)
        {
            r.done.push(format!("killed pid {p} ({c})"));
        }
    }
    // 5. Mounts: namespace files, then recorded mounts, then anything under the dir.
    let mut mounts: Vec<PathBuf> = res
        .iter()
        .rev()
        .filter_map(|x| match x {
            Resource::MountNs { path } | Resource::Mount { path } => Some(path.clone()),
            _ => None,
        })
        .collect();
    mounts.extend(mounts_under(&lab.dir).into_iter().rev());
    for m in mounts {
        while mounts_under(&lab.dir).contains(&m) || is_mounted(&m) {
            if run("unmount", "umount", &[m.as_os_str()], T).is_err()
                && run(
                    "unmount (lazy)",
                    "umount",
                    &["-l".as_ref(), m.as_os_str()],
                    T,
                )
                .is_err()
            {
                r.failed.push(format!("mount {}", m.display()));
                break;
            }
            r.done.push(format!("unmounted {}", m.display()));
        }
    }
    // 6. Links in the root namespace, then namespaces (their links go with them).
    for x in res {
        if let Resource::Link { name, netns: None } = x {
            if run("show link", "ip", &["link", "show", name], T).is_ok() {
                match run("delete link", "ip", &["link", "del", name], T) {
                    Ok(_) => r.done.push(format!("deleted link {name}")),
                    Err(e) => r.failed.push(format!("link {name}: {e}")),
                }
            }
        }
    }
    for ns in &nss {
        if std::path::Path::new("/run/netns").join(ns).exists() {
            match run("delete namespace", "ip", &["netns", "del", ns], T) {
                Ok(_) => r.done.push(format!("deleted namespace {ns}")),
                Err(e) => r.failed.push(format!("namespace {ns}: {e}")),
            }
        }
    }
    // 7. Cgroups and directories created outside the lab directory.
    for x in res.iter().rev() {
        match x {
            Resource::Cgroup { path } if path.exists() => {
                let mut ok = false;
                for _ in 0..50 {
                    if std::fs::remove_dir(path).is_ok() {
                        ok = true;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                if ok {
                    r.done.push(format!("removed cgroup {}", path.display()))
                } else {
                    r.failed.push(format!("cgroup {}", path.display()))
                }
            }
            Resource::Dir { path } if std::fs::remove_dir(path).is_ok() => {
                r.done.push(format!("removed {}", path.display()));
            }
            _ => {}
        }
    }
    // libvirt removes a guest's machine cgroups when it stops the guest, not
    // when its QEMU was killed (a crashed `up`): remove those left behind,
    // or a later guest of the same name would inherit their limits.
    let guests: Vec<&str> = res
        .iter()
        .filter_map(|x| match x {
            Resource::Domain { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    for path in stale_guest_cgroups(&guests) {
        // Only empty ones: a guest of the same name outside the lab keeps its own.
        if has_tasks(&path) {
            continue;
        }
        for child in std::fs::read_dir(&path).into_iter().flatten().flatten() {
            if child.path().is_dir() {
                let _ = std::fs::remove_dir(child.path());
            }
        }
        if std::fs::remove_dir(&path).is_ok() {
            r.done.push(format!("removed cgroup {}", path.display()));
        }
    }
    // 8. Files, only if nothing is left mounted there.
    if r.failed.is_empty() && mounts_under(&lab.dir).is_empty() {
        for sub in ["hosts", "image", "vms", "ns"] {
            let p = lab.dir.join(sub);
            if p.exists() {
                match std::fs::remove_dir_all(&p) {
                    Ok(()) => r.done.push(format!("removed {}", p.display())),
                    Err(e) => r.failed.push(format!("{}: {e}", p.display())),
                }
            }
        }
        sf.remove()?;
        let _ = std::fs::remove_file(lab.dir.join("state.json.tmp"));
        let _ = std::fs::remove_dir(&lab.dir);
    } else {
        r.failed.push(format!(
            "kept {} (something could not be removed)",
            StateFile::path_in(&lab.dir).display()
        ));
    }
    Ok(r)
}

fn is_mounted(p: &std::path::Path) -> bool {
    mounts_under(p).iter().any(|m| m == p)
}

/// Mount points at or under `dir`, in /proc/mounts order.
pub fn mounts_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// libvirt's machine cgroups (`machine/qemu-<id>-<name>.libvirt-qemu`, in
/// every controller) of guests called `names`.
fn stale_guest_cgroups(names: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for controller in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let machine = controller.path().join("machine");
        for entry in std::fs::read_dir(&machine).into_iter().flatten().flatten() {
            let file = entry.file_name().to_string_lossy().to_string();
            if file.starts_with("qemu-")
                && names
                    .iter()
                    .any(|n| file.ends_with(&format!("-{n}.libvirt-qemu")))
            {
                found.push(entry.path());
            }
        }
    }
    found
}

/// Whether a cgroup or any child holds a process.
fn has_tasks(path: &std::path::Path) -> bool {
    let busy = |p: &std::path::Path| {
        std::fs::read_to_string(p.join("cgroup.procs")).is_ok_and(|t| !t.trim().is_empty())
    };
    busy(path)
        || std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .any(|c| c.path().is_dir() && busy(&c.path()))
}
