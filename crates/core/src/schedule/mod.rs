//! Component-wise noise schedules (SPEC section 3, GUD section 4.3 and 5).
//!
//! A schedule gives the noising state `gamma_i(t) = log(sigma_i^2 / alpha_i^2)` and its exact
//! time derivative for every component i, t in [0, 1]; everything else (alpha^2, sigma^2, beta,
//! SNR) is derived once in [`crate::process::NoisingState`].
//!
//! Convention for every ordering: **smaller l is generated first**: its SNR is higher at every
//! t (it is noised last in the forward process and denoised first in the reverse process).

mod config;
mod linear;
pub mod ordering;
mod rg;
mod sequential;
mod standard;

pub use config::ScheduleConfig;
pub use linear::{LinearConfig, LinearSchedule};
pub use rg::{Regulator, RgConfig, RgSchedule};
pub use sequential::{SequentialConfig, SequentialSchedule};
pub use standard::{CosineConfig, CosineSchedule, VpLinearConfig, VpLinearSchedule};

use crate::basis::Basis;

/// A component-wise noise schedule.
pub trait Schedule: Send + Sync + std::fmt::Debug {
    /// The config name (`vp-linear`, `cosine`, `linear`, `sequential`, `rg`).
    fn name(&self) -> &'static str;
    /// Number of components d.
    fn dim(&self) -> usize;
    /// `gamma_i(t)` for all i; `out` has length d.
    fn gamma(&self, t: f64, out: &mut [f64]);
    /// `d gamma_i / dt (t)` for all i, exact.
    fn dgamma_dt(&self, t: f64, out: &mut [f64]);
    /// The interval of t on which gamma is finite and samplers should run. Schedules that
    /// reach gamma = -inf at t = 0 or +inf at t = 1 (vp-linear, cosine) return a smaller one.
    fn t_range(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
}

/// What a schedule may be fitted to: the basis (component metadata), the unscaled component
/// variances `Var(chi_tilde_i)` and `log Sigma_i` (the variances after prior scaling).
#[derive(Clone, Copy)]
pub struct ScheduleContext<'a> {
    /// The basis (component metadata).
    pub basis: &'a dyn Basis,
    /// Var(chi_tilde_i), before prior scaling.
    pub var_comp: &'a [f64],
    /// log Sigma_i, after prior scaling.
    pub log_sigma: &'a [f64],
}

/// `gamma(t)` as a new vector.
pub fn gamma_at(schedule: &dyn Schedule, t: f64) -> Vec<f64> {
    let mut g = vec![0.0; schedule.dim()];
    schedule.gamma(t, &mut g);
    g
}

/// `dgamma/dt(t)` as a new vector.
pub fn dgamma_dt_at(schedule: &dyn Schedule, t: f64) -> Vec<f64> {
    let mut g = vec![0.0; schedule.dim()];
    schedule.dgamma_dt(t, &mut g);
    g
}

#[cfg(test)]
mod tests;
