//! `up` and `status`.

use crate::error::{failed, io, LabError, Result};
use crate::guests;
use crate::hosts;
use crate::image;
use crate::prereq::Prereqs;
use crate::state::{StateFile, VmRecord};
use crate::Lab;
use std::io::Write;
use std::time::{Duration, Instant};

/// The accelerator to use for guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// Probe KVM with a real guest; fall back to TCG.
    #[default]
    Auto,
    /// Force KVM.
    Kvm,
    /// Force TCG (software emulation).
    Tcg,
}

/// What `up` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpOptions {
    /// Number of hosts (1..=200).
    pub hosts: usize,
    /// Number of guests, placed round-robin.
    pub vms: usize,
    /// Accelerator choice.
    pub accel: Accel,
}

fn say(out: &mut dyn Write, msg: std::fmt::Arguments) {
    let _ = writeln!(out, "{msg}");
    let _ = out.flush();
}

/// Builds the lab: image, hosts with their libvirtd, guests (round-robin
/// over the hosts); prints a summary to `out`. On failure the state file is
/// kept: run [`crate::down`].
pub fn up(lab: &Lab, opts: UpOptions, out: &mut dyn Write) -> Result<StateFile> {
    up_placed(lab, opts, &|j| j, out)
}

/// [`up`], with guest `j` on host `host_of(j) % opts.hosts` (the selftest
/// puts every guest on host 0).
pub fn up_placed(
    lab: &Lab,
    opts: UpOptions,
    host_of: &dyn Fn(usize) -> usize,
    out: &mut dyn Write,
) -> Result<StateFile> {
    if opts.hosts == 0 || opts.hosts > 200 {
        return Err(failed("check options", "--hosts must be between 1 and 200"));
    }
    let pre = Prereqs::check();
    if let Some(msg) = pre.message() {
        return Err(LabError::Prerequisites(msg));
    }
    std::fs::create_dir_all(&lab.dir).map_err(io("create lab directory", &lab.dir))?;
    let mut sf = StateFile::load(&lab.dir)?;
    if !sf.state.resources.is_empty() || !sf.state.hosts.is_empty() {
        return Err(failed(
            "check state",
            format!(
                "a lab is already recorded in {}: run `keel lab down` first",
                lab.dir.display()
            ),
        ));
    }
    sf.save()?;
    let t0 = Instant::now();
    let imgdir = lab.dir.join("image");
    std::fs::create_dir_all(&imgdir).map_err(io("create image directory", &imgdir))?;
    let (vmlinuz, busybox) = (pre.vmlinuz.expect("checked"), pre.busybox.expect("checked"));
    let img = image::build(&imgdir, &vmlinuz, &busybox)?;
    say(
        out,
        format_args!(
            "image: {} + {} ({:.1} s)",
            img.kernel.display(),
            img.initrd.display(),
            t0.elapsed().as_secs_f64()
        ),
    );
    let probe = match opts.accel {
        Accel::Auto => Some(guests::start_kvm_probe(&imgdir, &img, &mut sf)?),
        _ => None,
    };
    hosts::create_ns_dir(lab, &mut sf)?;
    hosts::create_hub(lab, &mut sf)?;
    let mut started = Vec::new();
    for i in 0..opts.hosts {
        hosts::create_net(lab, &mut sf, i)?;
        let (rec, t) = hosts::start_libvirtd(lab, &mut sf, i)?;
        sf.state.hosts.push(rec);
        sf.save()?;
        started.push(t);
    }
    for (i, t) in started.iter().enumerate() {
        hosts::wait_ready(&mut sf.state.hosts[i], *t)?;
    }
    sf.save()?;
    let kvm = match (opts.accel, probe) {
        (Accel::Kvm, _) => true,
        (Accel::Auto, Some(p)) => p.finish(Duration::from_secs(25)),
        _ => false,
    };
    let accel = if kvm { "kvm" } else { "tcg" };
    say(
        out,
        format_args!(
            "accelerator: {accel}{}",
            if opts.accel == Accel::Auto && !kvm {
                " (KVM probe: no Linux guest output; falling back to TCG)"
            } else {
                ""
            }
        ),
    );
    sf.state.accel = Some(accel.into());
    let vmdir = lab.dir.join("vms");
    std::fs::create_dir_all(&vmdir).map_err(io("create vm directory", &vmdir))?;
    let mut booting = Vec::new();
    for j in 0..opts.vms {
        let h = host_of(j) % opts.hosts;
        let name = format!("{}-vm{j}", lab.prefix);
        let serial = vmdir.join(format!("{name}.serial"));
        let uri = sf.state.hosts[h].unix_uri.clone();
        let t = Instant::now();
        let net = guests::define_start(&mut sf, &vmdir, &uri, &name, kvm, &img, &serial)?;
        let start_secs = Some(t.elapsed().as_secs_f64());
        sf.state.vms.push(VmRecord {
            name,
            host: h,
            serial: serial.clone(),
            boot_secs: None,
            start_secs,
            net,
        });
        sf.save()?;
        booting.push((serial, Instant::now()));
    }
    let boots = guests::wait_boot(&booting, Duration::from_secs(180));
    for (vm, b) in sf.state.vms.iter_mut().zip(&boots) {
        vm.boot_secs = *b;
    }
    sf.state.complete = true;
    sf.save()?;
    say(out, format_args!("hosts:"));
    for h in &sf.state.hosts {
        say(out, format_args!(
            "  h{}  netns {}  {}  (inside the lab namespaces)\n      {}\n      libvirtd up {:.2} s, first virsh answer {:.1} s",
            h.index, h.netns, h.tcp_uri, h.unix_uri,
            h.libvirtd_start_secs.unwrap_or(f64::NAN), h.first_virsh_secs.unwrap_or(f64::NAN)
        ));
    }
    say(out, format_args!("vms:"));
    for v in &sf.state.vms {
        let boot = v.boot_secs.map_or("no TICK yet".to_string(), |b| {
            format!("first TICK after {b:.1} s")
        });
        let start = v
            .start_secs
            .map_or(String::new(), |s| format!("define+start {s:.1} s, "));
        let net = if v.net { "ethernet tap" } else { "no NIC" };
        say(
            out,
            format_args!(
                "  {}  on h{}  {start}{boot}  ({net})  serial {}",
                v.name,
                v.host,
                v.serial.display()
            ),
        );
    }
    say(
        out,
        format_args!("up in {:.1} s", t0.elapsed().as_secs_f64()),
    );
    if boots.iter().any(Option::is_none) {
        return Err(failed(
            "boot guests",
            "some guests printed no TICK within 180 s (the lab is up; see `keel lab status`)",
        ));
    }
    Ok(sf)
}

