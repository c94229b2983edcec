//! Multi-resource vectors: CPU, memory, disk I/O and network, with units.

use serde::{Deserialize, Serialize};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul, Sub, SubAssign};

/// One of the four resources Keel balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// CPU, in cores.
    Cpu,
    /// Memory, in bytes.
    Memory,
    /// Disk I/O, in bytes per second (read + write).
    Disk,
    /// Network, in bytes per second (received + transmitted).
    Network,
}

impl Resource {
    /// Every resource, in vector order.
    pub const ALL: [Resource; 4] = [
        Resource::Cpu,
        Resource::Memory,
        Resource::Disk,
        Resource::Network,
    ];

    /// Lower-case name (`cpu`, `memory`, `disk`, `network`).
    pub fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::Disk => "disk",
            Resource::Network => "network",
        }
    }
}

/// An amount of each resource. `Copy`, and adds, subtracts and sums like a vector.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Resources {
    /// CPU, cores (one fully busy core = 1.0).
    pub cpu_cores: f64,
    /// Memory, bytes.
    pub memory_bytes: f64,
    /// Disk I/O, bytes per second.
    pub disk_bytes_per_second: f64,
    /// Network I/O, bytes per second.
    pub network_bytes_per_second: f64,
}

impl Resources {
    /// Nothing of anything.
    pub const ZERO: Resources = Resources {
        cpu_cores: 0.0,
        memory_bytes: 0.0,
        disk_bytes_per_second: 0.0,
        network_bytes_per_second: 0.0,
    };

    /// A vector from its four components in [`Resource::ALL`] order.
    pub const fn new(
        cpu_cores: f64,
        memory_bytes: f64,
        disk_bytes_per_second: f64,
        network_bytes_per_second: f64,
    ) -> Self {
        Self {
            cpu_cores,
            memory_bytes,
            disk_bytes_per_second,
            network_bytes_per_second,
        }
    }

    /// The amount of `resource`.
    pub fn get(&self, resource: Resource) -> f64 {
        match resource {
            Resource::Cpu => self.cpu_cores,
            Resource::Memory => self.memory_bytes,
            Resource::Disk => self.disk_bytes_per_second,
            Resource::Network => self.network_bytes_per_second,
        }
    }

    /// A mutable reference to the amount of `resource`.
    pub fn get_mut(&mut self, resource: Resource) -> &mut f64 {
        match resource {
            Resource::Cpu => &mut self.cpu_cores,
            Resource::Memory => &mut self.memory_bytes,
            Resource::Disk => &mut self.disk_bytes_per_second,
            Resource::Network => &mut self.network_bytes_per_second,
        }
    }

    /// Applies `f` to each component.
    pub fn map(self, mut f: impl FnMut(Resource, f64) -> f64) -> Self {
        let mut out = self;
        for r in Resource::ALL {
            *out.get_mut(r) = f(r, self.get(r));
        }
        out
    }

    /// Combines two vectors component by component.
    pub fn zip(self, other: Self, mut f: impl FnMut(Resource, f64, f64) -> f64) -> Self {
        self.map(|r, a| f(r, a, other.get(r)))
    }

    /// Component-wise ratio `self / capacity`; 0 where the capacity is 0 and
    /// so is the amount, infinite where only the capacity is 0.
    pub fn fraction_of(self, capacity: Self) -> Self {
        self.zip(capacity, |_, a, c| {
            if c > 0.0 {
                a / c
            } else if a > 0.0 {
                f64::INFINITY
            } else {
                0.0
            }
        })
    }

    /// Whether every component is at most `other`'s (with `tolerance` slack).
    pub fn fits_within(&self, other: &Self, tolerance: f64) -> bool {
        Resource::ALL
            .iter()
            .all(|&r| self.get(r) <= other.get(r) + tolerance * other.get(r).abs().max(1.0))
    }

    /// Component-wise maximum.
    pub fn max(self, other: Self) -> Self {
        self.zip(other, |_, a, b| a.max(b))
    }

    /// Component-wise minimum.
    pub fn min(self, other: Self) -> Self {
        self.zip(other, |_, a, b| a.min(b))
    }

    /// Whether every component is finite and non-negative.
    pub fn is_valid_amount(&self) -> bool {
        Resource::ALL
            .iter()
            .all(|&r| self.get(r).is_finite() && self.get(r) >= 0.0)
    }

    /// The first component that is negative or not finite, if any.
    pub fn first_invalid(&self) -> Option<(Resource, f64)> {
        Resource::ALL
            .iter()
            .map(|&r| (r, self.get(r)))
            .find(|(_, v)| !(v.is_finite() && *v >= 0.0))
    }
}

impl Add for Resources {
    type Output = Resources;
    fn add(self, rhs: Self) -> Self {
        self.zip(rhs, |_, a, b| a + b)
    }
}

impl Sub for Resources {
    type Output = Resources;
    fn sub(self, rhs: Self) -> Self {
        self.zip(rhs, |_, a, b| a - b)
    }
}

impl AddAssign for Resources {
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}

impl SubAssign for Resources {
    fn sub_assign(&mut self, rhs: Self) {
        *self = *self - rhs;
    }
}

impl Mul<f64> for Resources {
    type Output = Resources;
    fn mul(self, k: f64) -> Self {
        self.map(|_, a| a * k)
    }
}

impl Sum for Resources {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Resources::ZERO, Add::add)
    }
}

impl<'a> Sum<&'a Resources> for Resources {
    fn sum<I: Iterator<Item = &'a Self>>(iter: I) -> Self {
        iter.copied().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_arithmetic_and_fractions() {
        let a = Resources::new(2.0, 4.0e9, 1.0e6, 0.0);
        let b = Resources::new(1.0, 1.0e9, 0.0, 5.0);
        assert_eq!(a + b - b, a);
        assert_eq!([a, b].iter().sum::<Resources>(), a + b);
        let f = a.fraction_of(Resources::new(4.0, 8.0e9, 0.0, 10.0));
        assert_eq!(f.cpu_cores, 0.5);
        assert_eq!(f.memory_bytes, 0.5);
        assert_eq!(f.disk_bytes_per_second, f64::INFINITY);
        assert_eq!(f.network_bytes_per_second, 0.0);
        assert!(b.fits_within(&a.max(b), 0.0));
        assert_eq!(
            Resources::new(1.0, -1.0, 0.0, 0.0).first_invalid(),
            Some((Resource::Memory, -1.0))
        );
    }
}
