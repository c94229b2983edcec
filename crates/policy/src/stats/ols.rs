//! Ordinary least squares R², mirroring commons-math3 3.6.1
//! `OLSMultipleLinearRegression` (with intercept, QR singularity threshold
//! 0), and CloudSim 3.0.3's Maximum Correlation VM selection built on it.
//!
//! The MC policy picks the VM whose history is best explained by the others'
//! (largest R²). Collinear or nearly constant histories are common, and then
//! R² depends on rounding all the way through the QR decomposition, so every
//! loop below runs in commons-math's order: Householder QR of the transposed
//! design (`QRDecomposition.performHouseholderReflection`), the solver's
//! reflections and back substitution, residuals by
//! `Array2DRowRealMatrix.operate`, `ArrayRealVector.dotProduct`, and the
//! storeless `SecondMoment` update.

use std::fmt;

/// Why an OLS regression (or the MC selection built on it) has no result.
///
/// Every variant but [`HistoryLengthMismatch`](Self::HistoryLengthMismatch)
/// is thrown by commons-math as a subclass of `MathIllegalArgumentException`
/// (`NoDataException`, `DimensionMismatchException`,
/// `SingularMatrixException`, or the plain class for too few observations),
/// which extends `IllegalArgumentException`: CloudSim's MC policy catches
/// those and falls back to its fallback policy (MMT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegressionError {
    /// An array of the wrong length (`DimensionMismatchException`): `y` and
    /// the design have different row counts, or the design is ragged.
    DimensionMismatch {
        /// Length found.
        found: usize,
        /// Length expected.
        expected: usize,
    },
    /// No observations, or no predictors where a matrix of them is built
    /// (`NoDataException`).
    NoData,
    /// Predictors + 1 > observations (`NOT_ENOUGH_DATA_FOR_NUMBER_OF_PREDICTORS`).
    NotEnoughData {
        /// Observations.
        observations: usize,
        /// Predictors, intercept not counted.
        predictors: usize,
    },
    /// A zero diagonal element of R (`SingularMatrixException`).
    Singular,
    /// A VM history longer than the shortest one. CloudSim's
    /// `getUtilizationMatrix` sizes rows by the shortest history but copies
    /// each history in full, so it throws `ArrayIndexOutOfBoundsException`,
    /// which is *not* caught: CloudSim would abort, not fall back.
    HistoryLengthMismatch {
        /// Index of the VM with the longer history.
        vm: usize,
        /// Its history length.
        len: usize,
        /// The shortest history length.
        min: usize,
    },
}

impl RegressionError {
    /// Whether CloudSim catches this error (an `IllegalArgumentException`)
    /// and uses the fallback selection policy.
    pub fn falls_back(&self) -> bool {
        !matches!(self, Self::HistoryLengthMismatch { .. })
    }
}

impl fmt::Display for RegressionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::DimensionMismatch { found, expected } => {
                write!(f, "dimension mismatch: {found} != {expected}")
            }
            Self::NoData => f.write_str("no data"),
            Self::NotEnoughData {
                observations,
                predictors,
            } => write!(
                f,
                "not enough data ({observations} rows) for {predictors} predictors"
            ),
            Self::Singular => f.write_str("matrix is singular"),
            Self::HistoryLengthMismatch { vm, len, min } => {
                write!(
                    f,
                    "VM {vm} has a history of {len} values, longer than the shortest ({min})"
                )
            }
        }
    }
}

impl std::error::Error for RegressionError {}

/// `OLSMultipleLinearRegression.newSampleData(y, x)` then
/// `calculateRSquared()`: R² = 1 - SSR / SST of the regression of `y` on
/// the columns of `x` plus an intercept.
///
/// `x` is in Java's layout: one row per observation, one column per
/// predictor (CloudSim's `xT`). Errors as `validateSampleData` then
/// `newXSampleData` raise them, in that order: row counts differ, no rows,
/// predictors + 1 > rows, ragged rows; then a singular R when solving.
/// R² is NaN or -inf when `y` is constant (SST = 0), as in Java.
pub fn r_squared_ols(y: &[f64], x: &[&[f64]]) -> Result<f64, RegressionError> {
    if x.len() != y.len() {
        return Err(RegressionError::DimensionMismatch {
            found: y.len(),
            expected: x.len(),
        });
    }
    if x.is_empty() {
        return Err(RegressionError::NoData);
    }
    let predictors = x[0].len();
    if predictors + 1 > x.len() {
        return Err(RegressionError::NotEnoughData {
            observations: x.len(),
            predictors,
        });
    }
    if let Some(row) = x.iter().find(|row| row.len() != predictors) {
        return Err(RegressionError::DimensionMismatch {
            found: row.len(),
            expected: predictors,
        });
    }
    r_squared_core(y, predictors, |j, t| x[t][j], &mut Vec::new())
}

