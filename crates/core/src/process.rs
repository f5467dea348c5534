//! The forward process: a diagonal Ornstein-Uhlenbeck process in whitened component space
//! (SPEC section 2, GUD eq. 13-17):
//!
//! ```text
//! d chi_i = -1/2 beta_i(t) chi_i dt + sqrt(beta_i(t)) dw_i
//! chi_i(t) = alpha_i(t) chi_i(0) + sigma_i(t) eps_i,   eps ~ N(0, I)
//! ```
//!
//! parametrised by the noising state gamma_i = log(sigma_i^2 / alpha_i^2):
//! alpha_i^2 = sigmoid(-gamma_i), sigma_i^2 = sigmoid(gamma_i), beta_i = sigma_i^2 dgamma_i/dt,
//! snr_i = exp(-gamma_i), SNR_i = Sigma_i exp(-gamma_i). Logs are taken through softplus, so
//! |gamma| up to 30 (and beyond) neither overflows nor loses the small side.

use crate::field::Whitened;
use crate::numerics::{sigmoid, softplus};
use crate::schedule::Schedule;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// gamma_t and everything derived from it, for all d components at one time t.
#[derive(Debug, Clone, PartialEq)]
pub struct NoisingState {
    t: f64,
    gamma: Vec<f64>,
    dgamma_dt: Vec<f64>,
    alpha_sq: Vec<f64>,
    sigma_sq: Vec<f64>,
}

impl NoisingState {
    /// From gamma and dgamma/dt (equal lengths).
    pub fn new(t: f64, gamma: Vec<f64>, dgamma_dt: Vec<f64>) -> Self {
        assert_eq!(
            gamma.len(),
            dgamma_dt.len(),
            "gamma and dgamma_dt lengths differ"
        );
        let alpha_sq = gamma.iter().map(|&g| sigmoid(-g)).collect();
        let sigma_sq = gamma.iter().map(|&g| sigmoid(g)).collect();
        NoisingState {
            t,
            gamma,
            dgamma_dt,
            alpha_sq,
            sigma_sq,
        }
    }

    /// The state of `schedule` at time t.
    pub fn at(schedule: &dyn Schedule, t: f64) -> Self {
        let mut gamma = vec![0.0; schedule.dim()];
        let mut dgamma = vec![0.0; schedule.dim()];
        schedule.gamma(t, &mut gamma);
        schedule.dgamma_dt(t, &mut dgamma);
        Self::new(t, gamma, dgamma)
    }

    /// The time t.
    pub fn t(&self) -> f64 {
        self.t
    }
    /// Number of components d.
    pub fn dim(&self) -> usize {
        self.gamma.len()
    }
    /// gamma_i = log(sigma_i^2 / alpha_i^2)
    pub fn gamma(&self) -> &[f64] {
        &self.gamma
    }
    /// d gamma_i / dt.
    pub fn dgamma_dt(&self) -> &[f64] {
        &self.dgamma_dt
    }
    /// alpha_i^2 = sigmoid(-gamma_i)
    pub fn alpha_sq(&self) -> &[f64] {
        &self.alpha_sq
    }
    /// sigma_i^2 = sigmoid(gamma_i)
    pub fn sigma_sq(&self) -> &[f64] {
        &self.sigma_sq
    }
    /// log alpha_i^2 = -softplus(gamma_i)
    pub fn log_alpha_sq(&self, i: usize) -> f64 {
        -softplus(self.gamma[i])
    }
    /// log sigma_i^2 = -softplus(-gamma_i)
    pub fn log_sigma_sq(&self, i: usize) -> f64 {
        -softplus(-self.gamma[i])
    }
    /// alpha_i = sqrt(alpha_i^2).
    pub fn alpha(&self, i: usize) -> f64 {
        self.alpha_sq[i].sqrt()
    }
    /// sigma_i = sqrt(sigma_i^2).
    pub fn sigma(&self, i: usize) -> f64 {
        self.sigma_sq[i].sqrt()
    }
    /// beta_i = sigma_i^2 dgamma_i/dt (GUD eq. 15)
    pub fn beta(&self, i: usize) -> f64 {
        self.sigma_sq[i] * self.dgamma_dt[i]
    }
    /// log snr_i = -gamma_i (the SNR of the whitened component)
    pub fn log_snr(&self, i: usize) -> f64 {
        -self.gamma[i]
    }
    /// log SNR_i = log Sigma_i - gamma_i (GUD eq. 17, the SNR of the data component)
    pub fn log_snr_data(&self, i: usize, sigma_data: &[f64]) -> f64 {
        sigma_data[i].ln() - self.gamma[i]
    }
    /// Mean of gamma over components (the scalar that stands in for time).
    pub fn mean_gamma(&self) -> f64 {
        self.gamma.iter().sum::<f64>() / self.gamma.len() as f64
    }
    /// Var(chi_i(t)) = alpha_i^2 Sigma_i + sigma_i^2 for data of component variance Sigma_i.
    pub fn marginal_variance(&self, i: usize, sigma_data: &[f64]) -> f64 {
        self.alpha_sq[i] * sigma_data[i] + self.sigma_sq[i]
    }
}

