//! The Gaussian-exponential integrator of the probability-flow ODE (SPEC section 5, `ode`;
//! GUD eq. 16 with the Gaussian score of SPEC section 4 split off).
//!
//! With `eps_hat = eps_gauss + r`, `eps_gauss,i = sigma_i chi_i / V_i`,
//! `V_i = alpha_i^2 Sigma_i + sigma_i^2`, the change of variables
//!
//! ```text
//! y_i = chi_i / sqrt(V_i),      rho_i = asinh( e^{gamma_i / 2} / sqrt(Sigma_i) )
//! ```
//!
//! turns `d chi_i/dt = -1/2 beta_i (chi_i - eps_hat_i / sigma_i)` into `d y_i = r_i d rho_i`:
//! the Gaussian part is integrated exactly (a Gaussian model is sampled exactly with any grid,
//! like the ancestral sampler with the Gaussian posterior variance) and only the residual (the
//! network's correction) is integrated numerically. rho_i is 1/sqrt(SNR_i) at low noise (the
//! EDM sigma) and gamma_i / 2 at high noise. The residual is extrapolated as a polynomial in t
//! through the last `order` evaluations (Adams-Bashforth, one evaluation per step); its weights
//! `w_k,i = int l_k(t) d rho_i(t)` use the exact rho_i(t) of the schedule ([`Plan`]'s
//! quadrature moments), since every component has its own clock. The last step goes to t = 0,
//! rho = 0, where `chi0 = sqrt(Sigma) y`.

use super::{Plan, Sampler, StepInfo};
use crate::process::NoisingState;
use crate::score::{active_or_all, gaussian_eps, ScoreModel};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Highest Adams-Bashforth order offered.
pub const MAX_ORDER: usize = 3;

#[derive(Debug, Clone, Copy)]
/// The per-component exponential integrator with Adams-Bashforth multistep (SPEC section 5).
pub struct ExponentialSampler {
    /// 1 (exponential Euler) to [`MAX_ORDER`].
    pub order: usize,
}

/// rho = asinh(e^{gamma/2} / sqrt(Sigma)): the clock in which the residual drives y.
pub fn rho(gamma: f64, sigma_data: f64) -> f64 {
    ((0.5 * gamma).exp() / sigma_data.sqrt()).asinh()
}

/// The Lagrange basis polynomial k of the nodes `x` (x[0] = 0), as (l_k(X), l_k(0), l_k'(0),
/// l_k''): enough to integrate l_k against d rho by parts with the plan's moments.
fn lagrange(x: &[f64], k: usize, big_x: f64) -> (f64, f64, f64, f64) {
    let others: Vec<f64> = (0..x.len()).filter(|&l| l != k).map(|l| x[l]).collect();
    let den: f64 = others.iter().map(|&xl| x[k] - xl).product();
    match others.as_slice() {
        [] => (1.0, 1.0, 0.0, 0.0),
        [a] => ((big_x - a) / den, -a / den, 1.0 / den, 0.0),
        [a, b] => (
            (big_x - a) * (big_x - b) / den,
            a * b / den,
            -(a + b) / den,
            2.0 / den,
        ),
        _ => unreachable!("order <= {MAX_ORDER}"),
    }
}

impl ExponentialSampler {
    /// The weights `w[k][i] = int_{t_j}^{t_{j+1}} l_k(t) d rho_i(t)` of step j with the nodes
    /// t_j, t_{j-1}, ..., t_{j-m+1}: by parts, `l_k rho | - int l_k' rho dt`.
    pub(super) fn weights(plan: &Plan, j: usize, m: usize) -> Vec<Vec<f64>> {
        let t0 = plan.times[j];
        let x: Vec<f64> = (0..m).map(|k| plan.times[j - k] - t0).collect();
        let big_x = plan.times[j + 1] - t0;
        let (rho_t, rho_s) = (&plan.rho[j], &plan.rho[j + 1]);
        let (m0, m1) = (&plan.rho_moments[j].0, &plan.rho_moments[j].1);
        (0..m)
            .map(|k| {
                let (l_end, l_start, dl0, ddl) = lagrange(&x, k, big_x);
                (0..plan.dim())
                    .map(|i| {
                        if m == 1 {
                            // exact, without the cancellation of the by-parts form
                            rho_s[i] - rho_t[i]
                        } else {
                            l_end * rho_s[i] - l_start * rho_t[i] - dl0 * m0[i] - ddl * m1[i]
                        }
                    })
                    .collect()
            })
            .collect()
    }
}

