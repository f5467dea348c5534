//! The orthonormal multi-level 2-D Haar wavelet basis (SPEC section 1, GUD section 5.3).
//!
//! One decomposition step on an h x w block applies the 1-D Haar step along x (rows) and
//! then along y (columns): pairs (a, b) -> ((a + b)/sqrt2, (a - b)/sqrt2), approximations first.
//! An odd length carries its unpaired last value into the approximation unchanged, which keeps
//! the step orthogonal, so any H x W is accepted. Steps repeat on the approximation block
//! (Mallat layout: component index = position in the transformed array) until it is 1 x 1 or
//! the requested number of levels is reached.
//!
//! Levels: the final approximation is level 0 (coarsest), the details of the last (coarsest)
//! step level 1, ..., the details of the first (finest) step level J.

use super::{Basis, ComponentInfo, WaveletInfo};
use crate::error::{Error, Result};
use crate::field::Shape;
use std::f64::consts::FRAC_1_SQRT_2;

/// Which band a Haar component lies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    /// The scaling (approximation) coefficients.
    Approx,
    /// High-pass along x (columns change), low-pass along y.
    DetailX,
    /// High-pass along y, low-pass along x.
    DetailY,
    /// High-pass along both.
    DetailXY,
}

#[derive(Debug, Clone)]
/// The orthonormal Haar wavelet basis (SPEC section 2).
pub struct HaarBasis {
    shape: Shape,
    /// Block size (h, w) each decomposition step works on, finest first.
    steps: Vec<(usize, usize)>,
    info: Vec<ComponentInfo>,
}

fn half_up(n: usize) -> usize {
    n.div_ceil(2)
}

/// One 1-D Haar analysis step: x (length n) -> approximations then details.
fn step_forward(x: &[f64], y: &mut [f64]) {
    let n = x.len();
    let (half, ah) = (n / 2, half_up(n));
    for i in 0..half {
        y[i] = (x[2 * i] + x[2 * i + 1]) * FRAC_1_SQRT_2;
        y[ah + i] = (x[2 * i] - x[2 * i + 1]) * FRAC_1_SQRT_2;
    }
    if n % 2 == 1 {
        y[half] = x[n - 1];
    }
}

/// Inverse of [`step_forward`].
fn step_inverse(y: &[f64], x: &mut [f64]) {
    let n = y.len();
    let (half, ah) = (n / 2, half_up(n));
    for i in 0..half {
        let (a, d) = (y[i], y[ah + i]);
        x[2 * i] = (a + d) * FRAC_1_SQRT_2;
        x[2 * i + 1] = (a - d) * FRAC_1_SQRT_2;
    }
    if n % 2 == 1 {
        x[n - 1] = y[half];
    }
}

impl HaarBasis {
    /// `levels = None` decomposes until the approximation is 1 x 1.
    pub fn new(shape: Shape, levels: Option<usize>) -> Result<Self> {
        let (mut h, mut w) = (shape.h, shape.w);
        let mut steps = Vec::new();
        while (h > 1 || w > 1) && levels.is_none_or(|l| steps.len() < l) {
            steps.push((h, w));
            h = half_up(h);
            w = half_up(w);
        }
        if let Some(l) = levels {
            if l == 0 || l > steps.len() {
                return Err(Error::UnsupportedShape {
                    basis: "haar",
                    shape: shape.to_string(),
                    reason: format!(
                        "levels = {l} requested, but this shape allows 1 to {} levels",
                        steps.len()
                    ),
                });
            }
        }
        let info = Self::metadata(shape, &steps);
        Ok(HaarBasis { shape, steps, info })
    }

    /// Number of decomposition steps J.
    pub fn levels(&self) -> usize {
        self.steps.len()
    }

