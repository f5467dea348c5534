//! The subcommands.

use crate::data::{load_config, load_data};
use crate::plots::{forward_strip, schedule_curves, spread_components};
use anyhow::{bail, Context, Result};
use gud_core::config::{Config, SamplerKind, ScoreConfig};
use gud_core::{Dataset, Design};
use gud_io::atomic::{ensure_writable_dir, Outputs};
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

/// Stages the figure and its config (checked against the inputs), then loads config and data
/// and fits the design.
fn fit_for_figure(args: &FigureArgs) -> Result<(Outputs, PathBuf, Config, Dataset, Design)> {
    let mut outputs = outputs_for(args.config.as_deref(), &[args.data.as_deref()]);
    let fig = outputs.stage(&args.out)?;
    let (cfg, ds, design) = fit(args.config.as_deref(), args.data.as_deref())?;
    Ok((outputs, fig, cfg, ds, design))
}

/// Writes the resolved config beside a figure, renames both into place and says so.
fn finish_figure(mut outputs: Outputs, out: &Path, cfg: &Config) -> Result<()> {
    gud_io::config::write_toml(&outputs.stage(&config_beside(out))?, cfg)?;
    outputs.commit()?;
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
    let origin = config.map_or("the built-in default config".to_string(), |p| {
        p.display().to_string()
    });
    let ds = match data {
        Some(_) => load_data(&mut cfg, data)?,
        None => {
            load_data(&mut cfg, None).with_context(|| format!("the [data] section of {origin}"))?
        }
    };
    let design = Design::fit(&cfg.design, &ds).with_context(|| {
        format!(
            "fitting the design of {origin} to data of shape {}",
            ds.shape()
        )
    })?;
    cfg.design = design.resolved_config().clone();
    Ok((cfg, ds, design))
}

