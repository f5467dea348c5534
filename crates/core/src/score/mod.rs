//! Score models (SPEC section 4). Every model predicts `eps_hat(chi_t, gamma_t)` in whitened
//! component space for a batch of states; the score is `grad_chi log p_t = -eps_hat / sigma`.
//!
//! Models: [`GaussianScore`] (exact for Gaussian data), [`MixtureScore`] (the analytic base
//! with fitted per-component mixtures), [`EmpiricalScore`] (the optimal
//! denoiser of a finite training set, lecture 003), [`SmoothedScore`] (Scarvelis et al.: weights
//! averaged over perturbations of the query) and [`ElsScore`] (Kamb & Ganguli's local
//! equivariant patch machine). The trained network lives in its own crate and implements the
//! same trait.

mod config;
mod els;
mod empirical;
mod gaussian;
mod mixture;
#[cfg(test)]
mod tests;

pub use config::{whitened_training_set, ScoreConfig};
pub use els::{ElsScore, PatchRule};
pub use empirical::{EmpiricalScore, SmoothedScore};
pub use gaussian::{
    gaussian_eps, gaussian_eps_derivative, gaussian_posterior_variance, GaussianScore,
};
pub use mixture::{
    fit_base, zero_modes, AnalyticBase, BaseConfig, FittedMixture, Mixture1d, MixtureConfig,
    MixtureModes, MixtureScore, ModeSet,
};

use crate::process::NoisingState;

/// A model of `eps_hat(chi_t, gamma_t)` in whitened component space.
pub trait ScoreModel: Send + Sync {
    /// The config name (`gaussian`, `empirical`, `smoothed`, `els`, `neural`).
    fn name(&self) -> &'static str;
    /// Number of components d.
    fn dim(&self) -> usize;
    /// eps_hat for a batch: `chi_t` and `eps_hat` are (n, d) row-major. Components not listed in
    /// `active` (when given) need not be written: the RG projection never reads them.
    fn eps_hat(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        active: Option<&[usize]>,
        eps_hat: &mut [f64],
    );

    /// `q_b = u_b^T J_b v_b` with `J_b = d eps_hat_b / d chi_t,b` for every row b, together with
    /// eps_hat itself (all components). The likelihood (SPEC section 6) needs it for the
    /// divergence of the probability-flow drift. `chi_t`, `u`, `v`, `eps_hat` are (n, d), `q` is
    /// (n). The default takes central differences along v (three evaluations, error O(h^2) with
    /// h = [`JACOBIAN_FD_STEP`]); models with an analytic or automatic Jacobian override it.
    fn jacobian_form(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        u: &[f64],
        v: &[f64],
        eps_hat: &mut [f64],
        q: &mut [f64],
    ) {
        default_jacobian_form(self, chi_t, state, u, v, eps_hat, q);
    }

    /// eps_hat and its full Jacobian for every row: `chi_t`, `eps_hat` (n, d), `jac` (n, d, d)
    /// with `jac[b][i][k] = d eps_hat_i / d chi_k` at row b (exact sampling, SPEC section 9).
    /// The default takes central differences ([`finite_difference_jacobian`], 2d evaluations per
    /// row, batched); models with an analytic or automatic Jacobian override it.
    fn eps_jacobian(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        eps_hat: &mut [f64],
        jac: &mut [f64],
    ) {
        self.eps_hat(chi_t, state, None, eps_hat);
        finite_difference_jacobian(self, chi_t, state, jac);
    }
}

