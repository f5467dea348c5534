//! The schedule identities and conventions of SPEC section 3 (issue: the design space core).

use super::ordering::ordering_values;
use super::*;
use crate::config::{DesignConfig, ScheduleConfig};
use crate::design::Design;
use crate::field::Dataset;
use crate::free_field::{free_field_samples, free_propagator};
use crate::process::{forward_sample, NoisingState};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn free_data(l: usize, n: usize, seed: u64) -> Dataset {
    free_field_samples(l, 0.5, n, seed).unwrap()
}

fn design(toml_src: &str, data: &Dataset) -> Design {
    let cfg: DesignConfig = toml::from_str(toml_src).unwrap_or_else(|e| panic!("{toml_src}: {e}"));
    Design::fit(&cfg, data).unwrap_or_else(|e| panic!("{toml_src}: {e}"))
}

/// Design specs over every schedule kind, on bases where they apply.
fn all_designs() -> Vec<&'static str> {
    vec![
        "basis = { kind = 'pixel' }\nprior = { kind = 'white' }\nschedule = { kind = 'vp-linear' }",
        "basis = { kind = 'pixel' }\nprior = { kind = 'white' }\nschedule = { kind = 'cosine' }",
        "basis = { kind = 'pca' }\nprior = { kind = 'white' }\nschedule = { kind = 'linear', ordering = 'variance', a = 1.0 }",
        "basis = { kind = 'pca' }\nprior = { kind = 'matched' }\nschedule = { kind = 'linear', ordering = 'variance', a = 0.5 }",
        "basis = { kind = 'fourier' }\nprior = { kind = 'white' }\nschedule = { kind = 'linear', ordering = 'frequency', r = 0.5, a = 1.3 }",
        "basis = { kind = 'fourier' }\nprior = { kind = 'free' }\nschedule = { kind = 'linear', ordering = 'momentum', a = 2.0 }",
        "basis = { kind = 'pixel' }\nprior = { kind = 'matched' }\nschedule = { kind = 'linear', ordering = 'column', a = 0.7 }",
        "basis = { kind = 'haar' }\nprior = { kind = 'matched' }\nschedule = { kind = 'linear', ordering = 'level', a = 1.5, b = 0.5 }",
        "basis = { kind = 'pixel' }\nprior = { kind = 'white' }\nschedule = { kind = 'sequential', ordering = 'column', softness = 1.5 }",
        "basis = { kind = 'pixel' }\nprior = { kind = 'white' }\nschedule = { kind = 'sequential', ordering = 'row', softness = 3.0 }",
        "basis = { kind = 'fourier' }\nprior = { kind = 'free' }\nschedule = { kind = 'rg', regulator = 'sigmoid', width = 0.4 }",
        "basis = { kind = 'fourier' }\nprior = { kind = 'white' }\nschedule = { kind = 'rg', regulator = 'massive', mass_sq = 0.3 }",
    ]
}

#[test]
fn pca_white_linear_variance_is_standard_diffusion() {
    // SPEC 3: with the pca basis, the white prior and a = 1, all gamma_i are equal.
    let data = free_data(6, 800, 1);
    let d = design(
        "basis = { kind = 'pca' }\nprior = { kind = 'white' }\nschedule = { kind = 'linear', ordering = 'variance', a = 1.0 }",
        &data,
    );
    for t in [0.0, 0.25, 0.5, 1.0] {
        let g = gamma_at(d.schedule(), t);
        let spread = g.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b))
            - g.iter().fold(f64::INFINITY, |a, &b| a.min(b));
        assert!(spread < 1e-9, "t = {t}: gamma spread {spread}");
    }
    // and the same for a mean-subtracted anisotropic pixel-space data set (not only free field)
    let d2 = design(
        "basis = { kind = 'pca' }\nprior = { kind = 'white' }\nschedule = { kind = 'linear', ordering = 'variance', a = 1.0 }",
        &free_data(4, 300, 2),
    );
    let g = gamma_at(d2.schedule(), 0.3);
    assert!(g.iter().all(|x| (x - g[0]).abs() < 1e-9));
    // a != 1 breaks the identity
    let d3 = design(
        "basis = { kind = 'pca' }\nprior = { kind = 'white' }\nschedule = { kind = 'linear', ordering = 'variance', a = 1.5 }",
        &data,
    );
    let g = gamma_at(d3.schedule(), 0.3);
    assert!(g.iter().any(|x| (x - g[0]).abs() > 1e-3));
}

