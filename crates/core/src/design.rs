//! A design: one point of the design space fitted to a data set (SPEC section 1, GUD 4.1).
//!
//! `chi_tilde = U (phi - mu)`, `chi = S^-1 chi_tilde`; `Sigma_i = Var(chi_tilde_i) / S_i^2` is the
//! data variance of the whitened component (1 for every component with the `matched` prior).

use crate::basis::BasisConfig;
use crate::basis::{forward_batch, Basis};
use crate::error::{Error, Result};
use crate::field::{Comp, Dataset, Field, Shape, Whitened};
use crate::prior::PriorConfig;
use crate::process::NoisingState;
use crate::schedule::{RgConfig, ScheduleConfig};
use crate::schedule::{Schedule, ScheduleContext};
use crate::score::BaseConfig;
use crate::score::{fit_base, AnalyticBase};
use serde::{Deserialize, Serialize};

/// Relative floor of component variances (components of zero variance in the training data
/// would make log Sigma and the matched prior singular).
pub const VARIANCE_FLOOR: f64 = 1e-12;

/// Basis, prior scaling and schedule, with the data statistics they were fitted to.
#[derive(Debug)]
pub struct Design {
    resolved: DesignConfig,
    shape: Shape,
    mean: Vec<f64>,
    basis: std::sync::Arc<dyn Basis>,
    var_comp: Vec<f64>,
    scale: Vec<f64>,
    sigma_data: Vec<f64>,
    schedule: Box<dyn Schedule>,
    base: AnalyticBase,
}

impl Design {
    /// Fits the design of `config` to `data`: mean, basis (pca), component variances, prior
    /// (free-field parameters) and schedule (ordering variables, endpoints).
    pub fn fit(config: &DesignConfig, data: &Dataset) -> Result<Self> {
        let shape = data.shape();
        let d = shape.dim();
        let n = data.len();
        let mean = match config.mean {
            MeanMode::Zero => vec![0.0; d],
            MeanMode::Estimate => {
                let mut m = vec![0.0; d];
                for s in data.samples() {
                    for (a, b) in m.iter_mut().zip(s) {
                        *a += b / n as f64;
                    }
                }
                m
            }
        };
        let dof = match config.mean {
            MeanMode::Zero => n as f64,
            MeanMode::Estimate if n >= 2 => (n - 1) as f64,
            MeanMode::Estimate => {
                return Err(Error::EmptyData(
                    "estimating the mean and variances needs at least 2 samples".into(),
                ))
            }
        };
        let basis: std::sync::Arc<dyn Basis> = config.basis.build(shape, data, &mean)?.into();
        let centred: Vec<f64> = data
            .as_slice()
            .chunks_exact(d)
            .flat_map(|s| s.iter().zip(&mean).map(|(x, m)| x - m))
            .collect();
        let mut chi = vec![0.0; centred.len()];
        forward_batch(basis.as_ref(), &centred, &mut chi);
        let mut var_comp = vec![0.0; d];
        for s in chi.chunks_exact(d) {
            for (v, x) in var_comp.iter_mut().zip(s) {
                *v += x * x / dof;
            }
        }
        // quantised data are modelled dequantised: uniform noise in each bin adds w^2 / 12 to
        // every component (U orthogonal), so that constant pixels keep a finite density
        if let Some(q) = data.quantization() {
            for v in &mut var_comp {
                *v += q.bin_width * q.bin_width / 12.0;
            }
        }
        let vmax = var_comp.iter().copied().fold(0.0, f64::max);
        if vmax <= 0.0 || !vmax.is_finite() {
            return Err(Error::DegenerateData(
                "every value of the data set is the same (zero variance): a design needs data \
                 that vary"
                    .into(),
            ));
        }
        for v in &mut var_comp {
            *v = v.max(VARIANCE_FLOOR * vmax);
        }
        let fitted = config.prior.build().fit(basis.as_ref(), &var_comp)?;
        let sigma_data: Vec<f64> = var_comp
            .iter()
            .zip(&fitted.scale)
            .map(|(v, s)| v / (s * s))
            .collect();
        let log_sigma: Vec<f64> = sigma_data.iter().map(|s| s.ln()).collect();
        let ctx = ScheduleContext {
            basis: basis.as_ref(),
            var_comp: &var_comp,
            log_sigma: &log_sigma,
        };
        let schedule = config.schedule.build(&ctx)?;
        // the analytic base on the whitened data chi = chi_tilde / S (SPEC section 4)
        let whitened: Vec<f64> = chi
            .chunks_exact(d)
            .flat_map(|row| row.iter().zip(&fitted.scale).map(|(c, s)| c / s))
            .collect();
        let symmetric = config.mean == MeanMode::Zero;
        let (base, resolved_base) = fit_base(
            &config.base,
            basis.as_ref(),
            shape,
            &sigma_data,
            &whitened,
            symmetric,
        )?;
        let resolved = DesignConfig {
            prior: fitted.resolved,
            base: resolved_base,
            ..config.clone()
        };
        Ok(Design {
            resolved,
            shape,
            mean,
            basis,
            var_comp,
            scale: fitted.scale,
            sigma_data,
            schedule,
            base,
        })
    }

    /// The schedule `config` fitted to this design's basis and statistics (a member of a
    /// schedule family: same basis, prior and data, another schedule).
    pub fn schedule_variant(&self, config: &ScheduleConfig) -> Result<Box<dyn Schedule>> {
        let log_sigma: Vec<f64> = self.sigma_data.iter().map(|s| s.ln()).collect();
        let ctx = ScheduleContext {
            basis: self.basis.as_ref(),
            var_comp: &self.var_comp,
            log_sigma: &log_sigma,
        };
        config.build(&ctx)
    }

