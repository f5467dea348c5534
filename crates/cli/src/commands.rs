//! The subcommands.

use crate::plots::{colormap, forward_strip, schedule_curves, spread_components};
use crate::progress::Terminal;
use crate::shared::{config_beside, fit, outputs_for, run_or_config};
use anyhow::{bail, Context, Result};
use gud::config::Config;
use gud::data::Fitted;
use gud::job::{JobOptions, JobReport};
use gud::Run;
use gud_core::Design;
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
    /// Output figure, .png, .svg or .pdf by its extension; the resolved config is written beside it.
    #[arg(long)]
    pub out: PathBuf,
}

/// Stages the figure and its config (checked against the inputs), then loads config and data
/// and fits the design.
fn fit_for_figure(args: &FigureArgs) -> Result<(Outputs, PathBuf, Fitted)> {
    let mut outputs = outputs_for(args.config.as_deref(), &[args.data.as_deref()]);
    let fig = outputs.stage(&args.out)?;
    let fitted = fit(args.config.as_deref(), args.data.as_deref())?;
    Ok((outputs, fig, fitted))
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
    let (outputs, fig, f) = fit_for_figure(args)?;
    let picked = spread_components(&f.design, components);
    let (t, curves) = schedule_curves(&f.design, &picked);
    plot_schedule(&fig, &title(&f.design), &t, &curves)?;
    finish_figure(outputs, &args.out, &f.config)
}

pub fn noise(args: &FigureArgs, index: usize, times: &[f64], seed: u64) -> Result<()> {
    if times.is_empty() || times.iter().any(|t| !t.is_finite()) {
        bail!("--times must be a comma-separated list of finite times in [0, 1]");
    }
    let (outputs, fig, f) = fit_for_figure(args)?;
    if index >= f.data.len() {
        bail!(
            "--index {index} is out of range: the data set has {} samples",
            f.data.len()
        );
    }
    let panels = forward_strip(&f.design, f.data.sample(index), times, seed)?;
    let caption = format!("forward process: {}", title(&f.design));
    plot_panels(&fig, &caption, 1, &panels, None, colormap(&f.data))?;
    finish_figure(outputs, &args.out, &f.config)
}

/// `gud data`: the training set of a config (or its held-out set) as .npy, with the resolved
/// config beside it.
pub fn data(config: Option<&Path>, out: &Path, test: bool) -> Result<()> {
    let mut outputs = outputs_for(config, &[]);
    let npy_out = outputs.stage(out)?;
    let config_out = outputs.stage(&config_beside(out))?;
    let monitor = Terminal::new("gud data");
    let mut cfg = gud::data::load_config(config)?;
    let origin = config.map_or("the built-in default".into(), |p| p.display().to_string());
    if test {
        gud::data::require_held_out(&cfg)
            .with_context(|| format!("gud data --test on {origin}"))?;
    }
    let ds = (|| {
        let train = gud::data::load_data(&mut cfg, None, &monitor)?;
        if test {
            gud::data::test_data(&cfg, &train, &monitor)
        } else {
            Ok(train)
        }
    })()
    .with_context(|| format!("the data of {origin}"))?;
    gud_io::npy::write_dataset(&npy_out, &ds)?;
    gud_io::config::write_toml(&config_out, &cfg)?;
    outputs.commit()?;
    eprintln!(
        "wrote {} ({} {} samples of shape {}) and {}",
        out.display(),
        ds.len(),
        if test { "held-out" } else { "training" },
        ds.shape(),
        config_beside(out).display()
    );
    Ok(())
}

