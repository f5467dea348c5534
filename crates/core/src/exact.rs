//! Exact sampling (SPEC section 9): a deterministic sampler as a flow.
//!
//! `exp` and `ode` with a fixed grid of K points map the prior draw z ~ N(0, I) to a field,
//! `phi = T(z) = mean + U^T S T_chi(z)`, and the density of that map is
//!
//! ```text
//! log q(phi) = log N(z; 0, I) - log |det dT_chi/dz| - sum_i log S_i
//! ```
//!
//! The sampler's updates are linear in the state and the score's output with coefficients
//! that depend on the grid only, so the Jacobian `V = dchi/dz` follows the same loop: each row
//! of a batch carries d tangent rows (V's columns, starting at the identity), and the score of
//! a tangent row is `J_b v` with `J_b = d eps_hat / d chi` at its sample's current state
//! ([`ScoreModel::eps_jacobian`]). The sampler is unchanged and knows nothing of it. At the end
//! `log |det V|` comes from an LU factorisation: exact for the map actually applied, whatever
//! its discretisation error.
//!
//! With a [`Target`] (an unnormalised `log p`, e.g. `-S[phi]`), `log w = log p - log q` gives
//! importance weights ([`ess_fraction`], [`log_mean_weight`]) and an independence
//! Metropolis-Hastings chain ([`independence_metropolis`]) whose samples are exact.

use crate::design::Design;
use crate::error::{Error, Result};
use crate::process::NoisingState;
use crate::rng::{stream, Purpose};
use crate::sampler::{
    draw_prior, sample_rng, Plan, SampleReport, SamplerConfig, SamplerKind, StepInfo,
};
use crate::score::ScoreModel;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// An unnormalised log-density of fields in phi-space (SPEC section 9): `log p(phi)` up to a
/// constant, e.g. `-S[phi]` of lattice phi^4.
pub trait Target: Sync {
    /// Number of values d of a field.
    fn dim(&self) -> usize;
    /// `log p(phi)` of one field (d values) up to a constant.
    fn log_density(&self, phi: &[f64]) -> f64;
    /// `grad log p(phi)` into `grad` (d values): what training a flow against the target needs.
    /// The default takes central differences (2d evaluations of log p); a target with a
    /// closed form (the phi^4 force) gives it in O(d).
    fn grad_log_density(&self, phi: &[f64], grad: &mut [f64]) {
        let mut x = phi.to_vec();
        for (i, g) in grad.iter_mut().enumerate() {
            let h = 1e-5 * (1.0 + phi[i].abs());
            x[i] = phi[i] + h;
            let up = self.log_density(&x);
            x[i] = phi[i] - h;
            let down = self.log_density(&x);
            x[i] = phi[i];
            *g = (up - down) / (2.0 * h);
        }
    }
}

/// A source of proposals with their exact log q (SPEC 9): proposal k always comes from
/// stream k of the seed, so any index range is a reproducible shard.
pub trait Proposer: Sync {
    /// Number of values d of a field.
    fn dim(&self) -> usize;
    /// Proposals `first .. first + count` with their log q; `observer` hears the progress.
    fn propose(
        &self,
        seed: u64,
        first: u64,
        count: usize,
        observer: &mut dyn FnMut(StepInfo),
    ) -> Result<Proposals>;
    /// Proposals worth computing together (a batch is the unit of progress and of stopping).
    fn batch(&self) -> usize;
    /// The same fields without their log q (what the density's cost is measured against), or
    /// None where the proposer has no cheaper way to draw them.
    fn fields_only(&self, _seed: u64, _first: u64, _count: usize) -> Option<Result<Vec<f64>>> {
        None
    }
}

/// The K-step map of a deterministic sampler (`exp`, `ode` on the plan's grid) as a
/// [`Proposer`]: [`propose`] in batches of the config's `batch`.
pub struct SamplerProposer<'a> {
    /// The design the score works in.
    pub design: &'a Design,
    /// The grid.
    pub plan: &'a Plan,
    /// The score model.
    pub score: &'a dyn ScoreModel,
    /// The sampler (kind, order, batch).
    pub config: &'a SamplerConfig,
}

