//! The config of the basis axis (STYLE "Configs"): `basis = { kind = "fourier" }`.

use super::{Basis, FourierBasis, HaarBasis, PcaBasis, PixelBasis};
use crate::error::Result;
use crate::field::{Dataset, Shape};
use serde::{Deserialize, Serialize};

/// The basis in which the forward process is diagonal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BasisConfig {
    /// The identity: components are pixels or lattice sites.
    Pixel {},
    /// The real orthonormal Fourier basis (momenta, for the free prior and RG schedules).
    Fourier {},
    /// Principal components of the training data.
    Pca {},
    /// The orthonormal Haar wavelets.
    Haar {
        /// Decomposition steps; all the way to 1 x 1 when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        levels: Option<usize>,
    },
}

impl BasisConfig {
    /// Builds the basis; `pca` is fitted to `data - mean`.
    pub fn build(&self, shape: Shape, data: &Dataset, mean: &[f64]) -> Result<Box<dyn Basis>> {
        Ok(match self {
            BasisConfig::Pixel {} => Box::new(PixelBasis::new(shape)),
            BasisConfig::Fourier {} => Box::new(FourierBasis::new(shape)),
            BasisConfig::Pca {} => Box::new(PcaBasis::fit(data, mean)?),
            BasisConfig::Haar { levels } => Box::new(HaarBasis::new(shape, *levels)?),
        })
    }
}
