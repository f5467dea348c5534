//! `gud nll`: negative log-likelihood of held-out data in nats and bits per dimension
//! (SPEC section 6): the discrete-time ELBO bound or the exact probability-flow ODE density.
//! Quantised data (8-bit images) are dequantised uniformly (seeded), and bits/dim include the
//! dequantisation offset and the whitening's log-Jacobian, as in the literature.

use crate::commands::fit;
use crate::progress::{interrupted, Reporter};
use crate::sample::{build_score, kebab, toml_score, ScoreKind};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use gud_core::config::{PosteriorVariance, TimeGrid};
use gud_core::likelihood::{
    bits_per_dim, negative_elbo, ode_log_likelihood, whitening_log_det, Divergence, ElboOptions,
    ElboTerms, OdeOptions,
};
use gud_core::rng::{stream, Purpose};
use gud_core::score::ScoreModel;
use gud_core::{Dataset, Design, Quantization};
use rand::Rng;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The discrete-time ELBO (a bound: -ELBO >= NLL).
    Elbo,
    /// The exact log-density of the probability-flow ODE model.
    Ode,
}

#[derive(Args, Debug)]
pub struct NllArgs {
    /// TOML config with an analytic score (gaussian, empirical, ...).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A trained run: its config and its network.
    #[arg(long, conflicts_with = "config")]
    pub run: Option<PathBuf>,
    /// Score model; overrides the config's (with its default settings).
    #[arg(long, value_enum)]
    pub score: Option<ScoreKind>,
    /// Held-out data (.npy, IDX, or a folder of PNGs); default: the config's test set
    /// (phi^4 / free field: an independent set at seed + 1000).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Test samples used (the first N).
    #[arg(long, default_value_t = 256)]
    pub samples: usize,
    #[arg(long, value_enum, default_value_t = Method::Elbo)]
    pub method: Method,
    /// ELBO: steps T of the hierarchy (T + 1 evaluations per sample).
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// ELBO: uniform-t | uniform-gamma.
    #[arg(long, value_parser = kebab::<TimeGrid>, default_value = "uniform-t")]
    pub time_grid: TimeGrid,
    /// ELBO: the reverse kernels' posterior variance, none | gaussian (default: the config's).
    #[arg(long, value_parser = kebab::<PosteriorVariance>)]
    pub posterior_variance: Option<PosteriorVariance>,
    /// ODE: exact | hutchinson (default: exact up to d = 256).
    #[arg(long, value_parser = kebab::<DivergenceArg>)]
    pub divergence: Option<DivergenceArg>,
    /// ODE: Hutchinson probes per sample.
    #[arg(long, default_value_t = 1)]
    pub probes: usize,
    /// ODE: relative and absolute tolerance of the adaptive solver.
    #[arg(long, default_value_t = 1e-5)]
    pub tol: f64,
    /// Seed of the ELBO's noise, the Hutchinson probes and the dequantisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples evaluated together.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DivergenceArg {
    Exact,
    Hutchinson,
}

/// What `gud nll` reports.
#[derive(Debug, Serialize)]
pub struct NllReport {
    pub method: Method,
    pub score: String,
    pub samples: usize,
    pub dim: usize,
    /// NLL of the field per sample (nats), its mean and standard error over samples.
    pub nats: f64,
    pub nats_se: f64,
    pub nats_per_dim: f64,
    pub bits_per_dim: f64,
    pub bits_per_dim_se: f64,
    /// Whether the data were dequantised (8-bit) and the offset in bits/dim included.
    pub dequantized: bool,
    /// ELBO: mean of the prior, diffusion and reconstruction terms (nats, whitened space).
    pub elbo_terms: Option<ElboTerms>,
    pub steps: Option<usize>,
    /// ODE: divergence, drift evaluations and solver steps (sum over batches), and the mean
    /// standard error of the Hutchinson estimate per sample (nats, with >= 2 probes).
    pub divergence: Option<Divergence>,
    pub drift_evals: Option<usize>,
    pub solver_steps: Option<usize>,
    pub hutchinson_se: Option<f64>,
    pub wall_s: f64,
}

