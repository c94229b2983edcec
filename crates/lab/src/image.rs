//! The guest image, built at lab time from Debian packages only: the cloud
//! kernel's vmlinuz and an initramfs (cpio newc, gzip) holding static
//! busybox, an /init script, the `tick` workload compiled from
//! guest/tick.c with `gcc -static`, and the kernel's virtio balloon driver
//! with what it needs (modules of the same kernel, where installed), so
//! that the host can take memory back through the guest's balloon.

use crate::cmd::run;
use crate::error::{io, Result};
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The workload's C source.
pub const TICK_C: &str = include_str!("../guest/tick.c");

/// The guest's /init (run by busybox sh). The balloon modules are loaded
/// in dependency order where the image has them (errors ignored: a guest
/// without a balloon still runs its workload).
pub const INIT: &str = "#!/bin/busybox sh\n\
/bin/busybox mount -t proc proc /proc\n\
/bin/busybox mount -t sysfs sys /sys\n\
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null\n\
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_balloon; do\n\
  /bin/busybox insmod /lib/modules/$m.ko 2>/dev/null\n\
done\n\
echo keel-lab guest up\n\
exec /bin/tick\n";

/// The balloon driver and its dependencies, in load order.
pub const BALLOON_MODULES: [&str; 6] = [
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_balloon",
];

/// The uncompressed `.ko` files of [`BALLOON_MODULES`] for the kernel
/// `vmlinuz` (its version from the file name `vmlinuz-VERSION`), if every
/// one is installed under /lib/modules; `None` otherwise.
pub fn balloon_modules(vmlinuz: &Path) -> Option<Vec<(String, PathBuf)>> {
    let name = vmlinuz.file_name()?.to_str()?;
    let version = name.strip_prefix("vmlinuz-")?;
    let dir = Path::new("/lib/modules")
        .join(version)
        .join("kernel/drivers/virtio");
    BALLOON_MODULES
        .iter()
        .map(|m| {
            let path = dir.join(format!("{m}.ko"));
            path.is_file().then(|| (m.to_string(), path))
        })
        .collect()
}

/// Paths of a built image.
#[derive(Debug, Clone)]
pub struct Image {
    /// The kernel.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
}

/// Builds the image in `dir` (created by the caller).
pub fn build(dir: &Path, vmlinuz: &Path, busybox: &Path) -> Result<Image> {
    let step = "build guest image";
    let src = dir.join("tick.c");
    std::fs::write(&src, TICK_C).map_err(io(step, &src))?;
    let bin = dir.join("tick");
    run(
        "compile guest workload",
        "gcc",
        &[
            "-static".as_ref(),
            "-O2".as_ref(),
            "-o".as_ref(),
            bin.as_os_str(),
            src.as_os_str(),
        ],
        Duration::from_secs(120),
    )?;
    let kernel = dir.join("vmlinuz");
    std::fs::copy(vmlinuz, &kernel).map_err(io("copy kernel", vmlinuz))?;
    let tick = std::fs::read(&bin).map_err(io(step, &bin))?;
    let bb = std::fs::read(busybox).map_err(io(step, busybox))?;
    let mut cpio = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "tmp"] {
        cpio.entry(d, 0o040755, &[], 0);
    }
    cpio.entry("dev/console", 0o020600, &[], (5 << 8) | 1);
    cpio.entry("bin/busybox", 0o100755, &bb, 0);
    cpio.entry("bin/sh", 0o120777, b"busybox", 0);
    cpio.entry("bin/tick", 0o100755, &tick, 0);
    cpio.entry("init", 0o100755, INIT.as_bytes(), 0);
    if let Some(modules) = balloon_modules(vmlinuz) {
        cpio.entry("lib", 0o040755, &[], 0);
        cpio.entry("lib/modules", 0o040755, &[], 0);
        for (m, path) in modules {
            let ko = std::fs::read(&path).map_err(io(step, &path))?;
            cpio.entry(&format!("lib/modules/{m}.ko"), 0o100644, &ko, 0);
        }
    }
    let initrd = dir.join("initrd.cpio.gz");
    let f = std::fs::File::create(&initrd).map_err(io(step, &initrd))?;
    let mut gz = GzEncoder::new(f, flate2::Compression::default());
    gz.write_all(&cpio.finish())
        .and_then(|()| gz.finish().map(|_| ()))
        .map_err(io(step, &initrd))?;
    Ok(Image { kernel, initrd })
}

/// A cpio "newc" archive writer.
#[derive(Debug, Default)]
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    /// Adds an entry; `rdev` is (major << 8 | minor) for device nodes.
    pub fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: u32) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            if mode & 0o040000 != 0 && mode & 0o100000 == 0 {
                2
            } else {
                1
            },
            0,
            data.len() as u32,
            0,
            0,
            rdev >> 8,
            rdev & 0xff,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    /// Adds the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], 0);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_headers_are_aligned() {
        let mut c = Cpio::default();
        c.entry("init", 0o100755, b"abc", 0);
        let a = c.finish();
        assert!(a.starts_with(b"070701"));
        assert_eq!(a.len() % 4, 0);
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn balloon_modules_are_found_for_the_installed_kernel_only() {
        assert_eq!(balloon_modules(Path::new("/boot/vmlinuz-0.0.0-none")), None);
        assert_eq!(balloon_modules(Path::new("/boot/bzImage")), None);
        let Some(vmlinuz) = crate::prereq::find_vmlinuz() else {
            eprintln!("SKIPPED: no /boot/vmlinuz-* on this machine");
            return;
        };
        match balloon_modules(&vmlinuz) {
            Some(m) => {
                let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
                assert_eq!(names, BALLOON_MODULES);
            }
            None => eprintln!(
                "SKIPPED: {} has no uncompressed virtio balloon modules installed",
                vmlinuz.display()
            ),
        }
    }
}
