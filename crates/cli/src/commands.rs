//! The subcommands.

use crate::data::{load_config, load_data};
use crate::plots::{forward_strip, schedule_curves, spread_components};
use anyhow::{bail, Context, Result};
use gud_core::config::Config;
use gud_core::{Dataset, Design};
use gud_io::atomic::{ensure_writable_dir, parent_dir};
use gud_io::figures::{plot_panels, plot_schedule};
use std::path::{Path, PathBuf};

/// The inputs and output shared by the figure commands.
#[derive(clap::Args, Debug)]
pub struct FigureArgs {
    /// TOML config; the built-in default when absent.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Training data (.npy, (N, H, W) or (N, C, H, W)); overrides the config's data.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output PNG; the resolved config is written beside it.
    #[arg(long)]
    pub out: PathBuf,
}

/// Checks the output directory, then loads config and data and fits the design.
fn fit_for_figure(args: &FigureArgs) -> Result<(Config, Dataset, Design)> {
    ensure_writable_dir(parent_dir(&args.out))?;
    fit(args.config.as_deref(), args.data.as_deref())
}

/// Writes the resolved config beside a figure and says what was written.
fn finish_figure(out: &Path, cfg: &Config) -> Result<()> {
    gud_io::config::write_toml(&config_beside(out), cfg)?;
    eprintln!(
        "wrote {} and {}",
        out.display(),
        config_beside(out).display()
    );
    Ok(())
}

/// Loads config and data and fits the design.
pub fn fit(config: Option<&Path>, data: Option<&Path>) -> Result<(Config, Dataset, Design)> {
    let mut cfg = load_config(config)?;
    let ds = load_data(&mut cfg, data)?;
    let origin = config.map_or("the built-in default config".to_string(), |p| {
        p.display().to_string()
    });
    let design = Design::fit(&cfg.design, &ds).with_context(|| {
        format!(
            "fitting the design of {origin} to data of shape {}",
            ds.shape()
        )
    })?;
    cfg.design = design.resolved_config().clone();
    Ok((cfg, ds, design))
}

/// `fig.png` -> `fig.config.toml`
pub fn config_beside(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}.config.toml"))
}

fn title(design: &Design) -> String {
    let c = design.resolved_config();
    format!(
        "{} basis, {} prior, {} schedule, shape {}",
        design.basis().name(),
        c.prior.build().name(),
        design.schedule().name(),
        design.shape()
    )
}

pub fn schedule(args: &FigureArgs, components: usize) -> Result<()> {
    let (cfg, _ds, design) = fit_for_figure(args)?;
    let picked = spread_components(&design, components);
    let (t, curves) = schedule_curves(&design, &picked);
    plot_schedule(&args.out, &title(&design), &t, &curves)?;
    finish_figure(&args.out, &cfg)
}

pub fn noise(args: &FigureArgs, index: usize, times: &[f64], seed: u64) -> Result<()> {
    if times.is_empty() || times.iter().any(|t| !t.is_finite()) {
        bail!("--times must be a comma-separated list of finite times in [0, 1]");
    }
    let (cfg, ds, design) = fit_for_figure(args)?;
    if index >= ds.len() {
        bail!(
            "--index {index} is out of range: the data set has {} samples",
            ds.len()
        );
    }
    let panels = forward_strip(&design, ds.sample(index), times, seed)?;
    let caption = format!("forward process: {}", title(&design));
    plot_panels(&args.out, &caption, 1, &panels, None)?;
    finish_figure(&args.out, &cfg)
}

/// The main job: fit the design, draw figures, sample with the config's score and sampler,
/// and evaluate the samples against an independent reference (for phi^4, HMC at another seed).
pub fn run(config: Option<&Path>, out: &Path, seed: u64, samples: usize) -> Result<()> {
    ensure_writable_dir(out)?;
    let (cfg, ds, design) = fit(config, None)?;
    let picked = spread_components(&design, 8);
    let (t, curves) = schedule_curves(&design, &picked);
    plot_schedule(&out.join("schedule.png"), &title(&design), &t, &curves)?;
    let panels = forward_strip(&design, ds.sample(0), &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0], seed)?;
    plot_panels(
        &out.join("noise.png"),
        &format!("forward process: {}", title(&design)),
        1,
        &panels,
        None,
    )?;
    gud_io::config::write_toml(&out.join("config.toml"), &cfg)?;
    println!("gud run: {}", title(&design));
    println!("  data: {} samples of shape {}", ds.len(), ds.shape());
    println!("  prior: {}", serde_json::to_string(&cfg.design.prior)?);

    let start = std::time::Instant::now();
    let (fields, report) = crate::sample::draw(&cfg, &design, &ds, seed, 0, samples)?;
    let sample_s = start.elapsed().as_secs_f64();
    let gen =
        Dataset::new(design.shape(), fields).context("the sampler produced non-finite values")?;
    gud_io::npy::write_dataset(&out.join("samples.npy"), &gen)?;
    crate::plots::sample_grid(
        &out.join("samples.png"),
        &format!(
            "{} score, {} sampler, {} NFE",
            report.score, report.sampler, report.nfe
        ),
        &gen,
        16,
    )?;
    let (reference, couplings) = crate::data::reference_data(&cfg, &ds)?;
    let ev = crate::eval::evaluate(&gen, &reference, &ds, 128, seed, couplings)?;
    crate::eval::plot_spectra(&out.join("spectra.png"), &ev)?;
    let mut json = serde_json::to_value(&ev)?;
    json["sampling"] = serde_json::to_value(&report)?;
    json["sampling"]["wall_s"] = serde_json::json!(sample_s);
    gud_io::atomic::write_atomic(
        &out.join("report.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    println!(
        "  sampled {} with the {} score and the {} sampler: {} NFE per sample, {:.1}% of component evaluations saved, {:.2} s",
        samples,
        report.score,
        report.sampler,
        report.nfe,
        100.0 * report.saved_fraction(),
        sample_s
    );
    crate::eval::print_report("generated", "reference", &ev);
    println!(
        "  wrote {0}/schedule.png, {0}/noise.png, {0}/samples.npy, {0}/samples.png, {0}/spectra.png, {0}/report.json, {0}/config.toml",
        out.display()
    );
    Ok(())
}
