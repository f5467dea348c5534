use super::*;
use crate::config::{DesignConfig, MeanMode, PosteriorVariance, PriorConfig, TimeGrid};
use crate::design::Design;
use crate::free_field::free_field_samples;
use crate::numerics::mean_var;
use crate::process::NoisingState;
use crate::score::{EmpiricalScore, GaussianScore, ScoreModel};
use crate::testutil::gaussian_vec;
use std::f64::consts::PI;

/// Free-field design (L = 4, d = 16) with the white prior, so that Sigma_i varies over
/// components, and n test points drawn from the Gaussian N(0, Sigma) in whitened space.
fn gaussian_setup(n: usize) -> (Design, Vec<f64>) {
    let data = free_field_samples(4, 0.5, 4000, 1).unwrap();
    let config = DesignConfig {
        mean: MeanMode::Zero,
        prior: PriorConfig::White {},
        ..DesignConfig::default()
    };
    let design = Design::fit(&config, &data).unwrap();
    let d = design.dim();
    let z = gaussian_vec(n * d, 7);
    let chi0 = z
        .chunks_exact(d)
        .flat_map(|r| r.iter().zip(design.sigma_data()).map(|(x, s)| x * s.sqrt()))
        .collect();
    (design, chi0)
}

/// V_i(t) = alpha_i^2 Sigma_i + sigma_i^2, the marginal variance of Gaussian data.
fn marginal_variance(design: &Design, t: f64) -> Vec<f64> {
    let st = design.state(t);
    (0..design.dim())
        .map(|i| st.marginal_variance(i, design.sigma_data()))
        .collect()
}

fn log_normal(x: f64, var: f64) -> f64 {
    -0.5 * (x * x / var + (2.0 * PI * var).ln())
}

/// The Gaussian score with the default (finite-difference) Jacobian.
struct FiniteDifference(GaussianScore);

impl ScoreModel for FiniteDifference {
    fn name(&self) -> &'static str {
        "gaussian-fd"
    }
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn eps_hat(&self, chi_t: &[f64], s: &NoisingState, a: Option<&[usize]>, out: &mut [f64]) {
        self.0.eps_hat(chi_t, s, a, out)
    }
}

#[test]
fn ode_likelihood_of_the_gaussian_score_is_the_closed_form() {
    // The flow of the Gaussian score is linear, chi_1 = chi0 sqrt(V1 / V0), so the model density
    // from the N(0, I) prior is exactly N(chi0; 0, V0 / V1) per component.
    let (design, chi0) = gaussian_setup(8);
    let d = design.dim();
    let (t_min, t_max) = design.schedule().t_range();
    let (v0, v1) = (
        marginal_variance(&design, t_min),
        marginal_variance(&design, t_max),
    );
    let closed: Vec<f64> = chi0
        .chunks_exact(d)
        .map(|x| (0..d).map(|i| log_normal(x[i], v0[i] / v1[i])).sum())
        .collect();
    let analytic = GaussianScore::new(design.sigma_data().to_vec());
    let fd = FiniteDifference(analytic.clone());
    let mut opts = OdeOptions::new(d);
    assert_eq!(opts.divergence, Divergence::Exact);
    opts.rtol = 1e-7;
    opts.atol = 1e-7;
    let models: [&dyn ScoreModel; 2] = [&analytic, &fd];
    for score in models {
        let r = ode_log_likelihood(score, design.schedule(), &chi0, 0, &opts).unwrap();
        for (got, want) in r.log_p.iter().zip(&closed) {
            let err = (got - want).abs() / d as f64;
            assert!(
                err < 1e-5,
                "{}: {got} vs {want} ({err:e} nats/dim)",
                score.name()
            );
        }
    }
    // the Jacobian is diagonal, so a Rademacher probe gives the trace exactly
    opts.divergence = Divergence::Hutchinson;
    let r = ode_log_likelihood(&analytic, design.schedule(), &chi0, 0, &opts).unwrap();
    for (got, want) in r.log_p.iter().zip(&closed) {
        assert!((got - want).abs() / (d as f64) < 1e-5);
    }
}

