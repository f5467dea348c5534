//! Reverse-time samplers (SPEC section 5), from the prior N(0, I) in chi at t_max to the data.
//!
//! A [`Plan`] fixes the grid t_0 = t_max > t_1 > ... > t_{K-1} = t_min, the noising state at
//! every point and, with the RG projection (RGDM fig. 2c), the set of components each step
//! evaluates. A [`Sampler`] integrates a batch along the plan and ends with a jump from t_min
//! to the data, chi0. Every sample k draws its noise from its own stream (seed, k), so any
//! sample can be regenerated alone.

mod ancestral;
mod config;
mod exponential;
mod ode;
pub(crate) use ode::velocity;
mod sde;
#[cfg(test)]
mod tests;
mod tune;

pub use ancestral::AncestralSampler;
pub use config::{PosteriorVariance, ProjectionConfig, SamplerConfig, SamplerKind, TimeGrid};
pub use exponential::{rho, ExponentialSampler, MAX_ORDER};
pub use ode::OdeSampler;
pub use sde::SdeSampler;
pub use tune::{tune_grid, GridTuning, TunedGrid};

use crate::error::{Error, Result};
use crate::process::NoisingState;
use crate::schedule::Schedule;
use crate::score::{chi0_from_eps, ScoreModel};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::Serialize;

/// The random stream of sample k: (seed, sampler, k) of [`crate::rng::stream`].
pub fn sample_rng(seed: u64, k: u64) -> ChaCha8Rng {
    crate::rng::stream(seed, crate::rng::Purpose::Sampler, k)
}

/// The prior draw z ~ N(0, I) of one sample into `x`, from its stream `rng` (what every
/// sampler starts from; [`sample_rng`] gives sample k's stream).
pub fn draw_prior(rng: &mut ChaCha8Rng, x: &mut [f64]) {
    x.iter_mut().for_each(|v| *v = StandardNormal.sample(rng));
}

/// The grid of `points` times from t_max down to t_min, uniform in t or in mean gamma.
pub fn time_grid(schedule: &dyn Schedule, points: usize, grid: TimeGrid) -> Result<Vec<f64>> {
    if points == 0 {
        return Err(Error::param("sampler.steps", 0, "at least 1"));
    }
    let (t_min, t_max) = schedule.t_range();
    if points == 1 {
        return Ok(vec![t_max]);
    }
    let frac = |j: usize| j as f64 / (points - 1) as f64;
    Ok(match grid {
        TimeGrid::UniformT => (0..points)
            .map(|j| t_max + frac(j) * (t_min - t_max))
            .collect(),
        TimeGrid::UniformGamma => {
            let mean_gamma = |t: f64| NoisingState::at(schedule, t).mean_gamma();
            let (g_hi, g_lo) = (mean_gamma(t_max), mean_gamma(t_min));
            (0..points)
                .map(|j| {
                    // mean gamma is non-decreasing in t: bisect for the target
                    let target = g_hi + frac(j) * (g_lo - g_hi);
                    let (mut lo, mut hi) = (t_min, t_max);
                    for _ in 0..60 {
                        let mid = 0.5 * (lo + hi);
                        if mean_gamma(mid) < target {
                            lo = mid;
                        } else {
                            hi = mid;
                        }
                    }
                    if j == 0 {
                        t_max
                    } else if j == points - 1 {
                        t_min
                    } else {
                        0.5 * (lo + hi)
                    }
                })
                .collect()
        }
    })
}

/// Which components a step from t_cur to t_next evaluates (RG projection, SPEC section 5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    /// Components whose log SNR lies below this are frozen noise.
    pub log_snr_min: f64,
    /// Components whose gamma lies below this are frozen data.
    pub gamma_frozen: f64,
}

impl Projection {
    /// The projection of a config; none when disabled.
    pub fn from_config(c: &ProjectionConfig) -> Result<Option<Self>> {
        if !c.enabled {
            return Ok(None);
        }
        if !(c.snr_min > 0.0 && c.snr_min.is_finite()) {
            return Err(Error::param(
                "sampler.projection.snr_min",
                c.snr_min,
                "a positive number",
            ));
        }
        if !c.gamma_frozen.is_finite() {
            return Err(Error::param(
                "sampler.projection.gamma_frozen",
                c.gamma_frozen,
                "a finite number",
            ));
        }
        Ok(Some(Projection {
            log_snr_min: c.snr_min.ln(),
            gamma_frozen: c.gamma_frozen,
        }))
    }

