//! Prior scalings S (SPEC section 1): the prior is N(0, U^T S^2 U) in phi-space and the
//! whitened coordinates are `chi = S^-1 U phi`.
//!
//! - `white`: S = sigma_data (one scalar, the data's overall std);
//! - `matched`: S_i^2 = Var(chi_tilde_i) (variance matching; PCA whitening with the pca basis);
//! - `free`: S_k^2 = A / (|k_hat|^2 + m^2), the Gaussian fixed point of RG, with A and m^2
//!   fitted to the data's power spectrum by least squares on log-power unless given.

use crate::basis::Basis;
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// The result of fitting a prior: S_i per component, and the config with every fitted value
/// filled in (written to the resolved config of a run).
#[derive(Debug, Clone)]
pub struct FittedPrior {
    /// S_i per component.
    pub scale: Vec<f64>,
    /// The config with every fitted value filled in.
    pub resolved: PriorConfig,
}

/// A prior scaling, fitted to the component variances of the data.
pub trait Prior: Send + Sync + std::fmt::Debug {
    /// The config name (`white`, `matched`, `free`).
    fn name(&self) -> &'static str;
    /// `var_comp[i] = Var(chi_tilde_i)` over the data.
    fn fit(&self, basis: &dyn Basis, var_comp: &[f64]) -> Result<FittedPrior>;
}

#[derive(Debug, Clone, Copy)]
/// S = 1.
pub struct WhitePrior;

#[derive(Debug, Clone, Copy)]
/// S_i = std of component i.
pub struct MatchedPrior;

/// The free-field prior; `None` parameters are fitted.
#[derive(Debug, Clone, Copy)]
pub struct FreeFieldPrior {
    /// Amplitude A; fitted to the data when absent.
    pub amplitude: Option<f64>,
    /// Mass squared m^2; fitted to the data when absent.
    pub m2: Option<f64>,
}

impl Prior for WhitePrior {
    fn name(&self) -> &'static str {
        "white"
    }
    fn fit(&self, _basis: &dyn Basis, var_comp: &[f64]) -> Result<FittedPrior> {
        // U is orthogonal: the mean component variance is the mean site variance.
        let sigma_data = (var_comp.iter().sum::<f64>() / var_comp.len() as f64).sqrt();
        Ok(FittedPrior {
            scale: vec![sigma_data; var_comp.len()],
            resolved: PriorConfig::White {},
        })
    }
}

impl Prior for MatchedPrior {
    fn name(&self) -> &'static str {
        "matched"
    }
    fn fit(&self, _basis: &dyn Basis, var_comp: &[f64]) -> Result<FittedPrior> {
        Ok(FittedPrior {
            scale: var_comp.iter().map(|v| v.sqrt()).collect(),
            resolved: PriorConfig::Matched {},
        })
    }
}

impl Prior for FreeFieldPrior {
    fn name(&self) -> &'static str {
        "free"
    }
    fn fit(&self, basis: &dyn Basis, var_comp: &[f64]) -> Result<FittedPrior> {
        let k2 = crate::basis::momenta_sq(basis, "the `free` prior")?;
        if let Some(a) = self.amplitude {
            crate::error::check_range("prior.amplitude", a, f64::MIN_POSITIVE, f64::INFINITY)?;
        }
        if let Some(m2) = self.m2 {
            crate::error::check_range("prior.m2", m2, f64::MIN_POSITIVE, f64::INFINITY)?;
        }
        let fit = FreeFieldFit::fit(&k2, var_comp, self.amplitude, self.m2);
        let scale = k2
            .iter()
            .map(|k| (fit.amplitude / (k + fit.m2)).sqrt())
            .collect();
        Ok(FittedPrior {
            scale,
            resolved: PriorConfig::Free {
                amplitude: Some(fit.amplitude),
                m2: Some(fit.m2),
            },
        })
    }
}