    fn metadata(shape: Shape, steps: &[(usize, usize)]) -> Vec<ComponentInfo> {
        let (hh, ww) = (shape.h, shape.w);
        let n_steps = steps.len();
        let (fh, fw) = steps
            .last()
            .map_or((hh, ww), |&(h, w)| (half_up(h), half_up(w)));
        let centre = |i: usize, i0: usize, band: usize, full: usize| {
            (i - i0) as f64 * full as f64 / band as f64 + 0.5 * (full as f64 / band as f64) - 0.5
        };
        let mut spatial = Vec::with_capacity(hh * ww);
        for r in 0..hh {
            for c in 0..ww {
                let mut found = None;
                for (j, &(h, w)) in steps.iter().enumerate() {
                    let (ah, aw) = (half_up(h), half_up(w));
                    if r < ah && c < aw {
                        continue;
                    }
                    let orientation = match (r >= ah, c >= aw) {
                        (false, true) => Orientation::DetailX,
                        (true, false) => Orientation::DetailY,
                        _ => Orientation::DetailXY,
                    };
                    let (r0, bh) = if r >= ah { (ah, h - ah) } else { (0, ah) };
                    let (c0, bw) = if c >= aw { (aw, w - aw) } else { (0, aw) };
                    let pos = [centre(r, r0, bh, hh), centre(c, c0, bw, ww)];
                    found = Some((n_steps - j, orientation, pos));
                    break;
                }
                let (level, orientation, pos) = found.unwrap_or_else(|| {
                    (
                        0,
                        Orientation::Approx,
                        [centre(r, 0, fh, hh), centre(c, 0, fw, ww)],
                    )
                });
                spatial.push((WaveletInfo { level, orientation }, pos));
            }
        }
        (0..shape.c)
            .flat_map(|ch| {
                spatial.iter().map(move |&(wavelet, pos)| ComponentInfo {
                    position: Some(pos),
                    wavelet: Some(wavelet),
                    ..ComponentInfo::plain(ch)
                })
            })
            .collect()
    }

    /// Applies `f` to every length-h column of the top-left h x w block of a row-major plane.
    fn columns(plane: &mut [f64], row_len: usize, h: usize, w: usize, f: fn(&[f64], &mut [f64])) {
        let mut col = vec![0.0; h];
        let mut out = vec![0.0; h];
        for c in 0..w {
            for r in 0..h {
                col[r] = plane[r * row_len + c];
            }
            f(&col, &mut out);
            for r in 0..h {
                plane[r * row_len + c] = out[r];
            }
        }
    }

    fn rows(plane: &mut [f64], row_len: usize, h: usize, w: usize, f: fn(&[f64], &mut [f64])) {
        let mut out = vec![0.0; w];
        for r in 0..h {
            let row = &mut plane[r * row_len..r * row_len + w];
            f(row, &mut out);
            row.copy_from_slice(&out);
        }
    }
}

impl Basis for HaarBasis {
    fn name(&self) -> &'static str {
        "haar"
    }
    fn shape(&self) -> Shape {
        self.shape
    }
    fn components(&self) -> &[ComponentInfo] {
        &self.info
    }

    fn forward(&self, phi: &[f64], chi: &mut [f64]) {
        chi.copy_from_slice(phi);
        let row_len = self.shape.w;
        for plane in chi.chunks_exact_mut(self.shape.plane()) {
            for &(h, w) in &self.steps {
                if w > 1 {
                    Self::rows(plane, row_len, h, w, step_forward);
                }
                if h > 1 {
                    Self::columns(plane, row_len, h, w, step_forward);
                }
            }
        }
    }

    fn inverse(&self, chi: &[f64], phi: &mut [f64]) {
        phi.copy_from_slice(chi);
        let row_len = self.shape.w;
        for plane in phi.chunks_exact_mut(self.shape.plane()) {
            for &(h, w) in self.steps.iter().rev() {
                if h > 1 {
                    Self::columns(plane, row_len, h, w, step_inverse);
                }
                if w > 1 {
                    Self::rows(plane, row_len, h, w, step_inverse);
                }
            }
        }
    }
}
