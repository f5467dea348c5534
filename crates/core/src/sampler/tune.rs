//! Tuned time grids (SPEC section 5: "all samplers take a time grid"): the K grid points of a
//! deterministic sampler placed where the trajectories need them.
//!
//! A deterministic sampler (`exp`, `ode`) is a map from the prior draw to a sample; on a coarse
//! grid it differs from the map of a fine grid by the discretisation error. The tuner fixes the
//! first point (t_max, where the prior is drawn) and the last (t_min), and moves the K - 2
//! interior points to minimise that error on a pilot batch of prior draws:
//!
//! ```text
//! E(t_1 .. t_{K-2}) = (1/n) sum_k sum_i w_i (x_K(z_k)_i - x_ref(z_k)_i)^2 / sum_i w_i
//! ```
//!
//! with x_ref the same sampler on a uniform grid of many points and w_i the caller's weights
//! (S_i^2 makes E the mean squared error per site in phi-space). The interior points are
//! parametrised by the logarithms of the K - 1 step lengths (so the grid stays decreasing; past
//! [`MAX_KNOTS`] steps, a log step density linear between that many knots) and
//! found by a pattern search from the uniform grid; every trial costs one pass of the pilot
//! batch (n (K - 1) evaluations for `exp`).

use super::{draw_prior, Plan, SamplerConfig, SamplerKind};
use crate::error::{Error, Result};
use crate::rng::{stream, Purpose};
use crate::schedule::Schedule;
use crate::score::ScoreModel;
use rayon::prelude::*;
use serde::Serialize;

/// What the tuner does.
#[derive(Debug, Clone, PartialEq)]
pub struct GridTuning {
    /// Grid points K of the tuned grid (at least 2).
    pub points: usize,
    /// Prior draws the error is measured on.
    pub pilot: usize,
    /// Grid points of the uniform reference grid (more than `points`).
    pub reference_points: usize,
    /// Seed of the pilot's prior draws (stream (seed, grid tuning, k)).
    pub seed: u64,
    /// Most trial grids evaluated.
    pub max_trials: usize,
}

impl Default for GridTuning {
    fn default() -> Self {
        GridTuning {
            points: 10,
            pilot: 256,
            reference_points: 200,
            seed: 0,
            max_trials: 200,
        }
    }
}

/// A tuned grid and what it gains.
#[derive(Debug, Clone, Serialize)]
pub struct TunedGrid {
    /// The grid, from t_max down to t_min.
    pub times: Vec<f64>,
    /// Root of E on the tuned grid.
    pub rms_error: f64,
    /// Root of E on the uniform-t grid of the same points.
    pub uniform_rms_error: f64,
    /// Root of E for the uniform grid of half the reference's points: how far the reference
    /// itself is from converged (its own error is about this / 2^order).
    pub reference_rms_error: f64,
    /// Trial grids evaluated (each one pass of the pilot).
    pub trials: usize,
    /// Whether the caller stopped the search early (the grid is the best found by then).
    pub stopped: bool,
}

/// Largest |u|: step lengths within a factor e^{2 U_MAX} of each other, far from underflow.
const U_MAX: f64 = 5.0;

/// Most free parameters of the search: grids of more points get a smooth step density.
pub const MAX_KNOTS: usize = 9;

/// The `points`-point grid from `t_max` to `t_min` whose step j has a length proportional to
/// `exp(g(x_j))`, x_j = (j + 1/2) / (points - 1), with g interpolated linearly through the
/// values `u` (clamped to +-[`U_MAX`]) at the knots (i + 1/2) / u.len(): one knot per step when
/// u.len() = points - 1.
fn grid_of(u: &[f64], points: usize, t_max: f64, t_min: f64) -> Vec<f64> {
    let steps = points - 1;
    let m = u.len();
    let w: Vec<f64> = (0..steps)
        .map(|j| {
            let p = ((j as f64 + 0.5) / steps as f64 * m as f64 - 0.5).clamp(0.0, (m - 1) as f64);
            let (i, f) = (p.floor() as usize, p.fract());
            let g = if i + 1 < m {
                (1.0 - f) * u[i] + f * u[i + 1]
            } else {
                u[i]
            };
            g.clamp(-U_MAX, U_MAX).exp()
        })
        .collect();
    let total: f64 = w.iter().sum();
    let mut times = Vec::with_capacity(points);
    let mut acc = 0.0;
    times.push(t_max);
    for (j, wj) in w.iter().enumerate() {
        acc += wj;
        times.push(if j + 1 == w.len() {
            t_min
        } else {
            t_max + (t_min - t_max) * acc / total
        });
    }
    times
}

