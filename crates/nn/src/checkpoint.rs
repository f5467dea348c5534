//! Checkpoints: one safetensors file holding the weights (`net.*`), their EMA (`ema.*`, what
//! samples), the AdamW moments (`adam_m.*`, `adam_v.*`) and, as metadata, the format, the
//! step, the network config and the design's Sigma (to refuse a checkpoint trained on another
//! design). Written atomically (temp file + rename); read with errors that name the file and
//! the tensor at fault.

use crate::config::NetworkConfig;
use crate::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::Path;
use tch::Tensor;

/// The checkpoint's file name inside a run directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
const FORMAT: &str = "gud-nn/2";
/// Checkpoints written before the checksum (read without one).
const FORMAT_V1: &str = "gud-nn/1";

/// Named tensors of one group (e.g. the weights), in a fixed order.
pub type Named = [(String, Tensor)];

/// A checkpoint read from disk (bytes kept; tensors copied out on demand).
pub struct Checkpoint {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
    /// Optimisation steps done.
    pub step: u64,
    /// The network's architecture.
    pub network: NetworkConfig,
    /// Sigma_i of the design it was trained on.
    pub sigma_data: Vec<f64>,
    /// Prior scales S_i of that design.
    pub scale: Vec<f64>,
}

fn f32_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let v = Vec::<f32>::try_from(t.to_device(tch::Device::Cpu).contiguous().view(-1))?;
    Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// Writes `groups` (prefix, tensors) and the metadata atomically to `path`.
///
/// The file is laid out deterministically (tensors and metadata keys in name order), so that
/// identical states give byte-identical files, and the metadata `checksum` is the CRC-32 of
/// the whole tensor data, verified by [`Checkpoint::read`].
pub fn save(
    path: &Path,
    step: u64,
    network: &NetworkConfig,
    design: (&[f64], &[f64]),
    groups: &[(&str, &Named)],
) -> Result<()> {
    let mut owned = Entries::new();
    for (prefix, tensors) in groups {
        for (name, t) in tensors.iter() {
            let shape = t.size().iter().map(|&s| s as usize).collect();
            owned.insert(format!("{prefix}.{name}"), ("F32", shape, f32_bytes(t)?));
        }
    }
    for (name, values) in [("design.sigma_data", design.0), ("design.scale", design.1)] {
        let bytes = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        owned.insert(name.into(), ("F64", vec![values.len()], bytes));
    }
    let data_crc = |data: &[u8]| format!("crc32:{:08x}", crc32fast::hash(data));
    let meta = BTreeMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("step".to_string(), step.to_string()),
        (
            "network".to_string(),
            serde_json::to_string(network).expect("the network config serialises"),
        ),
    ]);
    write_tensors(path, &owned, meta, Some(&data_crc))
}

/// Tensors of a safetensors file: name -> (dtype "F32" / "F64", shape, little-endian bytes).
pub type Entries = BTreeMap<String, (&'static str, Vec<usize>, Vec<u8>)>;

/// A function of a file's whole tensor data, written as its metadata `checksum`.
pub type Checksum<'a> = &'a dyn Fn(&[u8]) -> String;

/// Writes `tensors` and the string `metadata` atomically as a safetensors file any reader
/// accepts (safetensors' Python and Rust readers, `torch`), laid out deterministically
/// (tensors and keys in name order). With `checksum`, the metadata key `checksum` is that
/// function of the whole tensor data.
pub fn write_tensors(
    path: &Path,
    tensors: &Entries,
    mut metadata: BTreeMap<String, String>,
    checksum: Option<Checksum>,
) -> Result<()> {
    let mut data = Vec::new();
    let mut header = serde_json::Map::new();
    for (name, (dtype, shape, bytes)) in tensors {
        let begin = data.len();
        data.extend_from_slice(bytes);
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": dtype, "shape": shape, "data_offsets": [begin, data.len()] }),
        );
    }
    if let Some(f) = checksum {
        metadata.insert("checksum".into(), f(&data));
    }
    header.insert("__metadata__".into(), serde_json::json!(metadata));
    // serde_json's map keeps keys sorted (no preserve_order feature): a canonical header
    let mut text = serde_json::to_string(&header).expect("the header serialises");
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut bytes = Vec::with_capacity(8 + text.len() + data.len());
    bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
    bytes.extend_from_slice(&data);
    // the reader of every other tool must accept it
    SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::checkpoint(path, format!("writing a valid file: {e}")))?;
    gud_io::atomic::write_atomic(path, &bytes)?;
    Ok(())
}

