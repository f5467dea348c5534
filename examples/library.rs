//! gud as a library, in three short pieces (run: `cargo run -p gud --example library`):
//!
//! 1. the main job of `gud run` on a config, returning a typed report;
//! 2. a design built in code (Haar basis, matched prior, cosine schedule) with an analytic
//!    score, sampled and evaluated;
//! 3. lattice phi^4 by HMC and its observables with binned-jackknife errors.

use gud::{data, job, Run, Silent};
use gud_core::config::{BasisConfig, DesignConfig, PriorConfig, ScheduleConfig, ScoreConfig};
use gud_core::Design;
use std::path::Path;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// 1. The main job on a free field with its exact Gaussian score.
fn main_job() -> Result<()> {
    let toml = "[data]\nkind = 'free-field'\nsize = 8\nm2 = 0.5\nsamples = 512\n\
                [score]\nkind = 'gaussian'\n[sampler]\nkind = 'exp'\nsteps = 8\n";
    let cfg = gud::config::parse(toml, Path::new("inline.toml"))?;
    let fitted = data::fit_config(cfg, "inline.toml", None, &Silent)?;
    let opts = job::JobOptions {
        samples: 512,
        ..Default::default()
    };
    let report = job::run(&fitted, &Run::new("unused"), false, &opts, &Silent)?;
    let r = &report.runs[0];
    println!(
        "main job: {} samples at {} NFE, power-spectrum max |log ratio| {:.3}, sliced W {:.4} (floor {:.4})",
        r.samples.len(),
        r.sampling.nfe,
        r.eval.max_abs_log_ratio,
        r.eval.sliced_wasserstein,
        r.eval.sliced_wasserstein_floor
    );
    Ok(())
}

/// 2. A design assembled in code, its analytic score, samples and their evaluation.
fn custom_design() -> Result<()> {
    let train = gud_core::free_field::free_field_samples(8, 0.5, 512, 0)?;
    let design_cfg = DesignConfig {
        basis: BasisConfig::Haar { levels: None },
        prior: PriorConfig::Matched {},
        schedule: ScheduleConfig::Cosine(Default::default()),
        ..Default::default()
    };
    let design = Design::fit(&design_cfg, &train)?;
    let mut cfg = gud::Config {
        score: ScoreConfig::Gaussian {},
        ..Default::default()
    };
    cfg.sampler.steps = 16;
    let score = gud::sample::build_score(&cfg, &design, &train, None)?;
    let (gen, sampling) =
        gud::sample::draw_dataset(&cfg, &design, score.as_ref(), 7, 512, &Silent)?;
    let reference = gud_core::free_field::free_field_samples(8, 0.5, 512, 1)?;
    let ev = gud::eval::evaluate(&gen, &reference, &train, 64, 0, None)?;
    println!(
        "custom design ({} basis, {} score, {} sampler): max |log ratio| {:.3}",
        design.basis().name(),
        sampling.score,
        sampling.sampler,
        ev.max_abs_log_ratio
    );
    Ok(())
}

/// 3. HMC for phi^4 on an 8 x 8 lattice and every observable of SPEC section 7.
fn hmc_and_observables() -> Result<()> {
    let couplings = gud_phi4::Couplings::new(-4.0, 8.0)?;
    let lattice = gud_phi4::Lattice::new(8, couplings)?;
    let run = gud_phi4::hmc::sample(&lattice, 512, &Default::default(), &Silent)?;
    let obs = gud_phi4::observables::measure(&run.configs, 8, Some(couplings))?;
    println!(
        "phi^4 L = 8: acceptance {:.2}, <|M|> = {:.4} +- {:.4}, Binder = {:.4} +- {:.4}",
        run.summary.acceptance,
        obs.abs_m.value,
        obs.abs_m.error,
        obs.binder.value,
        obs.binder.error
    );
    Ok(())
}

fn main() -> Result<()> {
    main_job()?;
    custom_design()?;
    hmc_and_observables()
}

#[test]
fn the_library_tour_runs() {
    main().unwrap();
}
