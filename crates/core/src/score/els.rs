//! The equivariant local score machine (Kamb & Ganguli; SPEC section 4, lecture 003).
//!
//! Pixel basis only. The denoised value at pixel x is a softmax-weighted average of the centre
//! values of *all* training patches (every image n, every position y: shift equivariance),
//! the weights comparing the query's patch Omega_x with each training patch:
//!
//! ```text
//! w_{n,y} = softmax( -sum_{delta in Omega} (chi_{x+delta} - alpha_{x+delta} chi^n_{y+delta})^2
//!                                             / (2 sigma_{x+delta}^2) )
//! chi0_hat_x = sum_{n,y} w_{n,y} chi^n_y,     eps_hat_x = (chi_x - alpha_x chi0_hat_x) / sigma_x
//! ```
//!
//! with circular padding (periodic lattices). A patch spans all channels; its size per noise
//! level comes from a [`PatchRule`] (by default growing with the noise). A patch as large as
//! the image compares whole images at every circular shift: the model then equals `empirical`
//! over the set of all circular shifts of the training images (a test).

use super::{eps_from_chi0, ScoreModel};
use crate::error::{Error, Result};
use crate::field::Shape;
use crate::process::NoisingState;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// How the patch size follows the noise level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PatchRule {
    /// Grows linearly with the mean sigma_i: `min` at sigma = 0, `max` (the image size when
    /// absent) at sigma = 1; odd sizes below the maximum.
    Grow {
        #[serde(default = "default_min_patch")]
        /// Smallest patch.
        min: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        /// Largest patch (the image when absent).
        max: Option<usize>,
    },
    /// The same size at every noise level.
    Fixed {
        /// The patch size P.
        size: usize,
    },
    /// `(gamma_bound, size)` pairs in increasing bound: the first entry whose bound is at least the
    /// mean gamma applies; the last entry applies above every bound.
    Table {
        /// (gamma threshold, patch size) pairs.
        entries: Vec<(f64, usize)>,
    },
}

fn default_min_patch() -> usize {
    3
}

impl Default for PatchRule {
    fn default() -> Self {
        PatchRule::Grow {
            min: default_min_patch(),
            max: None,
        }
    }
}

impl PatchRule {
    /// The patch size for a noising state on images of side `side` (clamped to [1, side]).
    pub fn size(&self, state: &NoisingState, side: usize) -> usize {
        let p = match self {
            PatchRule::Fixed { size } => *size,
            PatchRule::Grow { min, max } => {
                let max = max.unwrap_or(side) as f64;
                let d = state.dim() as f64;
                let sigma_mean = state.sigma_sq().iter().map(|s| s.sqrt()).sum::<f64>() / d;
                let raw = *min as f64 + (max - *min as f64).max(0.0) * sigma_mean;
                if raw >= max - 0.5 {
                    max as usize
                } else {
                    2 * (raw as usize / 2) + 1
                }
            }
            PatchRule::Table { entries } => {
                let g = state.mean_gamma();
                entries
                    .iter()
                    .find(|(bound, _)| *bound >= g)
                    .or(entries.last())
                    .map_or(1, |e| e.1)
            }
        };
        p.clamp(1, side.max(1))
    }

    fn validate(&self) -> Result<()> {
        let bad = |expected: &str| Err(Error::param("score.patch", self, expected));
        match self {
            PatchRule::Fixed { size: 0 } | PatchRule::Grow { min: 0, .. } => bad("sizes >= 1"),
            PatchRule::Grow {
                min,
                max: Some(max),
            } if max < min => bad("max >= min"),
            PatchRule::Table { entries } if entries.is_empty() => bad("at least one entry"),
            PatchRule::Table { entries }
                if entries.iter().any(|e| e.1 == 0 || !e.0.is_finite())
                    || entries.windows(2).any(|w| w[1].0 <= w[0].0) =>
            {
                bad("finite, increasing gamma bounds and sizes >= 1")
            }
            _ => Ok(()),
        }
    }
}

