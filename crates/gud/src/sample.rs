//! Sampling with any score of a config (SPEC sections 4-5): the analytic ones built from the
//! design and the training data, the `neural` one from a trained [`Run`].

use crate::config::Config;
use crate::error::{bail, Context, Result};
use crate::run::Run;
use gud_core::config::ScoreConfig;
use gud_core::monitor::{Interrupted, Monitor};
use gud_core::sampler::{generate, Plan, SampleReport};
use gud_core::score::ScoreModel;
use gud_core::{Dataset, Design};

/// The config's score model; the `neural` one is the EMA network of the trained `run`.
pub fn build_score<'a>(
    cfg: &Config,
    design: &'a Design,
    train: &Dataset,
    run: Option<&Run>,
) -> Result<Box<dyn ScoreModel + 'a>> {
    if cfg.score != (ScoreConfig::Neural {}) {
        return cfg
            .score
            .build(design, train)
            .context("building the score model");
    }
    neural_score(cfg, design, run)
}

/// The EMA network of the trained run (the registered [`crate::network::Network`]).
fn neural_score<'a>(
    cfg: &Config,
    design: &'a Design,
    run: Option<&Run>,
) -> Result<Box<dyn ScoreModel + 'a>> {
    let network = crate::network::get("the neural score")?;
    let Some(run) = run else {
        bail!("the neural score needs a trained run directory (one that `gud train` wrote)");
    };
    network.score(cfg, design, run)
}

/// The grid of the config's sampler on the design's schedule, with its RG projection.
pub fn plan(cfg: &Config, design: &Design) -> Result<Plan> {
    Ok(cfg.sampler.plan(design.schedule(), design.sigma_data())?)
}

/// Samples `first .. first + count` (phi-space fields, (count, d)) with the config's sampler
/// and `score`. Sample k uses stream k of the seed whatever the batching, so any one
/// regenerates alone. One batch of `sampler.batch` at a time: the monitor hears every step
/// (phase `sampling`, counted in samples) and a stop request ends the draw after the current batch with
/// [`crate::Error::Interrupted`].
pub fn draw(
    cfg: &Config,
    design: &Design,
    score: &dyn ScoreModel,
    seed: u64,
    first: u64,
    count: usize,
    monitor: &dyn Monitor,
) -> Result<(Vec<f64>, SampleReport)> {
    let plan = plan(cfg, design)?;
    let d = design.dim();
    gud_core::memory::check_alloc(
        &format!("{count} samples of {d} components"),
        &[2, count, d],
        8,
    )?;
    if count == 0 {
        bail!("the number of samples must be at least 1");
    }
    if first.checked_add(count as u64).is_none() {
        return Err(gud_core::Error::param(
            "first",
            first,
            &format!("an index with first + {count} samples below 2^64"),
        )
        .into());
    }
    let batch = cfg.sampler.batch.max(1);
    let (mut chi0, mut report) = (Vec::with_capacity(count * d), None);
    for start in (0..count).step_by(batch) {
        let n = batch.min(count - start);
        let (part, r) = generate(
            &plan,
            score,
            &cfg.sampler,
            seed,
            first + start as u64,
            n,
            // progress in samples: a batch counts its share of the grid after each step
            &mut |info| {
                let done = start + n * (info.step + 1) / info.steps;
                monitor.progress("sampling", done, count, "samples");
            },
        )?;
        chi0.extend(part);
        report = Some(r);
        if monitor.should_stop() && start + n < count {
            return Err(Interrupted::new("nothing was written").into());
        }
    }
    let mut report = report.expect("count >= 1");
    report.samples = count;
    Ok((design.whitened_batch_to_fields(&chi0), report))
}

/// [`draw`] as a data set of the design's shape (an error if the sampler produced a
/// non-finite value).
pub fn draw_dataset(
    cfg: &Config,
    design: &Design,
    score: &dyn ScoreModel,
    seed: u64,
    count: usize,
    monitor: &dyn Monitor,
) -> Result<(Dataset, SampleReport)> {
    let (fields, report) = draw(cfg, design, score, seed, 0, count, monitor)?;
    let gen =
        Dataset::new(design.shape(), fields).context("the sampler produced non-finite values")?;
    Ok((gen, report))
}

/// Tunes the grid of the config's sampler (kind and order; `exp` or `ode`) for `score`
/// ([`gud_core::sampler::tune_grid`]): the error is the mean squared error per site in
/// phi-space (weights S_i^2 of the design's orthonormal basis) against a fine uniform grid, on
/// a pilot batch of prior draws. The monitor hears every trial (phase `tuning grid`); a stop
/// request ends the search after the current trial with [`crate::Error::Interrupted`].
pub fn tune_grid(
    cfg: &Config,
    design: &Design,
    score: &dyn ScoreModel,
    tuning: &gud_core::sampler::GridTuning,
    monitor: &dyn Monitor,
) -> Result<gud_core::sampler::TunedGrid> {
    let weights: Vec<f64> = design.scale().iter().map(|s| s * s).collect();
    let detail = |e: f64| format!("rms error {e:.3e}");
    let tuned = gud_core::sampler::tune_grid(
        design.schedule(),
        design.sigma_data(),
        score,
        &cfg.sampler,
        &weights,
        tuning,
        &mut |done, best| {
            monitor.progress("tuning grid", done, tuning.max_trials, &detail(best));
            !monitor.should_stop()
        },
    )?;
    if tuned.stopped {
        return Err(Interrupted::new("no grid was written").into());
    }
    // the search may converge before its last trial: the phase is then complete
    if tuned.trials < tuning.max_trials {
        let done = tuned.trials;
        monitor.progress("tuning grid", done, done, &detail(tuned.rms_error));
    }
    Ok(tuned)
}