/// The files a config reads (its data), which no output may overwrite.
pub fn data_inputs(cfg: &Config) -> Vec<PathBuf> {
    use gud_core::config::DataConfig;
    match &cfg.data {
        DataConfig::Npy(n) => vec![n.path.clone()],
        DataConfig::Images(c) => [
            Some(&c.train),
            c.train_labels.as_ref(),
            c.test.as_ref(),
            c.test_labels.as_ref(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect(),
        DataConfig::Phi4(_) | DataConfig::FreeField(_) => Vec::new(),
    }
}

/// The outputs of a command whose inputs are `files` and the data of the config at `config`
/// (read here only to learn its data paths; a config that fails to parse is reported later).
pub fn outputs_for(config: Option<&Path>, files: &[Option<&Path>]) -> gud_io::atomic::Outputs {
    let mut inputs: Vec<PathBuf> = files.iter().flatten().map(|p| p.to_path_buf()).collect();
    if let Some(c) = config {
        inputs.push(c.to_path_buf());
        if let Ok(cfg) = gud_io::config::load_toml::<Config>(c) {
            inputs.extend(data_inputs(&cfg));
        }
    }
    gud_io::atomic::Outputs::new(inputs)
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
    let (outputs, fig, cfg, _ds, design) = fit_for_figure(args)?;
    let picked = spread_components(&design, components);
    let (t, curves) = schedule_curves(&design, &picked);
    plot_schedule(&fig, &title(&design), &t, &curves)?;
    finish_figure(outputs, &args.out, &cfg)
}

pub fn noise(args: &FigureArgs, index: usize, times: &[f64], seed: u64) -> Result<()> {
    if times.is_empty() || times.iter().any(|t| !t.is_finite()) {
        bail!("--times must be a comma-separated list of finite times in [0, 1]");
    }
    let (outputs, fig, cfg, ds, design) = fit_for_figure(args)?;
    if index >= ds.len() {
        bail!(
            "--index {index} is out of range: the data set has {} samples",
            ds.len()
        );
    }
    let panels = forward_strip(&design, ds.sample(index), times, seed)?;
    let caption = format!("forward process: {}", title(&design));
    plot_panels(&fig, &caption, 1, &panels, None)?;
    finish_figure(outputs, &args.out, &cfg)
}

/// The main job: fit the design, draw figures, sample with the config's score and sampler,
/// and evaluate the samples against an independent reference (for phi^4, HMC at another seed).
pub fn run(
    config: Option<&Path>,
    out: &Path,
    seed: u64,
    samples: usize,
    nfe: &[usize],
) -> Result<()> {
    // the config and its data first: a bad config leaves no directory behind
    let (mut cfg, ds, design) = fit(config, None)?;
    ensure_writable_dir(out)?;
    let _lock = gud_io::atomic::lock_dir(out)?;
    let mut outputs = outputs_for(config, &[]);
    // A neural config: resolve its training and check --out before anything is written.
    let neural = cfg.score == (ScoreConfig::Neural {});
    let run_dir = out.join("train");
    let resume = if neural {
        crate::train::resolve(&mut cfg);
        existing_run(&run_dir, &cfg)?
    } else {
        false
    };
    let picked = spread_components(&design, 8);
    let (t, curves) = schedule_curves(&design, &picked);
    plot_schedule(
        &outputs.stage(&out.join("schedule.png"))?,
        &title(&design),
        &t,
        &curves,
    )?;
    let panels = forward_strip(&design, ds.sample(0), &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0], seed)?;
    plot_panels(
        &outputs.stage(&out.join("noise.png"))?,
        &format!("forward process: {}", title(&design)),
        1,
        &panels,
        None,
    )?;
    println!("gud run: {}", title(&design));
    println!("  data: {} samples of shape {}", ds.len(), ds.shape());
    println!("  prior: {}", serde_json::to_string(&cfg.design.prior)?);

    let mut training = serde_json::Value::Null;
    if neural {
        let start = std::time::Instant::now();
        crate::train::train_run(&cfg, &design, &ds, &run_dir, resume)?;
        let train_s = start.elapsed().as_secs_f64();
        println!(
            "  trained the network ({} steps) in {train_s:.1} s: {}",
            cfg.train.steps,
            run_dir.display()
        );
        training =
            serde_json::json!({ "steps": cfg.train.steps, "wall_s": train_s, "run": run_dir });
    }
    gud_io::config::write_toml(&outputs.stage(&out.join("config.toml"))?, &cfg)?;
    let score = crate::sample::build_score(&cfg, &design, &ds, Some(&run_dir))?;
    let budgets: Vec<Option<usize>> = match (nfe.is_empty(), neural) {
        (false, _) => nfe.iter().map(|&n| Some(n)).collect(),
        (true, true) => [5, 10, 20, 50].map(Some).to_vec(),
        (true, false) => vec![None],
    };
    let (reference, couplings) = crate::data::reference_data(&cfg, &ds)?;
    let mut rows = Vec::new();
    for (k, budget) in budgets.iter().enumerate() {
        let mut c = cfg.clone();
        if let Some(n) = budget {
            c.sampler.steps = grid_points(c.sampler.kind, *n);
        }
        let start = std::time::Instant::now();
        let (fields, report) = crate::sample::draw(&c, &design, score.as_ref(), seed, 0, samples)?;
        let sample_s = start.elapsed().as_secs_f64();
        let gen = Dataset::new(design.shape(), fields)
            .context("the sampler produced non-finite values")?;
        let ev = crate::eval::evaluate(&gen, &reference, &ds, 128, seed, couplings)?;
        println!(
            "  sampled {} with the {} score and the {} sampler: {} NFE per sample, {:.1}% of component evaluations saved, {:.2} s",
            samples, report.score, report.sampler, report.nfe, 100.0 * report.saved_fraction(), sample_s
        );
        if budgets.len() > 1 {
            let name = format!("samples_nfe{}.npy", report.nfe);
            gud_io::npy::write_dataset(&outputs.stage(&out.join(name))?, &gen)?;
        }
        if k + 1 == budgets.len() {
            gud_io::npy::write_dataset(&outputs.stage(&out.join("samples.npy"))?, &gen)?;
            let caption = format!(
                "{} score, {} sampler, {} NFE",
                report.score, report.sampler, report.nfe
            );
            crate::plots::sample_grid(
                &outputs.stage(&out.join("samples.png"))?,
                &caption,
                &gen,
                16,
            )?;
            crate::eval::plot_spectra(&outputs.stage(&out.join("spectra.png"))?, &ev)?;
            crate::eval::print_report("generated", "reference", &ev);
        }
        rows.push((report, sample_s, ev));
    }
    if rows.len() > 1 {
        print_nfe_table(&rows);
    }
    let runs: Vec<serde_json::Value> = rows
        .iter()
        .map(|(report, wall, ev)| {
            let mut j = serde_json::to_value(ev).expect("the report serialises");
            j["sampling"] = serde_json::to_value(report).expect("the report serialises");
            j["sampling"]["wall_s"] = serde_json::json!(wall);
            j
        })
        .collect();
    let json = serde_json::json!({ "training": training, "runs": runs });
    gud_io::atomic::write_atomic(
        &outputs.stage(&out.join("report.json"))?,
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    outputs.commit()?;
    println!(
        "  wrote {0}/schedule.png, {0}/noise.png, {0}/samples.npy, {0}/samples.png, {0}/spectra.png, {0}/report.json, {0}/config.toml",
        out.display()
    );
    Ok(())
}

/// Grid points giving at most `nfe` network evaluations per sample (Heun: 2K - 1).
fn grid_points(kind: SamplerKind, nfe: usize) -> usize {
    match kind {
        SamplerKind::Ode => nfe.div_ceil(2).max(2),
        SamplerKind::Sde | SamplerKind::Ancestral | SamplerKind::Exp => nfe.max(2),
    }
}

/// Without the network there is no training run to continue.
#[cfg(not(feature = "nn"))]
pub fn existing_run(_: &Path, _: &Config) -> Result<bool> {
    Err(crate::without_nn("training the neural score"))
}

/// True when `run_dir` holds a checkpoint of exactly this config (continue it); an error when it
/// holds one of another config (nothing is overwritten); false when it holds none.
#[cfg(feature = "nn")]
pub fn existing_run(run_dir: &Path, cfg: &Config) -> Result<bool> {
    if !run_dir.join(gud_nn::CHECKPOINT_FILE).exists() {
        return Ok(false);
    }
    let saved: Config = gud_io::config::load_toml(&run_dir.join("config.toml"))?;
    if &saved != cfg {
        bail!(
            "{} holds a training run of another config: remove it or choose another --out",
            run_dir.display()
        );
    }
    Ok(true)
}

/// One line per sampling budget: NFE, wall time and the phi^4 z-scores.
fn print_nfe_table(
    rows: &[(
        gud_core::sampler::SampleReport,
        f64,
        crate::eval::EvalReport,
    )],
) {
    let names: Vec<&str> = rows[0]
        .2
        .phi4
        .as_ref()
        .map(|p| p.observables.iter().map(|c| c.name).collect())
        .unwrap_or_default();
    print!("\n  {:>5} {:>8} {:>8}", "NFE", "wall_s", "max|z|");
    names.iter().for_each(|n| print!(" {n:>9}"));
    println!();
    for (report, wall, ev) in rows {
        let max = ev.phi4.as_ref().map_or(f64::NAN, |p| p.max_abs_z);
        print!("  {:>5} {:>8.2} {:>8.2}", report.nfe, wall, max);
        if let Some(p) = &ev.phi4 {
            p.observables.iter().for_each(|c| print!(" {:>9.2}", c.z));
        }
        println!();
    }
}