impl Proposer for SamplerProposer<'_> {
    fn dim(&self) -> usize {
        self.design.dim()
    }
    fn propose(
        &self,
        seed: u64,
        first: u64,
        count: usize,
        observer: &mut dyn FnMut(StepInfo),
    ) -> Result<Proposals> {
        propose(
            self.design,
            self.plan,
            self.score,
            self.config,
            seed,
            first,
            count,
            observer,
        )
    }
    fn batch(&self) -> usize {
        self.config.batch
    }
    fn fields_only(&self, seed: u64, first: u64, count: usize) -> Option<Result<Vec<f64>>> {
        // the ordinary sampler on the same grid: the same fields without the tangents
        Some(
            crate::sampler::generate(
                self.plan,
                self.score,
                self.config,
                seed,
                first,
                count,
                &mut |_| {},
            )
            .map(|(chi, _)| self.design.whitened_batch_to_fields(&chi)),
        )
    }
}

/// The continuous probability-flow ODE at tolerance `tol` as a [`Proposer`] ([`propose_ode`]).
pub struct OdeProposer<'a> {
    /// The design the score works in.
    pub design: &'a Design,
    /// The score model.
    pub score: &'a dyn ScoreModel,
    /// Relative and absolute tolerance of the adaptive solver.
    pub tol: f64,
    /// Proposals solved together.
    pub batch: usize,
}

impl Proposer for OdeProposer<'_> {
    fn dim(&self) -> usize {
        self.design.dim()
    }
    fn propose(
        &self,
        seed: u64,
        first: u64,
        count: usize,
        _observer: &mut dyn FnMut(StepInfo),
    ) -> Result<Proposals> {
        propose_ode(self.design, self.score, self.tol, seed, first, count)
    }
    fn batch(&self) -> usize {
        self.batch
    }
}

/// Proposals of a deterministic sampler with the exact log-density of the map that produced
/// them.
#[derive(Debug, Clone)]
pub struct Proposals {
    /// The fields, (n, d) row-major, phi-space.
    pub fields: Vec<f64>,
    /// `log q(phi)` of each field (nats, phi-space).
    pub log_q: Vec<f64>,
    /// What the sampling cost (network evaluations per sample etc.).
    pub report: SampleReport,
    /// Proposals whose map was found not injective (a negative determinant of dT/dz: the map
    /// reversed orientation there, SPEC 9.1); their log q is NaN, a rejection.
    pub non_injective: usize,
}

/// The score of the linearised sampler: a batch holds n primal rows, then d tangent rows per
/// primal row (row `n + b d + j` is column j of sample b's Jacobian `dchi/dz`). Primal rows get
/// `eps_hat`, tangent rows `J_b v` with `J_b` at sample b's current state.
struct Linearised<'a> {
    inner: &'a dyn ScoreModel,
    n: usize,
}

impl ScoreModel for Linearised<'_> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn eps_hat(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        _active: Option<&[usize]>,
        eps_hat: &mut [f64],
    ) {
        let (d, n) = (self.dim(), self.n);
        let (primal, tangents) = chi_t.split_at(n * d);
        let (eps, tangent_out) = eps_hat.split_at_mut(n * d);
        let mut jac = vec![0.0; n * d * d];
        self.inner.eps_jacobian(primal, state, eps, &mut jac);
        // (J_b v_j)_i = sum_k J_b[i][k] v_j[k] for every tangent j of sample b
        tangent_out
            .par_chunks_mut(d * d)
            .zip(tangents.par_chunks(d * d))
            .zip(jac.par_chunks(d * d))
            .for_each(|((out, v), j)| {
                for (o, vj) in out.chunks_exact_mut(d).zip(v.chunks_exact(d)) {
                    for (i, oi) in o.iter_mut().enumerate() {
                        let row = &j[i * d..(i + 1) * d];
                        *oi = row.iter().zip(vj).map(|(a, b)| a * b).sum();
                    }
                }
            });
    }
}

/// Proposals integrated together by default for fields of d values: at most 128, and at most
/// 8192 / d (a batch is the unit of progress and of stopping; the network's Jacobians need
/// about 128 images per forward pass, which 8192 / d proposals of r = d / 64 replicas fill)
/// and 2^25 / d^2 (each of the sampler's Jacobian arrays holds n d^2 values). Measured at
/// L = 8, K = 10 (`gud phi4 mcmc --run R --proposals 128 --batch B`, 2 cores): 0.245 / 0.215 /
/// 0.187 / 0.181 s per proposal at B = 4 / 16 / 64 / 128.
pub fn proposal_batch(d: usize) -> usize {
    let d = d.max(1);
    (8192 / d).min((1usize << 25) / (d * d)).clamp(1, 128)
}

/// Checks that `count` proposals of `d` values with their log q fit in memory (regression,
/// issue 34: a huge count aborted the process in the allocator).
fn check_output(count: usize, d: usize) -> Result<()> {
    crate::memory::check_alloc(
        &format!("proposals = {count} of {d} values with their log q"),
        &[count, d + 1],
        8,
    )
    .map(|_| ())
}

