//! Euler-Maruyama on the reverse SDE (SPEC section 5):
//!
//! ```text
//! d chi_i = [-1/2 beta_i chi_i + beta_i eps_hat_i / sigma_i] dt + sqrt(beta_i) dw_i,   dt < 0
//! ```

use super::{per_sample, Plan, Sampler, StepInfo};
use crate::score::{active_or_all, ScoreModel};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

#[derive(Debug, Clone, Copy)]
/// Euler-Maruyama on the reverse SDE (SPEC section 5).
pub struct SdeSampler;

impl Sampler for SdeSampler {
    fn name(&self) -> &'static str {
        "sde"
    }
    fn evals_per_step(&self) -> usize {
        1
    }
    fn steps(
        &self,
        plan: &Plan,
        score: &dyn ScoreModel,
        chi: &mut [f64],
        rngs: &mut [ChaCha8Rng],
        observer: &mut dyn FnMut(StepInfo),
    ) {
        let d = plan.dim();
        let batch = chi.len() / d;
        let mut eps = vec![0.0; chi.len()];
        for (j, w) in plan.states.windows(2).enumerate() {
            let (cur, next) = (&w[0], &w[1]);
            let h = cur.t() - next.t();
            let active = plan.active[j].as_deref();
            score.eps_hat(chi, cur, active, &mut eps);
            per_sample(chi, &eps, rngs, d, |x, e, rng| {
                for i in active_or_all(active, d) {
                    let beta = cur.beta(i);
                    // reverse drift -(f - g^2 score) over a step of -h, plus fresh noise
                    let drift = 0.5 * beta * x[i] - beta * e[i] / cur.sigma(i);
                    let z: f64 = StandardNormal.sample(rng);
                    x[i] += h * drift + (beta * h).sqrt() * z;
                }
            });
            observer(plan.info(j, batch));
        }
    }
}
