//! Figures of a fitted design: schedule curves and forward-process strips.

use anyhow::Result;
use gud_core::basis::ComponentInfo;
use gud_core::process::forward_with_noise;
use gud_core::{Design, Field};
use gud_io::figures::{Colormap, Panel, ScheduleCurve};
use rand_distr::{Distribution, StandardNormal};

fn label(i: usize, info: &ComponentInfo) -> String {
    if let Some(m) = info.momentum {
        format!("|k_hat|={:.2} n=({},{})", m.k_hat(), m.n[0], m.n[1])
    } else if let Some(w) = info.wavelet {
        let pos = info.position.unwrap_or([0.0, 0.0]);
        format!("level {} col {:.1}", w.level, pos[1])
    } else if let Some(pos) = info.position {
        format!("pixel ({:.0},{:.0})", pos[0], pos[1])
    } else {
        format!("component {i}")
    }
}

/// `count` components spread over the generation order (by log SNR at mid-time), first
/// generated first.
pub fn spread_components(design: &Design, count: usize) -> Vec<usize> {
    let (t0, t1) = design.schedule().t_range();
    let st = design.state(0.5 * (t0 + t1));
    let mut order: Vec<usize> = (0..design.dim()).collect();
    order.sort_by(|&a, &b| {
        st.log_snr_data(b, design.sigma_data())
            .total_cmp(&st.log_snr_data(a, design.sigma_data()))
    });
    let count = count.clamp(1, order.len());
    let mut picked: Vec<usize> = (0..count)
        .map(|k| {
            order[if count == 1 {
                0
            } else {
                k * (order.len() - 1) / (count - 1)
            }]
        })
        .collect();
    picked.dedup();
    picked
}

/// Curves over a 200-point grid of the schedule's time range.
pub fn schedule_curves(design: &Design, components: &[usize]) -> (Vec<f64>, Vec<ScheduleCurve>) {
    let (t0, t1) = design.schedule().t_range();
    let t: Vec<f64> = (0..200)
        .map(|k| t0 + (t1 - t0) * k as f64 / 199.0)
        .collect();
    let states: Vec<_> = t.iter().map(|&x| design.state(x)).collect();
    let info = design.basis().components();
    let curves = components
        .iter()
        .map(|&i| ScheduleCurve {
            label: label(i, &info[i]),
            sigma: states.iter().map(|s| s.sigma(i)).collect(),
            gamma: states.iter().map(|s| s.gamma()[i]).collect(),
            log_snr: states
                .iter()
                .map(|s| s.log_snr_data(i, design.sigma_data()))
                .collect(),
        })
        .collect();
    (t, curves)
}

/// phi_t = U^T S (alpha_t chi_0 + sigma_t eps) + mu at each time, one eps for all times.
pub fn forward_strip(
    design: &Design,
    phi0: &[f64],
    times: &[f64],
    seed: u64,
) -> Result<Vec<Panel>> {
    let chi0 = design.field_to_whitened(&Field(phi0.to_vec()))?;
    let mut rng = gud_core::rng::stream(seed, gud_core::rng::Purpose::Figure, 0);
    let eps: Vec<f64> = (0..design.dim())
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let (t0, t1) = design.schedule().t_range();
    let shape = design.shape();
    times
        .iter()
        .map(|&t| {
            let t = t.clamp(t0, t1);
            let st = design.state(t);
            let phi = design.whitened_to_field(&forward_with_noise(&st, &chi0, &eps))?;
            Ok(Panel {
                caption: format!("t = {t:.2}, <gamma> = {:.1}", st.mean_gamma()),
                channels: shape.c,
                height: shape.h,
                width: shape.w,
                data: phi.0,
            })
        })
        .collect()
}

/// The colour map of a data set's figures: grey for images (quantised data), blue-white-red
/// for signed fields (lattices).
pub fn colormap(data: &gud_core::Dataset) -> Colormap {
    if data.quantization().is_some() {
        Colormap::Grey
    } else {
        Colormap::Diverging
    }
}

/// A grid of the first `max` samples of a data set (square-ish, shared colour scale, a colour
/// bar; `map` for one channel).
pub fn sample_grid(
    path: &std::path::Path,
    title: &str,
    data: &gud_core::Dataset,
    max: usize,
    map: Colormap,
) -> Result<()> {
    let s = data.shape();
    let n = data.len().min(max).max(1);
    let panels: Vec<Panel> = data
        .samples()
        .take(n)
        .enumerate()
        .map(|(k, x)| Panel {
            caption: format!("#{k}"),
            channels: s.c,
            height: s.h,
            width: s.w,
            data: x.to_vec(),
        })
        .collect();
    // about as many rows as columns of pixels overall: wide images stack in more rows
    let aspect = s.w as f64 / s.h as f64;
    let rows = ((n as f64 * aspect).sqrt().floor() as usize).clamp(1, n);
    gud_io::figures::plot_panels(path, title, rows, &panels, None, map)?;
    Ok(())
}
