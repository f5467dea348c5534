//! `gud extend`: images wider than the training images by a sliding column-wise window (GUD
//! section 5.2, fig. 7), with the seam metric: the mean squared difference of adjacent columns
//! at the window joins over the same quantity inside training images (1.0 = seamless).

use crate::progress::Terminal;
use crate::sample::{toml_score, ScoreKind};
use crate::shared::{config_beside, fit};
use anyhow::Result;
use clap::Args;
use gud::extend::ExtendOptions;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct ExtendArgs {
    /// A trained run (sequential column schedule in the pixel basis).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// A config with an analytic score instead of a run.
    #[arg(long, conflicts_with = "run")]
    pub config: Option<PathBuf>,
    /// Score model; overrides the config's.
    #[arg(long, value_enum)]
    pub score: Option<ScoreKind>,
    /// Output width in columns: the training width W plus a multiple of the stride.
    #[arg(long)]
    pub width: usize,
    /// Images generated.
    #[arg(long, default_value_t = 16, value_parser = crate::sample::at_least_one)]
    pub samples: usize,
    /// Columns the window moves per period.
    #[arg(long, default_value_t = 1)]
    pub stride: usize,
    /// Sampler steps per period (the stretches before and after use the same step size).
    #[arg(long, default_value_t = 4)]
    pub steps: usize,
    /// Seed of the samples (image k uses stream k).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples integrated together.
    #[arg(long, default_value_t = 64, value_parser = crate::sample::at_least_one)]
    pub batch: usize,
    /// Output .npy (N, H, width) or (N, C, H, width) float32; the config is written beside it.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write a grid of the first images (.png, .svg or .pdf).
    #[arg(long)]
    pub grid: Option<PathBuf>,
}

pub fn extend(a: &ExtendArgs) -> Result<()> {
    let opts = ExtendOptions {
        width: a.width,
        samples: a.samples,
        stride: a.stride,
        steps: a.steps,
        seed: a.seed,
        batch: a.batch,
    };
    if a.samples == 0 || a.batch == 0 {
        anyhow::bail!("--samples and --batch must be at least 1");
    }
    let (run, config, mut outputs) =
        crate::shared::run_or_config(a.run.as_deref(), a.config.as_deref(), &[]);
    let config = config.as_deref();
    let npy_out = outputs.stage(&a.out)?;
    let config_out = outputs.stage(&config_beside(&a.out))?;
    let grid_out = a.grid.as_ref().map(|g| outputs.stage(g)).transpose()?;
    let f = fit(config, None)?;
    let (mut cfg, train, design) = (f.config, f.data, f.design);
    if let Some(kind) = a.score {
        cfg.score = toml_score(kind)?;
    }
    let score = gud::sample::build_score(&cfg, &design, &train, run.as_ref())?;
    let start = Instant::now();
    let monitor = Terminal::new("gud extend");
    let ext = gud::extend::extend(&cfg, &design, &train, score.as_ref(), &opts, &monitor)?;
    drop(monitor);
    let wall = start.elapsed().as_secs_f64();
    gud_io::npy::write_dataset(&npy_out, &ext.images)?;
    gud_io::config::write_toml(&config_out, &cfg)?;
    if let Some(g) = &grid_out {
        let title = format!(
            "extended to {} columns (window {}), seam {:.2}",
            a.width,
            design.shape().w,
            ext.seams.seam
        );
        crate::plots::sample_grid(g, &title, &ext.images, 16, crate::plots::colormap(&train))?;
    }
    outputs.commit()?;
    let summary = serde_json::json!({
        "out": a.out.display().to_string(),
        "samples": a.samples,
        "width": a.width,
        "window": ext.sliding,
        "periods": ext.periods,
        "nfe": ext.nfe,
        "score": score.name(),
        "sampler": ext.sampler,
        "seams": ext.seams,
        "wall_s": wall,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
