//! The main job (`gud run`): fit the design of a config, train its network when the score is
//! `neural`, sample at one or more budgets, and evaluate the samples against an independent
//! reference (for phi^4: HMC at another seed, every observable with z-scores).

use crate::data::Fitted;
use crate::error::Result;
use crate::eval::EvalReport;
use crate::run::Run;
use crate::train::TrainReport;
use gud_core::config::{SamplerKind, ScoreConfig};
use gud_core::monitor::Monitor;
use gud_core::sampler::SampleReport;
use gud_core::Dataset;
use serde::Serialize;
use std::time::Instant;

/// The settings of the main job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOptions {
    /// Seed of the samples.
    pub seed: u64,
    /// Samples per budget.
    pub samples: usize,
    /// Sampling budgets (network evaluations per sample); empty: 5, 10, 20, 50 for the neural
    /// score, the config's steps for the analytic ones.
    pub nfe: Vec<usize>,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            seed: 0,
            samples: 4096,
            nfe: Vec::new(),
        }
    }
}

/// The training part of the job.
#[derive(Debug, Clone, Serialize)]
pub struct JobTraining {
    /// `train.steps`.
    pub steps: u64,
    /// Seconds.
    pub wall_s: f64,
    /// The run directory.
    pub run: std::path::PathBuf,
    /// What the training call did.
    #[serde(skip)]
    pub report: TrainReport,
}

/// One sampling budget of the job.
#[derive(Debug, Clone)]
pub struct JobRun {
    /// What the sampling cost.
    pub sampling: SampleReport,
    /// Seconds of sampling.
    pub wall_s: f64,
    /// The samples against the reference.
    pub eval: EvalReport,
    /// The samples (phi-space).
    pub samples: Dataset,
    /// The tuned grid the samples were drawn on (`[tune_grid]`), with its errors.
    pub tuned_grid: Option<gud_core::sampler::TunedGrid>,
}

/// What the main job did and measured.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// Training (a neural score only).
    pub training: Option<JobTraining>,
    /// One entry per budget, in the order asked.
    pub runs: Vec<JobRun>,
    /// The exact stage (phi^4 data with `[exact]` on).
    pub exact: Option<ExactStage>,
}

/// The exact stage of the main job: the exact-sampling report and its chain and reweighted
/// observables against the independent reference set.
#[derive(Debug, Clone, Serialize)]
pub struct ExactStage {
    /// Acceptance, ESS, log Z, observables, cost.
    pub report: crate::exact::McmcReport,
    /// The chain's observables against the reference.
    pub chain: Vec<gud_phi4::observables::Comparison>,
    /// The reweighted observables against the reference.
    pub reweighted: Vec<gud_phi4::observables::Comparison>,
    /// The largest |z| of the chain.
    pub chain_max_abs_z: f64,
    /// The largest |z| of the reweighted estimates.
    pub reweighted_max_abs_z: f64,
    /// The flow that proposed (`[exact] proposal = "flow"`), with its training's provenance.
    #[serde(skip)]
    pub flow: Option<crate::flow::FlowFile>,
}

impl JobReport {
    /// The report as `gud run` writes it to report.json: `training` (null for an analytic
    /// score) and `runs`, each the evaluation with its `sampling` report and wall time.
    pub fn to_json(&self) -> serde_json::Value {
        let runs: Vec<serde_json::Value> = self
            .runs
            .iter()
            .map(|r| {
                let mut j = serde_json::to_value(&r.eval).expect("the report serialises");
                j["sampling"] = serde_json::to_value(&r.sampling).expect("the report serialises");
                j["sampling"]["wall_s"] = serde_json::json!(r.wall_s);
                j["sampling"]["tuned_grid"] =
                    serde_json::to_value(&r.tuned_grid).expect("the report serialises");
                j
            })
            .collect();
        let mut j = serde_json::json!({
            "schema_version": REPORT_SCHEMA_VERSION,
            "training": self.training,
            "runs": runs,
        });
        if let Some(e) = &self.exact {
            j["exact"] = serde_json::to_value(e).expect("the report serialises");
            if let Some(f) = &e.flow {
                j["exact"]["flow"] =
                    serde_json::to_value(&f.provenance).expect("the report serialises");
            }
        }
        j
    }
}

/// The version of report.json's layout (docs/report.md); raised whenever a field changes
/// meaning or name.
pub const REPORT_SCHEMA_VERSION: u32 = 2;

