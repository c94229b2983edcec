//! Cluster imbalance: how unevenly host loads are spread.
//!
//! Per resource, the standard deviation of host loads (demand / capacity)
//! over the hosts that take part (not in maintenance, with capacity for that
//! resource); combined as a weighted mean over resources. The normalised
//! form divides each resource's coefficient of variation by sqrt(n - 1),
//! its maximum, so it lies in 0..=1 (0 = perfectly even, 1 = one host has
//! everything); Proxmox CRS uses the same normalisation.

use super::load::HostLoads;
use keel_model::{CompiledRules, HostId, Resource, Resources};
use serde::{Deserialize, Serialize};

/// How much each resource counts in the imbalance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceWeights {
    /// CPU weight.
    pub cpu: f64,
    /// Memory weight.
    pub memory: f64,
    /// Disk I/O weight.
    pub disk: f64,
    /// Network weight.
    pub network: f64,
}

impl Default for ResourceWeights {
    /// CPU and memory count fully, disk and network half: they are measured
    /// less reliably and rarely the binding resource on KVM hosts.
    fn default() -> Self {
        Self {
            cpu: 1.0,
            memory: 1.0,
            disk: 0.5,
            network: 0.5,
        }
    }
}

impl ResourceWeights {
    /// The weight of `resource`.
    pub fn get(&self, resource: Resource) -> f64 {
        match resource {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory,
            Resource::Disk => self.disk,
            Resource::Network => self.network,
        }
    }
}

/// Imbalance of a cluster, both forms, plus the per-resource parts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Imbalance {
    /// Weighted mean over resources of the standard deviation of host loads.
    pub std_dev: f64,
    /// Weighted mean of CV / sqrt(n - 1), in 0..=1.
    pub normalized: f64,
    /// Per resource: standard deviation of host loads.
    pub per_resource_std_dev: Resources,
    /// Per resource: mean host load (the seed's L = mean of l_i).
    pub mean_load: Resources,
    /// Per resource: total demand (the seed's R = sum of r_i), in the resource's unit.
    pub total_demand: Resources,
}

/// Running sums for one resource's load statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadMoments {
    /// Hosts counted.
    pub n: usize,
    /// Sum of loads.
    pub sum: f64,
    /// Sum of squared loads.
    pub sum_sq: f64,
}

impl LoadMoments {
    /// Standard deviation (population), 0 for fewer than two hosts.
    pub fn std_dev(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        let n = self.n as f64;
        let mean = self.sum / n;
        (self.sum_sq / n - mean * mean).max(0.0).sqrt()
    }

    /// Mean load.
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum / self.n as f64
        }
    }

    /// CV / sqrt(n - 1), in 0..=1.
    pub fn normalized(&self) -> f64 {
        let mean = self.mean();
        if self.n < 2 || mean <= 0.0 {
            return 0.0;
        }
        (self.std_dev() / mean / ((self.n - 1) as f64).sqrt()).min(1.0)
    }

    /// The moments after one host's load changes from `old` to `new`.
    pub fn replaced(&self, old: f64, new: f64) -> Self {
        Self {
            n: self.n,
            sum: self.sum - old + new,
            sum_sq: self.sum_sq - old * old + new * new,
        }
    }
}

/// Whether `host` takes part in the imbalance of `resource`.
pub fn counts(loads: &HostLoads, rules: &CompiledRules, host: HostId, resource: Resource) -> bool {
    !rules
        .maintenance
        .get(host.index())
        .copied()
        .unwrap_or(false)
        && loads.capacity[host.index()].get(resource) > 0.0
}

/// Per-resource moments over the participating hosts.
pub fn moments(loads: &HostLoads, rules: &CompiledRules) -> [LoadMoments; 4] {
    let mut m = [LoadMoments::default(); 4];
    for h in 0..loads.hosts() {
        let host = HostId(h as u32);
        for (i, r) in Resource::ALL.into_iter().enumerate() {
            if counts(loads, rules, host, r) {
                let l = loads.load_of(host, r);
                m[i].n += 1;
                m[i].sum += l;
                m[i].sum_sq += l * l;
            }
        }
    }
    m
}

/// Combines per-resource moments into the weighted imbalance (std dev form,
/// normalised form). Resources no host has capacity for are left out.
pub fn combine(m: &[LoadMoments; 4], weights: &ResourceWeights) -> (f64, f64) {
    let (mut sd, mut norm, mut total) = (0.0, 0.0, 0.0);
    for (i, r) in Resource::ALL.into_iter().enumerate() {
        if m[i].n == 0 {
            continue;
        }
        let w = weights.get(r);
        sd += w * m[i].std_dev();
        norm += w * m[i].normalized();
        total += w;
    }
    if total > 0.0 {
        (sd / total, norm / total)
    } else {
        (0.0, 0.0)
    }
}

impl Imbalance {
    /// The imbalance of `loads`.
    pub fn of(loads: &HostLoads, weights: &ResourceWeights, rules: &CompiledRules) -> Self {
        let m = moments(loads, rules);
        let (std_dev, normalized) = combine(&m, weights);
        let mut per = Resources::ZERO;
        let mut mean = Resources::ZERO;
        for (i, r) in Resource::ALL.into_iter().enumerate() {
            *per.get_mut(r) = m[i].std_dev();
            *mean.get_mut(r) = m[i].mean();
        }
        Self {
            std_dev,
            normalized,
            per_resource_std_dev: per,
            mean_load: mean,
            total_demand: loads.demand.iter().sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_match_direct_formulas() {
        let loads = [0.2, 0.4, 0.9];
        let m = loads
            .iter()
            .fold(LoadMoments::default(), |m, &l| LoadMoments {
                n: m.n + 1,
                sum: m.sum + l,
                sum_sq: m.sum_sq + l * l,
            });
        let mean = 0.5;
        let sd = ((0.09 + 0.01 + 0.16) / 3.0f64).sqrt();
        assert!((m.mean() - mean).abs() < 1e-12);
        assert!((m.std_dev() - sd).abs() < 1e-12);
        assert!((m.normalized() - sd / mean / 2f64.sqrt()).abs() < 1e-12);
        // All load on one host of n: normalised imbalance 1.
        let one = LoadMoments {
            n: 4,
            sum: 1.0,
            sum_sq: 1.0,
        };
        assert!((one.normalized() - 1.0).abs() < 1e-12);
        let r = m.replaced(0.9, 0.5);
        assert!((r.sum - 1.1).abs() < 1e-12);
    }
}
