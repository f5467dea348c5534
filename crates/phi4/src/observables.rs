//! Lattice observables with binned-jackknife errors (SPEC section 7).
//!
//! With M the site average of phi and V = L^2: `<|M|>`, `<M>`, `<M^2>`,
//! `chi = V (<M^2> - <|M|>^2)`, `chi_2pt = sum_x <phi_0 phi_x> = V <M^2>`,
//! Binder `U = 1 - <M^4> / (3 <M^2>^2)`, `<phi^2>`, `<phi^4>` (site averages), the action
//! density `<S>/V`, the zero-momentum time-slice correlator
//! `C(t) = 1/(V L) sum_y <R_y R_{y+t}>` (R_y the sum of row y) and the effective mass
//! `m_eff(t) = arccosh((C(t-1) + C(t+1)) / (2 C(t)))`.

use crate::action::{Couplings, Lattice};
use crate::stats::{tau_int, Binned, Estimate, TauInt};
use crate::{Phi4Error, Result};
use serde::Serialize;

/// Every observable of SPEC section 7 for one ensemble.
#[derive(Debug, Clone, Serialize)]
pub struct Observables {
    /// Configurations N.
    pub n: usize,
    /// Lattice size L.
    pub l: usize,
    /// Samples per jackknife bin and number of bins.
    pub bin_size: usize,
    /// Jackknife bins.
    pub bins: usize,
    /// <|M|>, M the magnetisation per site.
    pub abs_m: Estimate,
    /// `<M>`.
    pub m: Estimate,
    /// <M^2>.
    pub m2: Estimate,
    /// Susceptibility V (<M^2> - <|M|>^2).
    pub chi: Estimate,
    /// Two-point susceptibility V <M^2>.
    pub chi_2pt: Estimate,
    /// Binder cumulant 1 - <M^4> / (3 <M^2>^2).
    pub binder: Estimate,
    /// <phi^2> per site.
    pub phi2: Estimate,
    /// <phi^4> per site.
    pub phi4: Estimate,
    /// `<S> / V` (with the couplings).
    pub action_density: Option<Estimate>,
    /// Zero-momentum correlator C(t), t = 0 .. L - 1.
    pub c_t: Vec<Estimate>,
    /// m_eff(t) for t = 1 .. L/2 - 1 (None where the cosh argument is below 1).
    pub m_eff: Vec<Option<Estimate>>,
    /// tau_int in units of the spacing of the configurations, in file order.
    pub tau_int_abs_m: TauInt,
    /// tau_int of phi^2.
    pub tau_int_phi2: TauInt,
    /// tau_int of the action (with the couplings).
    pub tau_int_action: Option<TauInt>,
}

// indices of the primaries
const ABS_M: usize = 0;
const M1: usize = 1;
const M2: usize = 2;
const M4: usize = 3;
const PHI2: usize = 4;
const PHI4: usize = 5;
const ACT: usize = 6;
const C0: usize = 7;

fn primaries(phi: &[f64], lat: Option<&Lattice>, l: usize, out: &mut [f64]) {
    let v = (l * l) as f64;
    let m = phi.iter().sum::<f64>() / v;
    out[ABS_M] = m.abs();
    out[M1] = m;
    out[M2] = m * m;
    out[M4] = m * m * m * m;
    out[PHI2] = phi.iter().map(|p| p * p).sum::<f64>() / v;
    out[PHI4] = phi.iter().map(|p| (p * p) * (p * p)).sum::<f64>() / v;
    out[ACT] = lat.map_or(0.0, |lat| lat.action(phi) / v);
    let rows: Vec<f64> = phi.chunks_exact(l).map(|r| r.iter().sum()).collect();
    for t in 0..l {
        out[C0 + t] = (0..l).map(|y| rows[y] * rows[(y + t) % l]).sum::<f64>() / (v * l as f64);
    }
}

/// Measures `configs` (N x L x L, row-major, in Monte Carlo order). `couplings` enables the
/// action density. Bins hold max(1, ceil(2 tau_int)) samples (tau of |M| and phi^2), at most N/20.
pub fn measure(configs: &[f64], l: usize, couplings: Option<Couplings>) -> Result<Observables> {
    measure_with(configs, l, couplings, None)
}

/// As [`measure`], for independent proposals with importance weights `w = exp(log_w)` (SPEC
/// section 9): every mean becomes the self-normalised `sum w O / sum w`, and the jackknife runs
/// over bins of the weighted sums and the weights, so errors include the weights' fluctuation.
/// A weight of `-inf` (a rejected, non-finite proposal) counts as zero.
pub fn measure_weighted(
    configs: &[f64],
    l: usize,
    couplings: Option<Couplings>,
    log_w: &[f64],
) -> Result<Observables> {
    measure_with(configs, l, couplings, Some(log_w))
}

