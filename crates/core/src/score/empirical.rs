//! Closed-form scores of a finite training set {chi^n} (SPEC section 4, lecture 003).
//!
//! `empirical`: p_t = 1/N sum_n N(chi | alpha chi^n, diag sigma^2), whose denoiser is
//!
//! ```text
//! chi0_hat = sum_n w_n chi^n,  w = softmax_n( -sum_i (chi_i - alpha_i chi^n_i)^2 / (2 sigma_i^2) )
//! eps_hat  = (chi - alpha chi0_hat) / sigma
//! ```
//!
//! (the optimal denoiser: it memorises). `smoothed` (Scarvelis et al.) averages the weights over
//! M fixed perturbations `chi + s eps_m` of the query, which pulls samples towards barycentres
//! of nearby training points instead of onto them.
//!
//! Distances are formed as differences (not expanded into dot products), so the weights stay
//! accurate when sigma_i^2 is tiny; the softmax subtracts the largest logit (log-sum-exp).

use super::{active_or_all, eps_from_chi0, ScoreModel};
use crate::error::{check_range, Error, Result};
use crate::process::NoisingState;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// The optimal denoiser of a finite training set.
#[derive(Debug, Clone)]
pub struct EmpiricalScore {
    d: usize,
    train: Vec<f64>,
}

/// Per-step constants: alpha_i, and the training set scaled to distance units.
struct StepTables {
    alpha: Vec<f64>,
    sigma: Vec<f64>,
    /// sqrt(1 / (2 sigma_i^2))
    root_w: Vec<f64>,
    /// alpha_i sqrt(w_i) chi^n_i, (N, d)
    scaled_train: Vec<f64>,
}

impl EmpiricalScore {
    /// `train`: (N, d) row-major whitened training samples.
    pub fn new(d: usize, train: Vec<f64>) -> Result<Self> {
        if d == 0 || train.is_empty() || !train.len().is_multiple_of(d) {
            return Err(Error::EmptyData(format!(
                "the training set must hold N >= 1 samples of {d} components (got {} values)",
                train.len()
            )));
        }
        if let Some((index, &value)) = train.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(Error::NonFinite {
                what: "training set".into(),
                index,
                value,
            });
        }
        Ok(EmpiricalScore { d, train })
    }

    /// Training samples N.
    pub fn len(&self) -> usize {
        self.train.len() / self.d
    }
    /// True without training samples.
    pub fn is_empty(&self) -> bool {
        self.train.is_empty()
    }
    /// The whitened training set, (N, d).
    pub fn training_set(&self) -> &[f64] {
        &self.train
    }

    fn tables(&self, state: &NoisingState) -> StepTables {
        let alpha: Vec<f64> = state.alpha_sq().iter().map(|a| a.sqrt()).collect();
        let sigma: Vec<f64> = state.sigma_sq().iter().map(|s| s.sqrt()).collect();
        let root_w: Vec<f64> = state
            .sigma_sq()
            .iter()
            .map(|s| (0.5 / s.max(f64::MIN_POSITIVE)).sqrt())
            .collect();
        let mut scaled_train = self.train.clone();
        for row in scaled_train.chunks_exact_mut(self.d) {
            for ((x, a), w) in row.iter_mut().zip(&alpha).zip(&root_w) {
                *x *= a * w;
            }
        }
        StepTables {
            alpha,
            sigma,
            root_w,
            scaled_train,
        }
    }

    /// Adds softmax weights of the query (already scaled: q_i sqrt(w_i)) times `weight` to `acc`.
    fn accumulate_weights(
        tab: &StepTables,
        d: usize,
        q_scaled: &[f64],
        weight: f64,
        logits: &mut [f64],
        acc: &mut [f64],
    ) {
        for (l, x) in logits.iter_mut().zip(tab.scaled_train.chunks_exact(d)) {
            *l = -sq_dist(q_scaled, x);
        }
        softmax(logits);
        for (a, l) in acc.iter_mut().zip(logits.iter()) {
            *a += weight * l;
        }
    }

    /// chi0_hat_i = sum_n w_n chi^n_i for the active components, eps_hat from it.
    fn eps_from_weights(
        &self,
        (alpha, sigma): (&[f64], &[f64]),
        q: &[f64],
        w: &[f64],
        active: Option<&[usize]>,
        out: &mut [f64],
    ) {
        let d = self.d;
        let mut chi0 = vec![0.0; d];
        for (wn, x) in w.iter().zip(self.train.chunks_exact(d)) {
            if *wn == 0.0 {
                continue;
            }
            match active {
                None => chi0.iter_mut().zip(x).for_each(|(c, xi)| *c += wn * xi),
                Some(a) => a.iter().for_each(|&i| chi0[i] += wn * x[i]),
            }
        }
        for i in active_or_all(active, d) {
            out[i] = eps_from_chi0(q[i], chi0[i], alpha[i], sigma[i]);
        }
    }
}