/// `gud export`: the EMA weights of a run for PyTorch.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// A trained run (`gud train --out RUN`).
    #[arg(long)]
    pub run: PathBuf,
    /// Output safetensors file: the EMA weights under PyTorch names, the network config and
    /// the input scaling as metadata.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write a check file (safetensors): noised training rows with the network's inputs
    /// x and gamma, its output y and gud's eps_hat, to test a reimplementation against.
    #[arg(long)]
    pub check: Option<PathBuf>,
    /// Rows of the check file.
    #[arg(long, default_value_t = 16)]
    pub check_rows: usize,
    /// Seed of the check rows (stream (seed, export check, 0)).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn export(a: &ExportArgs) -> Result<()> {
    let (run, config, mut outputs) = run_or_config(Some(&a.run), None, &[]);
    let run = run.expect("--run is required");
    let out = outputs.stage(&a.out)?;
    let check = a.check.as_deref().map(|p| outputs.stage(p)).transpose()?;
    let fitted = fit(config.as_deref(), None)?;
    let report = gud::export::export(
        &fitted,
        &run,
        &out,
        check.as_deref().map(|p| (p, a.check_rows)),
        a.seed,
    )?;
    outputs.commit()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    eprintln!(
        "wrote {} ({} tensors, {} parameters, EMA weights of step {}){}",
        a.out.display(),
        report.tensors,
        report.parameters,
        report.step,
        match &a.check {
            Some(c) => format!(
                " and {} ({} rows; eps_hat = base + U y to {:.1e})",
                c.display(),
                report.check_rows,
                report.check_decomposition_error
            ),
            None => String::new(),
        }
    );
    Ok(())
}

/// The main job: fit the design, draw figures, sample with the config's score and sampler,
/// and evaluate the samples against an independent reference (for phi^4, HMC at another seed).
pub fn run(config: Option<&Path>, out: &Path, opts: &JobOptions, format: &str) -> Result<()> {
    let figure = |name: &str| out.join(format!("{name}.{format}"));
    // the config and its data first: a bad config leaves no directory behind
    let mut fitted = fit(config, None)?;
    ensure_writable_dir(out)?;
    let _lock = gud_io::atomic::lock_dir(out)?;
    let mut outputs = outputs_for(config, &[]);
    // a neural config: resolve its training and check --out before anything is written
    let train_run = Run::new(out.join("train"));
    let resume = gud::job::prepare(&mut fitted, &train_run)?;
    let (cfg, design, ds) = (&fitted.config, &fitted.design, &fitted.data);
    let picked = spread_components(design, 8);
    let (t, curves) = schedule_curves(design, &picked);
    plot_schedule(
        &outputs.stage(&figure("schedule"))?,
        &title(design),
        &t,
        &curves,
    )?;
    let panels = forward_strip(
        design,
        ds.sample(0),
        &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        opts.seed,
    )?;
    plot_panels(
        &outputs.stage(&figure("noise"))?,
        &format!("forward process: {}", title(design)),
        1,
        &panels,
        None,
        colormap(ds),
    )?;
    println!("gud run: {}", title(design));
    println!("  data: {} samples of shape {}", ds.len(), ds.shape());
    println!("  prior: {}", serde_json::to_string(&cfg.design.prior)?);
    let report = gud::job::run(&fitted, &train_run, resume, opts, &Terminal::new("gud"))?;
    if let Some(t) = &report.training {
        println!(
            "  trained the network ({} steps) in {:.1} s: {}",
            t.steps,
            t.wall_s,
            t.run.display()
        );
    }
    gud_io::config::write_toml(&outputs.stage(&out.join("config.toml"))?, cfg)?;
    let many = report.runs.len() > 1;
    for r in &report.runs {
        let s = &r.sampling;
        println!(
            "  sampled {} with the {} score and the {} sampler: {} NFE per sample, {:.1}% of component evaluations saved, {:.2} s",
            s.samples, s.score, s.sampler, s.nfe, 100.0 * s.saved_fraction(), r.wall_s
        );
        if let Some(t) = &r.tuned_grid {
            println!(
                "    on a tuned grid (gud tune-grid, {} trials): rms error per site {:.2e} against {:.2e} on the uniform grid",
                t.trials, t.rms_error, t.uniform_rms_error
            );
        }
        if many {
            let name = format!("samples_nfe{}.npy", s.nfe);
            gud_io::npy::write_dataset(&outputs.stage(&out.join(name))?, &r.samples)?;
        }
    }
    let last = report.runs.last().expect("at least one budget");
    let s = &last.sampling;
    gud_io::npy::write_dataset(&outputs.stage(&out.join("samples.npy"))?, &last.samples)?;
    let caption = format!("{} score, {} sampler, {} NFE", s.score, s.sampler, s.nfe);
    crate::plots::sample_grid(
        &outputs.stage(&figure("samples"))?,
        &caption,
        &last.samples,
        16,
        colormap(ds),
    )?;
    crate::eval::plot_spectra(
        &outputs.stage(&figure("spectra"))?,
        &format!("power spectra: {caption}"),
        &last.eval,
    )?;
    crate::eval::print_report("generated", "reference", &last.eval);
    if many {
        print_nfe_table(&report);
    }
    if let Some(e) = &report.exact {
        // the raw samples of the same budget
        let same = report
            .runs
            .iter()
            .find(|r| r.sampling.nfe == e.report.sampling.nfe);
        print_exact(e, &same.unwrap_or(last).eval);
        if let Some(f) = &e.flow {
            gud::flow::save(&outputs.stage(&out.join("flow.safetensors"))?, f)?;
        }
    }
    gud_io::atomic::write_atomic(
        &outputs.stage(&out.join("report.json"))?,
        serde_json::to_string_pretty(&report.to_json())?.as_bytes(),
    )?;
    outputs.commit()?;
    println!(
        "  wrote {0}/schedule.png, {0}/noise.png, {0}/samples.npy, {0}/samples.png, {0}/spectra.png, {0}/report.json, {0}/config.toml",
        out.display()
    );
    Ok(())
}