/// CloudSim's `PowerVmSelectionPolicyMaximumCorrelation`
/// `getCorrelationCoefficients(getUtilizationMatrix(vms))`: for each VM, the
/// R² of its history regressed on every other VM's history (in list order),
/// over the shortest history length `m`.
///
/// `histories` are the migratable VMs' utilisation histories, newest first.
/// Errors, in CloudSim's order: a history longer than `m`
/// ([`RegressionError::HistoryLengthMismatch`], uncaught in CloudSim); a
/// single VM (`new Array2DRowRealMatrix(x)` with no rows: `NoData`); `m = 0`
/// (no columns: `NoData`); `n > m` (`NotEnoughData`); a singular design for
/// any VM (`Singular`). An empty list gives an empty result (CloudSim
/// returns no VM before getting here).
pub fn correlation_coefficients(histories: &[&[f64]]) -> Result<Vec<f64>, RegressionError> {
    let n = histories.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let m = histories.iter().map(|h| h.len()).min().unwrap_or(0);
    if let Some((vm, h)) = histories.iter().enumerate().find(|(_, h)| h.len() > m) {
        return Err(RegressionError::HistoryLengthMismatch {
            vm,
            len: h.len(),
            min: m,
        });
    }
    if n == 1 || m == 0 {
        return Err(RegressionError::NoData);
    }
    if n > m {
        return Err(RegressionError::NotEnoughData {
            observations: m,
            predictors: n - 1,
        });
    }
    let mut workspace = Vec::new();
    let mut result = Vec::with_capacity(n);
    for i in 0..n {
        // Predictor j is the j-th VM other than i.
        let other = |j: usize| if j < i { j } else { j + 1 };
        let y = &histories[i][..m];
        result.push(r_squared_core(
            y,
            n - 1,
            |j, t| histories[other(j)][t],
            &mut workspace,
        )?);
    }
    Ok(result)
}

/// The MC choice: the index of the largest metric, scanning in order with a
/// strict `>` from `Double.MIN_VALUE` (the smallest subnormal, 4.9e-324),
/// so ties go to the first, NaNs never win, and if nothing is positive the
/// answer is index 0 (also for an empty slice).
pub fn pick_max_correlation(metrics: &[f64]) -> usize {
    let mut max_metric = f64::from_bits(1);
    let mut max_index = 0;
    for (i, &metric) in metrics.iter().enumerate() {
        if metric > max_metric {
            max_metric = metric;
            max_index = i;
        }
    }
    max_index
}

