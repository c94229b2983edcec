//! Tests of [`super`]: worked examples and properties.

use super::*;
use proptest::prelude::*;

const P90_OF_5: Estimator = Estimator::Percentile {
    percent: 90.0,
    window_samples: 5,
};

#[test]
fn worked_examples() {
    let s = [1.0, 2.0, 3.0, 4.0, 5.0];
    assert_eq!(estimate(&[], &P90_OF_5), 0.0);
    assert_eq!(estimate(&s, &Estimator::Last), 5.0);
    // Rank 0.9 * 4 = 3.6: 4 + 0.6 * (5 - 4).
    assert!((estimate(&s, &P90_OF_5) - 4.6).abs() < 1e-12);
    let median_of_3 = Estimator::Percentile {
        percent: 50.0,
        window_samples: 3,
    };
    assert_eq!(estimate(&[100.0, 9.0, 1.0, 5.0], &median_of_3), 5.0);
    // Half-life 1: alpha = 1/2; 0 -> 0 + (8 - 0) / 2 = 4 -> 4 + (4 - 4) / 2 = 4.
    let ewma = Estimator::Ewma {
        half_life_samples: 1.0,
    };
    assert!((estimate(&[0.0, 8.0, 4.0], &ewma) - 4.0).abs() < 1e-12);
    // The line 1, 2, 3, 4 continued two samples ahead.
    let lr = Estimator::LinearForecast {
        window_samples: 4,
        horizon_samples: 2.0,
    };
    assert!((estimate(&[50.0, 1.0, 2.0, 3.0, 4.0], &lr) - 6.0).abs() < 1e-12);
    // Falling line clamps at 0; two samples fall back to their mean.
    assert_eq!(estimate(&[3.0, 2.0, 1.0], &lr), 0.0);
    assert_eq!(estimate(&[1.0, 3.0], &lr), 2.0);
}

#[test]
fn gaps_are_skipped_not_zeroed() {
    let s = [4.0, f64::NAN, -1.0, f64::INFINITY];
    assert_eq!(estimate(&s, &Estimator::Last), 4.0);
    assert_eq!(estimate(&s, &P90_OF_5), 4.0);
    let lr = Estimator::LinearForecast {
        window_samples: 4,
        horizon_samples: 0.0,
    };
    assert_eq!(estimate(&s, &lr), 4.0);
    assert_eq!(estimate(&[f64::NAN], &Estimator::Last), 0.0);
}

#[test]
fn validation_names_the_resource_and_field() {
    assert_eq!(EstimatorConfig::default().validate(), Ok(()));
    let config = EstimatorConfig {
        disk: Estimator::Percentile {
            percent: 90.0,
            window_samples: 0,
        },
        ..EstimatorConfig::default()
    };
    assert_eq!(
        config.validate(),
        Err(DemandError::InvalidParameter {
            resource: "disk",
            field: "window_samples",
            value: 0.0
        })
    );
    assert!(DemandTracker::new(1, config).is_err());
    let mut t = DemandTracker::new(2, EstimatorConfig::default()).unwrap();
    assert_eq!(
        t.push(2, Resources::ZERO),
        Err(DemandError::UnknownVm {
            vm_index: 2,
            vm_count: 2
        })
    );
    assert_eq!(t.estimate(7), Resources::ZERO);
    assert!(DemandTracker::new(usize::MAX, EstimatorConfig::default()).is_err());
}

fn sample() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => 0.0f64..1e6,
        1 => Just(f64::NAN),
        1 => -10.0f64..0.0,
    ]
}

fn estimator() -> impl Strategy<Value = Estimator> {
    prop_oneof![
        Just(Estimator::Last),
        (0.1f64..50.0).prop_map(|h| Estimator::Ewma {
            half_life_samples: h
        }),
        (0.0f64..=100.0, 1usize..20).prop_map(|(p, w)| Estimator::Percentile {
            percent: p,
            window_samples: w
        }),
        (1usize..20, 0.0f64..30.0).prop_map(|(w, h)| Estimator::LinearForecast {
            window_samples: w,
            horizon_samples: h
        }),
    ]
}

proptest! {
    #[test]
    fn estimates_are_finite_non_negative_and_percentiles_in_range(
        s in proptest::collection::vec(sample(), 0..40),
        e in estimator(),
    ) {
        let v = estimate(&s, &e);
        prop_assert!(v.is_finite() && v >= 0.0);
        if let Estimator::Percentile { window_samples, .. } = e {
            let window = &s[s.len().saturating_sub(window_samples)..];
            let ok: Vec<f64> = window.iter().copied().filter(|x| valid(*x)).collect();
            if !ok.is_empty() {
                let lo = ok.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = ok.iter().copied().fold(0.0, f64::max);
                prop_assert!(lo <= v && v <= hi, "{v} outside [{lo}, {hi}]");
            }
        }
    }

    #[test]
    fn tracker_matches_the_batch_estimate(
        history in proptest::collection::vec(
            (sample(), sample(), sample(), sample())
                .prop_map(|(a, b, c, d)| Resources::new(a, b, c, d)),
            0..40,
        ),
        cpu in estimator(),
        memory in estimator(),
        disk in estimator(),
    ) {
        let config = EstimatorConfig { cpu, memory, disk, network: Estimator::Last };
        let mut t = DemandTracker::new(2, config).unwrap();
        for (i, s) in history.iter().enumerate() {
            t.push(1, *s).unwrap();
            prop_assert_eq!(t.estimate(1), estimate_demand(&history[..=i], &config));
        }
        prop_assert_eq!(t.estimate(0), Resources::ZERO);
    }

    #[test]
    fn any_parameters_give_a_finite_estimate(
        s in proptest::collection::vec(any::<f64>(), 0..30),
        x in any::<f64>(),
        w in any::<usize>(),
    ) {
        for e in [
            Estimator::Ewma { half_life_samples: x },
            Estimator::Percentile { percent: x, window_samples: w },
            Estimator::LinearForecast { window_samples: w, horizon_samples: x },
        ] {
            let v = estimate(&s, &e);
            prop_assert!(v.is_finite() && v >= 0.0, "{e:?} gave {v}");
        }
    }
}
