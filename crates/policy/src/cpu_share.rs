//! Time-shared CPU allocation with oversubscription: how one host divides its
//! MIPS among the VMs on it.
//!
//! This is the host-local entitlement of the PlanetLab benchmark, written to
//! match CloudSim 3.0.3's `VmSchedulerTimeSharedOverSubscription` operation for
//! operation (allocation order, the float subtraction that decides
//! oversubscription, the floor after proportional scaling), because the
//! benchmark's figures depend on those exact values:
//!
//! - a VM's per-core request is capped at the host's core MIPS;
//! - a VM migrating in reserves 10 % of its request here; a VM migrating out
//!   gets 90 % of its request (10 % degradation during migration);
//! - VMs are served in the order they were allocated while the free MIPS last;
//!   as soon as one does not fit, every VM is scaled by capacity / total
//!   request and floored.

use crate::cluster::VmIndex;

/// The order in which a host walks its VMs' shares when it re-serves them
/// after a VM leaves and when it sums requests to scale them.
///
/// The order changes nothing but float rounding, and rounding decides
/// whether a host exactly at capacity counts as oversubscribed (and so
/// whether every VM on it loses a floored MIPS). CloudSim keeps the shares in
/// a `java.util.HashMap` keyed by `"<owner id>-<vm id>"`; reproducing its
/// iteration order reproduces its figures on packed hosts (THR-1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShareOrder {
    /// The order the shares were created in.
    #[default]
    Insertion,
    /// `java.util.HashMap<String, _>` iteration order for keys
    /// `"<owner_id>-<vm index>"`.
    JavaHashMap {
        /// CloudSim's user (broker) id in the key.
        owner_id: u32,
    },
}

/// One VM's request and allocation on this host.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Share {
    vm: VmIndex,
    /// Creation sequence number (order within a hash bucket).
    seq: u64,
    /// Spread hash of the share's key (0 in insertion order).
    hash: u32,
    /// Requested MIPS, uncapped.
    requested_mips: f64,
    /// Allocated MIPS.
    allocated_mips: f64,
}

/// The CPU scheduler of one host.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuShare {
    total_mips: f64,
    core_mips: f64,
    shares: Vec<Share>,
    available_mips: f64,
    migrating_in: Vec<VmIndex>,
    order: ShareOrder,
    /// Capacity of the emulated hash table (it grows, never shrinks).
    table_capacity: usize,
    next_seq: u64,
    /// Whether the free MIPS are already what a what-if probe would leave
    /// (shares re-served in walk order since the last change).
    probe_settled: bool,
    /// VMs seen migrating out of this host. Like CloudSim, an entry stays
    /// until the VM is next allocated here while not migrating, even after the
    /// VM has left: a VM that later migrates back in is then served at 90 %.
    /// (Over a day a host collects hundreds of them, hence a set of bits.)
    migrating_out: VmBits,
}

/// A set of VM indices, one bit each; equality ignores trailing zero words.
#[derive(Debug, Clone, Default)]
struct VmBits {
    words: Vec<u64>,
}

impl PartialEq for VmBits {
    fn eq(&self, other: &Self) -> bool {
        let (short, long) = if self.words.len() <= other.words.len() {
            (&self.words, &other.words)
        } else {
            (&other.words, &self.words)
        };
        long[..short.len()] == short[..] && long[short.len()..].iter().all(|&w| w == 0)
    }
}

impl VmBits {
    fn contains(&self, vm: VmIndex) -> bool {
        self.words
            .get(vm / 64)
            .is_some_and(|w| w & (1 << (vm % 64)) != 0)
    }

    fn insert(&mut self, vm: VmIndex) {
        if self.words.len() <= vm / 64 {
            self.words.resize(vm / 64 + 1, 0);
        }
        self.words[vm / 64] |= 1 << (vm % 64);
    }

    fn remove(&mut self, vm: VmIndex) {
        if let Some(w) = self.words.get_mut(vm / 64) {
            *w &= !(1 << (vm % 64));
        }
    }
}

impl CpuShare {
    /// An idle scheduler for a host of `total_mips` made of cores of `core_mips`.
    pub fn new(total_mips: f64, core_mips: f64) -> Self {
        Self::with_order(total_mips, core_mips, ShareOrder::Insertion)
    }

    /// Like [`Self::new`], walking shares in `order`.
    pub fn with_order(total_mips: f64, core_mips: f64, order: ShareOrder) -> Self {
        Self {
            total_mips,
            core_mips,
            order,
            table_capacity: 0,
            next_seq: 0,
            probe_settled: false,
            shares: Vec::new(),
            available_mips: total_mips,
            migrating_in: Vec::new(),
            migrating_out: VmBits::default(),
        }
    }

