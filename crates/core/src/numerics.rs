//! Numerically safe scalar functions (SPEC section 2: |gamma| up to 30 must neither overflow
//! nor lose the small side).

/// softplus(x) = log(1 + e^x), exact to round-off for every finite x.
#[inline]
pub fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// log sigmoid(x) = -softplus(-x).
#[inline]
pub fn log_sigmoid(x: f64) -> f64 {
    -softplus(-x)
}

/// sigmoid(x) = 1 / (1 + e^-x), evaluated without overflow.
#[inline]
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Lattice momentum magnitude squared `|k_hat|^2 = sum_mu 4 sin^2(k_mu / 2)` (SPEC section 1).
#[inline]
pub fn k_hat_sq(ky: f64, kx: f64) -> f64 {
    let sy = (ky / 2.0).sin();
    let sx = (kx / 2.0).sin();
    4.0 * (sy * sy + sx * sx)
}

/// Signed integer momentum index for a mode `n` of a periodic axis of length `len`:
/// `n` for `n <= len/2`, `n - len` above.
#[inline]
pub fn signed_mode(n: usize, len: usize) -> i64 {
    if 2 * n <= len {
        n as i64
    } else {
        n as i64 - len as i64
    }
}

/// Mean and unbiased variance of a slice (variance 0 for fewer than two values).
pub fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    if x.is_empty() {
        return (f64::NAN, 0.0);
    }
    let mean = x.iter().sum::<f64>() / n;
    if x.len() < 2 {
        return (mean, 0.0);
    }
    let ss: f64 = x.iter().map(|v| (v - mean) * (v - mean)).sum();
    (mean, ss / (n - 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softplus_is_stable_at_extremes() {
        assert_eq!(softplus(1000.0), 1000.0);
        assert!((softplus(-40.0) - (-40f64).exp()).abs() < 1e-30);
        assert!((softplus(0.0) - 2f64.ln()).abs() < 1e-15);
        // log sigmoid(-30) keeps the small side: log(1e-13) scale, not -inf
        let ls = log_sigmoid(-30.0);
        assert!((ls - (-30.0 - (-30f64).exp().ln_1p())).abs() < 1e-12);
        assert!(sigmoid(-745.0) > 0.0 || sigmoid(-745.0) == 0.0);
        assert!((sigmoid(30.0) + sigmoid(-30.0) - 1.0).abs() < 1e-15);
    }

    #[test]
    fn signed_modes() {
        assert_eq!(signed_mode(0, 8), 0);
        assert_eq!(signed_mode(4, 8), 4);
        assert_eq!(signed_mode(5, 8), -3);
        assert_eq!(signed_mode(3, 5), -2);
        assert_eq!(signed_mode(2, 5), 2);
    }
}
