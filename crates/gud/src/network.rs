//! The trained network as a plug-in: everything that needs libtorch (training the `neural`
//! score, sampling with it, the feature classifier, the PyTorch export) goes through a
//! [`Network`] that the crate `gud-torch` registers ([`register`]). This crate itself never
//! links libtorch, so a program built on it starts in milliseconds and runs every analytic
//! score, sampler, likelihood and phi^4 command; a call that needs the network without one
//! registered returns [`Error::NoNetwork`], which names what needed it.

use crate::config::Config;
use crate::data::Fitted;
use crate::error::{Error, Result};
use crate::run::Run;
use gud_core::monitor::Monitor;
use gud_core::score::ScoreModel;
use gud_core::{Dataset, Design};
use serde::Serialize;
use std::path::Path;
use std::sync::OnceLock;

/// Settings of [`Network::train_classifier`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierOptions {
    /// Optimisation steps (AdamW).
    pub steps: usize,
    /// Images per step.
    pub batch: usize,
    /// Learning rate.
    pub lr: f64,
    /// Seed of the initial weights and the batches.
    pub seed: u64,
}

/// What [`Network::train_classifier`] trained and saved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassifierReport {
    /// The image shape it classifies, as `(c, h, w)`.
    pub shape: String,
    /// Classes.
    pub classes: usize,
    /// Training images.
    pub train_images: usize,
    /// Test images (the accuracy's).
    pub test_images: usize,
    /// Accuracy on the test images.
    pub test_accuracy: f64,
}

/// What a call of `gud::train::train` did (the reports live beside the trait that makes
/// them, so that this module imports neither caller).
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

/// What `gud::export::export` wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportReport {
    /// Tensors in the weights file.
    pub tensors: usize,
    /// Parameters (numbers) in them.
    pub parameters: usize,
    /// The training step of the weights.
    pub step: u64,
    /// Rows of the check file (0 without one).
    pub check_rows: usize,
    /// Largest |eps_hat - eps_base - U y| over the check rows (how exactly eps_hat decomposes
    /// into the base and the network's output; float32 rounding of y only).
    pub check_decomposition_error: f64,
}

/// The network half of gud (implemented by `gud-torch` on libtorch). Each method is the
/// library function of the same purpose (`train::train`, `sample`'s neural
/// score, [`crate::classifier::train`], [`crate::eval::classifier_frechet`],
/// `export::export`); those check their arguments' common part and call it here.
pub trait Network: Send + Sync {
    /// Trains (or, with `resume`, continues) the run in `run` until `cfg.train.steps`
    /// (see `gud::train::train`).
    fn train(
        &self,
        run: &Run,
        cfg: &Config,
        design: &Design,
        data: &Dataset,
        resume: bool,
        monitor: &dyn Monitor,
    ) -> Result<TrainReport>;

    /// The EMA network of the trained `run` as the score of `design` (SPEC section 4).
    fn score<'a>(
        &self,
        cfg: &Config,
        design: &'a Design,
        run: &Run,
    ) -> Result<Box<dyn ScoreModel + 'a>>;

    /// Trains the feature classifier on the labelled images of the config at `config` and
    /// saves it to `out` (see [`crate::classifier::train`]).
    fn train_classifier(
        &self,
        config: &Path,
        options: &ClassifierOptions,
        out: &Path,
        monitor: &dyn Monitor,
    ) -> Result<ClassifierReport>;

    /// Frechet distance between the features of the classifier at `path` of two image sets.
    fn classifier_frechet(&self, path: &Path, gen: &Dataset, reference: &Dataset) -> Result<f64>;

    /// Writes the EMA weights of `run` for PyTorch (see `gud::export::export`).
    fn export(
        &self,
        fitted: &Fitted,
        run: &Run,
        out: &Path,
        check: Option<(&Path, usize)>,
        seed: u64,
    ) -> Result<ExportReport>;
}

static NETWORK: OnceLock<&'static dyn Network> = OnceLock::new();

/// Makes `network` the one every network-bound call of this process uses; the first
/// registration stays (later ones are ignored), so registering twice is harmless.
pub fn register(network: &'static dyn Network) {
    let _ = NETWORK.set(network);
}

/// Whether a network is registered.
pub fn registered() -> bool {
    NETWORK.get().is_some()
}

/// The registered network, or [`Error::NoNetwork`] naming `what` needed it.
pub fn get(what: &str) -> Result<&'static dyn Network> {
    NETWORK
        .get()
        .copied()
        .ok_or_else(|| Error::NoNetwork(what.to_string()))
}
