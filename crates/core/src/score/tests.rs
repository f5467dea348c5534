use super::*;
use crate::field::Shape;
use crate::testutil::gaussian_vec;

/// A noising state with varied gamma (some frozen, some noisy).
fn state(d: usize, seed: u64) -> NoisingState {
    let gamma: Vec<f64> = gaussian_vec(d, seed)
        .iter()
        .map(|z| 2.0 * z - 1.0)
        .collect();
    NoisingState::new(0.5, gamma, vec![1.0; d])
}

/// log p_t(chi) of the training mixture, up to a constant (brute force).
fn log_mixture(train: &[f64], d: usize, st: &NoisingState, chi: &[f64]) -> f64 {
    let logits: Vec<f64> = train
        .chunks_exact(d)
        .map(|x| {
            -(0..d)
                .map(|i| (chi[i] - st.alpha(i) * x[i]).powi(2) / (2.0 * st.sigma_sq()[i]))
                .sum::<f64>()
        })
        .collect();
    let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln()
}

/// score = -eps_hat / sigma against central differences of log p (STYLE test 4).
fn assert_score_is_gradient(
    model: &dyn ScoreModel,
    log_p: &dyn Fn(&[f64]) -> f64,
    st: &NoisingState,
    chi: &[f64],
    tol: f64,
) {
    let d = model.dim();
    let mut eps = vec![0.0; d];
    model.eps_hat(chi, st, None, &mut eps);
    let h = 1e-5;
    for i in 0..d {
        let (mut p, mut m) = (chi.to_vec(), chi.to_vec());
        p[i] += h;
        m[i] -= h;
        let fd = (log_p(&p) - log_p(&m)) / (2.0 * h);
        let s = score_from_eps(eps[i], st.sigma(i));
        assert!(
            (s - fd).abs() < tol * (1.0 + fd.abs()),
            "component {i}: score {s} vs finite difference {fd}"
        );
    }
}

#[test]
fn gaussian_score_is_the_gradient_of_the_gaussian_marginal() {
    let d = 6;
    let sigma_data: Vec<f64> = (0..d).map(|i| 0.3 + 0.4 * i as f64).collect();
    let model = GaussianScore::new(sigma_data.clone());
    let st = state(d, 1);
    let log_p = |x: &[f64]| -> f64 {
        (0..d)
            .map(|i| -x[i] * x[i] / (2.0 * st.marginal_variance(i, &sigma_data)))
            .sum()
    };
    assert_score_is_gradient(&model, &log_p, &st, &gaussian_vec(d, 2), 1e-6);
}

#[test]
fn empirical_score_is_the_gradient_of_the_training_mixture() {
    let d = 5;
    let train = gaussian_vec(7 * d, 3);
    let model = EmpiricalScore::new(d, train.clone()).unwrap();
    let st = state(d, 4);
    let log_p = |x: &[f64]| log_mixture(&train, d, &st, x);
    for seed in 0..3 {
        assert_score_is_gradient(&model, &log_p, &st, &gaussian_vec(d, 10 + seed), 1e-5);
    }
}

#[test]
fn empirical_score_is_batched_and_projected_consistently() {
    let d = 9;
    let model = EmpiricalScore::new(d, gaussian_vec(30 * d, 5)).unwrap();
    let st = state(d, 6);
    let batch = gaussian_vec(4 * d, 7);
    let mut all = vec![0.0; batch.len()];
    model.eps_hat(&batch, &st, None, &mut all);
    for (k, q) in batch.chunks_exact(d).enumerate() {
        let mut one = vec![0.0; d];
        model.eps_hat(q, &st, None, &mut one);
        assert_eq!(
            one,
            all[k * d..(k + 1) * d],
            "batch position must not matter"
        );
    }
    let active = [1usize, 4, 8];
    let mut part = vec![f64::NAN; batch.len()];
    model.eps_hat(&batch, &st, Some(&active), &mut part);
    for k in 0..4 {
        for &i in &active {
            assert_eq!(part[k * d + i], all[k * d + i]);
        }
    }
}

