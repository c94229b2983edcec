//! Host-local entitlement: how a host's capacity of one resource is divided
//! among its VMs (vSphere's "divvy").
//!
//! Each consumer states a demand, a reservation (floor), a limit (cap) and
//! shares (weight). With `cap = min(max(demand, reservation), limit)`:
//!
//! - Reservations are guaranteed, and a reservation is a floor of the
//!   *entitlement*, not of the demand: a VM reserving 4 cores while using 1
//!   is entitled to 4 (vSphere's behaviour; reserved capacity is held).
//!   Reservations that do not fit the capacity are an admission-control
//!   error, never a silent shortfall.
//! - No consumer is entitled to more than its `cap`.
//! - Shares weigh the *whole* entitlement, not a bonus on top of the
//!   reservation: there is one water level `L` and each consumer with
//!   positive shares gets `clamp(L * shares, reservation, cap)`, the level
//!   chosen so that the capacity is exactly handed out (or every cap met).
//!   A consumer whose share-proportional amount is below its reservation
//!   sits at the reservation; the others split what remains by shares. This
//!   is share-weighted max-min fairness with floors and caps, and it is
//!   work-conserving: the sum is `min(capacity, sum of caps)`.
//! - Zero shares mean "scavenger": such a consumer gets its reservation,
//!   plus only what is left once every consumer with shares has its cap,
//!   divided max-min fairly with equal weights among the scavengers.
//!
//! The level is found in O(n log n): sort the 2n breakpoints
//! `reservation / shares` and `cap / shares` of the piecewise linear total
//! and binary-search them. Resource pools nest ([`divvy_tree`]).

use keel_model::{Resource, Resources, VmInfo};

/// Deepest nesting of resource pools [`divvy_tree`] accepts.
pub const MAX_POOL_DEPTH: usize = 32;

/// One consumer's claim on one resource, in that resource's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Claim {
    /// Estimated demand (finite, >= 0).
    pub demand: f64,
    /// Guaranteed minimum entitlement (finite, >= 0, <= `limit`).
    pub reservation: f64,
    /// Maximum entitlement (>= 0; `f64::INFINITY` = no limit).
    pub limit: f64,
    /// Relative weight under contention (finite, >= 0; 0 = scavenger).
    pub shares: f64,
}

impl Claim {
    /// A claim with no reservation and no limit.
    pub fn new(demand: f64, shares: f64) -> Self {
        Self {
            demand,
            reservation: 0.0,
            limit: f64::INFINITY,
            shares,
        }
    }

    /// The most the consumer can be entitled to:
    /// `min(max(demand, reservation), limit)`.
    pub fn cap(&self) -> f64 {
        self.demand.max(self.reservation).min(self.limit)
    }
}

/// Why capacity could not be divided. Indices count consumers in the order
/// given (within their pool, see [`EntitlementError::InPool`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EntitlementError {
    /// The capacity is negative, infinite or NaN.
    #[error("invalid capacity {value}")]
    InvalidCapacity {
        /// The value.
        value: f64,
    },
    /// A claim field out of range (negative, NaN, or infinite where not allowed).
    #[error("consumer {index}: invalid {field} {value}")]
    InvalidClaim {
        /// The consumer.
        index: usize,
        /// Which field (`demand`, `reservation`, `limit`, `shares`).
        field: &'static str,
        /// The value.
        value: f64,
    },
    /// A reservation above the limit (for a pool: its reservation raised to
    /// cover its children's).
    #[error("consumer {index} reserves {reservation} but is limited to {limit}")]
    ReservationAboveLimit {
        /// The consumer.
        index: usize,
        /// Its reservation.
        reservation: f64,
        /// Its limit.
        limit: f64,
    },
    /// Admission control: the reservations do not fit the capacity.
    #[error(
        "reservations exceed capacity: consumer {index} brings the total reserved to {reserved_total}, capacity is {capacity}"
    )]
    ReservationsExceedCapacity {
        /// The first consumer at which the running total exceeds the capacity.
        index: usize,
        /// The running total including that consumer.
        reserved_total: f64,
        /// The capacity.
        capacity: f64,
    },
    /// Pools nested deeper than [`MAX_POOL_DEPTH`].
    #[error("pool at {path:?} is nested deeper than {max_depth}")]
    TooDeep {
        /// Child indices from the root to the pool.
        path: Vec<usize>,
        /// The limit.
        max_depth: usize,
    },
    /// An error among the children of a pool.
    #[error("in pool {path:?}: {source}")]
    InPool {
        /// Child indices from the root to the pool.
        path: Vec<usize>,
        /// The error, its index relative to the pool's children.
        source: Box<EntitlementError>,
    },
    /// An error dividing one resource ([`host_entitlements`]).
    #[error("{}: {source}", resource.name())]
    ForResource {
        /// The resource.
        resource: Resource,
        /// The error.
        source: Box<EntitlementError>,
    },
}

