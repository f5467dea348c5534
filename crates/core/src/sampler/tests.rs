use super::*;
use crate::config::{DesignConfig, MeanMode, PriorConfig};
use crate::design::Design;
use crate::field::Dataset;
use crate::free_field::{free_field_samples, free_propagator};
use crate::score::GaussianScore;

const M2: f64 = 0.5;
const N_TRAIN: usize = 20000;

/// Free-field data (L = 4) and the default design (fourier, free prior, RG schedule), mean 0.
fn free_design() -> (Design, Dataset) {
    design_with(PriorConfig::Free {
        amplitude: None,
        m2: None,
    })
}

/// The same with another prior (`white` makes Sigma_k vary, so that the ODE is not trivial).
fn design_with(prior: PriorConfig) -> (Design, Dataset) {
    let data = free_field_samples(4, M2, N_TRAIN, 1).unwrap();
    let config = DesignConfig {
        mean: MeanMode::Zero,
        prior,
        ..DesignConfig::default()
    };
    (Design::fit(&config, &data).unwrap(), data)
}

fn sampler_config(kind: SamplerKind, steps: usize) -> SamplerConfig {
    SamplerConfig {
        kind,
        steps,
        ..SamplerConfig::default()
    }
}

fn run(
    design: &Design,
    score: &dyn ScoreModel,
    config: &SamplerConfig,
    n: usize,
    seed: u64,
) -> (Vec<f64>, SampleReport) {
    let projection = Projection::from_config(&config.projection).unwrap();
    let plan = Plan::new(
        design.schedule(),
        design.sigma_data(),
        config.steps,
        config.grid,
        projection,
    )
    .unwrap();
    generate(&plan, score, config, seed, 0, n, &mut |_| {}).unwrap()
}

/// Var(chi_tilde_k) of generated samples over the exact propagator 1 / (2 (|k_hat|^2 + m2)),
/// per component, and the relative standard error of that ratio (generated and training sets).
fn propagator_ratios(design: &Design, chi0: &[f64], n: usize) -> (Vec<f64>, f64) {
    let d = design.dim();
    let mut var = vec![0.0; d];
    for x in chi0.chunks_exact(d) {
        for i in 0..d {
            var[i] += (x[i] * design.scale()[i]).powi(2) / n as f64;
        }
    }
    let ratios = design
        .basis()
        .components()
        .iter()
        .zip(&var)
        .map(|(c, v)| v / free_propagator(c.momentum.unwrap().k_hat_sq, M2))
        .collect();
    (ratios, (2.0 / n as f64 + 2.0 / N_TRAIN as f64).sqrt())
}

fn max_z(design: &Design, chi0: &[f64], n: usize) -> f64 {
    let (r, se) = propagator_ratios(design, chi0, n);
    r.iter().map(|x| ((x - 1.0) / se).abs()).fold(0.0, f64::max)
}

/// Mean over components of Var(generated chi_i) / Sigma_i - 1: the sampler's own bias (the
/// design's Sigma is what a Gaussian-score sampler targets).
fn variance_bias(design: &Design, chi0: &[f64]) -> f64 {
    let d = design.dim();
    let n = chi0.len() / d;
    let mut var = vec![0.0; d];
    for x in chi0.chunks_exact(d) {
        for i in 0..d {
            var[i] += x[i] * x[i] / n as f64;
        }
    }
    var.iter()
        .zip(design.sigma_data())
        .map(|(v, s)| v / s - 1.0)
        .sum::<f64>()
        / d as f64
}

#[test]
fn every_sampler_reproduces_the_free_propagator() {
    // free field (lam = 0) with the exact Gaussian score: within 4 sigma per momentum
    let n = 4000;
    for prior in [
        PriorConfig::Free {
            amplitude: None,
            m2: None,
        },
        PriorConfig::White {},
    ] {
        let (design, _) = design_with(prior.clone());
        let score = GaussianScore::new(design.sigma_data().to_vec());
        for (kind, steps) in [
            (SamplerKind::Ancestral, 20),
            (SamplerKind::Ode, 40),
            (SamplerKind::Sde, 400),
        ] {
            let (chi0, rep) = run(&design, &score, &sampler_config(kind, steps), n, 3);
            let z = max_z(&design, &chi0, n);
            assert!(
                z < 4.0,
                "{prior:?} {kind:?} at {steps} points: max |z| = {z:.2}"
            );
            assert_eq!(
                rep.nfe,
                if kind == SamplerKind::Ode {
                    2 * steps - 1
                } else {
                    steps
                }
            );
        }
    }
}

#[test]
fn ancestral_with_the_gaussian_posterior_variance_is_exact_at_any_step_count() {
    let (design, _) = design_with(PriorConfig::White {});
    let score = GaussianScore::new(design.sigma_data().to_vec());
    let n = 4000;
    for steps in [1, 2, 5] {
        let exact = sampler_config(SamplerKind::Ancestral, steps);
        let (chi0, _) = run(&design, &score, &exact, n, 4);
        let z = max_z(&design, &chi0, n);
        assert!(
            z < 4.0,
            "gaussian posterior variance at {steps} steps: max |z| = {z:.2}"
        );
        // the DDPM choice v_t = 0 is visibly under-dispersed at the same steps
        let ddpm = SamplerConfig {
            posterior_variance: PosteriorVariance::None,
            ..exact
        };
        let (chi0, _) = run(&design, &score, &ddpm, n, 4);
        let (r, se) = propagator_ratios(&design, &chi0, n);
        let mean = r.iter().sum::<f64>() / r.len() as f64;
        assert!(
            mean < 1.0 - 5.0 * se,
            "none at {steps} steps: mean variance ratio {mean:.3}"
        );
    }
}