#[test]
fn per_row_states_give_each_row_its_own_empirical_score() {
    // Rows at three different states (including a tiny-noise one near a training point) must
    // equal the one-state eps_hat of each row at its state.
    let d = 6;
    let train = gaussian_vec(20 * d, 11);
    let model = EmpiricalScore::new(d, train.clone()).unwrap();
    let tiny = NoisingState::new(0.0, vec![-40.0; d], vec![1.0; d]);
    let (a, b) = (state(d, 12), state(d, 13));
    let states = [&a, &tiny, &b];
    let mut q = gaussian_vec(3 * d, 14);
    for i in 0..d {
        q[d + i] = tiny.alpha(i) * train[5 * d + i] + tiny.sigma(i) * q[d + i];
    }
    let mut each = vec![0.0; 3 * d];
    model.eps_hat_each(&q, &states, &mut each);
    for (k, st) in states.iter().enumerate() {
        let mut one = vec![0.0; d];
        model.eps_hat(&q[k * d..(k + 1) * d], st, None, &mut one);
        for i in 0..d {
            let (x, y) = (each[k * d + i], one[i]);
            assert!(
                (x - y).abs() <= 1e-9 * (1.0 + y.abs()),
                "row {k}: {x} vs {y}"
            );
        }
    }
}

#[test]
fn empirical_score_stays_finite_and_exact_at_tiny_noise() {
    // gamma = -40: sigma^2 ~ 4e-18. The query sits near training point 2: eps_hat must be the
    // exact (chi - alpha chi^2) / sigma, which an expanded-dot-product form would lose.
    let d = 4;
    let train = gaussian_vec(5 * d, 8);
    let model = EmpiricalScore::new(d, train.clone()).unwrap();
    let st = NoisingState::new(0.0, vec![-40.0; d], vec![1.0; d]);
    let noise = gaussian_vec(d, 9);
    let q: Vec<f64> = (0..d)
        .map(|i| st.alpha(i) * train[2 * d + i] + st.sigma(i) * noise[i])
        .collect();
    let mut eps = vec![0.0; d];
    model.eps_hat(&q, &st, None, &mut eps);
    for i in 0..d {
        assert!((eps[i] - noise[i]).abs() < 1e-3, "{eps:?} vs {noise:?}");
    }
}

#[test]
fn smoothed_with_zero_scale_is_empirical_and_rejects_bad_parameters() {
    let d = 6;
    let train = gaussian_vec(12 * d, 11);
    let emp = EmpiricalScore::new(d, train.clone()).unwrap();
    let smooth = SmoothedScore::new(emp.clone(), 0.0, 3, 0).unwrap();
    let st = state(d, 12);
    let q = gaussian_vec(2 * d, 13);
    let (mut a, mut b) = (vec![0.0; 2 * d], vec![0.0; 2 * d]);
    emp.eps_hat(&q, &st, None, &mut a);
    smooth.eps_hat(&q, &st, None, &mut b);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-12);
    }
    assert!(SmoothedScore::new(emp.clone(), -1.0, 3, 0).is_err());
    assert!(SmoothedScore::new(emp, 0.1, 0, 0).is_err());
    assert!(EmpiricalScore::new(d, vec![]).is_err());
    assert!(EmpiricalScore::new(d, vec![0.0, f64::NAN, 0.0, 0.0, 0.0, 0.0]).is_err());
}

