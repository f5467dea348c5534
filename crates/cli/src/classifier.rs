//! `gud classifier`: trains the small feature classifier of the Frechet distance on the
//! labelled images of a config (IDX labels or class folders) and saves it (safetensors).

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ClassifierArgs {
    /// Config whose data are labelled images (its test images give the accuracy).
    #[arg(long)]
    pub config: PathBuf,
    /// Output file (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Optimisation steps (Adam).
    #[arg(long, default_value_t = 2000, value_parser = crate::sample::at_least_one)]
    pub steps: usize,
    /// Images per step.
    #[arg(long, default_value_t = 128, value_parser = crate::sample::at_least_one)]
    pub batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3, value_parser = crate::sample::positive)]
    pub lr: f64,
    /// Seed of the initial weights and the batches.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn classifier(a: &ClassifierArgs) -> Result<()> {
    let mut outputs = crate::shared::outputs_for(Some(&a.config), &[]);
    let model_out = outputs.stage(&a.out)?;
    let start = std::time::Instant::now();
    let monitor = crate::progress::Terminal::new("gud classifier");
    let options = gud::classifier::ClassifierOptions {
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        seed: a.seed,
    };
    let t = gud::classifier::train(&a.config, &options, &model_out, &monitor)?;
    drop(monitor);
    outputs.commit()?;
    let summary = serde_json::json!({
        "out": a.out.display().to_string(),
        "shape": t.shape,
        "classes": t.classes,
        "train_images": t.train_images,
        "test_images": t.test_images,
        "test_accuracy": t.test_accuracy,
        "steps": a.steps,
        "wall_s": start.elapsed().as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