    /// MIPS not yet allocated (0 on an oversubscribed host).
    pub fn available_mips(&self) -> f64 {
        self.available_mips
    }

    /// Capacity of one core, MIPS.
    pub fn core_mips(&self) -> f64 {
        self.core_mips
    }

    /// MIPS currently allocated to `vm` (0 if it has no share here).
    pub fn allocated_mips(&self, vm: VmIndex) -> f64 {
        self.shares
            .iter()
            .find(|s| s.vm == vm)
            .map_or(0.0, |s| s.allocated_mips)
    }

    /// Like [`Self::allocated_mips`], trying position `hint` first (shares
    /// usually sit in the same order as the host's VM list).
    pub fn allocated_mips_hint(&self, vm: VmIndex, hint: usize) -> f64 {
        match self.shares.get(hint) {
            Some(share) if share.vm == vm => share.allocated_mips,
            _ => self.allocated_mips(vm),
        }
    }

    /// Whether `vm` is registered as migrating in.
    pub fn is_migrating_in(&self, vm: VmIndex) -> bool {
        self.migrating_in.contains(&vm)
    }

    /// Registers `vm` as migrating in (before it is allocated).
    pub fn mark_migrating_in(&mut self, vm: VmIndex) {
        if !self.migrating_in.contains(&vm) {
            self.migrating_in.push(vm);
        }
    }

    /// Forgets that `vm` is migrating in.
    pub fn unmark_migrating_in(&mut self, vm: VmIndex) {
        self.migrating_in.retain(|&v| v != vm);
    }

    /// Allocates CPU to `vm` for `requested_mips`; `in_migration` is the VM's
    /// own migration flag, which decides whether it counts as migrating out.
    pub fn allocate(&mut self, vm: VmIndex, requested_mips: f64, in_migration: bool) {
        self.update_migration_marks(vm, in_migration);
        self.allocate_share(vm, requested_mips);
    }

    /// The migrating-out bookkeeping that every allocation of `vm` performs.
    /// A what-if allocation that is undone at once leaves exactly this behind.
    pub fn update_migration_marks(&mut self, vm: VmIndex, in_migration: bool) {
        if in_migration {
            if !self.migrating_in.contains(&vm) {
                self.migrating_out.insert(vm);
            }
        } else {
            self.migrating_out.remove(vm);
        }
    }

    /// What a what-if allocation of `vm` that is undone at once leaves behind:
    /// the migration marks, a possibly grown table, and the free MIPS
    /// recomputed by re-serving every share in walk order.
    ///
    /// Equivalent to allocating and then deallocating `vm`, but the re-serving
    /// is skipped when a previous probe already left the same state.
    pub fn probe(&mut self, vm: VmIndex, requested_mips: f64, in_migration: bool) {
        if self.shares.iter().any(|s| s.vm == vm) {
            // Allocating an existing share and releasing it removes it.
            self.allocate(vm, requested_mips, in_migration);
            self.deallocate(vm);
            return;
        }
        self.update_migration_marks(vm, in_migration);
        self.next_seq += 1;
        if self.grow_table_for(self.shares.len() + 1) {
            self.probe_settled = false;
        }
        if !self.probe_settled {
            self.reallocate_all();
            self.probe_settled = true;
        }
    }

    /// Grows the emulated hash table as `java.util.HashMap` would when it
    /// holds `size` keys (16 buckets at the first key, doubled whenever the
    /// size exceeds three quarters of them); returns whether it grew.
    fn grow_table_for(&mut self, size: usize) -> bool {
        let before = self.table_capacity;
        if self.table_capacity == 0 && size > 0 {
            self.table_capacity = 16;
        }
        while size > self.table_capacity / 4 * 3 {
            self.table_capacity *= 2;
        }
        self.table_capacity != before
    }

    /// Releases `vm`'s share and re-serves the others in order.
    pub fn deallocate(&mut self, vm: VmIndex) {
        let Some(pos) = self.shares.iter().position(|s| s.vm == vm) else {
            return;
        };
        self.shares.remove(pos);
        self.reallocate_all();
        self.probe_settled = true;
    }

    /// Releases every share (the migration marks stay).
    pub fn deallocate_all(&mut self) {
        self.probe_settled = false;
        self.shares.clear();
        self.available_mips = self.total_mips;
    }

