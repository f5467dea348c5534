//! The discrete-time ELBO of the hierarchical model (GUD eq. 12, VDM), per component i:
//!
//! ```text
//! -ELBO = KL(q(chi_1 | chi0) || N(0, I))                                  prior
//!       + sum_j E_q KL(q(chi_s | chi_t, chi0) || p(chi_s | chi_t))         diffusion, s < t
//!       + E_q [-log p(chi0 | chi_t0)]                                      reconstruction
//! ```
//!
//! p(chi_s | chi_t) is the ancestral kernel of the sampler (SPEC section 5): the mean of
//! q(chi_s | chi_t, chi0) with chi0 -> chi0_hat and variance `var_q + c^2 v_t`. With
//! `w = expm1(gamma_t - gamma_s)` (= (snr_s - snr_t) sigma_t^2 / alpha_t^2) and
//! `r = (snr_s - snr_t) v_t = c^2 v_t / var_q`, the step KL is
//! `1/2 [log(1 + r) - r / (1 + r) + w (eps - eps_hat)^2 / (1 + r)]`
//! (r = 0, the DDPM choice, gives VDM's `1/2 w (eps - eps_hat)^2`). A frozen component
//! (gamma_s = gamma_t) costs exactly 0. The decoder is the ancestral jump to t = 0 with the
//! Gaussian posterior variance: `p(chi0 | chi_t0) = N(chi0_hat, v_t0)`. Every expectation over
//! eps is one draw per step from the sample's own stream.

use crate::error::{Error, Result};
use crate::process::NoisingState;
use crate::rng::{stream, Purpose};
use crate::sampler::time_grid;
use crate::sampler::{PosteriorVariance, TimeGrid};
use crate::schedule::Schedule;
use crate::score::{gaussian_posterior_variance, ScoreModel};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq)]
/// The settings of the discrete-time ELBO.
pub struct ElboOptions {
    /// Steps T of the hierarchy between t_min and t_max (T + 1 score evaluations per sample).
    pub steps: usize,
    /// The time grid of the hierarchy.
    pub grid: TimeGrid,
    /// The reverse kernels' posterior variance.
    pub posterior_variance: PosteriorVariance,
    /// Seed of the noise (row k uses stream k).
    pub seed: u64,
}

/// The three parts of -ELBO for one sample, in nats (whitened component space).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct ElboTerms {
    /// KL of the last latent against the prior.
    pub prior: f64,
    /// The diffusion terms summed over steps.
    pub diffusion: f64,
    /// -log p(chi0 | chi_t1) of the first step.
    pub reconstruction: f64,
}

impl ElboTerms {
    /// -ELBO: prior + diffusion + reconstruction.
    pub fn total(&self) -> f64 {
        self.prior + self.diffusion + self.reconstruction
    }
}

/// -ELBO of each row of `chi0` ((n, d) whitened data); row b draws its noise from stream
/// `first + b` of `opts.seed`. `sigma_data` = Sigma_i (for the Gaussian posterior variance).
pub fn negative_elbo(
    score: &dyn ScoreModel,
    schedule: &dyn Schedule,
    sigma_data: &[f64],
    chi0: &[f64],
    first: u64,
    opts: &ElboOptions,
) -> Result<Vec<ElboTerms>> {
    let d = schedule.dim();
    if score.dim() != d || sigma_data.len() != d || !chi0.len().is_multiple_of(d) {
        return Err(Error::ShapeMismatch {
            what: "ELBO input".into(),
            expected: format!("score, Sigma and rows of dimension {d}"),
            got: format!(
                "score {}, Sigma {}, {} values",
                score.dim(),
                sigma_data.len(),
                chi0.len()
            ),
        });
    }
    let n = chi0.len() / d;
    // t_max = times[0] > ... > times[T] = t_min
    let times = time_grid(schedule, opts.steps + 1, opts.grid)?;
    let states: Vec<NoisingState> = times
        .iter()
        .map(|&t| NoisingState::at(schedule, t))
        .collect();
    let mut rngs: Vec<ChaCha8Rng> = (0..n as u64)
        .map(|b| stream(opts.seed, Purpose::Elbo, first + b))
        .collect();
    let mut terms: Vec<ElboTerms> = chi0
        .chunks_exact(d)
        .map(|x| ElboTerms {
            prior: prior_kl(&states[0], x),
            ..ElboTerms::default()
        })
        .collect();
    let mut eps = vec![0.0; chi0.len()];
    let mut chi_t = vec![0.0; chi0.len()];
    let mut eps_hat = vec![0.0; chi0.len()];
    for w in states.windows(2) {
        let (t, s) = (&w[0], &w[1]);
        noise(t, chi0, &mut rngs, &mut eps, &mut chi_t);
        score.eps_hat(&chi_t, t, None, &mut eps_hat);
        for (b, term) in terms.iter_mut().enumerate() {
            let r = b * d..(b + 1) * d;
            term.diffusion += step_kl(
                s,
                t,
                sigma_data,
                opts.posterior_variance,
                &eps[r.clone()],
                &eps_hat[r],
            );
        }
    }
    let t0 = states.last().expect("grid has points");
    noise(t0, chi0, &mut rngs, &mut eps, &mut chi_t);
    score.eps_hat(&chi_t, t0, None, &mut eps_hat);
    for (b, term) in terms.iter_mut().enumerate() {
        let r = b * d..(b + 1) * d;
        term.reconstruction = reconstruction(t0, sigma_data, &eps[r.clone()], &eps_hat[r]);
    }
    Ok(terms)
}

