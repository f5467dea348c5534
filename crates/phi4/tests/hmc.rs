//! HMC and observables against closed forms (SPEC section 7).

use gud_core::monitor::Silent;
use gud_phi4::hmc::{leapfrog, sample, HmcConfig};
use gud_phi4::observables::{measure, momentum_propagator};
use gud_phi4::{Couplings, Lattice};

fn k_hat_sq(l: usize, ky: usize, kx: usize) -> f64 {
    let k = |n: usize| 2.0 * std::f64::consts::PI * n as f64 / l as f64;
    4.0 * ((k(ky) / 2.0).sin().powi(2) + (k(kx) / 2.0).sin().powi(2))
}

fn run(l: usize, m2: f64, lam: f64, n: usize, seed: u64) -> Vec<f64> {
    let lat = Lattice::new(l, Couplings::new(m2, lam).unwrap()).unwrap();
    let cfg = HmcConfig {
        chains: 16,
        seed,
        ..HmcConfig::default()
    };
    sample(&lat, n, &cfg, &Silent).unwrap().configs
}

#[test]
fn free_field_matches_the_exact_propagator() {
    let (l, m2) = (6, 0.5);
    let n = 4000;
    let configs = run(l, m2, 0.0, n, 1);
    let obs = measure(&configs, l, Some(Couplings::new(m2, 0.0).unwrap())).unwrap();
    let v = (l * l) as f64;
    let exact_phi2: f64 = (0..l)
        .flat_map(|a| (0..l).map(move |b| (a, b)))
        .map(|(a, b)| 0.5 / (k_hat_sq(l, a, b) + m2))
        .sum::<f64>()
        / v;
    assert!(
        (obs.phi2.value - exact_phi2).abs() < 4.0 * obs.phi2.error,
        "phi2 {:?} vs {exact_phi2}",
        obs.phi2
    );
    let exact_chi2pt = 0.5 / m2;
    assert!(
        (obs.chi_2pt.value - exact_chi2pt).abs() < 4.0 * obs.chi_2pt.error,
        "chi_2pt {:?} vs {exact_chi2pt}",
        obs.chi_2pt
    );
    let (prop, err) = momentum_propagator(&configs, l);
    for ky in 0..l {
        for kx in 0..l {
            let i = ky * l + kx;
            let exact = 0.5 / (k_hat_sq(l, ky, kx) + m2);
            assert!(
                (prop[i] - exact).abs() < 4.0 * err[i],
                "k = ({ky},{kx}): {} +- {} vs {exact}",
                prop[i],
                err[i]
            );
        }
    }
}

#[test]
fn leapfrog_is_reversible_and_second_order() {
    let lat = Lattice::new(8, Couplings::new(-1.0, 0.8).unwrap()).unwrap();
    let q0: Vec<f64> = (0..64)
        .map(|i| ((i * 13 % 17) as f64 - 8.0) / 10.0)
        .collect();
    let p0: Vec<f64> = (0..64).map(|i| ((i * 7 % 11) as f64 - 5.0) / 5.0).collect();
    let (mut q, mut p) = (q0.clone(), p0.clone());
    leapfrog(&lat, &mut q, &mut p, 0.05, 20);
    p.iter_mut().for_each(|x| *x = -*x);
    leapfrog(&lat, &mut q, &mut p, 0.05, 20);
    p.iter_mut().for_each(|x| *x = -*x);
    let dq = q
        .iter()
        .zip(&q0)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let dp = p
        .iter()
        .zip(&p0)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(dq < 1e-12 && dp < 1e-12, "reversibility {dq} {dp}");
    let h = |q: &[f64], p: &[f64]| 0.5 * p.iter().map(|x| x * x).sum::<f64>() + lat.action(q);
    let dh = |eps: f64| {
        let (mut q, mut p) = (q0.clone(), p0.clone());
        leapfrog(&lat, &mut q, &mut p, eps, (0.5 / eps).round() as usize);
        (h(&q, &p) - h(&q0, &p0)).abs()
    };
    let (a, b, c) = (dh(0.02), dh(0.01), dh(0.005));
    for ratio in [a / b, b / c] {
        assert!(
            (ratio - 4.0).abs() < 0.6,
            "|dH| ratio {ratio} (expected 4 for eps^2): {a} {b} {c}"
        );
    }
}