/// Mean and standard error over samples of -ELBO minus its expectation for exact Gaussian
/// kernels: -log N(chi0; 0, Sigma) + E_{chi_1 | chi0}[log N(chi_1; 0, V1) - log N(chi_1; 0, I)].
fn elbo_excess(design: &Design, chi0: &[f64], opts: &ElboOptions) -> (f64, f64) {
    let d = design.dim();
    let score = GaussianScore::new(design.sigma_data().to_vec());
    let terms = negative_elbo(
        &score,
        design.schedule(),
        design.sigma_data(),
        chi0,
        0,
        opts,
    )
    .unwrap();
    let st1 = design.state(design.schedule().t_range().1);
    let v1 = marginal_variance(design, st1.t());
    let excess: Vec<f64> = chi0
        .chunks_exact(d)
        .zip(&terms)
        .map(|(x, term)| {
            let expected: f64 = (0..d)
                .map(|i| {
                    let m2 = st1.alpha_sq()[i] * x[i] * x[i] + st1.sigma_sq()[i];
                    let prior_mismatch = 0.5 * (-v1[i].ln() - m2 / v1[i] + m2);
                    -log_normal(x[i], design.sigma_data()[i]) + prior_mismatch
                })
                .sum();
            term.total() - expected
        })
        .collect();
    let (m, v) = mean_var(&excess);
    (m / d as f64, (v / excess.len() as f64).sqrt() / d as f64)
}

#[test]
fn elbo_with_exact_gaussian_kernels_equals_the_nll_at_any_step_count() {
    // With the Gaussian posterior variance every reverse kernel and the decoder are the exact
    // conditionals of Gaussian data, so E[-ELBO] = NLL + the prior's mismatch, even for T = 1.
    let (design, chi0) = gaussian_setup(3000);
    for steps in [1, 4, 32] {
        let opts = ElboOptions {
            steps,
            grid: TimeGrid::UniformT,
            posterior_variance: PosteriorVariance::Gaussian,
            seed: 3,
        };
        let (m, se) = elbo_excess(&design, &chi0, &opts);
        assert!(
            m.abs() < 4.0 * se,
            "T = {steps}: excess {m:e} +- {se:e} nats/dim"
        );
    }
}

#[test]
fn elbo_without_posterior_variance_bounds_the_nll_and_converges() {
    let (design, chi0) = gaussian_setup(3000);
    // the gap to the exact NLL is positive and falls like 1 / T
    let mut last = f64::INFINITY;
    for steps in [2, 8, 32, 128, 512] {
        let opts = ElboOptions {
            steps,
            grid: TimeGrid::UniformT,
            posterior_variance: PosteriorVariance::None,
            seed: 4,
        };
        let (m, se) = elbo_excess(&design, &chi0, &opts);
        assert!(
            m > -4.0 * se,
            "T = {steps}: -ELBO below the NLL: {m:e} +- {se:e}"
        );
        assert!(
            m < last + 4.0 * se,
            "T = {steps}: gap {m:e} grew from {last:e}"
        );
        if steps == 512 {
            // first order in 1 / T: quadrupling T divides the gap by 4 (measured 0.35 -> 0.085)
            let ratio = m / last;
            assert!(
                (0.15..0.35).contains(&ratio),
                "gap ratio 128 -> 512: {ratio}"
            );
            assert!(m < 0.15, "gap at T = 512: {m:e} nats/dim");
        }
        last = m;
    }
}

