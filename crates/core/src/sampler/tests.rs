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

fn exp_config(steps: usize, order: usize) -> SamplerConfig {
    SamplerConfig {
        order,
        ..sampler_config(SamplerKind::Exp, steps)
    }
}

/// The prior draws of samples 0..n of `seed`, as `generate` makes them.
fn prior_draws(d: usize, n: usize, seed: u64) -> Vec<f64> {
    (0..n as u64)
        .flat_map(|k| {
            let mut rng = sample_rng(seed, k);
            (0..d)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect::<Vec<f64>>()
        })
        .collect()
}

fn rms_diff(a: &[f64], b: &[f64]) -> f64 {
    (a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / a.len() as f64).sqrt()
}

fn run(
    design: &Design,
    score: &dyn ScoreModel,
    config: &SamplerConfig,
    n: usize,
    seed: u64,
) -> (Vec<f64>, SampleReport) {
    let plan = config.plan(design.schedule(), design.sigma_data()).unwrap();
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
            (SamplerKind::Exp, 20),
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
        for (kind, steps) in [
            (SamplerKind::Ancestral, 20),
            (SamplerKind::Ode, 40),
            (SamplerKind::Exp, 20),
        ] {
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
    for kind in [
        SamplerKind::Ancestral,
        SamplerKind::Sde,
        SamplerKind::Ode,
        SamplerKind::Exp,
    ] {
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

/// Generated phi-space samples of a closed-form score over a 20-sample training set.
fn closed_form_samples(
    score: crate::config::ScoreConfig,
    kind: SamplerKind,
    steps: usize,
) -> (Dataset, Dataset) {
    let train = free_field_samples(4, M2, 20, 11).unwrap();
    let config = DesignConfig {
        mean: MeanMode::Zero,
        ..DesignConfig::default()
    };
    let design = Design::fit(&config, &train).unwrap();
    let model = score.build(&design, &train).unwrap();
    let (chi0, _) = run(
        &design,
        model.as_ref(),
        &sampler_config(kind, steps),
        50,
        12,
    );
    let fields: Vec<f64> = chi0
        .chunks_exact(design.dim())
        .flat_map(|x| {
            design
                .whitened_to_field(&crate::Whitened(x.to_vec()))
                .unwrap()
                .0
        })
        .collect();
    (Dataset::new(train.shape(), fields).unwrap(), train)
}

/// Distance of x to the nearest segment between two training points (a two-point barycentre).
fn barycentre_distance(x: &[f64], train: &Dataset) -> f64 {
    let mut best = f64::INFINITY;
    for (m, a) in train.samples().enumerate() {
        for b in train.samples().skip(m + 1) {
            let ab: Vec<f64> = a.iter().zip(b).map(|(p, q)| q - p).collect();
            let ax: Vec<f64> = a.iter().zip(x).map(|(p, q)| q - p).collect();
            let dot = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(p, q)| p * q).sum::<f64>();
            let lam = (dot(&ax, &ab) / dot(&ab, &ab)).clamp(0.0, 1.0);
            let r: Vec<f64> = ax.iter().zip(&ab).map(|(p, q)| p - lam * q).collect();
            best = best.min(dot(&r, &r).sqrt());
        }
    }
    best
}

#[test]
fn empirical_memorises_and_smoothed_lands_between_training_points() {
    use crate::config::ScoreConfig;
    use crate::metrics::{memorisation, nearest_neighbours};
    let (gen, train) = closed_form_samples(ScoreConfig::Empirical {}, SamplerKind::Ode, 40);
    for n in nearest_neighbours(&gen, &train).unwrap() {
        let norm = train
            .sample(n.nearest)
            .iter()
            .map(|x| x * x)
            .sum::<f64>()
            .sqrt();
        assert!(
            n.d1 < 1e-3 * norm,
            "empirical sample {:.3e} from training point {}",
            n.d1 / norm,
            n.nearest
        );
    }
    let smoothed = ScoreConfig::Smoothed {
        scale: 1.0,
        perturbations: 16,
        seed: 0,
    };
    let (gen, train) = closed_form_samples(smoothed, SamplerKind::Ode, 40);
    let m = memorisation(&gen, &train).unwrap();
    assert!(
        m.mean_ratio > 0.3 && m.memorised_fraction < 0.5,
        "smoothed memorises: {m:?}"
    );
    // ...and lands near barycentres: closer to segments between two training points than
    // fresh samples of the data law are, also relative to the nearest single point
    let nb = nearest_neighbours(&gen, &train).unwrap();
    let d1: f64 = nb.iter().map(|n| n.d1).sum();
    let bary: f64 = gen.samples().map(|x| barycentre_distance(x, &train)).sum();
    let fresh = free_field_samples(4, M2, 50, 13).unwrap();
    let fresh_d1: f64 = nearest_neighbours(&fresh, &train)
        .unwrap()
        .iter()
        .map(|n| n.d1)
        .sum();
    let fresh_bary: f64 = fresh
        .samples()
        .map(|x| barycentre_distance(x, &train))
        .sum();
    // (control: fresh samples of the data law)
    assert!(
        bary < 0.5 * fresh_bary && bary / d1 < 0.8 * fresh_bary / fresh_d1,
        "distance to barycentres / to points: smoothed {bary:.2} / {d1:.2}, fresh {fresh_bary:.2} / {fresh_d1:.2}"
    );
}

#[test]
fn exp_is_exact_for_the_gaussian_score_at_any_step_count() {
    // the probability-flow map of Gaussian data is chi0 = sqrt(Sigma / V_tmax) chi_tmax: the
    // exponential integrator reproduces it to round-off whatever the grid and the order
    let (design, _) = design_with(PriorConfig::White {});
    let score = GaussianScore::new(design.sigma_data().to_vec());
    let (d, n) = (design.dim(), 16);
    let (_, t_max) = design.schedule().t_range();
    let start = NoisingState::at(design.schedule(), t_max);
    let draws = prior_draws(d, n, 21);
    let exact: Vec<f64> = draws
        .chunks_exact(d)
        .flat_map(|x| {
            (0..d).map(|i| {
                let sd = design.sigma_data()[i];
                (sd / start.marginal_variance(i, design.sigma_data())).sqrt() * x[i]
            })
        })
        .collect();
    for steps in [1, 2, 5] {
        for order in 1..=MAX_ORDER {
            for grid in [TimeGrid::UniformT, TimeGrid::UniformGamma] {
                let config = SamplerConfig {
                    grid,
                    ..exp_config(steps, order)
                };
                let (chi0, rep) = run(&design, &score, &config, n, 21);
                assert_eq!(rep.nfe, steps);
                let err = rms_diff(&chi0, &exact);
                assert!(
                    err < 1e-12,
                    "{steps} points, order {order}, {grid:?}: {err:e}"
                );
            }
        }
    }
}

#[test]
fn exp_converges_at_its_order_on_a_non_gaussian_residual() {
    // a Gaussian score of other variances Sigma' than the plan's Sigma leaves a residual
    // r = eps' - eps_gauss that the integrator must integrate: the error against a fine grid
    // falls ~2x per halving at order 1, ~4x at order 2 and ~8x at order 3 (measured 1.97/1.99,
    // 5.2/4.8, 6.3/7.5 at 32 -> 64 -> 128 points)
    let (design, _) = design_with(PriorConfig::White {});
    let other: Vec<f64> = design
        .sigma_data()
        .iter()
        .enumerate()
        .map(|(i, s)| s * (1.5 + (i as f64).sin()))
        .collect();
    let score = GaussianScore::new(other);
    let reference = run(&design, &score, &exp_config(3000, 2), 32, 5).0;
    let mut errors = Vec::new();
    for (order, lo, hi) in [(1, 1.7, 2.3), (2, 3.5, 6.5), (3, 5.5, 10.0)] {
        let e: Vec<f64> = [32, 64, 128]
            .iter()
            .map(|&k| {
                rms_diff(
                    &run(&design, &score, &exp_config(k, order), 32, 5).0,
                    &reference,
                )
            })
            .collect();
        for w in e.windows(2) {
            let ratio = w[0] / w[1];
            assert!(
                (lo..hi).contains(&ratio),
                "order {order}: errors {e:?}, ratio {ratio:.2}"
            );
        }
        errors.push(e);
    }
    // higher order, smaller error at every grid
    for k in 0..3 {
        assert!(
            errors[1][k] < errors[0][k] && errors[2][k] < errors[1][k],
            "{errors:?}"
        );
    }
    // and the same map as Heun on the same ODE (a fine Heun solution)
    let heun = run(
        &design,
        &score,
        &sampler_config(SamplerKind::Ode, 1600),
        32,
        5,
    )
    .0;
    let scale = rms_diff(&heun, &vec![0.0; heun.len()]);
    assert!(rms_diff(&heun, &reference) < 1e-3 * scale);
}

#[test]
fn exp_weights_integrate_polynomials_in_t_exactly() {
    // sum_k w_k,i p(t_{j-k}) = int p(t) d rho_i(t) for polynomials p of degree < order; the
    // right side by a fine trapezoid rule on the schedule
    let (design, _) = free_design();
    let plan = Plan::new(
        design.schedule(),
        design.sigma_data(),
        6,
        TimeGrid::UniformT,
        None,
    )
    .unwrap();
    let d = plan.dim();
    let fine = |j: usize, p: &dyn Fn(f64) -> f64| -> Vec<f64> {
        let (t0, t1) = (plan.times[j], plan.times[j + 1]);
        let m = 20000;
        let rho_at = |t: f64| -> Vec<f64> {
            let st = NoisingState::at(design.schedule(), t);
            (0..d)
                .map(|i| rho(st.gamma()[i], plan.sigma_data[i]))
                .collect()
        };
        let mut acc = vec![0.0; d];
        let mut prev = rho_at(t0);
        for q in 1..=m {
            let (ta, tb) = (
                t0 + (t1 - t0) * (q - 1) as f64 / m as f64,
                t0 + (t1 - t0) * q as f64 / m as f64,
            );
            let cur = rho_at(tb);
            let pm = p(0.5 * (ta + tb));
            for i in 0..d {
                acc[i] += pm * (cur[i] - prev[i]);
            }
            prev = cur;
        }
        acc
    };
    let polys: [&dyn Fn(f64) -> f64; 3] = [&|_| 1.0, &|t| t, &|t| (t - 0.3).powi(2)];
    for j in 2..plan.steps() - 1 {
        for m in 1..=MAX_ORDER {
            let w = ExponentialSampler::weights(&plan, j, m);
            for (deg, p) in polys.iter().enumerate().take(m) {
                let want = fine(j, *p);
                for i in 0..d {
                    let got: f64 = (0..m).map(|k| w[k][i] * p(plan.times[j - k])).sum();
                    assert!(
                        (got - want[i]).abs() < 1e-6 * (1.0 + want[i].abs()),
                        "step {j}, order {m}, degree {deg}, component {i}: {got} vs {}",
                        want[i]
                    );
                }
            }
        }
    }
}

#[test]
fn exp_order_out_of_range_is_named() {
    let (design, _) = free_design();
    let score = GaussianScore::new(design.sigma_data().to_vec());
    let plan = Plan::new(
        design.schedule(),
        design.sigma_data(),
        4,
        TimeGrid::UniformT,
        None,
    )
    .unwrap();
    for order in [0, MAX_ORDER + 1] {
        let err = generate(&plan, &score, &exp_config(4, order), 0, 0, 2, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("sampler.order"), "{err}");
    }
}

#[test]
fn an_explicit_grid_is_the_grid_and_a_bad_one_names_sampler_times() {
    let (design, _) = design_with(PriorConfig::White {});
    let sched = design.schedule();
    let (t_min, t_max) = sched.t_range();
    let config = exp_config(6, 3);
    let uniform = time_grid(sched, 6, TimeGrid::UniformT).unwrap();
    let explicit = SamplerConfig {
        times: Some(uniform.clone()),
        steps: 3,
        ..config.clone()
    };
    assert_eq!(explicit.points(), 6);
    let plan = explicit.plan(sched, design.sigma_data()).unwrap();
    assert_eq!(plan.times, uniform);
    // the same grid given either way samples the same, bit for bit
    let score = GaussianScore::new(design.sigma_data().to_vec());
    assert_eq!(
        run(&design, &score, &explicit, 5, 2).0,
        run(&design, &score, &config, 5, 2).0
    );
    let mid = 0.5 * (t_min + t_max);
    for bad in [
        vec![],
        vec![mid, t_min],
        vec![t_max, t_min, mid],
        vec![t_max, t_min - 0.5],
        vec![t_max, f64::NAN, t_min],
    ] {
        let c = SamplerConfig {
            times: Some(bad.clone()),
            ..config.clone()
        };
        let e = c.plan(sched, design.sigma_data()).unwrap_err().to_string();
        assert!(e.contains("sampler"), "{bad:?}: {e}");
    }
}
