//! Likelihood (SPEC section 6) of any score model under any design, in whitened component space.
//!
//! * [`negative_elbo`]: the discrete-time ELBO of the hierarchical model (GUD eq. 12, VDM), a
//!   bound `-log p(chi0) <= prior KL + sum of step KLs + reconstruction`.
//! * [`ode_log_likelihood`]: the exact log-density of the probability-flow ODE model by the
//!   instantaneous change of variables, `log p_0(chi0) = log N(chi_1; 0, I) + int_0^1 div f dt`,
//!   with the exact divergence or Hutchinson's estimator.
//!
//! Both return nats per sample for `chi = S^-1 U (phi - mu)`. The density of the field adds the
//! log-Jacobian of the whitening ([`whitening_log_det`]); 8-bit data add the dequantisation
//! offset ([`bits_per_dim`]).

mod elbo;
mod ode;
#[cfg(test)]
mod tests;

pub use elbo::{negative_elbo, ElboOptions, ElboTerms};
pub use ode::{ode_log_likelihood, ode_sample_log_q, Divergence, OdeLikelihood, OdeOptions};

use crate::field::Quantization;
use std::f64::consts::PI;

/// log N(chi; 0, I) = -1/2 |chi|^2 - d/2 log(2 pi), the prior density at t = 1.
pub fn log_standard_normal(chi: &[f64]) -> f64 {
    -0.5 * chi.iter().map(|x| x * x).sum::<f64>() - 0.5 * chi.len() as f64 * (2.0 * PI).ln()
}

/// log |det d chi / d phi| = -sum_i log S_i (chi = S^-1 U (phi - mu), U orthogonal), so that
/// log p(phi) = log p(chi) + whitening_log_det.
pub fn whitening_log_det(scale: &[f64]) -> f64 {
    -scale.iter().map(|s| s.ln()).sum::<f64>()
}

/// Bits per dimension of a negative log-likelihood of the field (nats per sample, d values):
/// `nll / (d ln 2)`, plus for quantised data the dequantisation offset `-log2(bin width)`
/// (7 bits for 8-bit levels scaled to [-1, 1], 8 for [0, 1]).
pub fn bits_per_dim(nll_field_nats: f64, d: usize, quantization: Option<&Quantization>) -> f64 {
    let offset = quantization.map_or(0.0, |q| -q.bin_width.ln());
    (nll_field_nats / d as f64 + offset) / std::f64::consts::LN_2
}
