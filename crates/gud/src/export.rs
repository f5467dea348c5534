//! The trained network for other tools (`gud export`): the EMA weights alone, under the names
//! and layouts of the PyTorch module `gud.unet.UNet` of the Python package, in a safetensors
//! file whose metadata say how to feed the network (SPEC section 4: the input image
//! `U^T (S chi_t) / input_scale`, the gamma channel `U^T gamma / 10`, the output y with
//! `eps_hat = eps_base + U y`). Optionally a check file: noised rows of the training data with
//! the network's inputs, its output and gud's full eps_hat, against which a reimplementation
//! is tested.

use crate::data::Fitted;
use crate::error::Result;
use crate::run::Run;
use serde::Serialize;
use std::path::Path;

/// The format tag of an exported weights file (metadata `format`).
pub const WEIGHTS_FORMAT: &str = "gud-weights/1";
/// The format tag of a check file (metadata `format`).
pub const CHECK_FORMAT: &str = "gud-export-check/1";

/// What [`export`] wrote.
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

/// Writes the EMA weights of `run` (trained on `fitted`'s design) to `out`; with `check`
/// (file, rows), also `rows` noised training rows (stream (seed, ExportCheck, 0), times
/// stratified as in training) with the network's inputs and output and gud's eps_hat.
pub fn export(
    fitted: &Fitted,
    run: &Run,
    out: &Path,
    check: Option<(&Path, usize)>,
    seed: u64,
) -> Result<ExportReport> {
    crate::network::get("gud export")?.export(fitted, run, out, check, seed)
}