/// R² of `y` (m observations) on `p` predictors plus an intercept, where
/// `pred(j, t)` is predictor `j` at observation `t`. The caller has
/// validated `p + 1 <= m` and `m > 0`. `ws` is reusable scratch space.
fn r_squared_core(
    y: &[f64],
    p: usize,
    pred: impl Fn(usize, usize) -> f64,
    ws: &mut Vec<f64>,
) -> Result<f64, RegressionError> {
    let m = y.len();
    let cols = p + 1;
    let diag = cols.min(m);
    ws.clear();
    ws.resize(cols * m + m + diag + cols, 0.0);
    let (qrt, rest) = ws.split_at_mut(cols * m);
    let (yw, rest) = rest.split_at_mut(m);
    let (r_diag, beta) = rest.split_at_mut(diag);

    // QRDecomposition stores the transposed design: row c of `qrt` (a run of
    // m values) is design column c; column 0 is the intercept's ones.
    qrt[..m].fill(1.0);
    for (j, col) in qrt[m..].chunks_exact_mut(m).enumerate() {
        for (t, v) in col.iter_mut().enumerate() {
            *v = pred(j, t);
        }
    }
    for minor in 0..diag {
        householder_reflection(qrt, m, minor, r_diag);
    }

    // Solver.solve: singular if any |rDiag| <= threshold (0); NaN is not.
    if r_diag.iter().any(|d| d.abs() <= 0.0) {
        return Err(RegressionError::Singular);
    }
    yw.copy_from_slice(y);
    for minor in 0..diag {
        let v = &qrt[minor * m..(minor + 1) * m];
        let mut dot = 0.0;
        for (yv, vv) in yw[minor..].iter().zip(&v[minor..]) {
            dot += yv * vv;
        }
        dot /= r_diag[minor] * v[minor];
        for (yv, vv) in yw[minor..].iter_mut().zip(&v[minor..]) {
            *yv += dot * vv;
        }
    }
    for row in (0..diag).rev() {
        yw[row] /= r_diag[row];
        let y_row = yw[row];
        beta[row] = y_row;
        let q = &qrt[row * m..row * m + row];
        for (yv, qv) in yw[..row].iter_mut().zip(q) {
            *yv -= y_row * qv;
        }
    }

    // Residuals y - X b (X the original design: 1.0 then the predictors,
    // each row summed from 0.0), then their dot product.
    let mut ssr = 0.0;
    for (t, &yt) in y.iter().enumerate() {
        let mut fitted = 0.0;
        fitted += beta[0];
        for (j, b) in beta[1..].iter().enumerate() {
            fitted += pred(j, t) * b;
        }
        let residual = yt - fitted;
        ssr += residual * residual;
    }
    Ok(1.0 - ssr / second_moment(y))
}

/// `QRDecomposition.performHouseholderReflection(minor)` on the transposed
/// matrix `qrt` (rows of length `m`).
fn householder_reflection(qrt: &mut [f64], m: usize, minor: usize, r_diag: &mut [f64]) {
    let (head, tail) = qrt.split_at_mut((minor + 1) * m);
    let v = &mut head[minor * m..];
    let mut x_norm_sqr = 0.0;
    for c in &v[minor..] {
        x_norm_sqr += c * c;
    }
    // The sign opposite to the first component (NaN or zero: positive).
    let a = if v[minor] > 0.0 {
        -x_norm_sqr.sqrt()
    } else {
        x_norm_sqr.sqrt()
    };
    r_diag[minor] = a;
    if a != 0.0 {
        v[minor] -= a;
        for col in tail.chunks_exact_mut(m) {
            let mut alpha = 0.0;
            for (cv, vv) in col[minor..].iter().zip(&v[minor..]) {
                alpha -= cv * vv;
            }
            alpha /= a * v[minor];
            for (cv, vv) in col[minor..].iter_mut().zip(&v[minor..]) {
                *cv -= alpha * vv;
            }
        }
    }
}

