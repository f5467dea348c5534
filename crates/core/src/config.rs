//! Serde configuration of a design (STYLE "Configs"): tagged enums, kebab-case kinds, unknown
//! keys rejected, defaults in one `Default` impl each. `build()` turns a config into the trait
//! object it names. Parsing files (TOML) is the job of the io crate; these types only derive.

use crate::basis::{Basis, FourierBasis, HaarBasis, PcaBasis, PixelBasis};
use crate::error::{Error, Result};
use crate::field::{Dataset, Shape};
use crate::prior::{FreeFieldPrior, MatchedPrior, Prior, WhitePrior};
use crate::schedule::ordering::OrderingKind;
pub use crate::score::PatchRule;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The basis in which the forward process is diagonal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BasisConfig {
    Pixel {},
    Fourier {},
    Pca {},
    Haar {
        /// Decomposition steps; all the way to 1 x 1 when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        levels: Option<usize>,
    },
}

impl BasisConfig {
    /// Builds the basis; `pca` is fitted to `data - mean`.
    pub fn build(&self, shape: Shape, data: &Dataset, mean: &[f64]) -> Result<Box<dyn Basis>> {
        Ok(match self {
            BasisConfig::Pixel {} => Box::new(PixelBasis::new(shape)),
            BasisConfig::Fourier {} => Box::new(FourierBasis::new(shape)),
            BasisConfig::Pca {} => Box::new(PcaBasis::fit(data, mean)?),
            BasisConfig::Haar { levels } => Box::new(HaarBasis::new(shape, *levels)?),
        })
    }
}

/// The prior scaling S.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PriorConfig {
    White {},
    Matched {},
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
    pub fn build(&self) -> Box<dyn Prior> {
        match *self {
            PriorConfig::White {} => Box::new(WhitePrior),
            PriorConfig::Matched {} => Box::new(MatchedPrior),
            PriorConfig::Free { amplitude, m2 } => Box::new(FreeFieldPrior { amplitude, m2 }),
        }
    }
}

/// `vp-linear` (Song et al. 2021): beta(t) = beta_min + t (beta_max - beta_min).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VpLinearConfig {
    pub beta_min: f64,
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
    pub s: f64,
}

impl Default for CosineConfig {
    fn default() -> Self {
        CosineConfig { s: 0.008 }
    }
}

/// Ordering variables l_i with their parameters, shared by `linear` and `sequential`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrderingParams {
    pub kind: OrderingKind,
    /// `frequency`: mix r in [0, 1] between -log Var (r = 0) and |k| (r = 1).
    pub r: f64,
    /// `level`: column weight of l = level + c * column / W.
    pub column_weight: f64,
    /// `log-momentum`: m_L^2 of l = log(|k_hat|^2 + m_L^2).
    pub mass_sq: f64,
}

/// `linear` (GUD eq. 18-20): gamma_i(t) = gamma_min_i + t dgamma.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinearConfig {
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
    pub fn ordering_params(&self) -> OrderingParams {
        OrderingParams {
            kind: self.ordering,
            r: self.r,
            column_weight: self.b / self.a,
            mass_sq: self.mass_sq,
        }
    }
}

/// `sequential` (GUD 5.2): clipped linear schedule with per-component time offsets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SequentialConfig {
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
    pub fn ordering_params(&self) -> OrderingParams {
        OrderingParams {
            kind: self.ordering,
            r: self.r,
            column_weight: self.b,
            mass_sq: self.mass_sq,
        }
    }
}

/// The RG regulator of the cutoff kernel K_Lambda(k).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Regulator {
    /// K = sigmoid((Lambda - |k|) / width), Lambda linear in t (slides).
    Sigmoid,
    /// K = Lambda^2 / (Lambda^2 + |k|^2 + m_L^2), Lambda geometric in t (RGDM).
    Massive,
}

/// `rg`: the RG cutoff-kernel schedule on the fourier basis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RgConfig {
    pub regulator: Regulator,
    /// `sigmoid`: width w of the kernel edge in |k| (equivalent to a = 1 / w).
    pub width: f64,
    /// `massive`: m_L^2.
    pub mass_sq: f64,
    pub g_denoise: f64,
    pub g_noise: f64,
}

impl Default for RgConfig {
    fn default() -> Self {
        RgConfig {
            regulator: Regulator::Sigmoid,
            width: 0.5,
            mass_sq: 1.0,
            g_denoise: -7.0,
            g_noise: 9.0,
        }
    }
}

