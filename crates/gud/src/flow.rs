//! Exact sampling at scale (SPEC section 9.1): a local coupling flow on the RG steps of a
//! design's Gaussian base ([`gud_core::flow`]), trained by the reverse Kullback-Leibler
//! divergence against the phi^4 action, saved as safetensors, and used as the proposal of
//! [`crate::exact::mcmc_with`]. Its couplings do not depend on the lattice size: a flow
//! trained at one L proposes at any other on that L's design.

use crate::error::{bail, Context, Result};
use gud_core::flow::{train as train_couplings, Couplings, FlowConfig, FlowStep, FlowTraining};
use gud_core::monitor::Monitor;
use gud_core::Design;
use gud_phi4::Lattice;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// Where a flow was trained (the file's `trained` metadata).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// gud's version.
    pub gud_version: String,
    /// Lattice size L of the training.
    pub l: usize,
    /// m^2 of the target.
    pub m2: f64,
    /// lambda of the target.
    pub lam: f64,
    /// The training's settings (steps: the total over every run that continued it).
    pub training: FlowTraining,
    /// Mean of log q - log p over the last tenth of the steps.
    pub final_loss: f64,
    /// Mean batch ESS / N over the last tenth of the steps.
    pub final_ess_fraction: f64,
    /// Seconds of training (this run).
    pub wall_s: f64,
}

/// A flow file: the couplings and where they were trained.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowFile {
    /// Architecture and parameters.
    pub couplings: Couplings,
    /// The training.
    pub provenance: Provenance,
}

/// Trains `init` (or new identity couplings of `config`) on `design` against the phi^4
/// `lattice`; the monitor hears every step. A stop request ends the training after the
/// current step: the result holds the couplings so far.
pub fn train(
    design: &Design,
    lattice: &Lattice,
    config: &FlowConfig,
    init: Option<Couplings>,
    opts: &FlowTraining,
    monitor: &dyn Monitor,
) -> Result<(FlowFile, Vec<FlowStep>)> {
    let start = Instant::now();
    let mut couplings = match init {
        Some(c) => c,
        None => Couplings::new(config, opts.seed)?,
    };
    let log = train_couplings(design, &mut couplings, lattice, opts, monitor)?;
    let tail = &log[log.len() - (log.len() / 10).max(1)..];
    let mean = |f: &dyn Fn(&FlowStep) -> f64| tail.iter().map(f).sum::<f64>() / tail.len() as f64;
    let provenance = Provenance {
        gud_version: env!("CARGO_PKG_VERSION").into(),
        l: lattice.l,
        m2: lattice.couplings.m2,
        lam: lattice.couplings.lam,
        training: FlowTraining {
            steps: log.len(),
            ..opts.clone()
        },
        final_loss: mean(&|s| s.loss),
        final_ess_fraction: mean(&|s| s.ess_fraction),
        wall_s: start.elapsed().as_secs_f64(),
    };
    Ok((
        FlowFile {
            couplings,
            provenance,
        },
        log,
    ))
}

/// Writes a flow as safetensors (tensor `params`, float64; metadata `gud_flow`: the
/// architecture as TOML, `trained`: the provenance as TOML) to `path` (the caller's
/// temporary; see [`gud_io::atomic::Outputs`]).
pub fn save(path: &Path, flow: &FlowFile) -> Result<()> {
    let bytes: Vec<u8> = flow
        .couplings
        .params
        .iter()
        .flat_map(|p| p.to_le_bytes())
        .collect();
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::F64,
        vec![flow.couplings.params.len()],
        &bytes,
    )
    .map_err(|e| crate::Error::Invalid(format!("packing the flow: {e}")))?;
    let mut meta = HashMap::new();
    meta.insert(
        "gud_flow".to_string(),
        toml::to_string(&flow.couplings.config)
            .map_err(|e| crate::Error::Invalid(e.to_string()))?,
    );
    meta.insert(
        "trained".to_string(),
        toml::to_string(&flow.provenance).map_err(|e| crate::Error::Invalid(e.to_string()))?,
    );
    let data = safetensors::serialize([("params", view)], Some(meta))
        .map_err(|e| crate::Error::Invalid(format!("packing the flow: {e}")))?;
    std::fs::write(path, data).map_err(|error| {
        crate::Error::Io(gud_io::IoError::Io {
            path: path.to_path_buf(),
            error,
        })
    })?;
    Ok(())
}

/// Reads a flow file written by [`save`]; every error names the file and what is wrong.
pub fn load(path: &Path) -> Result<FlowFile> {
    let what = || format!("reading the flow {}", path.display());
    let bytes = std::fs::read(path).map_err(|error| {
        crate::Error::Io(gud_io::IoError::Io {
            path: path.to_path_buf(),
            error,
        })
    })?;
    let bad = |why: String| -> Result<FlowFile> {
        Err(crate::Error::Invalid(format!(
            "{}: not a gud flow file ({why})",
            path.display()
        )))
    };
    let (_, meta) = match safetensors::SafeTensors::read_metadata(&bytes) {
        Ok(m) => m,
        Err(e) => return bad(format!("safetensors: {e}")),
    };
    let tensors = match safetensors::SafeTensors::deserialize(&bytes) {
        Ok(t) => t,
        Err(e) => return bad(format!("safetensors: {e}")),
    };
    let meta = meta.metadata().clone().unwrap_or_default();
    let (Some(arch), Some(trained)) = (meta.get("gud_flow"), meta.get("trained")) else {
        return bad("metadata `gud_flow` and `trained` missing".into());
    };
    let config: FlowConfig = match toml::from_str(arch) {
        Ok(c) => c,
        Err(e) => return bad(format!("metadata `gud_flow`: {}", e.message())),
    };
    let provenance: Provenance = match toml::from_str(trained) {
        Ok(p) => p,
        Err(e) => return bad(format!("metadata `trained`: {}", e.message())),
    };
    let params = match tensors.tensor("params") {
        Ok(t) if t.dtype() == safetensors::Dtype::F64 && t.shape().len() == 1 => t
            .data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect::<Vec<f64>>(),
        Ok(t) => {
            return bad(format!(
                "tensor `params` is {:?} of shape {:?}, expected F64 (P,)",
                t.dtype(),
                t.shape()
            ))
        }
        Err(e) => return bad(format!("tensor `params`: {e}")),
    };
    let couplings = Couplings::from_params(&config, params).with_context(what)?;
    Ok(FlowFile {
        couplings,
        provenance,
    })
}

/// Checks that a flow's design can carry it: one channel on an even L x L lattice.
pub fn check_design(design: &Design) -> Result<()> {
    let s = design.shape();
    if s.c != 1 || s.h != s.w || !s.h.is_multiple_of(2) {
        bail!("a flow needs a design on an even L x L lattice (checkerboard couplings), got {s}");
    }
    Ok(())
}
