//! # gud-core: the design space of unified diffusion
//!
//! The mathematics of ../shared/SPEC.md sections 1-3: orthogonal bases ([`basis`]), prior
//! scalings ([`prior`]), component-wise noise schedules ([`schedule`]) and the forward process
//! ([`process`]), tied together by a fitted [`design::Design`]. Pure Rust, no file formats.

#![warn(missing_docs)]

pub mod basis;
pub mod config;
pub mod design;
pub mod error;
pub mod extension;
pub mod field;
pub mod free_field;
pub mod likelihood;
pub mod memory;
pub mod metrics;
pub mod monitor;
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
