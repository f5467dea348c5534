//! `gud`: Generation with Unified Diffusion, the command-line tool. Two binaries share this
//! code: `gud` (no libtorch: it starts in milliseconds and runs every analytic command) and,
//! with feature `nn`, `gud-torch` (the same with the network of `gud-torch` registered), to
//! which `gud` hands every command that needs the network.

mod classifier;
mod commands;
mod eval;
mod extend;
mod nll;
mod phi4;
mod plots;
mod progress;
mod sample;
mod shared;
mod sweep;
mod train;

use clap::{Parser, Subcommand};

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "gud",
    version,
    about = "Generation with Unified Diffusion: the diffusion design space (basis, prior, component-wise schedule) in one tool"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Threads for the mathematics (rayon) and the network (libtorch); default: the cores, or
    /// RAYON_NUM_THREADS / OMP_NUM_THREADS when set.
    #[arg(long, global = true, value_parser = sample::at_least_one)]
    threads: Option<usize>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The main job: fit the design of CONFIG (built-in phi^4 default when absent), sample with
    /// its score and sampler, evaluate against an independent reference, write figures and a
    /// report to --out.
    Run {
        /// TOML config; the built-in phi^4 default (examples/phi4.toml: L = 8, m2 = -4,
        /// lam = 8, fourier basis, free prior, RG schedule, trained network) when absent (also
        /// as --config).
        #[arg(conflicts_with = "config_flag")]
        config: Option<PathBuf>,
        /// TOML config (the same as the positional CONFIG).
        #[arg(long = "config", id = "config_flag", value_name = "CONFIG")]
        config_flag: Option<PathBuf>,
        /// Output directory.
        #[arg(long, default_value = "out/run")]
        out: PathBuf,
        /// Seed of the samples and the forward-process figure.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Samples generated.
        #[arg(long, default_value_t = 4096)]
        samples: usize,
        /// Sampling budgets (network evaluations per sample), one evaluation each; the neural
        /// score defaults to 5,10,20,50, the analytic ones to the config's steps.
        #[arg(long, value_delimiter = ',')]
        nfe: Vec<usize>,
        /// Format of the figures: png (anti-aliased bitmap), svg or pdf (vector, for papers).
        #[arg(long, default_value = "png", value_parser = ["png", "svg", "pdf"])]
        format: String,
    },
    /// Train the neural score of a config into a run directory (checkpoints, metrics, --resume).
    Train(Box<train::TrainArgs>),
    /// Draw samples with an analytic score model and a sampler (docs/samplers.md).
    Sample(Box<sample::SampleArgs>),
    /// Tune the K grid points of a deterministic sampler (exp, ode) for a score: the grid whose
    /// samples are closest to a fine grid's on a pilot batch (docs/samplers.md).
    TuneGrid(Box<sample::TuneGridArgs>),
    /// Compare generated samples with a reference set: spectra, sliced Wasserstein distance,
    /// memorisation and (lattice data) every phi^4 observable.
    Eval(Box<eval::EvalArgs>),
    /// Negative log-likelihood of held-out data in nats and bits/dim: the ELBO bound or the
    /// exact probability-flow ODE density (docs/samplers.md).
    Nll(Box<nll::NllArgs>),
    /// Images wider than the training images by a sliding column-wise window (GUD 5.2), with
    /// the seam metric.
    Extend(Box<extend::ExtendArgs>),
    /// Train one network on a family of schedules and evaluate NLL and a sample metric on a
    /// grid of (softness a, ordering mix r): table, JSON and heat maps (GUD figs. 3 and 5).
    Sweep(Box<sweep::SweepArgs>),
    /// Train the small image classifier whose features give `gud eval --classifier` its
    /// Frechet distance (a stand-in for FID).
    Classifier(Box<classifier::ClassifierArgs>),
    /// Write a trained run's EMA weights for PyTorch (the module gud.unet.UNet of the Python
    /// package, docs/network.md), optionally with a check file of inputs and outputs.
    Export(Box<commands::ExportArgs>),
    /// Lattice phi^4: HMC sampling, observables and exact sampling (docs/phi4.md).
    Phi4 {
        #[command(subcommand)]
        command: phi4::Phi4Command,
    },
    /// Write the training set of a config (or, with --test, its held-out set) as .npy: phi^4 HMC
    /// configurations, free-field draws, or images after crop, resize and scaling.
    Data {
        /// TOML config; the built-in phi^4 default when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output .npy (float32, (N, H, W) for one channel, else (N, C, H, W)); the resolved
        /// config is written beside it.
        #[arg(long)]
        out: PathBuf,
        /// Write the held-out set (test images, or the independent reference of phi^4 and
        /// free-field data) instead of the training set.
        #[arg(long)]
        test: bool,
    },
    /// Plot sigma_i(t), gamma_i(t) and log SNR_i(t) for a spread of components (GUD fig. 2).
    Schedule {
        #[command(flatten)]
        io: commands::FigureArgs,
        /// Number of components drawn.
        #[arg(long, default_value_t = 8)]
        components: usize,
    },
    /// One sample through the forward process at several times, in phi-space (GUD fig. 4).
    Noise {
        #[command(flatten)]
        io: commands::FigureArgs,
        /// Which sample of the data set.
        #[arg(long, default_value_t = 0)]
        index: usize,
        /// Times shown (clipped to the schedule's range).
        #[arg(long, value_delimiter = ',', default_value = "0,0.2,0.4,0.6,0.8,1")]
        times: Vec<f64>,
        /// Seed of the noise eps.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// The command line of either binary (`gud` hands what needs the network to `gud-torch`).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // (a build without the network lets the command fail on its own, after its arguments)
    if cfg!(feature = "nn") && !gud::network::registered() {
        if let Some(what) = needs_network(&cli.command) {
            return hand_over(&what);
        }
    }
    progress::install_signal_handlers();
    if let Err(e) = gud::threads::init(cli.threads) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Phi4 { command } => phi4::run(command),
        Command::Sample(a) => sample::sample(&a),
        Command::TuneGrid(a) => sample::tune_grid(&a),
        Command::Train(a) => train::train(&a),
        Command::Eval(a) => eval::eval(&a),
        Command::Nll(a) => nll::nll(&a),
        Command::Classifier(a) => classifier::classifier(&a),
        Command::Sweep(a) => sweep::sweep(&a),
        Command::Extend(a) => extend::extend(&a),
        Command::Export(a) => commands::export(&a),
        Command::Run {
            config,
            config_flag,
            out,
            seed,
            samples,
            nfe,
            format,
        } => commands::run(
            config.as_deref().or(config_flag.as_deref()),
            &out,
            &gud::job::JobOptions { seed, samples, nfe },
            &format,
        ),
        Command::Data { config, out, test } => commands::data(config.as_deref(), &out, test),
        Command::Schedule { io, components } => commands::schedule(&io, components),
        Command::Noise {
            io,
            index,
            times,
            seed,
        } => commands::noise(&io, index, &times, seed),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let stop = e
                .chain()
                .find_map(|c| c.downcast_ref::<gud::Error>()?.interrupted());
            if let Some(i) = stop {
                eprintln!("{i}");
                return ExitCode::from(progress::signal_exit_code());
            }
            let needs = e
                .chain()
                .find_map(|c| c.downcast_ref::<gud::Error>()?.no_network());
            if let (Some(what), false) = (needs, gud::network::registered()) {
                return hand_over(what);
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What in `command` needs the network whatever its config: training, the classifier, the
/// export, a sweep, and the main job of a neural config (decided before anything is done,
/// so that the hand-over repeats no work). Commands whose need depends on their files
/// (sampling or a likelihood with `--run`) hand over when the library says so.
fn needs_network(command: &Command) -> Option<String> {
    let what = match command {
        Command::Train(_) => "training the neural score",
        Command::Classifier(_) => "the classifier",
        Command::Export(_) => "gud export",
        Command::Sweep(_) => "gud sweep",
        Command::Run {
            config,
            config_flag,
            ..
        } => {
            // an unreadable config is reported by the command itself
            let cfg = gud::data::load_config(config.as_deref().or(config_flag.as_deref())).ok()?;
            if cfg.score != (gud_core::config::ScoreConfig::Neural {}) {
                return None;
            }
            "training the neural score"
        }
        _ => return None,
    };
    Some(what.to_string())
}

/// Runs the same command line in `gud-torch`, the sibling binary with the network, in place of
/// this process; without it (a build without feature `nn`), says what needed it.
fn hand_over(what: &str) -> ExitCode {
    let sibling = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(format!("gud-torch{}", std::env::consts::EXE_SUFFIX)));
    match sibling {
        Some(exe) if cfg!(feature = "nn") && exe.is_file() => {
            warn_if_stale(&exe);
            let mut command = std::process::Command::new(&exe);
            command.args(std::env::args_os().skip(1));
            #[cfg(unix)]
            let error = std::os::unix::process::CommandExt::exec(&mut command);
            #[cfg(not(unix))]
            let error = match command.status() {
                Ok(status) => return ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8),
                Err(e) => e,
            };
            eprintln!("error: starting {}: {error}", exe.display());
        }
        _ if cfg!(feature = "nn") => eprintln!(
            "error: {what} needs the neural network, whose program gud-torch should lie next \
             to gud and does not: build both with `cargo build --release` (after `make setup`)"
        ),
        _ => eprintln!(
            "error: {what} needs the neural network, and this gud was built without it: \
             rebuild with the default cargo features (feature `nn`, which links libtorch and \
             builds gud-torch; `make setup` installs libtorch)"
        ),
    }
    ExitCode::FAILURE
}

/// A `gud-torch` much older than this `gud` was left from an earlier build (`cargo run` builds
/// only the binary it runs): say so, since the two must be the same code.
fn warn_if_stale(sibling: &std::path::Path) {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let own = std::env::current_exe().ok().and_then(|e| modified(&e));
    if let (Some(own), Some(theirs)) = (own, modified(sibling)) {
        if let Ok(lag) = own.duration_since(theirs) {
            // the two binaries of one build are linked within a minute of each other
            if lag.as_secs() > 120 {
                eprintln!(
                    "warning: {} is {} s older than gud: if gud was rebuilt alone (`cargo \
                     run`), build both with `cargo build --release`",
                    sibling.display(),
                    lag.as_secs()
                );
            }
        }
    }
}
