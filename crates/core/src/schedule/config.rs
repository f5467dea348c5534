//! The config of the schedule axis (STYLE "Configs"): `schedule = { kind = "rg", ... }`, each
//! kind's parameters defined beside its schedule.

use super::{
    ordering, CosineConfig, CosineSchedule, LinearConfig, LinearSchedule, RgConfig, RgSchedule,
    Schedule, ScheduleContext, SequentialConfig, SequentialSchedule, VpLinearConfig,
    VpLinearSchedule,
};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The component-wise noise schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ScheduleConfig {
    /// `vp-linear`.
    VpLinear(VpLinearConfig),
    /// `cosine`.
    Cosine(CosineConfig),
    /// `linear` (GUD soft conditioning).
    Linear(LinearConfig),
    /// `sequential`.
    Sequential(SequentialConfig),
    /// `rg` (the RG cutoff).
    Rg(RgConfig),
}

impl ScheduleConfig {
    /// The config name of its kind (`rg`, `linear`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            ScheduleConfig::VpLinear(_) => "vp-linear",
            ScheduleConfig::Cosine(_) => "cosine",
            ScheduleConfig::Linear(_) => "linear",
            ScheduleConfig::Sequential(_) => "sequential",
            ScheduleConfig::Rg(_) => "rg",
        }
    }

    /// The schedule it names, fitted to the context.
    pub fn build(&self, ctx: &ScheduleContext<'_>) -> Result<Box<dyn Schedule>> {
        let d = ctx.basis.dim();
        Ok(match self {
            ScheduleConfig::VpLinear(c) => {
                Box::new(VpLinearSchedule::new(d, c.beta_min, c.beta_max)?)
            }
            ScheduleConfig::Cosine(c) => Box::new(CosineSchedule::new(d, c.s)?),
            ScheduleConfig::Linear(c) => {
                let l =
                    ordering::ordering_values(&c.ordering_params(), ctx, "the linear schedule")?;
                Box::new(LinearSchedule::new(
                    &l,
                    ctx.log_sigma,
                    c.a,
                    c.g_denoise,
                    c.g_noise,
                )?)
            }
            ScheduleConfig::Sequential(c) => {
                let l = ordering::ordering_values(
                    &c.ordering_params(),
                    ctx,
                    "the sequential schedule",
                )?;
                Box::new(SequentialSchedule::new(&l, c.softness, c.g_lo, c.g_hi)?)
            }
            ScheduleConfig::Rg(c) => Box::new(RgSchedule::new(c, ctx)?),
        })
    }
}

impl ScheduleConfig {
    /// The same schedule with softness a (and mix r, when given): `linear` sets a (and r),
    /// `sequential` sets its softness; other schedules have no such parameter.
    pub fn with_softness(&self, a: f64, r: Option<f64>) -> Result<ScheduleConfig> {
        match self {
            ScheduleConfig::Linear(c) => Ok(ScheduleConfig::Linear(LinearConfig {
                a,
                r: r.unwrap_or(c.r),
                ..c.clone()
            })),
            ScheduleConfig::Sequential(c) if r.is_none() => {
                Ok(ScheduleConfig::Sequential(SequentialConfig {
                    softness: a,
                    ..c.clone()
                }))
            }
            _ => Err(Error::param(
                "schedule.kind",
                format!("\"{}\"", self.kind()),
                "`linear` (a, r) or `sequential` (softness a) for a schedule family",
            )),
        }
    }
}
