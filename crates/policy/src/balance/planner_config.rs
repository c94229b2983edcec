//! Planner settings: the migration threshold level and what it means, the
//! objective's weights, migration cost, concurrency and search width.

use super::cost::MigrationCostModel;
use super::imbalance::ResourceWeights;
use crate::PolicyError;
use serde::{Deserialize, Serialize};

/// Planner settings. Defaults are documented on each field.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlannerConfig {
    /// Migration threshold level, 1 (mandatory moves only) to 5 (most
    /// aggressive), as in vSphere DRS. Default 3.
    pub level: u8,
    /// Per-resource weights of the imbalance.
    pub weights: ResourceWeights,
    /// At most this many moves per plan; 0 = twice the number of hosts, at most 1000.
    pub max_moves: usize,
    /// Load above which a host counts as hot (default 0.85).
    pub hot_threshold: f64,
    /// Weight of the hot-host penalty (default 10).
    pub hot_weight: f64,
    /// Seconds a new placement is expected to last; benefits are held this
    /// long, and a moved VM is not moved again within it (default 3600).
    pub stability_window_seconds: f64,
    /// Objective units (squared load) one second of migration costs (default 0.008).
    pub migration_cost_weight: f64,
    /// Migration time model.
    pub cost_model: MigrationCostModel,
    /// Concurrent migrations per host (default 2).
    pub per_host_concurrency: u32,
    /// Concurrent migrations per cluster (default 8).
    pub per_cluster_concurrency: u32,
    /// Hottest hosts searched for a VM to move, per step (default 4).
    pub source_hosts: usize,
    /// Coolest hosts tried as targets, per step (default 16).
    pub target_hosts: usize,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        Self {
            level: 3,
            weights: ResourceWeights::default(),
            max_moves: 0,
            hot_threshold: 0.85,
            hot_weight: 10.0,
            stability_window_seconds: 3600.0,
            migration_cost_weight: 0.008,
            cost_model: MigrationCostModel::default(),
            per_host_concurrency: 2,
            per_cluster_concurrency: 8,
            source_hosts: 4,
            target_hosts: 16,
        }
    }
}

impl PlannerConfig {
    /// Imbalance (weighted standard deviation of host loads) under which
    /// level `level` stops balancing when no host is hot.
    pub fn target_imbalance(&self) -> f64 {
        match self.level {
            0 | 1 => f64::INFINITY,
            2 => 0.2,
            3 => 0.1,
            4 => 0.05,
            _ => 0.0,
        }
    }

    /// The smallest drop in F (a sum of squared loads) a balancing move must
    /// bring at this level, before its cost. Moving load so that two hosts at
    /// 80 % and 60 % end at 75 % and 65 % gains 0.015.
    pub fn min_gain(&self) -> f64 {
        match self.level {
            0 | 1 => f64::INFINITY,
            2 => 0.02,
            3 => 0.005,
            4 => 0.001,
            _ => 0.0,
        }
    }

    pub(crate) fn move_budget(&self, hosts: usize) -> usize {
        if self.max_moves > 0 {
            self.max_moves
        } else {
            (2 * hosts).clamp(8, 1000)
        }
    }

    pub(crate) fn check(&self) -> Result<(), PolicyError> {
        let bad = |what: &str, value: f64| PolicyError::InvalidSetting {
            setting: what.to_string(),
            value: value.to_string(),
        };
        if !(1..=5).contains(&self.level) {
            return Err(bad("level (1..5)", self.level as f64));
        }
        if self.per_host_concurrency == 0 || self.per_cluster_concurrency == 0 {
            return Err(bad("concurrency (>= 1)", 0.0));
        }
        for (what, v) in [
            ("hot_threshold", self.hot_threshold),
            ("hot_weight", self.hot_weight),
            ("stability_window_seconds", self.stability_window_seconds),
            ("migration_cost_weight", self.migration_cost_weight),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(what, v));
            }
        }
        Ok(())
    }
}