    /// Re-serves every share in order from a full host.
    fn reallocate_all(&mut self) {
        self.available_mips = self.total_mips;
        for share in &mut self.shares {
            share.allocated_mips = 0.0;
        }
        for i in self.walk_order() {
            self.serve(i);
        }
    }

    /// Indices of `shares` in the order the host walks them.
    fn walk_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.shares.len()).collect();
        if let ShareOrder::JavaHashMap { .. } = self.order {
            let mask = self.table_capacity.saturating_sub(1) as u32;
            // Sequence numbers are unique, so no two keys tie and an
            // unstable sort (no merge buffer) gives the one order.
            order.sort_unstable_by_key(|&i| (self.shares[i].hash & mask, self.shares[i].seq));
        }
        order
    }

    fn key_hash(&self, vm: VmIndex) -> u32 {
        match self.order {
            ShareOrder::Insertion => 0,
            ShareOrder::JavaHashMap { owner_id } => java_hash_map_spread(owner_id, vm),
        }
    }

    fn capped(&self, requested_mips: f64) -> f64 {
        if requested_mips > self.core_mips {
            self.core_mips
        } else {
            requested_mips
        }
    }

    fn allocate_share(&mut self, vm: VmIndex, requested_mips: f64) {
        let index = match self.shares.iter().position(|s| s.vm == vm) {
            Some(index) => {
                self.shares[index].requested_mips = requested_mips;
                index
            }
            None => {
                let hash = self.key_hash(vm);
                self.shares.push(Share {
                    vm,
                    seq: self.next_seq,
                    hash,
                    requested_mips,
                    allocated_mips: 0.0,
                });
                self.next_seq += 1;
                self.grow_table_for(self.shares.len());
                self.shares.len() - 1
            }
        };
        self.serve(index);
    }

    /// Serves the share at `index` from the free MIPS, or scales every share
    /// down if it does not fit.
    fn serve(&mut self, index: usize) {
        let Share {
            vm, requested_mips, ..
        } = self.shares[index];
        let capped = self.capped(requested_mips);
        self.probe_settled = false;
        let is_in = self.migrating_in.contains(&vm);
        let reserved = if is_in { capped * 0.1 } else { capped };
        if self.available_mips >= reserved {
            let allocated = if self.migrating_out.contains(vm) {
                capped * 0.9
            } else if is_in {
                capped * 0.1
            } else {
                capped
            };
            self.shares[index].allocated_mips = allocated;
            self.available_mips -= reserved;
        } else {
            self.redistribute_oversubscribed();
        }
    }

    fn redistribute_oversubscribed(&mut self) {
        let mut total_required = 0.0;
        for i in self.walk_order() {
            let share = &self.shares[i];
            let mut required = self.capped(share.requested_mips);
            if self.migrating_in.contains(&share.vm) {
                required *= 0.1;
            }
            total_required += required;
        }
        let scale = self.total_mips / total_required;
        for i in 0..self.shares.len() {
            let vm = self.shares[i].vm;
            let mut mips = self.capped(self.shares[i].requested_mips);
            if self.migrating_out.contains(vm) {
                mips *= scale;
                mips *= 0.9;
            } else if self.migrating_in.contains(&vm) {
                mips *= 0.1;
                mips *= scale;
            } else {
                mips *= scale;
            }
            self.shares[i].allocated_mips = mips.floor();
        }
        self.available_mips = 0.0;
    }
}

/// `java.util.HashMap`'s spread hash of the string `"<owner_id>-<vm>"`:
/// `String.hashCode` (s[0]*31^(n-1) + ... in wrapping 32-bit arithmetic),
/// then `h ^ (h >>> 16)`.
fn java_hash_map_spread(owner_id: u32, vm: VmIndex) -> u32 {
    let h = string_hash(0, owner_id as u64);
    let h = h.wrapping_mul(31).wrapping_add(b'-' as i32);
    let h = string_hash(h, vm as u64) as u32;
    h ^ (h >> 16)
}

/// Numbers below this have their digits' hash in a table (hosts re-create
/// every share at each update, so the hash of a VM key is asked for often).
const DIGIT_TABLE_SIZE: usize = 1 << 13;

/// `String.hashCode` continued from `h` over the decimal digits of `n`.
fn string_hash(h: i32, n: u64) -> i32 {
    static TABLE: std::sync::OnceLock<Vec<(i32, i32)>> = std::sync::OnceLock::new();
    if n < DIGIT_TABLE_SIZE as u64 {
        // Per number: hash of its digits from 0, and 31^(digit count).
        let table = TABLE.get_or_init(|| {
            (0..DIGIT_TABLE_SIZE as u64)
                .map(|n| (feed_decimal(0, n), feed_decimal_power(n)))
                .collect()
        });
        let (digits, power) = table[n as usize];
        return h.wrapping_mul(power).wrapping_add(digits);
    }
    feed_decimal(h, n)
}

