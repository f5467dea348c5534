//! Sample metrics (SPEC section 8): radially averaged power spectra and their log-ratio, the
//! sliced Wasserstein distance, and nearest-training-neighbour distances (memorisation).
//! Lattice observables live in gud-phi4; likelihoods in the likelihood module.

use crate::basis::{Basis, FourierBasis};
use crate::error::{Error, Result};
use crate::field::{Dataset, Shape};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::Serialize;

/// Radially averaged power: bin r holds the mean of chi_k^2 over the real orthonormal Fourier
/// components with round(|n|) = r (n the integer mode), over channels and samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spectrum {
    /// |n| of each bin (the bin's mean mode radius).
    pub radius: Vec<f64>,
    /// Mean power per radial bin.
    pub power: Vec<f64>,
    /// Standard error of the mean power per bin (over samples, taken as independent).
    pub error: Vec<f64>,
}

/// The radially averaged power spectrum of a data set (fields as they are, mean included).
pub fn power_spectrum(data: &Dataset) -> Spectrum {
    let basis = FourierBasis::new(data.shape());
    let bin_of: Vec<usize> = basis
        .components()
        .iter()
        .map(|c| {
            let n = c.momentum.expect("fourier components carry momenta").n;
            (((n[0] * n[0] + n[1] * n[1]) as f64).sqrt().round()) as usize
        })
        .collect();
    let bins = bin_of.iter().max().map_or(0, |m| m + 1);
    let d = data.dim();
    // blocks of 64 samples in parallel, summed in order: the same bits for any thread count
    // (a rayon fold/reduce splits where work stealing happens to, and the last bits vary)
    let partial: Vec<Vec<f64>> = data
        .as_slice()
        .par_chunks(64 * d)
        .map(|block| {
            // per bin: the sum over samples of each sample's bin power, and of its square
            let (mut acc, mut chi, mut own) = (vec![0.0; 2 * bins], vec![0.0; d], vec![0.0; bins]);
            for phi in block.chunks_exact(d) {
                basis.forward(phi, &mut chi);
                own.fill(0.0);
                for (b, x) in bin_of.iter().zip(&chi) {
                    own[*b] += x * x;
                }
                for (b, p) in own.iter().enumerate() {
                    acc[b] += p;
                    acc[bins + b] += p * p;
                }
            }
            acc
        })
        .collect();
    let sums = partial.iter().fold(vec![0.0; 2 * bins], |a, b| {
        a.iter().zip(b).map(|(x, y)| x + y).collect()
    });
    let (power_sum, square_sum) = sums.split_at(bins);
    let mut count = vec![0usize; bins];
    let mut radius = vec![0.0; bins];
    for (c, b) in basis.components().iter().zip(&bin_of) {
        let n = c.momentum.expect("momenta").n;
        count[*b] += 1;
        radius[*b] += ((n[0] * n[0] + n[1] * n[1]) as f64).sqrt();
    }
    let keep: Vec<usize> = (0..bins).filter(|&b| count[b] > 0).collect();
    let n = data.len() as f64;
    Spectrum {
        radius: keep.iter().map(|&b| radius[b] / count[b] as f64).collect(),
        power: keep
            .iter()
            .map(|&b| power_sum[b] / (count[b] as f64 * n))
            .collect(),
        // Var of a sample's bin power over samples, / N for the mean, / count^2 per mode
        error: keep
            .iter()
            .map(|&b| {
                let mean = power_sum[b] / n;
                let var = (square_sum[b] / n - mean * mean).max(0.0) * n / (n - 1.0).max(1.0);
                (var / n).sqrt() / count[b] as f64
            })
            .collect(),
    }
}

/// The standard error of log(P_a / P_b) per bin (errors of independent spectra, to first
/// order).
pub fn log_ratio_error(a: &Spectrum, b: &Spectrum) -> Vec<f64> {
    (0..a.power.len())
        .map(|k| (a.error[k] / a.power[k]).hypot(b.error[k] / b.power[k]))
        .collect()
}