/// log |det A| of a d x d matrix (row-major) by LU with partial pivoting.
pub fn log_abs_det(a: &[f64], d: usize) -> f64 {
    log_det_and_sign(a, d).0
}

/// (log |det A|, sign of det A) of a d x d matrix (row-major) by LU with partial pivoting; the
/// sign is 0 for a singular matrix.
pub fn log_det_and_sign(a: &[f64], d: usize) -> (f64, f64) {
    let m = nalgebra::DMatrix::from_row_slice(d, d, a);
    let lu = m.lu();
    let diag = lu.u().diagonal();
    let mut sign = if lu.p().determinant::<f64>() < 0.0 {
        -1.0
    } else {
        1.0
    };
    let mut log = 0.0;
    for u in diag.iter() {
        sign *= u.signum() * if *u == 0.0 { 0.0 } else { 1.0 };
        log += u.abs().ln();
    }
    (log, sign)
}

/// `log N(z; 0, I) = -|z|^2 / 2 - d/2 log(2 pi)`.
pub fn log_standard_normal(z: &[f64]) -> f64 {
    let d = z.len() as f64;
    -0.5 * z.iter().map(|x| x * x).sum::<f64>() - 0.5 * d * (2.0 * std::f64::consts::PI).ln()
}

/// Draws samples `first .. first + count` of a deterministic sampler (`exp` or `ode`, the grid
/// of `plan`) with `log q` of each (SPEC section 9). Sample k starts from the same prior draw
/// (stream k of the seed) as in [`crate::sampler::generate`], so the fields are the ordinary
/// samples; batches of `config.batch` carry d tangent rows per sample.
pub fn propose(
    design: &Design,
    plan: &Plan,
    score: &dyn ScoreModel,
    config: &SamplerConfig,
    seed: u64,
    first: u64,
    count: usize,
    observer: &mut dyn FnMut(StepInfo),
) -> Result<Proposals> {
    let d = plan.dim();
    if !matches!(config.kind, SamplerKind::Exp | SamplerKind::Ode) {
        return Err(Error::param(
            "sampler.kind",
            format!("{:?}", config.kind).to_lowercase(),
            "a deterministic sampler (`exp` or `ode`): exact densities need a map from noise",
        ));
    }
    if score.dim() != d || design.dim() != d {
        return Err(Error::ShapeMismatch {
            what: format!("score model `{}`", score.name()),
            expected: format!("{d} components"),
            got: format!("{}", score.dim()),
        });
    }
    if count == 0 {
        return Err(Error::param("proposals", count, "at least 1"));
    }
    config.check()?;
    if first.checked_add(count as u64).is_none() {
        return Err(Error::param("first", first, "first + count below 2^64"));
    }
    check_output(count, d)?;
    let batch = config.batch.min(count);
    crate::memory::check_alloc(
        &format!("{batch} proposals with their {d} x {d} Jacobians"),
        &[4, batch, d + 1, d],
        8,
    )?;
    let sampler = config.build();
    let log_det_s = crate::likelihood::whitening_log_det(design.scale());
    let (mut fields, mut log_q) = (Vec::with_capacity(count * d), Vec::with_capacity(count));
    let mut report = None;
    let mut non_injective = 0;
    for start in (0..count).step_by(batch) {
        let n = batch.min(count - start);
        let first_b = first + start as u64;
        // primal rows from the prior, then the identity as tangents
        let mut rows = vec![0.0; n * d + n * d * d];
        let mut rngs: Vec<ChaCha8Rng> = (0..n)
            .map(|k| sample_rng(seed, first_b + k as u64))
            .collect();
        for (x, rng) in rows[..n * d].chunks_exact_mut(d).zip(rngs.iter_mut()) {
            draw_prior(rng, x);
        }
        let z = rows[..n * d].to_vec();
        for (k, t) in rows[n * d..].chunks_exact_mut(d).enumerate() {
            t[k % d] = 1.0;
        }
        // deterministic samplers draw nothing; every row still gets a stream of its own
        rngs.extend((0..n * d).map(|k| stream(seed, Purpose::Tangent, k as u64)));
        let lin = Linearised { inner: score, n };
        sampler.run(plan, &lin, &mut rows, &mut rngs, observer);
        let (chi0, tangents) = rows.split_at(n * d);
        // a map that reversed orientation at z is not injective there (SPEC 9.1): its
        // proposal gets no density (NaN: a rejection) and is counted
        let lq: Vec<f64> = (0..n)
            .into_par_iter()
            .map(|b| {
                let v = &tangents[b * d * d..(b + 1) * d * d];
                let (log_det, sign) = log_det_and_sign(v, d);
                if sign > 0.0 {
                    log_standard_normal(&z[b * d..(b + 1) * d]) - log_det + log_det_s
                } else {
                    f64::NAN
                }
            })
            .collect();
        non_injective += lq.iter().filter(|l| l.is_nan()).count();
        fields.extend(design.whitened_batch_to_fields(chi0));
        log_q.extend(lq);
        report = Some(SampleReport::of(
            plan,
            sampler.as_ref(),
            score.name(),
            count,
        ));
    }
    Ok(Proposals {
        fields,
        log_q,
        report: report.expect("count >= 1"),
        non_injective,
    })
}

