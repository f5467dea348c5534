//! Oracles and identities for the bases (STYLE tests 1, 2 and 7).

use super::*;
use crate::field::{Dataset, Shape};
use crate::testutil::gaussian_vec;
use nalgebra::DMatrix;
use proptest::prelude::*;
use std::f64::consts::{PI, SQRT_2};

const TOL: f64 = 1e-10;

fn shapes() -> Vec<Shape> {
    vec![
        Shape::new(1, 1, 1),
        Shape::new(1, 4, 4),
        Shape::new(1, 5, 7),
        Shape::new(1, 6, 3),
        Shape::new(3, 4, 6),
        Shape::new(2, 3, 5),
        Shape::new(1, 8, 8),
    ]
}

fn all_bases(shape: Shape) -> Vec<Box<dyn Basis>> {
    let n = 3 * shape.plane() + 8;
    let data = Dataset::new(shape, gaussian_vec(n * shape.dim(), 11)).unwrap();
    let mean = vec![0.0; shape.dim()];
    vec![
        Box::new(PixelBasis::new(shape)),
        Box::new(FourierBasis::new(shape)),
        Box::new(HaarBasis::new(shape, None).unwrap()),
        Box::new(PcaBasis::fit(&data, &mean).unwrap()),
    ]
}

/// max |U U^T - I|
fn orthogonality_error(u: &[f64], d: usize) -> f64 {
    let m = DMatrix::from_row_slice(d, d, u);
    let g = &m * m.transpose();
    (g - DMatrix::identity(d, d)).abs().max()
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den.max(1e-300)).sqrt()
}

#[test]
fn every_basis_is_orthogonal_and_round_trips() {
    for shape in shapes() {
        for basis in all_bases(shape) {
            let d = shape.dim();
            let u = dense_matrix(basis.as_ref());
            let err = orthogonality_error(&u, d);
            assert!(
                err < TOL,
                "{} on {shape}: |U U^T - I| = {err}",
                basis.name()
            );
            let phi = gaussian_vec(d, 3);
            let mut chi = vec![0.0; d];
            let mut back = vec![0.0; d];
            basis.forward(&phi, &mut chi);
            basis.inverse(&chi, &mut back);
            let e = rel_err(&back, &phi);
            assert!(
                e < 1e-5,
                "{} on {shape}: round trip error {e}",
                basis.name()
            );
            // Parseval
            let n0: f64 = phi.iter().map(|v| v * v).sum();
            let n1: f64 = chi.iter().map(|v| v * v).sum();
            assert!(
                (n0 - n1).abs() < 1e-9 * n0,
                "{} on {shape}: norm {n0} -> {n1}",
                basis.name()
            );
            assert_eq!(basis.components().len(), d);
        }
    }
}

#[test]
fn inverse_is_the_transpose() {
    for shape in [Shape::new(1, 5, 4), Shape::new(2, 4, 4)] {
        for basis in all_bases(shape) {
            let d = shape.dim();
            let u = dense_matrix(basis.as_ref());
            let mut e = vec![0.0; d];
            let mut col = vec![0.0; d];
            for i in 0..d {
                e[i] = 1.0;
                basis.inverse(&e, &mut col);
                for j in 0..d {
                    assert!((col[j] - u[i * d + j]).abs() < TOL, "{}", basis.name());
                }
                e[i] = 0.0;
            }
        }
    }
}

/// The explicit real DFT basis, in the documented component order: row-major over (ky, kx),
/// self-conjugate modes give cos alone, pair representatives (index < partner) cos then sin.
fn dense_fourier_oracle(h: usize, w: usize) -> Vec<f64> {
    let n = h * w;
    let mut rows = Vec::with_capacity(n * n);
    for ky in 0..h {
        for kx in 0..w {
            let idx = ky * w + kx;
            let partner = ((h - ky) % h) * w + (w - kx) % w;
            if idx > partner {
                continue;
            }
            let theta = |y: usize, x: usize| {
                2.0 * PI * (ky as f64 * y as f64 / h as f64 + kx as f64 * x as f64 / w as f64)
            };
            let norm = if idx == partner { 1.0 } else { SQRT_2 } / (n as f64).sqrt();
            for y in 0..h {
                for x in 0..w {
                    rows.push(norm * theta(y, x).cos());
                }
            }
            if idx < partner {
                for y in 0..h {
                    for x in 0..w {
                        rows.push(norm * theta(y, x).sin());
                    }
                }
            }
        }
    }
    rows
}

