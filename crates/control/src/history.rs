//! Demand history per VM, keyed by the VM's name: a VM that appears gets a
//! fresh history, one that leaves gives its slot back after a grace period
//! (a VM briefly missing from one observation, mid-migration say, keeps
//! its history), and nobody else's estimates are touched.

use keel_model::Resources;
use keel_policy::balance::demand::{DemandError, DemandTracker, EstimatorConfig};
use std::collections::HashMap;

/// Observations a VM may be missing from before its history is forgotten.
const FORGET_AFTER_OBSERVATIONS: u64 = 10;

#[derive(Debug, Clone, Copy)]
struct Slot {
    index: usize,
    samples: u64,
    last_seen: u64,
    /// The estimate since the last sample (a round estimates each VM for
    /// its plan and again for each check before a wave).
    estimate: Option<Resources>,
}

/// Per-VM demand estimates over a [`DemandTracker`], by VM name.
#[derive(Debug, Clone)]
pub struct DemandHistory {
    tracker: DemandTracker,
    slots: HashMap<String, Slot>,
    free: Vec<usize>,
    observation: u64,
}

impl DemandHistory {
    /// An empty history estimating with `config` (rejected if invalid).
    pub fn new(config: EstimatorConfig) -> Result<Self, DemandError> {
        Ok(Self {
            tracker: DemandTracker::new(0, config)?,
            slots: HashMap::new(),
            free: Vec::new(),
            observation: 0,
        })
    }

    /// The estimator settings.
    pub fn config(&self) -> &EstimatorConfig {
        self.tracker.config()
    }

    /// Records one observation's demand samples, then forgets VMs that have
    /// been missing for [`FORGET_AFTER_OBSERVATIONS`] observations.
    pub fn record<'a>(
        &mut self,
        samples: impl IntoIterator<Item = (&'a str, Resources)>,
    ) -> Result<(), DemandError> {
        self.observation += 1;
        for (vm, sample) in samples {
            let index = match self.slots.get_mut(vm) {
                Some(slot) => {
                    slot.samples += 1;
                    slot.last_seen = self.observation;
                    slot.estimate = None;
                    slot.index
                }
                None => {
                    let index = match self.free.pop() {
                        Some(i) => {
                            self.tracker.reset(i);
                            i
                        }
                        None => {
                            let i = self.tracker.vm_count();
                            self.tracker.resize(i + 1)?;
                            i
                        }
                    };
                    self.slots.insert(
                        vm.to_string(),
                        Slot {
                            index,
                            samples: 1,
                            last_seen: self.observation,
                            estimate: None,
                        },
                    );
                    index
                }
            };
            self.tracker.push(index, sample)?;
        }
        let now = self.observation;
        let free = &mut self.free;
        self.slots.retain(|_, slot| {
            let keep = now - slot.last_seen < FORGET_AFTER_OBSERVATIONS;
            if !keep {
                free.push(slot.index);
            }
            keep
        });
        Ok(())
    }

    /// The estimated demand of `vm`, `None` before its first sample.
    pub fn estimate(&mut self, vm: &str) -> Option<Resources> {
        let slot = self.slots.get_mut(vm)?;
        let index = slot.index;
        let tracker = &mut self.tracker;
        Some(*slot.estimate.get_or_insert_with(|| tracker.estimate(index)))
    }

    /// Samples recorded for `vm` (0 if unknown).
    pub fn samples(&self, vm: &str) -> u64 {
        self.slots.get(vm).map_or(0, |s| s.samples)
    }

    /// VMs with a history.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no VM has a history.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(c: f64) -> Resources {
        Resources::new(c, 1e9, 0.0, 0.0)
    }

    /// The old loop rebuilt every estimate when any VM came or went; here a
    /// newcomer starts afresh and the others keep theirs.
    #[test]
    fn a_vm_arriving_or_leaving_keeps_the_others_estimates() {
        let mut h = DemandHistory::new(EstimatorConfig::default()).unwrap();
        h.record([("a", cpu(4.0)), ("b", cpu(1.0))]).unwrap();
        h.record([("a", cpu(4.0)), ("b", cpu(1.0))]).unwrap();
        let a_before = h.estimate("a").unwrap();
        h.record([("b", cpu(1.0)), ("c", cpu(2.0)), ("a", cpu(4.0))])
            .unwrap();
        assert_eq!(h.estimate("a").unwrap(), a_before);
        assert_eq!(h.samples("a"), 3);
        assert_eq!(h.samples("c"), 1);
        assert_eq!(h.estimate("c").unwrap().cpu_cores, 2.0);
        assert_eq!(h.estimate("nobody"), None);
    }

    #[test]
    fn a_vm_gone_long_enough_is_forgotten_and_its_slot_reused_clean() {
        let mut h = DemandHistory::new(EstimatorConfig::default()).unwrap();
        h.record([("old", cpu(8.0))]).unwrap();
        for _ in 0..FORGET_AFTER_OBSERVATIONS {
            h.record([("keep", cpu(1.0))]).unwrap();
        }
        assert_eq!(h.samples("old"), 0, "forgotten");
        h.record([("keep", cpu(1.0)), ("new", cpu(0.5))]).unwrap();
        assert_eq!(h.estimate("new").unwrap().cpu_cores, 0.5, "no trace of old");
        assert_eq!(h.len(), 2);
    }
}