/// Proposals of the continuous probability-flow ODE (adaptive Dormand-Prince with relative and
/// absolute tolerance `tol`) with `log q` from the same solve (SPEC section 9): sample k starts
/// from the prior draw of stream k of the seed, as the K-step samplers do.
pub fn propose_ode(
    design: &Design,
    score: &dyn ScoreModel,
    tol: f64,
    seed: u64,
    first: u64,
    count: usize,
) -> Result<Proposals> {
    let d = design.dim();
    if count == 0 {
        return Err(Error::param("proposals", count, "at least 1"));
    }
    if first.checked_add(count as u64).is_none() {
        return Err(Error::param("first", first, "first + count below 2^64"));
    }
    // the prior draws, the solve's state and the fields: three arrays of count x d
    crate::memory::check_alloc(
        &format!("proposals = {count} of {d} values (the continuous ODE's draws and fields)"),
        &[count, 3 * d + 1],
        8,
    )?;
    let mut z = vec![0.0; count * d];
    for (k, x) in z.chunks_exact_mut(d).enumerate() {
        draw_prior(&mut sample_rng(seed, first + k as u64), x);
    }
    let opts = crate::likelihood::OdeOptions {
        rtol: tol,
        atol: tol,
        ..crate::likelihood::OdeOptions::new(d)
    };
    let (chi, solve) = crate::likelihood::ode_sample_log_q(score, design.schedule(), &z, &opts)?;
    let log_det_s = crate::likelihood::whitening_log_det(design.scale());
    Ok(Proposals {
        fields: design.whitened_batch_to_fields(&chi),
        log_q: solve.log_p.iter().map(|l| l + log_det_s).collect(),
        non_injective: 0,
        report: SampleReport {
            sampler: "ode-adaptive",
            score: score.name(),
            grid_points: solve.accepted_steps + 1,
            nfe: solve.drift_evals,
            component_evals: solve.drift_evals * d,
            component_evals_full: solve.drift_evals * d,
            samples: count,
        },
    })
}

/// `log p(phi)` of every field ((n, d) row-major) under the target.
pub fn log_densities(target: &dyn Target, fields: &[f64]) -> Vec<f64> {
    fields
        .par_chunks(target.dim())
        .map(|phi| target.log_density(phi))
        .collect()
}

/// `log w = log p - log q` per proposal; a non-finite `log p` or `log q` gives `-inf` (a
/// weight of zero: never accepted, never counted).
pub fn log_weights(log_p: &[f64], log_q: &[f64]) -> Vec<f64> {
    log_p
        .iter()
        .zip(log_q)
        .map(|(lp, lq)| {
            let lw = lp - lq;
            if lw.is_finite() {
                lw
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect()
}

/// Normalised weights `w_i / max w` (zero for `-inf`).
fn relative_weights(log_w: &[f64]) -> Vec<f64> {
    let max = log_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    log_w
        .iter()
        .map(|&l| if l.is_finite() { (l - max).exp() } else { 0.0 })
        .collect()
}

/// `ESS / N = (sum w)^2 / (N sum w^2)` (SPEC section 9); 0 when no weight is finite.
pub fn ess_fraction(log_w: &[f64]) -> f64 {
    let w = relative_weights(log_w);
    let (s1, s2) = w.iter().fold((0.0, 0.0), |(a, b), x| (a + x, b + x * x));
    if s2 == 0.0 {
        0.0
    } else {
        s1 * s1 / (w.len() as f64 * s2)
    }
}

/// `log Z = log mean w` with its standard error by the delta method,
/// `se = sqrt(Var(w) / N) / mean(w)` (SPEC section 9).
pub fn log_mean_weight(log_w: &[f64]) -> (f64, f64) {
    let max = log_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return (f64::NEG_INFINITY, f64::NAN);
    }
    let w = relative_weights(log_w);
    let n = w.len() as f64;
    let mean = w.iter().sum::<f64>() / n;
    let var = w.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0).max(1.0);
    (max + mean.ln(), (var / n).sqrt() / mean)
}

/// An independence Metropolis-Hastings chain over proposals (SPEC section 9).
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    /// The proposal held at each step (step 0: the first proposal with a finite weight).
    pub states: Vec<usize>,
    /// Proposals accepted after the first.
    pub accepted: usize,
    /// The longest run of consecutive rejections.
    pub longest_rejection_run: usize,
    /// Proposals with a non-finite `log w` (all rejected).
    pub non_finite: usize,
}

