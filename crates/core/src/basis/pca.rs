//! The PCA basis: eigenvectors of the empirical data covariance, sorted by decreasing variance
//! (SPEC section 1, GUD section 4.4). No fast transform exists: applying it is a dense
//! p x p matrix-vector product per channel (p = H W).

use super::{Basis, ComponentInfo};
use crate::error::{Error, Result};
use crate::field::{Dataset, Shape};
use nalgebra::DMatrix;

#[derive(Debug, Clone)]
/// Principal components of the training data (SPEC section 2), by decreasing variance.
pub struct PcaBasis {
    shape: Shape,
    /// Row i is eigenvector i (p x p, row-major).
    u: Vec<f64>,
    /// Covariance eigenvalues, decreasing.
    eigenvalues: Vec<f64>,
    info: Vec<ComponentInfo>,
}

impl PcaBasis {
    /// Fits the spatial covariance of `data - mean`, pooled over samples and channels.
    /// Sign convention: the largest-magnitude entry of every eigenvector is positive.
    pub fn fit(data: &Dataset, mean: &[f64]) -> Result<Self> {
        let shape = data.shape();
        let p = shape.plane();
        let rows = data.len() * shape.c;
        if rows < 2 {
            return Err(Error::EmptyData(format!(
                "the pca basis needs at least 2 samples to estimate a covariance, got {}",
                data.len()
            )));
        }
        let mut x = DMatrix::<f64>::zeros(rows, p);
        for (n, sample) in data.samples().enumerate() {
            for c in 0..shape.c {
                let r = n * shape.c + c;
                for j in 0..p {
                    x[(r, j)] = sample[c * p + j] - mean[c * p + j];
                }
            }
        }
        let cov = (x.transpose() * &x) / (rows as f64 - 1.0);
        let eig =
            nalgebra::SymmetricEigen::try_new(cov, f64::EPSILON, 10_000).ok_or_else(|| {
                Error::Numerical {
                    what: "pca basis".into(),
                    reason: "symmetric eigen-decomposition did not converge".into(),
                }
            })?;
        let mut order: Vec<usize> = (0..p).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let mut u = vec![0.0; p * p];
        for (i, &k) in order.iter().enumerate() {
            let v = eig.eigenvectors.column(k);
            let imax = (0..p)
                .max_by(|&a, &b| v[a].abs().total_cmp(&v[b].abs()))
                .unwrap_or(0);
            let sign = if v[imax] < 0.0 { -1.0 } else { 1.0 };
            for j in 0..p {
                u[i * p + j] = sign * v[j];
            }
        }
        let eigenvalues = order.iter().map(|&k| eig.eigenvalues[k].max(0.0)).collect();
        let info = (0..shape.dim())
            .map(|i| ComponentInfo::plain(i / p))
            .collect();
        Ok(PcaBasis {
            shape,
            u,
            eigenvalues,
            info,
        })
    }

    /// Covariance eigenvalues, in component order (decreasing).
    pub fn eigenvalues(&self) -> &[f64] {
        &self.eigenvalues
    }
}

impl Basis for PcaBasis {
    fn name(&self) -> &'static str {
        "pca"
    }
    fn shape(&self) -> Shape {
        self.shape
    }
    fn components(&self) -> &[ComponentInfo] {
        &self.info
    }

    fn forward(&self, phi: &[f64], chi: &mut [f64]) {
        let p = self.shape.plane();
        for (x, out) in phi.chunks_exact(p).zip(chi.chunks_exact_mut(p)) {
            for (o, row) in out.iter_mut().zip(self.u.chunks_exact(p)) {
                *o = row.iter().zip(x).map(|(a, b)| a * b).sum();
            }
        }
    }

    fn inverse(&self, chi: &[f64], phi: &mut [f64]) {
        let p = self.shape.plane();
        for (x, out) in chi.chunks_exact(p).zip(phi.chunks_exact_mut(p)) {
            out.fill(0.0);
            for (&coef, row) in x.iter().zip(self.u.chunks_exact(p)) {
                for (o, &u) in out.iter_mut().zip(row) {
                    *o += coef * u;
                }
            }
        }
    }
}