/// chi_t = alpha_t chi_0 + sigma_t eps, for a given eps.
pub fn forward_with_noise(state: &NoisingState, chi0: &Whitened, eps: &[f64]) -> Whitened {
    Whitened(
        chi0.0
            .iter()
            .zip(eps)
            .enumerate()
            .map(|(i, (x, e))| state.alpha(i) * x + state.sigma(i) * e)
            .collect(),
    )
}

/// chi_t = alpha_t chi_0 + sigma_t eps, eps ~ N(0, I) drawn from `rng`.
pub fn forward_sample(state: &NoisingState, chi0: &Whitened, rng: &mut impl Rng) -> Whitened {
    let eps: Vec<f64> = (0..chi0.len())
        .map(|_| StandardNormal.sample(rng))
        .collect();
    forward_with_noise(state, chi0, &eps)
}

/// A batch of the denoising objective (SPEC section 2): rows of the training set with their
/// noising times, the drawn noise and the noised components, (B, d) row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct NoisedBatch {
    /// The training row of each example.
    pub index: Vec<usize>,
    /// The time t of each example.
    pub t: Vec<f64>,
    /// gamma_i(t) of each example, (B, d).
    pub gamma: Vec<f64>,
    /// eps ~ N(0, I), (B, d).
    pub eps: Vec<f64>,
    /// chi_t = alpha_t chi_0 + sigma_t eps, (B, d).
    pub chi_t: Vec<f64>,
}

/// B examples of the denoising objective from `chi0` ((N, d) whitened training rows), as the
/// network's trainer draws them: rows uniform, t stratified over the schedule's range
/// (example b at t_lo + (t_hi - t_lo)(b + u_b) / B), then eps and chi_t (SPEC section 2), all
/// from `rng`.
pub fn noised_batch(
    schedule: &dyn Schedule,
    chi0: &[f64],
    batch: usize,
    rng: &mut impl Rng,
) -> NoisedBatch {
    let d = schedule.dim();
    let rows = chi0.len() / d;
    let (t_lo, t_hi) = schedule.t_range();
    let mut out = NoisedBatch {
        index: Vec::with_capacity(batch),
        t: Vec::with_capacity(batch),
        gamma: Vec::with_capacity(batch * d),
        eps: Vec::with_capacity(batch * d),
        chi_t: Vec::with_capacity(batch * d),
    };
    for b in 0..batch {
        let row = rng.random_range(0..rows);
        let t = t_lo + (t_hi - t_lo) * (b as f64 + rng.random::<f64>()) / batch as f64;
        let state = NoisingState::at(schedule, t);
        let eps: Vec<f64> = (0..d).map(|_| StandardNormal.sample(rng)).collect();
        let x = forward_with_noise(
            &state,
            &Whitened(chi0[row * d..(row + 1) * d].to_vec()),
            &eps,
        );
        out.index.push(row);
        out.t.push(t);
        out.gamma.extend_from_slice(state.gamma());
        out.eps.extend(eps);
        out.chi_t.extend(x.0);
    }
    out
}

/// The transition chi_t | chi_s for s < t, per component (SPEC section 2):
/// alpha_{t|s} = alpha_t / alpha_s, sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// alpha_t per component.
    pub alpha_ts: Vec<f64>,
    /// sigma_t^2 per component.
    pub sigma_ts_sq: Vec<f64>,
}

