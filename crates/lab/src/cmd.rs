//! Running commands (always argument vectors, never a shell) with time
//! limits, and process helpers over /proc.

use crate::error::{LabError, Result};
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Joins an argument vector for display in messages.
pub(crate) fn display<S: AsRef<OsStr>>(prog: &str, args: &[S]) -> String {
    let mut s = prog.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

fn reader<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut out = String::new();
        if let Some(mut r) = r {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            out = String::from_utf8_lossy(&buf).into_owned();
        }
        out
    })
}

/// Runs `prog args` and returns its standard output; fails with the step,
/// command and standard error on a non-zero exit or after `timeout`.
pub(crate) fn run<S: AsRef<OsStr>>(
    step: &str,
    prog: &str,
    args: &[S],
    timeout: Duration,
) -> Result<String> {
    let command = display(prog, args);
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn {
            step: step.to_string(),
            command: command.clone(),
            source,
        })?;
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let status = wait_timeout(&mut child, timeout);
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default().trim().to_string();
    match status {
        None => Err(LabError::Timeout {
            step: step.to_string(),
            command,
            secs: timeout.as_secs(),
            stderr,
        }),
        Some(s) if s.success() => Ok(stdout),
        Some(s) => Err(LabError::Command {
            step: step.to_string(),
            command,
            status: s.to_string(),
            stderr,
        }),
    }
}

/// Waits for `child` at most `timeout`; kills it and returns None on timeout.
pub(crate) fn wait_timeout(
    child: &mut Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Spawns a long-running process with its output going to `log`.
pub(crate) fn spawn_logged<S: AsRef<OsStr>>(
    step: &str,
    prog: &str,
    args: &[S],
    log: &Path,
) -> Result<Child> {
    let f = std::fs::File::create(log).map_err(crate::error::io(step, log))?;
    let f2 = f.try_clone().map_err(crate::error::io(step, log))?;
    Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(f)
        .stderr(f2)
        .spawn()
        .map_err(|source| LabError::Spawn {
            step: step.to_string(),
            command: display(prog, args),
            source,
        })
}

/// True when the effective user is root (from /proc/self/status).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Finds an executable on PATH (plus the sbin directories).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// The start time of a process (field 22 of /proc/PID/stat, clock ticks
/// since boot), or None if it does not exist.
pub fn start_time(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// True when process `pid` exists and (if given) started at `start`.
pub fn alive(pid: u32, start: Option<u64>) -> bool {
    match (start_time(pid), start) {
        (Some(t), Some(s)) => t == s && !is_zombie(pid),
        (Some(_), None) => !is_zombie(pid),
        (None, _) => false,
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(true)
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILL. Only if the process
/// still has the recorded start time. Returns true if it was running.
pub fn kill(pid: u32, start: Option<u64>, grace: Duration) -> bool {
    if pid <= 1 || !alive(pid, start) {
        return false;
    }
    let p = pid.to_string();
    let _ = run("kill", "kill", &["-TERM", &p], Duration::from_secs(5));
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !alive(pid, start) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = run("kill", "kill", &["-KILL", &p], Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid, start) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Pids of processes whose command line contains `needle`.
pub fn pids_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut pids = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmd.contains(needle) && !is_zombie(pid) {
                pids.push(pid);
            }
        }
    }
    pids
}
