use super::*;
use crate::config::DesignConfig;
use crate::design::MeanMode;
use crate::exact::{log_abs_det, Proposer};
use crate::free_field::free_field_samples;

fn free_design(l: usize, m2: f64) -> Design {
    let data = free_field_samples(l, m2, 512, 3).unwrap();
    let config = DesignConfig {
        mean: MeanMode::Zero,
        ..DesignConfig::default()
    };
    Design::fit(&config, &data).unwrap()
}

/// Couplings with every weight random (the output layer too), so that every term of the
/// log-determinant is exercised.
fn random_couplings(config: &FlowConfig, seed: u64, scale: f64) -> Couplings {
    let mut c = Couplings::new(config, seed).unwrap();
    let mut rng = stream(seed, Purpose::FlowTraining, 999);
    for p in &mut c.params {
        *p = scale * rng.sample::<f64, _>(rand_distr::StandardNormal);
    }
    c
}

/// A toy target with a closed-form gradient: phi^4 on the lattice, written out here.
struct Quartic {
    l: usize,
    m2: f64,
    lam: f64,
}

impl Target for Quartic {
    fn dim(&self) -> usize {
        self.l * self.l
    }
    fn log_density(&self, phi: &[f64]) -> f64 {
        let l = self.l;
        let mut s = 0.0;
        for y in 0..l {
            for x in 0..l {
                let p = phi[y * l + x];
                let r = phi[y * l + (x + 1) % l];
                let u = phi[((y + 1) % l) * l + x];
                s += (r - p).powi(2) + (u - p).powi(2) + self.m2 * p * p + self.lam * p.powi(4);
            }
        }
        -s
    }
}

#[test]
fn the_structured_log_determinant_is_the_dense_lu_of_the_full_jacobian() {
    // SPEC 9.1: on 4x4 to 8x8 lattices, a randomly initialised network, f64, 1e-8 relative
    // (dilated pairs: 2 x 2 and 4 x 4 blocks as the checkerboard, offsets scaled)
    // (sublattice levels: the decimation hierarchy down to spacing 4)
    for (l, radius, stages, layers, dilations, levels) in [
        (4, 1, 3, 1, vec![1], vec![0]),
        (6, 2, 2, 2, vec![1], vec![0]),
        (8, 2, 2, 1, vec![1], vec![0]),
        (8, 3, 1, 2, vec![1], vec![0]),
        (8, 2, 2, 2, vec![2, 1], vec![0]),
        (8, 1, 1, 3, vec![4, 2, 1], vec![0]),
        (8, 2, 1, 5, vec![1], vec![0, 1, 2, 3, 4]),
        (4, 2, 2, 2, vec![1], vec![1, 2]),
    ] {
        let design = free_design(l, 0.5);
        // every architecture with and without the tails term
        for tails in [false, true] {
            let config = FlowConfig {
                stages,
                layers,
                hidden: 5,
                radius,
                scale_max: 2.0,
                dilations: dilations.clone(),
                levels: levels.clone(),
                tails,
            };
            let c = random_couplings(&config, l as u64, 0.3);
            let flow = LocalFlow::new(&design, &c).unwrap();
            let d = l * l;
            for k in 0..3 {
                let mut z = vec![0.0; d];
                draw_prior(&mut sample_rng(7, k), &mut z);
                let mut phi = vec![0.0; d];
                let log_q = flow.sample_one(&z, log_standard_normal(&z), &mut phi);
                let dense = log_standard_normal(&z) - log_abs_det(&flow.jacobian(&z), d);
                let rel = (log_q - dense).abs() / dense.abs().max(1.0);
                assert!(
                    rel < 1e-8,
                    "L = {l}, tails {tails}, draw {k}: {log_q} vs dense {dense} ({rel:e})"
                );
            }
        }
    }
}

