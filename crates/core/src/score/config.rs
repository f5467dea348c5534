//! The config of the score axis (STYLE "Configs"): `[score] kind = "gaussian"`, and the
//! analytic models it builds for a fitted design (SPEC section 4).

use super::{
    fit_base, BaseConfig, ElsScore, EmpiricalScore, GaussianScore, MixtureConfig, MixtureScore,
    PatchRule, ScoreModel, SmoothedScore,
};
use crate::design::Design;
use crate::error::Result;
use crate::field::Dataset;
use serde::{Deserialize, Serialize};

/// The score model (SPEC section 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ScoreConfig {
    /// Exact for Gaussian data: eps_hat_i = sigma_i chi_i / (alpha_i^2 Sigma_i + sigma_i^2).
    Gaussian {},
    /// The optimal denoiser of the training set (memorises).
    Empirical {},
    /// Empirical weights averaged over `perturbations` queries chi + scale eps_m.
    Smoothed {
        #[serde(default = "default_smoothing_scale")]
        /// Perturbation scale s (whitened units).
        scale: f64,
        #[serde(default = "default_perturbations")]
        /// Number M of perturbations.
        perturbations: usize,
        #[serde(default)]
        /// Seed of the perturbations.
        seed: u64,
    },
    /// The equivariant local patch machine (pixel basis).
    Els {
        #[serde(default)]
        /// The patch size rule.
        patch: PatchRule,
    },
    /// The analytic base alone with a mixture (SPEC section 4): fitted K-Gaussian mixtures for
    /// the chosen components, Gaussian elsewhere.
    Mixture(MixtureConfig),
    /// The trained U-Net (`eps_hat = eps_gaussian + NN`), built by the gud-nn crate from a run
    /// directory; its architecture is `[network]`, its training `[train]`.
    Neural {},
}

fn default_smoothing_scale() -> f64 {
    1.0
}
fn default_perturbations() -> usize {
    16
}

impl Default for ScoreConfig {
    fn default() -> Self {
        ScoreConfig::Gaussian {}
    }
}

/// The training set in whitened coordinates, chi^n = S^-1 U (phi^n - mu), (N, d) row-major.
pub fn whitened_training_set(design: &Design, data: &Dataset) -> Result<Vec<f64>> {
    let d = design.dim();
    if data.shape() != design.shape() {
        return Err(crate::Error::ShapeMismatch {
            what: "training set".into(),
            expected: format!("samples of shape {}", design.shape()),
            got: format!("shape {}", data.shape()),
        });
    }
    if data.is_empty() {
        return Err(crate::Error::EmptyData(
            "the score model needs at least one training sample".into(),
        ));
    }
    let mut out = vec![0.0; data.len() * d];
    for (s, o) in data.samples().zip(out.chunks_exact_mut(d)) {
        let chi = design.field_to_whitened(&crate::Field(s.to_vec()))?;
        o.copy_from_slice(chi.as_slice());
    }
    Ok(out)
}

impl ScoreConfig {
    /// Builds the model for `design`; `train` is the training set (empirical, smoothed, els).
    pub fn build(&self, design: &Design, train: &Dataset) -> Result<Box<dyn ScoreModel>> {
        Ok(match self {
            ScoreConfig::Gaussian {} => Box::new(GaussianScore::new(design.sigma_data().to_vec())),
            ScoreConfig::Empirical {} => Box::new(EmpiricalScore::new(
                design.dim(),
                whitened_training_set(design, train)?,
            )?),
            ScoreConfig::Smoothed {
                scale,
                perturbations,
                seed,
            } => Box::new(SmoothedScore::new(
                EmpiricalScore::new(design.dim(), whitened_training_set(design, train)?)?,
                *scale,
                *perturbations,
                *seed,
            )?),
            ScoreConfig::Mixture(m) => {
                let chi = whitened_training_set(design, train)?;
                let symmetric = design.resolved_config().mean == crate::design::MeanMode::Zero;
                let (base, _) = fit_base(
                    &BaseConfig::Mixture(m.clone()),
                    design.basis(),
                    design.shape(),
                    design.sigma_data(),
                    &chi,
                    symmetric,
                )?;
                Box::new(MixtureScore::new(base))
            }
            ScoreConfig::Neural {} => {
                return Err(crate::Error::param(
                    "score.kind",
                    "neural",
                    "an analytic score here: the neural score is loaded from a trained run \
                     directory, with its network",
                ))
            }
            ScoreConfig::Els { patch } => {
                if design.basis().name() != "pixel" {
                    return Err(crate::Error::param(
                        "score.kind",
                        "els",
                        &format!(
                            "the pixel basis (the local patch machine works on pixels; this \
                             design uses the `{}` basis)",
                            design.basis().name()
                        ),
                    ));
                }
                Box::new(ElsScore::new(
                    design.shape(),
                    whitened_training_set(design, train)?,
                    patch.clone(),
                )?)
            }
        })
    }
}
