//! `gud extend`: images wider than the training images by a sliding column-wise window (GUD
//! section 5.2, fig. 7), with the seam metric: the mean squared difference of adjacent columns
//! at the window joins over the same quantity inside training images (1.0 = seamless).

use crate::commands::{config_beside, fit};
use crate::progress::{interrupted, Reporter};
use crate::sample::{build_score, toml_score, ScoreKind};
use anyhow::{bail, Context, Result};
use clap::Args;
use gud_core::extension::{extend as slide, ExtendEvent, Sliding};
use gud_core::{Dataset, Shape};
use serde::Serialize;
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
    #[arg(long, default_value_t = 16)]
    pub samples: usize,
    /// Columns the window moves per period.
    #[arg(long, default_value_t = 1)]
    pub stride: usize,
    /// Sampler steps per period (the stretches before and after use the same step size).
    #[arg(long, default_value_t = 4)]
    pub steps: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples integrated together.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Output .npy (N, H, width) or (N, C, H, width) float32; the config is written beside it.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write a grid of the first images (PNG).
    #[arg(long)]
    pub grid: Option<PathBuf>,
}

/// The seam metric of generated images against training images.
#[derive(Debug, Serialize)]
pub struct Seams {
    /// Mean squared difference of adjacent columns at the joins j W - 1 | j W, over the training
    /// images' mean squared difference of adjacent columns (1.0 = seamless).
    pub seam: f64,
    /// The same ratio over every adjacent pair of the generated images.
    pub all_columns: f64,
    /// The training images' mean squared difference of adjacent columns.
    pub reference: f64,
    pub joins: usize,
}

/// Mean of (x[c + 1] - x[c])^2 over all samples, rows and the listed left columns c.
fn column_difference(data: &[f64], rows_total: usize, width: usize, left: &[usize]) -> f64 {
    let mut sum = 0.0;
    for row in data.chunks_exact(width).take(rows_total) {
        for &c in left {
            sum += (row[c + 1] - row[c]).powi(2);
        }
    }
    sum / (rows_total * left.len()) as f64
}

pub fn seams(train: &Dataset, generated: &[f64], count: usize, width: usize) -> Seams {
    let s = train.shape();
    let rows = s.c * s.h;
    let inside: Vec<usize> = (0..s.w - 1).collect();
    let reference = column_difference(train.as_slice(), train.len() * rows, s.w, &inside);
    let joins: Vec<usize> = (1..)
        .map(|j| j * s.w - 1)
        .take_while(|&c| c + 1 < width)
        .collect();
    let all: Vec<usize> = (0..width - 1).collect();
    let gen = |cols: &[usize]| column_difference(generated, count * rows, width, cols);
    Seams {
        seam: if joins.is_empty() {
            f64::NAN
        } else {
            gen(&joins) / reference
        },
        all_columns: gen(&all) / reference,
        reference,
        joins: joins.len(),
    }
}

pub fn extend(a: &ExtendArgs) -> Result<()> {
    if a.samples == 0 || a.batch == 0 {
        bail!("--samples and --batch must be at least 1");
    }
    let run_config = a.run.as_ref().map(|r| r.join("config.toml"));
    let config = run_config.as_deref().or(a.config.as_deref());
    let checkpoint = a.run.as_ref().map(|r| r.join("checkpoint.safetensors"));
    let mut outputs = crate::commands::outputs_for(config, &[checkpoint.as_deref()]);
    let npy_out = outputs.stage(&a.out)?;
    let config_out = outputs.stage(&config_beside(&a.out))?;
    let grid_out = a.grid.as_ref().map(|g| outputs.stage(g)).transpose()?;
    let (mut cfg, train, design) = fit(config, None)?;
    if let Some(kind) = a.score {
        cfg.score = toml_score(kind)?;
    }
    let sliding =
        Sliding::new(&design, a.stride, a.steps).context("setting up the sliding window")?;
    let periods = sliding.periods(a.width)?;
    let score = build_score(&cfg, &design, &train, a.run.as_deref())?;
    let sampler = cfg.sampler.build();
    let nfe = sliding.nfe(sampler.as_ref(), a.width)?;
    let start = Instant::now();
    let steps_per_batch = sliding.steps_first + periods * a.steps + sliding.steps_last + 1;
    let total = a.samples.div_ceil(a.batch) * steps_per_batch;
    let reporter = Reporter::new("gud extend", "steps");
    let mut done = 0;
    gud_core::memory::check_alloc(
        &format!("--samples {} of width --width {}", a.samples, a.width),
        &[a.samples, design.dim() / design.shape().w, a.width],
        16,
    )?;
    let mut images = Vec::with_capacity(a.samples * design.dim() / design.shape().w * a.width);
    for b in 0..a.samples.div_ceil(a.batch) {
        let first = b * a.batch;
        let count = a.batch.min(a.samples - first);
        let out = slide(
            &design,
            score.as_ref(),
            &cfg.sampler,
            &sliding,
            a.width,
            a.seed,
            first as u64,
            count,
            &mut |e| {
                if let ExtendEvent::Step(_) = e {
                    done += 1;
                    reporter.report("extending", done, total);
                }
            },
        )?;
        images.extend(out);
        // a signal stops at the next batch: the typed error, nothing written
        if interrupted() {
            reporter.finish();
            return Err(crate::progress::interrupted_error("nothing was written"));
        }
    }
    reporter.finish();
    let wall = start.elapsed().as_secs_f64();
    let s = design.shape();
    let out = Dataset::new(Shape::new(s.c, s.h, a.width), images)
        .context("the extension produced non-finite values")?;
    gud_io::npy::write_dataset(&npy_out, &out)?;
    gud_io::config::write_toml(&config_out, &cfg)?;
    let seams = seams(&train, out.as_slice(), a.samples, a.width);
    if let Some(g) = &grid_out {
        let title = format!(
            "extended to {} columns (window {}), seam {:.2}",
            a.width, s.w, seams.seam
        );
        crate::plots::sample_grid(g, &title, &out, 16)?;
    }
    outputs.commit()?;
    let summary = serde_json::json!({
        "out": a.out.display().to_string(),
        "samples": a.samples,
        "width": a.width,
        "window": sliding,
        "periods": periods,
        "nfe": nfe,
        "score": score.name(),
        "sampler": sampler.name(),
        "seams": seams,
        "wall_s": wall,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
