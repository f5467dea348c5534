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
use std::path::Path;

/// The format tag of an exported weights file (metadata `format`).
pub const WEIGHTS_FORMAT: &str = "gud-weights/1";
/// The format tag of a check file (metadata `format`).
pub const CHECK_FORMAT: &str = "gud-export-check/1";

pub use crate::network::ExportReport;

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