/// The component-wise noise schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ScheduleConfig {
    VpLinear(VpLinearConfig),
    Cosine(CosineConfig),
    Linear(LinearConfig),
    Sequential(SequentialConfig),
    Rg(RgConfig),
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

/// Which components get a mixture base: the zero mode(s), all, or the N of largest |excess
/// kurtosis| of the whitened data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MixtureModes {
    /// The N components of largest |excess kurtosis|.
    Count(usize),
    /// `"zero"` or `"all"`.
    Named(ModeSet),
}

/// The named sets of [`MixtureModes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeSet {
    /// The constant (zero-momentum) component of each channel: the magnetisation of a lattice.
    Zero,
    /// Every component.
    All,
}

/// A fitted mixture of one component (written into the resolved config, so that a run
/// reproduces its base without refitting).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FittedMixture {
    pub component: usize,
    pub weights: Vec<f64>,
    pub means: Vec<f64>,
    pub variances: Vec<f64>,
}

/// A K-Gaussian mixture base for the chosen components (SPEC section 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MixtureConfig {
    /// K, the Gaussians per component (K = 1 is the Gaussian base, refitted).
    pub components: usize,
    pub modes: MixtureModes,
    /// The fitted mixtures; fitted by EM (maximum likelihood) when absent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fitted: Vec<FittedMixture>,
}

impl Default for MixtureConfig {
    fn default() -> Self {
        MixtureConfig {
            components: 2,
            modes: MixtureModes::Named(ModeSet::Zero),
            fitted: Vec::new(),
        }
    }
}

/// The analytic base that the `neural` score adds its correction to (SPEC section 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BaseConfig {
    /// eps_i = sigma_i chi_i / (alpha_i^2 Sigma_i + sigma_i^2) for every component.
    Gaussian {},
    /// A fitted K-Gaussian mixture for the chosen components, Gaussian elsewhere.
    Mixture(MixtureConfig),
}

impl Default for BaseConfig {
    fn default() -> Self {
        BaseConfig::Gaussian {}
    }
}

/// One point of the design space: basis, prior and schedule (GUD section 4.1), and the
/// analytic base of the score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DesignConfig {
    pub mean: MeanMode,
    pub basis: BasisConfig,
    pub prior: PriorConfig,
    pub schedule: ScheduleConfig,
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

/// Exact draws of the free lattice field (SPEC section 7 at lam = 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FreeFieldDataConfig {
    /// Lattice size L (L x L, periodic).
    pub size: usize,
    pub m2: f64,
    pub samples: usize,
    pub seed: u64,
}

impl Default for FreeFieldDataConfig {
    fn default() -> Self {
        FreeFieldDataConfig {
            size: 16,
            m2: 0.25,
            samples: 1024,
            seed: 0,
        }
    }
}

/// A data set read from a .npy file of shape (N, H, W) or (N, C, H, W).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpyDataConfig {
    pub path: PathBuf,
}

/// Lattice phi^4 configurations generated by HMC (SPEC section 7), cached by couplings and seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Phi4DataConfig {
    /// Lattice size L.
    pub size: usize,
    pub m2: f64,
    pub lam: f64,
    pub samples: usize,
    pub seed: u64,
}

impl Default for Phi4DataConfig {
    /// The slides' broken-phase point on an 8 x 8 lattice.
    fn default() -> Self {
        Phi4DataConfig {
            size: 8,
            m2: -4.0,
            lam: 8.0,
            samples: 4096,
            seed: 0,
        }
    }
}

/// How 8-bit image levels k are mapped to reals (bin centres, SPEC section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageScale {
    /// x = (k + 1/2) / 128 - 1, in (-1, 1).
    #[default]
    Symmetric,
    /// x = (k + 1/2) / 256, in (0, 1).
    Unit,
}

impl ImageScale {
    pub fn quantization(self) -> crate::field::Quantization {
        match self {
            ImageScale::Symmetric => crate::field::Quantization::eight_bit_symmetric(),
            ImageScale::Unit => crate::field::Quantization {
                levels: 256,
                bin_width: 1.0 / 256.0,
                origin: 0.0,
            },
        }
    }
}

