//! The RG cutoff-kernel schedule (SPEC section 3; RG-diffusion slides, RGDM):
//! `alpha_k^2(t) = K_{Lambda(t)}(k)` on the fourier basis, times the prior scaling term.
//!
//! - `sigmoid`: K = sigmoid((Lambda - |k|) / w), Lambda(t) = Lambda_UV + t (Lambda_IR - Lambda_UV),
//!   gamma_k(t) = (|k| - Lambda(t)) / w + log Sigma_k.
//! - `massive`: K = Lambda^2 / (Lambda^2 + |k|^2 + m_L^2), Lambda(t) = Lambda_UV (Lambda_IR / Lambda_UV)^t,
//!   gamma_k(t) = log(|k|^2 + m_L^2) - 2 log Lambda(t) + log Sigma_k.
//!
//! Lambda_UV and Lambda_IR follow from max_k (gamma_k(0) - log Sigma_k) = g_denoise and
//! min_k (gamma_k(1) - log Sigma_k) = g_noise. For `sigmoid` this makes Lambda_IR < 0, so the
//! zero mode is noised too.

use super::{Schedule, ScheduleContext};
use crate::error::{check_range, Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
/// The RG cutoff schedule (RGDM): components enter as the cutoff passes their momentum.
pub struct RgSchedule {
    regulator: Regulator,
    /// |k_hat| for `sigmoid`, log(|k_hat|^2 + m_L^2) for `massive`.
    k_var: Vec<f64>,
    log_sigma: Vec<f64>,
    width: f64,
    /// Lambda for `sigmoid`, log Lambda for `massive`, at t = 0 and t = 1.
    cut_uv: f64,
    cut_ir: f64,
}

impl RgSchedule {
    /// The schedule of `c` on the context's momenta.
    pub fn new(c: &RgConfig, ctx: &ScheduleContext<'_>) -> Result<Self> {
        check_range("schedule.g_denoise", c.g_denoise, -60.0, 60.0)?;
        check_range("schedule.g_noise", c.g_noise, -60.0, 60.0)?;
        if c.g_noise <= c.g_denoise {
            return Err(Error::param(
                "schedule.g_noise",
                c.g_noise,
                "a value above g_denoise",
            ));
        }
        let k2 = crate::basis::momenta_sq(ctx.basis, "the rg schedule")?;
        let width = match c.regulator {
            Regulator::Sigmoid => {
                check_range("schedule.width", c.width, f64::MIN_POSITIVE, f64::INFINITY)?
            }
            Regulator::Massive => 1.0,
        };
        let k_var: Vec<f64> = match c.regulator {
            Regulator::Sigmoid => k2.iter().map(|k| k.sqrt()).collect(),
            Regulator::Massive => {
                let m2 = check_range(
                    "schedule.mass_sq",
                    c.mass_sq,
                    f64::MIN_POSITIVE,
                    f64::INFINITY,
                )?;
                k2.iter().map(|k| (k + m2).ln()).collect()
            }
        };
        let kmax = k_var.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let kmin = k_var.iter().copied().fold(f64::INFINITY, f64::min);
        let (cut_uv, cut_ir) = match c.regulator {
            // max_k (|k| - Lambda_UV)/w = g_denoise; min_k (|k| - Lambda_IR)/w = g_noise
            Regulator::Sigmoid => (kmax - width * c.g_denoise, kmin - width * c.g_noise),
            // max_k L_k - 2 log Lambda_UV = g_denoise; min_k L_k - 2 log Lambda_IR = g_noise
            Regulator::Massive => (0.5 * (kmax - c.g_denoise), 0.5 * (kmin - c.g_noise)),
        };
        Ok(RgSchedule {
            regulator: c.regulator,
            k_var,
            log_sigma: ctx.log_sigma.to_vec(),
            width,
            cut_uv,
            cut_ir,
        })
    }

    /// The cutoff Lambda(t).
    pub fn cutoff(&self, t: f64) -> f64 {
        let c = self.cut_uv + t * (self.cut_ir - self.cut_uv);
        match self.regulator {
            Regulator::Sigmoid => c,
            Regulator::Massive => c.exp(),
        }
    }

    /// The regulator kernel K_{Lambda(t)}(k) of component i (= alpha_i^2 when Sigma_i = 1).
    pub fn kernel(&self, t: f64, i: usize) -> f64 {
        let lambda = self.cutoff(t);
        match self.regulator {
            Regulator::Sigmoid => crate::numerics::sigmoid((lambda - self.k_var[i]) / self.width),
            Regulator::Massive => {
                let l2 = lambda * lambda;
                l2 / (l2 + self.k_var[i].exp())
            }
        }
    }
}

impl Schedule for RgSchedule {
    fn name(&self) -> &'static str {
        "rg"
    }
    fn dim(&self) -> usize {
        self.k_var.len()
    }
    fn gamma(&self, t: f64, out: &mut [f64]) {
        let lambda = self.cutoff(t);
        for ((o, k), ls) in out.iter_mut().zip(&self.k_var).zip(&self.log_sigma) {
            *o = ls
                + match self.regulator {
                    Regulator::Sigmoid => (k - lambda) / self.width,
                    Regulator::Massive => k - 2.0 * lambda.ln(),
                };
        }
    }
    fn dgamma_dt(&self, _t: f64, out: &mut [f64]) {
        let slope = match self.regulator {
            Regulator::Sigmoid => -(self.cut_ir - self.cut_uv) / self.width,
            Regulator::Massive => -2.0 * (self.cut_ir - self.cut_uv),
        };
        out.fill(slope);
    }
}

/// The RG regulator of the cutoff kernel K_Lambda(k).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Regulator {
    /// K = sigmoid((Lambda - |k|) / width), Lambda linear in t (slides).
    Sigmoid,
    /// K = Lambda^2 / (Lambda^2 + |k|^2 + m_L^2), Lambda geometric in t (RGDM).
    Massive,
}

/// `rg`: the RG cutoff-kernel schedule on the fourier basis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RgConfig {
    /// The regulator of the cutoff kernel.
    pub regulator: Regulator,
    /// `sigmoid`: width w of the kernel edge in |k| (equivalent to a = 1 / w).
    pub width: f64,
    /// `massive`: m_L^2.
    pub mass_sq: f64,
    /// gamma of a fully resolved component.
    pub g_denoise: f64,
    /// gamma of a component below the cutoff.
    pub g_noise: f64,
}

impl Default for RgConfig {
    fn default() -> Self {
        RgConfig {
            regulator: Regulator::Sigmoid,
            width: 0.5,
            mass_sq: 1.0,
            g_denoise: -7.0,
            g_noise: 9.0,
        }
    }
}
