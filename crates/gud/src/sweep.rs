//! Design-space sweeps: one network trained on a family of schedules (softness a, optionally
//! the ordering mix r, drawn per sample), evaluated on a grid of (a, r): NLL (ELBO, bits/dim)
//! of held-out data and a sample metric (phi^4: the largest |z| of the observables against
//! HMC; other data: the sliced Wasserstein distance to held-out data, or with a classifier its
//! Frechet distance), as in GUD figs. 3 and 5. Analytic scores are swept the same way, without
//! training.

use crate::config::Config;
use crate::data::Fitted;
use crate::error::{bail, Result};
use crate::run::Run;
use gud_core::config::ScoreConfig;
use gud_core::monitor::{Interrupted, Monitor};
use gud_core::nn_config::FamilyConfig;
use serde::Serialize;
use std::path::PathBuf;

/// The grid and the evaluation of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepOptions {
    /// Softness values a of the grid.
    pub a: Vec<f64>,
    /// Ordering mix values r of the grid (`linear` frequency ordering); empty: the config's r.
    pub r: Vec<f64>,
    /// Held-out samples of the NLL.
    pub nll_samples: usize,
    /// ELBO steps.
    pub elbo_steps: usize,
    /// Generated samples of the sample metric per grid point (0: skip it).
    pub samples: usize,
    /// Seed of the ELBO noise and of the samples.
    pub seed: u64,
    /// A classifier file: the sample metric becomes its Frechet distance.
    pub classifier: Option<PathBuf>,
}

impl SweepOptions {
    /// Checks the grid: positive finite softness values, mix values in [0, 1].
    pub fn check(&self) -> Result<()> {
        if self.a.is_empty() || self.a.iter().any(|&v| !(v > 0.0 && v.is_finite())) {
            bail!("the softness values a must be finite and positive");
        }
        if self.r.iter().any(|&v| !(0.0..=1.0).contains(&v)) {
            bail!("the ordering mixes r must lie in [0, 1]");
        }
        Ok(())
    }
}

/// One grid point.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    /// Softness a.
    pub a: f64,
    /// Ordering mix r (`None`: the config's).
    pub r: Option<f64>,
    /// -ELBO of the held-out data in bits/dim.
    pub bits_per_dim: f64,
    /// Its standard error.
    pub bits_per_dim_se: f64,
    /// `max_abs_z` (phi^4), `sliced_wasserstein`, `classifier_frechet` or `none`.
    pub metric_name: &'static str,
    /// The sample metric (NaN when skipped).
    pub metric: f64,
    /// Network evaluations per sample of the sampler.
    pub nfe: usize,
}

/// A finished sweep.
#[derive(Debug, Clone)]
pub struct SweepReport {
    /// The resolved config (with the training family of a neural score).
    pub config: Config,
    /// The rows of the grid: r values (`None`: the config's r).
    pub rs: Vec<Option<f64>>,
    /// Points row by row (r), a within a row.
    pub points: Vec<SweepPoint>,
}

/// Runs the sweep of `opts` on a fitted config; a neural score first trains (or continues)
/// the family's network in `run`. The monitor hears training, then each grid point (phase
/// `sweep`); a stop request ends it between points with [`crate::Error::Interrupted`].
pub fn sweep(
    fitted: &Fitted,
    run: &Run,
    opts: &SweepOptions,
    monitor: &dyn Monitor,
) -> Result<SweepReport> {
    opts.check()?;
    let (train, design) = (&fitted.data, &fitted.design);
    let mut cfg = fitted.config.clone();
    let range = |v: &[f64]| {
        [
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ]
    };
    let rs: Vec<Option<f64>> = if opts.r.is_empty() {
        vec![None]
    } else {
        opts.r.iter().map(|&r| Some(r)).collect()
    };
    if cfg.score == (ScoreConfig::Neural {}) {
        cfg.train.family = Some(FamilyConfig {
            a: range(&opts.a),
            r: (!opts.r.is_empty()).then(|| range(&opts.r)),
        });
        crate::train::resolve(&mut cfg);
        let resume = run.continues(&cfg)?;
        crate::train::train(run, &cfg, design, train, resume, monitor)?;
    }
    let test = crate::data::test_data(&cfg, train, monitor)?.head(opts.nll_samples);
    let (reference, couplings) = crate::data::reference_data(&cfg, train, monitor)?;
    let total = rs.len() * opts.a.len();
    let mut points = Vec::with_capacity(total);
    for r in &rs {
        for &soft in &opts.a {
            let schedule = cfg.design.schedule.with_softness(soft, *r)?;
            let variant = design.with_schedule(&schedule)?;
            let score = crate::sample::build_score(&cfg, &variant, train, Some(run))?;
            let (bits, se) = crate::nll::elbo_bits(
                &variant,
                score.as_ref(),
                &test,
                opts.elbo_steps,
                cfg.sampler.posterior_variance,
                opts.seed,
            )?;
            let (metric_name, metric, nfe) = if opts.samples == 0 {
                ("none", f64::NAN, 0)
            } else {
                let (gen, report) = crate::sample::draw_dataset(
                    &cfg,
                    &variant,
                    score.as_ref(),
                    opts.seed,
                    opts.samples,
                    &gud_core::monitor::Silent,
                )?;
                if let Some(c) = &opts.classifier {
                    let fd = crate::eval::classifier_frechet(c, &gen, &reference)?;
                    ("classifier_frechet", fd, report.nfe)
                } else {
                    let ev =
                        crate::eval::evaluate(&gen, &reference, train, 64, opts.seed, couplings)?;
                    match ev.phi4 {
                        Some(p) => ("max_abs_z", p.max_abs_z, report.nfe),
                        None => ("sliced_wasserstein", ev.sliced_wasserstein, report.nfe),
                    }
                }
            };
            points.push(SweepPoint {
                a: soft,
                r: *r,
                bits_per_dim: bits,
                bits_per_dim_se: se,
                metric_name,
                metric,
                nfe,
            });
            let detail = format!("a = {soft}, {bits:.4} bits/dim, {metric_name} {metric:.4}");
            monitor.progress("sweep", points.len(), total, &detail);
            if monitor.should_stop() && points.len() < total {
                return Err(Interrupted::new("nothing was written").into());
            }
        }
    }
    Ok(SweepReport {
        config: cfg,
        rs,
        points,
    })
}
