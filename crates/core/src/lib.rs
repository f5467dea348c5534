//! # gud-core: the design space of unified diffusion
//!
//! The mathematics of ../shared/SPEC.md sections 1-3: orthogonal bases ([`basis`]), prior
//! scalings ([`prior`]), component-wise noise schedules ([`schedule`]) and the forward process
//! ([`process`]), tied together by a fitted [`design::Design`]; score models ([`score`]),
//! samplers ([`sampler`]), likelihoods ([`likelihood`]), metrics ([`metrics`]), the sliding
//! window ([`extension`]) and the [`monitor`] of long loops. Each design axis has its config
//! beside its module ([`config`] lists them). Pure Rust, no file formats.
//!
//! A free field, its fitted design (fourier basis, free prior, RG schedule), the exact
//! Gaussian score and 64 samples of the exponential integrator:
//!
//! ```
//! use gud_core::config::{DesignConfig, SamplerConfig, ScoreConfig};
//! use gud_core::sampler::{generate, Plan};
//! use gud_core::{free_field::free_field_samples, Design};
//! let data = free_field_samples(4, 1.0, 256, 0)?;
//! let design = Design::fit(&DesignConfig::default(), &data)?;
//! let score = ScoreConfig::Gaussian {}.build(&design, &data)?;
//! let sampler = SamplerConfig { steps: 10, ..Default::default() };
//! let plan = Plan::new(design.schedule(), design.sigma_data(), 10, sampler.grid, None)?;
//! let (chi0, report) = generate(&plan, score.as_ref(), &sampler, 0, 0, 64, &mut |_| {})?;
//! let fields = design.whitened_batch_to_fields(&chi0);
//! assert_eq!((fields.len(), report.nfe), (64 * 16, 10));
//! # Ok::<(), gud_core::Error>(())
//! ```

#![warn(missing_docs)]

pub mod basis;
pub mod config;
pub mod design;
pub mod error;
pub mod exact;
pub mod extension;
pub mod field;
pub mod flow;
pub mod free_field;
pub mod likelihood;
pub mod memory;
pub mod metrics;
pub mod monitor;
pub mod nn_config;
pub mod numerics;
pub mod prior;
pub mod process;
pub mod rng;
pub mod sampler;
pub mod schedule;
pub mod score;

#[cfg(test)]
mod testutil;

pub use design::Design;
pub use error::{Error, Result};
pub use field::{Comp, Dataset, Field, Quantization, Shape, Whitened};
pub use process::NoisingState;
