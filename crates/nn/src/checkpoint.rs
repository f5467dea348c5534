//! Checkpoints: one safetensors file holding the weights (`net.*`), their EMA (`ema.*`, what
//! samples), the AdamW moments (`adam_m.*`, `adam_v.*`) and, as metadata, the format, the
//! step, the network config and the design's Sigma (to refuse a checkpoint trained on another
//! design). Written atomically (temp file + rename); read with errors that name the file and
//! the tensor at fault.

use crate::{Error, Result};
use gud_core::config::NetworkConfig;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;
use tch::Tensor;

/// The checkpoint's file name inside a run directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
const FORMAT: &str = "gud-nn/1";

/// Named tensors of one group (e.g. the weights), in a fixed order.
pub type Named = [(String, Tensor)];

/// A checkpoint read from disk (bytes kept; tensors copied out on demand).
pub struct Checkpoint {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
    pub step: u64,
    pub network: NetworkConfig,
    pub sigma_data: Vec<f64>,
    pub scale: Vec<f64>,
}

fn f32_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let v = Vec::<f32>::try_from(t.to_device(tch::Device::Cpu).contiguous().view(-1))?;
    Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// Writes `groups` (prefix, tensors) and the metadata atomically to `path`.
pub fn save(
    path: &Path,
    step: u64,
    network: &NetworkConfig,
    design: (&[f64], &[f64]),
    groups: &[(&str, &Named)],
) -> Result<()> {
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (prefix, tensors) in groups {
        for (name, t) in tensors.iter() {
            let shape = t.size().iter().map(|&s| s as usize).collect();
            owned.push((format!("{prefix}.{name}"), shape, f32_bytes(t)?));
        }
    }
    for (name, values) in [("design.sigma_data", design.0), ("design.scale", design.1)] {
        let bytes = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        owned.push((name.into(), vec![values.len()], bytes));
    }
    let mut views = Vec::new();
    for (name, shape, bytes) in &owned {
        let dtype = if name.starts_with("design.") {
            Dtype::F64
        } else {
            Dtype::F32
        };
        let view = TensorView::new(dtype, shape.clone(), bytes)
            .map_err(|e| Error::checkpoint(path, format!("tensor {name}: {e}")))?;
        views.push((name.clone(), view));
    }
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("step".to_string(), step.to_string()),
        (
            "network".to_string(),
            serde_json::to_string(network).expect("the network config serialises"),
        ),
    ]);
    let bytes = safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| Error::checkpoint(path, e.to_string()))?;
    gud_io::atomic::write_atomic(path, &bytes)?;
    Ok(())
}

impl Checkpoint {
    /// Reads and validates the header of a checkpoint file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| {
            Error::checkpoint(
                path,
                format!("not a readable safetensors file (corrupt or truncated?): {e}"),
            )
        })?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::checkpoint(path, e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |key: &str| {
            meta.get(key).ok_or_else(|| {
                Error::checkpoint(
                    path,
                    format!("metadata `{key}` is missing (not a gud checkpoint?)"),
                )
            })
        };
        if get("format")? != FORMAT {
            return Err(Error::checkpoint(
                path,
                format!("format `{}`, expected `{FORMAT}`", get("format")?),
            ));
        }
        let step = get("step")?
            .parse()
            .map_err(|_| Error::checkpoint(path, "metadata `step` is not an integer"))?;
        let network = serde_json::from_str(get("network")?)
            .map_err(|e| Error::checkpoint(path, format!("metadata `network`: {e}")))?;
        let f64s = |name: &str| -> Result<Vec<f64>> {
            let t = st
                .tensor(name)
                .map_err(|e| Error::checkpoint(path, format!("tensor {name}: {e}")))?;
            Ok(t.data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect())
        };
        let (sigma_data, scale) = (f64s("design.sigma_data")?, f64s("design.scale")?);
        drop(st);
        Ok(Checkpoint {
            path: path.to_path_buf(),
            bytes,
            step,
            network,
            sigma_data,
            scale,
        })
    }

    /// Copies the tensors `prefix.name` into `vars` (same names), checking every shape.
    pub fn load_into(&self, prefix: &str, vars: &Named) -> Result<()> {
        let st = SafeTensors::deserialize(&self.bytes)
            .map_err(|e| Error::checkpoint(&self.path, e.to_string()))?;
        for (name, var) in vars {
            let key = format!("{prefix}.{name}");
            let view = st.tensor(&key).map_err(|_| {
                Error::checkpoint(&self.path, format!("tensor `{key}` is missing: the config's network does not match the checkpoint"))
            })?;
            let want: Vec<usize> = var.size().iter().map(|&s| s as usize).collect();
            if view.shape() != want.as_slice() || view.dtype() != Dtype::F32 {
                return Err(Error::checkpoint(
                    &self.path,
                    format!(
                        "tensor `{key}` is {:?} {:?}, the config's network needs F32 {want:?}",
                        view.dtype(),
                        view.shape()
                    ),
                ));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect();
            let src = Tensor::from_slice(&values)
                .view(var.size().as_slice())
                .to_device(var.device());
            tch::no_grad(|| var.shallow_clone().copy_(&src));
        }
        Ok(())
    }

    /// Fails unless the checkpoint was trained on a design with this Sigma and prior scale S.
    pub fn check_design(&self, design: &gud_core::Design) -> Result<()> {
        let close = |a: &[f64], b: &[f64]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-300))
        };
        let sigma_data = design.sigma_data();
        if close(&self.sigma_data, sigma_data) && close(&self.scale, design.scale()) {
            Ok(())
        } else {
            Err(Error::checkpoint(
                &self.path,
                format!(
                    "trained on a design with {} components and another Sigma or prior scale; this config's \
                     design has {} (data, basis or prior changed since training?)",
                    self.sigma_data.len(),
                    sigma_data.len()
                ),
            ))
        }
    }
}