#[test]
fn rg_regulators_equal_linear_schedules() {
    // SPEC 3: with the matched prior, rg/sigmoid == linear(l = |k|, a = 1/w) and
    // rg/massive == linear(l = log(|k|^2 + m_L^2), a = 1), gamma for gamma at every t.
    let data = free_data(8, 400, 3);
    let pairs = [
        (
            "schedule = { kind = 'rg', regulator = 'sigmoid', width = 0.4, g_denoise = -6.0, g_noise = 8.0 }",
            "schedule = { kind = 'linear', ordering = 'momentum', a = 2.5, g_denoise = -6.0, g_noise = 8.0 }",
        ),
        (
            "schedule = { kind = 'rg', regulator = 'massive', mass_sq = 0.3 }",
            "schedule = { kind = 'linear', ordering = 'log-momentum', mass_sq = 0.3, a = 1.0 }",
        ),
    ];
    for prior in ["matched", "free"] {
        for (rg, lin) in pairs {
            let head = format!("basis = {{ kind = 'fourier' }}\nprior = {{ kind = '{prior}' }}\n");
            let a = design(&format!("{head}{rg}"), &data);
            let b = design(&format!("{head}{lin}"), &data);
            for t in [0.0, 0.1, 0.37, 0.5, 0.9, 1.0] {
                let (ga, gb) = (gamma_at(a.schedule(), t), gamma_at(b.schedule(), t));
                let (da, db) = (dgamma_dt_at(a.schedule(), t), dgamma_dt_at(b.schedule(), t));
                for i in 0..ga.len() {
                    assert!(
                        (ga[i] - gb[i]).abs() < 1e-10,
                        "{prior} {rg} t={t} i={i}: {} vs {}",
                        ga[i],
                        gb[i]
                    );
                    assert!((da[i] - db[i]).abs() < 1e-10);
                }
            }
        }
    }
}

#[test]
fn rg_sigmoid_kernel_is_alpha_sq_and_ir_cutoff_negative() {
    let data = free_data(8, 400, 3);
    let cfg: DesignConfig = toml::from_str(
        "basis = { kind = 'fourier' }\nprior = { kind = 'matched' }\nschedule = { kind = 'rg', regulator = 'sigmoid', width = 0.5 }",
    )
    .unwrap();
    let d = Design::fit(&cfg, &data).unwrap();
    let ScheduleConfig::Rg(rc) = &cfg.schedule else {
        unreachable!()
    };
    let log_sigma: Vec<f64> = d.sigma_data().iter().map(|s| s.ln()).collect();
    let ctx = ScheduleContext {
        basis: d.basis(),
        var_comp: d.component_variance(),
        log_sigma: &log_sigma,
    };
    let rg = RgSchedule::new(rc, &ctx).unwrap();
    assert!(
        rg.cutoff(1.0) < 0.0,
        "Lambda_IR = {} must be negative",
        rg.cutoff(1.0)
    );
    assert!(rg.cutoff(0.0) > rg.cutoff(1.0));
    for t in [0.0, 0.3, 0.8] {
        let st = d.state(t);
        for i in 0..d.dim() {
            assert!((rg.kernel(t, i) - st.alpha_sq()[i]).abs() < 1e-12);
        }
    }
}

#[test]
fn snr_endpoints_follow_eq_19() {
    // min_i log SNR_i(0) = -g_denoise and max_i log SNR_i(1) = -g_noise for the soft schedules.
    let data = free_data(8, 300, 4);
    for spec in all_designs()
        .into_iter()
        .filter(|s| s.contains("'linear'") || s.contains("'rg'"))
    {
        let d = design(spec, &data);
        let (g_d, g_n) = (-7.0, 9.0); // defaults
        let s0 = d.state(0.0);
        let s1 = d.state(1.0);
        let min0 = (0..d.dim())
            .map(|i| s0.log_snr_data(i, d.sigma_data()))
            .fold(f64::INFINITY, f64::min);
        let max1 = (0..d.dim())
            .map(|i| s1.log_snr_data(i, d.sigma_data()))
            .fold(f64::NEG_INFINITY, f64::max);
        assert!((min0 + g_d).abs() < 1e-9, "{spec}: min log SNR(0) = {min0}");
        assert!((max1 + g_n).abs() < 1e-9, "{spec}: max log SNR(1) = {max1}");
    }
}

#[test]
fn dgamma_dt_matches_central_differences() {
    let data = free_data(6, 300, 5);
    let h = 1e-6;
    for spec in all_designs() {
        let d = design(spec, &data);
        let s = d.schedule();
        let (t0, t1) = s.t_range();
        for k in 1..20 {
            let t = t0 + (t1 - t0) * k as f64 / 20.0;
            let (gp, gm) = (gamma_at(s, t + h), gamma_at(s, t - h));
            let g = gamma_at(s, t);
            let dg = dgamma_dt_at(s, t);
            for i in 0..s.dim() {
                // skip kinks of the clipped schedule: where the one-sided slopes differ
                let left = (g[i] - gm[i]) / h;
                let right = (gp[i] - g[i]) / h;
                if (left - right).abs() > 1e-3 * (1.0 + left.abs()) {
                    continue;
                }
                let fd = (gp[i] - gm[i]) / (2.0 * h);
                assert!(
                    (fd - dg[i]).abs() < 1e-5 * (1.0 + dg[i].abs()),
                    "{spec} t={t} i={i}: fd {fd} vs exact {}",
                    dg[i]
                );
            }
        }
    }
}