/// Least-squares fit of `log P_k = log A - log(|k_hat|^2 + m^2)` to measured powers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FreeFieldFit {
    /// The fitted amplitude A.
    pub amplitude: f64,
    /// The fitted m^2.
    pub m2: f64,
    /// Root mean square residual in log-power.
    pub rms_log_residual: f64,
}

impl FreeFieldFit {
    /// Fits the parameters that are `None`; m^2 is searched on a log grid over [1e-8, 1e6]
    /// and refined by golden section (log A has a closed form for fixed m^2).
    pub fn fit(k2: &[f64], power: &[f64], amplitude: Option<f64>, m2: Option<f64>) -> Self {
        let log_p: Vec<f64> = power.iter().map(|p| p.ln()).collect();
        let n = k2.len() as f64;
        let best_log_a = |m2: f64| match amplitude {
            Some(a) => a.ln(),
            None => {
                log_p
                    .iter()
                    .zip(k2)
                    .map(|(lp, k)| lp + (k + m2).ln())
                    .sum::<f64>()
                    / n
            }
        };
        let loss = |m2: f64| {
            let la = best_log_a(m2);
            log_p
                .iter()
                .zip(k2)
                .map(|(lp, k)| (lp - la + (k + m2).ln()).powi(2))
                .sum::<f64>()
        };
        let m2 = m2.unwrap_or_else(|| {
            let (lo, hi) = (1e-8f64.ln(), 1e6f64.ln());
            let grid = 400;
            let at = |i: usize| lo + (hi - lo) * i as f64 / grid as f64;
            let best = (0..=grid)
                .min_by(|&a, &b| loss(at(a).exp()).total_cmp(&loss(at(b).exp())))
                .unwrap_or(0);
            let (mut a, mut b) = (at(best.saturating_sub(1)), at((best + 1).min(grid)));
            let g = (5f64.sqrt() - 1.0) / 2.0;
            for _ in 0..100 {
                let (c, d) = (b - g * (b - a), a + g * (b - a));
                if loss(c.exp()) < loss(d.exp()) {
                    b = d;
                } else {
                    a = c;
                }
            }
            (0.5 * (a + b)).exp()
        });
        let amplitude = best_log_a(m2).exp();
        let rms_log_residual = (loss(m2) / n).sqrt();
        FreeFieldFit {
            amplitude,
            m2,
            rms_log_residual,
        }
    }
}

/// The prior scaling S.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PriorConfig {
    /// S = 1: the components keep their variances.
    White {},
    /// S_i = the standard deviation of component i (every component whitened).
    Matched {},
    /// The free-field spectrum S_i^2 = A / (k_i^2 + m^2), fitted when absent.
    Free {
        /// A of S_k^2 = A / (|k_hat|^2 + m^2); fitted when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        amplitude: Option<f64>,
        /// m^2; fitted when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        m2: Option<f64>,
    },
}

impl PriorConfig {
    /// The prior it names.
    pub fn build(&self) -> Box<dyn Prior> {
        match *self {
            PriorConfig::White {} => Box::new(WhitePrior),
            PriorConfig::Matched {} => Box::new(MatchedPrior),
            PriorConfig::Free { amplitude, m2 } => Box::new(FreeFieldPrior { amplitude, m2 }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_fit_recovers_exact_power_law() {
        let k2: Vec<f64> = (0..50).map(|i| i as f64 * 0.16).collect();
        let p: Vec<f64> = k2.iter().map(|k| 0.5 / (k + 0.3)).collect();
        let fit = FreeFieldFit::fit(&k2, &p, None, None);
        assert!((fit.m2 - 0.3).abs() < 1e-6, "{fit:?}");
        assert!((fit.amplitude - 0.5).abs() < 1e-6, "{fit:?}");
        assert!(fit.rms_log_residual < 1e-6);
        let fixed = FreeFieldFit::fit(&k2, &p, Some(0.5), None);
        assert!((fixed.m2 - 0.3).abs() < 1e-6);
        let fixed = FreeFieldFit::fit(&k2, &p, None, Some(0.3));
        assert!((fixed.amplitude - 0.5).abs() < 1e-9);
    }
}
