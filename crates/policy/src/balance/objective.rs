//! What the planner minimises: the weighted imbalance plus a penalty for hot
//! hosts, evaluated incrementally for a candidate move.
//!
//! F = spread + hot_weight x sum over hosts and resources of
//! weight x max(0, load - hot_threshold)^2, where spread is the weighted mean
//! over resources of the sum over hosts of (load - mean load)^2. Both terms
//! are sums over hosts of squared loads, so one move changes F by an amount
//! that does not shrink as the cluster grows (a standard deviation does, as
//! 1/n): the same cost weight and level thresholds serve 5 hosts and 10,000.
//! The spread term evens load out; the hot term makes the planner empty
//! hosts above the threshold first (an even cluster can have every host at 99 %).

use super::imbalance::{combine, counts, moments, LoadMoments, ResourceWeights};
use super::load::HostLoads;
use keel_model::{CompiledRules, HostId, Resource, Resources};

/// Objective parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectiveWeights {
    /// Per-resource weights.
    pub resources: ResourceWeights,
    /// Load above which a host is hot (fraction of capacity).
    pub hot_threshold: f64,
    /// Weight of the hot-host penalty relative to imbalance.
    pub hot_weight: f64,
}

/// The objective's running state for one plan.
#[derive(Debug, Clone)]
pub struct Objective {
    weights: ObjectiveWeights,
    moments: [LoadMoments; 4],
    hot: f64,
    participates: Vec<[bool; 4]>,
}

impl Objective {
    /// The objective of `loads`.
    pub fn new(loads: &HostLoads, rules: &CompiledRules, weights: ObjectiveWeights) -> Self {
        let participates: Vec<[bool; 4]> = (0..loads.hosts())
            .map(|h| Resource::ALL.map(|r| counts(loads, rules, HostId(h as u32), r)))
            .collect();
        let mut this = Self {
            weights,
            moments: moments(loads, rules),
            hot: 0.0,
            participates,
        };
        this.hot = (0..loads.hosts())
            .map(|h| this.host_hot(&loads.load(HostId(h as u32)), h))
            .sum();
        this
    }

    fn host_hot(&self, load: &Resources, host: usize) -> f64 {
        let mut hot = 0.0;
        for (i, r) in Resource::ALL.into_iter().enumerate() {
            if self.participates[host][i] {
                let excess = (load.get(r) - self.weights.hot_threshold).max(0.0);
                hot += self.weights.resources.get(r) * excess * excess;
            }
        }
        hot
    }

    /// Current value of F.
    pub fn value(&self) -> f64 {
        spread(&self.moments, &self.weights.resources) + self.weights.hot_weight * self.hot
    }

    /// The std-dev imbalance alone.
    pub fn imbalance(&self) -> f64 {
        combine(&self.moments, &self.weights.resources).0
    }

    /// The normalised imbalance alone.
    pub fn normalized_imbalance(&self) -> f64 {
        combine(&self.moments, &self.weights.resources).1
    }

    /// F and imbalance if `demand` moved from `from` to `to`, without moving it.
    pub fn evaluate(
        &self,
        loads: &HostLoads,
        from: HostId,
        to: HostId,
        demand: Resources,
    ) -> Evaluation {
        let (f, t) = (from.index(), to.index());
        let old_from = loads.load(from);
        let old_to = loads.load(to);
        let new_from = (loads.demand[f] - demand).fraction_of(loads.capacity[f]);
        let new_to = (loads.demand[t] + demand).fraction_of(loads.capacity[t]);
        let mut m = self.moments;
        for (i, r) in Resource::ALL.into_iter().enumerate() {
            if self.participates[f][i] {
                m[i] = m[i].replaced(old_from.get(r), new_from.get(r));
            }
            if self.participates[t][i] {
                m[i] = m[i].replaced(old_to.get(r), new_to.get(r));
            }
        }
        let hot = self.hot - self.host_hot(&old_from, f) - self.host_hot(&old_to, t)
            + self.host_hot(&new_from, f)
            + self.host_hot(&new_to, t);
        Evaluation {
            value: spread(&m, &self.weights.resources) + self.weights.hot_weight * hot,
            moments: m,
            hot,
        }
    }

    /// F and imbalance if `host`'s demand grew by `delta` (a VM arriving
    /// from outside the cluster).
    pub fn evaluate_arrival(
        &self,
        loads: &HostLoads,
        host: HostId,
        delta: Resources,
    ) -> Evaluation {
        let h = host.index();
        let old = loads.load(host);
        let new = (loads.demand[h] + delta).fraction_of(loads.capacity[h]);
        let mut m = self.moments;
        for (i, r) in Resource::ALL.into_iter().enumerate() {
            if self.participates[h][i] {
                m[i] = m[i].replaced(old.get(r), new.get(r));
            }
        }
        let hot = self.hot - self.host_hot(&old, h) + self.host_hot(&new, h);
        Evaluation {
            value: spread(&m, &self.weights.resources) + self.weights.hot_weight * hot,
            moments: m,
            hot,
        }
    }

    /// Takes a move evaluated by [`Self::evaluate`].
    pub fn commit(&mut self, evaluation: &Evaluation) {
        self.moments = evaluation.moments;
        self.hot = evaluation.hot;
    }

    /// A host's contribution to the hot penalty (used to pick sources).
    pub fn host_heat(&self, loads: &HostLoads, host: HostId) -> f64 {
        self.host_hot(&loads.load(host), host.index())
    }

    /// Weighted load of a host (used to rank sources and targets).
    pub fn weighted_load(&self, loads: &HostLoads, host: HostId) -> f64 {
        let l = loads.load(host);
        let (mut sum, mut total) = (0.0, 0.0);
        for (i, r) in Resource::ALL.into_iter().enumerate() {
            if self.participates[host.index()][i] {
                let w = self.weights.resources.get(r);
                sum += w * l.get(r).min(10.0);
                total += w;
            }
        }
        if total > 0.0 {
            sum / total
        } else {
            0.0
        }
    }
}

/// Weighted mean over resources of the sum of squared deviations of host
/// loads from their mean (n times the variance).
fn spread(m: &[LoadMoments; 4], weights: &super::imbalance::ResourceWeights) -> f64 {
    let (mut sum, mut total) = (0.0, 0.0);
    for (i, r) in Resource::ALL.into_iter().enumerate() {
        if m[i].n == 0 {
            continue;
        }
        let w = weights.get(r);
        let n = m[i].n as f64;
        sum += w * (m[i].sum_sq - m[i].sum * m[i].sum / n).max(0.0);
        total += w;
    }
    if total > 0.0 {
        sum / total
    } else {
        0.0
    }
}

/// The outcome of a candidate move.
#[derive(Debug, Clone, Copy)]
pub struct Evaluation {
    /// F after the move.
    pub value: f64,
    moments: [LoadMoments; 4],
    hot: f64,
}