/// The rule as it is written (`grow:3`, `fixed:5`, `table:0.5=3,2=7`): what [`FromStr`] reads.
impl std::fmt::Display for PatchRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatchRule::Grow { min, max: None } => write!(f, "grow:{min}"),
            PatchRule::Grow {
                min,
                max: Some(max),
            } => write!(f, "grow:{min}:{max}"),
            PatchRule::Fixed { size } => write!(f, "fixed:{size}"),
            PatchRule::Table { entries } => {
                let e: Vec<String> = entries.iter().map(|(g, p)| format!("{g}={p}")).collect();
                write!(f, "table:{}", e.join(","))
            }
        }
    }
}

/// `grow`, `grow:MIN`, `grow:MIN:MAX`, `fixed:P`, or `table:G1=P1,G2=P2,...`.
impl FromStr for PatchRule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::param(
                "patch",
                s,
                "`grow`, `grow:MIN`, `grow:MIN:MAX`, `fixed:P` or `table:G1=P1,G2=P2,...`",
            )
        };
        let num = |x: &str| x.trim().parse::<usize>().map_err(|_| bad());
        let mut parts = s.splitn(2, ':');
        let rule = match (parts.next().unwrap_or(""), parts.next()) {
            ("grow", None) => PatchRule::default(),
            ("grow", Some(rest)) => {
                let v: Vec<&str> = rest.split(':').collect();
                match v.as_slice() {
                    [min] => PatchRule::Grow {
                        min: num(min)?,
                        max: None,
                    },
                    [min, max] => PatchRule::Grow {
                        min: num(min)?,
                        max: Some(num(max)?),
                    },
                    _ => return Err(bad()),
                }
            }
            ("fixed", Some(p)) => PatchRule::Fixed { size: num(p)? },
            ("table", Some(rest)) => PatchRule::Table {
                entries: rest
                    .split(',')
                    .map(|e| {
                        let (g, p) = e.split_once('=').ok_or_else(bad)?;
                        Ok((g.trim().parse::<f64>().map_err(|_| bad())?, num(p)?))
                    })
                    .collect::<Result<_>>()?,
            },
            _ => return Err(bad()),
        };
        rule.validate()?;
        Ok(rule)
    }
}

#[derive(Debug, Clone)]
/// The equivariant local score machine (Kamb & Ganguli) on pixels.
pub struct ElsScore {
    shape: Shape,
    train: Vec<f64>,
    patch: PatchRule,
}

/// The training images circularly padded for one patch size: (N, C, H + ph - 1, W + pw - 1).
struct Padded {
    data: Vec<f64>,
    ph: usize,
    pw: usize,
    hp: usize,
    wp: usize,
}

impl ElsScore {
    /// `train`: (N, C, H, W) whitened training images.
    pub fn new(shape: Shape, train: Vec<f64>, patch: PatchRule) -> Result<Self> {
        patch.validate()?;
        super::EmpiricalScore::new(shape.dim(), train.clone())?;
        Ok(ElsScore {
            shape,
            train,
            patch,
        })
    }

    /// The patch size (square, clamped to each side) used at this noising state.
    pub fn patch_size(&self, state: &NoisingState) -> (usize, usize) {
        let side = self.shape.h.max(self.shape.w);
        let p = self.patch.size(state, side);
        (p.min(self.shape.h), p.min(self.shape.w))
    }

    fn pad(&self, ph: usize, pw: usize) -> Padded {
        let Shape { c, h, w } = self.shape;
        let (hp, wp) = (h + ph - 1, w + pw - 1);
        let (oy, ox) = (ph / 2, pw / 2);
        let n = self.train.len() / self.shape.dim();
        let mut data = vec![0.0; n * c * hp * wp];
        for (img, out) in self
            .train
            .chunks_exact(c * h * w)
            .zip(data.chunks_exact_mut(c * hp * wp))
        {
            for ch in 0..c {
                for y in 0..hp {
                    let sy = (y + h - oy % h) % h;
                    for x in 0..wp {
                        let sx = (x + w - ox % w) % w;
                        out[(ch * hp + y) * wp + x] = img[(ch * h + sy) * w + sx];
                    }
                }
            }
        }
        Padded {
            data,
            ph,
            pw,
            hp,
            wp,
        }
    }