fn check_claim(c: &Claim, index: usize) -> Result<(), EntitlementError> {
    let bad = |field, value| {
        Err(EntitlementError::InvalidClaim {
            index,
            field,
            value,
        })
    };
    let amount = |x: f64| x.is_finite() && x >= 0.0;
    if !amount(c.demand) {
        bad("demand", c.demand)
    } else if !amount(c.reservation) {
        bad("reservation", c.reservation)
    } else if c.limit.is_nan() || c.limit < 0.0 {
        bad("limit", c.limit)
    } else if !amount(c.shares) {
        bad("shares", c.shares)
    } else if c.reservation > c.limit {
        Err(EntitlementError::ReservationAboveLimit {
            index,
            reservation: c.reservation,
            limit: c.limit,
        })
    } else {
        Ok(())
    }
}

/// Divides `capacity` among `consumers` (see the module documentation).
/// Returns one entitlement per consumer, in order.
///
/// Worked example: capacity 10, three consumers demanding 8 each with
/// shares 4:2:1 get 40/7, 20/7 and 10/7 (5.71, 2.86, 1.43). A reservation of
/// 4 on the third gives 4, 2, 4. A limit of 2 on the first instead gives 2,
/// 16/3, 8/3 (its excess flows to the others).
pub fn divvy(capacity: f64, consumers: &[Claim]) -> Result<Vec<f64>, EntitlementError> {
    if !(capacity.is_finite() && capacity >= 0.0) {
        return Err(EntitlementError::InvalidCapacity { value: capacity });
    }
    let mut reserved_total = 0.0;
    for (index, c) in consumers.iter().enumerate() {
        check_claim(c, index)?;
        reserved_total += c.reservation;
        if reserved_total > capacity {
            return Err(EntitlementError::ReservationsExceedCapacity {
                index,
                reserved_total,
                capacity,
            });
        }
    }
    let mut out: Vec<f64> = consumers.iter().map(|c| c.reservation).collect();
    let mut breakpoints = Vec::with_capacity(2 * consumers.len());
    let scavengers_reserved: f64 = consumers
        .iter()
        .filter(|c| c.shares == 0.0)
        .fold(0.0, |a, c| a + c.reservation);
    fill(
        capacity - scavengers_reserved,
        consumers,
        |c| c.shares,
        &mut breakpoints,
        &mut out,
    );
    let used = consumers
        .iter()
        .zip(&out)
        .filter(|(c, _)| c.shares > 0.0)
        .fold(0.0, |a, (_, e)| a + e);
    let scavenger = |c: &Claim| if c.shares == 0.0 { 1.0 } else { 0.0 };
    fill(
        capacity - used,
        consumers,
        scavenger,
        &mut breakpoints,
        &mut out,
    );
    Ok(out)
}