/// `new SecondMoment().evaluate(values)`: the sum of squared deviations from
/// the mean by the storeless update (`FirstMoment` then `m2 += (n - 1) *
/// dev * nDev`). NaN for no values.
fn second_moment(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let (mut n, mut m1, mut m2) = (0_u64, 0.0, 0.0);
    for &d in values {
        n += 1;
        let n0 = n as f64;
        let dev = d - m1;
        let n_dev = dev / n0;
        m1 += n_dev;
        m2 += (n as f64 - 1.0) * dev * n_dev;
    }
    m2
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn perfect_linear_relation_has_r_squared_one() {
        let rows: Vec<[f64; 2]> = (0..8)
            .map(|t| [f64::from(t), f64::from(t * t % 5)])
            .collect();
        let x: Vec<&[f64]> = rows.iter().map(|r| r.as_slice()).collect();
        let y: Vec<f64> = rows.iter().map(|r| 1.5 + 2.0 * r[0] - 0.5 * r[1]).collect();
        let r2 = r_squared_ols(&y, &x).unwrap();
        assert!((r2 - 1.0).abs() < 1e-12, "{r2}");
    }

    #[test]
    fn hand_computed_r_squared() {
        // y = 1, 3, 2 on x = 1, 2, 3: fit 1 + 0.5x, SSR = 1.5, SST = 2.
        let x: [&[f64]; 3] = [&[1.0], &[2.0], &[3.0]];
        let r2 = r_squared_ols(&[1.0, 3.0, 2.0], &x).unwrap();
        assert!((r2 - 0.25).abs() < 1e-12, "{r2}");
        assert_eq!(second_moment(&[1.0, 3.0, 2.0]), 2.0);
    }

    #[test]
    fn validation_errors_in_java_order() {
        let x: [&[f64]; 2] = [&[1.0], &[2.0]];
        assert_eq!(
            r_squared_ols(&[1.0], &x),
            Err(RegressionError::DimensionMismatch {
                found: 1,
                expected: 2
            })
        );
        assert_eq!(r_squared_ols(&[], &[]), Err(RegressionError::NoData));
        let wide: [&[f64]; 2] = [&[1.0, 2.0], &[3.0, 5.0]];
        assert_eq!(
            r_squared_ols(&[1.0, 2.0], &wide),
            Err(RegressionError::NotEnoughData {
                observations: 2,
                predictors: 2
            })
        );
        let ragged: [&[f64]; 3] = [&[1.0], &[2.0, 3.0], &[4.0]];
        assert_eq!(
            r_squared_ols(&[1.0, 2.0, 3.0], &ragged),
            Err(RegressionError::DimensionMismatch {
                found: 2,
                expected: 1
            })
        );
        // An all-zero predictor gives an exactly zero diagonal of R.
        let zero: [&[f64]; 3] = [&[0.0], &[0.0], &[0.0]];
        assert_eq!(
            r_squared_ols(&[1.0, 2.0, 4.0], &zero),
            Err(RegressionError::Singular)
        );
        // Intercept only: R² = 1 - SSR/SST = 0 up to rounding.
        let none: [&[f64]; 3] = [&[], &[], &[]];
        assert!(r_squared_ols(&[1.0, 2.0, 4.0], &none).unwrap().abs() < 1e-12);
    }

    #[test]
    fn correlation_errors_and_fallback() {
        let a = [0.1, 0.2, 0.3, 0.5];
        let b = [0.4, 0.1, 0.3, 0.2];
        assert_eq!(correlation_coefficients(&[]), Ok(vec![]));
        assert_eq!(
            correlation_coefficients(&[&a]),
            Err(RegressionError::NoData)
        );
        assert_eq!(
            correlation_coefficients(&[&[], &[]]),
            Err(RegressionError::NoData)
        );
        let err = correlation_coefficients(&[&a, &b[..3]]).unwrap_err();
        assert_eq!(
            err,
            RegressionError::HistoryLengthMismatch {
                vm: 0,
                len: 4,
                min: 3
            }
        );
        assert!(!err.falls_back());
        assert_eq!(
            correlation_coefficients(&[&a[..2], &b[..2], &a[..2]]),
            Err(RegressionError::NotEnoughData {
                observations: 2,
                predictors: 2
            })
        );
        let zeros = [0.0; 4];
        let err = correlation_coefficients(&[&a, &zeros]).unwrap_err();
        assert_eq!(err, RegressionError::Singular);
        assert!(err.falls_back());
        let r2 = correlation_coefficients(&[&a, &b]).unwrap();
        // With one predictor both regressions have the same R² (= r²) up to rounding.
        assert!((r2[0] - r2[1]).abs() < 1e-12 && (0.0..=1.0).contains(&r2[0]));
    }

    #[test]
    fn pick_max_follows_cloudsim() {
        assert_eq!(pick_max_correlation(&[]), 0);
        assert_eq!(pick_max_correlation(&[0.0, -1.0, f64::NAN]), 0);
        assert_eq!(pick_max_correlation(&[f64::NAN, 0.3, 0.7, 0.7]), 2);
        assert_eq!(pick_max_correlation(&[0.0, f64::from_bits(2)]), 1);
        assert_eq!(pick_max_correlation(&[0.0, f64::from_bits(1)]), 0);
    }

    proptest! {
        #[test]
        fn r_squared_is_within_unit_interval(
            m in 6usize..30,
            p in 1usize..4,
            data in proptest::collection::vec(0.0f64..1.0, 30 * 5),
        ) {
            let rows: Vec<&[f64]> = (0..m).map(|t| &data[t * 4..t * 4 + p]).collect();
            let y: Vec<f64> = (0..m).map(|t| data[120 + t % 30]).collect();
            prop_assume!(second_moment(&y) > 1e-6);
            let r2 = r_squared_ols(&y, &rows).unwrap();
            prop_assert!((-1e-9..=1.0 + 1e-9).contains(&r2), "{}", r2);
        }
    }
}
