//! Policy names: `npa`, `dvfs` and `DETECTOR-SELECTOR-PARAMETER` such as
//! `lr-mmt-1.2`, as the CLI and config files spell them.

use crate::consolidate::ConsolidationPolicy;
use crate::detect::OverloadDetector;
use crate::select::VmSelector;
use crate::PolicyError;
use std::fmt;
use std::str::FromStr;

const DETECTORS: &str = "thr, iqr, mad, lr, lrr";
const SELECTORS: &str = "mmt, mu, mc, rs";

impl FromStr for ConsolidationPolicy {
    type Err = PolicyError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let lower = name.trim().to_ascii_lowercase();
        let unknown = |reason: String| PolicyError::UnknownPolicy {
            name: name.to_string(),
            reason,
        };
        match lower.as_str() {
            "npa" => return Ok(Self::NonPowerAware),
            "dvfs" => return Ok(Self::Dvfs),
            _ => {}
        }
        let parts: Vec<&str> = lower.splitn(3, '-').collect();
        let [detector, selector, parameter] = parts[..] else {
            return Err(unknown(
                "expected npa, dvfs or DETECTOR-SELECTOR-PARAMETER such as lr-mmt-1.2".into(),
            ));
        };
        let value: f64 = parameter
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                unknown(format!(
                    "parameter {parameter:?} is not a non-negative number"
                ))
            })?;
        let detector = match detector {
            "thr" => OverloadDetector::Threshold(value),
            "iqr" => OverloadDetector::InterQuartileRange(value),
            "mad" => OverloadDetector::MedianAbsoluteDeviation(value),
            "lr" => OverloadDetector::LocalRegression(value),
            "lrr" => OverloadDetector::LocalRegressionRobust(value),
            other => {
                return Err(unknown(format!(
                    "unknown detector {other:?} (one of {DETECTORS})"
                )))
            }
        };
        let selector = match selector {
            "mmt" => VmSelector::MinimumMigrationTime,
            "mu" => VmSelector::MinimumUtilization,
            "mc" => VmSelector::MaximumCorrelation,
            "rs" => VmSelector::RandomSelection,
            other => {
                return Err(unknown(format!(
                    "unknown VM selection {other:?} (one of {SELECTORS})"
                )))
            }
        };
        Ok(Self::Dynamic { detector, selector })
    }
}

impl fmt::Display for ConsolidationPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NonPowerAware => f.write_str("npa"),
            Self::Dvfs => f.write_str("dvfs"),
            Self::Dynamic { detector, selector } => write!(
                f,
                "{}-{}-{}",
                detector.short_name(),
                selector.short_name(),
                format_parameter(detector.parameter())
            ),
        }
    }
}

fn format_parameter(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.1}")
    } else {
        format!("{value}")
    }
}

/// The rows of the paper's comparison table (Beloglazov & Buyya 2012,
/// Table V): NPA, DVFS, THR-MMT-1.0, THR-MMT-0.8, IQR-MMT-1.5, MAD-MMT-2.5,
/// LRR-MMT-1.2 and LR-MMT-1.2.
pub fn paper_policies() -> Vec<ConsolidationPolicy> {
    parse_builtin(&[
        "npa",
        "dvfs",
        "thr-mmt-1.0",
        "thr-mmt-0.8",
        "iqr-mmt-1.5",
        "mad-mmt-2.5",
        "lrr-mmt-1.2",
        "lr-mmt-1.2",
    ])
}

/// Every detector at its paper parameter crossed with every VM selection
/// (the paper's Figure 9 grid), plus NPA, DVFS and THR-MMT-1.0.
pub fn policy_grid() -> Vec<ConsolidationPolicy> {
    let mut names = vec![
        "npa".to_string(),
        "dvfs".to_string(),
        "thr-mmt-1.0".to_string(),
    ];
    for detector in [
        "thr-{}-0.8",
        "iqr-{}-1.5",
        "mad-{}-2.5",
        "lrr-{}-1.2",
        "lr-{}-1.2",
    ] {
        for selector in ["mmt", "mu", "mc", "rs"] {
            names.push(detector.replace("{}", selector));
        }
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    parse_builtin(&names)
}

fn parse_builtin(names: &[&str]) -> Vec<ConsolidationPolicy> {
    names
        .iter()
        .map(|n| n.parse().expect("built-in policy names parse"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in [
            "npa",
            "dvfs",
            "lr-mmt-1.2",
            "thr-mmt-0.8",
            "iqr-mc-1.5",
            "mad-rs-2.5",
            "thr-mu-1.0",
        ] {
            let p: ConsolidationPolicy = name.parse().unwrap();
            assert_eq!(p.to_string(), name);
        }
        assert_eq!(paper_policies().len(), 8);
        assert_eq!(policy_grid().len(), 23);
    }

    #[test]
    fn rejects_unknown_names_with_a_reason() {
        for bad in [
            "",
            "lr",
            "lr-mmt",
            "xx-mmt-1.2",
            "lr-zz-1.2",
            "lr-mmt-abc",
            "lr-mmt--1",
        ] {
            let err = bad.parse::<ConsolidationPolicy>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