#[test]
fn every_step_of_the_map_has_its_structured_log_determinant() {
    // each coupling alone: its triangular log det equals the LU of its own Jacobian
    let l = 6;
    let design = free_design(l, 0.5);
    let config = FlowConfig {
        stages: 2,
        layers: 2,
        hidden: 4,
        radius: 2,
        scale_max: 2.0,
        dilations: vec![1, 3],
        levels: vec![0],
        tails: true,
    };
    let c = random_couplings(&config, 5, 0.4);
    let flow = LocalFlow::new(&design, &c).unwrap();
    let d = l * l;
    let mut x = vec![0.0; d];
    draw_prior(&mut sample_rng(3, 0), &mut x);
    for b in 0..flow.couplings_per_sample() {
        let colour = b % 2;
        let mut jac = vec![0.0; d * d];
        for j in 0..d {
            let mut e = vec![0.0; d];
            e[j] = 1.0;
            let col = flow.couple_tangent(b, colour, &x, &e);
            for i in 0..d {
                jac[i * d + j] = col[i];
            }
        }
        let mut y = x.clone();
        let structured = flow.couple(b, colour, &mut y);
        let dense = log_abs_det(&jac, d);
        assert!(
            (structured - dense).abs() < 1e-9 * dense.abs().max(1.0),
            "coupling {b}: {structured} vs {dense}"
        );
        // the tangent is the derivative of the map (central differences, 1e-6)
        let mut e = vec![0.0; d];
        e[(b * 7) % d] = 1.0;
        let col = flow.couple_tangent(b, colour, &x, &e);
        let h = 1e-6;
        let (mut up, mut down) = (x.clone(), x.clone());
        up[(b * 7) % d] += h;
        down[(b * 7) % d] -= h;
        flow.couple(b, colour, &mut up);
        flow.couple(b, colour, &mut down);
        for i in 0..d {
            let fd = (up[i] - down[i]) / (2.0 * h);
            assert!(
                (fd - col[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                "{i}: {fd} vs {}",
                col[i]
            );
        }
        x = y;
    }
}

#[test]
fn identity_couplings_sample_the_gaussian_base_exactly() {
    // with zero output weights the map is the Gaussian base: log q = its Gaussian density
    let l = 4;
    let design = free_design(l, 0.7);
    let c = Couplings::new(&FlowConfig::default(), 0).unwrap();
    let flow = LocalFlow::new(&design, &c).unwrap();
    let d = l * l;
    for k in 0..4 {
        let mut z = vec![0.0; d];
        draw_prior(&mut sample_rng(1, k), &mut z);
        let mut phi = vec![0.0; d];
        let log_q = flow.sample_one(&z, log_standard_normal(&z), &mut phi);
        // phi = U^T (S sqrt(sigma) z): N(0, U^T diag(S^2 sigma) U)
        let chi = design
            .field_to_whitened(&crate::Field(phi.clone()))
            .unwrap();
        // the base's variances are the design's, averaged over orbits of lattice momenta
        let sd = orbit_means(&design);
        let exact: f64 = chi
            .as_slice()
            .iter()
            .zip(&sd)
            .map(|(c, s)| -0.5 * c * c / s - 0.5 * (2.0 * std::f64::consts::PI * s).ln())
            .sum::<f64>()
            - design.scale().iter().map(|s| s.ln()).sum::<f64>();
        assert!(
            (log_q - exact).abs() < 1e-10 * exact.abs(),
            "{log_q} vs {exact}"
        );
    }
}

#[test]
fn the_gradient_of_the_reverse_kl_is_its_central_differences() {
    // dilated pairs with the tails term; the sublattice levels 1 and 2
    let l = 4;
    let design = free_design(l, 0.5);
    for (dilations, levels) in [(vec![2, 1], vec![0]), (vec![1], vec![1, 2])] {
        let config = FlowConfig {
            stages: 2,
            layers: 1,
            hidden: 3,
            radius: 2,
            scale_max: 2.0,
            dilations,
            levels,
            tails: true,
        };
        gradient_is_central_differences(&design, &config);
    }
}

fn gradient_is_central_differences(design: &Design, config: &FlowConfig) {
    let l = design.shape().h;
    let target = Quartic {
        l,
        m2: -1.0,
        lam: 1.0,
    };
    let mut c = random_couplings(config, 11, 0.3);
    let d = l * l;
    let mut z = vec![0.0; d];
    draw_prior(&mut sample_rng(2, 0), &mut z);
    let mut grad = vec![0.0; c.params.len()];
    LocalFlow::new(design, &c).unwrap().loss_and_gradient(
        &z,
        log_standard_normal(&z),
        &target,
        &mut grad,
        Sweep::Loss,
    );
    let loss = |c: &Couplings| {
        let mut g = vec![0.0; c.params.len()];
        LocalFlow::new(design, c)
            .unwrap()
            .loss_and_gradient(&z, log_standard_normal(&z), &target, &mut g, Sweep::Loss)
            .0
    };
    assert_central_differences(&mut c, &grad, 7, loss);
}

/// Every `stride`-th parameter's central difference of `f` (h = 1e-6) equals `grad` to 1e-5.
fn assert_central_differences(
    c: &mut Couplings,
    grad: &[f64],
    stride: usize,
    f: impl Fn(&Couplings) -> f64,
) {
    let h = 1e-6;
    for k in (0..c.params.len()).step_by(stride) {
        let p0 = c.params[k];
        c.params[k] = p0 + h;
        let up = f(c);
        c.params[k] = p0 - h;
        let down = f(c);
        c.params[k] = p0;
        let fd = (up - down) / (2.0 * h);
        assert!(
            (fd - grad[k]).abs() < 1e-5 * (1.0 + fd.abs()),
            "parameter {k}: {fd} vs {}",
            grad[k]
        );
    }
}

#[test]
fn the_couplings_commute_with_the_sign_flip_and_lattice_translations() {
    let l = 6;
    let design = free_design(l, 0.5);
    let c = random_couplings(&FlowConfig::default(), 4, 0.3);
    let flow = LocalFlow::new(&design, &c).unwrap();
    let d = l * l;
    let mut x = vec![0.0; d];
    draw_prior(&mut sample_rng(9, 0), &mut x);
    // phi -> -phi
    let (mut a, mut b) = (x.clone(), x.iter().map(|v| -v).collect::<Vec<_>>());
    let la = flow.couple(0, 0, &mut a);
    let lb = flow.couple(0, 0, &mut b);
    assert!((la - lb).abs() < 1e-12);
    for (p, q) in a.iter().zip(&b) {
        assert!((p + q).abs() < 1e-12);
    }
    // a shift by two sites (colour kept) commutes with a coupling
    let shift =
        |v: &[f64]| -> Vec<f64> { (0..d).map(|i| v[(i / l) * l + (i % l + 2) % l]).collect() };
    let (mut a, mut b) = (x.clone(), shift(&x));
    flow.couple(1, 1, &mut a);
    flow.couple(1, 1, &mut b);
    for (p, q) in shift(&a).iter().zip(&b) {
        assert!((p - q).abs() < 1e-12);
    }
}

#[test]
fn training_raises_the_effective_sample_size_on_a_non_gaussian_target() {
    // the Gaussian base of a free-field design against phi^4 with a quartic term: the
    // reverse KL falls and the ESS of fresh proposals rises (N = 1024; the ESS's error at
    // these values is a few 0.01)
    let l = 4;
    let design = free_design(l, 1.0);
    let target = Quartic {
        l,
        m2: 0.5,
        lam: 2.0,
    };
    let config = FlowConfig {
        stages: 2,
        layers: 1,
        hidden: 8,
        radius: 1,
        scale_max: 2.0,
        dilations: vec![1],
        levels: vec![0],
        tails: false,
    };
    let mut c = Couplings::new(&config, 0).unwrap();
    let ess = |c: &Couplings| {
        let flow = LocalFlow::new(&design, c).unwrap();
        let p = flow.propose(5, 0, 1024, &mut |_| {}).unwrap();
        let log_p = crate::exact::log_densities(&target, &p.fields);
        crate::exact::ess_fraction(&crate::exact::log_weights(&log_p, &p.log_q))
    };
    let before = ess(&c);
    let opts = FlowTraining {
        steps: 600,
        batch: 64,
        lr: 1e-2,
        seed: 1,
        clip: None,
        path_gradient: false,
    };
    let log = train(&design, &mut c, &target, &opts, &crate::monitor::Silent).unwrap();
    let after = ess(&c);
    let first = log[..10].iter().map(|s| s.loss).sum::<f64>() / 10.0;
    let last = log[log.len() - 10..].iter().map(|s| s.loss).sum::<f64>() / 10.0;
    assert!(last < first - 0.05, "loss {first} -> {last}");
    assert!(after > before + 0.1, "ESS/N {before} -> {after}");
    eprintln!("ESS/N {before} -> {after}, loss {first} -> {last}");
}

#[test]
fn gradient_clipping_bounds_each_step_and_is_inert_above_the_gradients_norm() {
    let l = 4;
    let design = free_design(l, 1.0);
    let target = Quartic {
        l,
        m2: 0.5,
        lam: 2.0,
    };
    let config = FlowConfig {
        stages: 1,
        layers: 1,
        hidden: 4,
        radius: 1,
        scale_max: 2.0,
        dilations: vec![1],
        levels: vec![0],
        tails: false,
    };
    let run = |clip: Option<f64>| {
        let mut c = Couplings::new(&config, 0).unwrap();
        let opts = FlowTraining {
            steps: 40,
            batch: 16,
            lr: 1e-2,
            seed: 2,
            clip,
            path_gradient: false,
        };
        let log = train(&design, &mut c, &target, &opts, &crate::monitor::Silent).unwrap();
        (c.params, log)
    };
    let bits = |p: &[f64]| p.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let (plain, plain_log) = run(None);
    // a bound above every step's norm changes nothing, bit for bit
    let (loose, _) = run(Some(1e300));
    assert_eq!(bits(&plain), bits(&loose));
    // a tight bound changes the path; the loss still falls
    let (tight, tight_log) = run(Some(1e-3));
    assert_ne!(bits(&plain), bits(&tight));
    let mean = |l: &[FlowStep]| l.iter().map(|s| s.loss).sum::<f64>() / l.len() as f64;
    assert!(
        mean(&tight_log[30..]) < mean(&tight_log[..10]),
        "clipped training did not learn"
    );
    assert!(mean(&plain_log[30..]) < mean(&plain_log[..10]));
    let bad = FlowTraining {
        clip: Some(0.0),
        ..FlowTraining::default()
    };
    let mut c = Couplings::new(&config, 0).unwrap();
    let e = train(&design, &mut c, &target, &bad, &crate::monitor::Silent).unwrap_err();
    assert!(e.to_string().contains("clip"), "{e}");
}

#[test]
fn orbit_means_are_equal_on_rotated_momenta_and_keep_the_total() {
    let design = free_design(6, 0.5);
    let sd = orbit_means(&design);
    let comps = design.basis().components();
    let raw = design.sigma_data();
    assert!((sd.iter().sum::<f64>() - raw.iter().sum::<f64>()).abs() < 1e-9);
    for i in 0..sd.len() {
        for j in 0..sd.len() {
            let (a, b) = (comps[i].momentum.unwrap(), comps[j].momentum.unwrap());
            let key = |m: crate::basis::Momentum| {
                let (x, y) = (m.n[0].abs(), m.n[1].abs());
                (x.min(y), x.max(y))
            };
            if key(a) == key(b) {
                assert_eq!(sd[i], sd[j]);
            }
        }
    }
}

#[test]
fn a_mixture_base_is_the_flows_input_with_its_exact_density() {
    // identity couplings on a design whose zero mode has a fitted two-Gaussian mixture: the
    // proposals' log q is the base density (mixture on the zero mode, Gaussian elsewhere), and
    // the zero mode's draws have the mixture's variance (N = 4096, 4 sigma)
    let data = free_field_samples(4, 0.3, 2048, 5).unwrap();
    let config: DesignConfig = toml::from_str(
        "mean = 'zero'\nbase = { kind = 'mixture', components = 2, modes = 'zero' }",
    )
    .unwrap();
    let design = Design::fit(&config, &data).unwrap();
    let (zero, mix) = design.base().mixture_components().next().unwrap();
    let c = Couplings::new(&FlowConfig::default(), 0).unwrap();
    let flow = LocalFlow::new(&design, &c).unwrap();
    let p = flow.propose(3, 0, 4096, &mut |_| {}).unwrap();
    let sd = orbit_means(&design);
    let mut second = 0.0;
    for (phi, lq) in p.fields.chunks_exact(16).zip(&p.log_q) {
        let chi = design
            .field_to_whitened(&crate::Field(phi.to_vec()))
            .unwrap();
        let chi = chi.as_slice();
        let mut exact = -design.scale().iter().map(|s| s.ln()).sum::<f64>();
        for (i, c) in chi.iter().enumerate() {
            exact += if i == zero {
                mix.log_density(*c, 1.0, 0.0)
            } else {
                -0.5 * c * c / sd[i] - 0.5 * (2.0 * std::f64::consts::PI * sd[i]).ln()
            };
        }
        assert!(
            (lq - exact).abs() < 1e-9 * exact.abs().max(1.0),
            "{lq} vs {exact}"
        );
        second += chi[zero] * chi[zero] / 4096.0;
    }
    let var: f64 = (0..mix.len())
        .map(|k| mix.weights[k] * (mix.variances[k] + mix.means[k].powi(2)))
        .sum();
    // the error of a second moment of N draws: sqrt(2 / N) relative (near-Gaussian)
    assert!(
        (second - var).abs() < 4.0 * var * (2.0f64 / 4096.0).sqrt(),
        "{second} vs {var}"
    );
}

#[test]
fn a_geometry_that_does_not_tile_the_lattice_is_an_error_naming_it() {
    let design = free_design(6, 0.5);
    for (dilations, levels, name, text) in [
        (
            vec![1, 2],
            vec![0],
            "dilations",
            "divides the lattice's sides (6 x 6)",
        ),
        (vec![0], vec![0], "dilations", "1 to 1024"),
        (vec![], vec![0], "dilations", "1 to 1000"),
        (vec![1], vec![1, 2], "levels", "period 2 x 2 divides"),
        (vec![1], vec![21], "levels", "0 to 20"),
        (vec![2], vec![1], "levels", "choose one"),
    ] {
        let config = FlowConfig {
            dilations,
            levels,
            ..FlowConfig::default()
        };
        let e = Couplings::new(&config, 0)
            .and_then(|c| LocalFlow::new(&design, &c).map(|_| ()))
            .unwrap_err();
        assert!(
            e.to_string().contains(name) && e.to_string().contains(text),
            "{e}"
        );
    }
}

/// Solves `a x = b` (d x d, row-major) by Gaussian elimination with partial pivoting.
fn solve(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut m: Vec<f64> = a.to_vec();
    let mut x = b.to_vec();
    for c in 0..d {
        let p = (c..d)
            .max_by(|&i, &j| m[i * d + c].abs().total_cmp(&m[j * d + c].abs()))
            .unwrap();
        for k in 0..d {
            m.swap(c * d + k, p * d + k);
        }
        x.swap(c, p);
        for r in c + 1..d {
            let f = m[r * d + c] / m[c * d + c];
            for k in c..d {
                m[r * d + k] -= f * m[c * d + k];
            }
            x[r] -= f * x[c];
        }
    }
    for c in (0..d).rev() {
        let s: f64 = (c + 1..d).map(|k| m[c * d + k] * x[k]).sum();
        x[c] = (x[c] - s) / m[c * d + c];
    }
    x
}

#[test]
fn the_flows_score_is_the_inverse_transpose_jacobian_of_its_input_gradient() {
    // grad_x log q(T z) = J^(-T) grad_z (log b - log |det J|): the O(d) sweeps against the
    // dense solve, with grad_z from central differences of z -> log q(T z)
    for (l, dilations, levels, tails) in [
        (4, vec![1], vec![0], false),
        (4, vec![2, 1], vec![0], true),
        (8, vec![1], vec![0, 1, 2], true),
    ] {
        let design = free_design(l, 0.5);
        let config = FlowConfig {
            stages: 2,
            layers: 2,
            hidden: 4,
            radius: 2,
            scale_max: 2.0,
            dilations,
            levels,
            tails,
        };
        let c = random_couplings(&config, 3, 0.3);
        let flow = LocalFlow::new(&design, &c).unwrap();
        let d = l * l;
        let mut z = vec![0.0; d];
        draw_prior(&mut sample_rng(4, 0), &mut z);
        let log_q_of = |z: &[f64]| {
            let mut phi = vec![0.0; d];
            flow.sample_one(z, log_standard_normal(z), &mut phi)
        };
        let h = 1e-6;
        let v: Vec<f64> = (0..d)
            .map(|i| {
                let (mut up, mut down) = (z.clone(), z.clone());
                up[i] += h;
                down[i] -= h;
                (log_q_of(&up) - log_q_of(&down)) / (2.0 * h)
            })
            .collect();
        let jac = flow.jacobian(&z);
        let mut jt = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                jt[i * d + j] = jac[j * d + i];
            }
        }
        let dense = solve(&jt, &v, d);
        let mut tape = Tape { inputs: Vec::new() };
        let mut phi = vec![0.0; d];
        flow.forward(&z, &mut phi, Some(&mut tape));
        let mut ours = vec![0.0; d];
        flow.grad_log_q(&z, &tape, &mut ours);
        let scale = dense.iter().fold(1.0f64, |m, x| m.max(x.abs()));
        for i in 0..d {
            assert!(
                (ours[i] - dense[i]).abs() < 1e-6 * scale,
                "L = {l}, site {i}: {} vs dense {}",
                ours[i],
                dense[i]
            );
        }
    }
}