/// chi_t = alpha_t chi0 + sigma_t eps with a fresh eps per row from the row's stream.
fn noise(
    state: &NoisingState,
    chi0: &[f64],
    rngs: &mut [ChaCha8Rng],
    eps: &mut [f64],
    chi_t: &mut [f64],
) {
    let d = state.dim();
    eps.par_chunks_mut(d)
        .zip(chi_t.par_chunks_mut(d))
        .zip(chi0.par_chunks(d).zip(rngs.par_iter_mut()))
        .for_each(|((e, y), (x, rng))| {
            for i in 0..d {
                e[i] = StandardNormal.sample(rng);
                y[i] = state.alpha(i) * x[i] + state.sigma(i) * e[i];
            }
        });
}

/// KL(N(alpha_1 chi0, sigma_1^2) || N(0, 1)) summed over components:
/// 1/2 sum_i [alpha_i^2 chi0_i^2 + sigma_i^2 - 1 - log sigma_i^2] (sigma^2 - 1 = -alpha^2).
fn prior_kl(t1: &NoisingState, chi0: &[f64]) -> f64 {
    let a2 = t1.alpha_sq();
    0.5 * (0..chi0.len())
        .map(|i| a2[i] * chi0[i] * chi0[i] - a2[i] - t1.log_sigma_sq(i))
        .sum::<f64>()
}

/// The KL of one step s < t for one sample (module docs).
fn step_kl(
    s: &NoisingState,
    t: &NoisingState,
    sigma_data: &[f64],
    posterior: PosteriorVariance,
    eps: &[f64],
    eps_hat: &[f64],
) -> f64 {
    let mut kl = 0.0;
    for i in 0..eps.len() {
        let dg = t.gamma()[i] - s.gamma()[i];
        if dg <= 0.0 {
            continue; // frozen over the step: q and p agree exactly
        }
        let w = dg.exp_m1();
        let e2 = (eps[i] - eps_hat[i]).powi(2);
        let r = match posterior {
            PosteriorVariance::None => 0.0,
            PosteriorVariance::Gaussian => {
                // snr_s - snr_t = exp(-gamma_s) (1 - exp(-dg))
                let dsnr = (-s.gamma()[i]).exp() * -(-dg).exp_m1();
                let v =
                    gaussian_posterior_variance(t.alpha_sq()[i], t.sigma_sq()[i], sigma_data[i]);
                dsnr * v
            }
        };
        kl += 0.5 * (r.ln_1p() - r / (1.0 + r) + w * e2 / (1.0 + r));
    }
    kl
}

/// -log N(chi0; chi0_hat, v_t0) summed over components, with chi0 - chi0_hat =
/// (sigma / alpha) (eps_hat - eps) and v = Sigma sigma^2 / (alpha^2 Sigma + sigma^2).
fn reconstruction(t0: &NoisingState, sigma_data: &[f64], eps: &[f64], eps_hat: &[f64]) -> f64 {
    let (a2, s2) = (t0.alpha_sq(), t0.sigma_sq());
    (0..eps.len())
        .map(|i| {
            let v = gaussian_posterior_variance(a2[i], s2[i], sigma_data[i]);
            // (chi0 - chi0_hat)^2 / v = (eps_hat - eps)^2 (alpha^2 Sigma + sigma^2) / (alpha^2 Sigma)
            let ratio = (a2[i] * sigma_data[i] + s2[i]) / (a2[i] * sigma_data[i]);
            0.5 * ((2.0 * std::f64::consts::PI * v).ln() + (eps_hat[i] - eps[i]).powi(2) * ratio)
        })
        .sum()
}
