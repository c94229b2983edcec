//! A wave of moves: each admitted, started in turn (within the concurrency
//! limits), then all followed together (tasks and the CRM's handling of HA
//! guests alike, so one slow HA move does not hold back the others'
//! start); the outcomes recorded (new node, failed hold, refusals).

use super::driver::ProxmoxDriver;
use super::migrate::{outcome_since, Follow, Migration, Poll, Refusal};
use super::observe::Guest;
use crate::{DriverError, MigrationOutcome, MigrationRequest};
use std::cell::RefCell;
use std::time::Instant;

type Outcome = Result<MigrationOutcome, DriverError>;

impl ProxmoxDriver {
    /// The checks of one request before anything starts.
    fn admit(&self, request: &MigrationRequest<'_>) -> Result<&Guest, DriverError> {
        let unknown = || DriverError::Unknown {
            kind: "VM",
            name: request.vm.to_string(),
        };
        let vmid: u64 = request.vm.parse().map_err(|_| unknown())?;
        let guest = self.guests.get(&vmid).ok_or_else(unknown)?;
        let dropped = |message: String| DriverError::Hypervisor {
            context: format!("migrating {vmid} from {} to {}", request.from, request.to),
            message,
        };
        if guest.node != request.from {
            return Err(dropped(format!(
                "the guest is on {} now; move dropped",
                guest.node
            )));
        }
        if self.ha_maintenance.contains(request.to) {
            return Err(dropped(format!(
                "node {} is in HA maintenance; move dropped",
                request.to
            )));
        }
        if let Some(why) = self.refusals.refuses(vmid, request.to) {
            return Err(dropped(format!(
                "Proxmox VE refused this move before ({why}); not asked again until the guest's config changes"
            )));
        }
        if !self.may_act() {
            return Err(DriverError::Unsupported(
                "migrating while the cluster's CRS auto-rebalance is on \
                 (set proxmox.act_despite_crs_auto_rebalance = true to confirm)",
            ));
        }
        Ok(guest)
    }

    /// Runs the wave and records its outcomes.
    pub(super) fn run_and_record(&mut self, requests: &[MigrationRequest<'_>]) -> Vec<Outcome> {
        let refusals = RefCell::new(Vec::new());
        let (results, partners) = self.run_wave(requests, &refusals);
        for (request, result) in requests.iter().zip(&results) {
            let Ok(vmid) = request.vm.parse::<u64>() else {
                continue;
            };
            match result {
                Ok(_) => {
                    if let Some(g) = self.guests.get_mut(&vmid) {
                        g.node = request.to.to_string();
                    }
                }
                Err(DriverError::MigrationFailed { .. } | DriverError::VmLost { .. }) => {
                    self.failed.insert(vmid, Instant::now());
                }
                Err(_) => {}
            }
        }
        // HA partners moved along with a guest (positive resource affinity).
        for (vmid, to) in partners {
            if let Some(g) = self.guests.get_mut(&vmid) {
                g.node = to;
            }
        }
        for refusal in refusals.into_inner() {
            self.record_refusal(refusal);
        }
        results
    }

    fn record_refusal(&mut self, refusal: Refusal) {
        let digest = self
            .guests
            .get(&refusal.vmid)
            .and_then(|g| self.config_digest(g));
        tracing::info!(
            guest = refusal.vmid,
            targets = ?refusal.targets,
            reason = %refusal.reason,
            "Proxmox VE refused a move: not proposed again until the guest's config changes"
        );
        self.refusals.record(refusal, digest);
    }

    /// Starts and follows a wave; touches no state (the caller records the
    /// outcomes). Also returns the HA partners that moved, with their node.
    fn run_wave(
        &self,
        requests: &[MigrationRequest<'_>],
        refusals: &RefCell<Vec<Refusal>>,
    ) -> (Vec<Outcome>, Vec<(u64, String)>) {
        let version = self
            .version
            .unwrap_or(super::version::PveVersion { major: 9, minor: 0 });
        let mut results: Vec<Option<Outcome>> = requests.iter().map(|_| None).collect();
        // (request index, migration, follow, start, deadline)
        let mut running: Vec<(usize, Migration<'_>, Follow, Instant, Instant)> = Vec::new();
        let mut own_tasks: Vec<(String, String)> = Vec::new();
        // (request index, index of the request whose move takes it along)
        let mut followers: Vec<(usize, usize)> = Vec::new();
        for (i, request) in requests.iter().enumerate() {
            let leader = running.iter().find(|(_, m, f, _, _)| {
                m.to == request.to && f.partners.iter().any(|p| p.to_string() == request.vm)
            });
            if let Some((l, ..)) = leader {
                followers.push((i, *l));
                continue;
            }
            let guest = match self.admit(request) {
                Ok(guest) => guest,
                Err(e) => {
                    results[i] = Some(Err(e));
                    continue;
                }
            };
            let migration = Migration {
                api: &self.api,
                config: &self.config,
                version,
                guest,
                to: request.to,
                bandwidth_bytes_per_second: request.max_bandwidth_bytes_per_second,
                refusals,
            };
            let started = Instant::now();
            let deadline = migration.deadline();
            match migration.start(deadline, &own_tasks) {
                Ok(follow) => {
                    own_tasks.push((follow.upid.clone(), request.to.to_string()));
                    running.push((i, migration, follow, started, deadline));
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let mut moved_partners = Vec::new();
        let mut pause = Poll::new(&self.config);
        while !running.is_empty() {
            running.retain_mut(|(i, migration, follow, started, deadline)| {
                match migration.poll(follow, *deadline) {
                    None => true,
                    Some(result) => {
                        if result.is_ok() {
                            moved_partners.extend(
                                follow
                                    .partners
                                    .iter()
                                    .map(|p| (*p, migration.to.to_string())),
                            );
                        }
                        results[*i] = Some(result.map(|()| outcome_since(*started)));
                        false
                    }
                }
            });
            if !running.is_empty() {
                pause.wait();
            }
        }
        for (i, leader) in followers {
            results[i] = Some(match &results[leader] {
                Some(Ok(outcome)) => Ok(*outcome),
                _ => Err(DriverError::Hypervisor {
                    context: format!("migrating {}", requests[i].vm),
                    message: format!(
                        "it moves only with its HA partner {}, whose move did not succeed",
                        requests[leader].vm
                    ),
                }),
            });
        }
        let results = results
            .into_iter()
            .map(|r| {
                r.unwrap_or(Err(DriverError::Unsupported(
                    "a migration without a result",
                )))
            })
            .collect();
        (results, moved_partners)
    }
}