/// [`ScoreModel::jacobian_form`] by central differences along v (three evaluations, error
/// O(h^2) with h = [`JACOBIAN_FD_STEP`]): the default, callable from models that override it
/// only in some cases.
pub fn default_jacobian_form<M: ScoreModel + ?Sized>(
    model: &M,
    chi_t: &[f64],
    state: &NoisingState,
    u: &[f64],
    v: &[f64],
    eps_hat: &mut [f64],
    q: &mut [f64],
) {
    let h = JACOBIAN_FD_STEP;
    let shifted = |sign: f64| -> Vec<f64> {
        let x: Vec<f64> = chi_t.iter().zip(v).map(|(c, w)| c + sign * h * w).collect();
        let mut e = vec![0.0; x.len()];
        model.eps_hat(&x, state, None, &mut e);
        e
    };
    let (plus, minus) = (shifted(1.0), shifted(-1.0));
    model.eps_hat(chi_t, state, None, eps_hat);
    let d = model.dim();
    for (b, qb) in q.iter_mut().enumerate() {
        let r = b * d..(b + 1) * d;
        *qb = u[r.clone()]
            .iter()
            .zip(&plus[r.clone()])
            .zip(&minus[r])
            .map(|((w, p), m)| w * (p - m) / (2.0 * h))
            .sum();
    }
}

/// Central differences of eps_hat for every row and direction: `jac` (n, d, d) with
/// `jac[b][i][k] = d eps_hat_i / d chi_k` at row b, by 2d perturbed copies of each row
/// evaluated together (in blocks of at most 4096 rows).
pub fn finite_difference_jacobian<M: ScoreModel + ?Sized>(
    model: &M,
    chi_t: &[f64],
    state: &NoisingState,
    jac: &mut [f64],
) {
    let d = model.dim();
    let h = JACOBIAN_FD_STEP;
    let rows: Vec<(usize, usize)> = (0..chi_t.len() / d)
        .flat_map(|b| (0..d).map(move |k| (b, k)))
        .collect();
    for block in rows.chunks((4096 / (2 * d)).max(1)) {
        let mut x = Vec::with_capacity(2 * block.len() * d);
        for &(b, k) in block {
            for sign in [1.0, -1.0] {
                let start = x.len();
                x.extend_from_slice(&chi_t[b * d..(b + 1) * d]);
                x[start + k] += sign * h;
            }
        }
        let mut e = vec![0.0; x.len()];
        model.eps_hat(&x, state, None, &mut e);
        for (m, &(b, k)) in block.iter().enumerate() {
            let (plus, minus) = (
                &e[2 * m * d..(2 * m + 1) * d],
                &e[(2 * m + 1) * d..(2 * m + 2) * d],
            );
            for i in 0..d {
                jac[b * d * d + i * d + k] = (plus[i] - minus[i]) / (2.0 * h);
            }
        }
    }
}

/// The step of the central differences in [`ScoreModel::jacobian_form`] (whitened units, where
/// the data have unit scale: truncation ~h^2, rounding ~1e-16 / h).
pub const JACOBIAN_FD_STEP: f64 = 1e-4;

/// score = -eps_hat / sigma (SPEC section 4).
pub fn score_from_eps(eps_hat: f64, sigma: f64) -> f64 {
    -eps_hat / sigma
}

/// chi0_hat = (chi_t - sigma eps_hat) / alpha (the denoised estimate implied by eps_hat).
pub fn chi0_from_eps(chi_t: f64, eps_hat: f64, alpha: f64, sigma: f64) -> f64 {
    (chi_t - sigma * eps_hat) / alpha
}

/// eps_hat = (chi_t - alpha chi0_hat) / sigma (the noise implied by a denoised estimate).
pub fn eps_from_chi0(chi_t: f64, chi0_hat: f64, alpha: f64, sigma: f64) -> f64 {
    (chi_t - alpha * chi0_hat) / sigma
}

/// The components a step evaluates: the listed ones, or all d.
pub fn active_or_all(active: Option<&[usize]>, d: usize) -> ActiveIter<'_> {
    match active {
        Some(a) => ActiveIter::Listed(a.iter()),
        None => ActiveIter::All(0..d),
    }
}

/// The components to evaluate: the listed ones or all.
pub enum ActiveIter<'a> {
    /// The active components.
    Listed(std::slice::Iter<'a, usize>),
    /// All components.
    All(std::ops::Range<usize>),
}

impl Iterator for ActiveIter<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        match self {
            ActiveIter::Listed(it) => it.next().copied(),
            ActiveIter::All(r) => r.next(),
        }
    }
}