/// r = eps_hat - eps_gauss on the given components, for every sample of the batch.
fn residual(
    chi: &[f64],
    eps: &[f64],
    state: &NoisingState,
    sigma_data: &[f64],
    active: Option<&[usize]>,
    out: &mut [f64],
) {
    let d = sigma_data.len();
    let (a2, s2) = (state.alpha_sq(), state.sigma_sq());
    out.par_chunks_mut(d)
        .zip(chi.par_chunks(d).zip(eps.par_chunks(d)))
        .for_each(|(r, (x, e))| {
            for i in active_or_all(active, d) {
                r[i] = e[i] - gaussian_eps(x[i], a2[i], s2[i], sigma_data[i]);
            }
        });
}

impl Sampler for ExponentialSampler {
    fn name(&self) -> &'static str {
        "exp"
    }
    fn evals_per_step(&self) -> usize {
        1
    }
    fn steps(
        &self,
        plan: &Plan,
        score: &dyn ScoreModel,
        chi: &mut [f64],
        _rngs: &mut [ChaCha8Rng],
        observer: &mut dyn FnMut(StepInfo),
    ) {
        let d = plan.dim();
        let batch = chi.len() / d;
        let order = self.order.clamp(1, MAX_ORDER);
        let mut eps = vec![0.0; chi.len()];
        // history[k] = r at grid point j - k
        let mut history: Vec<Vec<f64>> = (0..order).map(|_| vec![0.0; chi.len()]).collect();
        // consecutive steps (this one included) in which component i was evaluated
        let mut run = vec![0usize; d];
        for j in 0..plan.steps() - 1 {
            let (cur, next) = (&plan.states[j], &plan.states[j + 1]);
            let active = plan.active[j].as_deref();
            score.eps_hat(chi, cur, active, &mut eps);
            history.rotate_right(1);
            residual(chi, &eps, cur, &plan.sigma_data, active, &mut history[0]);
            let before = std::mem::replace(&mut run, vec![0; d]);
            for i in active_or_all(active, d) {
                run[i] = before[i] + 1;
            }
            let m_max = order.min(j + 1);
            let weights: Vec<Vec<Vec<f64>>> =
                (1..=m_max).map(|m| Self::weights(plan, j, m)).collect();
            let scale: Vec<(f64, f64)> = (0..d)
                .map(|i| {
                    (
                        cur.marginal_variance(i, &plan.sigma_data).sqrt(),
                        next.marginal_variance(i, &plan.sigma_data).sqrt(),
                    )
                })
                .collect();
            let hist = &history;
            // gamma_i monotone in t: equal ends = a frozen component, left bit for bit
            let moving: Vec<bool> = (0..d).map(|i| cur.gamma()[i] != next.gamma()[i]).collect();
            chi.par_chunks_mut(d).enumerate().for_each(|(n, x)| {
                for i in active_or_all(active, d) {
                    if !moving[i] {
                        continue;
                    }
                    let m = run[i].min(m_max);
                    let w = &weights[m - 1];
                    let dy: f64 = (0..m).map(|k| w[k][i] * hist[k][n * d + i]).sum();
                    let (sv_t, sv_s) = scale[i];
                    x[i] = sv_s * (x[i] / sv_t + dy);
                }
            });
            observer(plan.info(j, batch));
        }
    }
    fn run(
        &self,
        plan: &Plan,
        score: &dyn ScoreModel,
        chi: &mut [f64],
        rngs: &mut [ChaCha8Rng],
        observer: &mut dyn FnMut(StepInfo),
    ) {
        self.steps(plan, score, chi, rngs, observer);
        // the last step, t_min -> 0 (rho -> 0, V -> Sigma), exponential Euler
        let d = plan.dim();
        let last = plan.states.last().expect("plan has points");
        let active = plan.active.last().expect("plan has steps").as_deref();
        let mut eps = vec![0.0; chi.len()];
        let mut r = vec![0.0; chi.len()];
        score.eps_hat(chi, last, active, &mut eps);
        residual(chi, &eps, last, &plan.sigma_data, active, &mut r);
        let rho_last = plan.rho.last().expect("plan has points");
        chi.par_chunks_mut(d)
            .zip(r.par_chunks(d))
            .for_each(|(x, r)| {
                for i in active_or_all(active, d) {
                    let sv = last.marginal_variance(i, &plan.sigma_data).sqrt();
                    x[i] = plan.sigma_data[i].sqrt() * (x[i] / sv - rho_last[i] * r[i]);
                }
            });
        observer(plan.info(plan.steps() - 1, chi.len() / d));
    }
}
