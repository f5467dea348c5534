//! The Gaussian score (SPEC section 4): exact for data that are Gaussian with diagonal
//! covariance Sigma in whitened component space,
//!
//! ```text
//! eps_hat_i = sigma_i chi_i / (alpha_i^2 Sigma_i + sigma_i^2)
//! ```
//!
//! With the `free` prior on free-field data this is the exact score (slides: "initialise with
//! the coloured Gaussian score"); it is also the Gaussian part of every other model.

use super::{active_or_all, ScoreModel};
use crate::process::NoisingState;
use rayon::prelude::*;

#[derive(Debug, Clone)]
/// The exact score of Gaussian data with per-component variances Sigma_i (SPEC section 4).
pub struct GaussianScore {
    sigma_data: Vec<f64>,
}

impl GaussianScore {
    /// `sigma_data` = Sigma_i, the data variance of each whitened component.
    pub fn new(sigma_data: Vec<f64>) -> Self {
        GaussianScore { sigma_data }
    }

    /// Sigma_i per component.
    pub fn sigma_data(&self) -> &[f64] {
        &self.sigma_data
    }
}

/// eps_hat_i = sigma_i chi_i / (alpha_i^2 Sigma_i + sigma_i^2), for one component.
pub fn gaussian_eps(chi_t: f64, alpha_sq: f64, sigma_sq: f64, sigma_data: f64) -> f64 {
    sigma_sq.sqrt() * chi_t / (alpha_sq * sigma_data + sigma_sq)
}

/// d eps_hat_i / d chi_i = sigma_i / (alpha_i^2 Sigma_i + sigma_i^2): the (diagonal) Jacobian
/// of the Gaussian score, for one component.
pub fn gaussian_eps_derivative(alpha_sq: f64, sigma_sq: f64, sigma_data: f64) -> f64 {
    sigma_sq.sqrt() / (alpha_sq * sigma_data + sigma_sq)
}

/// v_t,i = Sigma_i sigma_i^2 / (alpha_i^2 Sigma_i + sigma_i^2): Var(chi0_i | chi_t) for Gaussian
/// data (SPEC section 5, the posterior variance of the ancestral sampler).
pub fn gaussian_posterior_variance(alpha_sq: f64, sigma_sq: f64, sigma_data: f64) -> f64 {
    sigma_data * sigma_sq / (alpha_sq * sigma_data + sigma_sq)
}

impl ScoreModel for GaussianScore {
    fn name(&self) -> &'static str {
        "gaussian"
    }
    fn dim(&self) -> usize {
        self.sigma_data.len()
    }
    fn eps_hat(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        active: Option<&[usize]>,
        eps_hat: &mut [f64],
    ) {
        let d = self.dim();
        let (a2, s2) = (state.alpha_sq(), state.sigma_sq());
        eps_hat
            .par_chunks_mut(d)
            .zip(chi_t.par_chunks(d))
            .for_each(|(out, chi)| {
                for i in active_or_all(active, d) {
                    out[i] = gaussian_eps(chi[i], a2[i], s2[i], self.sigma_data[i]);
                }
            });
    }

    /// Exact: J is diagonal, d eps_hat_i / d chi_i = sigma_i / (alpha_i^2 Sigma_i + sigma_i^2).
    fn eps_jacobian(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        eps_hat: &mut [f64],
        jac: &mut [f64],
    ) {
        let d = self.dim();
        self.eps_hat(chi_t, state, None, eps_hat);
        let (a2, s2) = (state.alpha_sq(), state.sigma_sq());
        jac.fill(0.0);
        for j in jac.chunks_exact_mut(d * d) {
            for i in 0..d {
                j[i * d + i] = gaussian_eps_derivative(a2[i], s2[i], self.sigma_data[i]);
            }
        }
    }

    /// J is diagonal: d eps_hat_i / d chi_i = sigma_i / (alpha_i^2 Sigma_i + sigma_i^2).
    fn jacobian_form(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        u: &[f64],
        v: &[f64],
        eps_hat: &mut [f64],
        q: &mut [f64],
    ) {
        let d = self.dim();
        self.eps_hat(chi_t, state, None, eps_hat);
        let (a2, s2) = (state.alpha_sq(), state.sigma_sq());
        for (b, qb) in q.iter_mut().enumerate() {
            *qb = (0..d)
                .map(|i| {
                    let jac = gaussian_eps_derivative(a2[i], s2[i], self.sigma_data[i]);
                    u[b * d + i] * jac * v[b * d + i]
                })
                .sum();
        }
    }
}