    /// eps_hat at all channels of pixel (y0, x0) of query `q`.
    fn eps_at(
        &self,
        pad: &Padded,
        q: &[f64],
        st: &[(f64, f64)],
        y0: usize,
        x0: usize,
        buf: &mut PatchBuf,
        out: &mut [f64],
    ) {
        let Shape { c, h, w } = self.shape;
        let Padded { ph, pw, hp, wp, .. } = *pad;
        let (oy, ox) = (ph / 2, pw / 2);
        // The query patch in distance units: q sqrt(w) and the per-site alpha sqrt(w).
        buf.q.clear();
        buf.a.clear();
        for ch in 0..c {
            for dy in 0..ph {
                let y = (y0 + h + dy - oy) % h;
                for dx in 0..pw {
                    let x = (x0 + w + dx - ox) % w;
                    let i = (ch * h + y) * w + x;
                    let (alpha, sigma_sq) = st[i];
                    let root_w = (0.5 / sigma_sq.max(f64::MIN_POSITIVE)).sqrt();
                    buf.q.push(q[i] * root_w);
                    buf.a.push(alpha * root_w);
                }
            }
        }
        // Logits over every training image n and position (y1, x1).
        buf.logits.clear();
        for img in pad.data.chunks_exact(c * hp * wp) {
            for y1 in 0..h {
                for x1 in 0..w {
                    let mut dist = 0.0;
                    let mut k = 0;
                    for ch in 0..c {
                        for dy in 0..ph {
                            let row = &img[(ch * hp + y1 + dy) * wp + x1..][..pw];
                            for (j, t) in row.iter().enumerate() {
                                let e = buf.q[k + j] - buf.a[k + j] * t;
                                dist += e * e;
                            }
                            k += pw;
                        }
                    }
                    buf.logits.push(-dist);
                }
            }
        }
        let max = buf.logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut total = 0.0;
        for l in buf.logits.iter_mut() {
            *l = (*l - max).exp();
            total += *l;
        }
        // chi0_hat at (y0, x0): the weighted centre values, per channel.
        let plane = h * w;
        for ch in 0..c {
            let mut acc = 0.0;
            for (n, img) in self.train.chunks_exact(c * plane).enumerate() {
                let ws = &buf.logits[n * plane..(n + 1) * plane];
                let centre = &img[ch * plane..(ch + 1) * plane];
                acc += ws.iter().zip(centre).map(|(a, b)| a * b).sum::<f64>();
            }
            let i = (ch * h + y0) * w + x0;
            let (alpha, sigma_sq) = st[i];
            out[i] = eps_from_chi0(q[i], acc / total, alpha, sigma_sq.sqrt());
        }
    }
}

#[derive(Default)]
struct PatchBuf {
    q: Vec<f64>,
    a: Vec<f64>,
    logits: Vec<f64>,
}

impl ScoreModel for ElsScore {
    fn name(&self) -> &'static str {
        "els"
    }
    fn dim(&self) -> usize {
        self.shape.dim()
    }
    fn eps_hat(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        active: Option<&[usize]>,
        eps_hat: &mut [f64],
    ) {
        let Shape { h, w, .. } = self.shape;
        let d = self.dim();
        let (ph, pw) = self.patch_size(state);
        let pad = self.pad(ph, pw);
        let st: Vec<(f64, f64)> = state
            .alpha_sq()
            .iter()
            .zip(state.sigma_sq())
            .map(|(a, s)| (a.sqrt(), *s))
            .collect();
        // Pixels with at least one active channel.
        let mut pixels = vec![active.is_none(); h * w];
        for &i in active.unwrap_or(&[]) {
            pixels[i % (h * w)] = true;
        }
        eps_hat
            .par_chunks_mut(d)
            .zip(chi_t.par_chunks(d))
            .for_each_init(PatchBuf::default, |buf, (out, q)| {
                for p in (0..h * w).filter(|&p| pixels[p]) {
                    self.eps_at(&pad, q, &st, p / w, p % w, buf, out);
                }
            });
    }
}