fn cgroup_usage_ns(path: &std::path::Path) -> Option<u64> {
    if let Ok(s) = std::fs::read_to_string(path.join("cpuacct.usage")) {
        return s.trim().parse().ok();
    }
    let s = std::fs::read_to_string(path.join("cpu.stat")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<u64>().ok())
        .map(|u| u * 1000)
}

/// Prints hosts, guests, their state and measured load (CPU % from
/// `virsh domstats` cpu.time over `window`, and the TICK rate).
pub fn status(lab: &Lab, window: Duration, out: &mut dyn Write) -> Result<()> {
    let sf = StateFile::load(&lab.dir)?;
    let st = &sf.state;
    if st.resources.is_empty() {
        say(out, format_args!("no lab in {}", lab.dir.display()));
        return Ok(());
    }
    let cg_root = lab.cgroup_root();
    let cg = |i: usize| {
        cg_root
            .as_ref()
            .map(|r| r.join(format!("{}-h{i}", lab.prefix)))
    };
    let sample = || {
        let vms: Vec<(Instant, Option<u64>)> = st
            .vms
            .iter()
            .map(|v| {
                (
                    Instant::now(),
                    guests::cpu_time_ns(&st.hosts[v.host].unix_uri, &v.name),
                )
            })
            .collect();
        let hosts: Vec<(Instant, Option<u64>)> = st
            .hosts
            .iter()
            .map(|h| {
                (
                    Instant::now(),
                    cg(h.index).and_then(|p| cgroup_usage_ns(&p)),
                )
            })
            .collect();
        (vms, hosts)
    };
    let (v1, h1) = sample();
    std::thread::sleep(window);
    let (v2, h2) = sample();
    let pct = |a: (Instant, Option<u64>), b: (Instant, Option<u64>)| match (a.1, b.1) {
        (Some(x), Some(y)) if y >= x => {
            let secs = (b.0 - a.0).as_secs_f64();
            format!("{:5.1} %", (y - x) as f64 / 1e9 / secs * 100.0)
        }
        _ => "    - ".to_string(),
    };
    say(
        out,
        format_args!(
            "lab {} ({}; {})",
            lab.dir.display(),
            st.accel.as_deref().unwrap_or("?"),
            if st.complete {
                "up"
            } else {
                "INCOMPLETE: run `keel lab down`"
            }
        ),
    );
    say(out, format_args!("host  libvirtd        cpu      uri"));
    for (k, h) in st.hosts.iter().enumerate() {
        let pid = hosts::read_pid(&h.dir.join("libvirtd.pid"), Duration::ZERO);
        let d = pid.map_or("down".to_string(), |p| format!("pid {p}"));
        say(
            out,
            format_args!(
                "h{:<4} {:<14} {}  {}\n                               {}",
                h.index,
                d,
                pct(h1[k], h2[k]),
                h.unix_uri,
                h.tcp_uri
            ),
        );
    }
    say(
        out,
        format_args!("vm              host  state        cpu      ticks  rate(iter/s, last 5 s)"),
    );
    for (k, v) in st.vms.iter().enumerate() {
        let state = guests::domstate(&st.hosts[v.host].unix_uri, &v.name);
        let text = std::fs::read(&v.serial)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let t = guests::ticks(&text);
        let (n, rate) = match (t.last(), t.len().checked_sub(6).map(|i| t[i])) {
            (Some(l), Some(f)) => (l.n, (l.total - f.total) / (l.n - f.n).max(1)),
            (Some(l), None) => (l.n, l.rate),
            _ => (0, 0),
        };
        say(
            out,
            format_args!(
                "{:<15} h{:<4} {:<12} {}  {:>5}  {}",
                v.name,
                v.host,
                state,
                pct(v1[k], v2[k]),
                n,
                rate
            ),
        );
    }
    Ok(())
}
