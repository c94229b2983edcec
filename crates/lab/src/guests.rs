//! Lab guests: the KVM probe, domain XML, define + start through virsh,
//! boot time from the serial log, and load figures.

use crate::cmd::{run, spawn_logged};
use crate::error::{failed, io, Result};
use crate::image::Image;
use crate::state::{Resource, StateFile};
use std::path::Path;
use std::time::{Duration, Instant};

/// A running KVM probe: a guest started directly with `-accel kvm`.
#[derive(Debug)]
pub struct KvmProbe {
    child: Option<std::process::Child>,
    serial: std::path::PathBuf,
    started: Instant,
}

/// Starts the KVM probe if /dev/kvm exists (it runs while the hosts come up).
pub fn start_kvm_probe(dir: &Path, img: &Image, sf: &mut StateFile) -> Result<KvmProbe> {
    let serial = dir.join("kvm-probe.serial");
    let _ = std::fs::remove_file(&serial);
    let mut p = KvmProbe {
        child: None,
        serial: serial.clone(),
        started: Instant::now(),
    };
    if !Path::new("/dev/kvm").exists() {
        return Ok(p);
    }
    let idx = sf.record(Resource::Process {
        what: "kvm probe".into(),
        pidfile: None,
        pid: None,
        start_time: None,
    })?;
    let serial_opt = format!("file:{}", serial.display());
    let child = spawn_logged(
        "probe kvm",
        "qemu-system-x86_64",
        &[
            "-name".as_ref(),
            "keel-lab-kvm-probe".as_ref(),
            "-machine".as_ref(),
            "pc".as_ref(),
            "-accel".as_ref(),
            "kvm".as_ref(),
            "-cpu".as_ref(),
            "host".as_ref(),
            "-m".as_ref(),
            "128".as_ref(),
            "-display".as_ref(),
            "none".as_ref(),
            "-nodefaults".as_ref(),
            "-no-reboot".as_ref(),
            "-serial".as_ref(),
            serial_opt.as_ref(),
            "-kernel".as_ref(),
            img.kernel.as_os_str(),
            "-initrd".as_ref(),
            img.initrd.as_os_str(),
            "-append".as_ref(),
            "console=ttyS0 quiet panic=-1 clocksource=hpet tsc=unstable".as_ref(),
        ],
        &dir.join("kvm-probe.log"),
    )?;
    sf.set_pid(idx, child.id())?;
    p.child = Some(child);
    p.started = Instant::now();
    Ok(p)
}

impl KvmProbe {
    /// Waits (up to `limit` since the start) for a TICK; kills the probe.
    /// True when a Linux guest really ran under KVM.
    pub fn finish(mut self, limit: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let mut ok = false;
        while self.started.elapsed() < limit {
            if first_tick(&self.serial).is_some() {
                ok = true;
                break;
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        ok
    }
}

/// The domain XML of a lab guest.
pub fn domain_xml(name: &str, kvm: bool, img: &Image, serial: &Path, net: bool) -> String {
    let iface = if net {
        "    <interface type='ethernet'><model type='virtio'/></interface>\n"
    } else {
        ""
    };
    format!(
        "<domain type='{ty}'>\n  <name>{name}</name>\n  <memory unit='MiB'>128</memory>\n  <vcpu>1</vcpu>\n\
  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n    <kernel>{k}</kernel>\n    <initrd>{i}</initrd>\n\
    <cmdline>console=ttyS0 quiet panic=-1 clocksource=hpet tsc=unstable</cmdline>\n  </os>\n\
  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>destroy</on_reboot>\n  <on_crash>destroy</on_crash>\n\
  <devices>\n    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n\
    <serial type='file'><source path='{s}'/><target port='0'/></serial>\n{iface}\
    <memballoon model='virtio'><stats period='2'/></memballoon>\n  </devices>\n</domain>\n",
        ty = if kvm { "kvm" } else { "qemu" },
        k = img.kernel.display(),
        i = img.initrd.display(),
        s = serial.display(),
    )
}

/// Defines and starts a guest on the host at `uri`; records the domain first.
/// Tries with an ethernet interface, then without one if that fails.
pub fn define_start(
    sf: &mut StateFile,
    dir: &Path,
    uri: &str,
    name: &str,
    kvm: bool,
    img: &Image,
    serial: &Path,
) -> Result<bool> {
    sf.record(Resource::Domain {
        name: name.into(),
        uri: uri.into(),
    })?;
    let mut last = None;
    for net in [true, false] {
        let xml = dir.join(format!("{name}.xml"));
        std::fs::write(&xml, domain_xml(name, kvm, img, serial, net))
            .map_err(io("write domain XML", &xml))?;
        let t = Duration::from_secs(120);
        run(
            "define guest",
            "virsh",
            &[
                "-c".as_ref(),
                uri.as_ref(),
                "define".as_ref(),
                xml.as_os_str(),
            ],
            t,
        )?;
        match run("start guest", "virsh", &["-c", uri, "start", name], t) {
            Ok(_) => return Ok(net),
            Err(e) => {
                let _ = run("undefine guest", "virsh", &["-c", uri, "undefine", name], t);
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| failed("start guest", name)))
}

/// One `TICK n total=T rate=R` line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick {
    /// Tick number.
    pub n: u64,
    /// Progress counter.
    pub total: u64,
    /// Iterations per second over the last tick.
    pub rate: u64,
}

/// Parses the TICK lines of a serial log.
pub fn ticks(text: &str) -> Vec<Tick> {
    text.lines()
        .filter_map(|l| {
            let l = &l[l.find("TICK ")? + 5..];
            let mut it = l.split_whitespace();
            let n = it.next()?.parse().ok()?;
            let total = it.next()?.strip_prefix("total=")?.parse().ok()?;
            let rate = it.next()?.strip_prefix("rate=")?.parse().ok()?;
            Some(Tick { n, total, rate })
        })
        .collect()
}

/// The first TICK of a serial log, if any.
pub fn first_tick(serial: &Path) -> Option<Tick> {
    let text = std::fs::read(serial).ok()?;
    ticks(&String::from_utf8_lossy(&text)).into_iter().next()
}

/// Waits for a TICK on each serial log (started at the given instants);
/// returns each guest's boot time in seconds (None: no TICK before `limit`).
pub fn wait_boot(guests: &[(std::path::PathBuf, Instant)], limit: Duration) -> Vec<Option<f64>> {
    let mut out = vec![None; guests.len()];
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && out.iter().any(Option::is_none) {
        for (k, (serial, started)) in guests.iter().enumerate() {
            if out[k].is_none() && first_tick(serial).is_some() {
                out[k] = Some(started.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    out
}

/// A guest's state (`virsh domstate`), or the error text.
pub fn domstate(uri: &str, name: &str) -> String {
    match run(
        "domstate",
        "virsh",
        &["-c", uri, "domstate", name],
        Duration::from_secs(20),
    ) {
        Ok(s) => s.trim().to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}

/// A guest's cumulative CPU time in nanoseconds (`virsh domstats --cpu-total`).
pub fn cpu_time_ns(uri: &str, name: &str) -> Option<u64> {
    let out = run(
        "domstats",
        "virsh",
        &["-c", uri, "domstats", "--cpu-total", name],
        Duration::from_secs(20),
    )
    .ok()?;
    out.lines()
        .find_map(|l| l.trim().strip_prefix("cpu.time=")?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ticks() {
        let t =
            ticks("boot\nTICK 1 total=100 rate=100\nnoise TICK 2 total=250 rate=150\nTICK 3 tot");
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[1],
            Tick {
                n: 2,
                total: 250,
                rate: 150
            }
        );
    }
}