fn measure_with(
    configs: &[f64],
    l: usize,
    couplings: Option<Couplings>,
    log_w: Option<&[f64]>,
) -> Result<Observables> {
    let v = l * l;
    if l < 2 || configs.is_empty() || !configs.len().is_multiple_of(v) {
        return Err(Phi4Error::BadConfigurations(format!(
            "{} values do not make whole L x L = {l} x {l} configurations",
            configs.len()
        )));
    }
    if let Some(i) = configs.iter().position(|x| !x.is_finite()) {
        return Err(Phi4Error::BadConfigurations(format!(
            "non-finite value in configuration {} at site {}",
            i / v,
            i % v
        )));
    }
    let n = configs.len() / v;
    if n < 2 {
        return Err(Phi4Error::BadConfigurations(
            "at least 2 configurations are needed for errors".into(),
        ));
    }
    let lat = couplings.map(|c| Lattice { l, couplings: c });
    let p = C0 + l;
    let mut prim = vec![0.0; n * p];
    for (phi, out) in configs.chunks_exact(v).zip(prim.chunks_exact_mut(p)) {
        primaries(phi, lat.as_ref(), l, out);
    }
    let series = |j: usize| {
        prim.iter()
            .skip(j)
            .step_by(p)
            .copied()
            .collect::<Vec<f64>>()
    };
    let tau_abs_m = tau_int(&[&series(ABS_M)]);
    let tau_phi2 = tau_int(&[&series(PHI2)]);
    let tau_action = lat.map(|_| tau_int(&[&series(ACT)]));
    let tau_max = tau_abs_m
        .tau
        .max(tau_phi2.tau)
        .max(tau_action.map_or(0.0, |t| t.tau));
    let bin_size = ((2.0 * tau_max).ceil() as usize).clamp(1, (n / 20).max(1));
    let binned = match log_w {
        None => Binned::new(&prim, p, bin_size),
        Some(lw) => Binned::new(&weighted_primaries(&prim, p, lw)?, p + 1, bin_size),
    };
    let vf = v as f64;
    let jk = |f: &dyn Fn(&[f64]) -> f64| match log_w {
        None => binned.jackknife(f),
        // the weighted means of the primaries: sum w O / sum w
        Some(_) => binned.jackknife(|m| {
            let means: Vec<f64> = m[..p].iter().map(|x| x / m[p]).collect();
            f(&means)
        }),
    };
    let c_t: Vec<Estimate> = (0..l).map(|t| jk(&|m| m[C0 + t])).collect();
    let m_eff = (1..l / 2)
        .map(|t| {
            let f = move |m: &[f64]| ((m[C0 + t - 1] + m[C0 + t + 1]) / (2.0 * m[C0 + t])).acosh();
            let e = jk(&f);
            e.value.is_finite().then_some(e)
        })
        .collect();
    Ok(Observables {
        n,
        l,
        bin_size,
        bins: binned.bins(),
        abs_m: jk(&|m| m[ABS_M]),
        m: jk(&|m| m[M1]),
        m2: jk(&|m| m[M2]),
        chi: jk(&|m| vf * (m[M2] - m[ABS_M] * m[ABS_M])),
        chi_2pt: jk(&|m| vf * m[M2]),
        binder: jk(&|m| 1.0 - m[M4] / (3.0 * m[M2] * m[M2])),
        phi2: jk(&|m| m[PHI2]),
        phi4: jk(&|m| m[PHI4]),
        action_density: lat.map(|_| jk(&|m| m[ACT])),
        c_t,
        m_eff,
        tau_int_abs_m: tau_abs_m,
        tau_int_phi2: tau_phi2,
        tau_int_action: tau_action,
    })
}

/// The rows `(w O_1, ..., w O_p, w)` of every configuration (`prim`: N rows of p values),
/// with `w = exp(log_w - max)` and 0 for a non-finite `log_w`: what a jackknife of
/// self-normalised means `sum w O / sum w` bins (SPEC section 9).
pub fn weighted_primaries(prim: &[f64], p: usize, log_w: &[f64]) -> Result<Vec<f64>> {
    let n = prim.len() / p;
    if log_w.len() != n {
        return Err(Phi4Error::BadConfigurations(format!(
            "{} weights for {n} configurations",
            log_w.len()
        )));
    }
    let max = log_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return Err(Phi4Error::BadConfigurations(
            "no configuration has a finite weight".into(),
        ));
    }
    let mut out = Vec::with_capacity(n * (p + 1));
    for (row, &lw) in prim.chunks_exact(p).zip(log_w) {
        let w = if lw.is_finite() {
            (lw - max).exp()
        } else {
            0.0
        };
        out.extend(row.iter().map(|x| w * x));
        out.push(w);
    }
    Ok(out)
}

