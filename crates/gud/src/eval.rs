//! Generated samples against a reference set (SPEC section 8): power spectra and their
//! log-ratio, the sliced Wasserstein distance with its noise floor, memorisation, every phi^4
//! observable of SPEC section 7 with z-scores, and the classifier Frechet distance.

use crate::error::{bail, Context, Result};
use gud_core::metrics::{
    log_ratio, memorisation, power_spectrum, sliced_wasserstein, Memorisation, Spectrum,
};
use gud_core::Dataset;
use gud_phi4::observables::{compare, measure, z_score, Comparison};
use gud_phi4::stats::Estimate;
use gud_phi4::Couplings;
use serde::Serialize;

/// Everything an evaluation reports.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Generated samples.
    pub samples: usize,
    /// Reference samples.
    pub reference: usize,
    /// The shape [C, H, W] of one sample.
    pub shape: [usize; 3],
    /// |n| of each radial bin of the power spectrum.
    pub spectrum_radius: Vec<f64>,
    /// Radially averaged power of the samples.
    pub spectrum_samples: Vec<f64>,
    /// Its standard error per bin.
    pub spectrum_samples_error: Vec<f64>,
    /// Radially averaged power of the reference.
    pub spectrum_reference: Vec<f64>,
    /// Its standard error per bin.
    pub spectrum_reference_error: Vec<f64>,
    /// log(P_samples / P_reference) per bin (natural log).
    pub spectrum_log_ratio: Vec<f64>,
    /// Its standard error per bin.
    pub spectrum_log_ratio_error: Vec<f64>,
    /// The largest |log ratio|.
    pub max_abs_log_ratio: f64,
    /// Sliced Wasserstein distance of samples and reference.
    pub sliced_wasserstein: f64,
    /// The same distance between the two halves of the reference: the noise floor.
    pub sliced_wasserstein_floor: f64,
    /// Nearest-neighbour ratios against the training set.
    pub memorisation: Memorisation,
    /// Every phi^4 observable (lattice data with couplings).
    pub phi4: Option<Phi4Report>,
    /// Frechet distance of the classifier's features (with a classifier).
    pub classifier_frechet: Option<f64>,
}

/// The phi^4 observables of samples and reference (SPEC section 7).
#[derive(Debug, Clone, Serialize)]
pub struct Phi4Report {
    /// m^2 of the action.
    pub m2: f64,
    /// lambda of the action.
    pub lam: f64,
    /// Each observable of both sets with the z-score of their difference.
    pub observables: Vec<Comparison>,
    /// `<M>` of the samples against 0 (Z2 symmetry).
    pub magnetisation: Estimate,
    /// z of `<M>` against 0.
    pub magnetisation_z: f64,
    /// sum z^2 / number of observables, over the independent ones (chi_2pt = V <M^2> is not).
    pub chi2_per_observable: f64,
    /// The largest |z| of the independent observables.
    pub max_abs_z: f64,
}

/// Frechet distance between the features of the classifier at `path` of two image sets
/// (with the registered [`crate::network::Network`]).
pub fn classifier_frechet(
    path: &std::path::Path,
    gen: &Dataset,
    reference: &Dataset,
) -> Result<f64> {
    crate::network::get("the classifier Frechet distance")?.classifier_frechet(path, gen, reference)
}

/// All metrics of `gen` against `reference` (memorisation against `train`); `phi4` couplings
/// (m2, lam) add the lattice observables.
pub fn evaluate(
    gen: &Dataset,
    reference: &Dataset,
    train: &Dataset,
    directions: usize,
    seed: u64,
    phi4: Option<(f64, f64)>,
) -> Result<EvalReport> {
    let (sg, sr): (Spectrum, Spectrum) = (power_spectrum(gen), power_spectrum(reference));
    let ratio = log_ratio(&sg, &sr);
    let ratio_error = gud_core::metrics::log_ratio_error(&sg, &sr);
    let half = reference.len() / 2;
    let d = reference.dim();
    let floor = if half >= 1 {
        let first = Dataset::new(reference.shape(), reference.as_slice()[..half * d].to_vec())?;
        let second = Dataset::new(reference.shape(), reference.as_slice()[half * d..].to_vec())?;
        sliced_wasserstein(&first, &second, directions, seed)?
    } else {
        f64::NAN
    };
    let phi4 = match phi4 {
        Some((m2, lam)) => Some(phi4_report(gen, reference, m2, lam)?),
        None => None,
    };
    Ok(EvalReport {
        samples: gen.len(),
        reference: reference.len(),
        shape: {
            let s = gen.shape();
            [s.c, s.h, s.w]
        },
        max_abs_log_ratio: ratio.iter().fold(0.0, |m, r| m.max(r.abs())),
        spectrum_radius: sg.radius.clone(),
        spectrum_samples: sg.power,
        spectrum_samples_error: sg.error,
        spectrum_reference: sr.power,
        spectrum_reference_error: sr.error,
        spectrum_log_ratio: ratio,
        spectrum_log_ratio_error: ratio_error,
        sliced_wasserstein: sliced_wasserstein(gen, reference, directions, seed)?,
        sliced_wasserstein_floor: floor,
        memorisation: memorisation(gen, train)?,
        phi4,
        classifier_frechet: None,
    })
}

fn phi4_report(gen: &Dataset, reference: &Dataset, m2: f64, lam: f64) -> Result<Phi4Report> {
    let s = gen.shape();
    if s.c != 1 || s.h != s.w {
        bail!(
            "phi^4 observables need lattice configurations (N, L, L); the samples have shape {s}"
        );
    }
    let c = Couplings::new(m2, lam)?;
    let og = measure(gen.as_slice(), s.h, Some(c)).context("measuring the samples")?;
    let or = measure(reference.as_slice(), s.h, Some(c)).context("measuring the reference")?;
    let observables = compare(&og, &or);
    let zero = Estimate {
        value: 0.0,
        error: 0.0,
    };
    let (chi2, max_abs_z) = gud_phi4::observables::chi2_and_max_z(&observables);
    Ok(Phi4Report {
        m2,
        lam,
        max_abs_z,
        chi2_per_observable: chi2,
        magnetisation: og.m,
        magnetisation_z: z_score(og.m, zero),
        observables,
    })
}