#[test]
fn fft_fourier_equals_dense_dft_oracle() {
    for (h, w) in [(4, 4), (5, 7), (6, 3), (8, 8), (1, 6), (9, 10)] {
        let basis = FourierBasis::new(Shape::new(1, h, w));
        let fast = dense_matrix(&basis);
        let oracle = dense_fourier_oracle(h, w);
        let err = fast
            .iter()
            .zip(&oracle)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "{h}x{w}: max |U_fft - U_dense| = {err}");
    }
}

#[test]
fn fourier_fast_path_large() {
    // d = 1024 and above: the FFT path, checked against the explicit formula on random input.
    let (h, w) = (32, 48);
    let basis = FourierBasis::new(Shape::new(1, h, w));
    let phi = gaussian_vec(h * w, 5);
    let mut chi = vec![0.0; h * w];
    basis.forward(&phi, &mut chi);
    let oracle = dense_fourier_oracle(h, w);
    for (i, row) in oracle.chunks_exact(h * w).enumerate().step_by(97) {
        let v: f64 = row.iter().zip(&phi).map(|(a, b)| a * b).sum();
        assert!(
            (v - chi[i]).abs() < 1e-10,
            "component {i}: {v} vs {}",
            chi[i]
        );
    }
}

#[test]
fn fourier_momenta() {
    let basis = FourierBasis::new(Shape::new(1, 8, 8));
    let zero = basis
        .components()
        .iter()
        .filter(|c| c.momentum.unwrap().k_hat_sq == 0.0)
        .count();
    assert_eq!(zero, 1);
    let max = basis
        .components()
        .iter()
        .map(|c| c.momentum.unwrap().k_hat_sq)
        .fold(0.0, f64::max);
    assert!(
        (max - 8.0).abs() < 1e-12,
        "|k_hat|^2 max = 8 at (pi, pi), got {max}"
    );
}

/// The 1-D Haar analysis step as a dense n x n matrix.
fn haar_step_matrix(n: usize) -> DMatrix<f64> {
    let mut s = DMatrix::zeros(n, n);
    let (half, ah) = (n / 2, n.div_ceil(2));
    let r = 1.0 / SQRT_2;
    for i in 0..half {
        s[(i, 2 * i)] = r;
        s[(i, 2 * i + 1)] = r;
        s[(ah + i, 2 * i)] = r;
        s[(ah + i, 2 * i + 1)] = -r;
    }
    if n % 2 == 1 {
        s[(half, n - 1)] = 1.0;
    }
    s
}

/// Multi-level Haar by matrix products: the h x w approximation block B becomes
/// S_h B S_w^T at each step, S_n the dense 1-D step matrix.
fn haar_oracle(x: &DMatrix<f64>, levels: usize) -> DMatrix<f64> {
    let (mut h, mut w) = x.shape();
    let mut out = x.clone();
    for _ in 0..levels {
        let block = out.view((0, 0), (h, w)).clone_owned();
        let next = haar_step_matrix(h) * block * haar_step_matrix(w).transpose();
        out.view_mut((0, 0), (h, w)).copy_from(&next);
        h = h.div_ceil(2);
        w = w.div_ceil(2);
    }
    out
}

#[test]
fn fast_haar_equals_matrix_oracle() {
    for (h, w, levels) in [
        (8, 8, None),
        (8, 8, Some(2)),
        (5, 7, None),
        (6, 3, None),
        (32, 32, None),
    ] {
        let basis = HaarBasis::new(Shape::new(1, h, w), levels).unwrap();
        let phi = gaussian_vec(h * w, 9);
        let mut chi = vec![0.0; h * w];
        basis.forward(&phi, &mut chi);
        let oracle = haar_oracle(&DMatrix::from_row_slice(h, w, &phi), basis.levels());
        for r in 0..h {
            for c in 0..w {
                assert!(
                    (oracle[(r, c)] - chi[r * w + c]).abs() < 1e-12,
                    "{h}x{w} {levels:?} at ({r},{c}): {} vs {}",
                    oracle[(r, c)],
                    chi[r * w + c]
                );
            }
        }
    }
}