    /// This design with another schedule (basis, prior and statistics shared by value).
    pub fn with_schedule(&self, config: &ScheduleConfig) -> Result<Design> {
        let schedule = self.schedule_variant(config)?;
        Ok(Design {
            resolved: DesignConfig {
                schedule: config.clone(),
                ..self.resolved.clone()
            },
            shape: self.shape,
            mean: self.mean.clone(),
            basis: self.basis.clone(),
            var_comp: self.var_comp.clone(),
            scale: self.scale.clone(),
            sigma_data: self.sigma_data.clone(),
            schedule,
            base: self.base.clone(),
        })
    }

    /// The config with fitted values filled in.
    pub fn resolved_config(&self) -> &DesignConfig {
        &self.resolved
    }
    /// The shape of one field.
    pub fn shape(&self) -> Shape {
        self.shape
    }
    /// Number of components d.
    pub fn dim(&self) -> usize {
        self.shape.dim()
    }
    /// The fitted basis U.
    pub fn basis(&self) -> &dyn Basis {
        self.basis.as_ref()
    }
    /// The fitted schedule.
    pub fn schedule(&self) -> &dyn Schedule {
        self.schedule.as_ref()
    }
    /// The data mean mu (per site).
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }
    /// Var(chi_tilde_i) over the training data.
    pub fn component_variance(&self) -> &[f64] {
        &self.var_comp
    }
    /// The prior scaling S_i.
    pub fn scale(&self) -> &[f64] {
        &self.scale
    }
    /// Sigma_i = Var(chi_tilde_i) / S_i^2.
    pub fn sigma_data(&self) -> &[f64] {
        &self.sigma_data
    }
    /// The analytic base of the score (Gaussian, or with fitted mixtures; SPEC section 4).
    pub fn base(&self) -> &AnalyticBase {
        &self.base
    }

    fn check_len(&self, what: &str, len: usize) -> Result<()> {
        if len == self.dim() {
            Ok(())
        } else {
            Err(Error::ShapeMismatch {
                what: what.into(),
                expected: format!("{} values (shape {})", self.dim(), self.shape),
                got: format!("{len} values"),
            })
        }
    }

    /// chi_tilde = U (phi - mu)
    pub fn to_comp(&self, phi: &Field) -> Result<Comp> {
        self.check_len("field", phi.len())?;
        let centred: Vec<f64> = phi.0.iter().zip(&self.mean).map(|(x, m)| x - m).collect();
        let mut chi = vec![0.0; self.dim()];
        self.basis.forward(&centred, &mut chi);
        Ok(Comp(chi))
    }

    /// chi = S^-1 chi_tilde
    pub fn whiten(&self, comp: &Comp) -> Whitened {
        Whitened(comp.0.iter().zip(&self.scale).map(|(c, s)| c / s).collect())
    }

    /// chi_tilde = S chi
    pub fn unwhiten(&self, chi: &Whitened) -> Comp {
        Comp(chi.0.iter().zip(&self.scale).map(|(c, s)| c * s).collect())
    }

    /// phi = U^T chi_tilde + mu
    pub fn to_field(&self, comp: &Comp) -> Result<Field> {
        self.check_len("components", comp.len())?;
        let mut phi = vec![0.0; self.dim()];
        self.basis.inverse(&comp.0, &mut phi);
        for (p, m) in phi.iter_mut().zip(&self.mean) {
            *p += m;
        }
        Ok(Field(phi))
    }

    /// chi = S^-1 U (phi - mu)
    pub fn field_to_whitened(&self, phi: &Field) -> Result<Whitened> {
        Ok(self.whiten(&self.to_comp(phi)?))
    }

    /// phi = U^T S chi + mu
    pub fn whitened_to_field(&self, chi: &Whitened) -> Result<Field> {
        self.to_field(&self.unwhiten(chi))
    }

    /// phi = U^T S chi + mu for a batch of whitened samples, (n, d) -> (n, d).
    pub fn whitened_batch_to_fields(&self, chi: &[f64]) -> Vec<f64> {
        let d = self.dim();
        let scaled: Vec<f64> = chi
            .chunks_exact(d)
            .flat_map(|x| x.iter().zip(&self.scale).map(|(c, s)| c * s))
            .collect();
        let mut phi = vec![0.0; scaled.len()];
        crate::basis::inverse_batch(self.basis(), &scaled, &mut phi);
        for row in phi.chunks_exact_mut(d) {
            row.iter_mut().zip(&self.mean).for_each(|(p, m)| *p += m);
        }
        phi
    }

    /// The noising state at time t.
    pub fn state(&self, t: f64) -> NoisingState {
        NoisingState::at(self.schedule.as_ref(), t)
    }
}

/// How the data mean mu is obtained (SPEC section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MeanMode {
    /// The per-site mean of the training set.
    Estimate,
    /// Exactly zero (a Z2-symmetric lattice theory).
    Zero,
}

/// One point of the design space: basis, prior and schedule (GUD section 4.1), and the
/// analytic base of the score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DesignConfig {
    /// How the data mean is obtained.
    pub mean: MeanMode,
    /// The basis U.
    pub basis: BasisConfig,
    /// The prior scaling S.
    pub prior: PriorConfig,
    /// The component-wise schedule.
    pub schedule: ScheduleConfig,
    /// The analytic base of the score.
    pub base: BaseConfig,
}

impl Default for DesignConfig {
    fn default() -> Self {
        DesignConfig {
            mean: MeanMode::Estimate,
            basis: BasisConfig::Fourier {},
            prior: PriorConfig::Free {
                amplitude: None,
                m2: None,
            },
            schedule: ScheduleConfig::Rg(RgConfig::default()),
            base: BaseConfig::default(),
        }
    }
}
