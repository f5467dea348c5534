//! Loading a config and the data set it names.

use anyhow::{Context, Result};
use gud_core::config::{Config, DataConfig};
use gud_core::free_field::free_field_samples;
use gud_core::Dataset;
use std::path::Path;

/// The config of `path`, or the built-in default.
pub fn load_config(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(p) => Ok(gud_io::config::load_toml(p)?),
        None => Ok(Config::default()),
    }
}

/// The training data: `data_override` (.npy) if given, else what the config names.
pub fn load_data(config: &mut Config, data_override: Option<&Path>) -> Result<Dataset> {
    if let Some(p) = data_override {
        config.data = DataConfig::Npy(gud_core::config::NpyDataConfig {
            path: p.to_path_buf(),
        });
    }
    match &config.data {
        DataConfig::FreeField(f) => free_field_samples(f.size, f.m2, f.samples, f.seed)
            .with_context(|| {
                format!(
                    "generating the free-field data set (L = {}, m2 = {})",
                    f.size, f.m2
                )
            }),
        DataConfig::Npy(n) => gud_io::npy::read_dataset(&n.path)
            .with_context(|| format!("loading the data set {}", n.path.display())),
    }
}
