//! The config of the sampler axis (STYLE "Configs"): `[sampler] kind = "exp"`, steps, grid,
//! batch, RG projection (SPEC section 5).

use serde::{Deserialize, Serialize};

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
    /// Whether to skip inactive components.
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
    /// The integrator.
    pub kind: SamplerKind,
    /// Grid points from t_max to t_min (each sampler then jumps to the data, t = 0).
    pub steps: usize,
    /// Where the grid points lie.
    pub grid: TimeGrid,
    /// The ancestral sampler's posterior variance.
    pub posterior_variance: PosteriorVariance,
    /// The RG projection.
    pub projection: ProjectionConfig,
    /// Samples integrated together (memory is a few (batch, d) buffers).
    pub batch: usize,
    /// Adams-Bashforth order of the `exp` sampler (1 to 3; default 3).
    pub order: usize,
    /// An explicit grid (e.g. from `gud tune-grid`), decreasing from t_max: when given, it is
    /// the grid, and `steps` and `grid` are not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub times: Option<Vec<f64>>,
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
            times: None,
        }
    }
}
