//! A quick feasible placement to start the solver from (its incumbent):
//! keep every unit where it is, evict from each host over a limit until it
//! fits, and put the evicted units, largest first, where they cost least.
//! It is only a hint: the solver checks it and drops it when it is not
//! feasible; `None` when the heuristic finds no home for some unit.

use super::model::{within, Model};

/// Each unit's host index, or `None`.
pub(super) fn start(model: &Model<'_>) -> Option<Vec<usize>> {
    let (units, limits) = (model.units, model.limits);
    let n_hosts = limits.len();
    // Anti-affinity groups per unit, with how many members each has in it.
    let mut groups_of: Vec<Vec<(usize, u32)>> = vec![Vec::new(); units.len()];
    for (g, group) in model.anti_affinity.iter().enumerate() {
        for vm in group {
            let u = model.unit_of[vm.index()];
            match groups_of[u].iter_mut().find(|(gg, _)| *gg == g) {
                Some((_, n)) => *n += 1,
                None => groups_of[u].push((g, 1)),
            }
        }
    }
    let mut taken = vec![vec![0u32; n_hosts]; model.anti_affinity.len()];
    let mut sums = vec![[0.0f64; 6]; n_hosts];
    let mut on: Vec<Vec<usize>> = vec![Vec::new(); n_hosts];
    let mut choice: Vec<Option<usize>> = vec![None; units.len()];
    let mut evicted = Vec::new();
    let free = |taken: &[Vec<u32>], u: usize, h: usize| {
        groups_of[u].iter().all(|&(g, n)| taken[g][h] + n <= 1)
    };
    for (u, cands) in model.candidates.iter().enumerate() {
        // A unit stays where it costs nothing to keep it (all members there).
        match cands.iter().find(|&&(_, w)| w == 0.0) {
            Some(&(h, _)) if free(&taken, u, h) => {
                for (g, n) in &groups_of[u] {
                    taken[*g][h] += n;
                }
                add(&mut sums[h], units[u].amounts(), 1.0);
                on[h].push(u);
                choice[u] = Some(h);
            }
            _ => evicted.push(u),
        }
    }
    for h in 0..n_hosts {
        while !within(&limits[h], sums[h]) {
            // The most exceeded limit; evict the smallest unit that clears it
            // on its own, else the largest.
            let (k, excess) = (0..6)
                .filter_map(|k| limits[h][k].map(|l| (k, sums[h][k] - l, l)))
                .filter(|&(_, e, _)| e > 0.0)
                .map(|(k, e, l)| (k, e, e / l.max(f64::MIN_POSITIVE)))
                .max_by(|a, b| a.2.total_cmp(&b.2))
                .map(|(k, e, _)| (k, e))?;
            let amount = |i: &usize| units[on[h][*i]].amounts()[k];
            let pick = (0..on[h].len())
                .filter(|i| amount(i) >= excess)
                .min_by(|a, b| amount(a).total_cmp(&amount(b)))
                .or_else(|| (0..on[h].len()).max_by(|a, b| amount(a).total_cmp(&amount(b))))?;
            let u = on[h].swap_remove(pick);
            add(&mut sums[h], units[u].amounts(), -1.0);
            for (g, n) in &groups_of[u] {
                taken[*g][h] -= n;
            }
            choice[u] = None;
            evicted.push(u);
        }
    }
    // Largest first, by their largest share of a limit of their first candidate.
    let share = |u: usize| {
        let h = model.candidates[u].first().map_or(0, |c| c.0);
        let a = units[u].amounts();
        (0..6)
            .filter_map(|k| limits[h][k].filter(|l| *l > 0.0).map(|l| a[k] / l))
            .fold(0.0, f64::max)
    };
    evicted.sort_by(|&a, &b| share(b).total_cmp(&share(a)));
    for u in evicted {
        let a = units[u].amounts();
        let headroom = |h: usize, s: &[f64; 6]| {
            (0..6)
                .filter_map(|k| {
                    limits[h][k]
                        .filter(|l| *l > 0.0)
                        .map(|l| 1.0 - (s[k] + a[k]) / l)
                })
                .fold(f64::INFINITY, f64::min)
        };
        let best = model.candidates[u]
            .iter()
            .filter(|&&(h, _)| free(&taken, u, h))
            .filter(|&&(h, _)| {
                let mut s = sums[h];
                add(&mut s, a, 1.0);
                within(&limits[h], s)
            })
            .min_by(|x, y| {
                x.1.total_cmp(&y.1)
                    .then(headroom(y.0, &sums[y.0]).total_cmp(&headroom(x.0, &sums[x.0])))
            })?;
        let h = best.0;
        add(&mut sums[h], a, 1.0);
        for (g, n) in &groups_of[u] {
            taken[*g][h] += n;
        }
        choice[u] = Some(h);
    }
    choice.into_iter().collect()
}

fn add(sum: &mut [f64; 6], amounts: [f64; 6], sign: f64) {
    for (s, a) in sum.iter_mut().zip(amounts) {
        *s += sign * a;
    }
}
