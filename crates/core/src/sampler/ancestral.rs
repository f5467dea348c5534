//! Ancestral sampling with the exact Gaussian posterior per component (SPEC section 5): from t
//! to s < t, with chi0_hat = (chi_t - sigma_t eps_hat) / alpha_t,
//!
//! ```text
//! mean = (alpha_{t|s} sigma_s^2 / sigma_t^2) chi_t + (alpha_s sigma_{t|s}^2 / sigma_t^2) chi0_hat
//! var  = sigma_{t|s}^2 sigma_s^2 / sigma_t^2 + c^2 v_t,    c = alpha_s sigma_{t|s}^2 / sigma_t^2
//! ```
//!
//! v_t = Var(chi0 | chi_t): 0 (`none`, DDPM) or the Gaussian part's
//! Sigma_i sigma_t^2 / (alpha_t^2 Sigma_i + sigma_t^2) (`gaussian`), with which the kernel is
//! the exact p(chi_s | chi_t) for Gaussian data at any number of steps.

use super::PosteriorVariance;
use super::{per_sample, Plan, Sampler, StepInfo};
use crate::process::Transition;
use crate::score::{active_or_all, chi0_from_eps, gaussian_posterior_variance, ScoreModel};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

#[derive(Debug, Clone, Copy)]
/// Ancestral sampling (SPEC section 5): the reverse kernels of the discrete hierarchy.
pub struct AncestralSampler {
    /// The kernels' posterior variance.
    pub posterior_variance: PosteriorVariance,
}

/// Per-component coefficients of one step: mean = a chi_t + c chi0_hat, var = base + c^2 v_t.
struct StepCoefficients {
    a: Vec<f64>,
    c: Vec<f64>,
    var: Vec<f64>,
}

impl AncestralSampler {
    fn coefficients(&self, plan: &Plan, j: usize) -> StepCoefficients {
        let (t, s) = (&plan.states[j], &plan.states[j + 1]);
        let tr = Transition::between(s, t);
        let d = plan.dim();
        let (mut a, mut c, mut var) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        for i in 0..d {
            // sigma_{t|s}^2 / sigma_t^2 = 1 - exp(gamma_s - gamma_t), without cancellation
            let r = -(s.gamma()[i] - t.gamma()[i]).exp_m1();
            a[i] = tr.alpha_ts[i] * s.sigma_sq()[i] / t.sigma_sq()[i];
            c[i] = s.alpha(i) * r;
            let v = match self.posterior_variance {
                PosteriorVariance::None => 0.0,
                PosteriorVariance::Gaussian => gaussian_posterior_variance(
                    t.alpha_sq()[i],
                    t.sigma_sq()[i],
                    plan.sigma_data[i],
                ),
            };
            var[i] = r * s.sigma_sq()[i] + c[i] * c[i] * v;
        }
        StepCoefficients { a, c, var }
    }
}

impl Sampler for AncestralSampler {
    fn name(&self) -> &'static str {
        "ancestral"
    }
    fn evals_per_step(&self) -> usize {
        1
    }
    fn final_variance(&self) -> PosteriorVariance {
        self.posterior_variance
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
        for j in 0..plan.steps() - 1 {
            let t = &plan.states[j];
            let active = plan.active[j].as_deref();
            let k = self.coefficients(plan, j);
            score.eps_hat(chi, t, active, &mut eps);
            per_sample(chi, &eps, rngs, d, |x, e, rng| {
                for i in active_or_all(active, d) {
                    let chi0_hat = chi0_from_eps(x[i], e[i], t.alpha(i), t.sigma(i));
                    let z: f64 = StandardNormal.sample(rng);
                    x[i] = k.a[i] * x[i] + k.c[i] * chi0_hat + k.var[i].sqrt() * z;
                }
            });
            observer(plan.info(j, batch));
        }
    }
}
