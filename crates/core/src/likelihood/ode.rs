//! Exact likelihood of the probability-flow ODE model (SPEC section 6, Song et al. 2021):
//!
//! ```text
//! f_i(chi, t)  = -1/2 beta_i (chi_i - eps_hat_i / sigma_i)                    (SPEC section 5)
//! div f        = -1/2 sum_i beta_i + 1/2 sum_i (beta_i / sigma_i) d eps_hat_i / d chi_i
//! log p_0(chi0) = log N(chi_1; 0, I) + int_{t_min}^{t_max} div f(chi_t, t) dt
//! ```
//!
//! integrated forward from the data with Dormand-Prince 5(4) (adaptive steps; one step size for
//! the whole batch, error norm RMS over it). The divergence is exact (d probes per evaluation,
//! e_i^T D J e_i) or Hutchinson's `v^T D J v` with Rademacher v, fixed along the trajectory and
//! drawn from the sample's own stream; K probes give K estimates of the integral and their
//! standard error.

use crate::error::{Error, Result};
use crate::process::NoisingState;
use crate::rng::{stream, Purpose};
use crate::schedule::Schedule;
use crate::score::ScoreModel;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How the divergence of the drift is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Divergence {
    /// The trace from d Jacobian probes e_i.
    Exact,
    /// Hutchinson's estimator with Rademacher probes.
    Hutchinson,
}