/// Grid points giving at most `nfe` network evaluations per sample (Heun: 2K - 1).
pub fn grid_points(kind: SamplerKind, nfe: usize) -> usize {
    match kind {
        SamplerKind::Ode => nfe.div_ceil(2).max(2),
        SamplerKind::Sde | SamplerKind::Ancestral | SamplerKind::Exp => nfe.max(2),
    }
}

/// True for a config whose score is the trained network.
pub fn is_neural(fitted: &Fitted) -> bool {
    fitted.config.score == (ScoreConfig::Neural {})
}

/// Resolves the training settings of a neural config and checks that `run` holds no run of
/// another config; returns whether `run` is continued. Call before writing anything. A neural
/// config without a registered network is [`crate::Error::NoNetwork`] here.
pub fn prepare(fitted: &mut Fitted, run: &Run) -> Result<bool> {
    if !is_neural(fitted) {
        return Ok(false);
    }
    crate::network::get("training the neural score")?;
    crate::train::resolve(&mut fitted.config);
    run.continues(&fitted.config)
}

/// The main job on a fitted config ([`prepare`]d): trains into `run` when the score is neural
/// (continuing it when `resume`), samples at each budget and evaluates against the
/// independent reference set. The monitor hears every phase; a stop request returns
/// [`crate::Error::Interrupted`] (training keeps its checkpoint).
pub fn run(
    fitted: &Fitted,
    run: &Run,
    resume: bool,
    opts: &JobOptions,
    monitor: &dyn Monitor,
) -> Result<JobReport> {
    let (cfg, design, ds) = (&fitted.config, &fitted.design, &fitted.data);
    let neural = is_neural(fitted);
    let mut training = None;
    if neural {
        let start = Instant::now();
        let report = crate::train::train(run, cfg, design, ds, resume, monitor)?;
        training = Some(JobTraining {
            steps: cfg.train.steps,
            wall_s: start.elapsed().as_secs_f64(),
            run: run.dir().to_path_buf(),
            report,
        });
    }
    let score = crate::sample::build_score(cfg, design, ds, Some(run))?;
    let budgets: Vec<Option<usize>> = match (opts.nfe.is_empty(), neural) {
        (false, _) => opts.nfe.iter().map(|&n| Some(n)).collect(),
        (true, true) => [5, 10, 20, 50].map(Some).to_vec(),
        (true, false) => vec![None],
    };
    let (reference, couplings) = crate::data::reference_data(cfg, ds, monitor)?;
    let mut runs = Vec::with_capacity(budgets.len());
    for budget in &budgets {
        let mut c = cfg.clone();
        if let Some(n) = budget {
            c.sampler.set_steps(grid_points(c.sampler.kind, *n));
        }
        let tuned_grid = tuned(&c, design, score.as_ref(), *budget, monitor)?;
        if let Some(t) = &tuned_grid {
            c.sampler.set_times(t.times.clone());
        }
        let start = Instant::now();
        let (gen, sampling) = crate::sample::draw_dataset(
            &c,
            design,
            score.as_ref(),
            opts.seed,
            opts.samples,
            monitor,
        )?;
        let wall_s = start.elapsed().as_secs_f64();
        let eval = crate::eval::evaluate(&gen, &reference, ds, 128, opts.seed, couplings)?;
        runs.push(JobRun {
            sampling,
            wall_s,
            eval,
            samples: gen,
            tuned_grid,
        });
    }
    let exact = exact_stage(fitted, score.as_ref(), &reference, opts, &runs, monitor)?;
    Ok(JobReport {
        training,
        runs,
        exact,
    })
}

/// Whether grids are tuned: `[tune_grid] enabled`, else on for the neural score with a
/// deterministic sampler.
pub fn tuning_enabled(cfg: &crate::Config) -> bool {
    let deterministic = matches!(cfg.sampler.kind, SamplerKind::Exp | SamplerKind::Ode);
    let neural = cfg.score == (gud_core::config::ScoreConfig::Neural {});
    deterministic && cfg.tune_grid.enabled.unwrap_or(neural)
}

/// The tuned grid of a budget of `nfe` evaluations (none past `[tune_grid] max_nfe`, without a
/// budget, or with tuning off), on the config's sampler.
fn tuned(
    cfg: &crate::Config,
    design: &gud_core::Design,
    score: &dyn gud_core::score::ScoreModel,
    nfe: Option<usize>,
    monitor: &dyn Monitor,
) -> Result<Option<gud_core::sampler::TunedGrid>> {
    match nfe {
        Some(n) if tuning_enabled(cfg) && n <= cfg.tune_grid.max_nfe => {
            let tuning = cfg.tune_grid.tuning(cfg.sampler.points());
            // a grid of two points has no interior point to move
            if tuning.points < 3 {
                return Ok(None);
            }
            crate::sample::tune_grid(cfg, design, score, &tuning, monitor).map(Some)
        }
        _ => Ok(None),
    }
}