#[test]
fn the_path_gradient_is_the_derivative_of_the_map_along_the_fixed_score_difference() {
    // (grad log q - grad log p)(x0)^T dT/dtheta at x0 = T(z): central differences of
    // theta -> c^T T_theta(z) with c held at theta0
    let l = 4;
    let design = free_design(l, 0.5);
    let config = FlowConfig {
        stages: 2,
        layers: 1,
        hidden: 3,
        radius: 2,
        scale_max: 2.0,
        dilations: vec![1],
        levels: vec![0, 1],
        tails: true,
    };
    let target = Quartic {
        l,
        m2: -1.0,
        lam: 1.0,
    };
    let mut c = random_couplings(&config, 5, 0.3);
    let d = l * l;
    let mut z = vec![0.0; d];
    draw_prior(&mut sample_rng(6, 0), &mut z);
    let mut grad = vec![0.0; c.params.len()];
    let flow = LocalFlow::new(&design, &c).unwrap();
    flow.loss_and_gradient(&z, log_standard_normal(&z), &target, &mut grad, Sweep::Path);
    let mut tape = Tape { inputs: Vec::new() };
    let mut x0 = vec![0.0; d];
    flow.forward(&z, &mut x0, Some(&mut tape));
    let mut cot = vec![0.0; d];
    flow.grad_log_q(&z, &tape, &mut cot);
    let mut gp = vec![0.0; d];
    target.grad_log_density(&x0, &mut gp);
    for (a, b) in cot.iter_mut().zip(&gp) {
        *a -= b;
    }
    let along = |c: &Couplings| {
        let mut x = vec![0.0; d];
        LocalFlow::new(&design, c)
            .unwrap()
            .forward(&z, &mut x, None);
        x.iter().zip(&cot).map(|(a, b)| a * b).sum::<f64>()
    };
    assert_central_differences(&mut c, &grad, 5, along);
}

#[test]
fn training_gives_the_same_bits_with_any_number_of_threads() {
    let l = 4;
    let design = free_design(l, 1.0);
    let target = Quartic {
        l,
        m2: 0.5,
        lam: 2.0,
    };
    let config = FlowConfig {
        stages: 1,
        layers: 1,
        hidden: 4,
        ..FlowConfig::default()
    };
    let opts = FlowTraining {
        steps: 15,
        batch: 32,
        path_gradient: true,
        ..FlowTraining::default()
    };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut c = Couplings::new(&config, 0).unwrap();
            train(&design, &mut c, &target, &opts, &crate::monitor::Silent).unwrap();
            c.params.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        })
    };
    let one = run(1);
    assert_eq!(one, run(3));
    assert_eq!(one, run(4));
}