/// Real images: an IDX file (MNIST format, raw or .gz), a folder of PNGs (gray or RGB; class
/// subfolders give labels) or a .npy of uint8 levels (or floats, used as they are).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDataConfig {
    pub train: PathBuf,
    /// IDX labels of the training images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_labels: Option<PathBuf>,
    /// Held-out images (for `gud nll` and the metrics); the training set when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_labels: Option<PathBuf>,
    /// Use only the first N images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Centre crop to [H, W] (before resizing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<[usize; 2]>,
    /// Resize to [H, W] (bilinear with antialiasing, rounded back to 8-bit levels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<[usize; 2]>,
    #[serde(default)]
    pub scale: ImageScale,
}

/// Where the training data come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DataConfig {
    Phi4(Phi4DataConfig),
    FreeField(FreeFieldDataConfig),
    Npy(NpyDataConfig),
    Images(ImageDataConfig),
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig::Phi4(Phi4DataConfig::default())
    }
}

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
        scale: f64,
        #[serde(default = "default_perturbations")]
        perturbations: usize,
        #[serde(default)]
        seed: u64,
    },
    /// The equivariant local patch machine (pixel basis).
    Els {
        #[serde(default)]
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

/// The reverse-time integrator (SPEC section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    /// Euler-Maruyama on the reverse SDE.
    Sde,
    /// Heun on the probability-flow ODE.
    Ode,
    /// Exact Gaussian posterior steps.
    Ancestral,
    /// Probability-flow ODE with the Gaussian part integrated exactly (Adams-Bashforth on the
    /// residual, one evaluation per step).
    Exp,
}

/// Where the sampler's grid points lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeGrid {
    /// Uniform in t.
    UniformT,
    /// Uniform in the mean of gamma_i(t).
    UniformGamma,
}

/// v_t of the ancestral step: the posterior variance of chi0 given chi_t.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PosteriorVariance {
    /// v_t = 0 (the usual DDPM choice; under-dispersed at coarse steps).
    None,
    /// v_t,i = Sigma_i sigma_i^2 / (alpha_i^2 Sigma_i + sigma_i^2), exact for Gaussian data.
    Gaussian,
}

/// RG projection (RGDM fig. 2c): skip components that are not active over a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectionConfig {
    pub enabled: bool,
    /// A component whose SNR_i = Sigma_i exp(-gamma_i) is below this at both ends of a step is
    /// left as a prior sample.
    pub snr_min: f64,
    /// A component whose gamma_i is below this at both ends of a step is frozen.
    pub gamma_frozen: f64,
}

impl Default for ProjectionConfig {
    fn default() -> Self {
        ProjectionConfig {
            enabled: false,
            snr_min: 1e-4,
            gamma_frozen: -10.0,
        }
    }
}

/// How samples are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerConfig {
    pub kind: SamplerKind,
    /// Grid points from t_max to t_min (each sampler then jumps to the data, t = 0).
    pub steps: usize,
    pub grid: TimeGrid,
    pub posterior_variance: PosteriorVariance,
    pub projection: ProjectionConfig,
    /// Samples integrated together (memory is a few (batch, d) buffers).
    pub batch: usize,
    /// Adams-Bashforth order of the `exp` sampler (1 to 3; default 3).
    pub order: usize,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            kind: SamplerKind::Exp,
            steps: 20,
            grid: TimeGrid::UniformT,
            posterior_variance: PosteriorVariance::Gaussian,
            projection: ProjectionConfig::default(),
            batch: 256,
            order: 3,
        }
    }
}

/// A whole config file. A section missing from a file takes that section's own documented
/// default (`DataConfig::default()`, `ScoreConfig::default()` = `gaussian`, ...), never the
/// values of the built-in phi^4 job ([`Config::default`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub design: DesignConfig,
    #[serde(default)]
    pub score: ScoreConfig,
    #[serde(default)]
    pub sampler: SamplerConfig,
    /// The U-Net of the `neural` score (ignored by the analytic scores).
    #[serde(default)]
    pub network: NetworkConfig,
    /// How the `neural` score is trained.
    #[serde(default)]
    pub train: TrainConfig,
}

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
    pub steps: u64,
    pub batch: usize,
    pub lr: f64,
    /// Final learning rate of the cosine decay, as a fraction of `lr`.
    pub lr_final: f64,
    pub warmup: u64,
    pub weight_decay: f64,
    /// Gradients are rescaled to at most this global norm.
    pub clip: f64,
    pub ema: f64,
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
    pub a: [f64; 2],
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
                format!("{self:?}"),
                "`linear` (a, r) or `sequential` (softness a) for a schedule family",
            )),
        }
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

