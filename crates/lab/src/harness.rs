//! What the end-to-end tests on the lab share (`keel lab selftest`,
//! `keel lab alloc-test`): use the lab that is up if it is big enough,
//! else bring one up and tear it down at the end (also after an error or a
//! panic half-way), unless asked to keep it.

use crate::error::{failed, Result};
use crate::lab::{up_placed, Accel, UpOptions};
use crate::state::StateFile;
use crate::Lab;
use std::io::Write;

/// The lab a test needs.
pub(crate) struct LabNeeds {
    /// The test's name, for the log and errors (`selftest`).
    pub name: &'static str,
    /// At least this many hosts.
    pub hosts: usize,
    /// At least this many guests.
    pub vms: usize,
    /// How the lab brought up for it looks, for the log.
    pub described: &'static str,
}

/// Tears the lab down when dropped (unless disarmed), so that an error or
/// a panic half-way leaves nothing behind.
pub(crate) struct Teardown<'a> {
    pub(crate) lab: &'a Lab,
    pub(crate) armed: bool,
}

impl Teardown<'_> {
    pub(crate) fn finish(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.armed) {
            return Ok(());
        }
        let r = crate::down(self.lab)?;
        if r.failed.is_empty() {
            Ok(())
        } else {
            Err(failed("tear the lab down", r.failed.join("; ")))
        }
    }
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// One progress line of test `name`.
pub(crate) fn say(log: &mut dyn Write, name: &str, msg: std::fmt::Arguments) {
    let _ = writeln!(log, "{name}: {msg}");
    let _ = log.flush();
}

/// Runs `scenario` on `lab`: on the lab that is up if it has what `needs`
/// asks, else on one brought up for it (every guest on h0) and torn down
/// afterwards unless `keep`. A lab that is up but incomplete or too small
/// is an error (`keel lab down` first). `scenario` is told whether the lab
/// was brought up for it.
pub(crate) fn on_lab<R>(
    lab: &Lab,
    needs: &LabNeeds,
    keep: bool,
    log: &mut dyn Write,
    scenario: impl FnOnce(bool, &mut dyn Write) -> Result<R>,
) -> Result<R> {
    let existing = StateFile::load(&lab.dir)?;
    let st = &existing.state;
    let brought_up = if st.complete && st.hosts.len() >= needs.hosts && st.vms.len() >= needs.vms {
        say(
            log,
            needs.name,
            format_args!("using the lab up in {}", lab.dir.display()),
        );
        false
    } else if st.resources.is_empty() && st.hosts.is_empty() {
        true
    } else {
        return Err(failed(
            needs.name,
            format!(
                "the lab in {} is incomplete or smaller than {} host(s) and {} guests: run `keel lab down` first",
                lab.dir.display(),
                needs.hosts,
                needs.vms
            ),
        ));
    };
    let mut teardown = Teardown {
        lab,
        armed: brought_up && !keep,
    };
    if brought_up {
        say(
            log,
            needs.name,
            format_args!("bringing up {}", needs.described),
        );
        let up = UpOptions {
            hosts: needs.hosts,
            vms: needs.vms,
            accel: Accel::Auto,
        };
        up_placed(lab, up, &|_| 0, log)?;
    }
    let report = scenario(brought_up, log);
    let down = teardown.finish();
    let report = report?;
    down?;
    Ok(report)
}
