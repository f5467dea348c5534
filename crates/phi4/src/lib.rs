//! # gud-phi4: lattice phi^4 theory in two dimensions (SPEC section 7)
//!
//! Periodic L x L lattice with the action
//!
//! ```text
//! S[phi] = sum_x [ sum_{mu=1,2} (phi_{x+mu} - phi_x)^2 + m2 phi_x^2 + lam phi_x^4 ],   p ~ exp(-S)
//! ```
//!
//! (the convention of the normalizing-flow lattice literature). [`Couplings::from_hopping`]
//! converts the hopping-parameter convention exactly. [`hmc`] samples it with many parallel
//! chains, [`observables`] measures it with binned-jackknife errors and integrated
//! autocorrelation times ([`stats`]).
//!
//! ```
//! use gud_core::monitor::Silent;
//! use gud_phi4::{hmc, observables, Couplings, HmcConfig, Lattice};
//! let couplings = Couplings::new(-4.0, 8.0)?;
//! let lattice = Lattice::new(4, couplings)?;
//! let cfg = HmcConfig { chains: 8, ..Default::default() };
//! let run = hmc::sample(&lattice, 64, &cfg, &Silent)?;
//! let obs = observables::measure(&run.configs, 4, Some(couplings))?;
//! assert!(obs.abs_m.value > 0.0 && obs.binder.value < 2.0 / 3.0 + 1e-12);
//! # Ok::<(), gud_phi4::Phi4Error>(())
//! ```

#![warn(missing_docs)]

pub mod action;
pub mod hmc;
pub mod observables;
pub mod stats;

pub use action::{Couplings, Lattice};
pub use hmc::{HmcConfig, HmcRun};

use thiserror::Error;

#[derive(Debug, Error)]
/// Errors of the lattice crate.
pub enum Phi4Error {
    #[error("invalid parameter `{name}` = {value}: expected {expected}")]
    /// A parameter outside its valid range.
    InvalidParameter {
        /// The parameter.
        name: String,
        /// Its value.
        value: String,
        /// What it must be.
        expected: String,
    },
    #[error("configurations: {0}")]
    /// Configurations that cannot be measured.
    BadConfigurations(String),
    #[error("interrupted")]
    /// The monitor asked the run to stop.
    Interrupted,
    /// A size beyond this machine's memory (checked before allocating).
    #[error(transparent)]
    TooLarge(#[from] gud_core::Error),
}

/// The lattice crate's result.
pub type Result<T, E = Phi4Error> = std::result::Result<T, E>;

pub(crate) fn invalid(name: &str, value: impl ToString, expected: &str) -> Phi4Error {
    Phi4Error::InvalidParameter {
        name: name.into(),
        value: value.to_string(),
        expected: expected.into(),
    }
}
