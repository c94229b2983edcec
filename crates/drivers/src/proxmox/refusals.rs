//! What Proxmox VE refused, remembered so the planner does not propose it
//! again: per guest, the nodes it may not go to (or none at all) and why,
//! until the guest's config changes (its `digest`, pve-guest-common's
//! config digest as `GET /nodes/{node}/{qemu|lxc}/{vmid}/config` returns
//! it) or the guest leaves the cluster. The planner sees them as rules
//! (a pin, `vm_host` must not), see `rules.rs`.

use super::migrate::{Refusal, Refused};
use super::observe::Guest;
use keel_model::rules::VmHostRule;
use keel_model::VmHostKind;
use std::collections::{BTreeMap, HashMap};

/// Everything refused for one guest.
#[derive(Debug, Clone, Default, PartialEq)]
struct Record {
    /// The config digest when refused (`None`: unreadable, kept until the
    /// guest leaves).
    digest: Option<String>,
    everywhere: Option<String>,
    /// node -> (reason, whether the HA stack refused it)
    nodes: BTreeMap<String, (String, bool)>,
}

/// The refusals of the cluster.
#[derive(Debug, Clone, Default)]
pub(crate) struct Refusals {
    by_guest: BTreeMap<u64, Record>,
}

impl Refusals {
    /// Remembers `refusal` of a guest whose config digest is `digest`; a
    /// new digest forgets what was refused under the old one.
    pub(crate) fn record(&mut self, refusal: Refusal, digest: Option<String>) {
        let record = self.by_guest.entry(refusal.vmid).or_default();
        if record.digest != digest {
            *record = Record {
                digest,
                ..Record::default()
            };
        }
        match refusal.targets {
            Refused::Everywhere => record.everywhere = Some(refusal.reason),
            Refused::Nodes(nodes) => {
                for n in nodes {
                    record
                        .nodes
                        .insert(n, (refusal.reason.clone(), refusal.by_ha));
                }
            }
        }
    }

    /// Guests with refusals, with the digest they were refused at.
    pub(crate) fn guests(&self) -> Vec<(u64, Option<String>)> {
        self.by_guest
            .iter()
            .map(|(id, r)| (*id, r.digest.clone()))
            .collect()
    }

    /// Forgets a guest (its config changed, or it is gone).
    pub(crate) fn forget(&mut self, vmid: u64) {
        self.by_guest.remove(&vmid);
    }

    /// Forgets what the HA stack refused (its rules changed).
    pub(crate) fn forget_ha(&mut self) {
        for r in self.by_guest.values_mut() {
            r.nodes.retain(|_, (_, by_ha)| !*by_ha);
        }
        self.by_guest
            .retain(|_, r| r.everywhere.is_some() || !r.nodes.is_empty());
    }

    /// Keeps only guests still in `present`.
    pub(crate) fn retain_present(&mut self, present: &HashMap<u64, Guest>) {
        self.by_guest.retain(|id, _| present.contains_key(id));
    }

    /// Guests refused everywhere, with the reason.
    pub(crate) fn everywhere(&self) -> BTreeMap<u64, String> {
        self.by_guest
            .iter()
            .filter_map(|(id, r)| r.everywhere.clone().map(|why| (*id, why)))
            .collect()
    }

    /// Whether moving `vmid` to `node` was refused.
    pub(crate) fn refuses(&self, vmid: u64, node: &str) -> Option<&str> {
        let r = self.by_guest.get(&vmid)?;
        r.everywhere
            .as_deref()
            .or_else(|| r.nodes.get(node).map(|(why, _)| why.as_str()))
    }

    /// `vm_host` must-not rules for the refused nodes of running guests
    /// (nodes in `online` only, so the rules compile).
    pub(crate) fn must_not_rules(&self, running: &[&Guest], online: &[String]) -> Vec<VmHostRule> {
        let mut out = Vec::new();
        for (vmid, r) in &self.by_guest {
            if r.everywhere.is_some() || !running.iter().any(|g| g.vmid == *vmid) {
                continue;
            }
            let hosts: Vec<String> = r
                .nodes
                .keys()
                .filter(|n| online.contains(n))
                .cloned()
                .collect();
            if hosts.is_empty() {
                continue;
            }
            let mut why: Vec<&str> = r.nodes.values().map(|(w, _)| w.as_str()).collect();
            why.dedup();
            out.push(VmHostRule {
                name: format!("proxmox: refused by Proxmox VE ({})", why.join("; ")),
                vms: vec![vmid.to_string()],
                hosts,
                kind: VmHostKind::MustNot,
                weight: 1.0,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(vmid: u64, targets: Refused, reason: &str) -> Refusal {
        Refusal {
            vmid,
            targets,
            reason: reason.into(),
            by_ha: reason == "ha",
        }
    }

    #[test]
    fn refusals_last_until_the_digest_changes() {
        let mut r = Refusals::default();
        r.record(
            refusal(100, Refused::Nodes(vec!["b".into()]), "storage"),
            Some("d1".into()),
        );
        r.record(
            refusal(100, Refused::Nodes(vec!["c".into()]), "replication"),
            Some("d1".into()),
        );
        assert_eq!(r.refuses(100, "b"), Some("storage"));
        assert_eq!(r.refuses(100, "c"), Some("replication"));
        assert_eq!(r.refuses(100, "a"), None);
        r.record(
            refusal(100, Refused::Everywhere, "hostpci0"),
            Some("d2".into()),
        );
        assert_eq!(r.refuses(100, "b"), Some("hostpci0"));
        assert_eq!(r.everywhere().len(), 1);
        r.forget(100);
        assert_eq!(r.refuses(100, "b"), None);
        r.record(refusal(101, Refused::Nodes(vec!["b".into()]), "ha"), None);
        r.record(refusal(101, Refused::Nodes(vec!["c".into()]), "disk"), None);
        r.forget_ha();
        assert_eq!(r.refuses(101, "b"), None);
        assert_eq!(r.refuses(101, "c"), Some("disk"));
    }
}
