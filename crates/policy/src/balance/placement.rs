//! Initial placement of a new VM: filters (hard rules), then a score (the
//! planner's objective after adding the VM, plus soft-rule penalties).
//! Filters say why a host is out, so an operator can see why a VM did not
//! land where they expected.

use super::constraints::{Constraints, Refusal};
use super::load::{effective_demand, HostLoads};
use super::objective::{Objective, ObjectiveWeights};
use super::planner::PlannerConfig;
use keel_model::{Cluster, ClusterSnapshot, HostId, Rules, VmId, VmInfo};
use serde::Serialize;

/// Why a new VM cannot be placed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// The cluster or rules are invalid with the new VM in them.
    #[error("{0}")]
    Invalid(String),
    /// Every host is filtered out; one reason per host.
    #[error("no host can take VM {vm:?}: {}", summary(.refusals))]
    NoHost {
        /// The VM.
        vm: String,
        /// Per host name: why not.
        refusals: Vec<(String, String)>,
    },
}

fn summary(refusals: &[(String, String)]) -> String {
    refusals
        .iter()
        .take(5)
        .map(|(h, why)| format!("{h}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
        + if refusals.len() > 5 { "; ..." } else { "" }
}

/// A host that passed the filters, with its score (lower is better).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The host.
    pub host: HostId,
    /// Objective after placement plus soft penalties.
    pub score: f64,
}

/// Where to start `vm` (its `host` field is ignored), given `rules` that may
/// name it. Returns the chosen host and every candidate, best first.
pub fn place_new_vm(
    snapshot: &ClusterSnapshot,
    rules: &Rules,
    vm: &VmInfo,
    config: &PlannerConfig,
) -> Result<(HostId, Vec<Candidate>), PlacementError> {
    let first_host = snapshot
        .hosts
        .iter()
        .find(|h| !h.maintenance)
        .or(snapshot.hosts.first())
        .ok_or_else(|| PlacementError::Invalid("the cluster has no host".into()))?;
    // The new VM joins the cluster on a provisional host; its own demand is
    // then moved out of that host's sums so that every host is judged as if
    // the VM were arriving from outside.
    let mut with_vm = snapshot.clone();
    let mut new_vm = vm.clone();
    new_vm.host = first_host.name.clone();
    with_vm.vms.push(new_vm);
    let cluster = Cluster::new(with_vm).map_err(|e| PlacementError::Invalid(e.to_string()))?;
    let compiled = rules
        .compile(&cluster)
        .map_err(|e| PlacementError::Invalid(e.to_string()))?;
    let id = VmId((cluster.vms.len() - 1) as u32);
    let provisional = cluster.host_of(id);
    let mut loads = HostLoads::new(&cluster);
    let demand = effective_demand(vm);
    loads.demand[provisional.index()] -= demand;
    loads.size[provisional.index()] -= vm.size;
    let constraints = Constraints::new(&cluster, &compiled, &[]);
    let objective = Objective::new(
        &loads,
        &compiled,
        ObjectiveWeights {
            resources: config.weights,
            hot_threshold: config.hot_threshold,
            hot_weight: config.hot_weight,
        },
    );
    // Affinity: the VM must join its group where the group runs.
    let group_host: Option<HostId> = compiled.affinity_of[id.index()].and_then(|g| {
        compiled.affinity_groups[g]
            .iter()
            .find(|&&m| m != id)
            .map(|&m| cluster.host_of(m))
    });
    let mut refusals = Vec::new();
    let mut candidates = Vec::new();
    for h in 0..cluster.hosts.len() {
        let host = HostId(h as u32);
        let name = cluster.hosts[h].name.clone();
        if group_host.is_some_and(|g| g != host) {
            refusals.push((name, "its affinity group runs elsewhere".to_string()));
            continue;
        }
        // The provisional host holds the VM in `placement`: anti-affinity
        // counts there include the VM itself, which `check` discounts.
        match constraints.check(&loads, &[id], demand, vm.size, host) {
            Ok(()) => {
                let score = objective.evaluate_arrival(&loads, host, demand).value
                    + compiled.soft_penalty(id, host) * 0.01;
                candidates.push(Candidate { host, score });
            }
            Err(refusal) => refusals.push((name, describe(&refusal, &compiled))),
        }
    }
    candidates.sort_by(|a, b| a.score.total_cmp(&b.score).then(a.host.cmp(&b.host)));
    match candidates.first() {
        Some(best) => Ok((best.host, candidates)),
        None => Err(PlacementError::NoHost {
            vm: vm.name.clone(),
            refusals,
        }),
    }
}

fn describe(refusal: &Refusal, rules: &keel_model::CompiledRules) -> String {
    refusal.describe(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_model::rules::{VmGroupRule, VmHostKind, VmHostRule};
    use keel_model::{HostInfo, Resources};

    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

    fn host(name: &str, used_cores: f64) -> (HostInfo, VmInfo) {
        (
            HostInfo {
                name: name.into(),
                capacity: Resources::new(16.0, 64.0 * GIB, 0.0, 0.0),
                maintenance: false,
            },
            vm(&format!("{name}-vm"), name, used_cores),
        )
    }

    fn vm(name: &str, host: &str, cores: f64) -> VmInfo {
        VmInfo::new(
            name,
            host,
            Resources::new(cores.max(1.0), 4.0 * GIB, 0.0, 0.0),
            Resources::new(cores, 2.0 * GIB, 0.0, 0.0),
        )
    }

    fn snapshot() -> ClusterSnapshot {
        let (h0, v0) = host("h0", 8.0);
        let (h1, v1) = host("h1", 2.0);
        let (h2, v2) = host("h2", 4.0);
        ClusterSnapshot {
            time_seconds: 0.0,
            hosts: vec![h0, h1, h2],
            vms: vec![v0, v1, v2],
        }
    }

    #[test]
    fn goes_to_the_least_loaded_host_that_the_rules_allow() {
        let new = vm("new", "", 4.0);
        let config = PlannerConfig::default();
        let (host, _) = place_new_vm(&snapshot(), &Rules::default(), &new, &config).unwrap();
        assert_eq!(host, HostId(1));
        let rules = Rules {
            vm_host: vec![VmHostRule {
                name: "not-h1".into(),
                vms: vec!["new".into()],
                hosts: vec!["h1".into()],
                kind: VmHostKind::MustNot,
                weight: 1.0,
            }],
            anti_affinity: vec![VmGroupRule {
                name: "apart".into(),
                vms: vec!["new".into(), "h2-vm".into()],
            }],
            ..Rules::default()
        };
        let (host, candidates) = place_new_vm(&snapshot(), &rules, &new, &config).unwrap();
        assert_eq!(host, HostId(0));
        assert_eq!(candidates.len(), 1);
        let together = Rules {
            affinity: vec![VmGroupRule {
                name: "with-h2".into(),
                vms: vec!["new".into(), "h2-vm".into()],
            }],
            ..Rules::default()
        };
        assert_eq!(
            place_new_vm(&snapshot(), &together, &new, &config)
                .unwrap()
                .0,
            HostId(2)
        );
    }

    #[test]
    fn says_why_no_host_fits() {
        let huge = vm("huge", "", 40.0);
        let err = place_new_vm(
            &snapshot(),
            &Rules::default(),
            &huge,
            &PlannerConfig::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("no host can take VM \"huge\"") && text.contains("not enough cpu"),
            "{text}"
        );
    }
}