/// log(P_a / P_b) per bin (both spectra of the same shape).
pub fn log_ratio(a: &Spectrum, b: &Spectrum) -> Vec<f64> {
    a.power
        .iter()
        .zip(&b.power)
        .map(|(x, y)| (x / y).ln())
        .collect()
}

fn check_same_shape(what: &str, a: Shape, b: Shape) -> Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            what: what.into(),
            expected: format!("samples of shape {b} (as the reference)"),
            got: format!("shape {a}"),
        })
    }
}

/// sqrt(mean over `directions` random unit vectors u of W2^2(u.a, u.b)), the 1-D distances
/// taken between the quantile functions of the projected sets (seeded directions).
pub fn sliced_wasserstein(a: &Dataset, b: &Dataset, directions: usize, seed: u64) -> Result<f64> {
    check_same_shape("sliced Wasserstein distance", a.shape(), b.shape())?;
    if directions == 0 {
        return Err(Error::param("directions", directions, "at least 1"));
    }
    if a.is_empty() || b.is_empty() {
        return Err(Error::EmptyData(
            "the sliced Wasserstein distance needs samples in both sets".into(),
        ));
    }
    let d = a.dim();
    let mut rng = crate::rng::stream(seed, crate::rng::Purpose::Metrics, 0);
    let dirs: Vec<Vec<f64>> = (0..directions)
        .map(|_| {
            let v: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.iter().map(|x| x / norm).collect()
        })
        .collect();
    let project = |set: &Dataset, u: &[f64]| -> Vec<f64> {
        let mut p: Vec<f64> = set
            .samples()
            .map(|s| s.iter().zip(u).map(|(x, y)| x * y).sum())
            .collect();
        p.sort_by(f64::total_cmp);
        p
    };
    let m = a.len().max(b.len());
    // per direction in parallel, summed in order: the same bits for any thread count
    let per_direction: Vec<f64> = dirs
        .par_iter()
        .map(|u| {
            let (pa, pb) = (project(a, u), project(b, u));
            (0..m)
                .map(|j| {
                    (quantile(&pa, (j as f64 + 0.5) / m as f64)
                        - quantile(&pb, (j as f64 + 0.5) / m as f64))
                    .powi(2)
                })
                .sum::<f64>()
                / m as f64
        })
        .collect();
    let w2: f64 = per_direction.iter().sum();
    Ok((w2 / directions as f64).sqrt())
}

/// The empirical quantile function of sorted values at level q in (0, 1) (step function).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((q * sorted.len() as f64) as usize).min(sorted.len() - 1);
    sorted[i]
}

/// Distances of each sample to its nearest and second-nearest training points.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Neighbours {
    /// Index of the nearest training sample.
    pub nearest: usize,
    /// Distance to the nearest training sample.
    pub d1: f64,
    /// Distance to the second nearest.
    pub d2: f64,
}

/// Brute-force nearest neighbours of every sample in the training set (Euclidean, phi-space).
pub fn nearest_neighbours(samples: &Dataset, train: &Dataset) -> Result<Vec<Neighbours>> {
    check_same_shape(
        "nearest-neighbour distances",
        samples.shape(),
        train.shape(),
    )?;
    if train.len() < 2 {
        return Err(Error::EmptyData(
            "nearest-neighbour ratios need at least 2 training samples".into(),
        ));
    }
    Ok(samples
        .as_slice()
        .par_chunks(samples.dim())
        .map(|x| {
            let (mut best, mut d1, mut d2) = (0, f64::INFINITY, f64::INFINITY);
            for (n, y) in train.samples().enumerate() {
                let dist = x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum::<f64>();
                if dist < d1 {
                    (best, d2, d1) = (n, d1, dist);
                } else if dist < d2 {
                    d2 = dist;
                }
            }
            Neighbours {
                nearest: best,
                d1: d1.sqrt(),
                d2: d2.sqrt(),
            }
        })
        .collect())
}

