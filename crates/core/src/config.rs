//! The configs of the design space (STYLE "Configs"): tagged enums, kebab-case kinds, unknown
//! keys rejected, defaults in one `Default` impl each; `build()` turns a config into the
//! trait object it names. Each is defined beside the module it configures and re-exported
//! here, so that `gud_core::config::*` names the whole design space. A config file as a whole
//! (data, network, training) is the pipeline's (`gud::config::Config`).

pub use crate::basis::BasisConfig;
pub use crate::design::{DesignConfig, MeanMode};
pub use crate::prior::PriorConfig;
pub use crate::sampler::{
    PosteriorVariance, ProjectionConfig, SamplerConfig, SamplerKind, TimeGrid,
};
pub use crate::schedule::ordering::{OrderingKind, OrderingParams};
pub use crate::schedule::{
    CosineConfig, LinearConfig, Regulator, RgConfig, ScheduleConfig, SequentialConfig,
    VpLinearConfig,
};
pub use crate::score::{
    BaseConfig, FittedMixture, MixtureConfig, MixtureModes, ModeSet, PatchRule, ScoreConfig,
};