#[test]
fn ode_is_second_order() {
    // deterministic: the same prior draws, the error against a fine solution falls ~4x per halving
    let (design, _) = design_with(PriorConfig::White {});
    let score = GaussianScore::new(design.sigma_data().to_vec());
    let reference = run(
        &design,
        &score,
        &sampler_config(SamplerKind::Ode, 1600),
        64,
        5,
    )
    .0;
    let err = |k: usize| {
        let x = run(&design, &score, &sampler_config(SamplerKind::Ode, k), 64, 5).0;
        (x.iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            / x.len() as f64)
            .sqrt()
    };
    let e: Vec<f64> = [16, 32, 64].iter().map(|&k| err(k)).collect();
    for w in e.windows(2) {
        let ratio = w[0] / w[1];
        assert!(
            (3.0..6.0).contains(&ratio),
            "errors {e:?}: ratio {ratio:.2}, expected ~4"
        );
    }
}

#[test]
fn sde_is_first_order_in_the_variance() {
    // weak error of Var(chi): 20000 samples give a standard error ~0.003 on errors 0.04-0.15
    let (design, _) = design_with(PriorConfig::White {});
    let score = GaussianScore::new(design.sigma_data().to_vec());
    let e: Vec<f64> = [20, 40, 80]
        .iter()
        .map(|&k| {
            variance_bias(
                &design,
                &run(
                    &design,
                    &score,
                    &sampler_config(SamplerKind::Sde, k),
                    20000,
                    6,
                )
                .0,
            )
        })
        .collect();
    for w in e.windows(2) {
        let ratio = w[0] / w[1];
        assert!(
            (1.4..2.8).contains(&ratio),
            "variance errors {e:?}: ratio {ratio:.2}, expected ~2"
        );
    }
}

#[test]
fn rg_projection_saves_evaluations_without_changing_results() {
    let n = 4000;
    for prior in [
        PriorConfig::Free {
            amplitude: None,
            m2: None,
        },
        PriorConfig::White {},
    ] {
        let (design, _) = design_with(prior.clone());
        let score = GaussianScore::new(design.sigma_data().to_vec());
        for (kind, steps) in [(SamplerKind::Ancestral, 20), (SamplerKind::Ode, 40)] {
            let mut config = sampler_config(kind, steps);
            config.projection.enabled = true;
            let (chi0, rep) = run(&design, &score, &config, n, 7);
            let z = max_z(&design, &chi0, n);
            assert!(
                z < 4.0,
                "{prior:?} {kind:?} with projection: max |z| = {z:.2}"
            );
            assert!(rep.component_evals < rep.component_evals_full, "{rep:?}");
            assert!(
                rep.saved_fraction() > 0.1,
                "{prior:?} {kind:?}: saved {:.3}",
                rep.saved_fraction()
            );
        }
    }
}

#[test]
fn any_sample_regenerates_alone() {
    let (design, _) = design_with(PriorConfig::White {});
    let score = GaussianScore::new(design.sigma_data().to_vec());
    let d = design.dim();
    for kind in [SamplerKind::Ancestral, SamplerKind::Sde, SamplerKind::Ode] {
        let config = SamplerConfig {
            batch: 3,
            ..sampler_config(kind, 6)
        };
        let plan = Plan::new(
            design.schedule(),
            design.sigma_data(),
            6,
            TimeGrid::UniformT,
            None,
        )
        .unwrap();
        let (all, _) = generate(&plan, &score, &config, 9, 0, 8, &mut |_| {}).unwrap();
        let (one, _) = generate(&plan, &score, &config, 9, 5, 1, &mut |_| {}).unwrap();
        assert_eq!(one, all[5 * d..6 * d], "{kind:?}");
        let (other_seed, _) = generate(&plan, &score, &config, 10, 5, 1, &mut |_| {}).unwrap();
        assert_ne!(one, other_seed);
    }
}

#[test]
fn grids_run_from_t_max_to_t_min() {
    let (design, _) = free_design();
    for grid in [TimeGrid::UniformT, TimeGrid::UniformGamma] {
        let t = time_grid(design.schedule(), 7, grid).unwrap();
        assert_eq!((t[0], t[6]), (1.0, 0.0));
        assert!(t.windows(2).all(|w| w[1] < w[0]), "{t:?}");
    }
    // uniform in mean gamma on a schedule where gamma is not linear in t (cosine)
    let sched = crate::schedule::CosineSchedule::new(3, 0.008).unwrap();
    let t = time_grid(&sched, 5, TimeGrid::UniformGamma).unwrap();
    let g: Vec<f64> = t
        .iter()
        .map(|&t| NoisingState::at(&sched, t).mean_gamma())
        .collect();
    let steps: Vec<f64> = g.windows(2).map(|w| w[0] - w[1]).collect();
    for s in &steps {
        assert!((s - steps[0]).abs() < 1e-6 * steps[0].abs(), "{g:?}");
    }
    assert!(time_grid(&sched, 0, TimeGrid::UniformT).is_err());
}