impl Divergence {
    /// Exact up to d = 256, Hutchinson above (SPEC section 6).
    pub fn auto(d: usize) -> Self {
        if d <= 256 {
            Divergence::Exact
        } else {
            Divergence::Hutchinson
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
/// The settings of the ODE likelihood.
pub struct OdeOptions {
    /// Relative tolerance of the adaptive solver.
    pub rtol: f64,
    /// Absolute tolerance of the adaptive solver.
    pub atol: f64,
    /// Exact or Hutchinson divergence.
    pub divergence: Divergence,
    /// Hutchinson probes per sample (ignored by the exact divergence).
    pub probes: usize,
    /// Seed of the Hutchinson probes.
    pub seed: u64,
    /// Accepted + rejected steps before giving up.
    pub max_steps: usize,
}

impl OdeOptions {
    /// The defaults for dimension d (tolerance 1e-5, exact divergence up to d = 256).
    pub fn new(d: usize) -> Self {
        OdeOptions {
            rtol: 1e-5,
            atol: 1e-5,
            divergence: Divergence::auto(d),
            probes: 1,
            seed: 0,
            max_steps: 10_000,
        }
    }
}

/// log p_0(chi0) per sample (nats, whitened space) and what the solve cost.
#[derive(Debug, Clone, Serialize)]
pub struct OdeLikelihood {
    /// Mean over probes of the log-density of each row.
    pub log_p: Vec<f64>,
    /// Standard error of each row's mean over probes (Hutchinson with >= 2 probes).
    pub probe_se: Option<Vec<f64>>,
    /// The divergence used.
    pub divergence: Divergence,
    /// Drift evaluations (each is one Jacobian-form call per probe on the batch).
    pub drift_evals: usize,
    /// Accepted solver steps.
    pub accepted_steps: usize,
    /// Rejected solver steps.
    pub rejected_steps: usize,
}

/// log p_0 of each row of `chi0` ((n, d) whitened data) under the probability-flow ODE model of
/// `score`; row b draws its probes from stream `first + b` of `opts.seed`.
pub fn ode_log_likelihood(
    score: &dyn ScoreModel,
    schedule: &dyn Schedule,
    chi0: &[f64],
    first: u64,
    opts: &OdeOptions,
) -> Result<OdeLikelihood> {
    let d = schedule.dim();
    if score.dim() != d || !chi0.len().is_multiple_of(d) || chi0.is_empty() {
        return Err(Error::ShapeMismatch {
            what: "ODE likelihood input".into(),
            expected: format!("a score and rows of dimension {d}"),
            got: format!("score {}, {} values", score.dim(), chi0.len()),
        });
    }
    // regression (issue 20): a zero tolerance used to surface as "non-finite drift"
    for (name, tol) in [("tol (rtol)", opts.rtol), ("tol (atol)", opts.atol)] {
        crate::error::check_range(name, tol, f64::MIN_POSITIVE, 1.0)?;
    }
    let n = chi0.len() / d;
    let k = match opts.divergence {
        Divergence::Exact => 1,
        Divergence::Hutchinson if opts.probes >= 1 => opts.probes,
        Divergence::Hutchinson => return Err(Error::param("probes", 0, "at least 1")),
    };
    let probes = match opts.divergence {
        Divergence::Exact => Vec::new(),
        Divergence::Hutchinson => rademacher(n, k, d, opts.seed, first),
    };
    // y = [chi (n d) | integral of div f (n k)]
    let mut y = chi0.to_vec();
    y.resize(n * d + n * k, 0.0);
    let mut drift_evals = 0;
    let mut f = |t: f64, y: &[f64], dy: &mut [f64]| {
        drift_evals += 1;
        let state = NoisingState::at(schedule, t);
        let (dchi, ddiv) = dy.split_at_mut(n * d);
        match opts.divergence {
            Divergence::Exact => exact_drift(score, &state, &y[..n * d], dchi, ddiv),
            Divergence::Hutchinson => {
                hutchinson_drift(score, &state, &y[..n * d], &probes, k, dchi, ddiv)
            }
        }
    };
    let (t_min, t_max) = schedule.t_range();
    let stats = dopri5(&mut f, t_min, t_max, &mut y, opts)?;
    let (chi1, integral) = y.split_at(n * d);
    let mut log_p = Vec::with_capacity(n);
    let mut probe_se = Vec::with_capacity(n);
    for (b, x1) in chi1.chunks_exact(d).enumerate() {
        let prior = super::log_standard_normal(x1);
        let est: Vec<f64> = integral[b * k..(b + 1) * k]
            .iter()
            .map(|i| prior + i)
            .collect();
        let (mean, var) = crate::numerics::mean_var(&est);
        log_p.push(mean);
        probe_se.push((var / k as f64).sqrt());
    }
    Ok(OdeLikelihood {
        log_p,
        probe_se: (opts.divergence == Divergence::Hutchinson && k >= 2).then_some(probe_se),
        divergence: opts.divergence,
        drift_evals,
        accepted_steps: stats.0,
        rejected_steps: stats.1,
    })
}

/// Samples of the probability-flow ODE with their exact density (SPEC section 9): the prior
/// draws `z` ((n, d) at t_max) are integrated to t_min together with `int div f dt` in one
/// adaptive solve (exact divergence), so that each row's end point and its log-density come
/// from the same trajectory: `log q(chi) = log N(z) + int_{t_min}^{t_max} div f dt` (whitened
/// space). Returns the end points, log q per row, and the solve's cost.
pub fn ode_sample_log_q(
    score: &dyn ScoreModel,
    schedule: &dyn Schedule,
    z: &[f64],
    opts: &OdeOptions,
) -> Result<(Vec<f64>, OdeLikelihood)> {
    let d = schedule.dim();
    if score.dim() != d || !z.len().is_multiple_of(d) || z.is_empty() {
        return Err(Error::ShapeMismatch {
            what: "ODE proposals".into(),
            expected: format!("a score and rows of dimension {d}"),
            got: format!("score {}, {} values", score.dim(), z.len()),
        });
    }
    for (name, tol) in [("tol (rtol)", opts.rtol), ("tol (atol)", opts.atol)] {
        crate::error::check_range(name, tol, f64::MIN_POSITIVE, 1.0)?;
    }
    let n = z.len() / d;
    // y = [chi (n d) | int div f (n)], integrated in s = -t from -t_max to -t_min
    let mut y = z.to_vec();
    y.resize(n * d + n, 0.0);
    let mut drift_evals = 0;
    let mut f = |s: f64, y: &[f64], dy: &mut [f64]| {
        drift_evals += 1;
        let state = NoisingState::at(schedule, -s);
        let (dchi, ddiv) = dy.split_at_mut(n * d);
        exact_drift(score, &state, &y[..n * d], dchi, ddiv);
        dy.iter_mut().for_each(|v| *v = -*v);
    };
    let (t_min, t_max) = schedule.t_range();
    let stats = dopri5(&mut f, -t_max, -t_min, &mut y, opts)?;
    let (chi, integral) = y.split_at(n * d);
    // the solve accumulated int_{t_max}^{t_min} div f dt = -int_{t_min}^{t_max} div f dt
    let log_p = chi
        .chunks_exact(d)
        .zip(z.chunks_exact(d))
        .zip(integral)
        .map(|((_, z0), i)| super::log_standard_normal(z0) - i)
        .collect();
    Ok((
        chi.to_vec(),
        OdeLikelihood {
            log_p,
            probe_se: None,
            divergence: Divergence::Exact,
            drift_evals,
            accepted_steps: stats.0,
            rejected_steps: stats.1,
        },
    ))
}

/// k Rademacher probes per row: (n, k, d).
fn rademacher(n: usize, k: usize, d: usize, seed: u64, first: u64) -> Vec<f64> {
    let mut v = Vec::with_capacity(n * k * d);
    for b in 0..n as u64 {
        let mut rng = stream(seed, Purpose::OdeProbes, first + b);
        v.extend((0..k * d).map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 }));
    }
    v
}

/// The probability-flow velocity -1/2 beta_i (chi_i - eps_hat_i / sigma_i) of every row.
fn velocities(state: &NoisingState, chi: &[f64], eps_hat: &[f64], out: &mut [f64]) {
    let d = state.dim();
    for (b, (o, x)) in out.chunks_exact_mut(d).zip(chi.chunks_exact(d)).enumerate() {
        for i in 0..d {
            o[i] = crate::sampler::velocity(state, i, x[i], eps_hat[b * d + i]);
        }
    }
}

/// The divergence weights w_i = beta_i / sigma_i and the constant -1/2 sum_i beta_i.
fn divergence_weights(state: &NoisingState) -> (Vec<f64>, f64) {
    let d = state.dim();
    let w = (0..d).map(|i| state.beta(i) / state.sigma(i)).collect();
    let c = -0.5 * (0..d).map(|i| state.beta(i)).sum::<f64>();
    (w, c)
}

/// Drift and exact divergence: rows (b, i) probe e_i^T D J e_i = w_i J_ii, a few samples per call.
fn exact_drift(
    score: &dyn ScoreModel,
    state: &NoisingState,
    chi: &[f64],
    dchi: &mut [f64],
    ddiv: &mut [f64],
) {
    let d = state.dim();
    let n = chi.len() / d;
    let (w, c) = divergence_weights(state);
    let per_call = (4096 / d).max(1);
    let mut eps_hat = vec![0.0; chi.len()];
    for start in (0..n).step_by(per_call) {
        let m = per_call.min(n - start);
        let rows = m * d;
        let mut x = Vec::with_capacity(rows * d);
        let mut u = vec![0.0; rows * d];
        let mut v = vec![0.0; rows * d];
        for b in start..start + m {
            for i in 0..d {
                x.extend_from_slice(&chi[b * d..(b + 1) * d]);
                let row = ((b - start) * d + i) * d;
                u[row + i] = w[i];
                v[row + i] = 1.0;
            }
        }
        let mut e = vec![0.0; rows * d];
        let mut q = vec![0.0; rows];
        score.jacobian_form(&x, state, &u, &v, &mut e, &mut q);
        for b in 0..m {
            eps_hat[(start + b) * d..(start + b + 1) * d]
                .copy_from_slice(&e[b * d * d..b * d * d + d]);
            ddiv[start + b] = c + 0.5 * q[b * d..(b + 1) * d].iter().sum::<f64>();
        }
    }
    velocities(state, chi, &eps_hat, dchi);
}

/// Drift and Hutchinson divergences: rows (b, k) probe v_bk^T D J v_bk.
fn hutchinson_drift(
    score: &dyn ScoreModel,
    state: &NoisingState,
    chi: &[f64],
    probes: &[f64],
    k: usize,
    dchi: &mut [f64],
    ddiv: &mut [f64],
) {
    let d = state.dim();
    let n = chi.len() / d;
    let (w, c) = divergence_weights(state);
    let mut x = Vec::with_capacity(n * k * d);
    for row in chi.chunks_exact(d) {
        for _ in 0..k {
            x.extend_from_slice(row);
        }
    }
    let u: Vec<f64> = probes
        .chunks_exact(d)
        .flat_map(|v| v.iter().zip(&w).map(|(a, b)| a * b))
        .collect();
    let mut e = vec![0.0; n * k * d];
    let mut q = vec![0.0; n * k];
    score.jacobian_form(&x, state, &u, probes, &mut e, &mut q);
    let mut eps_hat = Vec::with_capacity(n * d);
    for b in 0..n {
        eps_hat.extend_from_slice(&e[b * k * d..b * k * d + d]);
    }
    for (o, qb) in ddiv.iter_mut().zip(&q) {
        *o = c + 0.5 * qb;
    }
    velocities(state, chi, &eps_hat, dchi);
}

// Dormand-Prince 5(4) tableau.
const C: [f64; 6] = [0.2, 0.3, 0.8, 8.0 / 9.0, 1.0, 1.0];
const A: [&[f64]; 6] = [
    &[0.2],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
    ],
    &[
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ],
    &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
/// 5th-order minus embedded 4th-order weights (the error estimate).
const E: [f64; 7] = [
    71.0 / 57600.0,
    0.0,
    -71.0 / 16695.0,
    71.0 / 1920.0,
    -17253.0 / 339200.0,
    22.0 / 525.0,
    -1.0 / 40.0,
];

/// The right-hand side f(t, y, dy/dt) of an ODE.
type Rhs<'a> = dyn FnMut(f64, &[f64], &mut [f64]) + 'a;

/// Integrates dy/dt = f(t, y) from t0 to t1 in place; returns (accepted, rejected) steps.
fn dopri5(
    f: &mut Rhs<'_>,
    t0: f64,
    t1: f64,
    y: &mut [f64],
    opts: &OdeOptions,
) -> Result<(usize, usize)> {
    let m = y.len();
    let mut k: Vec<Vec<f64>> = vec![vec![0.0; m]; 7];
    let mut stage = vec![0.0; m];
    let mut y_new = vec![0.0; m];
    f(t0, y, &mut k[0]);
    let (mut t, mut h) = (t0, 0.01 * (t1 - t0));
    let (mut accepted, mut rejected) = (0, 0);
    while t1 - t > 1e-12 * (t1 - t0) {
        if accepted + rejected >= opts.max_steps {
            return Err(Error::Numerical {
                what: "probability-flow ODE likelihood".into(),
                reason: format!(
                    "{} steps did not reach t = {t1} (at t = {t}); loosen rtol/atol",
                    opts.max_steps
                ),
            });
        }
        h = h.min(t1 - t);
        for s in 0..6 {
            for j in 0..m {
                stage[j] = y[j]
                    + h * A[s]
                        .iter()
                        .enumerate()
                        .map(|(l, a)| a * k[l][j])
                        .sum::<f64>();
            }
            let (_, rest) = k.split_at_mut(s + 1);
            f(t + C[s] * h, &stage, &mut rest[0]);
        }
        // the last stage is the 5th-order solution (FSAL)
        y_new.copy_from_slice(&stage);
        let mut err = 0.0;
        for j in 0..m {
            let e = h * E.iter().enumerate().map(|(l, c)| c * k[l][j]).sum::<f64>();
            let sc = opts.atol + opts.rtol * y[j].abs().max(y_new[j].abs());
            err += (e / sc).powi(2);
        }
        let err = (err / m as f64).sqrt();
        if !err.is_finite() {
            return Err(Error::Numerical {
                what: "probability-flow ODE likelihood".into(),
                reason: format!("non-finite drift at t = {t}"),
            });
        }
        if err <= 1.0 {
            t += h;
            y.copy_from_slice(&y_new);
            k.swap(0, 6);
            accepted += 1;
        } else {
            rejected += 1;
        }
        h *= (0.9 * err.max(1e-10).powf(-0.2)).clamp(0.2, 5.0);
    }
    Ok((accepted, rejected))
}
