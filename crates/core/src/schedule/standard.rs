//! The standard schedules, the same for every component (SPEC section 3).
//!
//! `vp-linear` (Song et al. 2021): beta(t) = beta_min + t (beta_max - beta_min), so
//! alpha^2 = exp(-B(t)), B(t) = beta_min t + (beta_max - beta_min) t^2 / 2, and
//! gamma = log(sigma^2 / alpha^2) = log(expm1(B)), dgamma/dt = beta / (1 - exp(-B)).
//!
//! `cosine` (Nichol & Dhariwal 2021): alpha^2 = cos^2(u) / cos^2(u0), u = pi/2 (t + s)/(1 + s),
//! u0 = pi/2 s/(1 + s). With cos^2 u0 - cos^2 u = sin(u + u0) sin(u - u0):
//! gamma = log(sin(u + u0) sin(u - u0)) - 2 log cos u, exact and stable near t = 0.

use super::Schedule;
use crate::error::{check_range, Error, Result};
use serde::{Deserialize, Serialize};
use std::f64::consts::FRAC_PI_2;

#[derive(Debug, Clone)]
/// The variance-preserving linear-beta schedule, the same for every component.
pub struct VpLinearSchedule {
    d: usize,
    beta_min: f64,
    beta_max: f64,
}

impl VpLinearSchedule {
    /// d components with beta from `beta_min` to `beta_max`.
    pub fn new(d: usize, beta_min: f64, beta_max: f64) -> Result<Self> {
        check_range("schedule.beta_min", beta_min, 0.0, 1e4)?;
        check_range("schedule.beta_max", beta_max, 0.0, 1e4)?;
        if beta_max <= beta_min && beta_min == 0.0 {
            return Err(Error::param(
                "schedule.beta_max",
                beta_max,
                "a positive noise rate",
            ));
        }
        Ok(VpLinearSchedule {
            d,
            beta_min,
            beta_max,
        })
    }
    /// beta(t)
    pub fn beta(&self, t: f64) -> f64 {
        self.beta_min + t * (self.beta_max - self.beta_min)
    }
    /// B(t) = int_0^t beta
    fn integral(&self, t: f64) -> f64 {
        self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t
    }
}

impl Schedule for VpLinearSchedule {
    fn name(&self) -> &'static str {
        "vp-linear"
    }
    fn dim(&self) -> usize {
        self.d
    }
    fn gamma(&self, t: f64, out: &mut [f64]) {
        out.fill(self.integral(t).exp_m1().ln());
    }
    fn dgamma_dt(&self, t: f64, out: &mut [f64]) {
        out.fill(self.beta(t) / -(-self.integral(t)).exp_m1());
    }
    fn t_range(&self) -> (f64, f64) {
        (1e-3, 1.0)
    }
}

#[derive(Debug, Clone)]
/// The cosine schedule, the same for every component.
pub struct CosineSchedule {
    d: usize,
    s: f64,
}

impl CosineSchedule {
    /// d components with offset s.
    pub fn new(d: usize, s: f64) -> Result<Self> {
        check_range("schedule.s", s, f64::MIN_POSITIVE, 1.0)?;
        Ok(CosineSchedule { d, s })
    }
    fn angles(&self, t: f64) -> (f64, f64) {
        (
            FRAC_PI_2 * (t + self.s) / (1.0 + self.s),
            FRAC_PI_2 * self.s / (1.0 + self.s),
        )
    }
}

impl Schedule for CosineSchedule {
    fn name(&self) -> &'static str {
        "cosine"
    }
    fn dim(&self) -> usize {
        self.d
    }
    fn gamma(&self, t: f64, out: &mut [f64]) {
        let (u, u0) = self.angles(t);
        out.fill(((u + u0).sin() * (u - u0).sin()).ln() - 2.0 * u.cos().ln());
    }
    fn dgamma_dt(&self, t: f64, out: &mut [f64]) {
        // gamma = log(c0 - c) - log c, c = cos^2 u: dgamma/dt = sin(2u) u' c0 / ((c0 - c) c)
        let (u, u0) = self.angles(t);
        let du = FRAC_PI_2 / (1.0 + self.s);
        let c = u.cos().powi(2);
        let c0 = u0.cos().powi(2);
        let diff = (u + u0).sin() * (u - u0).sin();
        out.fill((2.0 * u).sin() * du * c0 / (diff * c));
    }
    fn t_range(&self) -> (f64, f64) {
        (1e-3, 1.0 - 1e-3)
    }
}

/// `vp-linear` (Song et al. 2021): beta(t) = beta_min + t (beta_max - beta_min).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VpLinearConfig {
    /// beta at t = 0.
    pub beta_min: f64,
    /// beta at t = 1.
    pub beta_max: f64,
}

impl Default for VpLinearConfig {
    fn default() -> Self {
        VpLinearConfig {
            beta_min: 0.1,
            beta_max: 20.0,
        }
    }
}

/// `cosine` (Nichol & Dhariwal 2021) with offset s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CosineConfig {
    /// The offset s.
    pub s: f64,
}

impl Default for CosineConfig {
    fn default() -> Self {
        CosineConfig { s: 0.008 }
    }
}