    /// Components that are neither still pure noise (SNR_i below the threshold at both ends:
    /// they stay prior samples) nor already generated (gamma_i below the threshold at both
    /// ends: frozen).
    pub fn active(
        &self,
        cur: &NoisingState,
        next: &NoisingState,
        sigma_data: &[f64],
    ) -> Vec<usize> {
        (0..cur.dim())
            .filter(|&i| {
                let noise = cur.log_snr_data(i, sigma_data) < self.log_snr_min
                    && next.log_snr_data(i, sigma_data) < self.log_snr_min;
                let frozen =
                    cur.gamma()[i] < self.gamma_frozen && next.gamma()[i] < self.gamma_frozen;
                !noise && !frozen
            })
            .collect()
    }

    /// Components still to be denoised by the final jump from t_min to the data.
    pub fn active_final(&self, last: &NoisingState) -> Vec<usize> {
        (0..last.dim())
            .filter(|&i| last.gamma()[i] >= self.gamma_frozen)
            .collect()
    }
}

/// The grid, the noising states on it and the active sets of each step.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The grid times, from t_max down.
    pub times: Vec<f64>,
    /// The noising state at each grid time.
    pub states: Vec<NoisingState>,
    /// Active components of step j (from point j to j+1), `None` = all; the last entry is the
    /// final jump to the data.
    pub active: Vec<Option<Vec<usize>>>,
    /// Sigma_i, the data variance of each whitened component (the Gaussian part).
    pub sigma_data: Vec<f64>,
    /// rho_i = asinh(e^{gamma_i/2} / sqrt(Sigma_i)) at every point (the exponential
    /// integrator's clock).
    pub rho: Vec<Vec<f64>>,
    /// Per step j: (int rho_i dt, int (t - t_j) rho_i dt) over [t_j, t_{j+1}], by quadrature
    /// of the schedule (the Adams-Bashforth weights of the exponential integrator).
    pub rho_moments: Vec<(Vec<f64>, Vec<f64>)>,
}

/// 4-point Gauss-Legendre nodes and weights on [0, 1].
const GAUSS_LEGENDRE_4: [(f64, f64); 4] = [
    (0.069_431_844_202_973_71, 0.173_927_422_568_726_93),
    (0.330_009_478_207_571_87, 0.326_072_577_431_273_07),
    (0.669_990_521_792_428_1, 0.326_072_577_431_273_07),
    (0.930_568_155_797_026_3, 0.173_927_422_568_726_93),
];
/// Sub-intervals of each step in the rho quadrature.
const RHO_PANELS: usize = 4;

/// (int rho dt, int (t - t0) rho dt) over [t0, t1] (t1 < t0 allowed: signed), composite
/// Gauss-Legendre on the schedule's gamma.
fn rho_moments(
    schedule: &dyn Schedule,
    sigma_data: &[f64],
    t0: f64,
    t1: f64,
) -> (Vec<f64>, Vec<f64>) {
    let d = sigma_data.len();
    let (mut m0, mut m1) = (vec![0.0; d], vec![0.0; d]);
    let mut gamma = vec![0.0; d];
    let h = (t1 - t0) / RHO_PANELS as f64;
    for p in 0..RHO_PANELS {
        for &(u, w) in &GAUSS_LEGENDRE_4 {
            let dt = h * (p as f64 + u);
            schedule.gamma(t0 + dt, &mut gamma);
            for i in 0..d {
                let r = rho(gamma[i], sigma_data[i]) * w * h;
                m0[i] += r;
                m1[i] += dt * r;
            }
        }
    }
    (m0, m1)
}

impl Plan {
    /// The plan of `steps` grid points of `grid` on the schedule, with the projection's active sets.
    pub fn new(
        schedule: &dyn Schedule,
        sigma_data: &[f64],
        points: usize,
        grid: TimeGrid,
        projection: Option<Projection>,
    ) -> Result<Self> {
        let times = time_grid(schedule, points, grid)?;
        Self::from_times(schedule, sigma_data, times, projection)
    }

