//! The network and training settings of a config (`[network]`, `[train]`): plain serde types,
//! here rather than in gud-nn (which re-exports them as `gud_nn::config`) so that the pipeline
//! reads and writes them without linking libtorch.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Padding of the U-Net's convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Padding {
    /// Periodic (a torus: lattice fields); keeps translation equivariance exact.
    Circular,
    /// Zeros outside the image (natural images).
    Zeros,
}

/// Architecture of the U-Net score network (SPEC section 4, `neural`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Channels at the finest resolution.
    pub width: usize,
    /// Channel multiplier per resolution level; the image is halved between levels.
    pub multipliers: Vec<usize>,
    /// Residual blocks per level.
    pub blocks: usize,
    /// Groups of the group norms (must divide every width).
    pub groups: usize,
    /// Size of the noising-state embedding.
    pub embedding: usize,
    /// Padding of the convolutions.
    pub padding: Padding,
    /// Feed U^T gamma as an extra input channel; by default on for local bases (pixel, haar).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gamma_channel: Option<bool>,
    /// A global head: an MLP of the site means of x, x^2 and x^3 (per input channel) and the
    /// noising-state embedding adds one constant per channel to the output (the zero mode's
    /// non-Gaussian correction, which the group norms of the convolutions wash out).
    pub global: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            width: 32,
            multipliers: vec![1, 2],
            blocks: 1,
            groups: 8,
            embedding: 64,
            padding: Padding::Circular,
            gamma_channel: None,
            global: false,
        }
    }
}

/// Training of the `neural` score (loss of SPEC section 4; AdamW, warm-up + cosine, EMA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimisation steps.
    pub steps: u64,
    /// Samples per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the cosine decay, as a fraction of `lr`.
    pub lr_final: f64,
    /// Warm-up steps.
    pub warmup: u64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Gradients are rescaled to at most this global norm.
    pub clip: f64,
    /// EMA decay of the weights.
    pub ema: f64,
    /// Seed of initialisation and batches.
    pub seed: u64,
    /// Checkpoint every this many steps (and at the end, and at Ctrl-C).
    pub checkpoint_every: u64,
    /// Metrics log line every this many steps.
    pub log_every: u64,
    /// Random lattice translations; by default on for lattice data (phi4, free-field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub translate: Option<bool>,
    /// The Z2 flip phi -> -phi; by default on for lattice data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flip_sign: Option<bool>,
    /// Horizontal flips (images).
    pub flip_horizontal: bool,
    /// libtorch threads; all cores when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// `cpu` or `cuda`.
    pub device: String,
    /// Train over a family of schedules (SPEC section 4): the parameters are drawn per sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<FamilyConfig>,
    /// Min-SNR-k loss weights per component (Hang et al. 2023, here component-wise):
    /// `lambda_i = sigma_i^2 min(1, k / SNR_i)` with `SNR_i = Sigma_i e^-gamma_i` (GUD eq. 17).
    /// Components far below their noise level, whose eps target is pure noise, then weigh
    /// little; the minimiser (the score) is the same. Absent: `lambda_i = sigma_i^2` (SPEC 4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_snr: Option<f64>,
    /// Stable target (Xu et al. 2023): regress on the optimal denoiser's eps of a reference
    /// set of R samples (the batch and R - B more, augmented) instead of the drawn eps. Same
    /// minimiser as R grows, far less variance where the data term is weak (the lowest modes
    /// of a hierarchical schedule). Absent: the drawn eps (SPEC section 4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable_target: Option<usize>,
}

/// A family of schedules: the softness a (`linear`: a; `sequential`: softness) and optionally
/// the ordering mix r (`linear` frequency ordering) uniform in their ranges. The network sees
/// only gamma_t, never the parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamilyConfig {
    /// The softness range [lo, hi].
    pub a: [f64; 2],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The ordering mix range [lo, hi].
    pub r: Option<[f64; 2]>,
}

impl FamilyConfig {
    /// Checks that the ranges are ordered, a > 0 and r in [0, 1].
    pub fn check(&self) -> Result<()> {
        let [lo, hi] = self.a;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return Err(Error::param(
                "train.family.a",
                format!("[{lo}, {hi}]"),
                "a range [lo, hi] with 0 < lo <= hi",
            ));
        }
        if let Some([lo, hi]) = self.r {
            if !(0.0 <= lo && lo <= hi && hi <= 1.0) {
                return Err(Error::param(
                    "train.family.r",
                    format!("[{lo}, {hi}]"),
                    "a range [lo, hi] inside [0, 1]",
                ));
            }
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 2000,
            batch: 128,
            lr: 2e-3,
            lr_final: 0.05,
            warmup: 200,
            weight_decay: 1e-4,
            clip: 1.0,
            ema: 0.999,
            family: None,
            min_snr: None,
            stable_target: None,
            seed: 0,
            checkpoint_every: 500,
            log_every: 50,
            translate: None,
            flip_sign: None,
            flip_horizontal: false,
            threads: None,
            device: "cpu".into(),
        }
    }
}
