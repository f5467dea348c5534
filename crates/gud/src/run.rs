//! The run directory of a trained network: the one place that knows its files.
//!
//! ```text
//! RUN/config.toml              the resolved config of the run
//! RUN/checkpoint.safetensors   weights, EMA, AdamW state (atomic, every checkpoint_every steps)
//! RUN/metrics.jsonl            one line per log_every steps: step, loss, lr, grad_norm, steps_per_s
//! RUN/.gud.lock                held while a process trains in it
//! ```

use crate::config::Config;
use crate::error::{bail, Result};
use std::path::{Path, PathBuf};

/// The checkpoint's file name inside a run directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The resolved config's file name inside a run directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The training log's file name inside a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// A run directory (it need not exist yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    dir: PathBuf,
}

impl Run {
    /// The run in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Run { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// RUN/config.toml
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// RUN/checkpoint.safetensors
    pub fn checkpoint_path(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_FILE)
    }

    /// RUN/metrics.jsonl
    pub fn metrics_path(&self) -> PathBuf {
        self.dir.join(METRICS_FILE)
    }

    /// The files a command that reads this run takes as inputs (no output may overwrite them).
    pub fn inputs(&self) -> Vec<PathBuf> {
        vec![self.config_path(), self.checkpoint_path()]
    }

    /// True when the run holds a checkpoint.
    pub fn has_checkpoint(&self) -> bool {
        self.checkpoint_path().exists()
    }

    /// The run's resolved config.
    pub fn config(&self) -> Result<Config> {
        Ok(crate::config::load(&self.config_path())?)
    }

    /// Creates the directory if needed and locks it for this process (released on drop); an
    /// error names the process-level conflict.
    pub fn lock(&self) -> Result<gud_io::atomic::DirLock> {
        gud_io::atomic::ensure_writable_dir(&self.dir)?;
        Ok(gud_io::atomic::lock_dir(&self.dir)?)
    }

    /// True when the run holds a checkpoint of exactly `cfg` (continue it); an error when it
    /// holds one of another config (nothing is overwritten); false when it holds none.
    pub fn continues(&self, cfg: &Config) -> Result<bool> {
        if !self.has_checkpoint() {
            return Ok(false);
        }
        if &self.config()? != cfg {
            bail!(
                "{} holds a training run of another config: remove it or choose another directory",
                self.dir.display()
            );
        }
        Ok(true)
    }

    /// Writes the resolved config (atomically).
    pub fn write_config(&self, cfg: &Config) -> Result<()> {
        Ok(gud_io::config::write_toml(&self.config_path(), cfg)?)
    }

    /// The metrics lines of steps up to `step` (what a resumed run keeps); none when the log
    /// is missing.
    pub fn metrics_until(&self, step: u64) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(self.metrics_path()) else {
            return Vec::new();
        };
        text.lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v["step"].as_u64())
                    .is_some_and(|s| s <= step)
            })
            .map(String::from)
            .collect()
    }

    /// Writes the metrics lines (atomically).
    pub fn write_metrics(&self, lines: &[String]) -> Result<()> {
        Ok(gud_io::atomic::write_atomic(
            &self.metrics_path(),
            (lines.join("\n") + "\n").as_bytes(),
        )?)
    }
}
