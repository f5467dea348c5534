//! `gud sample`: draw samples with an analytic score model and any sampler (SPEC sections 4-5).

use crate::progress::Terminal;
use crate::shared::{config_beside, fit};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use gud::config::Config;
use gud_core::config::{PosteriorVariance, SamplerKind, ScoreConfig, TimeGrid};
use gud_core::sampler::GridTuning;
use gud_core::score::PatchRule;
use gud_core::Dataset;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::time::Instant;

/// Parses a kebab-case name of a serde unit enum (the spelling of the config files).
pub fn kebab<T: DeserializeOwned>(s: &str) -> Result<T, String> {
    use serde::de::IntoDeserializer;
    T::deserialize(s.into_deserializer()).map_err(|e: serde::de::value::Error| e.to_string())
}

/// A finite number > 0 (`--lr NaN` is named as the user wrote it).
pub fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("expected a finite number > 0".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A count that must be at least 1 (`--batch 0` is named as the user wrote it).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("expected at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScoreKind {
    Gaussian,
    /// The analytic base with fitted per-component mixtures (`[score]` or `[design] base`
    /// settings; default: K = 2 for the zero mode).
    Mixture,
    Empirical,
    Smoothed,
    Els,
    /// The trained network of a run (needs --run).
    Neural,
}

/// Where the score comes from: a trained run, or a config (and data) with a score kind.
#[derive(Args, Debug)]
pub struct ScoreSource {
    /// TOML config (data, design, score, sampler); the built-in phi^4 default when absent.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A trained run (`gud train --out RUN`): its config and its network (EMA weights).
    #[arg(long, conflicts_with = "config")]
    pub run: Option<PathBuf>,
    /// Training data (.npy); overrides the config's data.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Score model; overrides the config's.
    #[arg(long, value_enum)]
    pub score: Option<ScoreKind>,
}

impl ScoreSource {
    /// The run, its config (or the given one) and the outputs guard that protects the inputs.
    fn open(&self) -> (Option<gud::Run>, Option<PathBuf>, gud_io::atomic::Outputs) {
        crate::shared::run_or_config(
            self.run.as_deref(),
            self.config.as_deref(),
            &[self.data.as_deref()],
        )
    }
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    #[command(flatten)]
    pub source: ScoreSource,
    /// sde | ode | ancestral | exp; overrides the config's.
    #[arg(long, value_parser = kebab::<SamplerKind>)]
    pub sampler: Option<SamplerKind>,
    /// Grid points from t_max to t_min (then one jump to the data).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Adams-Bashforth order of the exp sampler (1 to 3).
    #[arg(long)]
    pub order: Option<usize>,
    /// uniform-t | uniform-gamma.
    #[arg(long, value_parser = kebab::<TimeGrid>, conflicts_with = "times")]
    pub time_grid: Option<TimeGrid>,
    /// An explicit grid t_max = t_0 > t_1 > ... (comma-separated, e.g. from `gud tune-grid`):
    /// it is the grid, and --steps is its length.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["steps", "time_grid"])]
    pub times: Vec<f64>,
    /// none | gaussian (ancestral sampler).
    #[arg(long, value_parser = kebab::<PosteriorVariance>)]
    pub posterior_variance: Option<PosteriorVariance>,
    /// RG projection: skip components that are inactive over a step.
    #[arg(long)]
    pub projection: bool,
    /// Smoothed score: perturbation scale s (whitened units).
    #[arg(long)]
    pub smooth_scale: Option<f64>,
    /// Smoothed score: number M of perturbations.
    #[arg(long)]
    pub perturbations: Option<usize>,
    /// ELS score: patch rule (`grow`, `grow:MIN:MAX`, `fixed:P`, `table:G1=P1,G2=P2`).
    #[arg(long)]
    pub patch: Option<PatchRule>,
    /// Schedule softness a (`linear`: a, `sequential`: softness): a member of the family a
    /// run was trained on (`[train.family]`), or another schedule for an analytic score.
    #[arg(long)]
    pub a: Option<f64>,
    /// Ordering mix r of the `linear` frequency ordering (with --a).
    #[arg(long, requires = "a")]
    pub r: Option<f64>,
    /// Samples drawn.
    #[arg(long, default_value_t = 1024)]
    pub samples: usize,
    /// Seed of the samples: sample k uses stream k (prior draw and noise).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Index of the first sample (sample k uses stream k of the seed: any one regenerates alone).
    #[arg(long, default_value_t = 0)]
    pub first: u64,
    /// Samples integrated together.
    #[arg(long, value_parser = crate::sample::at_least_one)]
    pub batch: Option<usize>,
    /// Output .npy, (N, H, W) or (N, C, H, W) float32; the resolved config is written beside it.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write a grid of the first samples (.png, .svg or .pdf).
    #[arg(long)]
    pub grid: Option<PathBuf>,
}

/// Applies the command-line overrides to the config's score and sampler sections.
fn apply_overrides(cfg: &mut Config, a: &SampleArgs) -> Result<()> {
    if let Some(kind) = a.source.score {
        let same = matches!(
            (kind, &cfg.score),
            (ScoreKind::Gaussian, ScoreConfig::Gaussian {})
                | (ScoreKind::Mixture, ScoreConfig::Mixture(_))
                | (ScoreKind::Empirical, ScoreConfig::Empirical {})
                | (ScoreKind::Smoothed, ScoreConfig::Smoothed { .. })
                | (ScoreKind::Els, ScoreConfig::Els { .. })
                | (ScoreKind::Neural, ScoreConfig::Neural {})
        );
        if !same {
            set_score(cfg, kind)?;
        }
    }
    match &mut cfg.score {
        ScoreConfig::Smoothed {
            scale,
            perturbations,
            ..
        } => {
            if let Some(s) = a.smooth_scale {
                *scale = s;
            }
            if let Some(m) = a.perturbations {
                *perturbations = m;
            }
        }
        _ if a.smooth_scale.is_some() || a.perturbations.is_some() => {
            bail!("--smooth-scale and --perturbations apply to --score smoothed")
        }
        _ => {}
    }
    match &mut cfg.score {
        ScoreConfig::Els { patch } => {
            if let Some(p) = &a.patch {
                *patch = p.clone();
            }
        }
        _ if a.patch.is_some() => bail!("--patch applies to --score els"),
        _ => {}
    }
    let s = &mut cfg.sampler;
    s.kind = a.sampler.unwrap_or(s.kind);
    s.grid = a.time_grid.unwrap_or(s.grid);
    if a.steps.is_some() || a.time_grid.is_some() {
        s.set_steps(a.steps.unwrap_or(s.steps));
    }
    if !a.times.is_empty() {
        s.set_times(a.times.clone());
    }
    s.posterior_variance = a.posterior_variance.unwrap_or(s.posterior_variance);
    s.batch = a.batch.unwrap_or(s.batch);
    s.order = a.order.unwrap_or(s.order);
    s.projection.enabled |= a.projection;
    Ok(())
}

/// The config's score becomes the default of `kind`; the mixture score of a design with a
/// mixture base takes that base's settings.
fn set_score(cfg: &mut Config, kind: ScoreKind) -> Result<()> {
    cfg.score = toml_score(kind)?;
    if let (ScoreConfig::Mixture(_), gud_core::config::BaseConfig::Mixture(m)) =
        (&cfg.score, &cfg.design.base)
    {
        cfg.score = ScoreConfig::Mixture(m.clone());
    }
    Ok(())
}

/// The default config of a score kind (through TOML, so that serde defaults apply).
pub fn toml_score(kind: ScoreKind) -> Result<ScoreConfig> {
    let name = format!("{kind:?}").to_lowercase();
    Ok(toml::from_str::<ScoreWrapper>(&format!("score = {{ kind = \"{name}\" }}"))?.score)
}

#[derive(serde::Deserialize)]
struct ScoreWrapper {
    score: ScoreConfig,
}

pub fn sample(a: &SampleArgs) -> Result<()> {
    if a.samples == 0 {
        bail!("--samples must be at least 1");
    }
    let (run, config, mut outputs) = a.source.open();
    let config = config.as_deref();
    let npy_out = outputs.stage(&a.out)?;
    let config_out = outputs.stage(&config_beside(&a.out))?;
    let grid_out = a.grid.as_ref().map(|g| outputs.stage(g)).transpose()?;
    let f = fit(config, a.source.data.as_deref())?;
    let (mut cfg, train, mut design) = (f.config, f.data, f.design);
    apply_overrides(&mut cfg, a)?;
    if let Some(soft) = a.a {
        cfg.design.schedule = cfg.design.schedule.with_softness(soft, a.r)?;
        design = design.with_schedule(&cfg.design.schedule)?;
    }
    let start = Instant::now();
    let score = gud::sample::build_score(&cfg, &design, &train, run.as_ref())?;
    let (fields, report) = gud::sample::draw(
        &cfg,
        &design,
        score.as_ref(),
        a.seed,
        a.first,
        a.samples,
        &Terminal::new("gud"),
    )?;
    let wall = start.elapsed().as_secs_f64();
    let out =
        Dataset::new(design.shape(), fields).context("the sampler produced non-finite values")?;
    gud_io::npy::write_dataset(&npy_out, &out)?;
    gud_io::config::write_toml(&config_out, &cfg)?;
    if let Some(g) = &grid_out {
        crate::plots::sample_grid(
            g,
            &format!(
                "{} score, {} sampler, {} NFE",
                report.score, report.sampler, report.nfe
            ),
            &out,
            16,
            crate::plots::colormap(&train),
        )?;
    }
    outputs.commit()?;
    let mut summary = serde_json::to_value(&report)?;
    summary["saved_fraction"] = serde_json::json!(report.saved_fraction());
    summary["out"] = serde_json::json!(a.out.display().to_string());
    summary["shape"] = serde_json::json!(design.shape().to_string());
    summary["seed"] = serde_json::json!(a.seed);
    summary["first"] = serde_json::json!(a.first);
    summary["wall_s"] = serde_json::json!(wall);
    summary["samples_per_s"] = serde_json::json!(a.samples as f64 / wall);
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

#[derive(Args, Debug)]
pub struct TuneGridArgs {
    #[command(flatten)]
    pub source: ScoreSource,
    /// exp | ode (a deterministic sampler); the config's when absent.
    #[arg(long, value_parser = kebab::<SamplerKind>)]
    pub sampler: Option<SamplerKind>,
    /// Adams-Bashforth order of the exp sampler (1 to 3).
    #[arg(long)]
    pub order: Option<usize>,
    /// Grid points K of the tuned grid.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Prior draws the error is measured on.
    #[arg(long, default_value_t = GridTuning::default().pilot)]
    pub pilot: usize,
    /// Points of the uniform reference grid.
    #[arg(long, default_value_t = GridTuning::default().reference_points)]
    pub reference_steps: usize,
    /// Most trial grids (each one pass of the pilot: pilot x (K - 1) evaluations for exp).
    #[arg(long, default_value_t = GridTuning::default().max_trials, value_parser = at_least_one)]
    pub max_trials: usize,
    /// Seed of the pilot's prior draws.
    #[arg(long, default_value_t = GridTuning::default().seed)]
    pub seed: u64,
    /// Also write the grid as a config fragment (`[sampler]` kind, order, steps, times) in TOML.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `gud tune-grid`: the K-point grid of a deterministic sampler that minimises its error
/// against a fine grid on a pilot batch (docs/samplers.md).
pub fn tune_grid(a: &TuneGridArgs) -> Result<()> {
    let (run, config, mut outputs) = a.source.open();
    let out = a.out.as_ref().map(|o| outputs.stage(o)).transpose()?;
    let f = fit(config.as_deref(), a.source.data.as_deref())?;
    let (mut cfg, train, design) = (f.config, f.data, f.design);
    if let Some(kind) = a.source.score {
        set_score(&mut cfg, kind)?;
    }
    cfg.sampler.kind = a.sampler.unwrap_or(cfg.sampler.kind);
    cfg.sampler.order = a.order.unwrap_or(cfg.sampler.order);
    let tuning = GridTuning {
        points: a.steps,
        pilot: a.pilot,
        reference_points: a.reference_steps,
        seed: a.seed,
        max_trials: a.max_trials,
    };
    let start = Instant::now();
    let score = gud::sample::build_score(&cfg, &design, &train, run.as_ref())?;
    let tuned = gud::sample::tune_grid(
        &cfg,
        &design,
        score.as_ref(),
        &tuning,
        &Terminal::new("gud"),
    )?;
    let wall = start.elapsed().as_secs_f64();
    if let Some(path) = &out {
        let mut sampler = cfg.sampler.clone();
        sampler.set_times(tuned.times.clone());
        let fragment = SamplerFragment { sampler };
        let text = format!(
            "# gud tune-grid: rms error per site {:.4e} (uniform-t grid {:.4e}, reference {:.4e})\n{}",
            tuned.rms_error,
            tuned.uniform_rms_error,
            tuned.reference_rms_error,
            toml::to_string(&fragment)?
        );
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    outputs.commit()?;
    let mut summary = serde_json::to_value(&tuned)?;
    summary["sampler"] = serde_json::json!(sampler_name(&cfg));
    summary["score"] = serde_json::json!(score.name());
    summary["times_arg"] = serde_json::json!(tuned
        .times
        .iter()
        .map(|t| format!("{t}"))
        .collect::<Vec<_>>()
        .join(","));
    summary["wall_s"] = serde_json::json!(wall);
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// The config sampler's kebab-case name.
fn sampler_name(cfg: &Config) -> String {
    format!("{:?}", cfg.sampler.kind).to_lowercase()
}

#[derive(serde::Serialize)]
struct SamplerFragment {
    sampler: gud_core::config::SamplerConfig,
}