/// Memorisation summary: the ratio d1 / d2 (nearest over second-nearest training distance) is
/// ~0 for a copy of a training point; a sample counts as memorised when it is below 1/3
/// (Yoon et al. 2023).
#[derive(Debug, Clone, Serialize)]
pub struct Memorisation {
    /// Mean of d1 / d2.
    pub mean_ratio: f64,
    /// Median of d1 / d2.
    pub median_ratio: f64,
    /// Fraction of samples with d1 / d2 < 1/3.
    pub memorised_fraction: f64,
    /// Median of d1 / |nearest training point| (relative distance to the copy).
    pub median_relative_distance: f64,
}

/// Nearest-neighbour ratios d1 / d2 of `samples` against `train` (Yoon et al. 2023).
pub fn memorisation(samples: &Dataset, train: &Dataset) -> Result<Memorisation> {
    let nb = nearest_neighbours(samples, train)?;
    let mut ratios: Vec<f64> = nb
        .iter()
        .map(|n| n.d1 / n.d2.max(f64::MIN_POSITIVE))
        .collect();
    let mut rel: Vec<f64> = nb
        .iter()
        .map(|n| {
            n.d1 / train
                .sample(n.nearest)
                .iter()
                .map(|x| x * x)
                .sum::<f64>()
                .sqrt()
                .max(f64::MIN_POSITIVE)
        })
        .collect();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok(Memorisation {
        mean_ratio: ratios.iter().sum::<f64>() / ratios.len() as f64,
        memorised_fraction: ratios.iter().filter(|&&r| r < 1.0 / 3.0).count() as f64
            / ratios.len() as f64,
        median_ratio: median(&mut ratios),
        median_relative_distance: median(&mut rel),
    })
}

/// Mean and covariance (unbiased) of n feature vectors of length k, (n, k) row-major.
pub fn gaussian_fit(features: &[f64], k: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = features.len().checked_div(k).unwrap_or(0);
    if n < 2 || features.len() != n * k {
        return Err(Error::EmptyData(format!(
            "a Gaussian fit of {k}-dimensional features needs at least 2 rows, got {} values",
            features.len()
        )));
    }
    let mut mu = vec![0.0; k];
    for row in features.chunks_exact(k) {
        mu.iter_mut().zip(row).for_each(|(m, x)| *m += x / n as f64);
    }
    let mut cov = vec![0.0; k * k];
    for row in features.chunks_exact(k) {
        for a in 0..k {
            let da = row[a] - mu[a];
            for b in a..k {
                cov[a * k + b] += da * (row[b] - mu[b]) / (n - 1) as f64;
            }
        }
    }
    for a in 0..k {
        for b in 0..a {
            cov[a * k + b] = cov[b * k + a];
        }
    }
    Ok((mu, cov))
}

