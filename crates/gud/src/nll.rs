//! Negative log-likelihood of held-out data in nats and bits per dimension (SPEC section 6):
//! the discrete-time ELBO bound or the exact probability-flow ODE density. Quantised data
//! (8-bit images) are dequantised uniformly (seeded), and bits/dim include the dequantisation
//! offset and the whitening's log-Jacobian, as in the literature.

use crate::error::{bail, Context, Result};
use gud_core::config::{PosteriorVariance, TimeGrid};
use gud_core::likelihood::{
    bits_per_dim, negative_elbo, ode_log_likelihood, whitening_log_det, Divergence, ElboOptions,
    ElboTerms, OdeOptions,
};
use gud_core::monitor::{Interrupted, Monitor};
use gud_core::rng::{stream, Purpose};
use gud_core::score::ScoreModel;
use gud_core::{Dataset, Design, Quantization};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// How the likelihood is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The discrete-time ELBO (a bound: -ELBO >= NLL).
    Elbo,
    /// The exact log-density of the probability-flow ODE model.
    Ode,
}

impl Method {
    /// The method's name (the monitor's phase).
    pub fn name(self) -> &'static str {
        match self {
            Method::Elbo => "elbo",
            Method::Ode => "ode",
        }
    }
}

/// The settings of [`nll`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NllOptions {
    /// ELBO or ODE.
    pub method: Method,
    /// ELBO: steps T of the hierarchy (T + 1 evaluations per sample).
    pub steps: usize,
    /// ELBO: the time grid of the hierarchy.
    pub time_grid: TimeGrid,
    /// ELBO: the reverse kernels' posterior variance.
    pub posterior_variance: PosteriorVariance,
    /// ODE: the divergence (default: exact up to d = 256).
    pub divergence: Option<Divergence>,
    /// ODE: Hutchinson probes per sample.
    pub probes: usize,
    /// ODE: relative and absolute tolerance of the adaptive solver.
    pub tol: f64,
    /// Seed of the ELBO's noise, the Hutchinson probes and the dequantisation.
    pub seed: u64,
    /// Samples evaluated together.
    pub batch: usize,
}

impl Default for NllOptions {
    fn default() -> Self {
        NllOptions {
            method: Method::Elbo,
            steps: 100,
            time_grid: TimeGrid::UniformT,
            posterior_variance: PosteriorVariance::None,
            divergence: None,
            probes: 1,
            tol: 1e-5,
            seed: 0,
            batch: 64,
        }
    }
}

/// The likelihood of a test set.
#[derive(Debug, Clone, Serialize)]
pub struct NllReport {
    /// ELBO or ODE.
    pub method: Method,
    /// The score model's name.
    pub score: String,
    /// Test samples.
    pub samples: usize,
    /// Dimension d of a sample.
    pub dim: usize,
    /// NLL of the field per sample (nats): mean over samples.
    pub nats: f64,
    /// Standard error of `nats`.
    pub nats_se: f64,
    /// `nats / d`.
    pub nats_per_dim: f64,
    /// NLL in bits per dimension (with the 8-bit offset for dequantised data).
    pub bits_per_dim: f64,
    /// Standard error of `bits_per_dim`.
    pub bits_per_dim_se: f64,
    /// Whether the data were dequantised (8-bit) and the offset in bits/dim included.
    pub dequantized: bool,
    /// ELBO: mean of the prior, diffusion and reconstruction terms (nats, whitened space).
    pub elbo_terms: Option<ElboTerms>,
    /// ELBO: steps of the hierarchy.
    pub steps: Option<usize>,
    /// ODE: the divergence used.
    pub divergence: Option<Divergence>,
    /// ODE: drift evaluations (sum over batches).
    pub drift_evals: Option<usize>,
    /// ODE: accepted and rejected solver steps (sum over batches).
    pub solver_steps: Option<usize>,
    /// ODE: mean standard error of the Hutchinson estimate per sample (nats, >= 2 probes).
    pub hutchinson_se: Option<f64>,
    /// Seconds.
    pub wall_s: f64,
}

/// Mean -ELBO of `test` in bits/dim (with the dequantisation offset for 8-bit data) and its
/// standard error over samples.
pub fn elbo_bits(
    design: &Design,
    score: &dyn ScoreModel,
    test: &Dataset,
    steps: usize,
    posterior_variance: PosteriorVariance,
    seed: u64,
) -> Result<(f64, f64)> {
    let d = design.dim();
    let chi0 = whitened_test_set(design, test, seed);
    let log_det = whitening_log_det(design.scale());
    let opts = ElboOptions {
        steps,
        grid: TimeGrid::UniformT,
        posterior_variance,
        seed,
    };
    let mut nll = Vec::with_capacity(test.len());
    for (b, rows) in chi0.chunks(64 * d).enumerate() {
        let terms = elbo_terms(design, score, rows, (b * 64) as u64, &opts)?;
        nll.extend(terms.iter().map(|t| t.total() - log_det));
    }
    let s = summarise(&nll, d, test.quantization());
    Ok((s.bits, s.bits_se))
}

/// Mean and standard error of per-sample field NLLs (nats), and the same in bits/dim (with the
/// dequantisation offset for quantised data).
struct Summary {
    nats: f64,
    nats_se: f64,
    bits: f64,
    bits_se: f64,
}

fn summarise(nll: &[f64], d: usize, q: Option<&Quantization>) -> Summary {
    let (mean, var) = gud_core::numerics::mean_var(nll);
    let se = (var / nll.len() as f64).sqrt();
    Summary {
        nats: mean,
        nats_se: se,
        bits: bits_per_dim(mean, d, q),
        bits_se: se / (d as f64 * std::f64::consts::LN_2),
    }
}

