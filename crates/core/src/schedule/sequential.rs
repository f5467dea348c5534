//! The sequential (clipped linear) schedule of GUD 5.2 (SPEC section 3):
//!
//! ```text
//! l normalised to [0, 1],  tau_max = min(1 / softness, 0.99),  tau_i = tau_max (1 - l_i)
//! slope = (g_hi - g_lo) / (1 - tau_max)
//! gamma_i(t) = clip(g_lo + (t - tau_i) slope, g_lo, g_hi)
//! ```
//!
//! Where clipped, dgamma_dt = 0 exactly, hence beta = 0: the component is frozen (finished at
//! g_lo, not yet started at g_hi). Smaller l has the larger offset and finishes first.

use super::ordering::{OrderingKind, OrderingParams};
use super::Schedule;
use crate::error::{check_range, Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
/// The sequential schedule of GUD 5.2.
pub struct SequentialSchedule {
    tau: Vec<f64>,
    g_lo: f64,
    g_hi: f64,
    slope: f64,
}

impl SequentialSchedule {
    /// The schedule of ordering values `l` with `softness` between gamma limits g_lo and g_hi.
    pub fn new(l: &[f64], softness: f64, g_lo: f64, g_hi: f64) -> Result<Self> {
        check_range(
            "schedule.softness",
            softness,
            f64::MIN_POSITIVE,
            f64::INFINITY,
        )?;
        check_range("schedule.g_lo", g_lo, -60.0, 60.0)?;
        check_range("schedule.g_hi", g_hi, -60.0, 60.0)?;
        if g_hi <= g_lo {
            return Err(Error::param(
                "schedule.g_hi",
                g_hi,
                &format!("a value above g_lo = {g_lo}"),
            ));
        }
        let l_max = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let l_min = l.iter().copied().fold(f64::INFINITY, f64::min);
        let span = l_max - l_min;
        let tau_max = (1.0 / softness).min(0.99);
        let tau = l
            .iter()
            .map(|li| {
                let ln = if span > 0.0 { (li - l_min) / span } else { 0.0 };
                tau_max * (1.0 - ln)
            })
            .collect();
        Ok(SequentialSchedule {
            tau,
            g_lo,
            g_hi,
            slope: (g_hi - g_lo) / (1.0 - tau_max),
        })
    }

    /// The time offsets tau_i.
    pub fn offsets(&self) -> &[f64] {
        &self.tau
    }

    fn raw(&self, t: f64, tau: f64) -> f64 {
        self.g_lo + (t - tau) * self.slope
    }
}

impl Schedule for SequentialSchedule {
    fn name(&self) -> &'static str {
        "sequential"
    }
    fn dim(&self) -> usize {
        self.tau.len()
    }
    fn gamma(&self, t: f64, out: &mut [f64]) {
        for (o, &tau) in out.iter_mut().zip(&self.tau) {
            *o = self.raw(t, tau).clamp(self.g_lo, self.g_hi);
        }
    }
    fn dgamma_dt(&self, t: f64, out: &mut [f64]) {
        for (o, &tau) in out.iter_mut().zip(&self.tau) {
            let g = self.raw(t, tau);
            *o = if g > self.g_lo && g < self.g_hi {
                self.slope
            } else {
                0.0
            };
        }
    }
}

/// `sequential` (GUD 5.2): clipped linear schedule with per-component time offsets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SequentialConfig {
    /// The ordering variable l_i.
    pub ordering: OrderingKind,
    /// `frequency`: mix r in [0, 1].
    pub r: f64,
    /// `level`: column weight c of l = level + c column / W.
    pub b: f64,
    /// `log-momentum`: m_L^2.
    pub mass_sq: f64,
    /// tau_max = min(1 / softness, 0.99).
    pub softness: f64,
    /// gamma of a finished component.
    pub g_lo: f64,
    /// gamma of a component not yet started.
    pub g_hi: f64,
}

impl Default for SequentialConfig {
    fn default() -> Self {
        SequentialConfig {
            ordering: OrderingKind::Column,
            r: 1.0,
            b: 0.0,
            mass_sq: 1.0,
            softness: 2.0,
            g_lo: -7.0,
            g_hi: 9.0,
        }
    }
}

impl SequentialConfig {
    /// The ordering of this schedule.
    pub fn ordering_params(&self) -> OrderingParams {
        OrderingParams {
            kind: self.ordering,
            r: self.r,
            column_weight: self.b,
            mass_sq: self.mass_sq,
        }
    }
}