impl Chain {
    /// Accepted proposals over the proposals after the first state.
    pub fn acceptance(&self) -> f64 {
        self.accepted as f64 / (self.states.len().saturating_sub(1)).max(1) as f64
    }
}

/// Independence Metropolis-Hastings over proposals in order: proposal j replaces the current
/// state with probability `min(1, w_j / w_current)`; a rejection repeats the state, a
/// non-finite `log w` is a rejection. Uniforms from the metropolis stream of `seed`. An error
/// when no proposal has a finite weight.
pub fn independence_metropolis(log_w: &[f64], seed: u64) -> Result<Chain> {
    let Some(start) = log_w.iter().position(|l| l.is_finite()) else {
        return Err(Error::Numerical {
            what: "independence Metropolis-Hastings".into(),
            reason: format!(
                "none of the {} proposals has a finite log weight",
                log_w.len()
            ),
        });
    };
    let mut rng = stream(seed, Purpose::Metropolis, 0);
    let mut chain = Chain {
        states: Vec::with_capacity(log_w.len() - start),
        accepted: 0,
        longest_rejection_run: 0,
        non_finite: log_w.iter().filter(|l| !l.is_finite()).count(),
    };
    let (mut current, mut run) = (start, 0);
    chain.states.push(current);
    for (j, &lw) in log_w.iter().enumerate().skip(start + 1) {
        let u: f64 = rng.random();
        if lw.is_finite() && u.ln() < lw - log_w[current] {
            current = j;
            chain.accepted += 1;
            run = 0;
        } else {
            run += 1;
            chain.longest_rejection_run = chain.longest_rejection_run.max(run);
        }
        chain.states.push(current);
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DesignConfig, MeanMode, ScoreConfig};
    use crate::free_field::free_field_samples;
    use crate::Field;
    use rand_distr::{Distribution, StandardNormal};

    #[test]
    fn the_proposal_batch_bounds_the_work_per_batch_and_the_jacobians_memory() {
        // L = 8, 16, 32, 64 and a tiny design
        assert_eq!(proposal_batch(64), 128);
        assert_eq!(proposal_batch(256), 32);
        assert_eq!(proposal_batch(1024), 8);
        assert_eq!(proposal_batch(4096), 2);
        assert_eq!(proposal_batch(4), 128);
        for d in [1, 7, 64, 100, 333, 4096, 100_000] {
            let n = proposal_batch(d);
            assert!(
                (1..=128).contains(&n) && (n == 1 || n * d * d <= 1 << 25),
                "d = {d}: {n}"
            );
        }
    }

    fn free_design(l: usize, n: usize) -> (Design, crate::Dataset) {
        let data = free_field_samples(l, 0.5, n, 1).unwrap();
        let config = DesignConfig {
            mean: MeanMode::Zero,
            ..DesignConfig::default()
        };
        (Design::fit(&config, &data).unwrap(), data)
    }

    fn config(kind: SamplerKind, steps: usize) -> SamplerConfig {
        SamplerConfig {
            kind,
            steps,
            batch: 3,
            ..SamplerConfig::default()
        }
    }

    fn plan(design: &Design, c: &SamplerConfig) -> Plan {
        Plan::new(
            design.schedule(),
            design.sigma_data(),
            c.steps,
            c.grid,
            None,
        )
        .unwrap()
    }

    #[test]
    fn exp_on_gaussian_data_has_the_gaussian_density_of_the_design() {
        // SPEC 9: the exp sampler with the gaussian score is exact for Gaussian data at any K,
        // so log q(phi) = log N(chi0(phi); 0, Sigma) + log |det dchi/dphi|
        let (design, data) = free_design(4, 2000);
        let score = ScoreConfig::Gaussian {}.build(&design, &data).unwrap();
        let sigma = design.sigma_data();
        let log_det = crate::likelihood::whitening_log_det(design.scale());
        for steps in [2, 3, 5] {
            let c = config(SamplerKind::Exp, steps);
            let p = propose(
                &design,
                &plan(&design, &c),
                score.as_ref(),
                &c,
                7,
                0,
                8,
                &mut |_| {},
            )
            .unwrap();
            for (phi, lq) in p.fields.chunks_exact(16).zip(&p.log_q) {
                let chi = design.field_to_whitened(&Field(phi.to_vec())).unwrap();
                let exact: f64 = chi
                    .as_slice()
                    .iter()
                    .zip(sigma)
                    .map(|(x, s)| -0.5 * x * x / s - 0.5 * (2.0 * std::f64::consts::PI * s).ln())
                    .sum::<f64>()
                    + log_det;
                assert!(
                    (lq - exact).abs() < 1e-6 * 16.0,
                    "K = {steps}: {lq} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn the_continuous_ode_on_gaussian_data_has_the_density_of_its_end_point() {
        // the gaussian score's ODE maps N(0, I) at t_max to N(0, alpha^2 Sigma + sigma^2) at
        // t_min: log q of the end point is that Gaussian's density (to the solver tolerance)
        let (design, data) = free_design(4, 2000);
        let score = ScoreConfig::Gaussian {}.build(&design, &data).unwrap();
        let p = propose_ode(&design, score.as_ref(), 1e-9, 5, 0, 6).unwrap();
        let (t_min, _) = design.schedule().t_range();
        let state = design.state(t_min);
        let sigma = design.sigma_data();
        let log_det = crate::likelihood::whitening_log_det(design.scale());
        for (phi, lq) in p.fields.chunks_exact(16).zip(&p.log_q) {
            let chi = design.field_to_whitened(&Field(phi.to_vec())).unwrap();
            let exact: f64 = (0..16)
                .map(|i| {
                    let var = state.alpha_sq()[i] * sigma[i] + state.sigma_sq()[i];
                    let x = chi.as_slice()[i];
                    -0.5 * x * x / var - 0.5 * (2.0 * std::f64::consts::PI * var).ln()
                })
                .sum::<f64>()
                + log_det;
            assert!((lq - exact).abs() < 1e-6 * 16.0, "{lq} vs {exact}");
        }
    }

    #[test]
    fn proposals_are_the_ordinary_samples_of_the_same_seed() {
        let (design, data) = free_design(4, 500);
        let score = ScoreConfig::Empirical {}.build(&design, &data).unwrap();
        let c = config(SamplerKind::Exp, 4);
        let pl = plan(&design, &c);
        let p = propose(&design, &pl, score.as_ref(), &c, 3, 5, 4, &mut |_| {}).unwrap();
        let (chi0, _) =
            crate::sampler::generate(&pl, score.as_ref(), &c, 3, 5, 4, &mut |_| {}).unwrap();
        let fields = design.whitened_batch_to_fields(&chi0);
        for (a, b) in p.fields.iter().zip(&fields) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }

    /// log |det dT_chi/dz| by central differences of the whole K-step map.
    fn fd_log_det(design: &Design, score: &dyn ScoreModel, c: &SamplerConfig, z: &[f64]) -> f64 {
        let d = z.len();
        let pl = plan(design, c);
        let sampler = c.build();
        let h = 1e-5;
        let map = |x: Vec<f64>| -> Vec<f64> {
            let mut x = x;
            let mut rngs = vec![stream(0, Purpose::Tangent, 0)];
            sampler.run(&pl, score, &mut x, &mut rngs, &mut |_| {});
            x
        };
        let mut jac = vec![0.0; d * d];
        for k in 0..d {
            let (mut plus, mut minus) = (z.to_vec(), z.to_vec());
            plus[k] += h;
            minus[k] -= h;
            let (a, b) = (map(plus), map(minus));
            for i in 0..d {
                jac[i * d + k] = (a[i] - b[i]) / (2.0 * h);
            }
        }
        log_abs_det(&jac, d)
    }

    /// The gaussian score plus a coupling `0.3 tanh(A chi)` with a dense fixed matrix A: a
    /// smooth nonlinear model with a full Jacobian (the default, by central differences).
    struct Perturbed {
        base: crate::score::GaussianScore,
        a: Vec<f64>,
    }

    impl ScoreModel for Perturbed {
        fn name(&self) -> &'static str {
            "perturbed"
        }
        fn dim(&self) -> usize {
            self.base.dim()
        }
        fn eps_hat(&self, chi: &[f64], state: &NoisingState, _: Option<&[usize]>, out: &mut [f64]) {
            let d = self.dim();
            self.base.eps_hat(chi, state, None, out);
            for (x, o) in chi.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
                for i in 0..d {
                    let ax: f64 = (0..d).map(|k| self.a[i * d + k] * x[k]).sum();
                    o[i] += 0.3 * ax.tanh();
                }
            }
        }
    }

    /// The gaussian score with component 0's eps replaced by `slope * chi_0`: a steep slope of
    /// the right sign makes a step reverse component 0 (a non-injective step of the map).
    struct Folding {
        base: crate::score::GaussianScore,
        slope: f64,
    }

    impl ScoreModel for Folding {
        fn name(&self) -> &'static str {
            "folding"
        }
        fn dim(&self) -> usize {
            self.base.dim()
        }
        fn eps_hat(&self, chi: &[f64], state: &NoisingState, _: Option<&[usize]>, out: &mut [f64]) {
            let d = self.dim();
            self.base.eps_hat(chi, state, None, out);
            for (x, o) in chi.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
                o[0] = self.slope * x[0];
            }
        }
    }

    #[test]
    fn a_map_that_reverses_orientation_is_detected_and_its_proposal_rejected() {
        // SPEC 9.1: the sign of det dT/dz (finite differences of the plain sampler here) decides;
        // a negative one gives log q = NaN (a rejection) and is counted
        let (design, _) = free_design(2, 200);
        let base = crate::score::GaussianScore::new(design.sigma_data().to_vec());
        let (mut flagged, mut kept) = (0, 0);
        for slope in [-40.0, -8.0, 0.5, 8.0, 40.0] {
            for steps in [2, 3, 4] {
                let score = Folding {
                    base: base.clone(),
                    slope,
                };
                let c = SamplerConfig {
                    order: 1,
                    ..config(SamplerKind::Exp, steps)
                };
                let p = propose(
                    &design,
                    &plan(&design, &c),
                    &score,
                    &c,
                    3,
                    0,
                    2,
                    &mut |_| {},
                )
                .unwrap();
                let mut z = vec![0.0; 4];
                draw_prior(&mut sample_rng(3, 0), &mut z);
                let pl = plan(&design, &c);
                let sampler = c.build();
                let h = 1e-6;
                let mut jac = vec![0.0; 16];
                for k in 0..4 {
                    let (mut plus, mut minus) = (z.clone(), z.clone());
                    plus[k] += h;
                    minus[k] -= h;
                    for x in [&mut plus, &mut minus] {
                        let mut rngs = vec![stream(0, Purpose::Tangent, 0)];
                        sampler.run(&pl, &score, x, &mut rngs, &mut |_| {});
                    }
                    for i in 0..4 {
                        jac[i * 4 + k] = (plus[i] - minus[i]) / (2.0 * h);
                    }
                }
                let negative = log_det_and_sign(&jac, 4).1 < 0.0;
                assert_eq!(p.log_q[0].is_nan(), negative, "slope {slope}, K = {steps}");
                if negative {
                    flagged += 1;
                    assert!(p.non_injective >= 1);
                } else {
                    kept += 1;
                    assert!(p.log_q[0].is_finite());
                }
            }
        }
        assert!(flagged > 0 && kept > 0, "flagged {flagged}, kept {kept}");
    }

    #[test]
    fn the_log_determinant_equals_finite_differences_of_the_map() {
        for l in [2, 3] {
            let (design, _) = free_design(l, 200);
            let d = l * l;
            let a = (0..d * d)
                .map(|k| ((k * 7 % 11) as f64 - 5.0) / 9.0)
                .collect();
            let score = Perturbed {
                base: crate::score::GaussianScore::new(design.sigma_data().to_vec()),
                a,
            };
            let score: &dyn ScoreModel = &score;
            for (kind, steps) in [(SamplerKind::Exp, 4), (SamplerKind::Ode, 3)] {
                let c = config(kind, steps);
                let p = propose(
                    &design,
                    &plan(&design, &c),
                    score,
                    &c,
                    11,
                    0,
                    2,
                    &mut |_| {},
                )
                .unwrap();
                for b in 0..2 {
                    let mut rng = sample_rng(11, b as u64);
                    let z: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
                    let fd = fd_log_det(&design, score, &c, &z);
                    let from_q = log_standard_normal(&z) - p.log_q[b]
                        + crate::likelihood::whitening_log_det(design.scale());
                    assert!(
                        (fd - from_q).abs() < 1e-4,
                        "L = {l} {kind:?}: {fd} vs {from_q}"
                    );
                }
            }
        }
    }

    #[test]
    fn stochastic_samplers_are_refused() {
        let (design, data) = free_design(2, 12);
        let score = ScoreConfig::Gaussian {}.build(&design, &data).unwrap();
        for kind in [SamplerKind::Sde, SamplerKind::Ancestral] {
            let c = config(kind, 4);
            let e = propose(
                &design,
                &plan(&design, &c),
                score.as_ref(),
                &c,
                0,
                0,
                2,
                &mut |_| {},
            )
            .unwrap_err();
            assert!(e.to_string().contains("deterministic"), "{e}");
        }
    }

    #[test]
    fn issue34_huge_counts_and_a_zero_batch_are_errors_naming_the_parameter() {
        let (design, data) = free_design(2, 12);
        let score = ScoreConfig::Gaussian {}.build(&design, &data).unwrap();
        let c = config(SamplerKind::Exp, 4);
        let p = plan(&design, &c);
        let huge = 1_000_000_000_000;
        let e = propose(&design, &p, score.as_ref(), &c, 0, 0, huge, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("proposals = 1000000000000") && e.contains("memory"),
            "{e}"
        );
        let e = propose_ode(&design, score.as_ref(), 1e-5, 0, 0, huge)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("proposals = 1000000000000") && e.contains("memory"),
            "{e}"
        );
        let zero = SamplerConfig {
            batch: 0,
            ..c.clone()
        };
        let e = propose(&design, &p, score.as_ref(), &zero, 0, 0, 16, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("`sampler.batch` = 0"), "{e}");
    }

    #[test]
    fn weights_ess_and_log_z_have_their_closed_forms() {
        assert!((ess_fraction(&[0.3; 10]) - 1.0).abs() < 1e-15);
        // two weights 1 and e: ESS/N = (1 + e)^2 / (2 (1 + e^2))
        let e = std::f64::consts::E;
        assert!(
            (ess_fraction(&[0.0, 1.0]) - (1.0 + e).powi(2) / (2.0 * (1.0 + e * e))).abs() < 1e-14
        );
        let (lz, se) = log_mean_weight(&[2.0; 5]);
        assert!((lz - 2.0).abs() < 1e-15 && se == 0.0);
        let (lz, _) = log_mean_weight(&[0.0, 1.0, f64::NEG_INFINITY]);
        assert!((lz - ((1.0 + e) / 3.0).ln()).abs() < 1e-14);
        assert_eq!(ess_fraction(&[f64::NEG_INFINITY; 3]), 0.0);
    }

    #[test]
    fn metropolis_accepts_equal_weights_and_rejects_non_finite_ones() {
        let chain = independence_metropolis(&[0.5; 100], 1).unwrap();
        assert_eq!(chain.accepted, 99);
        assert_eq!(chain.acceptance(), 1.0);
        assert_eq!(chain.states, (0..100).collect::<Vec<_>>());
        let lw = [f64::NEG_INFINITY, 0.0, f64::NAN, f64::NEG_INFINITY, 0.0];
        let chain = independence_metropolis(&lw, 1).unwrap();
        assert_eq!(chain.states, [1, 1, 1, 4]);
        assert_eq!(
            (
                chain.accepted,
                chain.non_finite,
                chain.longest_rejection_run
            ),
            (1, 3, 2)
        );
        assert!(independence_metropolis(&[f64::NAN; 4], 0).is_err());
    }

    #[test]
    fn metropolis_acceptance_of_two_level_weights_matches_its_expectation() {
        // weights 1 and 2 with probability 1/2 each: the chain holds w = 2 with probability 2/3
        // and accepts with 1/3 (1) + 2/3 (1/2 + 1/2 x 1/2) = 5/6; N = 40000, binomial error
        // 0.0019, doubled for the correlation of successive steps, 4 sigma
        let mut rng = stream(5, Purpose::Metropolis, 1);
        let lw: Vec<f64> = (0..40000)
            .map(|_| if rng.random::<bool>() { 0.0 } else { 2f64.ln() })
            .collect();
        let chain = independence_metropolis(&lw, 9).unwrap();
        let p = 5.0 / 6.0;
        let se = 2.0 * (p * (1.0 - p) / 40000.0f64).sqrt();
        assert!(
            (chain.acceptance() - p).abs() < 4.0 * se,
            "{}",
            chain.acceptance()
        );
    }
}
