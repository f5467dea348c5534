//! Image extension by a sliding window (GUD section 5.2, fig. 7): a model of W-wide images with
//! the `sequential` column schedule generates images of any width >= W.
//!
//! With `tau_c = tau_max (1 - c / (W - 1))` the state of window column c at time t depends only
//! on `t - tau_c`, so moving the window right by s columns maps the state of column c at time
//! t_a to the state of column c - s at `t_a + s Delta`, `Delta = tau_max / (W - 1)`. One period:
//! the columns 0..s are frozen at t_a (gamma = g_lo, beta = 0 exactly) and leave the window
//! after one denoising jump; the rest shift left; s new columns enter from the prior N(0, I)
//! (they are pure noise, gamma = g_hi, at t_a + s Delta); the sampler integrates from
//! `t_a + s Delta` back to t_a. That needs `1 - tau_max - Delta <= t_a <= tau_max - (s-1) Delta`:
//! the active band must fit in the window. We take the lower end (not below t_min), which keeps
//! the most finished columns in the window as context. The window state moves by copies, so a
//! frozen column never changes (bit for bit) until it leaves.
//!
//! The window is the design's shape; mean and prior scale are those of the window position a
//! column occupies (exact for stationary statistics: zero mean and the `white` prior).

use crate::design::Design;
use crate::error::{Error, Result};
use crate::sampler::SamplerConfig;
use crate::sampler::{final_jump, Plan, Projection, Sampler, StepInfo};
use crate::schedule::ordering::OrderingKind;
use crate::schedule::ScheduleConfig;
use crate::score::ScoreModel;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

/// The timing of the sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sliding {
    /// Window width W and the shift s per period.
    pub window: usize,
    /// Columns the window moves per period.
    pub stride: usize,
    /// tau_max, the time per column Delta, and the period's end time t_a.
    pub tau_max: f64,
    /// Time offset between adjacent columns.
    pub delta: f64,
    /// The time at which a column enters the window.
    pub t_a: f64,
    /// Sampler steps per period, before the first shift and after the last.
    pub steps_per_period: usize,
    /// Sampler steps before the first period.
    pub steps_first: usize,
    /// Sampler steps after the last period.
    pub steps_last: usize,
}

impl Sliding {
    /// Timing for `design` (pixel basis, sequential schedule with the column ordering).
    pub fn new(design: &Design, stride: usize, steps_per_period: usize) -> Result<Self> {
        let ScheduleConfig::Sequential(c) = &design.resolved_config().schedule else {
            return Err(Error::param(
                "schedule.kind",
                design.schedule().name(),
                "`sequential` with ordering = \"column\" (image extension slides over columns)",
            ));
        };
        if c.ordering != OrderingKind::Column || design.basis().name() != "pixel" {
            return Err(Error::param(
                "schedule.ordering",
                format!(
                    "\"{}\" in the {} basis",
                    c.ordering.name(),
                    design.basis().name()
                ),
                "`column` in the pixel basis",
            ));
        }
        let w = design.shape().w;
        if w < 2 {
            return Err(Error::param("window width", w, "at least 2 columns"));
        }
        if stride == 0 || stride >= w || steps_per_period == 0 {
            return Err(Error::param(
                "stride / steps",
                format!("{stride} / {steps_per_period}"),
                &format!("a stride in 1..{w} and at least one step per period"),
            ));
        }
        let tau_max = (1.0 / c.softness).min(0.99);
        let delta = tau_max / (w - 1) as f64;
        let (t_min, t_max) = design.schedule().t_range();
        let t_a = (1.0 - tau_max - delta).max(t_min);
        if t_a > tau_max - (stride - 1) as f64 * delta + 1e-12 {
            return Err(Error::param(
                "schedule.softness",
                c.softness,
                &format!(
                    "a value for which the active band fits in the {w}-column window with stride \
                     {stride} (here tau_max = {tau_max:.3}: need 1 - tau_max - Delta <= \
                     tau_max - (stride - 1) Delta); use a smaller softness or stride"
                ),
            ));
        }
        let dt = stride as f64 * delta / steps_per_period as f64;
        Ok(Sliding {
            window: w,
            stride,
            tau_max,
            delta,
            t_a,
            steps_per_period,
            steps_first: ((t_max - t_a) / dt).ceil().max(1.0) as usize,
            steps_last: ((t_a - t_min) / dt).ceil().max(1.0) as usize,
        })
    }

    /// Periods needed for an output of `width` columns (width - W must be a multiple of s).
    pub fn periods(&self, width: usize) -> Result<usize> {
        if width < self.window || !(width - self.window).is_multiple_of(self.stride) {
            return Err(Error::param(
                "width",
                width,
                &format!(
                    "the window width {} plus a multiple of the stride {}",
                    self.window, self.stride
                ),
            ));
        }
        Ok((width - self.window) / self.stride)
    }