impl EmpiricalScore {
    /// eps_hat of each query row at its own noising state (row b of `chi_t` at `states[b]`):
    /// the optimal denoiser of the set, used as the stable regression target of training
    /// (`train.stable_target`, Xu et al. 2023). Same formula as `eps_hat`, per-row tables.
    pub fn eps_hat_each(&self, chi_t: &[f64], states: &[&NoisingState], eps_hat: &mut [f64]) {
        let (d, n) = (self.d, self.len());
        assert_eq!(chi_t.len(), states.len() * d, "one state per query row");
        assert_eq!(eps_hat.len(), chi_t.len(), "one output row per query row");
        eps_hat
            .par_chunks_mut(d)
            .zip(chi_t.par_chunks(d))
            .zip(states.par_iter())
            .for_each_init(
                || (vec![0.0; n], vec![0.0; d], vec![0.0; d], vec![0.0; d]),
                |(logits, alpha, sigma, root_w), ((out, q), state)| {
                    for i in 0..d {
                        alpha[i] = state.alpha(i);
                        sigma[i] = state.sigma(i);
                        root_w[i] = (0.5 / state.sigma_sq()[i].max(f64::MIN_POSITIVE)).sqrt();
                    }
                    for (l, x) in logits.iter_mut().zip(self.train.chunks_exact(d)) {
                        *l = -(0..d)
                            .map(|i| {
                                let r = (q[i] - alpha[i] * x[i]) * root_w[i];
                                r * r
                            })
                            .sum::<f64>();
                    }
                    softmax(logits);
                    self.eps_from_weights((alpha, sigma), q, logits, None, out);
                },
            );
    }
}

/// Normalises logits in place to softmax weights (the largest logit subtracted first).
fn softmax(logits: &mut [f64]) {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut total = 0.0;
    for l in logits.iter_mut() {
        *l = (*l - max).exp();
        total += *l;
    }
    for l in logits.iter_mut() {
        *l /= total;
    }
}

/// sum_i (a_i - b_i)^2 with four independent accumulators (so that it vectorises).
fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            let t = x[k] - y[k];
            acc[k] += t * t;
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ra.iter().zip(rb) {
        s += (x - y) * (x - y);
    }
    s
}

impl ScoreModel for EmpiricalScore {
    fn name(&self) -> &'static str {
        "empirical"
    }
    fn dim(&self) -> usize {
        self.d
    }
    fn eps_hat(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        active: Option<&[usize]>,
        eps_hat: &mut [f64],
    ) {
        let (d, n) = (self.d, self.len());
        let tab = self.tables(state);
        eps_hat
            .par_chunks_mut(d)
            .zip(chi_t.par_chunks(d))
            .for_each_init(
                || (vec![0.0; n], vec![0.0; n], vec![0.0; d]),
                |(logits, w, qs), (out, q)| {
                    for i in 0..d {
                        qs[i] = q[i] * tab.root_w[i];
                    }
                    w.fill(0.0);
                    Self::accumulate_weights(&tab, d, qs, 1.0, logits, w);
                    self.eps_from_weights((&tab.alpha, &tab.sigma), q, w, active, out);
                },
            );
    }
}

/// The empirical weights averaged over M fixed perturbations of the query (Scarvelis et al.).
#[derive(Debug, Clone)]
pub struct SmoothedScore {
    inner: EmpiricalScore,
    /// s eps_m, (M, d), drawn once from the seed so that the model is a deterministic function.
    perturbations: Vec<f64>,
}

impl SmoothedScore {
    /// `scale` s (whitened units), `count` M perturbations drawn from `seed`.
    pub fn new(inner: EmpiricalScore, scale: f64, count: usize, seed: u64) -> Result<Self> {
        check_range("score.scale", scale, 0.0, 1e6)?;
        if count == 0 {
            return Err(Error::param("score.perturbations", 0, "at least 1"));
        }
        let mut rng = crate::rng::stream(seed, crate::rng::Purpose::Smoothing, 0);
        let perturbations = (0..count * inner.d)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                scale * z
            })
            .collect();
        Ok(SmoothedScore {
            inner,
            perturbations,
        })
    }
}

impl ScoreModel for SmoothedScore {
    fn name(&self) -> &'static str {
        "smoothed"
    }
    fn dim(&self) -> usize {
        self.inner.d
    }
    fn eps_hat(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        active: Option<&[usize]>,
        eps_hat: &mut [f64],
    ) {
        let (d, n) = (self.inner.d, self.inner.len());
        let tab = self.inner.tables(state);
        let m = self.perturbations.len() / d;
        eps_hat
            .par_chunks_mut(d)
            .zip(chi_t.par_chunks(d))
            .for_each_init(
                || (vec![0.0; n], vec![0.0; n], vec![0.0; d]),
                |(logits, w, qs), (out, q)| {
                    w.fill(0.0);
                    for p in self.perturbations.chunks_exact(d) {
                        for i in 0..d {
                            qs[i] = (q[i] + p[i]) * tab.root_w[i];
                        }
                        EmpiricalScore::accumulate_weights(&tab, d, qs, 1.0 / m as f64, logits, w);
                    }
                    self.inner
                        .eps_from_weights((&tab.alpha, &tab.sigma), q, w, active, out);
                },
            );
    }
}