#[test]
fn z2_symmetry_in_the_symmetric_phase() {
    let configs = run(8, 1.0, 1.0, 2000, 2);
    let obs = measure(&configs, 8, None).unwrap();
    assert!(obs.m.value.abs() < 4.0 * obs.m.error, "<M> = {:?}", obs.m);
}

#[test]
fn observables_match_direct_formulas() {
    let l = 3;
    let v = 9.0;
    let configs: Vec<f64> = (0..5 * 9)
        .map(|i| ((i * 29 % 23) as f64 - 11.0) / 7.0)
        .collect();
    let c = Couplings::new(-2.0, 1.5).unwrap();
    let obs = measure(&configs, l, Some(c)).unwrap();
    let lat = Lattice::new(l, c).unwrap();
    let ms: Vec<f64> = configs
        .chunks(9)
        .map(|p| p.iter().sum::<f64>() / v)
        .collect();
    let mean = |f: &dyn Fn(usize) -> f64| (0..5).map(f).sum::<f64>() / 5.0;
    let abs_m = mean(&|i| ms[i].abs());
    let m2 = mean(&|i| ms[i] * ms[i]);
    let m4 = mean(&|i| ms[i].powi(4));
    assert!((obs.abs_m.value - abs_m).abs() < 1e-12);
    assert!((obs.chi.value - v * (m2 - abs_m * abs_m)).abs() < 1e-12);
    assert!((obs.binder.value - (1.0 - m4 / (3.0 * m2 * m2))).abs() < 1e-12);
    let phi4 = mean(&|i| {
        configs[i * 9..(i + 1) * 9]
            .iter()
            .map(|p| p.powi(4))
            .sum::<f64>()
            / v
    });
    assert!((obs.phi4.value - phi4).abs() < 1e-12);
    let act = mean(&|i| lat.action(&configs[i * 9..(i + 1) * 9]) / v);
    assert!((obs.action_density.unwrap().value - act).abs() < 1e-12);
    // chi_2pt = sum_x <phi_0 phi_x>, averaged over translations x0
    let chi2 = mean(&|i| {
        let p = &configs[i * 9..(i + 1) * 9];
        (0..9)
            .map(|x0| (0..9).map(|x| p[x0] * p[x]).sum::<f64>())
            .sum::<f64>()
            / v
    });
    assert!((obs.chi_2pt.value - chi2).abs() < 1e-12);
    // C(t) = 1/L sum_dy G(t, dy), G(r) = 1/V sum_x phi_x phi_{x+r}
    for t in 0..l {
        let ct = mean(&|i| {
            let p = &configs[i * 9..(i + 1) * 9];
            let mut s = 0.0;
            for y in 0..l {
                for x in 0..l {
                    for dy in 0..l {
                        s += p[y * l + x] * p[((y + t) % l) * l + (x + dy) % l];
                    }
                }
            }
            s / (v * l as f64)
        });
        assert!((obs.c_t[t].value - ct).abs() < 1e-12, "C({t})");
    }
}

#[test]
fn bad_configurations_are_rejected() {
    assert!(measure(&[1.0; 10], 3, None).is_err());
    assert!(
        measure(&[1.0; 9], 3, None).is_err(),
        "one configuration gives no error"
    );
    let mut c = vec![0.1; 18];
    c[4] = f64::NAN;
    assert!(measure(&c, 3, None).is_err());
    let lat = Lattice::new(4, Couplings::new(1.0, 0.0).unwrap()).unwrap();
    let bad = HmcConfig {
        chains: 0,
        ..HmcConfig::default()
    };
    assert!(sample(&lat, 10, &bad, &Silent).is_err());
    assert!(sample(&lat, 0, &HmcConfig::default(), &Silent).is_err());
}