    /// The plan of an explicit decreasing grid of times.
    pub fn from_times(
        schedule: &dyn Schedule,
        sigma_data: &[f64],
        times: Vec<f64>,
        projection: Option<Projection>,
    ) -> Result<Self> {
        if sigma_data.len() != schedule.dim() {
            return Err(Error::ShapeMismatch {
                what: "sampler plan".into(),
                expected: format!("{} data variances", schedule.dim()),
                got: format!("{}", sigma_data.len()),
            });
        }
        if times.is_empty() || times.windows(2).any(|w| w[1] >= w[0]) {
            return Err(Error::param(
                "sampler grid",
                format!("{times:?}"),
                "a non-empty decreasing sequence of times",
            ));
        }
        let states: Vec<NoisingState> = times
            .iter()
            .map(|&t| NoisingState::at(schedule, t))
            .collect();
        let mut active: Vec<Option<Vec<usize>>> = states
            .windows(2)
            .map(|w| projection.map(|p| p.active(&w[0], &w[1], sigma_data)))
            .collect();
        active.push(projection.map(|p| p.active_final(states.last().expect("points >= 1"))));
        let rho_at = |s: &NoisingState| -> Vec<f64> {
            s.gamma()
                .iter()
                .zip(sigma_data)
                .map(|(&g, &sd)| rho(g, sd))
                .collect()
        };
        let rho_moments = times
            .par_windows(2)
            .map(|w| rho_moments(schedule, sigma_data, w[0], w[1]))
            .collect();
        Ok(Plan {
            rho: states.iter().map(rho_at).collect(),
            rho_moments,
            times,
            states,
            active,
            sigma_data: sigma_data.to_vec(),
        })
    }

    /// Number of components d.
    pub fn dim(&self) -> usize {
        self.sigma_data.len()
    }
    /// Steps including the final jump (= grid points).
    pub fn steps(&self) -> usize {
        self.times.len()
    }
    fn active_count(&self, j: usize) -> usize {
        self.active[j].as_ref().map_or(self.dim(), Vec::len)
    }
    /// What the observer hears after step j of a batch of `batch` samples.
    fn info(&self, j: usize, batch: usize) -> StepInfo {
        StepInfo {
            step: j,
            steps: self.steps(),
            t: self.times[j],
            active: self.active_count(j),
            batch,
        }
    }
}

/// Progress of a sampler, given to the observer after every step of every batch.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    /// Step index within the plan (the last is the jump to the data).
    pub step: usize,
    /// Steps of the plan.
    pub steps: usize,
    /// Time of the step's start.
    pub t: f64,
    /// Components evaluated in this step.
    pub active: usize,
    /// Samples in the batch.
    pub batch: usize,
}

/// A reverse-time integrator (SPEC section 5).
pub trait Sampler: Send + Sync {
    /// The config name (`sde`, `ode`, `ancestral`, `exp`).
    fn name(&self) -> &'static str;
    /// Score evaluations of one step (the final jump takes one).
    fn evals_per_step(&self) -> usize;
    /// Integrates `chi` (n, d) along the plan's grid from its first to its last point, without
    /// the final jump; sample k of the batch draws its noise from `rngs[k]`.
    fn steps(
        &self,
        plan: &Plan,
        score: &dyn ScoreModel,
        chi: &mut [f64],
        rngs: &mut [ChaCha8Rng],
        observer: &mut dyn FnMut(StepInfo),
    );
    /// v_t of the final jump to the data (the ancestral sampler's choice; none otherwise).
    fn final_variance(&self) -> PosteriorVariance {
        PosteriorVariance::None
    }
    /// Integrates `chi` (n, d), prior samples at the plan's first point, to the data: the
    /// steps, then the jump from the last grid point.
    fn run(
        &self,
        plan: &Plan,
        score: &dyn ScoreModel,
        chi: &mut [f64],
        rngs: &mut [ChaCha8Rng],
        observer: &mut dyn FnMut(StepInfo),
    ) {
        self.steps(plan, score, chi, rngs, observer);
        finish(plan, score, chi, rngs, self.final_variance(), observer);
    }
}