/// All circular shifts of (N, C, H, W) images.
fn all_shifts(train: &[f64], shape: Shape) -> Vec<f64> {
    let Shape { c, h, w } = shape;
    let mut out = Vec::new();
    for img in train.chunks_exact(shape.dim()) {
        for sy in 0..h {
            for sx in 0..w {
                for ch in 0..c {
                    for y in 0..h {
                        for x in 0..w {
                            out.push(img[(ch * h + (y + sy) % h) * w + (x + sx) % w]);
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn els_with_a_whole_image_patch_is_empirical_over_all_circular_shifts() {
    for shape in [
        Shape::new(1, 4, 4),
        Shape::new(2, 3, 4),
        Shape::new(1, 5, 3),
    ] {
        let d = shape.dim();
        let train = gaussian_vec(3 * d, 14);
        let side = shape.h.max(shape.w);
        let els = ElsScore::new(shape, train.clone(), PatchRule::Fixed { size: side }).unwrap();
        let emp = EmpiricalScore::new(d, all_shifts(&train, shape)).unwrap();
        let st = state(d, 15);
        let q = gaussian_vec(2 * d, 16);
        let (mut a, mut b) = (vec![0.0; 2 * d], vec![0.0; 2 * d]);
        els.eps_hat(&q, &st, None, &mut a);
        emp.eps_hat(&q, &st, None, &mut b);
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() < 1e-9 * (1.0 + y.abs()),
                "shape {shape}: {x} vs {y}"
            );
        }
    }
}

/// ELS by its definition with explicit modular indices (the oracle of the padded fast path).
fn els_oracle(train: &[f64], shape: Shape, p: usize, st: &NoisingState, q: &[f64]) -> Vec<f64> {
    let Shape { c, h, w } = shape;
    let (ph, pw) = (p.min(h), p.min(w));
    let idx = |ch: usize, y: isize, x: isize| {
        (ch * h + y.rem_euclid(h as isize) as usize) * w + x.rem_euclid(w as isize) as usize
    };
    let mut out = vec![0.0; shape.dim()];
    for y0 in 0..h as isize {
        for x0 in 0..w as isize {
            let mut logits = Vec::new();
            let mut centres = Vec::new();
            for img in train.chunks_exact(shape.dim()) {
                for y1 in 0..h as isize {
                    for x1 in 0..w as isize {
                        let mut dist = 0.0;
                        for ch in 0..c {
                            for dy in -((ph / 2) as isize)..(ph - ph / 2) as isize {
                                for dx in -((pw / 2) as isize)..(pw - pw / 2) as isize {
                                    let i = idx(ch, y0 + dy, x0 + dx);
                                    let e = q[i] - st.alpha(i) * img[idx(ch, y1 + dy, x1 + dx)];
                                    dist += e * e / (2.0 * st.sigma_sq()[i]);
                                }
                            }
                        }
                        logits.push(-dist);
                        centres.push((0..c).map(|ch| img[idx(ch, y1, x1)]).collect::<Vec<_>>());
                    }
                }
            }
            let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
            for ch in 0..c {
                let chi0: f64 = logits
                    .iter()
                    .zip(&centres)
                    .map(|(l, cv)| (l - m).exp() / z * cv[ch])
                    .sum();
                let i = idx(ch, y0, x0);
                out[i] = eps_from_chi0(q[i], chi0, st.alpha(i), st.sigma(i));
            }
        }
    }
    out
}

#[test]
fn els_matches_its_definition_for_small_patches() {
    for (shape, p) in [
        (Shape::new(2, 5, 4), 3),
        (Shape::new(1, 4, 6), 2),
        (Shape::new(1, 3, 3), 1),
    ] {
        let d = shape.dim();
        let train = gaussian_vec(2 * d, 17);
        let els = ElsScore::new(shape, train.clone(), PatchRule::Fixed { size: p }).unwrap();
        let st = state(d, 18);
        let q = gaussian_vec(d, 19);
        let mut a = vec![0.0; d];
        els.eps_hat(&q, &st, None, &mut a);
        let b = els_oracle(&train, shape, p, &st, &q);
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() < 1e-9 * (1.0 + y.abs()),
                "shape {shape} patch {p}: {x} vs {y}"
            );
        }
    }
}

#[test]
fn patch_rules_parse_and_grow_with_noise() {
    let grow: PatchRule = "grow".parse().unwrap();
    let quiet = NoisingState::new(0.0, vec![-20.0; 16], vec![0.0; 16]);
    let loud = NoisingState::new(1.0, vec![20.0; 16], vec![0.0; 16]);
    assert_eq!(grow.size(&quiet, 8), 3);
    assert_eq!(grow.size(&loud, 8), 8);
    let table: PatchRule = "table:-2=3,0=5,9=7".parse().unwrap();
    assert_eq!(table.size(&quiet, 8), 3);
    assert_eq!(
        table.size(&NoisingState::new(0.5, vec![-1.0; 4], vec![0.0; 4]), 8),
        5
    );
    assert_eq!(table.size(&loud, 8), 7);
    assert_eq!(
        "fixed:5".parse::<PatchRule>().unwrap(),
        PatchRule::Fixed { size: 5 }
    );
    assert_eq!(
        "grow:1:5".parse::<PatchRule>().unwrap(),
        PatchRule::Grow {
            min: 1,
            max: Some(5)
        }
    );
    for bad in ["", "grow:x", "fixed:0", "table:1=3,0=5", "table:", "huge"] {
        assert!(
            bad.parse::<PatchRule>().is_err(),
            "{bad:?} should not parse"
        );
    }
}

#[test]
fn issue34_a_patch_rule_reads_back_as_it_was_written() {
    for text in ["grow:3", "grow:1:5", "fixed:4", "table:0.5=3,2=7"] {
        let rule: crate::score::PatchRule = text.parse().unwrap();
        assert_eq!(rule.to_string(), text);
    }
    let e = "fixed:0"
        .parse::<crate::score::PatchRule>()
        .unwrap_err()
        .to_string();
    assert!(e.contains("fixed:0") && !e.contains("Fixed"), "{e}");
}