/// Water-fills `target` over the consumers with `weight > 0`, setting their
/// `out` to `clamp(level * weight, reservation, cap)` at the level where the
/// total reaches `target` (every cap if the caps fit).
///
/// The total `f(level)` is piecewise linear with breakpoints
/// `reservation / weight` and `cap / weight`. A binary search over the
/// sorted breakpoints, evaluating `f` directly (no running slope, so no
/// cancellation), finds the segment where `f` crosses `target`; there the
/// consumers on their linear part share what the others leave in proportion
/// to their weights (`w / sum of w`, which cannot overflow even where the
/// level itself would).
fn fill(
    target: f64,
    consumers: &[Claim],
    weight: impl Fn(&Claim) -> f64,
    breakpoints: &mut Vec<f64>,
    out: &mut [f64],
) {
    breakpoints.clear();
    let (mut floor_total, mut cap_total) = (0.0, 0.0);
    for c in consumers {
        let w = weight(c);
        if w > 0.0 {
            floor_total += c.reservation;
            cap_total += c.cap();
            breakpoints.push(c.reservation / w);
            breakpoints.push(c.cap() / w);
        }
    }
    let at_level = |level: f64, c: &Claim, w: f64| (level * w).max(c.reservation).min(c.cap());
    let members = consumers.iter().zip(out).filter(|(c, _)| weight(c) > 0.0);
    if cap_total <= target || floor_total >= target {
        let level = if cap_total <= target {
            f64::INFINITY
        } else {
            0.0
        };
        members.for_each(|(c, e)| *e = at_level(level, c, weight(c)));
        return;
    }
    let total_at = |level: f64| {
        consumers
            .iter()
            .map(|c| (c, weight(c)))
            .filter(|&(_, w)| w > 0.0)
            .fold(0.0, |a, (c, w)| a + at_level(level, c, w))
    };
    breakpoints.sort_unstable_by(f64::total_cmp);
    // f(first) = floor_total <= target < cap_total = f(last): find the last
    // breakpoint `lo` with f(lo) <= target; f(next) > target.
    let (mut lo, mut hi) = (0, breakpoints.len() - 1);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if total_at(breakpoints[mid]) <= target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let (lo, hi) = (breakpoints[lo], breakpoints[hi]);
    // Linear on (lo, hi): reservation reached by lo, cap not before hi.
    let linear = |c: &Claim, w: f64| c.reservation / w <= lo && c.cap() / w >= hi;
    let (mut fixed, mut slope) = (0.0, 0.0);
    for c in consumers {
        let w = weight(c);
        if w > 0.0 && linear(c, w) {
            slope += w;
        } else if w > 0.0 {
            fixed += if c.reservation / w >= hi {
                c.reservation
            } else {
                c.cap()
            };
        }
    }
    let share = (target - fixed).max(0.0);
    for (c, e) in members {
        let w = weight(c);
        *e = if linear(c, w) && slope > 0.0 {
            (share * (w / slope)).max(c.reservation).min(c.cap())
        } else if c.reservation / w >= hi {
            c.reservation
        } else {
            c.cap()
        };
    }
}

/// A consumer in a tree of resource pools.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A VM.
    Vm(Claim),
    /// A resource pool. Its demand is the sum of its children's caps; its
    /// reservation is raised to cover its children's reservations (the
    /// children's reservations are always honoured, as with vSphere's
    /// expandable reservations, so a pool never needs one of its own just
    /// to admit its VMs); a limit below that is an error.
    Pool {
        /// The pool's own reservation (>= 0, finite).
        reservation: f64,
        /// The pool's limit (`f64::INFINITY` = none).
        limit: f64,
        /// The pool's shares among its siblings.
        shares: f64,
        /// VMs and pools inside.
        children: Vec<Node>,
    },
}

/// A node's effective claim, with its children's for a pool.
struct Summary {
    claim: Claim,
    pool: Option<Vec<Summary>>,
}

fn in_pool(path: &[usize], e: EntitlementError) -> EntitlementError {
    if path.is_empty() {
        e
    } else {
        EntitlementError::InPool {
            path: path.to_vec(),
            source: Box::new(e),
        }
    }
}

/// Validates `node` (child `index` of the pool at `path`) and aggregates
/// its claim bottom-up.
fn summarize(
    node: &Node,
    index: usize,
    path: &mut Vec<usize>,
) -> Result<Summary, EntitlementError> {
    let (reservation, limit, shares, children) = match node {
        Node::Vm(c) => {
            check_claim(c, index).map_err(|e| in_pool(path, e))?;
            return Ok(Summary {
                claim: *c,
                pool: None,
            });
        }
        Node::Pool {
            reservation,
            limit,
            shares,
            children,
        } => (*reservation, *limit, *shares, children),
    };
    let own = Claim {
        demand: 0.0,
        reservation,
        limit,
        shares,
    };
    check_claim(&own, index).map_err(|e| in_pool(path, e))?;
    path.push(index);
    if path.len() > MAX_POOL_DEPTH {
        return Err(EntitlementError::TooDeep {
            path: path.clone(),
            max_depth: MAX_POOL_DEPTH,
        });
    }
    let kids = children
        .iter()
        .enumerate()
        .map(|(i, c)| summarize(c, i, path))
        .collect::<Result<Vec<_>, _>>()?;
    path.pop();
    // Summed in order, as `divvy` checks them, so they fit exactly.
    let children_reserved = kids.iter().fold(0.0, |a, k| a + k.claim.reservation);
    let reservation = reservation.max(children_reserved);
    if reservation > limit {
        return Err(in_pool(
            path,
            EntitlementError::ReservationAboveLimit {
                index,
                reservation,
                limit,
            },
        ));
    }
    Ok(Summary {
        claim: Claim {
            demand: kids.iter().fold(0.0, |a, k| a + k.claim.cap()),
            reservation,
            limit,
            shares,
        },
        pool: Some(kids),
    })
}