impl SamplerConfig {
    /// Checks the settings that every use of the config needs: `batch` >= 1 and, for `exp`,
    /// `order` in 1 to [`MAX_ORDER`] (regression, issue 34: `tune-grid --order 0` wrote a grid
    /// that `sample` then refused).
    pub fn check(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(Error::param("sampler.batch", 0, "at least 1"));
        }
        if self.kind == SamplerKind::Exp && !(1..=MAX_ORDER).contains(&self.order) {
            return Err(Error::param(
                "sampler.order",
                self.order,
                &format!("1 to {MAX_ORDER} (the Adams-Bashforth order of `exp`)"),
            ));
        }
        Ok(())
    }

    /// `steps` points of the config's `grid` (any explicit `times` dropped).
    pub fn set_steps(&mut self, steps: usize) {
        self.steps = steps;
        self.times = None;
    }

    /// The explicit grid `times` (and `steps` its length).
    pub fn set_times(&mut self, times: Vec<f64>) {
        self.steps = times.len();
        self.times = Some(times);
    }

    /// Grid points: those of `times` when given, else `steps`.
    pub fn points(&self) -> usize {
        self.times.as_ref().map_or(self.steps, Vec::len)
    }

    /// The plan of this config on the schedule, with its RG projection: its explicit `times`
    /// (which must start at t_max, where the prior is drawn, and stay in the schedule's range),
    /// or `steps` points of its `grid`.
    pub fn plan(&self, schedule: &dyn Schedule, sigma_data: &[f64]) -> Result<Plan> {
        let projection = Projection::from_config(&self.projection)?;
        let Some(times) = &self.times else {
            return Plan::new(schedule, sigma_data, self.steps, self.grid, projection);
        };
        let (t_min, t_max) = schedule.t_range();
        let tol = 1e-9 * (1.0 + t_max.abs());
        let starts = times.first().is_some_and(|t| (t - t_max).abs() <= tol);
        if !starts
            || times
                .iter()
                .any(|t| !(t_min - tol..=t_max + tol).contains(t))
        {
            return Err(Error::param(
                "sampler.times",
                format!("{times:?}"),
                &format!(
                    "a decreasing grid from t_max = {t_max} (where the prior is drawn) within \
                     [t_min, t_max] = [{t_min}, {t_max}]"
                ),
            ));
        }
        let times = times.iter().map(|t| t.clamp(t_min, t_max)).collect();
        Plan::from_times(schedule, sigma_data, times, projection)
    }

    /// The sampler it names.
    pub fn build(&self) -> Box<dyn Sampler> {
        match self.kind {
            SamplerKind::Sde => Box::new(SdeSampler),
            SamplerKind::Ode => Box::new(OdeSampler),
            SamplerKind::Ancestral => Box::new(AncestralSampler {
                posterior_variance: self.posterior_variance,
            }),
            SamplerKind::Exp => Box::new(ExponentialSampler { order: self.order }),
        }
    }
}

/// Applies `update(chi_k, eps_hat_k, rng_k)` to every sample k of the batch, in parallel.
fn per_sample(
    chi: &mut [f64],
    eps: &[f64],
    rngs: &mut [ChaCha8Rng],
    d: usize,
    update: impl Fn(&mut [f64], &[f64], &mut ChaCha8Rng) + Sync + Send,
) {
    chi.par_chunks_mut(d)
        .zip(eps.par_chunks(d))
        .zip(rngs.par_iter_mut())
        .for_each(|((x, e), rng)| update(x, e, rng));
}

/// The final jump from the last grid point to the data, then the observer hears the last step.
fn finish(
    plan: &Plan,
    score: &dyn ScoreModel,
    chi: &mut [f64],
    rngs: &mut [ChaCha8Rng],
    posterior: PosteriorVariance,
    observer: &mut dyn FnMut(StepInfo),
) {
    final_jump(plan, score, chi, rngs, posterior);
    observer(plan.info(plan.steps() - 1, chi.len() / plan.dim()));
}

