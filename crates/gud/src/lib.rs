//! # gud: the diffusion pipeline as a library
//!
//! The `gud` binary is a thin shell over this crate: everything it does to data, designs,
//! networks and reports is a function here that returns data. Nothing here prints, parses
//! arguments or exits; long loops report to a [`Monitor`] that can ask them to stop, and a
//! stop returns [`Error::Interrupted`] after the last consistent state is saved.
//!
//! A tour:
//! - [`config`]: a config file as a whole ([`Config`]: data, design, score, sampler,
//!   network, training; the built-in default is the phi^4 job);
//! - [`data`]: a config (TOML or the built-in phi^4 default), its data set (phi^4 by HMC,
//!   cached; free field; npy; images) and the fitted design ([`data::fit`] -> [`Fitted`]);
//! - [`run`]: the run directory of a trained network ([`Run`]: config, checkpoint, metrics);
//! - [`train`]: the training driver (checkpoints, resume bit-exact, NaN guard);
//! - [`network`]: the trained network as a plug-in that `gud-torch` registers: this crate
//!   never links libtorch, and what needs the network says so without one;
//! - [`sample`]: any score of a config ([`sample::build_score`]) and batched, seeded sampling;
//! - [`eval`], [`nll`]: evaluation against a reference (phi^4 z-scores, spectra, Wasserstein,
//!   memorisation, classifier Frechet) and likelihoods (ELBO, exact ODE);
//! - [`exact`]: exact lattice sampling (SPEC 9): proposals with their exact density,
//!   independence Metropolis-Hastings, reweighting, log Z;
//! - [`sweep`], [`extend`]: design-space sweeps and sliding-window extension;
//! - [`export`]: a trained network's EMA weights for PyTorch (`gud.unet.UNet`), with a check file;
//! - [`job`]: the main job of `gud run`, returning a typed [`job::JobReport`].
//!
//! The main job on the free field with its analytic (exact) score, in a few lines:
//!
//! ```
//! use gud::{data, job, Run};
//! use gud_core::monitor::Silent;
//! let toml = r#"
//!     [data]
//!     kind = "free-field"
//!     size = 4
//!     m2 = 1.0
//!     samples = 256
//!     [design]
//!     basis = { kind = "fourier" }
//!     prior = { kind = "free" }
//!     schedule = { kind = "rg", regulator = "sigmoid", width = 0.5, g_denoise = -7.0, g_noise = 9.0 }
//!     [sampler]
//!     kind = "ode"
//!     steps = 20
//! "#;
//! let cfg = gud::config::parse(toml, "doc.toml".as_ref())?;
//! let fitted = data::fit_config(cfg, "doc.toml", None, &Silent)?;
//! let opts = job::JobOptions { samples: 256, ..Default::default() };
//! let report = job::run(&fitted, &Run::new("unused"), false, &opts, &Silent)?;
//! assert_eq!(report.runs[0].samples.len(), 256);
//! # Ok::<(), gud::Error>(())
//! ```

#![warn(missing_docs)]

pub mod classifier;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod exact;
pub mod export;
pub mod extend;
pub mod flow;
pub mod job;
pub mod network;
pub mod nll;
pub mod run;
pub mod sample;
pub mod shard;
pub mod sweep;
pub mod threads;
pub mod train;

pub use config::Config;
pub use data::Fitted;
pub use error::{Error, Result};
pub use gud_core::monitor::{Interrupted, Monitor, Silent, StopAfter};
pub use run::Run;
