//! The state file (JSON): every resource the lab creates is recorded here
//! BEFORE it is created, so that `down` can clean up after a crash of `up`.

use crate::error::{io, LabError, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One resource created by the lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// A directory created outside the lab directory (removed if empty).
    Dir {
        /// Its path.
        path: PathBuf,
    },
    /// A named network namespace (`ip netns add`).
    Netns {
        /// Its name.
        name: String,
    },
    /// A veth (or bridge) link; deleted with its namespace, or explicitly.
    Link {
        /// Link name.
        name: String,
        /// Namespace it lives in (None: the root namespace).
        netns: Option<String>,
    },
    /// A mount in the root mount namespace (unmounted by `down`).
    Mount {
        /// Mount point.
        path: PathBuf,
    },
    /// A persistent mount namespace bound on a file (unmounted by `down`).
    MountNs {
        /// The nsfs file.
        path: PathBuf,
    },
    /// A process; `pid` and `start_time` are filled in once it runs.
    Process {
        /// What it is.
        what: String,
        /// Its pid file, if it writes one.
        pidfile: Option<PathBuf>,
        /// Its pid.
        pid: Option<u32>,
        /// Its start time (/proc/PID/stat field 22), to never kill a reused pid.
        start_time: Option<u64>,
    },
    /// A cgroup directory (removed by `down`).
    Cgroup {
        /// Its path.
        path: PathBuf,
    },
    /// A libvirt domain (destroyed and undefined by `down`).
    Domain {
        /// Domain name.
        name: String,
        /// Libvirt URI of its host (unix socket).
        uri: String,
    },
}

/// A lab host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Index (0-based).
    pub index: usize,
    /// Network namespace name.
    pub netns: String,
    /// Address inside the namespace.
    pub addr: String,
    /// The host's directory.
    pub dir: PathBuf,
    /// `qemu+tcp://ADDR/system` (reachable only inside the lab namespaces).
    pub tcp_uri: String,
    /// `qemu+unix:///system?socket=...` (usable from the root namespace).
    pub unix_uri: String,
    /// Seconds from starting libvirtd to its socket answering.
    pub libvirtd_start_secs: Option<f64>,
    /// Seconds from starting libvirtd to the first answered virsh call.
    pub first_virsh_secs: Option<f64>,
}

/// A lab guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    /// Domain name.
    pub name: String,
    /// Index of its host.
    pub host: usize,
    /// Serial log file.
    pub serial: PathBuf,
    /// Seconds from `virsh start` to the first TICK on the serial.
    pub boot_secs: Option<f64>,
    /// Seconds taken by `virsh define` + `virsh start`.
    #[serde(default)]
    pub start_secs: Option<f64>,
    /// True if the guest has an `<interface type='ethernet'>` (a tap in its host's namespace).
    #[serde(default)]
    pub net: bool,
}

/// Everything the lab knows about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Resources in creation order.
    pub resources: Vec<Resource>,
    /// Hosts.
    pub hosts: Vec<HostRecord>,
    /// Guests.
    pub vms: Vec<VmRecord>,
    /// Accelerator in use ("kvm" or "tcg").
    pub accel: Option<String>,
    /// True once `up` finished.
    pub complete: bool,
}

/// The state file with its path; every change is written at once.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    /// The current state.
    pub state: State,
}

impl StateFile {
    /// The state file of lab directory `dir`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    /// Loads the state file of `dir`, or an empty state if there is none.
    pub fn load(dir: &Path) -> Result<StateFile> {
        let path = Self::path_in(dir);
        let state = match std::fs::read_to_string(&path) {
            Ok(s) => serde_json::from_str(&s).map_err(|e| LabError::State {
                path: path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(io("read state", &path)(e)),
        };
        Ok(StateFile { path, state })
    }

    /// Writes the state atomically (temporary file, fsync, rename).
    pub fn save(&self) -> Result<()> {
        use std::io::Write;
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&self.state).expect("state serializes");
        let mut f = std::fs::File::create(&tmp).map_err(io("write state", &tmp))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io("write state", &tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io("write state", &self.path))
    }

    /// Records a resource (before creating it) and saves; returns its index.
    pub fn record(&mut self, r: Resource) -> Result<usize> {
        self.state.resources.push(r);
        self.save()?;
        Ok(self.state.resources.len() - 1)
    }

    /// Fills in the pid and start time of process resource `idx` and saves.
    pub fn set_pid(&mut self, idx: usize, new_pid: u32) -> Result<()> {
        if let Some(Resource::Process {
            pid, start_time, ..
        }) = self.state.resources.get_mut(idx)
        {
            *pid = Some(new_pid);
            *start_time = crate::cmd::start_time(new_pid);
        }
        self.save()
    }

    /// Removes the state file.
    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io("remove state", &self.path)(e))
            }
            _ => Ok(()),
        }
    }
}