/// Tunes the `tuning.points` grid points of `sampler` (kind and order; its own grid is not used)
/// with `score`, on the schedule's range: see the module docs. `trial` hears (trials so far,
/// best rms error) after every trial and returns whether to go on.
pub fn tune_grid(
    schedule: &dyn Schedule,
    sigma_data: &[f64],
    score: &dyn ScoreModel,
    sampler: &SamplerConfig,
    weights: &[f64],
    tuning: &GridTuning,
    trial: &mut dyn FnMut(usize, f64) -> bool,
) -> Result<TunedGrid> {
    let d = sigma_data.len();
    if !matches!(sampler.kind, SamplerKind::Exp | SamplerKind::Ode) {
        return Err(Error::param(
            "sampler.kind",
            format!("{:?}", sampler.kind).to_lowercase(),
            "a deterministic sampler (exp or ode): a tuned grid compares maps of the prior draw",
        ));
    }
    sampler.check()?;
    if tuning.max_trials == 0 {
        return Err(Error::param(
            "max_trials",
            0,
            "at least 1 trial (0 would return the untuned grid)",
        ));
    }
    if tuning.points < 2 {
        return Err(Error::param(
            "steps",
            tuning.points,
            "at least 2 grid points",
        ));
    }
    if tuning.reference_points <= tuning.points {
        return Err(Error::param(
            "reference_steps",
            tuning.reference_points,
            &format!("more than the tuned grid's {} points", tuning.points),
        ));
    }
    if tuning.pilot == 0 {
        return Err(Error::param("pilot", 0, "at least 1 prior draw"));
    }
    if weights.len() != d
        || weights.iter().any(|w| !w.is_finite() || *w < 0.0)
        || weights.iter().sum::<f64>() <= 0.0
    {
        return Err(Error::param(
            "weights",
            format!("{} values", weights.len()),
            &format!("{d} finite non-negative weights, not all zero"),
        ));
    }
    crate::memory::check_alloc("the grid tuner's pilot", &[3, tuning.pilot, d], 8)?;
    // the reference plan holds a noising state (gamma, alpha^2, sigma^2) and rho per point
    crate::memory::check_alloc(
        "the grid tuner's reference grid",
        &[tuning.reference_points, 6, d],
        8,
    )?;
    let (t_min, t_max) = schedule.t_range();
    let n = tuning.pilot;
    let mut z = vec![0.0; n * d];
    z.par_chunks_mut(d).enumerate().for_each(|(k, x)| {
        draw_prior(&mut stream(tuning.seed, Purpose::GridTuning, k as u64), x);
    });
    let built = sampler.build();
    let run = |times: Vec<f64>| -> Result<Vec<f64>> {
        let plan = Plan::from_times(schedule, sigma_data, times, None)?;
        let mut x = z.clone();
        // deterministic samplers never draw: the streams are placeholders
        let mut rngs: Vec<_> = (0..n)
            .map(|k| stream(tuning.seed, Purpose::GridTuning, (n + k) as u64))
            .collect();
        built.run(&plan, score, &mut x, &mut rngs, &mut |_| {});
        Ok(x)
    };
    let uniform = |points: usize| grid_of(&[0.0], points, t_max, t_min);
    let reference = run(uniform(tuning.reference_points))?;
    let w_total: f64 = weights.iter().sum();
    let rms = |x: &[f64]| -> f64 {
        let sq: f64 = x
            .par_chunks(d)
            .zip(reference.par_chunks(d))
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .zip(weights)
                    .map(|((p, q), w)| w * (p - q) * (p - q))
                    .sum::<f64>()
            })
            .sum();
        let e = (sq / (n as f64 * w_total)).sqrt();
        if e.is_finite() {
            e
        } else {
            f64::INFINITY
        }
    };
    let reference_rms_error = rms(&run(uniform(tuning.reference_points / 2 + 1))?);
    let points = tuning.points;
    let mut u = vec![0.0; (points - 1).min(MAX_KNOTS)];
    let mut best = rms(&run(grid_of(&u, points, t_max, t_min))?);
    let uniform_rms_error = best;
    if !best.is_finite() {
        return Err(Error::param(
            "score",
            "non-finite samples",
            "a score whose samples on the uniform grid are finite (nothing to tune against)",
        ));
    }
    let mut trials = 1;
    let mut stopped = !trial(trials, best);
    // pattern search on the log step lengths: a move that lowers E is kept (and repeated), the
    // step halves when no coordinate improves
    let (mut step, min_step) = (0.5, 0.03);
    while step >= min_step && trials < tuning.max_trials && u.len() > 1 && !stopped {
        let mut improved = false;
        for j in 0..u.len() {
            for s in [step, -step] {
                // a move that helps is repeated while it helps
                let mut moved = false;
                while trials < tuning.max_trials && !stopped {
                    let mut v = u.clone();
                    v[j] += s;
                    let e = rms(&run(grid_of(&v, points, t_max, t_min))?);
                    trials += 1;
                    let better = e < best;
                    if better {
                        (u, best, improved, moved) = (v, e, true, true);
                    }
                    stopped = !trial(trials, best);
                    if !better {
                        break;
                    }
                }
                if moved {
                    break;
                }
            }
        }
        if !improved {
            step *= 0.5;
        }
    }
    Ok(TunedGrid {
        times: grid_of(&u, points, t_max, t_min),
        rms_error: best,
        uniform_rms_error,
        reference_rms_error,
        trials,
        stopped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BaseConfig, DesignConfig, MeanMode, MixtureConfig, PriorConfig};
    use crate::field::{Dataset, Shape};
    use crate::free_field::free_field_samples;
    use crate::score::{GaussianScore, MixtureScore};
    use crate::testutil::gaussian_vec;
    use crate::Design;

    /// 4 x 4 fields whose mean is bimodal (+-1.6, variance 0.2: what `exp` needs many steps
    /// for) under white noise of std 0.3, with the mixture base fitted to the zero mode.
    fn bimodal_design() -> Design {
        let n = 2000;
        let (z, m) = (gaussian_vec(n * 16, 5), gaussian_vec(n, 6));
        let data: Vec<f64> = z
            .chunks_exact(16)
            .zip(&m)
            .enumerate()
            .flat_map(|(k, (row, mk))| {
                let mean = if k % 2 == 0 { 1.6 } else { -1.6 } + 0.2f64.sqrt() * mk;
                row.iter().map(move |v| mean + 0.3 * v).collect::<Vec<_>>()
            })
            .collect();
        let data = Dataset::new(Shape::new(1, 4, 4), data).unwrap();
        let cfg = DesignConfig {
            mean: MeanMode::Zero,
            prior: PriorConfig::White {},
            base: BaseConfig::Mixture(MixtureConfig::default()),
            ..DesignConfig::default()
        };
        Design::fit(&cfg, &data).unwrap()
    }

    fn exp(order: usize) -> SamplerConfig {
        SamplerConfig {
            order,
            ..SamplerConfig::default()
        }
    }

    fn tuning(points: usize) -> GridTuning {
        GridTuning {
            points,
            pilot: 64,
            reference_points: 120,
            seed: 3,
            max_trials: 80,
        }
    }

    fn weights(design: &Design) -> Vec<f64> {
        design.scale().iter().map(|s| s * s).collect()
    }

    /// The tuner on the bimodal design's mixture score with `exp` of order 3.
    fn tune_bimodal(
        design: &Design,
        tuning: &GridTuning,
        trial: &mut dyn FnMut(usize, f64) -> bool,
    ) -> TunedGrid {
        let score = MixtureScore::new(design.base().clone());
        tune_grid(
            design.schedule(),
            design.sigma_data(),
            &score,
            &exp(3),
            &weights(design),
            tuning,
            trial,
        )
        .unwrap()
    }

    #[test]
    fn a_tuned_grid_beats_the_uniform_one_on_a_bimodal_zero_mode() {
        let design = bimodal_design();
        let (t_min, t_max) = design.schedule().t_range();
        let mut heard = 0;
        let tuned = tune_bimodal(&design, &tuning(10), &mut |_, _| {
            heard += 1;
            true
        });
        let t = &tuned.times;
        assert_eq!((t.len(), t[0], t[9]), (10, t_max, t_min));
        assert!(t.windows(2).all(|w| w[1] < w[0]), "{t:?}");
        assert_eq!(heard, tuned.trials);
        assert!(!tuned.stopped);
        // the reference is converged far below the errors compared
        assert!(
            tuned.reference_rms_error < 0.1 * tuned.rms_error,
            "{tuned:?}"
        );
        assert!(
            tuned.rms_error < 0.5 * tuned.uniform_rms_error,
            "tuned {} vs uniform {}",
            tuned.rms_error,
            tuned.uniform_rms_error
        );
        // deterministic: the same pilot and search give the same grid and errors
        let again = tune_bimodal(&design, &tuning(10), &mut |_, _| true);
        assert_eq!(again.times, tuned.times);
        assert_eq!(again.rms_error, tuned.rms_error);
        // a caller's stop ends the search at once with the best grid so far
        let stopped = tune_bimodal(&design, &tuning(10), &mut |done, _| done < 3);
        assert!(stopped.stopped && stopped.trials == 3, "{stopped:?}");
        assert!(stopped.rms_error >= tuned.rms_error);
    }

    #[test]
    fn the_gaussian_score_is_exact_on_every_grid_so_its_errors_are_round_off() {
        // SPEC 5: exp integrates the Gaussian part exactly, so every grid gives the same map
        let data = free_field_samples(4, 0.5, 2000, 1).unwrap();
        let design = Design::fit(
            &DesignConfig {
                mean: MeanMode::Zero,
                ..DesignConfig::default()
            },
            &data,
        )
        .unwrap();
        let score = GaussianScore::new(design.sigma_data().to_vec());
        let tuned = tune_grid(
            design.schedule(),
            design.sigma_data(),
            &score,
            &exp(2),
            &weights(&design),
            &GridTuning {
                max_trials: 5,
                ..tuning(4)
            },
            &mut |_, _| true,
        )
        .unwrap();
        assert!(tuned.uniform_rms_error < 1e-12, "{tuned:?}");
        assert!(tuned.reference_rms_error < 1e-12, "{tuned:?}");
    }

    #[test]
    fn bad_tuning_requests_name_what_was_expected() {
        let design = bimodal_design();
        let score = MixtureScore::new(design.base().clone());
        let w = weights(&design);
        let go = |sampler: &SamplerConfig, t: &GridTuning, w: &[f64]| {
            tune_grid(
                design.schedule(),
                design.sigma_data(),
                &score,
                sampler,
                w,
                t,
                &mut |_, _| true,
            )
            .unwrap_err()
            .to_string()
        };
        let sde = SamplerConfig {
            kind: SamplerKind::Sde,
            ..SamplerConfig::default()
        };
        assert!(go(&sde, &tuning(5), &w).contains("sampler.kind"));
        assert!(go(&exp(3), &tuning(1), &w).contains("steps"));
        let short = GridTuning {
            reference_points: 5,
            ..tuning(5)
        };
        assert!(go(&exp(3), &short, &w).contains("reference_steps"));
        let huge = GridTuning {
            reference_points: usize::MAX / 2,
            ..tuning(5)
        };
        assert!(go(&exp(3), &huge, &w).contains("reference grid"));
        let none = GridTuning {
            pilot: 0,
            ..tuning(5)
        };
        assert!(go(&exp(3), &none, &w).contains("pilot"));
        assert!(go(&exp(3), &tuning(5), &w[1..]).contains("weights"));
        let mut nan = w.clone();
        nan[2] = f64::NAN;
        assert!(go(&exp(3), &tuning(5), &nan).contains("weights"));
    }

    #[test]
    fn log_step_lengths_give_a_decreasing_grid_with_fixed_ends() {
        let t = grid_of(&[0.0, 0.0, 0.0, 0.0], 5, 1.0, 0.0);
        assert_eq!(t, vec![1.0, 0.75, 0.5, 0.25, 0.0]);
        let t = grid_of(&[3.0, -2.0, 0.5, 700.0, -1e300], 6, 0.9, 0.1);
        assert_eq!((t[0], t[5]), (0.9, 0.1));
        assert!(t.windows(2).all(|w| w[1] < w[0]), "{t:?}");
        // one knot per step: step lengths e^u; fewer knots: a smooth density
        let t = grid_of(&[0.0, 2f64.ln()], 3, 3.0, 0.0);
        assert!((t[1] - 2.0).abs() < 1e-12, "{t:?}");
        let t = grid_of(&[0.0, 0.0, 0.0], 41, 1.0, 0.0);
        assert!((t[20] - 0.5).abs() < 1e-12, "{t:?}");
        let t = grid_of(&[-1.0, 0.0, 1.0], 41, 1.0, 0.0);
        let steps: Vec<f64> = t.windows(2).map(|w| w[0] - w[1]).collect();
        assert!(steps.windows(2).all(|s| s[1] >= s[0] - 1e-15), "{steps:?}");
    }
}