/// Whether the exact stage runs: `[exact] enabled`, else on for phi^4 data with a
/// deterministic sampler and at most 256 sites, or with `proposal = "flow"` at any size.
pub fn exact_enabled(cfg: &crate::Config, d: usize) -> bool {
    let phi4 = matches!(cfg.data, crate::config::DataConfig::Phi4(_));
    let deterministic = matches!(cfg.sampler.kind, SamplerKind::Exp | SamplerKind::Ode);
    let cheap = match cfg.exact.proposal {
        // the flow's log q costs O(d): no size limit
        crate::config::ExactProposal::Flow => true,
        crate::config::ExactProposal::Sampler => deterministic && d <= 256,
    };
    phi4 && cfg.exact.enabled.unwrap_or(cheap)
}

/// The exact stage of the main job (SPEC section 9): proposals at the largest budget up to
/// `[exact] max_nfe`, weighed against the data's phi^4 action.
fn exact_stage(
    fitted: &Fitted,
    score: &dyn gud_core::score::ScoreModel,
    reference: &Dataset,
    opts: &JobOptions,
    runs: &[JobRun],
    monitor: &dyn Monitor,
) -> Result<Option<ExactStage>> {
    let (cfg, design) = (&fitted.config, &fitted.design);
    let crate::config::DataConfig::Phi4(p) = &cfg.data else {
        return Ok(None);
    };
    if !exact_enabled(cfg, design.dim()) {
        return Ok(None);
    }
    let nfe = match opts
        .nfe
        .iter()
        .copied()
        .filter(|&n| n <= cfg.exact.max_nfe)
        .max()
    {
        Some(n) => Some(n),
        None if is_neural(fitted) => [5, 10, 20, 50]
            .into_iter()
            .filter(|&n| n <= cfg.exact.max_nfe)
            .max(),
        None => None,
    };
    let mut c = cfg.clone();
    if let Some(n) = nfe {
        c.sampler.set_steps(grid_points(c.sampler.kind, n));
        // the grid the samples of this budget were drawn on, when it was tuned
        let points = c.sampler.steps;
        let tuned = runs.iter().find(|r| r.sampling.grid_points == points);
        if let Some(t) = tuned.and_then(|r| r.tuned_grid.as_ref()) {
            c.sampler.set_times(t.times.clone());
        }
    }
    c.sampler.batch = crate::exact::proposals_per_batch(c.sampler.batch, None, design.dim());
    let lattice = gud_phi4::Lattice::new(p.size, gud_phi4::Couplings::new(p.m2, p.lam)?)?;
    let mcmc_opts = crate::exact::McmcOptions {
        proposals: cfg.exact.proposals,
        seed: opts.seed,
        hmc_reference: 0,
        ode_tol: None,
    };
    let (m, flow) = match cfg.exact.proposal {
        crate::config::ExactProposal::Sampler => (
            crate::exact::mcmc(&c, design, score, &lattice, &mcmc_opts, monitor)?,
            None,
        ),
        crate::config::ExactProposal::Flow => {
            crate::flow::check_design(design)?;
            let (file, _) = crate::flow::train(
                design,
                &lattice,
                &cfg.exact.flow,
                None,
                &cfg.exact.flow_training,
                monitor,
            )?;
            if monitor.should_stop() {
                return Err(
                    gud_core::monitor::Interrupted::new("the flow was not finished").into(),
                );
            }
            let lf = gud_core::flow::LocalFlow::new(design, &file.couplings)?;
            let m = crate::exact::mcmc_with(&lf, &lattice, &mcmc_opts, monitor)?;
            (m, Some(file))
        }
    };
    let reference =
        gud_phi4::observables::measure(reference.as_slice(), p.size, Some(lattice.couplings))?;
    let chain = gud_phi4::observables::compare(&m.report.target.chain, &reference);
    let reweighted = gud_phi4::observables::compare(&m.report.target.reweighted, &reference);
    let max = |c: &[gud_phi4::observables::Comparison]| gud_phi4::observables::chi2_and_max_z(c).1;
    Ok(Some(ExactStage {
        chain_max_abs_z: max(&chain),
        reweighted_max_abs_z: max(&reweighted),
        report: m.report,
        chain,
        reweighted,
        flow,
    }))
}
