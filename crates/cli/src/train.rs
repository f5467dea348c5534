//! `gud train`: train the `neural` score of a config into a run directory (SPEC section 4)
//! with the library's training driver ([`gud::train`]).
//!
//! RUN/config.toml (the resolved config), RUN/checkpoint.safetensors (weights, EMA, AdamW
//! state; written atomically every `checkpoint_every` steps, at the end and at Ctrl-C) and
//! RUN/metrics.jsonl (step, loss, lr, grad_norm, steps_per_s). `--resume` continues the run that
//! would have happened without the interruption, bit for bit.

use crate::progress::Terminal;
use crate::shared::fit;
use anyhow::{bail, Result};
use gud::Run;
use std::path::PathBuf;

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

pub fn train(a: &TrainArgs) -> Result<()> {
    let run = Run::new(&a.out);
    let run_config = run.config_path();
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
    let mut f = fit(config.as_deref(), None)?;
    if let Some(s) = a.steps {
        f.config.train.steps = s;
    }
    gud::train::resolve(&mut f.config);
    let monitor = Terminal::new("gud train");
    crate::shared::name_flags(
        gud::train::train(&run, &f.config, &f.design, &f.data, a.resume, &monitor),
        &[("train.steps", "--steps")],
    )?;
    Ok(())
}
