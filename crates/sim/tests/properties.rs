//! Properties of whole simulated runs on arbitrary small traces.

use keel_model::{VmSeries, WorkloadTrace};
use keel_policy::ConsolidationPolicy;
use keel_sim::{run_observed, scenario, SimConfig, StepRecord};
use proptest::prelude::*;

fn trace_strategy() -> impl Strategy<Value = WorkloadTrace> {
    (1usize..12, 2usize..30).prop_flat_map(|(vms, samples)| {
        proptest::collection::vec(proptest::collection::vec(0u8..=100, samples), vms).prop_map(
            |series| {
                let vms = series
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| VmSeries {
                        name: format!("vm{i}"),
                        cpu_utilization: s.into_iter().map(|v| v as f64 / 100.0).collect(),
                        usage: None,
                    })
                    .collect();
                WorkloadTrace::new(300.0, vms).unwrap()
            },
        )
    })
}

fn policy_strategy() -> impl Strategy<Value = ConsolidationPolicy> {
    prop_oneof![
        Just("npa"),
        Just("dvfs"),
        Just("thr-mmt-0.8"),
        Just("thr-mc-1.0"),
        Just("iqr-mu-1.5"),
        Just("mad-mmt-2.5"),
        Just("lr-rs-1.2"),
        Just("lrr-mc-1.2"),
    ]
    .prop_map(|name| name.parse().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn runs_are_well_formed(trace in trace_strategy(), policy in policy_strategy(), hosts in 1usize..8) {
        let config = SimConfig { hosts, ..SimConfig::planetlab(policy) };
        let mut steps: Vec<StepRecord> = Vec::new();
        let report = run_observed(&trace, &config, &mut steps).unwrap();
        prop_assert!(report.vms <= trace.vms.len());
        prop_assert!(report.energy_kwh >= 0.0 && report.energy_kwh.is_finite());
        for ratio in [report.slatah, report.pdm, report.overall_sla_violation, report.average_sla_violation] {
            prop_assert!((0.0..=1.0).contains(&ratio), "ratio {ratio} out of 0..=1 in {report:?}");
        }
        // Steps every interval from 300.1 s, until the trace ends.
        let expected_steps = ((trace.duration_seconds() - scenario::START_SECONDS) / 300.0).floor() as usize;
        prop_assert_eq!(steps.len(), expected_steps);
        let started: u64 = steps.iter().map(|s| s.migrations_started as u64).sum();
        prop_assert_eq!(started, report.migrations);
        prop_assert!(steps.windows(2).all(|w| w[1].energy_kwh >= w[0].energy_kwh));
        if matches!(policy, ConsolidationPolicy::NonPowerAware) {
            // Every host at full power for the whole run.
            let watts: f64 = (0..hosts).map(|i| scenario::host_spec(i).power.max_watts()).sum();
            let seconds = steps.last().map_or(0.0, |s| s.time_seconds);
            let expected = watts * seconds / 3.6e6;
            prop_assert!((report.energy_kwh - expected).abs() <= 1e-9 * expected.max(1.0));
        }
        if !matches!(policy, ConsolidationPolicy::Dynamic { .. }) {
            prop_assert_eq!(report.migrations, 0);
        }
    }
}
