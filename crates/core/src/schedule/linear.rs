//! The linear soft-conditioning schedule (SPEC section 3, GUD eq. 18-20):
//!
//! ```text
//! gamma_i(t)  = gamma_min_i + t dgamma
//! gamma_min_i = g_denoise + log Sigma_i + a (l_i - l_max)
//! dgamma      = g_noise - g_denoise + a (l_max - l_min)
//! ```
//!
//! so that min_i log SNR_i(0) = -g_denoise and max_i log SNR_i(1) = -g_noise (eq. 19), with
//! log SNR_i(t) = -g_denoise - a (l_i - l_max) - t dgamma: ordered by l at every t.

use super::ordering::{OrderingKind, OrderingParams};
use super::Schedule;
use crate::error::{check_range, Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
/// The linear schedule of GUD eq. 18-20.
pub struct LinearSchedule {
    gamma_min: Vec<f64>,
    dgamma: f64,
}

impl LinearSchedule {
    /// `l` ordering variables, `log_sigma` = log Sigma_i, `a` inverse softness (GUD eq. 20).
    pub fn new(l: &[f64], log_sigma: &[f64], a: f64, g_denoise: f64, g_noise: f64) -> Result<Self> {
        check_range("schedule.a", a, 0.0, f64::INFINITY)?;
        check_range("schedule.g_denoise", g_denoise, -60.0, 60.0)?;
        check_range("schedule.g_noise", g_noise, -60.0, 60.0)?;
        if g_noise <= g_denoise {
            return Err(Error::param(
                "schedule.g_noise",
                g_noise,
                &format!("a value above g_denoise = {g_denoise} (the process must add noise)"),
            ));
        }
        let l_max = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let l_min = l.iter().copied().fold(f64::INFINITY, f64::min);
        let gamma_min = l
            .iter()
            .zip(log_sigma)
            .map(|(li, ls)| g_denoise + ls + a * (li - l_max))
            .collect();
        let dgamma = g_noise - g_denoise + a * (l_max - l_min);
        Ok(LinearSchedule { gamma_min, dgamma })
    }

    /// The common slope dgamma.
    pub fn slope(&self) -> f64 {
        self.dgamma
    }
}

impl Schedule for LinearSchedule {
    fn name(&self) -> &'static str {
        "linear"
    }
    fn dim(&self) -> usize {
        self.gamma_min.len()
    }
    fn gamma(&self, t: f64, out: &mut [f64]) {
        for (o, g0) in out.iter_mut().zip(&self.gamma_min) {
            *o = g0 + t * self.dgamma;
        }
    }
    fn dgamma_dt(&self, _t: f64, out: &mut [f64]) {
        out.fill(self.dgamma);
    }
}

/// `linear` (GUD eq. 18-20): gamma_i(t) = gamma_min_i + t dgamma.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinearConfig {
    /// The ordering variable l_i.
    pub ordering: OrderingKind,
    /// `frequency`: mix r in [0, 1] between -log Var (r = 0) and |k| (r = 1).
    pub r: f64,
    /// `level`: column softness b of a l_i = a level + b column / W (GUD 5.3).
    pub b: f64,
    /// `log-momentum`: m_L^2 of l = log(|k_hat|^2 + m_L^2).
    pub mass_sq: f64,
    /// Inverse softness a > 0 (large: autoregressive; small: no hierarchy).
    pub a: f64,
    /// -min_i log SNR_i(0).
    pub g_denoise: f64,
    /// -max_i log SNR_i(1).
    pub g_noise: f64,
}

impl Default for LinearConfig {
    fn default() -> Self {
        LinearConfig {
            ordering: OrderingKind::Frequency,
            r: 1.0,
            b: 0.0,
            mass_sq: 1.0,
            a: 1.0,
            g_denoise: -7.0,
            g_noise: 9.0,
        }
    }
}

impl LinearConfig {
    /// The ordering of this schedule.
    pub fn ordering_params(&self) -> OrderingParams {
        OrderingParams {
            kind: self.ordering,
            r: self.r,
            column_weight: self.b / self.a,
            mass_sq: self.mass_sq,
        }
    }
}