pub fn nll(a: &NllArgs) -> Result<()> {
    if a.samples == 0 || a.batch == 0 {
        bail!("--samples and --batch must be at least 1");
    }
    let run_config = a.run.as_ref().map(|r| r.join("config.toml"));
    let config = run_config.as_deref().or(a.config.as_deref());
    let checkpoint = a.run.as_ref().map(|r| r.join("checkpoint.safetensors"));
    let mut outputs =
        crate::commands::outputs_for(config, &[a.data.as_deref(), checkpoint.as_deref()]);
    let json_out = a.out.as_ref().map(|o| outputs.stage(o)).transpose()?;
    let (mut cfg, train, design) = fit(config, None)?;
    if let Some(kind) = a.score {
        cfg.score = toml_score(kind)?;
    }
    let test = match &a.data {
        Some(p) => crate::data::read_data_file(p)?,
        None => crate::data::test_data(&cfg, &train)?,
    };
    if test.shape() != design.shape() {
        bail!(
            "the test data have shape {}, the design {}",
            test.shape(),
            design.shape()
        );
    }
    let test = test.head(a.samples);
    let score = build_score(&cfg, &design, &train, a.run.as_deref())?;
    let start = Instant::now();
    let chi0 = whitened_test_set(&design, &test, a.seed);
    let posterior = a
        .posterior_variance
        .unwrap_or(cfg.sampler.posterior_variance);
    let mut report = evaluate(
        a,
        &design,
        score.as_ref(),
        &chi0,
        posterior,
        test.quantization(),
    )?;
    report.wall_s = start.elapsed().as_secs_f64();
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(o) = &json_out {
        gud_io::atomic::write_atomic(o, json.as_bytes())?;
    }
    outputs.commit()?;
    if a.json {
        println!("{json}");
    } else {
        print_report(&report);
    }
    Ok(())
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
fn whitened_test_set(design: &Design, test: &Dataset, seed: u64) -> Vec<f64> {
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

/// Runs the chosen method in batches and summarises per-sample NLLs of the field.
fn evaluate(
    a: &NllArgs,
    design: &Design,
    score: &dyn ScoreModel,
    chi0: &[f64],
    posterior: PosteriorVariance,
    quantization: Option<&Quantization>,
) -> Result<NllReport> {
    let d = design.dim();
    let n = chi0.len() / d;
    let log_det = whitening_log_det(design.scale());
    let reporter = Reporter::new("gud nll", "samples");
    let mut nll = Vec::with_capacity(n);
    let mut terms = ElboTerms::default();
    let (mut drift_evals, mut solver_steps, mut probe_se) = (0, 0, Vec::new());
    let divergence = match a.divergence {
        Some(DivergenceArg::Exact) => Divergence::Exact,
        Some(DivergenceArg::Hutchinson) => Divergence::Hutchinson,
        None => Divergence::auto(d),
    };
    for (b, rows) in chi0.chunks(a.batch * d).enumerate() {
        let first = (b * a.batch) as u64;
        match a.method {
            Method::Elbo => {
                let opts = ElboOptions {
                    steps: a.steps,
                    grid: a.time_grid,
                    posterior_variance: posterior,
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
        reporter.report(a.method_name(), nll.len(), n);
        if interrupted() {
            reporter.finish();
            return Err(crate::progress::interrupted_error("nothing was written"));
        }
    }
    reporter.finish();
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

impl NllArgs {
    fn method_name(&self) -> &'static str {
        match self.method {
            Method::Elbo => "elbo",
            Method::Ode => "ode",
        }
    }
}

fn print_report(r: &NllReport) {
    let what = match r.method {
        Method::Elbo => format!("-ELBO, {} steps", r.steps.unwrap_or(0)),
        Method::Ode => format!(
            "ODE, {:?} divergence, {} drift evaluations",
            r.divergence.unwrap_or(Divergence::Exact),
            r.drift_evals.unwrap_or(0)
        ),
    };
    println!(
        "NLL ({what}) of {} test samples, d = {}, {} score:",
        r.samples, r.dim, r.score
    );
    println!(
        "  {:.4} +- {:.4} nats/sample, {:.5} nats/dim",
        r.nats, r.nats_se, r.nats_per_dim
    );
    println!(
        "  {:.4} +- {:.4} bits/dim{}",
        r.bits_per_dim,
        r.bits_per_dim_se,
        if r.dequantized {
            " (dequantised, with the 8-bit offset)"
        } else {
            ""
        }
    );
    if let Some(t) = &r.elbo_terms {
        println!(
            "  terms (nats, whitened): prior {:.4}, diffusion {:.4}, reconstruction {:.4}",
            t.prior, t.diffusion, t.reconstruction
        );
    }
    if let Some(se) = r.hutchinson_se {
        println!("  Hutchinson standard error per sample: {se:.4} nats");
    }
    println!("  {:.1} s", r.wall_s);
}
