//! The training driver of the `neural` score (SPEC section 4): a [`Run`] directory, checkpoints
//! every `checkpoint_every` steps and at a stop request, metrics every `log_every` steps, the
//! NaN guard, and resumption that continues the run that would have happened without the
//! interruption, bit for bit.

use crate::config::{Config, DataConfig};
#[cfg(feature = "nn")]
use crate::error::bail;
use crate::error::Result;
use crate::run::Run;
use gud_core::config::ScoreConfig;
use gud_core::monitor::Monitor;
use gud_core::{Dataset, Design};
use serde::Serialize;

/// Resolves the data-dependent defaults of [train] (translations and sign flips for lattice
/// data) and sets the neural score, so that the run's config.toml says what was done.
pub fn resolve(cfg: &mut Config) {
    let lattice = matches!(cfg.data, DataConfig::Phi4(_) | DataConfig::FreeField(_));
    cfg.train.translate.get_or_insert(lattice);
    cfg.train.flip_sign.get_or_insert(lattice);
    cfg.score = ScoreConfig::Neural {};
}

/// What a call of [`train`] did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// The step the call started from (0, or the checkpoint's).
    pub start_step: u64,
    /// The step reached (`train.steps`).
    pub steps: u64,
    /// Trainable parameters of the network.
    pub parameters: i64,
    /// Seconds of this call.
    pub wall_s: f64,
}

/// The step of the checkpoint a resumed run starts from must not lie beyond its total
/// (regression, issue 20: that did nothing, exited 0 and rewrote config.toml with fewer steps).
#[cfg(feature = "nn")]
fn check_resume_steps(run: &Run, at: u64, total: u64) -> Result<()> {
    if at > total {
        bail!(
            "{} is at step {at}, beyond the {total} steps asked for (train.steps / --steps): \
             give a larger --steps to continue it",
            run.dir().display()
        );
    }
    Ok(())
}

/// Without the network: the error of everything that trains one.
#[cfg(not(feature = "nn"))]
pub fn train(
    _: &Run,
    _: &Config,
    _: &Design,
    _: &Dataset,
    _: bool,
    _: &dyn Monitor,
) -> Result<TrainReport> {
    Err(crate::without_nn("training the neural score"))
}

/// Trains (or, with `resume`, continues) the run in `run` until `cfg.train.steps`; the monitor
/// hears each step (phase `training`, the loss as detail) and notes. A stop request saves a
/// checkpoint of the current step and returns [`crate::Error::Interrupted`]; a non-finite loss
/// is an error and the last checkpoint before it stays.
#[cfg(feature = "nn")]
pub fn train(
    run: &Run,
    cfg: &Config,
    design: &Design,
    data: &Dataset,
    resume: bool,
    monitor: &dyn Monitor,
) -> Result<TrainReport> {
    use crate::error::Context;
    use gud_core::monitor::Interrupted;
    use gud_nn::{Checkpoint, Trainer};
    use std::time::Instant;
    let start = Instant::now();
    let _lock = run.lock()?;
    if cfg.train.steps == 0 {
        bail!("train.steps = 0 trains nothing: give at least 1");
    }
    if !resume && run.has_checkpoint() {
        bail!(
            "{} already holds a checkpoint: continue it with --resume, or choose another --out",
            run.dir().display()
        );
    }
    gud_nn::set_threads(Some(crate::threads::torch(cfg.train.threads)));
    let mut trainer = Trainer::new(design, data, &cfg.network, &cfg.train)
        .context("building the network and its trainer")?;
    let total = cfg.train.steps;
    let mut log: Vec<String> = Vec::new();
    let mut report = TrainReport {
        start_step: 0,
        steps: total,
        parameters: trainer.parameters(),
        wall_s: 0.0,
    };
    if resume {
        let path = run.checkpoint_path();
        let ckpt = Checkpoint::read(&path)?;
        check_resume_steps(run, ckpt.step, total)?;
        trainer
            .resume(&ckpt)
            .with_context(|| format!("resuming from {}", path.display()))?;
        report.start_step = ckpt.step;
        if ckpt.step == total {
            monitor.note(&format!(
                "{} has finished its {} steps; nothing to do",
                run.dir().display(),
                ckpt.step
            ));
            return Ok(report);
        }
        log = run.metrics_until(ckpt.step);
        monitor.note(&format!(
            "resuming {} at step {}",
            run.dir().display(),
            ckpt.step
        ));
    }
    run.write_config(cfg)?;
    monitor.note(&format!(
        "{} parameters, {} steps of batch {} on {} training samples",
        trainer.parameters(),
        total,
        cfg.train.batch,
        data.len()
    ));
    let save = |trainer: &Trainer, log: &[String]| -> Result<()> {
        trainer.save(&run.checkpoint_path())?;
        run.write_metrics(log)
    };
    let (mut window, mut since, mut loss_sum) = (Instant::now(), 0u64, 0.0);
    while trainer.step() < total {
        let s = trainer.train_step();
        if !s.loss.is_finite() {
            // the diverged state is not saved: the last checkpoint stays the last good one
            bail!(
                "the loss became {} at step {} (lower train.lr?); {} keeps the last checkpoint \
                 before it",
                s.loss,
                s.step,
                run.dir().display()
            );
        }
        since += 1;
        loss_sum += s.loss;
        let detail = format!("loss {:.4}", s.loss);
        monitor.progress("training", s.step as usize, total as usize, &detail);
        if s.step % cfg.train.log_every == 0 || s.step == total {
            let rate = since as f64 / window.elapsed().as_secs_f64();
            log.push(serde_json::to_string(&serde_json::json!({
                "step": s.step, "loss": loss_sum / since as f64, "lr": s.lr,
                "grad_norm": s.grad_norm, "steps_per_s": rate,
            }))?);
            (window, since, loss_sum) = (Instant::now(), 0, 0.0);
        }
        if s.step % cfg.train.checkpoint_every == 0 || s.step == total {
            save(&trainer, &log)?;
        }
        if monitor.should_stop() && s.step < total {
            save(&trainer, &log)?;
            return Err(Interrupted::new(format!(
                "checkpoint of step {} saved in {}; continue with `gud train --out {} --resume`",
                s.step,
                run.dir().display(),
                run.dir().display()
            ))
            .into());
        }
    }
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(report)
}
