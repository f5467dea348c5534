//! Ordering variables l_i of the soft-conditioning schedules (SPEC section 3, GUD 5.1-5.3).
//! Smaller l is generated first.

use super::ScheduleContext;
use crate::error::{check_range, Error, Result};
use serde::{Deserialize, Serialize};

/// Which ordering variable a schedule uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderingKind {
    /// l_i = -log Var(chi_tilde_i): high-variance components first.
    Variance,
    /// l_i = (1 - r)(-log Var_i) + r (|k_i| + delta) / kappa, same range at r = 1 as at r = 0.
    Frequency,
    /// l_i = |k_hat_i| (the `rg/sigmoid` ordering).
    Momentum,
    /// l_i = log(|k_hat_i|^2 + m_L^2) (the `rg/massive` ordering).
    LogMomentum,
    /// l_i = column of the component (left first).
    Column,
    /// l_i = row of the component (top first).
    Row,
    /// l_i = Haar level + c * column / W (coarse first; GUD 5.3).
    Level,
}

impl OrderingKind {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            OrderingKind::Variance => "variance",
            OrderingKind::Frequency => "frequency",
            OrderingKind::Momentum => "momentum",
            OrderingKind::LogMomentum => "log-momentum",
            OrderingKind::Column => "column",
            OrderingKind::Row => "row",
            OrderingKind::Level => "level",
        }
    }
}

fn momenta(ctx: &ScheduleContext<'_>, what: &str, ordering: OrderingKind) -> Result<Vec<f64>> {
    crate::basis::momenta_sq(
        ctx.basis,
        &format!("{what} with ordering `{}`", ordering.name()),
    )
}

fn positions(
    ctx: &ScheduleContext<'_>,
    what: &str,
    ordering: OrderingKind,
) -> Result<Vec<[f64; 2]>> {
    ctx.basis
        .components()
        .iter()
        .map(|c| c.position)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::MissingMetadata {
            what: format!("{what} with ordering `{}`", ordering.name()),
            needs: "component positions (use the pixel or haar basis)",
            basis: ctx.basis.name(),
        })
}

fn range(x: &[f64]) -> (f64, f64) {
    x.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// The ordering variables l_i for every component.
pub fn ordering_values(
    p: &OrderingParams,
    ctx: &ScheduleContext<'_>,
    what: &str,
) -> Result<Vec<f64>> {
    let neg_log_var = || ctx.var_comp.iter().map(|v| -v.ln()).collect::<Vec<f64>>();
    Ok(match p.kind {
        OrderingKind::Variance => neg_log_var(),
        OrderingKind::Frequency => {
            let r = check_range("schedule.r", p.r, 0.0, 1.0)?;
            let v = neg_log_var();
            let k: Vec<f64> = momenta(ctx, what, p.kind)?
                .iter()
                .map(|k2| k2.sqrt())
                .collect();
            let (vmin, vmax) = range(&v);
            let (kmin, kmax) = range(&k);
            // (|k| + delta) / kappa maps [kmin, kmax] onto [vmin, vmax]
            let kappa = if vmax > vmin && kmax > kmin {
                (kmax - kmin) / (vmax - vmin)
            } else {
                1.0
            };
            let delta = kappa * vmin - kmin;
            v.iter()
                .zip(&k)
                .map(|(vi, ki)| (1.0 - r) * vi + r * (ki + delta) / kappa)
                .collect()
        }
        OrderingKind::Momentum => momenta(ctx, what, p.kind)?
            .iter()
            .map(|k2| k2.sqrt())
            .collect(),
        OrderingKind::LogMomentum => {
            let m2 = check_range(
                "schedule.mass_sq",
                p.mass_sq,
                f64::MIN_POSITIVE,
                f64::INFINITY,
            )?;
            momenta(ctx, what, p.kind)?
                .iter()
                .map(|k2| (k2 + m2).ln())
                .collect()
        }
        OrderingKind::Column => positions(ctx, what, p.kind)?.iter().map(|x| x[1]).collect(),
        OrderingKind::Row => positions(ctx, what, p.kind)?.iter().map(|x| x[0]).collect(),
        OrderingKind::Level => {
            let c = check_range(
                "schedule.b",
                p.column_weight,
                f64::NEG_INFINITY,
                f64::INFINITY,
            )?;
            let w = ctx.basis.shape().w as f64;
            ctx.basis
                .components()
                .iter()
                .map(|info| match (info.wavelet, info.position) {
                    (Some(wv), Some(pos)) => Ok(wv.level as f64 + c * pos[1] / w),
                    _ => Err(Error::MissingMetadata {
                        what: format!("{what} with ordering `level`"),
                        needs: "wavelet levels (use the haar basis)",
                        basis: ctx.basis.name(),
                    }),
                })
                .collect::<Result<Vec<f64>>>()?
        }
    })
}

/// Ordering variables l_i with their parameters, shared by `linear` and `sequential`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrderingParams {
    /// The ordering variable.
    pub kind: OrderingKind,
    /// `frequency`: mix r in [0, 1] between -log Var (r = 0) and |k| (r = 1).
    pub r: f64,
    /// `level`: column weight of l = level + c * column / W.
    pub column_weight: f64,
    /// `log-momentum`: m_L^2 of l = log(|k_hat|^2 + m_L^2).
    pub mass_sq: f64,
}