impl Default for Config {
    /// The built-in default: phi^4 (L = 8, m2 = -4, lam = 8) with a mean of exactly zero (Z2
    /// symmetry), fourier basis, free prior, RG schedule, a two-Gaussian mixture base for the
    /// zero mode, the trained `neural` score with the global head, Min-SNR-5 weights and the
    /// stable target (examples/phi4.toml).
    fn default() -> Self {
        Config {
            data: DataConfig::default(),
            // the zero mode's symmetric two-Gaussian mixture base (README: the mixture base)
            design: DesignConfig {
                mean: MeanMode::Zero,
                base: BaseConfig::Mixture(MixtureConfig::default()),
                ..DesignConfig::default()
            },
            score: ScoreConfig::Neural {},
            sampler: SamplerConfig::default(),
            // the zero mode's head and low-variance targets (README: the zero-mode floor)
            network: NetworkConfig {
                global: true,
                ..NetworkConfig::default()
            },
            train: TrainConfig {
                min_snr: Some(5.0),
                stable_target: Some(4096),
                ..TrainConfig::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_sections_take_their_own_defaults_not_the_phi4_jobs() {
        // regression (issue 20): a file without [score], [network], [train] or [design] used to
        // inherit the built-in phi^4 job's neural score, global head, Min-SNR and zero mean
        let c: Config = toml::from_str("[data]\nkind = 'free-field'\n").unwrap();
        assert_eq!(c.score, ScoreConfig::Gaussian {});
        assert_eq!(c.network, NetworkConfig::default());
        assert!(!c.network.global);
        assert_eq!(c.train, TrainConfig::default());
        assert_eq!(c.train.min_snr, None);
        assert_eq!(c.train.stable_target, None);
        assert_eq!(c.design, DesignConfig::default());
        assert_eq!(c.design.mean, MeanMode::Estimate);
        assert_eq!(c.sampler, SamplerConfig::default());
        let empty: Config = toml::from_str("").unwrap();
        assert_eq!(empty.data, DataConfig::default());
        assert_eq!(empty.score, ScoreConfig::Gaussian {});
    }

    #[test]
    fn the_phi4_example_is_the_built_in_default() {
        let c: Config = toml::from_str(include_str!("../../../examples/phi4.toml")).unwrap();
        let mut d = Config::default();
        // the example spells out what the default resolves for lattice data
        d.train.translate = Some(true);
        d.train.flip_sign = Some(true);
        assert_eq!(c, d);
    }

    #[test]
    fn parses_tagged_kinds_with_defaults() {
        let c: Config = toml::from_str(
            r#"
            [data]
            kind = "free-field"
            size = 8
            [design]
            basis = { kind = "haar", levels = 2 }
            prior = { kind = "matched" }
            schedule = { kind = "linear", ordering = "level", a = 2.0, b = 0.5 }
            "#,
        )
        .unwrap();
        assert_eq!(c.design.basis, BasisConfig::Haar { levels: Some(2) });
        match &c.design.schedule {
            ScheduleConfig::Linear(l) => {
                assert_eq!(l.a, 2.0);
                assert_eq!(l.b, 0.5);
                assert_eq!(l.ordering, OrderingKind::Level);
                assert_eq!(l.g_denoise, -7.0);
            }
            other => panic!("{other:?}"),
        }
        match &c.data {
            DataConfig::FreeField(f) => assert_eq!((f.size, f.samples), (8, 1024)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_keys_and_kinds_are_errors_naming_them() {
        let e = toml::from_str::<Config>("[design]\nbasis = { kind = \"fourier\", foo = 1 }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("foo"), "{e}");
        let e = toml::from_str::<Config>("[design]\nbasis = { kind = \"wavelet\" }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("wavelet"), "{e}");
        let e =
            toml::from_str::<Config>("[design]\nschedule = { kind = \"linear\", softness = 1 }")
                .unwrap_err()
                .to_string();
        assert!(e.contains("softness"), "{e}");
        let e = toml::from_str::<Config>("[desing]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("desing"), "{e}");
    }

    #[test]
    fn default_round_trips_through_toml() {
        let c = Config::default();
        let s = toml::to_string(&c).unwrap();
        let back: Config = toml::from_str(&s).unwrap();
        assert_eq!(c, back);
    }
}
