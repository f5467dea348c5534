//! `gud sweep`: one network trained on a family of schedules (softness a, optionally the
//! ordering mix r, drawn per sample), evaluated on a grid of (a, r): NLL (ELBO, bits/dim) of
//! held-out data and a sample metric (phi^4: the largest |z| of the observables against HMC;
//! other data: the sliced Wasserstein distance to held-out data, or with `--classifier` the
//! classifier Frechet distance). Writes a table, JSON and heat
//! maps (GUD figs. 3 and 5). Analytic scores are swept the same way, without training.

use crate::commands::{existing_run, fit};
use crate::nll::elbo_bits;
use anyhow::{bail, Context, Result};
use clap::Args;
use gud_core::config::{FamilyConfig, ScoreConfig};
use gud_core::Dataset;
use gud_io::atomic::ensure_writable_dir;
use gud_io::figures::{plot_heatmaps, HeatMap};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// TOML config with a `linear` (a, r) or `sequential` (softness a) schedule.
    pub config: Option<PathBuf>,
    /// Output directory (the network trains into OUT/train).
    #[arg(long, default_value = "out/sweep")]
    pub out: PathBuf,
    /// Softness values a of the grid.
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.4, 0.7, 1.0, 1.3, 1.6])]
    pub a: Vec<f64>,
    /// Ordering mix values r of the grid (`linear` frequency ordering); the config's r if absent.
    #[arg(long, value_delimiter = ',')]
    pub r: Vec<f64>,
    /// Held-out samples of the NLL.
    #[arg(long, default_value_t = 256)]
    pub nll_samples: usize,
    /// ELBO steps.
    #[arg(long, default_value_t = 100)]
    pub elbo_steps: usize,
    /// Generated samples of the sample metric per grid point (0: skip).
    #[arg(long, default_value_t = 1024)]
    pub samples: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A classifier from `gud classifier`: the sample metric becomes its Frechet distance to
    /// the held-out images.
    #[arg(long)]
    pub classifier: Option<PathBuf>,
}

/// One grid point.
#[derive(Debug, Serialize)]
pub struct SweepPoint {
    pub a: f64,
    pub r: Option<f64>,
    pub bits_per_dim: f64,
    pub bits_per_dim_se: f64,
    /// `max_abs_z` (phi^4) or `sliced_wasserstein`.
    pub metric_name: &'static str,
    pub metric: f64,
    pub nfe: usize,
}

