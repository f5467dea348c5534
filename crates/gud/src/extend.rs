//! Images wider than the training images by a sliding column-wise window (GUD section 5.2,
//! fig. 7), with the seam metric: the mean squared difference of adjacent columns at the
//! window joins over the same quantity inside training images (1.0 = seamless).

use crate::config::Config;
use crate::error::{Context, Result};
use gud_core::extension::{extend as slide, ExtendEvent, Sliding};
use gud_core::monitor::{Interrupted, Monitor};
use gud_core::score::ScoreModel;
use gud_core::{Dataset, Design, Shape};
use serde::Serialize;

/// The settings of [`extend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendOptions {
    /// Output width in columns: the training width W plus a multiple of the stride.
    pub width: usize,
    /// Images generated.
    pub samples: usize,
    /// Columns the window moves per period.
    pub stride: usize,
    /// Sampler steps per period.
    pub steps: usize,
    /// Seed (image k uses stream k).
    pub seed: u64,
    /// Images integrated together.
    pub batch: usize,
}

/// Extended images and what they cost.
#[derive(Debug, Clone)]
pub struct Extended {
    /// (samples, C, H, width) images.
    pub images: Dataset,
    /// The sliding window.
    pub sliding: Sliding,
    /// Periods of the window.
    pub periods: usize,
    /// Network evaluations per image.
    pub nfe: usize,
    /// The sampler's name.
    pub sampler: &'static str,
    /// The seam metric against the training images.
    pub seams: Seams,
}

/// Extends `opts.samples` images to `opts.width` columns with the config's sampler and
/// `score` on the design (a sequential column schedule in the pixel basis). The monitor hears
/// every step (phase `extending`); a stop request ends it after the current batch with
/// [`crate::Error::Interrupted`].
pub fn extend(
    cfg: &Config,
    design: &Design,
    train: &Dataset,
    score: &dyn ScoreModel,
    opts: &ExtendOptions,
    monitor: &dyn Monitor,
) -> Result<Extended> {
    if opts.samples == 0 || opts.batch == 0 {
        return Err(gud_core::Error::param(
            "samples / batch",
            format!("{} / {}", opts.samples, opts.batch),
            "at least 1 each",
        )
        .into());
    }
    let sliding =
        Sliding::new(design, opts.stride, opts.steps).context("setting up the sliding window")?;
    let periods = sliding.periods(opts.width)?;
    let sampler = cfg.sampler.build();
    let nfe = sliding.nfe(sampler.as_ref(), opts.width)?;
    let steps_per_batch = sliding.steps_first + periods * opts.steps + sliding.steps_last + 1;
    let batches = opts.samples.div_ceil(opts.batch);
    let total = batches * steps_per_batch;
    let s = design.shape();
    let rows = design.dim() / s.w;
    gud_core::memory::check_alloc(
        &format!("samples = {} of width {}", opts.samples, opts.width),
        &[opts.samples, rows, opts.width],
        16,
    )?;
    let mut images = Vec::with_capacity(opts.samples * rows * opts.width);
    let mut done = 0;
    for b in 0..batches {
        let first = b * opts.batch;
        let count = opts.batch.min(opts.samples - first);
        let out = slide(
            design,
            score,
            &cfg.sampler,
            &sliding,
            opts.width,
            opts.seed,
            first as u64,
            count,
            &mut |e| {
                if let ExtendEvent::Step(_) = e {
                    done += 1;
                    monitor.progress("extending", done, total, "");
                }
            },
        )?;
        images.extend(out);
        if monitor.should_stop() && b + 1 < batches {
            return Err(Interrupted::new("nothing was written").into());
        }
    }
    let images = Dataset::new(Shape::new(s.c, s.h, opts.width), images)
        .context("the extension produced non-finite values")?;
    let seams = seams(train, images.as_slice(), opts.samples, opts.width);
    Ok(Extended {
        images,
        sliding,
        periods,
        nfe,
        sampler: sampler.name(),
        seams,
    })
}

/// The seam metric of generated images against training images.
#[derive(Debug, Clone, Serialize)]
pub struct Seams {
    /// Mean squared difference of adjacent columns at the joins j W - 1 | j W, over the training
    /// images' mean squared difference of adjacent columns (1.0 = seamless).
    pub seam: f64,
    /// The same ratio over every adjacent pair of the generated images.
    pub all_columns: f64,
    /// The training images' mean squared difference of adjacent columns.
    pub reference: f64,
    /// Window joins inside the generated width.
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

/// The seam metric of `count` generated images of `width` columns against the training images.
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
