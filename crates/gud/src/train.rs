//! The training driver of the `neural` score (SPEC section 4): a [`Run`] directory, checkpoints
//! every `checkpoint_every` steps and at a stop request, metrics every `log_every` steps, the
//! NaN guard, and resumption that continues the run that would have happened without the
//! interruption, bit for bit.

use crate::config::{Config, DataConfig};
use crate::error::Result;
use crate::run::Run;
use gud_core::config::ScoreConfig;
use gud_core::monitor::Monitor;
use gud_core::{Dataset, Design};

/// Resolves the data-dependent defaults of [train] (translations and sign flips for lattice
/// data) and sets the neural score, so that the run's config.toml says what was done.
pub fn resolve(cfg: &mut Config) {
    let lattice = matches!(cfg.data, DataConfig::Phi4(_) | DataConfig::FreeField(_));
    cfg.train.translate.get_or_insert(lattice);
    cfg.train.flip_sign.get_or_insert(lattice);
    cfg.score = ScoreConfig::Neural {};
}

pub use crate::network::TrainReport;

/// The step of the checkpoint a resumed run starts from must not lie beyond its total
/// (regression, issue 20: that did nothing, exited 0 and rewrote config.toml with fewer steps).
pub fn check_resume_steps(run: &Run, at: u64, total: u64) -> Result<()> {
    if at > total {
        return Err(gud_core::Error::param(
            "train.steps",
            total,
            &format!(
                "at least the checkpoint's step to continue it ({} is at step {at})",
                run.dir().display()
            ),
        )
        .into());
    }
    Ok(())
}

/// Trains (or, with `resume`, continues) the run in `run` until `cfg.train.steps` with the
/// registered [`crate::network::Network`]; the monitor hears each step (phase `training`, the
/// loss as detail) and notes. A stop request saves a checkpoint of the current step and
/// returns [`crate::Error::Interrupted`]; a non-finite loss is an error and the last checkpoint
/// before it stays.
pub fn train(
    run: &Run,
    cfg: &Config,
    design: &Design,
    data: &Dataset,
    resume: bool,
    monitor: &dyn Monitor,
) -> Result<TrainReport> {
    let network = crate::network::get("training the neural score")?;
    let created = !run.dir().exists();
    let r = network.train(run, cfg, design, data, resume, monitor);
    // a run directory made by this call that holds no checkpoint is removed on failure
    // (regression, issue 34: a failed config check or a full disk left config.toml and the
    // lock behind); an interrupted run keeps its checkpoint and so its directory
    if r.is_err() && created && !run.has_checkpoint() {
        let _ = std::fs::remove_dir_all(run.dir());
    }
    r
}