/// The momentum-space two-point function `<|phi_k|^2> / ...`: for each configuration the
/// unitary DFT power `|F_k|^2 = |sum_x phi_x e^{-ik.x}|^2 / V`, averaged, for all k
/// (row-major (k_y, k_x)), with its standard error. Direct O(V^2) DFT: a test utility.
pub fn momentum_propagator(configs: &[f64], l: usize) -> (Vec<f64>, Vec<f64>) {
    let v = l * l;
    let n = configs.len() / v;
    let two_pi = 2.0 * std::f64::consts::PI / l as f64;
    let mut mean = vec![0.0; v];
    let mut sq = vec![0.0; v];
    for phi in configs.chunks_exact(v) {
        for ky in 0..l {
            for kx in 0..l {
                let (mut re, mut im) = (0.0, 0.0);
                for y in 0..l {
                    for x in 0..l {
                        let a = two_pi * (ky * y + kx * x) as f64;
                        re += phi[y * l + x] * a.cos();
                        im -= phi[y * l + x] * a.sin();
                    }
                }
                let pw = (re * re + im * im) / v as f64;
                mean[ky * l + kx] += pw / n as f64;
                sq[ky * l + kx] += pw * pw / n as f64;
            }
        }
    }
    let err = mean
        .iter()
        .zip(&sq)
        .map(|(m, s)| ((s - m * m) / (n as f64 - 1.0)).max(0.0).sqrt())
        .collect();
    (mean, err)
}

/// One observable of two ensembles (generated samples against a reference) and their
/// difference in units of the combined error.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The observable's key, as in [`Observables`] (`abs_m`, `m2`, `chi`, `chi_2pt`, `binder`,
    /// `phi2`, `phi4`, `action_density`).
    pub name: &'static str,
    /// Its label for tables (`<|M|>`, `Binder`, ...).
    pub label: &'static str,
    /// Its value in the first ensemble (the samples).
    pub samples: Estimate,
    /// Its value in the second ensemble (the reference).
    pub reference: Estimate,
    /// (samples - reference) / sqrt(err_s^2 + err_r^2).
    pub z: f64,
    /// False for an observable that is a function of the others (chi_2pt = V <M^2>): it is
    /// shown but left out of chi^2 and max |z|.
    pub independent: bool,
}

/// z-scores of the scalar observables of `a` (samples) against `b` (reference):
/// <|M|>, <M^2>, chi, chi_2pt, Binder, <phi^2>, <phi^4>, and the action density when both have it.
pub fn compare(a: &Observables, b: &Observables) -> Vec<Comparison> {
    let mut rows: Vec<(&'static str, &'static str, Estimate, Estimate, bool)> = vec![
        ("abs_m", "<|M|>", a.abs_m, b.abs_m, true),
        ("m2", "<M^2>", a.m2, b.m2, true),
        ("chi", "chi", a.chi, b.chi, true),
        ("chi_2pt", "chi_2pt", a.chi_2pt, b.chi_2pt, false),
        ("binder", "Binder", a.binder, b.binder, true),
        ("phi2", "<phi^2>", a.phi2, b.phi2, true),
        ("phi4", "<phi^4>", a.phi4, b.phi4, true),
    ];
    if let (Some(x), Some(y)) = (a.action_density, b.action_density) {
        rows.push(("action_density", "S/V", x, y, true));
    }
    rows.into_iter()
        .map(|(name, label, a, b, independent)| Comparison {
            name,
            label,
            samples: a,
            reference: b,
            z: z_score(a, b),
            independent,
        })
        .collect()
}

/// sum z^2 / n and max |z| over the independent observables of a comparison.
pub fn chi2_and_max_z(rows: &[Comparison]) -> (f64, f64) {
    let ind: Vec<f64> = rows.iter().filter(|c| c.independent).map(|c| c.z).collect();
    let chi2 = ind.iter().map(|z| z * z).sum::<f64>() / ind.len().max(1) as f64;
    (chi2, ind.iter().fold(0.0, |m, z| m.max(z.abs())))
}

/// (a - b) / sqrt(err_a^2 + err_b^2); 0 when both are exact and equal.
pub fn z_score(a: Estimate, b: Estimate) -> f64 {
    let diff = a.value - b.value;
    let err = a.error.hypot(b.error);
    if err > 0.0 {
        diff / err
    } else if diff == 0.0 {
        0.0
    } else {
        f64::INFINITY.copysign(diff)
    }
}