/// The tensor data of a safetensors file (everything after its header).
fn tensor_data(bytes: &[u8]) -> &[u8] {
    let n = bytes
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    usize::try_from(n)
        .ok()
        .and_then(|n| bytes.get(8usize.saturating_add(n)..))
        .unwrap_or(&[])
}

impl Checkpoint {
    /// Reads and validates the header of a checkpoint file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|error| Error::Io {
            path: path.to_path_buf(),
            error,
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
        let format = get("format")?;
        if format != FORMAT && format != FORMAT_V1 {
            return Err(Error::checkpoint(
                path,
                format!("format `{format}`, expected `{FORMAT}`"),
            ));
        }
        if format == FORMAT {
            let want = get("checksum")?;
            let got = format!("crc32:{:08x}", crc32fast::hash(tensor_data(&bytes)));
            if *want != got {
                return Err(Error::checkpoint(
                    path,
                    format!(
                        "the tensor data do not match the checksum of the metadata ({got}, \
                         expected {want}): the file is corrupt"
                    ),
                ));
            }
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
            // regression (issue 20): a diverged state used to be resumed and saved again
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(Error::checkpoint(
                    &self.path,
                    format!(
                        "tensor `{key}` holds a non-finite value ({}) at index {i}: the state \
                         diverged before it was saved; start a new run (lower train.lr?)",
                        values[i]
                    ),
                ));
            }
            let src = Tensor::from_slice(&values)
                .view(var.size().as_slice())
                .to_device(var.device());
            tch::no_grad(|| var.shallow_clone().copy_(&src));
        }
        Ok(())
    }

    /// The EMA weights (what samples) as they would be named in PyTorch: `ema.down.0.0.conv1.weight`
    /// becomes `down.0.0.conv1.weight`, layouts unchanged (tch and PyTorch share them: Conv2d
    /// (out, in, kh, kw), Linear (out, in)). Returns (name -> F32 entry, parameters).
    pub fn ema_weights(&self) -> Result<(Entries, usize)> {
        let st = SafeTensors::deserialize(&self.bytes)
            .map_err(|e| Error::checkpoint(&self.path, e.to_string()))?;
        let mut out = Entries::new();
        let mut parameters = 0;
        for (name, view) in st.tensors() {
            let Some(short) = name.strip_prefix("ema.") else {
                continue;
            };
            if view.dtype() != Dtype::F32 {
                return Err(Error::checkpoint(
                    &self.path,
                    format!("tensor `{name}` is {:?}, expected F32", view.dtype()),
                ));
            }
            parameters += view.shape().iter().product::<usize>();
            out.insert(
                short.to_string(),
                ("F32", view.shape().to_vec(), view.data().to_vec()),
            );
        }
        if out.is_empty() {
            return Err(Error::checkpoint(
                &self.path,
                "no `ema.*` tensors: not a gud-nn checkpoint of a network",
            ));
        }
        Ok((out, parameters))
    }

    /// Fails unless the checkpoint's network is the one `network` describes (regression, issue
    /// 20: a run whose config.toml said width 16 sampled with the checkpoint's width 8 and wrote
    /// width 16 beside the samples).
    pub fn check_network(&self, network: &NetworkConfig) -> Result<()> {
        if &self.network == network {
            return Ok(());
        }
        let show = |n: &NetworkConfig| serde_json::to_string(n).expect("serialises");
        Err(Error::checkpoint(
            &self.path,
            format!(
                "its network {} differs from the config's [network] {}: the config beside it \
                 was edited after training",
                show(&self.network),
                show(network)
            ),
        ))
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
                if self.sigma_data.len() == sigma_data.len() {
                    format!(
                        "trained on a design of {} components whose data variances Sigma or prior \
                         scale S differ from this config's (data, basis or prior changed since \
                         training?)",
                        sigma_data.len()
                    )
                } else {
                    format!(
                        "trained on a design of {} components; this config's design has {} \
                         (another data shape)",
                        self.sigma_data.len(),
                        sigma_data.len()
                    )
                },
            ))
        }
    }
}