impl Transition {
    /// Computed as sigma_{t|s}^2 = sigma_t^2 (1 - exp(gamma_s - gamma_t)) (exactly 0 where the
    /// component is frozen, gamma_s = gamma_t).
    pub fn between(s: &NoisingState, t: &NoisingState) -> Self {
        let alpha_ts = (0..t.dim())
            .map(|i| (0.5 * (t.log_alpha_sq(i) - s.log_alpha_sq(i))).exp())
            .collect();
        let sigma_ts_sq = (0..t.dim())
            .map(|i| t.sigma_sq[i] * -(s.gamma[i] - t.gamma[i]).exp_m1())
            .collect();
        Transition {
            alpha_ts,
            sigma_ts_sq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noised_batch_rows_strata_and_noise() {
        let d = 3;
        let schedule: Box<dyn Schedule> =
            Box::new(crate::schedule::CosineSchedule::new(d, 0.008).unwrap());
        let chi0: Vec<f64> = (0..5 * d).map(|k| k as f64 * 0.1 - 0.7).collect();
        let mut rng = crate::rng::stream(7, crate::rng::Purpose::UserBatch, 0);
        let b = 4000;
        let nb = noised_batch(schedule.as_ref(), &chi0, b, &mut rng);
        let (lo, hi) = schedule.t_range();
        let (mut s1, mut s2) = (0.0, 0.0);
        for k in 0..b {
            // stratum k of the range, the state of its t, chi_t of its row and eps
            let w = (hi - lo) / b as f64;
            assert!(nb.t[k] >= lo + w * k as f64 && nb.t[k] <= lo + w * (k + 1) as f64);
            let st = NoisingState::at(schedule.as_ref(), nb.t[k]);
            assert_eq!(&nb.gamma[k * d..(k + 1) * d], st.gamma());
            let row = nb.index[k];
            assert!(row < 5);
            for i in 0..d {
                let want = st.alpha(i) * chi0[row * d + i] + st.sigma(i) * nb.eps[k * d + i];
                assert_eq!(nb.chi_t[k * d + i], want);
                s1 += nb.eps[k * d + i];
                s2 += nb.eps[k * d + i].powi(2);
            }
        }
        // eps ~ N(0, 1): mean within 4 standard errors, variance within 4 of its (sqrt(2/n))
        let n = (b * d) as f64;
        assert!((s1 / n).abs() < 4.0 / n.sqrt());
        assert!((s2 / n - 1.0).abs() < 4.0 * (2.0 / n).sqrt());
    }

    #[test]
    fn state_is_stable_for_large_gamma() {
        let st = NoisingState::new(0.0, vec![-30.0, 0.0, 30.0, -60.0], vec![1.0; 4]);
        assert!((st.sigma_sq()[0] - (-30f64).exp() / (1.0 + (-30f64).exp())).abs() < 1e-25);
        assert!(st.sigma_sq()[0] > 0.0);
        assert!((st.log_sigma_sq(0) - (-30.0 - (-30f64).exp().ln_1p())).abs() < 1e-12);
        assert!(
            (st.log_sigma_sq(3) + 60.0).abs() < 1e-12,
            "log sigma^2 keeps the small side"
        );
        assert!((st.log_alpha_sq(2) + 30.0).abs() < 1e-12);
        for i in 0..4 {
            assert!((st.alpha_sq()[i] + st.sigma_sq()[i] - 1.0).abs() < 1e-15);
            assert!(st.alpha_sq()[i].is_finite() && st.sigma_sq()[i].is_finite());
        }
        assert_eq!(st.sigma_sq()[1], 0.5);
        assert!((st.beta(2) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn transition_composes_marginals() {
        // chi_t | chi_0 equals chi_s | chi_0 followed by chi_t | chi_s
        let s = NoisingState::new(0.3, vec![-5.0, 0.2, 3.0], vec![0.0; 3]);
        let t = NoisingState::new(0.7, vec![-1.0, 0.2, 8.0], vec![0.0; 3]);
        let tr = Transition::between(&s, &t);
        for i in 0..3 {
            let a = tr.alpha_ts[i] * s.alpha(i);
            assert!((a - t.alpha(i)).abs() < 1e-14);
            let v = tr.alpha_ts[i].powi(2) * s.sigma_sq()[i] + tr.sigma_ts_sq[i];
            assert!((v - t.sigma_sq()[i]).abs() < 1e-14);
        }
        assert_eq!(tr.sigma_ts_sq[1], 0.0, "frozen component gets no noise");
        assert_eq!(tr.alpha_ts[1], 1.0);
    }
}
