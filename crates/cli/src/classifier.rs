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
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn classifier(a: &ClassifierArgs) -> Result<()> {
    let mut outputs = crate::commands::outputs_for(Some(&a.config), &[]);
    let model_out = outputs.stage(&a.out)?;
    let start = std::time::Instant::now();
    let monitor = crate::progress::Terminal::new("gud classifier");
    let trained = gud::classifier::train(&a.config, a.steps, a.batch, a.lr, a.seed, &monitor)?;
    drop(monitor);
    save(&trained, &model_out)?;
    outputs.commit()?;
    print_summary(a, &trained, start.elapsed().as_secs_f64())
}

#[cfg(not(feature = "nn"))]
fn save(_: &(), _: &std::path::Path) -> Result<()> {
    Ok(())
}

#[cfg(not(feature = "nn"))]
fn print_summary(_: &ClassifierArgs, _: &(), _: f64) -> Result<()> {
    Ok(())
}

#[cfg(feature = "nn")]
fn save(t: &gud::classifier::TrainedClassifier, path: &std::path::Path) -> Result<()> {
    Ok(t.model.save(path)?)
}

#[cfg(feature = "nn")]
fn print_summary(
    a: &ClassifierArgs,
    t: &gud::classifier::TrainedClassifier,
    wall_s: f64,
) -> Result<()> {
    let summary = serde_json::json!({
        "out": a.out.display().to_string(),
        "shape": t.model.shape().to_string(),
        "classes": t.model.classes(),
        "train_images": t.train_images,
        "test_images": t.test_images,
        "test_accuracy": t.model.test_accuracy,
        "steps": a.steps,
        "wall_s": wall_s,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
