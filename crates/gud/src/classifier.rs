//! The small image classifier whose features give the Frechet distance of [`crate::eval`] (a
//! stand-in for FID), trained on the labelled images of a config.

use crate::error::Result;
pub use crate::network::{ClassifierOptions, ClassifierReport};
use gud_core::monitor::Monitor;
use std::path::Path;

/// Trains the classifier on the labelled images of the config at `config` (IDX labels or
/// class folders; its test images give the accuracy) with the registered
/// [`crate::network::Network`] and saves it to `out` (safetensors): `steps` AdamW steps of
/// `batch` images at learning rate `lr`. The monitor hears every step (phase `training`, the
/// loss as detail); a stop request returns [`crate::Error::Interrupted`] and writes nothing.
pub fn train(
    config: &Path,
    options: &ClassifierOptions,
    out: &Path,
    monitor: &dyn Monitor,
) -> Result<ClassifierReport> {
    if options.steps == 0 || options.batch == 0 {
        return Err(gud_core::Error::param(
            "steps / batch",
            format!("{} / {}", options.steps, options.batch),
            "at least 1 each",
        )
        .into());
    }
    // regression (issue 20): a NaN learning rate reached libtorch and printed its stack trace
    if !(options.lr.is_finite() && options.lr > 0.0) {
        return Err(gud_core::Error::param("lr", options.lr, "a finite number > 0").into());
    }
    crate::network::get("the classifier")?.train_classifier(config, options, out, monitor)
}
