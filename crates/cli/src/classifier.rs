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

#[cfg(not(feature = "nn"))]
pub fn classifier(_: &ClassifierArgs) -> Result<()> {
    Err(crate::without_nn("gud classifier"))
}

#[cfg(feature = "nn")]
pub fn classifier(a: &ClassifierArgs) -> Result<()> {
    use crate::progress::{interrupted, Reporter};
    use anyhow::bail;
    use gud_nn::{Classifier, ClassifierTraining};
    if a.steps == 0 || a.batch == 0 {
        bail!("--steps and --batch must be at least 1");
    }
    // regression (issue 20): a NaN learning rate reached libtorch and printed its stack trace
    if !(a.lr.is_finite() && a.lr > 0.0) {
        bail!("--lr must be a finite number > 0, got {}", a.lr);
    }
    let mut outputs = crate::commands::outputs_for(Some(&a.config), &[]);
    let model_out = outputs.stage(&a.out)?;
    let mut cfg = crate::data::load_config(Some(&a.config))?;
    let train = crate::data::load_data(&mut cfg, None)?;
    let test = crate::data::test_data(&cfg, &train)?;
    let opts = ClassifierTraining {
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        seed: a.seed,
    };
    gud_nn::set_threads(crate::threads::torch(cfg.train.threads));
    let reporter = Reporter::new("gud classifier", "steps");
    let start = std::time::Instant::now();
    let model = Classifier::train(&train, &test, &opts, &mut |step, loss| {
        reporter.report_with("training", step, a.steps, &format!("loss {loss:.4}"));
        !interrupted()
    })?;
    reporter.finish();
    if interrupted() {
        return Err(crate::progress::interrupted_error("nothing was written"));
    }
    model.save(&model_out)?;
    outputs.commit()?;
    let summary = serde_json::json!({
        "out": a.out.display().to_string(),
        "shape": model.shape().to_string(),
        "classes": model.classes(),
        "train_images": train.len(),
        "test_images": test.len(),
        "test_accuracy": model.test_accuracy,
        "steps": a.steps,
        "wall_s": start.elapsed().as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
