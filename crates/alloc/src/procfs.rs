//! Finding a process's cgroup from `/proc/<pid>/cgroup`.
//!
//! Each line is `hierarchy-id:controllers:path`. Under cgroup v2 there is
//! one line `0::/path`; under v1 one line per hierarchy, e.g.
//! `4:cpu,cpuacct:/machine/qemu-1`; hybrid systems have both.

use crate::cgroup::Cgroup;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A parsed `/proc/<pid>/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcCgroup {
    /// The unified (v2) path, from the `0::` line.
    pub unified: Option<String>,
    /// v1 hierarchies: the controller list as mounted (e.g. `cpu,cpuacct`)
    /// to the path. Named hierarchies (`name=systemd`) are left out.
    pub v1: BTreeMap<String, String>,
}

/// A line that is not `id:controllers:path`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("/proc/<pid>/cgroup line {line_number}: malformed {line:?}")]
pub struct ParseError {
    /// 1-based line number.
    pub line_number: usize,
    /// The line.
    pub line: String,
}

/// Parses the text of `/proc/<pid>/cgroup`.
pub fn parse(text: &str) -> Result<ProcCgroup, ParseError> {
    let mut out = ProcCgroup::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || ParseError {
            line_number: i + 1,
            line: line.into(),
        };
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if id.parse::<u32>().is_err() || !path.starts_with('/') {
            return Err(bad());
        }
        if id == "0" && controllers.is_empty() {
            out.unified = Some(path.into());
        } else if !controllers.is_empty() && !controllers.starts_with("name=") {
            out.v1.insert(controllers.into(), path.into());
        }
    }
    Ok(out)
}

impl ProcCgroup {
    /// The v1 hierarchy (mount name and path) holding `controller`.
    pub fn v1_controller(&self, controller: &str) -> Option<(&str, &str)> {
        self.v1
            .iter()
            .find(|(k, _)| k.split(',').any(|c| c == controller))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The process's cgroup under the cgroup mount `root` (usually
    /// `/sys/fs/cgroup`): v1 when the `cpu` controller is on a v1
    /// hierarchy (each controller under `root/<controllers>/`), else v2.
    pub fn locate(&self, root: &Path) -> Option<Cgroup> {
        let join = |mount: &str, path: &str| root.join(mount).join(path.trim_start_matches('/'));
        if let Some((cm, cp)) = self.v1_controller("cpu") {
            let cpu = join(cm, cp);
            let other = |c: &str| {
                self.v1_controller(c)
                    .map_or(cpu.clone(), |(m, p)| join(m, p))
            };
            return Some(Cgroup::V1 {
                memory: other("memory"),
                blkio: other("blkio"),
                cpu,
            });
        }
        let path = self.unified.as_deref()?;
        Some(Cgroup::V2(root.join(path.trim_start_matches('/'))))
    }
}

/// Why a process's cgroup could not be found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FindError {
    /// The process is gone (the VM stopped).
    #[error("process {pid} gone ({file})")]
    ProcessGone {
        /// The pid.
        pid: u32,
        /// The file.
        file: PathBuf,
    },
    /// Reading the file failed otherwise.
    #[error("read {file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file did not parse.
    #[error("{file}: {source}")]
    Parse {
        /// The file.
        file: PathBuf,
        /// The error.
        source: ParseError,
    },
    /// No cpu controller (v1) or unified line (v2) in the file.
    #[error("{file}: no cgroup found")]
    NoCgroup {
        /// The file.
        file: PathBuf,
    },
}

/// Reads `proc_root/<pid>/cgroup` (`proc_root` usually `/proc`) and
/// locates the cgroup under `cgroup_root` (usually `/sys/fs/cgroup`).
pub fn find(proc_root: &Path, pid: u32, cgroup_root: &Path) -> Result<Cgroup, FindError> {
    let file = proc_root.join(pid.to_string()).join("cgroup");
    let text = std::fs::read_to_string(&file).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            FindError::ProcessGone {
                pid,
                file: file.clone(),
            }
        } else {
            FindError::Io {
                file: file.clone(),
                source: e,
            }
        }
    })?;
    let parsed = parse(&text).map_err(|source| FindError::Parse {
        file: file.clone(),
        source,
    })?;
    parsed
        .locate(cgroup_root)
        .ok_or(FindError::NoCgroup { file })
}

#[cfg(test)]
mod tests;
