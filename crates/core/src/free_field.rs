//! Exact draws of the free lattice field (SPEC section 7 with lam = 0): every real Fourier
//! component is independent N(0, 1 / (2 (|k_hat|^2 + m^2))), the covariance of
//! p ~ exp(-sum_x [sum_mu (phi_{x+mu} - phi_x)^2 + m^2 phi_x^2]).

use crate::basis::{Basis, FourierBasis};
use crate::error::{check_range, Error, Result};
use crate::field::{Dataset, Shape};
use crate::rng::{stream, Purpose};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// The free propagator `<|phi_k|^2> = 1 / (2 (|k_hat|^2 + m^2))` per real component.
pub fn free_propagator(k_hat_sq: f64, m2: f64) -> f64 {
    1.0 / (2.0 * (k_hat_sq + m2))
}

/// `n` independent L x L free-field configurations; sample i uses the stream (seed, free-field data, i),
/// so any sample can be regenerated alone.
pub fn free_field_samples(l: usize, m2: f64, n: usize, seed: u64) -> Result<Dataset> {
    if l < 1 {
        return Err(Error::param("data.size", l, "a lattice size L >= 1"));
    }
    check_range("data.m2", m2, f64::MIN_POSITIVE, f64::INFINITY)?;
    if n == 0 {
        return Err(Error::param("data.samples", n, "at least one sample"));
    }
    let what = format!("the free-field data set ({n} samples of {l} x {l})");
    let mut data = crate::memory::zeros(&what, &[n, l, l])?;
    let basis = FourierBasis::new(Shape::lattice(l));
    let std: Vec<f64> = basis
        .components()
        .iter()
        .map(|c| free_propagator(c.momentum.map_or(0.0, |m| m.k_hat_sq), m2).sqrt())
        .collect();
    let d = l * l;
    data.par_chunks_mut(d).enumerate().for_each(|(i, phi)| {
        let mut rng = stream(seed, Purpose::FreeFieldData, i as u64);
        let chi: Vec<f64> = std
            .iter()
            .map(|s| {
                let z: f64 = StandardNormal.sample(&mut rng);
                s * z
            })
            .collect();
        basis.inverse(&chi, phi);
    });
    Dataset::new(Shape::lattice(l), data)
}