/// 31 raised to the number of decimal digits of `n`, wrapping.
fn feed_decimal_power(mut n: u64) -> i32 {
    let mut power = 31i32;
    while n >= 10 {
        power = power.wrapping_mul(31);
        n /= 10;
    }
    power
}

/// `String.hashCode` continued from `h` over the decimal digits of `n`,
/// without allocating.
fn feed_decimal(mut h: i32, n: u64) -> i32 {
    let mut digits = [0u8; 20];
    let mut len = 0;
    let mut rest = n;
    loop {
        digits[len] = b'0' + (rest % 10) as u8;
        len += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &d in digits[..len].iter().rev() {
        h = h.wrapping_mul(31).wrapping_add(d as i32);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_in_order_until_full_then_scales_and_floors() {
        let mut cpu = CpuShare::new(3720.0, 1860.0);
        cpu.allocate(0, 1000.0, false);
        cpu.allocate(1, 2000.0, false); // capped at 1860
        assert_eq!(cpu.allocated_mips(1), 1860.0);
        assert_eq!(cpu.available_mips(), 3720.0 - 1000.0 - 1860.0);
        cpu.allocate(2, 1000.0, false);
        // 3860 requested of 3720: scale 3720/3860, floored.
        assert_eq!(cpu.available_mips(), 0.0);
        assert_eq!(
            cpu.allocated_mips(0),
            (1000.0_f64 * (3720.0 / 3860.0)).floor()
        );
        assert_eq!(
            cpu.allocated_mips(1),
            (1860.0_f64 * (3720.0 / 3860.0)).floor()
        );
    }

    #[test]
    fn java_string_hash_matches_known_values() {
        // "2-0".hashCode() = 50 * 961 + 45 * 31 + 48 = 49493 (no high bits to spread).
        assert_eq!(java_hash_map_spread(2, 0), 49493);
        // "2-1051".hashCode() = 48658925 (computed by hand: ((('2'*31+'-')*31+'1')*31+'0')*31+'5')*31+'1').
        let h: i32 = "2-1051"
            .bytes()
            .fold(0i32, |h, b| h.wrapping_mul(31).wrapping_add(b as i32));
        assert_eq!(
            java_hash_map_spread(2, 1051),
            (h as u32) ^ ((h as u32) >> 16)
        );
        // Walk order is by bucket, then by creation.
        let mut cpu = CpuShare::with_order(3720.0, 1860.0, ShareOrder::JavaHashMap { owner_id: 2 });
        for vm in [17, 3, 250] {
            cpu.allocate(vm, 10.0, false);
        }
        let order: Vec<usize> = cpu.walk_order().iter().map(|&i| cpu.shares[i].vm).collect();
        let mut expected = vec![17, 3, 250];
        expected.sort_by_key(|&vm| {
            (
                java_hash_map_spread(2, vm) & 15,
                [17, 3, 250].iter().position(|&v| v == vm),
            )
        });
        assert_eq!(order, expected);
    }

    #[test]
    fn digit_table_gives_the_hash_computed_digit_by_digit() {
        for n in [0u64, 7, 10, 99, 1051, 8191, 8192, 123_456] {
            for h in [0i32, 50, -12345] {
                assert_eq!(string_hash(h, n), feed_decimal(h, n), "{h} {n}");
            }
        }
    }

    #[test]
    fn migration_shares() {
        let mut cpu = CpuShare::new(5320.0, 2660.0);
        cpu.allocate(7, 1000.0, true);
        assert_eq!(cpu.allocated_mips(7), 900.0);
        cpu.mark_migrating_in(8);
        cpu.allocate(8, 2000.0, true);
        assert_eq!(cpu.allocated_mips(8), 200.0);
        assert_eq!(cpu.available_mips(), 5320.0 - 1000.0 - 200.0);
    }

    #[test]
    fn deallocate_reserves_the_rest() {
        let mut cpu = CpuShare::new(3720.0, 1860.0);
        for vm in 0..3 {
            cpu.allocate(vm, 1500.0, false);
        }
        assert_eq!(cpu.available_mips(), 0.0);
        cpu.deallocate(1);
        assert_eq!(cpu.allocated_mips(0), 1500.0);
        assert_eq!(cpu.allocated_mips(2), 1500.0);
        assert_eq!(cpu.available_mips(), 720.0);
    }
}