#[test]
fn hutchinson_is_unbiased_for_a_full_jacobian() {
    // The empirical score couples all components through its softmax weights.
    let d = 6;
    let train = gaussian_vec(5 * d, 11);
    let score = EmpiricalScore::new(d, train).unwrap();
    let state = NoisingState::new(0.5, vec![-0.5, 0.0, 0.3, -1.0, 0.8, 0.1], vec![1.0; d]);
    let chi = gaussian_vec(d, 12);
    let w: Vec<f64> = (0..d).map(|i| 1.0 + 0.3 * i as f64).collect();
    // exact: sum_i w_i J_ii from the d probes e_i
    let mut exact = 0.0;
    for i in 0..d {
        let (mut u, mut v) = (vec![0.0; d], vec![0.0; d]);
        u[i] = w[i];
        v[i] = 1.0;
        let (mut e, mut q) = (vec![0.0; d], vec![0.0; 1]);
        score.jacobian_form(&chi, &state, &u, &v, &mut e, &mut q);
        exact += q[0];
    }
    let k = 4000;
    let signs = gaussian_vec(k * d, 5);
    let v: Vec<f64> = signs.iter().map(|z| z.signum()).collect();
    let x: Vec<f64> = (0..k).flat_map(|_| chi.iter().copied()).collect();
    let u: Vec<f64> = v
        .chunks_exact(d)
        .flat_map(|p| p.iter().zip(&w).map(|(a, b)| a * b))
        .collect();
    let (mut e, mut q) = (vec![0.0; k * d], vec![0.0; k]);
    score.jacobian_form(&x, &state, &u, &v, &mut e, &mut q);
    let (m, var) = mean_var(&q);
    let se = (var / k as f64).sqrt();
    assert!(
        se > 0.0,
        "the Jacobian must be non-diagonal for this test to mean anything"
    );
    assert!(
        (m - exact).abs() < 4.0 * se,
        "{m} vs exact {exact} (se {se})"
    );
}

/// gamma_i(t) = -3 + i/4 + 6 t: a mild schedule on which the empirical score's flow is not stiff.
#[derive(Debug)]
struct Ramp(usize);

impl crate::schedule::Schedule for Ramp {
    fn name(&self) -> &'static str {
        "ramp"
    }
    fn dim(&self) -> usize {
        self.0
    }
    fn gamma(&self, t: f64, out: &mut [f64]) {
        for (i, g) in out.iter_mut().enumerate() {
            *g = -3.0 + 0.25 * i as f64 + 6.0 * t;
        }
    }
    fn dgamma_dt(&self, _t: f64, out: &mut [f64]) {
        out.fill(6.0);
    }
}

#[test]
fn ode_hutchinson_agrees_with_the_exact_divergence_within_its_error() {
    let d = 6;
    let score = EmpiricalScore::new(d, gaussian_vec(8 * d, 21)).unwrap();
    let chi0 = gaussian_vec(2 * d, 22);
    let mut opts = OdeOptions::new(d);
    opts.rtol = 1e-6;
    opts.atol = 1e-6;
    let exact = ode_log_likelihood(&score, &Ramp(d), &chi0, 0, &opts).unwrap();
    opts.divergence = Divergence::Hutchinson;
    opts.probes = 64;
    let hutch = ode_log_likelihood(&score, &Ramp(d), &chi0, 0, &opts).unwrap();
    let se = hutch.probe_se.as_ref().unwrap();
    for b in 0..2 {
        assert!(se[b] > 0.0);
        let diff = hutch.log_p[b] - exact.log_p[b];
        assert!(diff.abs() < 4.0 * se[b], "row {b}: {diff} vs se {}", se[b]);
    }
}

#[test]
fn bits_per_dim_adds_the_dequantisation_offset() {
    let q = crate::field::Quantization::eight_bit_symmetric();
    assert!((bits_per_dim(0.0, 10, Some(&q)) - 7.0).abs() < 1e-12);
    assert!((bits_per_dim(10.0 * std::f64::consts::LN_2, 10, None) - 1.0).abs() < 1e-12);
    assert!((whitening_log_det(&[2.0, 0.5, 3.0]) + 3f64.ln()).abs() < 1e-12);
}
