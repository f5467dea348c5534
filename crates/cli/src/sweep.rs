//! `gud sweep`: one network trained on a family of schedules (softness a, optionally the
//! ordering mix r, drawn per sample), evaluated on a grid of (a, r): NLL (ELBO, bits/dim) of
//! held-out data and a sample metric (phi^4: the largest |z| of the observables against HMC;
//! other data: the sliced Wasserstein distance to held-out data, or with `--classifier` the
//! classifier Frechet distance). Writes a table, JSON and heat
//! maps (GUD figs. 3 and 5). Analytic scores are swept the same way, without training.

use crate::progress::Terminal;
use crate::shared::fit;
use anyhow::Result;
use clap::Args;
use gud::sweep::{SweepOptions, SweepReport};
use gud::Run;
use gud_io::atomic::ensure_writable_dir;
use gud_io::figures::{plot_heatmaps, HeatMap};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// TOML config with a `linear` (a, r) or `sequential` (softness a) schedule (also as
    /// --config).
    #[arg(conflicts_with = "config_flag")]
    pub config: Option<PathBuf>,
    /// TOML config (the same as the positional CONFIG).
    #[arg(long = "config", id = "config_flag", value_name = "CONFIG")]
    pub config_flag: Option<PathBuf>,
    /// Output directory (the network trains into OUT/train).
    #[arg(long, default_value = "out/sweep")]
    pub out: PathBuf,
    /// Softness values a of the grid.
    #[arg(long, value_delimiter = ',', default_value = "0.4,0.7,1.0,1.3,1.6")]
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
    /// Seed of the samples and of the likelihood's noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A classifier from `gud classifier`: the sample metric becomes its Frechet distance to
    /// the held-out images.
    #[arg(long)]
    pub classifier: Option<PathBuf>,
}

pub fn sweep(a: &SweepArgs) -> Result<()> {
    let config = a.config.as_deref().or(a.config_flag.as_deref());
    let outputs = crate::shared::outputs_for(config, &[]);
    let opts = SweepOptions {
        a: a.a.clone(),
        r: a.r.clone(),
        nll_samples: a.nll_samples,
        elbo_steps: a.elbo_steps,
        samples: a.samples,
        seed: a.seed,
        classifier: a.classifier.clone(),
    };
    opts.check()?;
    let fitted = fit(config, None)?;
    ensure_writable_dir(&a.out)?;
    let _lock = gud_io::atomic::lock_dir(&a.out)?;
    let run = Run::new(a.out.join("train"));
    let report = gud::sweep::sweep(&fitted, &run, &opts, &Terminal::new("gud sweep"))?;
    for p in &report.points {
        println!(
            "  a = {:<5} r = {:<5} {:.4} +- {:.4} bits/dim   {} {:.4}",
            p.a,
            p.r.map_or("-".to_string(), |v| v.to_string()),
            p.bits_per_dim,
            p.bits_per_dim_se,
            p.metric_name,
            p.metric
        );
    }
    write_outputs(a, outputs, &report)
}

fn write_outputs(
    a: &SweepArgs,
    mut outputs: gud_io::atomic::Outputs,
    report: &SweepReport,
) -> Result<()> {
    let (rs, points) = (&report.rs, &report.points);
    gud_io::config::write_toml(&outputs.stage(&a.out.join("config.toml"))?, &report.config)?;
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
    let grid = |f: &dyn Fn(&gud::sweep::SweepPoint) -> f64| -> Vec<Vec<f64>> {
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
        errors: Some(grid(&|p| p.bits_per_dim_se)),
    }];
    if a.samples > 0 {
        maps.push(HeatMap {
            title: points[0].metric_name.replace('_', " "),
            x_label: "softness a".into(),
            y_label: "ordering mix r".into(),
            xs: xs.clone(),
            ys,
            values: grid(&|p| p.metric),
            errors: None,
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
