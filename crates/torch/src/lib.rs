//! # gud-torch: the network half of gud, on libtorch
//!
//! The `gud` library never links libtorch: what needs the trained network goes through its
//! [`gud::network::Network`] plug-in. This crate implements it with the U-Net of `gud-nn`
//! (training with checkpoints and bit-exact resume, sampling with the EMA network, the
//! feature classifier, the PyTorch export) and registers it:
//!
//! ```no_run
//! gud_torch::register();
//! // from here on gud::train::train, the `neural` score, gud::export::export, ... work
//! assert!(gud::network::registered());
//! ```
//!
//! The `gud` binary does without it for every analytic command (it starts in milliseconds)
//! and hands the commands that need the network to its sibling `gud-torch`, the same command
//! line with this crate registered.

#![warn(missing_docs)]

mod export;
mod train;

use gud::config::Config;
use gud::error::{Context, Result};
use gud::network::{ClassifierOptions, ClassifierReport, Network};
use gud::{Fitted, Run};
use gud_core::monitor::{Interrupted, Monitor};
use gud_core::score::ScoreModel;
use gud_core::{Dataset, Design};
use std::path::Path;

/// Registers the libtorch network with the `gud` library (idempotent).
pub fn register() {
    static TORCH: Torch = Torch;
    gud::network::register(&TORCH);
}

/// The libtorch implementation of [`Network`].
struct Torch;

/// The network crate's errors as the pipeline's.
pub(crate) trait Nn<T> {
    /// `gud::Error::Network` of the error.
    fn nn(self) -> Result<T>;
}

impl<T> Nn<T> for std::result::Result<T, gud_nn::Error> {
    fn nn(self) -> Result<T> {
        self.map_err(gud::Error::network)
    }
}

/// libtorch's threads: `--threads`, else the config's, else the environment's or the cores.
pub(crate) fn set_threads(cfg: &Config) {
    gud_nn::set_threads(Some(gud::threads::torch(cfg.train.threads)));
}

impl Network for Torch {
    fn train(
        &self,
        run: &Run,
        cfg: &Config,
        design: &Design,
        data: &Dataset,
        resume: bool,
        monitor: &dyn Monitor,
    ) -> Result<gud::train::TrainReport> {
        train::train(run, cfg, design, data, resume, monitor)
    }

    /// The EMA network of the trained run, evaluated on all of libtorch's threads (`gud_nn::EvalPool`).
    fn score<'a>(
        &self,
        cfg: &Config,
        design: &'a Design,
        run: &Run,
    ) -> Result<Box<dyn ScoreModel + 'a>> {
        set_threads(cfg);
        let device = gud_nn::device(&cfg.train.device).nn()?;
        let ckpt = gud_nn::Checkpoint::read(&run.checkpoint_path()).nn()?;
        ckpt.check_network(&cfg.network).nn()?;
        Ok(Box::new(
            gud_nn::NeuralScore::from_checkpoint(design, &ckpt, device, None).nn()?,
        ))
    }

    fn train_classifier(
        &self,
        config: &Path,
        options: &ClassifierOptions,
        out: &Path,
        monitor: &dyn Monitor,
    ) -> Result<ClassifierReport> {
        let mut cfg = gud::data::load_config(Some(config))?;
        let train = gud::data::load_data(&mut cfg, None, monitor)?;
        let test = gud::data::test_data(&cfg, &train, monitor)?;
        let opts = gud_nn::ClassifierTraining {
            steps: options.steps,
            batch: options.batch,
            lr: options.lr,
            seed: options.seed,
        };
        set_threads(&cfg);
        let steps = options.steps;
        let model = gud_nn::Classifier::train(&train, &test, &opts, &mut |step, loss| {
            monitor.progress("training", step, steps, &format!("loss {loss:.4}"));
            !monitor.should_stop()
        })
        .nn()?;
        if monitor.should_stop() {
            return Err(Interrupted::new("nothing was written").into());
        }
        model
            .save(out)
            .nn()
            .with_context(|| format!("saving the classifier to {}", out.display()))?;
        Ok(ClassifierReport {
            shape: model.shape().to_string(),
            classes: model.classes(),
            train_images: train.len(),
            test_images: test.len(),
            test_accuracy: model.test_accuracy,
        })
    }

    fn classifier_frechet(&self, path: &Path, gen: &Dataset, reference: &Dataset) -> Result<f64> {
        let c = gud_nn::Classifier::load(path).nn()?;
        let k = gud_nn::classifier::FEATURES;
        let (mg, cg) = gud_core::metrics::gaussian_fit(&c.features(gen).nn()?, k)?;
        let (mr, cr) = gud_core::metrics::gaussian_fit(&c.features(reference).nn()?, k)?;
        Ok(gud_core::metrics::frechet_distance(&mg, &cg, &mr, &cr))
    }

    fn export(
        &self,
        fitted: &Fitted,
        run: &Run,
        out: &Path,
        check: Option<(&Path, usize)>,
        seed: u64,
    ) -> Result<gud::export::ExportReport> {
        export::export(fitted, run, out, check, seed)
    }
}
