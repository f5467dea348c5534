//! Helpers shared by the commands: fitting a config, the outputs of a command (checked against
//! its inputs), run directories, the names written beside an output, and the couplings of
//! phi^4. No command's file imports another command's file through here.

use crate::progress::Terminal;
use anyhow::{bail, Result};
use clap::Args;
use gud::data::Fitted;
use gud::Run;
use gud_io::atomic::Outputs;
use gud_phi4::Couplings;
use std::path::{Path, PathBuf};

/// Loads config and data and fits the design (progress and notes on stderr).
pub fn fit(config: Option<&Path>, data: Option<&Path>) -> Result<Fitted> {
    Ok(gud::data::fit(config, data, &Terminal::new("gud"))?)
}

/// The outputs of a command whose inputs are `files` and the data of the config at `config`
/// (read here only to learn its data paths; a config that fails to parse is reported later).
pub fn outputs_for(config: Option<&Path>, files: &[Option<&Path>]) -> gud_io::atomic::Outputs {
    let mut inputs: Vec<PathBuf> = files.iter().flatten().map(|p| p.to_path_buf()).collect();
    if let Some(c) = config {
        inputs.push(c.to_path_buf());
        if let Ok(cfg) = gud::config::load(c) {
            inputs.extend(gud::data::data_inputs(&cfg));
        }
    }
    gud_io::atomic::Outputs::new(inputs)
}

/// A command that reads a trained run (its own config and checkpoint) or a config: the run,
/// the config to load, and the outputs whose inputs are the run's files, the config and its
/// data, and `files`.
pub fn run_or_config(
    run: Option<&Path>,
    config: Option<&Path>,
    files: &[Option<&Path>],
) -> (Option<Run>, Option<PathBuf>, Outputs) {
    let run = run.map(Run::new);
    let config = run
        .as_ref()
        .map(Run::config_path)
        .or(config.map(Path::to_path_buf));
    let checkpoint = run.as_ref().map(Run::checkpoint_path);
    let mut inputs = files.to_vec();
    inputs.push(checkpoint.as_deref());
    let outputs = outputs_for(config.as_deref(), &inputs);
    (run, config, outputs)
}

/// `fig.png` -> `fig.config.toml`
pub fn config_beside(out: &Path) -> PathBuf {
    beside(out, "config.toml")
}

/// `chain.npy`, `weights.npy` -> `chain.weights.npy`: a file that goes with `out`.
pub fn beside(out: &Path, suffix: &str) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}.{suffix}"))
}

/// The couplings, in either convention.
#[derive(Args, Debug, Clone)]
pub struct CouplingArgs {
    /// m^2 of S = sum [ (d phi)^2 + m2 phi^2 + lam phi^4 ].
    #[arg(long, allow_hyphen_values = true, requires = "lam", conflicts_with_all = ["kappa", "lambda"])]
    pub m2: Option<f64>,
    /// lambda of S = sum [ (d phi)^2 + m2 phi^2 + lam phi^4 ].
    #[arg(long, requires = "m2")]
    pub lam: Option<f64>,
    /// Hopping parameter kappa of S = sum [ -2 kappa phi_x phi_{x+mu} + (1 - 2 lambda) phi^2 + lambda phi^4 ];
    /// fields are then read and written in that normalisation.
    #[arg(long, requires = "lambda")]
    pub kappa: Option<f64>,
    /// lambda of the hopping convention (with --kappa).
    #[arg(long, requires = "kappa")]
    pub lambda: Option<f64>,
}

impl CouplingArgs {
    /// The couplings in gud's convention and the factor phi = factor * field of the file.
    pub fn resolve(&self) -> Result<Option<(Couplings, f64)>> {
        Ok(match (self.m2, self.lam, self.kappa, self.lambda) {
            (Some(m2), Some(lam), None, None) => Some((Couplings::new(m2, lam)?, 1.0)),
            (None, None, Some(k), Some(l)) => Some((Couplings::from_hopping(k, l)?, k.sqrt())),
            (None, None, None, None) => None,
            _ => bail!("give the couplings as --m2 M --lam LAM or as --kappa K --lambda L"),
        })
    }
}

/// A library error whose invalid parameter is one of `flags`' (config key, flag) pairs, with
/// the flag that sets it named first: the library names its parameters, the binary its flags.
pub fn name_flags<T>(r: gud::Result<T>, flags: &[(&str, &str)]) -> Result<T> {
    fn parameter(e: &gud::Error) -> Option<&str> {
        match e {
            gud::Error::Core(gud_core::Error::InvalidParameter { name, .. }) => Some(name),
            gud::Error::Context { source, .. } => parameter(source),
            _ => None,
        }
    }
    r.map_err(|e| {
        let flag = parameter(&e).and_then(|p| flags.iter().find(|(k, _)| *k == p));
        match flag {
            Some((key, flag)) => anyhow::Error::from(e).context(format!("{flag} sets `{key}`")),
            None => e.into(),
        }
    })
}
