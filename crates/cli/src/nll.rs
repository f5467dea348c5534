//! `gud nll`: negative log-likelihood of held-out data in nats and bits per dimension
//! (SPEC section 6): the discrete-time ELBO bound or the exact probability-flow ODE density.
//! Quantised data (8-bit images) are dequantised uniformly (seeded), and bits/dim include the
//! dequantisation offset and the whitening's log-Jacobian, as in the literature.

use crate::progress::Terminal;
use crate::sample::{kebab, toml_score, ScoreKind};
use crate::shared::fit;
use anyhow::{bail, Result};
use clap::Args;
use gud::nll::{Method, NllOptions, NllReport};
use gud_core::config::{PosteriorVariance, TimeGrid};
use gud_core::likelihood::Divergence;
use std::path::PathBuf;

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
    /// elbo (the discrete-time ELBO, a bound: -ELBO >= NLL) | ode (the exact log-density of the
    /// probability-flow ODE model).
    #[arg(long, value_parser = kebab::<Method>, default_value = "elbo")]
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
    #[arg(long, default_value_t = 64, value_parser = crate::sample::at_least_one)]
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

pub fn nll(a: &NllArgs) -> Result<()> {
    if a.samples == 0 || a.batch == 0 {
        bail!("--samples and --batch must be at least 1");
    }
    let (run, config, mut outputs) =
        crate::shared::run_or_config(a.run.as_deref(), a.config.as_deref(), &[a.data.as_deref()]);
    let config = config.as_deref();
    let json_out = a.out.as_ref().map(|o| outputs.stage(o)).transpose()?;
    let f = fit(config, None)?;
    let (mut cfg, train, design) = (f.config, f.data, f.design);
    if let Some(kind) = a.score {
        cfg.score = toml_score(kind)?;
    }
    let monitor = Terminal::new("gud nll");
    let test = match &a.data {
        Some(p) => gud::data::read_data_file(p)?,
        None => gud::data::test_data(&cfg, &train, &monitor)?,
    };
    if test.shape() != design.shape() {
        bail!(
            "the test data have shape {}, the design {}",
            test.shape(),
            design.shape()
        );
    }
    let test = test.head(a.samples);
    let score = gud::sample::build_score(&cfg, &design, &train, run.as_ref())?;
    let opts = NllOptions {
        method: a.method,
        steps: a.steps,
        time_grid: a.time_grid,
        posterior_variance: a
            .posterior_variance
            .unwrap_or(cfg.sampler.posterior_variance),
        divergence: a.divergence.map(|d| match d {
            DivergenceArg::Exact => Divergence::Exact,
            DivergenceArg::Hutchinson => Divergence::Hutchinson,
        }),
        probes: a.probes,
        tol: a.tol,
        seed: a.seed,
        batch: a.batch,
    };
    let report = gud::nll::nll(&design, score.as_ref(), &test, &opts, &monitor)?;
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
