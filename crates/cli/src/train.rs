//! `gud train`: train the `neural` score of a config into a run directory (SPEC section 4).
//!
//! RUN/config.toml (the resolved config), RUN/checkpoint.safetensors (weights, EMA, AdamW
//! state; written atomically every `checkpoint_every` steps, at the end and at Ctrl-C) and
//! RUN/metrics.jsonl (step, loss, lr, grad_norm, steps_per_s). `--resume` continues the run that
//! would have happened without the interruption, bit for bit.

use crate::commands::fit;
use anyhow::{bail, Result};
use gud_core::config::{Config, DataConfig, ScoreConfig};
use gud_core::{Dataset, Design};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// TOML config; the built-in phi^4 default when absent. With --resume, the run's own.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run directory.
    #[arg(long, default_value = "out/train")]
    pub out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Total optimisation steps; overrides train.steps.
    #[arg(long)]
    pub steps: Option<u64>,
}

/// Resolves the data-dependent defaults of [train] and [network] (augmentations for lattice
/// data, circular padding) so that the run's config.toml says what was done.
pub fn resolve(cfg: &mut Config) {
    let lattice = matches!(cfg.data, DataConfig::Phi4(_) | DataConfig::FreeField(_));
    cfg.train.translate.get_or_insert(lattice);
    cfg.train.flip_sign.get_or_insert(lattice);
    cfg.score = ScoreConfig::Neural {};
}

pub fn train(a: &TrainArgs) -> Result<()> {
    let run_config = a.out.join("config.toml");
    let config = if a.resume {
        if a.config.is_some() {
            bail!(
                "--resume takes the run's own config ({}); drop --config",
                run_config.display()
            );
        }
        Some(run_config.clone())
    } else {
        a.config.clone()
    };
    if a.steps == Some(0) {
        bail!("--steps 0 trains nothing: give the total number of optimisation steps (at least 1)");
    }
    let (mut cfg, data, design) = fit(config.as_deref(), None)?;
    if let Some(s) = a.steps {
        cfg.train.steps = s;
    }
    resolve(&mut cfg);
    train_run(&cfg, &design, &data, &a.out, a.resume)
}

/// The step of the checkpoint a resumed run starts from must not lie beyond its total
/// (regression, issue 20: that did nothing, exited 0 and rewrote config.toml with fewer steps).
#[cfg(feature = "nn")]
fn check_resume_steps(out: &Path, at: u64, total: u64) -> Result<()> {
    if at > total {
        bail!(
            "{} is at step {at}, beyond the {total} steps asked for (train.steps / --steps): \
             give a larger --steps to continue it",
            out.display()
        );
    }
    Ok(())
}

/// Without the network: the clear error of every command that trains one.
#[cfg(not(feature = "nn"))]
pub fn train_run(_: &Config, _: &Design, _: &Dataset, _: &Path, _: bool) -> Result<()> {
    Err(crate::without_nn("training the neural score"))
}

/// Trains (or resumes) the run in `out`; returns when `cfg.train.steps` are done.
#[cfg(feature = "nn")]
pub fn train_run(
    cfg: &Config,
    design: &Design,
    data: &Dataset,
    out: &Path,
    resume: bool,
) -> Result<()> {
    use crate::progress::{interrupted, Reporter};
    use anyhow::Context;
    use gud_io::atomic::{ensure_writable_dir, write_atomic};
    use gud_nn::{Checkpoint, Trainer, CHECKPOINT_FILE};
    use std::time::Instant;
    ensure_writable_dir(out)?;
    let _lock = gud_io::atomic::lock_dir(out)?;
    if cfg.train.steps == 0 {
        bail!("train.steps = 0 trains nothing: give at least 1");
    }
    let ckpt_path = out.join(CHECKPOINT_FILE);
    let metrics_path = out.join("metrics.jsonl");
    if !resume && ckpt_path.exists() {
        bail!(
            "{} already holds a checkpoint: continue it with --resume, or choose another --out",
            out.display()
        );
    }
    gud_nn::set_threads(crate::threads::torch(cfg.train.threads));
    let mut trainer = Trainer::new(design, data, &cfg.network, &cfg.train)
        .context("building the network and its trainer")?;
    let mut log: Vec<String> = Vec::new();
    if resume {
        let ckpt = Checkpoint::read(&ckpt_path)?;
        check_resume_steps(out, ckpt.step, cfg.train.steps)?;
        trainer
            .resume(&ckpt)
            .with_context(|| format!("resuming from {}", ckpt_path.display()))?;
        if ckpt.step == cfg.train.steps {
            eprintln!(
                "gud train: {} has finished its {} steps; nothing to do",
                out.display(),
                ckpt.step
            );
            return Ok(());
        }
        if let Ok(text) = std::fs::read_to_string(&metrics_path) {
            log = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v["step"].as_u64())
                        .is_some_and(|s| s <= ckpt.step)
                })
                .map(String::from)
                .collect();
        }
        eprintln!(
            "gud train: resuming {} at step {}",
            out.display(),
            ckpt.step
        );
    }
    gud_io::config::write_toml(&out.join("config.toml"), cfg)?;
    let total = cfg.train.steps;
    eprintln!(
        "gud train: {} parameters, {} steps of batch {} on {} training samples",
        trainer.parameters(),
        total,
        cfg.train.batch,
        data.len()
    );
    let save = |trainer: &Trainer, log: &[String]| -> Result<()> {
        trainer.save(&ckpt_path)?;
        write_atomic(&metrics_path, (log.join("\n") + "\n").as_bytes())?;
        Ok(())
    };
    let reporter = Reporter::new("gud", "steps");
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
                out.display()
            );
        }
        since += 1;
        loss_sum += s.loss;
        reporter.report_with(
            "training",
            s.step as usize,
            total as usize,
            &format!("loss {:.4}", s.loss),
        );
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
        if interrupted() {
            save(&trainer, &log)?;
            reporter.finish();
            return Err(crate::progress::interrupted_error(format!(
                "checkpoint of step {} saved in {}; continue with `gud train --out {} --resume`",
                s.step,
                out.display(),
                out.display()
            )));
        }
    }
    reporter.finish();
    Ok(())
}