/// The exact stage: acceptance, ESS, log Z and the z-scores of the raw, chain and reweighted
/// observables against the reference.
fn print_exact(e: &gud::job::ExactStage, raw: &gud::eval::EvalReport) {
    let r = &e.report;
    println!(
        "\n  exact (SPEC 9): {} proposals at {} NFE: acceptance {:.3}, ESS/N {:.3}, log Z {:.4} +- {:.4}, {:.3} s per proposal",
        r.weights.proposals, r.sampling.nfe, r.weights.acceptance, r.weights.ess_fraction, r.weights.log_z, r.weights.log_z_error, r.s_per_proposal
    );
    println!(
        "  {:<9} {:>10} {:>10} {:>10}",
        "z", "raw", "chain", "reweighted"
    );
    let raw_z = |name: &str| {
        raw.phi4
            .as_ref()
            .and_then(|p| p.observables.iter().find(|c| c.name == name))
            .map_or(f64::NAN, |c| c.z)
    };
    for (c, w) in e.chain.iter().zip(&e.reweighted) {
        println!(
            "  {:<9} {:>10.2} {:>10.2} {:>10.2}",
            c.label,
            raw_z(c.name),
            c.z,
            w.z
        );
    }
}

/// One line per sampling budget: NFE, wall time and the phi^4 z-scores.
fn print_nfe_table(report: &JobReport) {
    let names: Vec<&str> = report.runs[0]
        .eval
        .phi4
        .as_ref()
        .map(|p| p.observables.iter().map(|c| c.label).collect())
        .unwrap_or_default();
    print!("\n  {:>5} {:>8} {:>8}", "NFE", "wall_s", "max|z|");
    names.iter().for_each(|n| print!(" {n:>9}"));
    println!();
    for r in &report.runs {
        let max = r.eval.phi4.as_ref().map_or(f64::NAN, |p| p.max_abs_z);
        print!("  {:>5} {:>8.2} {:>8.2}", r.sampling.nfe, r.wall_s, max);
        if let Some(p) = &r.eval.phi4 {
            p.observables.iter().for_each(|c| print!(" {:>9.2}", c.z));
        }
        println!();
    }
}
