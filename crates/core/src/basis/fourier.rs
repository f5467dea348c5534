//! The real orthonormal 2-D DFT basis (SPEC section 1).
//!
//! With the unitary DFT `F[k] = N^-1/2 sum_x phi_x e^{-i k.x}`, N = H W, every mode pair
//! {k, -k} with k != -k gives two real components `c_k = sqrt(2) Re F[k]` and
//! `s_k = -sqrt(2) Im F[k]` (i.e. `sqrt(2/N) sum_x phi_x cos(k.x)` and `.. sin(k.x)`), and every
//! self-conjugate mode (k = -k) one component `Re F[k]`. By Parseval U is exactly orthogonal.
//! Implemented with two passes of complex FFTs (rows, then columns): O(d log d).

use super::{Basis, ComponentInfo, Momentum};
use crate::field::Shape;
use crate::numerics::{k_hat_sq, signed_mode};
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use std::f64::consts::{PI, SQRT_2};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Self-conjugate mode: the real part alone.
    Real,
    Cos,
    Sin,
}

#[derive(Debug, Clone, Copy)]
struct Mode {
    /// ky * W + kx
    idx: usize,
    /// index of -k
    partner: usize,
    part: Part,
}

/// The real orthonormal Fourier basis of a periodic C x H x W field (SPEC section 2).
pub struct FourierBasis {
    shape: Shape,
    modes: Vec<Mode>,
    info: Vec<ComponentInfo>,
    fft_w: Arc<dyn Fft<f64>>,
    fft_h: Arc<dyn Fft<f64>>,
    ifft_w: Arc<dyn Fft<f64>>,
    ifft_h: Arc<dyn Fft<f64>>,
}

impl std::fmt::Debug for FourierBasis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FourierBasis{{shape: {}}}", self.shape)
    }
}

impl FourierBasis {
    /// The basis of fields of `shape`.
    pub fn new(shape: Shape) -> Self {
        let (h, w) = (shape.h, shape.w);
        let mut modes = Vec::with_capacity(h * w);
        for ky in 0..h {
            for kx in 0..w {
                let idx = ky * w + kx;
                let partner = ((h - ky) % h) * w + (w - kx) % w;
                if idx == partner {
                    modes.push(Mode {
                        idx,
                        partner,
                        part: Part::Real,
                    });
                } else if idx < partner {
                    modes.push(Mode {
                        idx,
                        partner,
                        part: Part::Cos,
                    });
                    modes.push(Mode {
                        idx,
                        partner,
                        part: Part::Sin,
                    });
                }
            }
        }
        debug_assert_eq!(modes.len(), h * w);
        let mut info = Vec::with_capacity(shape.dim());
        for c in 0..shape.c {
            for m in &modes {
                let (ky, kx) = (m.idx / w, m.idx % w);
                let n = [signed_mode(ky, h), signed_mode(kx, w)];
                let k = [
                    2.0 * PI * n[0] as f64 / h as f64,
                    2.0 * PI * n[1] as f64 / w as f64,
                ];
                info.push(ComponentInfo {
                    momentum: Some(Momentum {
                        n,
                        k,
                        k_hat_sq: k_hat_sq(k[0], k[1]),
                    }),
                    ..ComponentInfo::plain(c)
                });
            }
        }
        let mut planner = FftPlanner::new();
        FourierBasis {
            shape,
            modes,
            info,
            fft_w: planner.plan_fft_forward(w),
            fft_h: planner.plan_fft_forward(h),
            ifft_w: planner.plan_fft_inverse(w),
            ifft_h: planner.plan_fft_inverse(h),
        }
    }
}

/// out[j * rows + i] = inp[i * cols + j]
fn transpose(inp: &[Complex<f64>], out: &mut [Complex<f64>], rows: usize, cols: usize) {
    for i in 0..rows {
        for j in 0..cols {
            out[j * rows + i] = inp[i * cols + j];
        }
    }
}

impl Basis for FourierBasis {
    fn name(&self) -> &'static str {
        "fourier"
    }
    fn shape(&self) -> Shape {
        self.shape
    }
    fn components(&self) -> &[ComponentInfo] {
        &self.info
    }

    fn forward(&self, phi: &[f64], chi: &mut [f64]) {
        let (h, w) = (self.shape.h, self.shape.w);
        let n = h * w;
        let norm = 1.0 / (n as f64).sqrt();
        let mut buf = vec![Complex::new(0.0, 0.0); n];
        let mut tbuf = vec![Complex::new(0.0, 0.0); n];
        for (phi_c, chi_c) in phi.chunks_exact(n).zip(chi.chunks_exact_mut(n)) {
            for (b, &p) in buf.iter_mut().zip(phi_c) {
                *b = Complex::new(p, 0.0);
            }
            self.fft_w.process(&mut buf); // along x, row by row
            transpose(&buf, &mut tbuf, h, w); // layout (kx, y)
            self.fft_h.process(&mut tbuf); // along y: tbuf[kx * h + ky] = X[ky, kx]
            for (out, m) in chi_c.iter_mut().zip(&self.modes) {
                let f = tbuf[(m.idx % w) * h + m.idx / w] * norm;
                *out = match m.part {
                    Part::Real => f.re,
                    Part::Cos => SQRT_2 * f.re,
                    Part::Sin => -SQRT_2 * f.im,
                };
            }
        }
    }

    fn inverse(&self, chi: &[f64], phi: &mut [f64]) {
        let (h, w) = (self.shape.h, self.shape.w);
        let n = h * w;
        let norm = 1.0 / (n as f64).sqrt();
        let mut tbuf = vec![Complex::new(0.0, 0.0); n];
        let mut buf = vec![Complex::new(0.0, 0.0); n];
        let at = |idx: usize| (idx % w) * h + idx / w;
        for (chi_c, phi_c) in chi.chunks_exact(n).zip(phi.chunks_exact_mut(n)) {
            // Hermitian spectrum in layout (kx, ky): F[k] = (c - i s)/sqrt2, F[-k] = conj.
            for (&v, m) in chi_c.iter().zip(&self.modes) {
                match m.part {
                    Part::Real => tbuf[at(m.idx)] = Complex::new(v, 0.0),
                    Part::Cos => {
                        tbuf[at(m.idx)].re = v / SQRT_2;
                        tbuf[at(m.partner)].re = v / SQRT_2;
                    }
                    Part::Sin => {
                        tbuf[at(m.idx)].im = -v / SQRT_2;
                        tbuf[at(m.partner)].im = v / SQRT_2;
                    }
                }
            }
            self.ifft_h.process(&mut tbuf); // along ky -> y, layout (kx, y)
            transpose(&tbuf, &mut buf, w, h); // layout (y, kx)
            self.ifft_w.process(&mut buf); // along kx -> x
            for (p, b) in phi_c.iter_mut().zip(&buf) {
                *p = b.re * norm;
            }
        }
    }
}
