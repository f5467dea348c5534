//! The training driver of the `neural` score (SPEC section 4) on libtorch: checkpoints every
//! `checkpoint_every` steps and at a stop request, metrics every `log_every` steps, the NaN
//! guard, and resumption that continues the run that would have happened without the
//! interruption, bit for bit.

use crate::{set_threads, Nn};
use gud::config::Config;
use gud::error::{bail, Context, Result};
use gud::train::TrainReport;
use gud::Run;
use gud_core::monitor::{Interrupted, Monitor};
use gud_core::{Dataset, Design};
use gud_nn::{Checkpoint, Trainer};
use std::time::Instant;

/// See [`gud::train::train`].
pub(crate) fn train(
    run: &Run,
    cfg: &Config,
    design: &Design,
    data: &Dataset,
    resume: bool,
    monitor: &dyn Monitor,
) -> Result<TrainReport> {
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
    set_threads(cfg);
    let mut trainer = Trainer::new(design, data, &cfg.network, &cfg.train)
        .nn()
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
        let ckpt = Checkpoint::read(&path).nn()?;
        gud::train::check_resume_steps(run, ckpt.step, total)?;
        trainer
            .resume(&ckpt)
            .nn()
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
        trainer.save(&run.checkpoint_path()).nn()?;
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