#[test]
fn haar_levels_and_orientations() {
    let basis = HaarBasis::new(Shape::new(1, 8, 8), None).unwrap();
    assert_eq!(basis.levels(), 3);
    let info = basis.components();
    let level = |i: usize| info[i].wavelet.unwrap().level;
    assert_eq!(level(0), 0);
    assert_eq!(info[0].wavelet.unwrap().orientation, Orientation::Approx);
    assert_eq!(level(1), 1); // (0,1): coarsest detail along x
    assert_eq!(info[1].wavelet.unwrap().orientation, Orientation::DetailX);
    assert_eq!(level(8 * 4), 3); // (4,0): finest detail along y
    assert_eq!(
        info[8 * 4].wavelet.unwrap().orientation,
        Orientation::DetailY
    );
    assert_eq!(level(63), 3);
    // counts per level: 1 approx + 3 * 4^(l-1) details
    for (l, expected) in [(0, 1), (1, 3), (2, 12), (3, 48)] {
        assert_eq!(
            (0..64).filter(|&i| level(i) == l).count(),
            expected,
            "level {l}"
        );
    }
    // columns inside the finest x-detail band cover the image left to right
    let cols: Vec<f64> = (4..8).map(|c| info[c].position.unwrap()[1]).collect();
    assert!(cols.windows(2).all(|p| p[0] < p[1]), "{cols:?}");
    assert!(HaarBasis::new(Shape::new(1, 8, 8), Some(4)).is_err());
    assert!(HaarBasis::new(Shape::new(1, 8, 8), Some(0)).is_err());
}

#[test]
fn pca_sorts_by_decreasing_variance() {
    let shape = Shape::new(1, 3, 3);
    // anisotropic data: site j has std (j + 1)
    let n = 4000;
    let mut data = gaussian_vec(n * 9, 21);
    for s in data.chunks_exact_mut(9) {
        for (j, v) in s.iter_mut().enumerate() {
            *v *= (j + 1) as f64;
        }
    }
    let ds = Dataset::new(shape, data).unwrap();
    let pca = PcaBasis::fit(&ds, &[0.0; 9]).unwrap();
    let ev = pca.eigenvalues();
    assert!(ev.windows(2).all(|w| w[0] >= w[1]), "{ev:?}");
    // variances of the components equal the eigenvalues (within sampling error of the fit set)
    let mut var = [0.0; 9];
    let mut chi = [0.0; 9];
    for s in ds.samples() {
        pca.forward(s, &mut chi);
        for j in 0..9 {
            var[j] += chi[j] * chi[j] / (n as f64 - 1.0);
        }
    }
    for j in 0..9 {
        assert!(
            (var[j] - ev[j]).abs() < 1e-8 * ev[0],
            "component {j}: {} vs {}",
            var[j],
            ev[j]
        );
    }
    // the leading eigenvalue is the largest site variance (81) to within sampling error
    let se = 81.0 * (2.0 / n as f64).sqrt();
    assert!((ev[0] - 81.0).abs() < 4.0 * se, "{}", ev[0]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn round_trip_any_shape(c in 1usize..4, h in 1usize..12, w in 1usize..12, seed in 0u64..1000) {
        let shape = Shape::new(c, h, w);
        let phi = gaussian_vec(shape.dim(), seed);
        let bases: Vec<Box<dyn Basis>> = vec![
            Box::new(FourierBasis::new(shape)),
            Box::new(HaarBasis::new(shape, None).unwrap()),
        ];
        for basis in bases {
            let mut chi = vec![0.0; shape.dim()];
            let mut back = vec![0.0; shape.dim()];
            basis.forward(&phi, &mut chi);
            basis.inverse(&chi, &mut back);
            prop_assert!(rel_err(&back, &phi) < 1e-10);
        }
    }
}