/// The jump from the plan's last point to the data, in place: chi0 = chi0_hat, plus (with the
/// Gaussian posterior variance) N(0, v_t) noise, which makes it exact for Gaussian data.
pub fn final_jump(
    plan: &Plan,
    score: &dyn ScoreModel,
    chi: &mut [f64],
    rngs: &mut [ChaCha8Rng],
    posterior: PosteriorVariance,
) {
    let d = plan.dim();
    let mut eps = vec![0.0; chi.len()];
    let last = plan.states.last().expect("plan has points");
    let active = plan.active.last().expect("plan has steps").as_deref();
    score.eps_hat(chi, last, active, &mut eps);
    let (a2, s2) = (last.alpha_sq(), last.sigma_sq());
    per_sample(chi, &eps, rngs, d, |x, e, rng| {
        for i in crate::score::active_or_all(active, d) {
            x[i] = chi0_from_eps(x[i], e[i], a2[i].sqrt(), s2[i].sqrt());
            if posterior == PosteriorVariance::Gaussian {
                let v = crate::score::gaussian_posterior_variance(a2[i], s2[i], plan.sigma_data[i]);
                let z: f64 = StandardNormal.sample(rng);
                x[i] += v.sqrt() * z;
            }
        }
    });
}

/// What a sampling run cost.
#[derive(Debug, Clone, Serialize)]
pub struct SampleReport {
    /// The sampler's name.
    pub sampler: &'static str,
    /// The score's name.
    pub score: &'static str,
    /// Grid points K.
    pub grid_points: usize,
    /// Score-model evaluations per sample.
    pub nfe: usize,
    /// Component-evaluations per sample (with the RG projection: active components only).
    pub component_evals: usize,
    /// The same without projection (nfe x d).
    pub component_evals_full: usize,
    /// Samples drawn.
    pub samples: usize,
}

impl SampleReport {
    /// The fraction of component-evaluations the projection saved.
    pub fn saved_fraction(&self) -> f64 {
        1.0 - self.component_evals as f64 / self.component_evals_full as f64
    }
}

/// Draws samples first..first+count of a run (whitened chi0, (count, d)): each from the prior
/// in its own stream, integrated in batches of `config.batch`.
pub fn generate(
    plan: &Plan,
    score: &dyn ScoreModel,
    config: &SamplerConfig,
    seed: u64,
    first: u64,
    count: usize,
    observer: &mut dyn FnMut(StepInfo),
) -> Result<(Vec<f64>, SampleReport)> {
    let d = plan.dim();
    if score.dim() != d {
        return Err(Error::ShapeMismatch {
            what: format!("score model `{}`", score.name()),
            expected: format!("{d} components"),
            got: format!("{}", score.dim()),
        });
    }
    config.check()?;
    // regression (issue 20): a first index near 2^64 used to wrap around to sample 0
    if first.checked_add(count as u64).is_none() {
        return Err(Error::param(
            "first",
            first,
            &format!("a first sample index with first + {count} samples below 2^64"),
        ));
    }
    let sampler = config.build();
    // the output, and the caller's phi-space copy of it
    crate::memory::check_alloc(
        &format!("{count} samples of {d} components"),
        &[2, count, d],
        8,
    )?;
    let mut out = crate::memory::zeros(&format!("{count} samples of {d} components"), &[count, d])?;
    for (b, chunk) in out.chunks_mut(config.batch * d).enumerate() {
        let start = first + (b * config.batch) as u64;
        let mut rngs: Vec<ChaCha8Rng> = (0..chunk.len() / d)
            .map(|k| sample_rng(seed, start + k as u64))
            .collect();
        chunk
            .par_chunks_mut(d)
            .zip(rngs.par_iter_mut())
            .for_each(|(x, rng)| draw_prior(rng, x));
        sampler.run(plan, score, chunk, &mut rngs, observer);
    }
    let report = SampleReport::of(plan, sampler.as_ref(), score.name(), count);
    Ok((out, report))
}

impl SampleReport {
    /// The cost of drawing `count` samples with `sampler` on `plan` (the final jump takes one
    /// evaluation whatever the sampler).
    pub fn of(plan: &Plan, sampler: &dyn Sampler, score: &'static str, count: usize) -> Self {
        let per_step = sampler.evals_per_step();
        let k = plan.steps();
        let nfe = per_step * (k - 1) + 1;
        let component_evals = (0..k - 1)
            .map(|j| per_step * plan.active_count(j))
            .sum::<usize>()
            + plan.active_count(k - 1);
        SampleReport {
            sampler: sampler.name(),
            score,
            grid_points: k,
            nfe,
            component_evals,
            component_evals_full: nfe * plan.dim(),
            samples: count,
        }
    }
}
