//! The trained `neural` score of gud (SPEC section 4): a convolutional U-Net on the phi-space
//! image of chi_t, conditioned on the full noising state gamma_t (never on t), with the output
//! parametrisation `eps_hat = eps_gaussian + U NN`: the network learns only the non-Gaussian
//! correction, and with its last layer at zero (as at initialisation) the model is exactly the
//! `gaussian` score.
//!
//! The basis changes stay outside the autodiff graph: U is orthogonal, so the loss
//! `sum_i (eps_hat_i - eps_i)^2 = || NN - U^T (eps - eps_gaussian) ||^2` is a pixel-space loss
//! against a target computed in Rust ([`encode`]).
//!
//! This is the only crate of the workspace on libtorch (tch); nothing in gud-core depends on it.
//! A tour: [`config`] (the `[network]` and `[train]` settings: gud-core's `nn_config`,
//! re-exported, so that the pipeline reads them without libtorch), [`unet`] (the network), [`encode`] (chi_t and gamma_t to images,
//! the output back to eps), [`train`] (the loss of SPEC section 4, AdamW, EMA, checkpoints in
//! [`checkpoint`]), [`score`] (the trained score as a `ScoreModel`, evaluated on all cores by
//! [`pool`]) and [`classifier`]. The
//! pipeline drives training through the plug-in of gud-torch; the settings round-trip through
//! TOML:
//!
//! ```
//! use gud_nn::config::{NetworkConfig, Padding};
//! let net = NetworkConfig { width: 16, padding: Padding::Zeros, ..Default::default() };
//! let back: NetworkConfig = toml::from_str(&toml::to_string(&net)?)?;
//! assert_eq!(back, net);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

#[cfg(feature = "torch")]
pub mod checkpoint;
#[cfg(feature = "torch")]
pub mod classifier;
pub use gud_core::nn_config as config;
#[cfg(feature = "torch")]
pub mod encode;
#[cfg(feature = "torch")]
mod error;
#[cfg(feature = "torch")]
pub mod pool;
#[cfg(feature = "torch")]
pub mod score;
#[cfg(feature = "torch")]
pub mod train;
#[cfg(feature = "torch")]
pub mod unet;

#[cfg(feature = "torch")]
pub use checkpoint::{Checkpoint, CHECKPOINT_FILE};
#[cfg(feature = "torch")]
pub use classifier::{Classifier, ClassifierTraining};
#[cfg(feature = "torch")]
pub use error::{Error, Result};
#[cfg(feature = "torch")]
pub use pool::{auto_chunk, EvalPool};
#[cfg(feature = "torch")]
pub use score::{jacobian_replicas, NeuralScore, JACOBIAN_BATCH};
#[cfg(feature = "torch")]
pub use train::{StepStats, Trainer};
#[cfg(feature = "torch")]
pub use unet::UNet;

/// The libtorch device named by a config (`cpu` or `cuda`).
#[cfg(feature = "torch")]
pub fn device(name: &str) -> Result<tch::Device> {
    match name {
        "cpu" => Ok(tch::Device::Cpu),
        "cuda" => {
            if tch::Cuda::is_available() {
                Ok(tch::Device::Cuda(0))
            } else {
                Err(Error::Config {
                    field: "train.device".into(),
                    reason: "`cuda` was asked for but libtorch sees no CUDA device (build with \
                             the `cuda` feature against the full torch wheel, on a GPU machine)"
                        .into(),
                })
            }
        }
        other => Err(Error::Config {
            field: "train.device".into(),
            reason: format!("`{other}` is not a device: expected `cpu` or `cuda`"),
        }),
    }
}

/// Sets libtorch's intra-op threads (all cores when `None`), and keeps freed memory in the
/// process ([`keep_freed_memory`]).
#[cfg(feature = "torch")]
pub fn set_threads(threads: Option<usize>) {
    keep_freed_memory();
    let n = threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    tch::set_num_threads(n.max(1) as i32);
}

/// Keeps the memory libtorch frees inside the process (glibc malloc: no heap trimming, and
/// blocks up to 64 MB from the heap rather than fresh mappings). Without it every forward pass
/// gave its activations back to the kernel and faulted them in again: 17% of an 8 x 8
/// evaluation's time was page faults and zeroing (perf, issue 22), against 3.5% in PyTorch.
/// The peak resident memory is unchanged; the process just does not shrink between passes.
#[cfg(all(feature = "torch", target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn keep_freed_memory() {
    // glibc's <malloc.h>
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: mallopt only sets two tuning parameters of the allocator; it is called
        // once, and glibc serialises it with allocation.
        unsafe {
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
            mallopt(M_MMAP_THRESHOLD, 64 << 20);
        }
    });
}

/// Elsewhere the allocator is left as it is.
#[cfg(all(feature = "torch", not(all(target_os = "linux", target_env = "gnu"))))]
pub fn keep_freed_memory() {}
