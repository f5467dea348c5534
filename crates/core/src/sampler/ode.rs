//! Heun (2nd order) on the probability-flow ODE (SPEC section 5):
//!
//! ```text
//! d chi_i / dt = -1/2 beta_i chi_i + 1/2 beta_i eps_hat_i / sigma_i
//! ```

use super::{Plan, Sampler, StepInfo};
use crate::process::NoisingState;
use crate::score::{active_or_all, ScoreModel};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

#[derive(Debug, Clone, Copy)]
/// Heun's method on the probability-flow ODE (SPEC section 5).
pub struct OdeSampler;

/// The probability-flow velocity of component i: -1/2 beta_i (chi_i - eps_hat_i / sigma_i).
pub(crate) fn velocity(state: &NoisingState, i: usize, chi: f64, eps_hat: f64) -> f64 {
    -0.5 * state.beta(i) * (chi - eps_hat / state.sigma(i))
}

impl Sampler for OdeSampler {
    fn name(&self) -> &'static str {
        "ode"
    }
    fn evals_per_step(&self) -> usize {
        2
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
        let mut eps_cur = vec![0.0; chi.len()];
        let mut eps_next = vec![0.0; chi.len()];
        let mut chi_euler = chi.to_vec();
        for (j, w) in plan.states.windows(2).enumerate() {
            let (cur, next) = (&w[0], &w[1]);
            let dt = next.t() - cur.t();
            let active = plan.active[j].as_deref();
            // Euler predictor
            score.eps_hat(chi, cur, active, &mut eps_cur);
            chi_euler
                .par_chunks_mut(d)
                .zip(chi.par_chunks(d))
                .zip(eps_cur.par_chunks(d))
                .for_each(|((y, x), e)| {
                    for i in active_or_all(active, d) {
                        y[i] = x[i] + dt * velocity(cur, i, x[i], e[i]);
                    }
                });
            // trapezoidal corrector
            score.eps_hat(&chi_euler, next, active, &mut eps_next);
            chi.par_chunks_mut(d)
                .zip(chi_euler.par_chunks(d))
                .zip(eps_cur.par_chunks(d).zip(eps_next.par_chunks(d)))
                .for_each(|((x, y), (e0, e1))| {
                    for i in active_or_all(active, d) {
                        let v0 = velocity(cur, i, x[i], e0[i]);
                        let v1 = velocity(next, i, y[i], e1[i]);
                        x[i] += 0.5 * dt * (v0 + v1);
                    }
                });
            observer(plan.info(j, batch));
        }
    }
}