    /// Score evaluations per sample for an output of `width` columns.
    pub fn nfe(&self, sampler: &dyn Sampler, width: usize) -> Result<usize> {
        let p = self.periods(width)?;
        let steps = self.steps_first + p * self.steps_per_period + self.steps_last;
        // one jump per period for the leaving columns, one final jump
        Ok(sampler.evals_per_step() * steps + p + 1)
    }
}

/// What the observer of an extension hears: every sampler step, and the window after the
/// first stretch and after every period.
pub enum ExtendEvent<'a> {
    /// A sampler step of a window.
    Step(StepInfo),
    /// The absolute column of window column 0, the time (t_a), the window states (n, d).
    Window {
        /// Column offset of the window.
        offset: usize,
        /// Time of the window's state.
        t: f64,
        /// The window's state (whitened, (n, d)).
        chi: &'a [f64],
    },
}

/// `count` images of `width` columns (fields, (count, C, H, width) row-major), sample k from
/// stream `first + k` of `seed`, integrated together.
pub fn extend(
    design: &Design,
    score: &dyn ScoreModel,
    sampler_config: &SamplerConfig,
    sliding: &Sliding,
    width: usize,
    seed: u64,
    first: u64,
    count: usize,
    observer: &mut dyn FnMut(ExtendEvent<'_>),
) -> Result<Vec<f64>> {
    let periods = sliding.periods(width)?;
    let shape = design.shape();
    let (d, w, rows) = (design.dim(), shape.w, shape.c * shape.h);
    crate::memory::check_alloc(
        &format!("{count} extended samples of {rows} x {width}"),
        &[count, rows, width],
        8,
    )?;
    let sampler = sampler_config.build();
    let projection = Projection::from_config(&sampler_config.projection)?;
    let plan = |t_hi: f64, t_lo: f64, steps: usize| {
        let times = (0..=steps)
            .map(|j| t_hi + (t_lo - t_hi) * j as f64 / steps as f64)
            .collect();
        Plan::from_times(design.schedule(), design.sigma_data(), times, projection)
    };
    let s = sliding.stride;
    let (t_min, t_max) = design.schedule().t_range();
    let t_a = sliding.t_a;
    let first_plan = plan(t_max, t_a, sliding.steps_first)?;
    let period_plan = plan(
        t_a + s as f64 * sliding.delta,
        t_a,
        sliding.steps_per_period,
    )?;
    let last_plan = plan(t_a, t_min, sliding.steps_last)?;
    let mut rngs: Vec<ChaCha8Rng> = (0..count as u64)
        .map(|k| crate::rng::stream(seed, crate::rng::Purpose::Extension, first + k))
        .collect();
    let mut chi: Vec<f64> = Vec::with_capacity(count * d);
    for rng in rngs.iter_mut() {
        chi.extend((0..d).map(|_| normal(rng)));
    }
    let mut out = crate::memory::zeros("the extended samples", &[count, rows, width])?;
    let mut on_step = |info: StepInfo| observer(ExtendEvent::Step(info));
    sampler.steps(&first_plan, score, &mut chi, &mut rngs, &mut on_step);
    let window = |offset, chi: &[f64], observer: &mut dyn FnMut(ExtendEvent<'_>)| {
        observer(ExtendEvent::Window {
            offset,
            t: t_a,
            chi,
        })
    };
    window(0, &chi, observer);
    for p in 0..periods {
        // the leaving columns: one denoising jump, then into the output
        let mut chi0 = chi.clone();
        final_jump(
            &period_plan,
            score,
            &mut chi0,
            &mut rngs,
            sampler.final_variance(),
        );
        let fields = design.whitened_batch_to_fields(&chi0);
        write_columns(&fields, &mut out, (rows, w, width), 0..s, p * s);
        shift(&mut chi, &mut rngs, (rows, w), s);
        let mut on_step = |info: StepInfo| observer(ExtendEvent::Step(info));
        sampler.steps(&period_plan, score, &mut chi, &mut rngs, &mut on_step);
        window((p + 1) * s, &chi, observer);
    }
    let mut on_step = |info: StepInfo| observer(ExtendEvent::Step(info));
    sampler.run(&last_plan, score, &mut chi, &mut rngs, &mut on_step);
    let fields = design.whitened_batch_to_fields(&chi);
    write_columns(&fields, &mut out, (rows, w, width), 0..w, periods * s);
    Ok(out)
}

/// Moves window columns s.. to 0.. and draws the s new columns from N(0, I).
fn shift(chi: &mut [f64], rngs: &mut [ChaCha8Rng], (rows, w): (usize, usize), s: usize) {
    for (x, rng) in chi.chunks_exact_mut(rows * w).zip(rngs) {
        for row in x.chunks_exact_mut(w) {
            row.copy_within(s.., 0);
            for v in &mut row[w - s..] {
                *v = StandardNormal.sample(rng);
            }
        }
    }
}

/// Copies window columns `cols` of each sample into the output at absolute column `at`.
fn write_columns(
    fields: &[f64],
    out: &mut [f64],
    (rows, w, width): (usize, usize, usize),
    cols: std::ops::Range<usize>,
    at: usize,
) {
    for (f, o) in fields
        .chunks_exact(rows * w)
        .zip(out.chunks_exact_mut(rows * width))
    {
        for r in 0..rows {
            for (k, c) in cols.clone().enumerate() {
                o[r * width + at + k] = f[r * w + c];
            }
        }
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    StandardNormal.sample(rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DesignConfig;
    use crate::free_field::free_field_samples;
    use crate::score::GaussianScore;
    use std::collections::HashMap;

    fn column_design(softness: f64) -> Design {
        let data = free_field_samples(4, 0.5, 512, 3).unwrap();
        let cfg: DesignConfig = toml::from_str(&format!(
            "mean = \"zero\"\nbasis = {{ kind = \"pixel\" }}\nprior = {{ kind = \"white\" }}\n\
             schedule = {{ kind = \"sequential\", ordering = \"column\", softness = {softness} }}"
        ))
        .unwrap();
        Design::fit(&cfg, &data).unwrap()
    }

    #[test]
    fn frozen_columns_never_change_until_they_leave() {
        // softness 1.6, W = 4: tau_max = 0.625, t_a = 1/6; columns 0-2 frozen at t_a, 3 active
        let design = column_design(1.6);
        let score = GaussianScore::new(design.sigma_data().to_vec());
        let sampler = SamplerConfig::default();
        let sliding = Sliding::new(&design, 1, 3).unwrap();
        let (h, w) = (design.shape().h, design.shape().w);
        // window columns frozen at t_a: gamma exactly g_lo
        let gamma = design.state(sliding.t_a).gamma().to_vec();
        let g_lo = gamma.iter().copied().fold(f64::INFINITY, f64::min);
        let frozen: Vec<usize> = (0..w).filter(|&c| gamma[c] == g_lo).collect();
        assert!(!frozen.is_empty() && frozen.len() < w, "frozen {frozen:?}");
        let n = 3;
        let mut seen: HashMap<(usize, usize), Vec<u64>> = HashMap::new();
        let mut checks = 0;
        let mut steps = 0;
        let out = extend(
            &design,
            &score,
            &sampler,
            &sliding,
            4 * w,
            5,
            0,
            n,
            &mut |e| match e {
                ExtendEvent::Step(_) => steps += 1,
                ExtendEvent::Window { offset, chi, .. } => {
                    for k in 0..n {
                        for &c in &frozen {
                            let bits: Vec<u64> = (0..h)
                                .map(|r| chi[k * h * w + r * w + c].to_bits())
                                .collect();
                            match seen.get(&(k, offset + c)) {
                                Some(old) => {
                                    assert_eq!(old, &bits, "sample {k} column {}", offset + c);
                                    checks += 1;
                                }
                                None => {
                                    seen.insert((k, offset + c), bits);
                                }
                            }
                        }
                    }
                }
            },
        )
        .unwrap();
        assert!(checks > 0, "no column was seen frozen twice");
        assert_eq!(out.len(), n * h * 4 * w);
        assert!(out.iter().all(|v| v.is_finite()));
        let expected =
            sliding.steps_first + 3 * w * sliding.steps_per_period + sliding.steps_last + 1;
        assert_eq!(steps, expected, "observer steps");
    }

    #[test]
    fn extension_needs_a_column_schedule_whose_band_fits() {
        let design = column_design(4.0);
        let e = Sliding::new(&design, 1, 3).unwrap_err().to_string();
        assert!(e.contains("softness"), "{e}");
        let data = free_field_samples(4, 0.5, 64, 3).unwrap();
        let other = Design::fit(&DesignConfig::default(), &data).unwrap();
        let e = Sliding::new(&other, 1, 3).unwrap_err().to_string();
        assert!(e.contains("sequential"), "{e}");
        let design = column_design(1.2);
        let s = Sliding::new(&design, 1, 3).unwrap();
        assert!(s.periods(6).is_ok() && s.periods(3).is_err());
    }
}
