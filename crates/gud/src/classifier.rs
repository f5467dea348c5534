//! The small image classifier whose features give the Frechet distance of [`crate::eval`] (a
//! stand-in for FID), trained on the labelled images of a config.

use crate::error::Result;
use gud_core::monitor::Monitor;
use std::path::Path;

/// A trained classifier and the data it saw.
#[cfg(feature = "nn")]
pub struct TrainedClassifier {
    /// The classifier (save it with `Classifier::save`).
    pub model: gud_nn::Classifier,
    /// Training images.
    pub train_images: usize,
    /// Test images (the accuracy's).
    pub test_images: usize,
}

/// Without the network: the error of the classifier.
#[cfg(not(feature = "nn"))]
pub fn train(_: &Path, _: usize, _: usize, _: f64, _: u64, _: &dyn Monitor) -> Result<()> {
    Err(crate::without_nn("the classifier"))
}

/// Trains the classifier on the labelled images of the config at `config` (IDX labels or
/// class folders; its test images give the accuracy): `steps` AdamW steps of `batch` images at
/// learning rate `lr`. The monitor hears every step (phase `training`, the loss as detail); a
/// stop request returns [`crate::Error::Interrupted`].
#[cfg(feature = "nn")]
pub fn train(
    config: &Path,
    steps: usize,
    batch: usize,
    lr: f64,
    seed: u64,
    monitor: &dyn Monitor,
) -> Result<TrainedClassifier> {
    use crate::error::bail;
    use gud_core::monitor::Interrupted;
    use gud_nn::{Classifier, ClassifierTraining};
    if steps == 0 || batch == 0 {
        bail!("--steps and --batch must be at least 1");
    }
    // regression (issue 20): a NaN learning rate reached libtorch and printed its stack trace
    if !(lr.is_finite() && lr > 0.0) {
        bail!("--lr must be a finite number > 0, got {lr}");
    }
    let mut cfg = crate::data::load_config(Some(config))?;
    let train = crate::data::load_data(&mut cfg, None, monitor)?;
    let test = crate::data::test_data(&cfg, &train, monitor)?;
    let opts = ClassifierTraining {
        steps,
        batch,
        lr,
        seed,
    };
    gud_nn::set_threads(Some(crate::threads::torch(cfg.train.threads)));
    let model = Classifier::train(&train, &test, &opts, &mut |step, loss| {
        monitor.progress("training", step, steps, &format!("loss {loss:.4}"));
        !monitor.should_stop()
    })?;
    if monitor.should_stop() {
        return Err(Interrupted::new("nothing was written").into());
    }
    Ok(TrainedClassifier {
        model,
        train_images: train.len(),
        test_images: test.len(),
    })
}