pub fn sweep(a: &SweepArgs) -> Result<()> {
    let mut outputs = crate::commands::outputs_for(a.config.as_deref(), &[]);
    if a.a.is_empty() || a.a.iter().any(|&v| !(v > 0.0 && v.is_finite())) {
        bail!("--a needs positive softness values");
    }
    if a.r.iter().any(|&v| !(0.0..=1.0).contains(&v)) {
        bail!("--r needs values in [0, 1]");
    }
    let (mut cfg, train, design) = fit(a.config.as_deref(), None)?;
    ensure_writable_dir(&a.out)?;
    let _lock = gud_io::atomic::lock_dir(&a.out)?;
    let range = |v: &[f64]| {
        [
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ]
    };
    let rs: Vec<Option<f64>> = if a.r.is_empty() {
        vec![None]
    } else {
        a.r.iter().map(|&r| Some(r)).collect()
    };
    let run_dir = a.out.join("train");
    let neural = cfg.score == (ScoreConfig::Neural {});
    if neural {
        cfg.train.family = Some(FamilyConfig {
            a: range(&a.a),
            r: (!a.r.is_empty()).then(|| range(&a.r)),
        });
        crate::train::resolve(&mut cfg);
        let resume = existing_run(&run_dir, &cfg)?;
        crate::train::train_run(&cfg, &design, &train, &run_dir, resume)?;
    }
    gud_io::config::write_toml(&outputs.stage(&a.out.join("config.toml"))?, &cfg)?;
    let test = crate::data::test_data(&cfg, &train)?.head(a.nll_samples);
    let (reference, couplings) = crate::data::reference_data(&cfg, &train)?;
    let mut points = Vec::new();
    for r in &rs {
        for &soft in &a.a {
            let schedule = cfg.design.schedule.with_softness(soft, *r)?;
            let variant = design.with_schedule(&schedule)?;
            let score = crate::sample::build_score(&cfg, &variant, &train, Some(&run_dir))?;
            let (bits, se) = elbo_bits(
                &variant,
                score.as_ref(),
                &test,
                a.elbo_steps,
                cfg.sampler.posterior_variance,
                a.seed,
            )?;
            let (metric_name, metric, nfe) = if a.samples == 0 {
                ("none", f64::NAN, 0)
            } else {
                let (fields, report) =
                    crate::sample::draw(&cfg, &variant, score.as_ref(), a.seed, 0, a.samples)?;
                let gen = Dataset::new(variant.shape(), fields)
                    .context("the sampler produced non-finite values")?;
                if let Some(c) = &a.classifier {
                    let fd = crate::eval::classifier_frechet(c, &gen, &reference)?;
                    ("classifier_frechet", fd, report.nfe)
                } else {
                    let ev =
                        crate::eval::evaluate(&gen, &reference, &train, 64, a.seed, couplings)?;
                    match ev.phi4 {
                        Some(p) => ("max_abs_z", p.max_abs_z, report.nfe),
                        None => ("sliced_wasserstein", ev.sliced_wasserstein, report.nfe),
                    }
                }
            };
            println!(
                "  a = {soft:<5} r = {:<5} {bits:.4} +- {se:.4} bits/dim   {metric_name} {metric:.4}",
                r.map_or("-".to_string(), |v| v.to_string())
            );
            points.push(SweepPoint {
                a: soft,
                r: *r,
                bits_per_dim: bits,
                bits_per_dim_se: se,
                metric_name,
                metric,
                nfe,
            });
        }
    }
    write_outputs(a, outputs, &rs, &points)
}

fn write_outputs(
    a: &SweepArgs,
    mut outputs: gud_io::atomic::Outputs,
    rs: &[Option<f64>],
    points: &[SweepPoint],
) -> Result<()> {
    let mut csv = String::from("a,r,bits_per_dim,bits_per_dim_se,metric_name,metric,nfe\n");
    for p in points {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            p.a,
            p.r.map_or(String::new(), |v| v.to_string()),
            p.bits_per_dim,
            p.bits_per_dim_se,
            p.metric_name,
            p.metric,
            p.nfe
        ));
    }
    gud_io::atomic::write_atomic(&outputs.stage(&a.out.join("sweep.csv"))?, csv.as_bytes())?;
    gud_io::atomic::write_atomic(
        &outputs.stage(&a.out.join("sweep.json"))?,
        serde_json::to_string_pretty(points)?.as_bytes(),
    )?;
    let grid = |f: &dyn Fn(&SweepPoint) -> f64| -> Vec<Vec<f64>> {
        points
            .chunks(a.a.len())
            .map(|row| row.iter().map(f).collect())
            .collect()
    };
    let ys: Vec<String> = rs
        .iter()
        .map(|r| r.map_or("config".to_string(), |v| v.to_string()))
        .collect();
    let xs: Vec<String> = a.a.iter().map(|v| v.to_string()).collect();
    let mut maps = vec![HeatMap {
        title: "NLL (bits/dim, -ELBO)".into(),
        x_label: "softness a".into(),
        y_label: "ordering mix r".into(),
        xs: xs.clone(),
        ys: ys.clone(),
        values: grid(&|p| p.bits_per_dim),
    }];
    if a.samples > 0 {
        maps.push(HeatMap {
            title: points[0].metric_name.replace('_', " "),
            x_label: "softness a".into(),
            y_label: "ordering mix r".into(),
            xs: xs.clone(),
            ys,
            values: grid(&|p| p.metric),
        });
    }
    plot_heatmaps(
        &outputs.stage(&a.out.join("sweep.png"))?,
        "design-space sweep",
        &maps,
    )?;
    outputs.commit()?;
    println!(
        "  wrote {0}/sweep.csv, {0}/sweep.json, {0}/sweep.png",
        a.out.display()
    );
    Ok(())
}
