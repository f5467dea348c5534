//! Orthogonal bases in which the forward process is diagonal (SPEC section 1, GUD section 4.1).
//!
//! A basis is an orthogonal d x d matrix `U`, applied as `chi_tilde = U phi` ([`Basis::forward`])
//! and `phi = U^T chi_tilde` ([`Basis::inverse`]), never formed densely where a fast transform
//! exists. Channels are transformed independently with the same spatial basis, so component
//! `c * H * W + j` is spatial component `j` of channel `c`. Every component carries metadata
//! ([`ComponentInfo`]) from which schedules build their ordering variables.

mod config;
pub use config::BasisConfig;
mod fourier;
mod haar;
mod pca;
mod pixel;

pub use fourier::FourierBasis;
pub use haar::{HaarBasis, Orientation};
pub use pca::PcaBasis;
pub use pixel::PixelBasis;

use crate::field::Shape;
use rayon::prelude::*;

/// Lattice momentum of a Fourier component (SPEC section 1): `k_mu = 2 pi n_mu / L_mu`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Momentum {
    /// Signed mode numbers (n_y, n_x).
    pub n: [i64; 2],
    /// (k_y, k_x) in radians.
    pub k: [f64; 2],
    /// `|k_hat|^2 = sum_mu 4 sin^2(k_mu / 2)`.
    pub k_hat_sq: f64,
}

impl Momentum {
    /// `|k_hat|`, the lattice momentum magnitude used wherever SPEC says `|k|`.
    pub fn k_hat(&self) -> f64 {
        self.k_hat_sq.sqrt()
    }
}

/// Wavelet level (0 = coarsest) and orientation of a Haar component.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaveletInfo {
    /// Decomposition level (1 = finest).
    pub level: usize,
    /// Which detail (or the approximation).
    pub orientation: Orientation,
}

/// What is known about one component of a basis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ComponentInfo {
    /// The channel the component lives in.
    pub channel: usize,
    /// Position (row, column) in pixel units, where the component is localised.
    pub position: Option<[f64; 2]>,
    /// The momentum of a Fourier component.
    pub momentum: Option<Momentum>,
    /// The level and orientation of a wavelet component.
    pub wavelet: Option<WaveletInfo>,
}

impl ComponentInfo {
    /// A component of `channel` without further metadata.
    pub fn plain(channel: usize) -> Self {
        ComponentInfo {
            channel,
            position: None,
            momentum: None,
            wavelet: None,
        }
    }
}

/// An orthogonal basis for fields of one shape.
pub trait Basis: Send + Sync + std::fmt::Debug {
    /// The config name (`pixel`, `fourier`, `pca`, `haar`).
    fn name(&self) -> &'static str;
    /// The shape of the fields.
    fn shape(&self) -> Shape;
    /// Metadata of the d components, in component order.
    fn components(&self) -> &[ComponentInfo];
    /// `chi_tilde = U phi` for one sample; both slices have length d.
    fn forward(&self, phi: &[f64], chi: &mut [f64]);
    /// `phi = U^T chi_tilde` for one sample; both slices have length d.
    fn inverse(&self, chi: &[f64], phi: &mut [f64]);

    /// Number of components d.
    fn dim(&self) -> usize {
        self.shape().dim()
    }
}

/// `|k_hat|^2` of every component, or an error naming `what` if the basis has no momenta.
pub fn momenta_sq(basis: &dyn Basis, what: &str) -> crate::Result<Vec<f64>> {
    basis
        .components()
        .iter()
        .map(|c| c.momentum.map(|m| m.k_hat_sq))
        .collect::<Option<Vec<f64>>>()
        .ok_or_else(|| crate::Error::MissingMetadata {
            what: what.to_string(),
            needs: "lattice momenta (use the fourier basis)",
            basis: basis.name(),
        })
}

/// `U phi` for a batch (N, d) row-major, in parallel over samples.
pub fn forward_batch(basis: &dyn Basis, phi: &[f64], chi: &mut [f64]) {
    let d = basis.dim();
    chi.par_chunks_mut(d)
        .zip(phi.par_chunks(d))
        .for_each(|(out, x)| basis.forward(x, out));
}

/// `U^T chi` for a batch (N, d) row-major, in parallel over samples.
pub fn inverse_batch(basis: &dyn Basis, chi: &[f64], phi: &mut [f64]) {
    let d = basis.dim();
    phi.par_chunks_mut(d)
        .zip(chi.par_chunks(d))
        .for_each(|(out, x)| basis.inverse(x, out));
}

/// The dense matrix U (row i = basis vector i), built by transforming unit vectors. O(d^2)
/// memory: an oracle for tests and small problems, never a fast path.
pub fn dense_matrix(basis: &dyn Basis) -> Vec<f64> {
    let d = basis.dim();
    let mut u = vec![0.0; d * d];
    let mut e = vec![0.0; d];
    let mut col = vec![0.0; d];
    for j in 0..d {
        e[j] = 1.0;
        basis.forward(&e, &mut col);
        for i in 0..d {
            u[i * d + j] = col[i];
        }
        e[j] = 0.0;
    }
    u
}

#[cfg(test)]
mod tests;