fn allocate(
    capacity: f64,
    nodes: &[Summary],
    path: &mut Vec<usize>,
    out: &mut Vec<f64>,
) -> Result<(), EntitlementError> {
    let claims: Vec<Claim> = nodes.iter().map(|n| n.claim).collect();
    let shares = divvy(capacity, &claims).map_err(|e| in_pool(path, e))?;
    for (i, (node, e)) in nodes.iter().zip(shares).enumerate() {
        match &node.pool {
            None => out.push(e),
            Some(kids) => {
                path.push(i);
                allocate(e, kids, path, out)?;
                path.pop();
            }
        }
    }
    Ok(())
}

/// Divides `capacity` over a tree of pools: each level is a [`divvy`] among
/// siblings of the parent's entitlement. Returns the leaf VMs' entitlements
/// in depth-first order. Capacity a pool holds beyond its children's caps
/// (through its reservation) stays with the pool.
///
/// Worked example: capacity 12; VM `a` (demand 10, shares 1) beside pool
/// `P` (shares 2) holding `b` (demand 10, shares 1) and `c` (demand 2,
/// shares 3). `P` demands 12; `a` gets 4 and `P` 8, of which `c` gets its
/// 2 and `b` the other 6: `[4, 6, 2]`.
pub fn divvy_tree(capacity: f64, root_children: &[Node]) -> Result<Vec<f64>, EntitlementError> {
    let mut path = Vec::new();
    let nodes = root_children
        .iter()
        .enumerate()
        .map(|(i, n)| summarize(n, i, &mut path))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    allocate(capacity, &nodes, &mut path, &mut out)?;
    Ok(out)
}

/// A VM's claims on every resource, with one shares value for all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VmClaim {
    /// Estimated demand (cores, bytes, bytes/s).
    pub demand: Resources,
    /// Reservation.
    pub reservation: Resources,
    /// Limit (`f64::INFINITY` components = none).
    pub limit: Resources,
    /// Shares.
    pub shares: f64,
}

impl VmClaim {
    /// The claims of a cluster VM: its limit, or its size where it has none
    /// (a size of 0 meaning unknown, hence unlimited) — as
    /// [`super::load::effective_demand`] caps demand.
    pub fn from_vm(vm: &VmInfo) -> Self {
        let limit = vm.effective_limit();
        Self {
            demand: vm.demand,
            reservation: vm.reservation,
            limit,
            shares: vm.shares,
        }
    }

    /// The claim on one resource.
    pub fn claim(&self, resource: Resource) -> Claim {
        Claim {
            demand: self.demand.get(resource),
            reservation: self.reservation.get(resource),
            limit: self.limit.get(resource),
            shares: self.shares,
        }
    }
}

/// Each VM's entitlement on a host of `capacity`: [`divvy`] per resource.
pub fn host_entitlements(
    capacity: &Resources,
    vms: &[VmClaim],
) -> Result<Vec<Resources>, EntitlementError> {
    let mut out = vec![Resources::ZERO; vms.len()];
    let mut claims = Vec::with_capacity(vms.len());
    for resource in Resource::ALL {
        claims.clear();
        claims.extend(vms.iter().map(|v| v.claim(resource)));
        let shares =
            divvy(capacity.get(resource), &claims).map_err(|e| EntitlementError::ForResource {
                resource,
                source: Box::new(e),
            })?;
        for (o, e) in out.iter_mut().zip(shares) {
            *o.get_mut(resource) = e;
        }
    }
    Ok(out)
}

/// Host load per resource: the sum of its VMs' entitlements over its
/// capacity (0 where both are 0, infinite where only the capacity is).
pub fn host_load(capacity: &Resources, entitlements: &[Resources]) -> Resources {
    entitlements
        .iter()
        .sum::<Resources>()
        .fraction_of(*capacity)
}

#[cfg(test)]
mod tests;
