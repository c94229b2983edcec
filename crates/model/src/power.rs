//! Host power models: watts drawn as a function of CPU utilisation.
//!
//! Keel uses the SPECpower_ssj2008 style: measured watts at 0 %, 10 %, ...,
//! 100 % load, linearly interpolated in between. The arithmetic follows
//! CloudSim 3.0.3's `PowerModelSpecPower` operation for operation, because the
//! PlanetLab benchmark is only reproducible figure for figure that way.

use serde::{Deserialize, Serialize};

/// Why a power model cannot answer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PowerModelError {
    /// Utilisation must lie in 0.0..=1.0.
    #[error("utilisation {0} is outside 0..=1")]
    UtilizationOutOfRange(f64),
}

/// Watts at 0 %, 10 %, ..., 100 % CPU load (11 points), linearly interpolated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerModel {
    /// Human-readable name of the machine the figures were measured on.
    pub name: &'static str,
    /// Power draw in watts at 0 %, 10 %, ..., 100 % utilisation.
    pub watts: [f64; 11],
}

impl PowerModel {
    /// HP ProLiant ML110 G4 (Intel Xeon 3040, 2 cores x 1860 MHz).
    /// Source: SPECpower_ssj2008 results, as used by CloudSim's `PowerModelSpecPowerHpProLiantMl110G4Xeon3040`.
    pub const HP_PROLIANT_ML110_G4: PowerModel = PowerModel {
        name: "HP ProLiant ML110 G4 (Xeon 3040)",
        watts: [
            86.0, 89.4, 92.6, 96.0, 99.5, 102.0, 106.0, 108.0, 112.0, 114.0, 117.0,
        ],
    };

    /// HP ProLiant ML110 G5 (Intel Xeon 3075, 2 cores x 2660 MHz).
    /// Source: SPECpower_ssj2008 results, as used by CloudSim's `PowerModelSpecPowerHpProLiantMl110G5Xeon3075`.
    pub const HP_PROLIANT_ML110_G5: PowerModel = PowerModel {
        name: "HP ProLiant ML110 G5 (Xeon 3075)",
        watts: [
            93.7, 97.0, 101.0, 105.0, 110.0, 116.0, 121.0, 125.0, 129.0, 133.0, 135.0,
        ],
    };

    /// Power draw in watts at `utilization` (0.0..=1.0).
    ///
    /// Same float operations as CloudSim: an exact table point when
    /// `utilization % 0.1 == 0`, else interpolation between floor and ceil.
    // Called per (VM, host) pair in every placement scan, from other crates.
    #[inline]
    pub fn watts_at(&self, utilization: f64) -> Result<f64, PowerModelError> {
        if !(0.0..=1.0).contains(&utilization) {
            return Err(PowerModelError::UtilizationOutOfRange(utilization));
        }
        if is_multiple_of_tenth(utilization) {
            return Ok(self.watts[(utilization * 10.0) as usize]);
        }
        // floor and ceil of a non-negative number, without libm calls.
        let tenths = utilization * 10.0;
        let lower = tenths as usize;
        let upper = if lower as f64 == tenths {
            lower
        } else {
            lower + 1
        };
        let p1 = self.watts[lower];
        let p2 = self.watts[upper];
        let delta = (p2 - p1) / 10.0;
        Ok(p1 + delta * (utilization - lower as f64 / 10.0) * 100.0)
    }

    /// Power draw at full load, watts.
    pub fn max_watts(&self) -> f64 {
        self.watts[10]
    }

    /// Energy in joules (watt-seconds) over `seconds` while utilisation moved
    /// linearly from `from` to `to`; zero when the host was asleep (`from == 0`).
    #[inline]
    pub fn energy_joules(&self, from: f64, to: f64, seconds: f64) -> Result<f64, PowerModelError> {
        if from == 0.0 {
            return Ok(0.0);
        }
        let p_from = self.watts_at(from)?;
        let p_to = self.watts_at(to)?;
        Ok((p_from + (p_to - p_from) / 2.0) * seconds)
    }
}

/// `utilization % 0.1 == 0.0` for a utilisation in 0..=1, without `fmod`.
/// `fmod` is exact, so the remainder is zero only where the utilisation is
/// an exact whole multiple k x 0.1 of the double 0.1 (an odd 52-bit
/// mantissa). Within 0..=1 those products are exact doubles only for k = 0,
/// 1, 2, 4 and 8 (doubling is exact; odd k > 1 needs more than 53 bits), and
/// they are the literals 0.0, 0.1, 0.2, 0.4 and 0.8.
fn is_multiple_of_tenth(utilization: f64) -> bool {
    utilization == 0.0
        || utilization == 0.1
        || utilization == 0.2
        || utilization == 0.4
        || utilization == 0.8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_points_and_interpolation() {
        let g4 = PowerModel::HP_PROLIANT_ML110_G4;
        assert_eq!(g4.watts_at(0.0).unwrap(), 86.0);
        assert_eq!(g4.watts_at(1.0).unwrap(), 117.0);
        let mid = g4.watts_at(0.05).unwrap();
        assert!((mid - 87.7).abs() < 1e-9, "{mid}");
        assert!(g4.watts_at(1.2).is_err());
        assert!(g4.watts_at(-0.1).is_err());
    }

    #[test]
    fn multiple_of_tenth_agrees_with_fmod() {
        for i in 0..=100_000 {
            let u = i as f64 / 100_000.0;
            assert_eq!(is_multiple_of_tenth(u), u % 0.1 == 0.0, "{u}");
        }
        let near = |u: f64, ulps: i64| f64::from_bits((u.to_bits() as i64 + ulps) as u64);
        for k in 0..=10 {
            let tenth = k as f64 / 10.0;
            for u in [tenth, 0.1 * k as f64, near(tenth, -1), near(tenth, 1)] {
                if (0.0..=1.0).contains(&u) {
                    assert_eq!(is_multiple_of_tenth(u), u % 0.1 == 0.0, "{u}");
                }
            }
        }
        for u in [0.1, 0.2, 0.4, 0.8, 0.3, 0.7, 1.0] {
            assert_eq!(is_multiple_of_tenth(u), u % 0.1 == 0.0, "{u}");
        }
    }

    #[test]
    fn asleep_host_uses_no_energy() {
        let g5 = PowerModel::HP_PROLIANT_ML110_G5;
        assert_eq!(g5.energy_joules(0.0, 0.5, 300.0).unwrap(), 0.0);
        let e = g5.energy_joules(1.0, 1.0, 10.0).unwrap();
        assert_eq!(e, 1350.0);
    }
}