#[test]
fn sequential_freezes_exactly() {
    let data = free_data(8, 300, 6);
    let d = design(
        "basis = { kind = 'pixel' }\nprior = { kind = 'white' }\nschedule = { kind = 'sequential', ordering = 'column', softness = 1.2, g_lo = -6.0, g_hi = 7.0 }",
        &data,
    );
    let mut frozen_lo = 0;
    let mut frozen_hi = 0;
    for k in 0..=50 {
        let t = k as f64 / 50.0;
        let st = d.state(t);
        for i in 0..d.dim() {
            let g = st.gamma()[i];
            if g == -6.0 || g == 7.0 {
                assert_eq!(st.dgamma_dt()[i], 0.0, "t={t} i={i}");
                assert_eq!(st.beta(i), 0.0, "beta must be exactly 0 where frozen");
                if g == -6.0 {
                    frozen_lo += 1
                } else {
                    frozen_hi += 1
                }
            } else {
                assert!(g > -6.0 && g < 7.0);
                assert!(st.beta(i) > 0.0);
            }
        }
    }
    assert!(
        frozen_lo > 100 && frozen_hi > 100,
        "{frozen_lo} {frozen_hi}"
    );
    // endpoints: all generated at t = 0, all noise at t = 1
    assert!(gamma_at(d.schedule(), 0.0).iter().all(|&g| g == -6.0));
    assert!(gamma_at(d.schedule(), 1.0).iter().all(|&g| g == 7.0));
}

#[test]
fn smaller_l_is_generated_first_for_every_schedule() {
    let data = free_data(8, 300, 7);
    for spec in all_designs() {
        let cfg: DesignConfig = toml::from_str(spec).unwrap();
        let d = Design::fit(&cfg, &data).unwrap();
        let log_sigma: Vec<f64> = d.sigma_data().iter().map(|s| s.ln()).collect();
        let ctx = ScheduleContext {
            basis: d.basis(),
            var_comp: d.component_variance(),
            log_sigma: &log_sigma,
        };
        let l: Vec<f64> = match &cfg.schedule {
            ScheduleConfig::Linear(c) => ordering_values(&c.ordering_params(), &ctx, "").unwrap(),
            ScheduleConfig::Sequential(c) => {
                ordering_values(&c.ordering_params(), &ctx, "").unwrap()
            }
            ScheduleConfig::Rg(_) => d
                .basis()
                .components()
                .iter()
                .map(|c| c.momentum.unwrap().k_hat_sq)
                .collect(),
            // the standard schedules have no ordering: every component equal
            _ => vec![0.0; d.dim()],
        };
        let (t0, t1) = d.schedule().t_range();
        for k in 0..=10 {
            let t = t0 + (t1 - t0) * k as f64 / 10.0;
            let st = d.state(t);
            // the data SNR for the soft schedules (eq. 20 includes log Sigma); -gamma itself for
            // sequential and the standard schedules, which have no Sigma term
            let soft = matches!(d.schedule().name(), "linear" | "rg");
            let key = |i: usize| {
                if soft {
                    st.log_snr_data(i, d.sigma_data())
                } else {
                    -st.gamma()[i]
                }
            };
            for i in 0..d.dim() {
                for j in 0..d.dim() {
                    if l[i] < l[j] - 1e-12 {
                        assert!(
                            key(i) >= key(j) - 1e-9,
                            "{spec} t={t}: l {} < {} but SNR {} < {}",
                            l[i],
                            l[j],
                            key(i),
                            key(j)
                        );
                    }
                    if l[i] == l[j] && d.schedule().name() != "sequential" {
                        assert!((key(i) - key(j)).abs() < 1e-9);
                    }
                }
            }
        }
    }
}