/// Frechet distance of two Gaussians (the formula of FID, on any features):
/// `|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2)`; covariances k x k row-major.
pub fn frechet_distance(mu1: &[f64], cov1: &[f64], mu2: &[f64], cov2: &[f64]) -> f64 {
    use nalgebra::DMatrix;
    let k = mu1.len();
    let c1 = DMatrix::from_row_slice(k, k, cov1);
    let c2 = DMatrix::from_row_slice(k, k, cov2);
    let sqrt_psd = |m: DMatrix<f64>| {
        let e = m.symmetric_eigen();
        let s = e.eigenvalues.map(|v| v.max(0.0).sqrt());
        &e.eigenvectors * DMatrix::from_diagonal(&s) * e.eigenvectors.transpose()
    };
    let r1 = sqrt_psd(c1.clone());
    let inner = &r1 * &c2 * &r1;
    let inner = (&inner + inner.transpose()) * 0.5;
    let cross: f64 = inner
        .symmetric_eigen()
        .eigenvalues
        .iter()
        .map(|v| v.max(0.0).sqrt())
        .sum();
    let dmu: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b).powi(2)).sum();
    dmu + c1.trace() + c2.trace() - 2.0 * cross
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::free_field::{free_field_samples, free_propagator};
    use crate::numerics::k_hat_sq;

    #[test]
    fn spectrum_and_sliced_wasserstein_are_bit_identical_for_any_thread_count() {
        // regression: a parallel fold/reduce summed in a work-stealing order, and `gud run`'s
        // spectra differed in the last bits between runs
        let data = crate::free_field::free_field_samples(4, 0.5, 1000, 3).unwrap();
        let with = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| power_spectrum(&data).power)
        };
        let one = with(1);
        for threads in [2, 3, 7] {
            assert_eq!(with(threads), one, "{threads} threads");
        }
        let other = crate::free_field::free_field_samples(4, 0.7, 500, 4).unwrap();
        let sw = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| sliced_wasserstein(&data, &other, 64, 1).unwrap())
        };
        let one = sw(1);
        for threads in [2, 3, 7] {
            assert_eq!(sw(threads).to_bits(), one.to_bits(), "{threads} threads");
        }
    }

    #[test]
    fn spectrum_errors_of_white_noise_match_the_chi_square_law() {
        // N(0, 1) sites: every mode of the orthonormal basis is N(0, 1), a bin of c modes has a
        // per-sample power with variance 2 c, so the mean power per mode has the standard error
        // sqrt(2 / (N c)). The estimated standard deviation of a chi^2_c variable has the relative
        // error sqrt((2 + 12 / c) / N) / 2 (its kurtosis is 3 + 12 / c): 4 of those
        use rand_distr::{Distribution, StandardNormal};
        let (l, n) = (8, 4000);
        let mut rng = crate::rng::stream(9, crate::rng::Purpose::Metrics, 0);
        let values: Vec<f64> = (0..n * l * l)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let data = Dataset::new(Shape::lattice(l), values).unwrap();
        let s = power_spectrum(&data);
        let basis = FourierBasis::new(Shape::lattice(l));
        for (b, r) in s.radius.iter().enumerate() {
            let count = basis
                .components()
                .iter()
                .filter_map(|c| c.momentum)
                .filter(|m| {
                    (((m.n[0] * m.n[0] + m.n[1] * m.n[1]) as f64).sqrt().round() - r.round()).abs()
                        < 0.5
                })
                .count() as f64;
            let want = (2.0 / (n as f64 * count)).sqrt();
            let tol = 4.0 * want * ((2.0 + 12.0 / count) / n as f64).sqrt() / 2.0;
            assert!(
                (s.error[b] - want).abs() < tol,
                "bin {b}: {} vs {want}",
                s.error[b]
            );
        }
    }

    #[test]
    fn spectrum_of_the_free_field_is_its_propagator() {
        // bins average G(k) over their modes; 8000 samples: 4 sigma of sqrt(2 / (N modes))
        let (l, m2, n) = (8, 0.3, 8000);
        let data = free_field_samples(l, m2, n, 2).unwrap();
        let s = power_spectrum(&data);
        let basis = FourierBasis::new(Shape::lattice(l));
        for (b, r) in s.radius.iter().enumerate() {
            let modes: Vec<f64> = basis
                .components()
                .iter()
                .filter_map(|c| c.momentum)
                .filter(|m| {
                    (((m.n[0] * m.n[0] + m.n[1] * m.n[1]) as f64).sqrt().round() - r.round()).abs()
                        < 0.5
                })
                .map(|m| free_propagator(k_hat_sq(m.k[0], m.k[1]), m2))
                .collect();
            let exact = modes.iter().sum::<f64>() / modes.len() as f64;
            let se = exact * (2.0 / (n * modes.len()) as f64).sqrt();
            assert!(
                (s.power[b] - exact).abs() < 4.0 * se.max(exact * 1e-3),
                "bin {b}: {} vs {exact}",
                s.power[b]
            );
        }
        assert!(log_ratio(&s, &s).iter().all(|x| *x == 0.0));
    }

    #[test]
    fn sliced_wasserstein_is_zero_for_equal_sets_and_sees_a_shift() {
        let a = free_field_samples(4, 0.5, 2000, 3).unwrap();
        let b = free_field_samples(4, 0.5, 2000, 4).unwrap();
        assert_eq!(sliced_wasserstein(&a, &a, 32, 0).unwrap(), 0.0);
        let same = sliced_wasserstein(&a, &b, 64, 0).unwrap();
        // shift every site by 0.3: a projection on u moves by 0.3 sum(u), E[(sum u)^2] = 1
        let shifted =
            Dataset::new(b.shape(), b.as_slice().iter().map(|x| x + 0.3).collect()).unwrap();
        let moved = sliced_wasserstein(&a, &shifted, 64, 0).unwrap();
        assert!(same < 0.1, "independent samples of one law: {same}");
        assert!((moved - 0.3).abs() < 0.1, "shift 0.3 seen as {moved}");
        assert!(sliced_wasserstein(&a, &free_field_samples(3, 0.5, 10, 0).unwrap(), 4, 0).is_err());
    }

    #[test]
    fn copies_of_training_points_are_memorised_and_fresh_samples_are_not() {
        let train = free_field_samples(4, 0.5, 200, 5).unwrap();
        let copies = Dataset::new(train.shape(), train.as_slice()[..16 * 20].to_vec()).unwrap();
        let m = memorisation(&copies, &train).unwrap();
        assert_eq!((m.memorised_fraction, m.mean_ratio), (1.0, 0.0));
        let fresh = free_field_samples(4, 0.5, 100, 6).unwrap();
        let m = memorisation(&fresh, &train).unwrap();
        assert!(m.memorised_fraction < 0.05 && m.mean_ratio > 0.7, "{m:?}");
        let nb = nearest_neighbours(&copies, &train).unwrap();
        assert!(nb
            .iter()
            .enumerate()
            .all(|(i, n)| n.nearest == i && n.d1 == 0.0));
    }
}