/// -ELBO terms of whitened rows under the design (row b uses stream `first + b`).
fn elbo_terms(
    design: &Design,
    score: &dyn ScoreModel,
    rows: &[f64],
    first: u64,
    opts: &ElboOptions,
) -> Result<Vec<ElboTerms>> {
    Ok(negative_elbo(
        score,
        design.schedule(),
        design.sigma_data(),
        rows,
        first,
        opts,
    )?)
}

/// chi0 = S^-1 U (phi - mu) of each test sample, dequantised first when the data are levels
/// (sample k uses stream k of the seed).
pub fn whitened_test_set(design: &Design, test: &Dataset, seed: u64) -> Vec<f64> {
    let d = design.dim();
    let mut phi = test.as_slice().to_vec();
    if let Some(q) = test.quantization() {
        for (k, row) in phi.chunks_exact_mut(d).enumerate() {
            let mut rng = stream(seed, Purpose::Dequantization, k as u64);
            for x in row {
                *x = q.dequantize(*x, rng.random::<f64>());
            }
        }
    }
    let mut chi = Vec::with_capacity(phi.len());
    for row in phi.chunks_exact(d) {
        let field = gud_core::Field(row.to_vec());
        chi.extend(design.field_to_whitened(&field).expect("shape checked").0);
    }
    chi
}

/// The NLL of `test` under the design and `score`, in batches of `opts.batch`: the monitor
/// hears each batch (phase `elbo` or `ode`, in samples) and a stop request ends the run after
/// the current batch with [`crate::Error::Interrupted`].
pub fn nll(
    design: &Design,
    score: &dyn ScoreModel,
    test: &Dataset,
    opts: &NllOptions,
    monitor: &dyn Monitor,
) -> Result<NllReport> {
    if opts.batch == 0 {
        return Err(gud_core::Error::param("batch", 0, "at least 1").into());
    }
    if test.shape() != design.shape() {
        bail!(
            "the test data have shape {}, the design {}",
            test.shape(),
            design.shape()
        );
    }
    let start = Instant::now();
    let chi0 = whitened_test_set(design, test, opts.seed);
    let mut report = evaluate(design, score, &chi0, opts, test.quantization(), monitor)?;
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Runs the chosen method in batches and summarises per-sample NLLs of the field.
fn evaluate(
    design: &Design,
    score: &dyn ScoreModel,
    chi0: &[f64],
    a: &NllOptions,
    quantization: Option<&Quantization>,
    monitor: &dyn Monitor,
) -> Result<NllReport> {
    let d = design.dim();
    let n = chi0.len() / d;
    let log_det = whitening_log_det(design.scale());
    let mut nll = Vec::with_capacity(n);
    let mut terms = ElboTerms::default();
    let (mut drift_evals, mut solver_steps, mut probe_se) = (0, 0, Vec::new());
    let divergence = a.divergence.unwrap_or_else(|| Divergence::auto(d));
    for (b, rows) in chi0.chunks(a.batch * d).enumerate() {
        let first = (b * a.batch) as u64;
        match a.method {
            Method::Elbo => {
                let opts = ElboOptions {
                    steps: a.steps,
                    grid: a.time_grid,
                    posterior_variance: a.posterior_variance,
                    seed: a.seed,
                };
                let t = elbo_terms(design, score, rows, first, &opts)?;
                for x in &t {
                    nll.push(x.total() - log_det);
                    terms.prior += x.prior / n as f64;
                    terms.diffusion += x.diffusion / n as f64;
                    terms.reconstruction += x.reconstruction / n as f64;
                }
            }
            Method::Ode => {
                let opts = OdeOptions {
                    rtol: a.tol,
                    atol: a.tol,
                    divergence,
                    probes: a.probes,
                    seed: a.seed,
                    ..OdeOptions::new(d)
                };
                let r = ode_log_likelihood(score, design.schedule(), rows, first, &opts)
                    .context("integrating the probability-flow ODE")?;
                nll.extend(r.log_p.iter().map(|lp| -lp - log_det));
                drift_evals += r.drift_evals;
                solver_steps += r.accepted_steps + r.rejected_steps;
                probe_se.extend(r.probe_se.unwrap_or_default());
            }
        }
        monitor.progress(a.method.name(), nll.len(), n, "");
        if monitor.should_stop() && nll.len() < n {
            return Err(Interrupted::new("nothing was written").into());
        }
    }
    if let Some(i) = nll.iter().position(|x| !x.is_finite()) {
        bail!("the NLL of test sample {i} is not finite ({})", nll[i]);
    }
    let sum = summarise(&nll, d, quantization);
    let elbo = a.method == Method::Elbo;
    Ok(NllReport {
        method: a.method,
        score: score.name().to_string(),
        samples: n,
        dim: d,
        nats: sum.nats,
        nats_se: sum.nats_se,
        nats_per_dim: sum.nats / d as f64,
        bits_per_dim: sum.bits,
        bits_per_dim_se: sum.bits_se,
        dequantized: quantization.is_some(),
        elbo_terms: elbo.then_some(terms),
        steps: elbo.then_some(a.steps),
        divergence: (!elbo).then_some(divergence),
        drift_evals: (!elbo).then_some(drift_evals),
        solver_steps: (!elbo).then_some(solver_steps),
        hutchinson_se: (!probe_se.is_empty())
            .then(|| probe_se.iter().sum::<f64>() / probe_se.len() as f64),
        wall_s: 0.0,
    })
}