#[test]
fn forward_marginal_variance_by_monte_carlo() {
    // Var(chi_i(t)) = alpha_i^2 Sigma_i + sigma_i^2 on fresh free-field data, with the exact
    // Sigma_i = propagator_k / S_i^2; each component within 4 standard errors.
    let l = 4;
    let train = free_data(l, 2000, 8);
    let d = design(
        "mean = 'zero'\nbasis = { kind = 'fourier' }\nprior = { kind = 'white' }\nschedule = { kind = 'linear', ordering = 'momentum', a = 2.0 }",
        &train,
    );
    let test = free_data(l, 20000, 9);
    let exact_sigma: Vec<f64> = d
        .basis()
        .components()
        .iter()
        .zip(d.scale())
        .map(|(c, s)| free_propagator(c.momentum.unwrap().k_hat_sq, 0.5) / (s * s))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    for t in [0.2, 0.5, 0.8] {
        let st: NoisingState = d.state(t);
        let mut sum_sq = vec![0.0; d.dim()];
        for phi in test.samples() {
            let chi0 = d.field_to_whitened(&crate::Field(phi.to_vec())).unwrap();
            let chi_t = forward_sample(&st, &chi0, &mut rng);
            for (s, x) in sum_sq.iter_mut().zip(&chi_t.0) {
                *s += x * x;
            }
        }
        let n = test.len() as f64;
        for i in 0..d.dim() {
            let var = sum_sq[i] / n;
            let expected = st.marginal_variance(i, &exact_sigma);
            let se = expected * (2.0 / n).sqrt();
            assert!(
                (var - expected).abs() < 4.0 * se,
                "t={t} i={i}: {var} vs {expected} +- {se}"
            );
        }
    }
}

#[test]
fn free_prior_fit_recovers_the_free_field() {
    let data = free_field_samples(8, 0.5, 4000, 11).unwrap();
    let d = design(
        "basis = { kind = 'fourier' }\nprior = { kind = 'free' }\nschedule = { kind = 'rg' }",
        &data,
    );
    let crate::config::PriorConfig::Free {
        amplitude: Some(a),
        m2: Some(m2),
    } = d.resolved_config().prior
    else {
        panic!("unresolved prior")
    };
    // exact: A = 1/2, m^2 = 0.5; per-component log-variance error ~ sqrt(2/N) = 2%
    assert!((a - 0.5).abs() < 0.02, "A = {a}");
    assert!((m2 - 0.5).abs() < 0.04, "m^2 = {m2}");
}

#[test]
fn schedule_needs_metadata_the_basis_has() {
    let data = free_data(4, 50, 12);
    let bad = [
        "basis = { kind = 'pixel' }\nschedule = { kind = 'rg' }",
        "basis = { kind = 'pixel' }\nprior = { kind = 'free' }\nschedule = { kind = 'vp-linear' }",
        "basis = { kind = 'fourier' }\nprior = { kind = 'white' }\nschedule = { kind = 'linear', ordering = 'column' }",
        "basis = { kind = 'pixel' }\nprior = { kind = 'white' }\nschedule = { kind = 'linear', ordering = 'level' }",
        "basis = { kind = 'fourier' }\nprior = { kind = 'white' }\nschedule = { kind = 'linear', a = -1.0 }",
        "basis = { kind = 'fourier' }\nprior = { kind = 'white' }\nschedule = { kind = 'linear', g_denoise = 3.0, g_noise = 1.0 }",
        "basis = { kind = 'fourier' }\nprior = { kind = 'white' }\nschedule = { kind = 'linear', r = 2.0 }",
    ];
    for spec in bad {
        let cfg: DesignConfig = toml::from_str(spec).unwrap();
        let err = Design::fit(&cfg, &data).expect_err(spec).to_string();
        assert!(!err.is_empty());
    }
}

#[test]
fn a_design_with_another_schedule_equals_a_fresh_fit() {
    use crate::config::{DesignConfig, MeanMode};
    use crate::design::Design;
    let data = crate::free_field::free_field_samples(4, 0.5, 256, 2).unwrap();
    let mut cfg: DesignConfig = toml::from_str(
        "basis = { kind = \"fourier\" }\nprior = { kind = \"matched\" }\n\
         schedule = { kind = \"linear\", ordering = \"frequency\", r = 1.0, a = 1.0 }",
    )
    .unwrap();
    cfg.mean = MeanMode::Zero;
    let base = Design::fit(&cfg, &data).unwrap();
    let other = cfg.schedule.with_softness(0.4, Some(0.3)).unwrap();
    let variant = base.with_schedule(&other).unwrap();
    cfg.schedule = other;
    let fresh = Design::fit(&cfg, &data).unwrap();
    for t in [0.0, 0.3, 0.8, 1.0] {
        assert_eq!(variant.state(t), fresh.state(t), "t = {t}");
    }
    assert_ne!(base.state(0.3), variant.state(0.3));
    assert!(crate::config::ScheduleConfig::Rg(Default::default())
        .with_softness(1.0, None)
        .is_err());
}

#[test]
fn issue34_a_schedule_without_softness_is_named_as_written_not_dumped() {
    let e = crate::config::ScheduleConfig::Rg(Default::default())
        .with_softness(0.5, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"rg\"") && !e.contains("RgConfig") && !e.contains('{'),
        "{e}"
    );
}