#[cfg(test)]
mod frechet_tests {
    use super::*;

    #[test]
    fn frechet_distance_has_its_closed_forms() {
        // identical Gaussians: 0; diagonal covariances: |dmu|^2 + sum (sqrt a - sqrt b)^2
        let c = [2.0, 0.5, 0.5, 1.0];
        assert!(frechet_distance(&[1.0, 2.0], &c, &[1.0, 2.0], &c).abs() < 1e-12);
        let d = frechet_distance(
            &[0.0, 0.0],
            &[4.0, 0.0, 0.0, 1.0],
            &[1.0, 0.0],
            &[1.0, 0.0, 0.0, 9.0],
        );
        assert!((d - (1.0 + 1.0 + 4.0)).abs() < 1e-12, "{d}");
        // a rotation of a covariance: C2 = R C1 R^T with C1 = diag(4, 1), 90 degrees -> diag(1, 4)
        let rot = frechet_distance(
            &[0.0; 2],
            &[4.0, 0.0, 0.0, 1.0],
            &[0.0; 2],
            &[1.0, 0.0, 0.0, 4.0],
        );
        assert!((rot - 2.0).abs() < 1e-12, "{rot}");
        // non-commuting 2 x 2: tr((C1^1/2 C2 C1^1/2)^1/2) = sqrt(tr(C1 C2) + 2 sqrt(det C1 C2))
        let (c1, c2) = ([2.0, 1.0, 1.0, 2.0], [1.0, 0.0, 0.0, 3.0]);
        let tr12: f64 = 2.0 * 1.0 + 2.0 * 3.0;
        let det: f64 = (4.0 - 1.0) * 3.0;
        let want = 4.0 + 4.0 - 2.0 * (tr12 + 2.0 * det.sqrt()).sqrt();
        let got = frechet_distance(&[0.0; 2], &c1, &[0.0; 2], &c2);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn gaussian_fit_recovers_moments() {
        let x = [1.0, 2.0, 3.0, 6.0, 5.0, 10.0];
        let (mu, cov) = gaussian_fit(&x, 2).unwrap();
        assert_eq!(mu, vec![3.0, 6.0]);
        assert_eq!(cov, vec![4.0, 8.0, 8.0, 16.0]);
        assert!(gaussian_fit(&x[..2], 2).is_err());
    }
}
