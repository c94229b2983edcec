//! INTERIM statistics (to be replaced by the exact commons-math port).
#![allow(missing_docs)]

pub fn linear_fit_1_to_n(y: &[f64]) -> Option<(f64, f64)> {
    let (mut n, mut xbar, mut ybar, mut sxx, mut sxy, mut sx, mut sy) =
        (0u64, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, &yv) in y.iter().enumerate() {
        let x = (i + 1) as f64;
        if n == 0 {
            xbar = x;
            ybar = yv;
        } else {
            let fact1 = 1.0 + n as f64;
            let fact2 = n as f64 / (1.0 + n as f64);
            let dx = x - xbar;
            let dy = yv - ybar;
            sxx += dx * dx * fact2;
            sxy += dx * dy * fact2;
            xbar += dx / fact1;
            ybar += dy / fact1;
        }
        sx += x;
        sy += yv;
        n += 1;
    }
    if n < 3 {
        return None;
    }
    let slope = sxy / sxx;
    Some(((sy - slope * sx) / n as f64, slope))
}

fn percentile50(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    let pos = 0.5 * (n as f64 + 1.0);
    let fpos = pos.floor();
    let int_pos = fpos as usize;
    let dif = pos - fpos;
    if pos < 1.0 {
        return sorted[0];
    }
    if pos >= n as f64 {
        return sorted[n - 1];
    }
    let lower = sorted[int_pos - 1];
    let upper = sorted[int_pos];
    lower + dif * (upper - lower)
}

pub fn median(data: &[f64], work: &mut Vec<f64>) -> f64 {
    work.clear();
    work.extend_from_slice(data);
    work.sort_by(f64::total_cmp);
    percentile50(work)
}

pub fn mad(data: &[f64], work: &mut Vec<f64>) -> f64 {
    let m = median(data, work);
    let dev: Vec<f64> = data.iter().map(|x| (m - x).abs()).collect();
    median(&dev, work)
}

pub fn iqr(data: &[f64], work: &mut Vec<f64>) -> f64 {
    work.clear();
    work.extend_from_slice(data);
    work.sort_by(f64::total_cmp);
    let n = work.len() as f64;
    let q1 = (0.25 * (n + 1.0) + 0.5).floor() as usize - 1;
    let q3 = (0.75 * (n + 1.0) + 0.5).floor() as usize - 1;
    work[q3] - work[q1]
}

#[derive(Debug)]
pub struct RegressionError;

pub fn correlation_coefficients(_h: &[&[f64]]) -> Result<Vec<f64>, RegressionError> {
    Err(RegressionError)
}

pub fn pick_max_correlation(r2: &[f64]) -> usize {
    let mut max = f64::from_bits(1);
    let mut idx = 0;
    for (i, &m) in r2.iter().enumerate() {
        if m > max {
            max = m;
            idx = i;
        }
    }
    idx
}
