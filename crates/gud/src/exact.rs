//! Exact sampling (SPEC section 9) as one stage for any target: proposals of a deterministic
//! sampler or a flow with their exact log q, importance weights against the target's log p, an
//! independence Metropolis-Hastings chain, log Z, the cost, and the target's observables
//! ([`run`] with an [`ExactTarget`]). Lattice phi^4 ([`Phi4`], [`mcmc`]) adds its observables,
//! reweighted, and the cost per effective sample beside HMC's.

use crate::config::Config;
use crate::error::{bail, Result};
use gud_core::exact::{
    ess_fraction, independence_metropolis, log_densities, log_mean_weight, log_weights, Chain,
    OdeProposer, Proposals, Proposer, SamplerProposer,
};
use gud_core::monitor::{Interrupted, Monitor};
use gud_core::sampler::SampleReport;
use gud_core::score::ScoreModel;
use gud_core::Design;
use gud_phi4::observables::{measure, measure_weighted, Observables};
use gud_phi4::stats::{tau_int, Binned, Estimate, TauInt};
use gud_phi4::{HmcConfig, Lattice};
use serde::Serialize;
use std::time::Instant;

pub use gud_core::exact::proposal_batch;

/// The batch of exact proposals of fields of `d` values, one rule for the CLI, `gud run`'s
/// exact stage and the Python package: the batch the user gave (`given`), else the config's
/// sampler batch capped at [`proposal_batch`]`(d)` (which bounds the Jacobians' memory).
pub fn proposals_per_batch(config_batch: usize, given: Option<usize>, d: usize) -> usize {
    given.unwrap_or(config_batch.min(proposal_batch(d)))
}

/// The settings of [`mcmc`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct McmcOptions {
    /// Proposals N.
    pub proposals: usize,
    /// Seed of the proposals (proposal k uses stream k) and of the accept/reject uniforms.
    pub seed: u64,
    /// HMC configurations generated for the cost comparison (0: none).
    pub hmc_reference: usize,
    /// Propose with the continuous probability-flow ODE at this solver tolerance instead of
    /// the config's K-step sampler.
    pub ode_tol: Option<f64>,
}

/// Seconds per effectively independent configuration of the project's HMC.
#[derive(Debug, Clone, Serialize)]
pub struct HmcCost {
    /// Configurations generated.
    pub configurations: usize,
    /// Wall seconds (tuning and thermalisation included).
    pub wall_s: f64,
    /// tau_int of |M| in units of the saved configurations.
    pub tau_int_abs_m: f64,
    /// `wall_s / configurations x 2 tau_int`.
    pub s_per_effective_sample: f64,
}

/// Draws `opts.proposals` proposals of the config's sampler (`exp` or `ode`, its grid; or the
/// continuous ODE with `opts.ode_tol`) with
/// `score`, weighs them against the phi^4 target `lattice`, runs independence
/// Metropolis-Hastings and measures everything of SPEC sections 7 and 9. The monitor hears the
/// proposals after each batch (phase `proposals`) and HMC; a stop request ends the run after the current batch
/// with [`crate::Error::Interrupted`].
pub fn mcmc(
    cfg: &Config,
    design: &Design,
    score: &dyn ScoreModel,
    lattice: &Lattice,
    opts: &McmcOptions,
    monitor: &dyn Monitor,
) -> Result<Mcmc> {
    let l = lattice.l;
    let shape = design.shape();
    if shape.c != 1 || shape.h != l || shape.w != l {
        bail!(
            "the proposal's design has shape {shape}, the target an {l} x {l} lattice: train or \
             fit the design on L = {l} configurations"
        );
    }
    let plan = crate::sample::plan(cfg, design)?;
    match opts.ode_tol {
        Some(tol) => {
            let p = OdeProposer {
                design,
                score,
                tol,
                batch: cfg.sampler.batch,
            };
            mcmc_with(&p, lattice, opts, monitor)
        }
        None => {
            let p = SamplerProposer {
                design,
                plan: &plan,
                score,
                config: &cfg.sampler,
            };
            mcmc_with(&p, lattice, opts, monitor)
        }
    }
}

/// [`mcmc`] with any [`Proposer`] (a diffusion sampler, the continuous ODE, a local coupling
/// flow): [`run`] with the [`Phi4`] target.
pub fn mcmc_with(
    proposer: &dyn Proposer,
    lattice: &Lattice,
    opts: &McmcOptions,
    monitor: &dyn Monitor,
) -> Result<Mcmc> {
    let target = Phi4 {
        lattice,
        hmc_reference: opts.hmc_reference,
    };
    let run_opts = RunOptions {
        proposals: opts.proposals,
        seed: opts.seed,
    };
    run(&target, proposer, &run_opts, monitor)
}

/// Proposals `first .. first + count` of `proposer` in its batches; the monitor hears each
/// batch (phase `proposals`), a stop request ends the run between batches.
pub(crate) fn propose_range(
    proposer: &dyn Proposer,
    seed: u64,
    first: u64,
    count: usize,
    monitor: &dyn Monitor,
) -> Result<Proposals> {
    let batch = proposer.batch().clamp(1, count.max(1));
    let mut all: Option<Proposals> = None;
    for start in (0..count).step_by(batch) {
        let n = batch.min(count - start);
        let part = proposer.propose(seed, first + start as u64, n, &mut |step| {
            let done = start + n * (step.step + 1) / step.steps.max(1);
            monitor.progress("proposals", done, count, "");
        })?;
        monitor.progress("proposals", start + n, count, "");
        match &mut all {
            None => all = Some(part),
            Some(p) => {
                p.fields.extend(part.fields);
                p.log_q.extend(part.log_q);
                p.non_injective += part.non_injective;
                // the adaptive solve's evaluations differ per batch: report the total
                if p.report.sampler == "ode-adaptive" {
                    p.report.nfe += part.report.nfe;
                    p.report.component_evals += part.report.component_evals;
                    p.report.component_evals_full += part.report.component_evals_full;
                }
            }
        }
        if monitor.should_stop() && start + n < count {
            return Err(Interrupted::new("nothing was written").into());
        }
    }
    let mut proposals = all.expect("at least one batch");
    proposals.report.samples = count;
    Ok(proposals)
}

/// A target of exact sampling (SPEC section 9) as one stage: its unnormalised log-density and
/// what it measures on the proposals, the chain and the reweighting. phi^4 ([`Phi4`]) supplies
/// its observables and its HMC comparison; [`Density`] makes any [`gud_core::exact::Target`]
/// one without observables; [`ScalarObservables`] measures any per-configuration values.
pub trait ExactTarget {
    /// What the target measures.
    type Observed: Serialize;
    /// Values per configuration.
    fn dim(&self) -> usize;
    /// The target as a person reads it, for messages ("an 8 x 8 lattice").
    fn describe(&self) -> String;
    /// `log p` of each of the `fields.len() / dim` configurations; NaN or inf is a rejection.
    fn log_densities(&self, fields: &[f64]) -> Result<Vec<f64>>;
    /// The observables of a finished run.
    fn observe(&self, run: &Observation<'_>, monitor: &dyn Monitor) -> Result<Self::Observed>;
    /// tau_int, in chain steps, of the observable that sets the cost per effective sample;
    /// `None`: the cost per effective sample is the cost per proposal over ESS/N.
    fn tau(&self, _observed: &Self::Observed) -> Option<f64> {
        None
    }
}

/// A finished run as a target sees it.
pub struct Observation<'a> {
    /// The proposals (N x d, row-major, in index order).
    pub fields: &'a [f64],
    /// `log w = log p - log q` of each proposal (`-inf`: a rejection).
    pub log_w: &'a [f64],
    /// The independence Metropolis-Hastings chain (indices into the proposals).
    pub chain: &'a Chain,
    /// The run's seed.
    pub seed: u64,
}

impl Observation<'_> {
    /// The fields of the chain's states, in chain order.
    pub fn chain_fields(&self, d: usize) -> Vec<f64> {
        self.chain
            .states
            .iter()
            .flat_map(|&k| self.fields[k * d..(k + 1) * d].iter().copied())
            .collect()
    }
}

/// The settings of [`run`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunOptions {
    /// Proposals N.
    pub proposals: usize,
    /// Seed of the proposals (proposal k uses stream k) and of the accept/reject uniforms.
    pub seed: u64,
}

/// What exact sampling measured, for any target: the weights' and the chain's statistics, the
/// cost, and the target's own observables (`target`, flattened into the same record).
#[derive(Debug, Clone, Serialize)]
pub struct ExactReport<O> {
    /// The chain's and the weights' statistics (N, acceptance, ESS/N, log Z, ...).
    #[serde(flatten)]
    pub weights: WeightsReport,
    /// The proposal's sampler and cost per sample.
    pub sampling: SampleReport,
    /// Of the non-finite proposals, those whose map was not injective (a negative Jacobian
    /// determinant).
    pub non_injective: usize,
    /// Seconds of proposing (with log q).
    pub wall_s: f64,
    /// Seconds per proposal.
    pub s_per_proposal: f64,
    /// Seconds per effectively independent sample: `s_per_proposal x 2 tau_int` of the
    /// target's leading observable along the chain, or `s_per_proposal / ESS/N` without one.
    pub s_per_effective_sample: f64,
    /// Seconds per field of the same map without its log q (measured on the first
    /// min(N, 512) proposals again), where the proposer has such a path.
    pub s_per_sample_without_log_q: Option<f64>,
    /// `s_per_proposal / s_per_sample_without_log_q`: what the exact density costs, as a factor.
    pub log_q_cost_ratio: Option<f64>,
    /// What the target measured.
    #[serde(flatten)]
    pub target: O,
}

/// A finished run of any target: the report, the proposals with their log q and log p, and
/// the chain.
#[derive(Debug, Clone)]
pub struct ExactRun<O> {
    /// What was measured.
    pub report: ExactReport<O>,
    /// The proposals with log q.
    pub proposals: Proposals,
    /// `log p` of each proposal.
    pub log_p: Vec<f64>,
    /// The IMH chain (indices into the proposals).
    pub chain: Chain,
}

/// Exact sampling as one stage (SPEC section 9): `opts.proposals` proposals of `proposer` in
/// its batches (the monitor hears phase `proposals`; a stop request ends the run between
/// batches with [`crate::Error::Interrupted`]), their log p under `target`, independence
/// Metropolis-Hastings, the weights' statistics, log Z, the cost with and without log q, and
/// the target's observables.
pub fn run<T: ExactTarget>(
    target: &T,
    proposer: &dyn Proposer,
    opts: &RunOptions,
    monitor: &dyn Monitor,
) -> Result<ExactRun<T::Observed>> {
    check_proposals(proposer, target, opts.proposals)?;
    let start = Instant::now();
    let proposals = propose_range(proposer, opts.seed, 0, opts.proposals, monitor)?;
    let wall_s = start.elapsed().as_secs_f64();
    let plain_count = opts.proposals.min(512);
    let plain_start = Instant::now();
    let s_per_sample_without_log_q = proposer
        .fields_only(opts.seed, 0, plain_count)
        .transpose()?
        .map(|_| plain_start.elapsed().as_secs_f64() / plain_count as f64);
    let log_p = target.log_densities(&proposals.fields)?;
    finish(
        target,
        proposals,
        log_p,
        opts.seed,
        wall_s,
        s_per_sample_without_log_q,
        monitor,
    )
}

/// Checks a run of `count` proposals of `proposer` against the target and this machine's
/// memory (before the first proposal, not after hours of them: regression, issue 34).
fn check_proposals<T: ExactTarget>(
    proposer: &dyn Proposer,
    target: &T,
    count: usize,
) -> Result<()> {
    let d = proposer.dim();
    if d != target.dim() {
        bail!(
            "the proposal has {d} values per field, the target is {} of {} values: train or \
             fit the design on the target's configurations",
            target.describe(),
            target.dim()
        );
    }
    if count < 2 {
        return Err(gud_core::Error::param(
            "proposals",
            count,
            "at least 2 (a chain and errors need two)",
        )
        .into());
    }
    if proposer.batch() == 0 {
        return Err(
            gud_core::Error::param("sampler.batch", 0, "at least 1 proposal per batch").into(),
        );
    }
    // the proposals, the chain's copy of them, log q, log p, log w and the chain's indices
    gud_core::memory::check_alloc(
        &format!("proposals = {count} of {d} values (the proposals, the chain and the weights)"),
        &[count, 2 * d + 4],
        8,
    )?;
    Ok(())
}

/// The chain, the weights, the target's observables and the report of proposals with their
/// log p (what [`run`] does after proposing; a merge of shards starts here).
pub fn finish<T: ExactTarget>(
    target: &T,
    proposals: Proposals,
    log_p: Vec<f64>,
    seed: u64,
    wall_s: f64,
    s_per_sample_without_log_q: Option<f64>,
    monitor: &dyn Monitor,
) -> Result<ExactRun<T::Observed>> {
    let (chain, weights) = weigh(&proposals.log_q, &log_p, seed)?;
    let log_w = log_weights(&log_p, &proposals.log_q);
    let observed = target.observe(
        &Observation {
            fields: &proposals.fields,
            log_w: &log_w,
            chain: &chain,
            seed,
        },
        monitor,
    )?;
    let s_per_proposal = wall_s / weights.proposals as f64;
    let s_per_effective_sample = match target.tau(&observed) {
        Some(tau) => s_per_proposal * 2.0 * tau.max(0.5),
        None => s_per_proposal / weights.ess_fraction,
    };
    let report = ExactReport {
        weights,
        sampling: proposals.report.clone(),
        non_injective: proposals.non_injective,
        wall_s,
        s_per_proposal,
        s_per_effective_sample,
        s_per_sample_without_log_q,
        log_q_cost_ratio: s_per_sample_without_log_q.map(|s| s_per_proposal / s),
        target: observed,
    };
    Ok(ExactRun {
        report,
        proposals,
        log_p,
        chain,
    })
}

fn by_name<S: serde::Serializer>(
    v: &[(String, ScalarObservable)],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|(k, o)| (k, o)))
}

/// Any [`gud_core::exact::Target`] (a log-density of one field) as an exact-sampling target
/// without observables: the run reports the weights, the chain and the cost.
pub struct Density<'a>(pub &'a dyn gud_core::exact::Target);

/// No observables (a [`Density`] target).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct NoObservables {}

impl ExactTarget for Density<'_> {
    type Observed = NoObservables;
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn describe(&self) -> String {
        format!("a density of {} values", self.0.dim())
    }
    fn log_densities(&self, fields: &[f64]) -> Result<Vec<f64>> {
        Ok(log_densities(self.0, fields))
    }
    fn observe(&self, _run: &Observation<'_>, _monitor: &dyn Monitor) -> Result<NoObservables> {
        Ok(NoObservables {})
    }
}

/// One scalar observable of an exact-sampling run, three ways.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ScalarObservable {
    /// The mean over the proposals as they are (biased).
    pub raw: Estimate,
    /// The mean along the IMH chain (exact), binned jackknife.
    pub chain: Estimate,
    /// The self-normalised reweighted mean `sum w O / sum w` (exact), jackknife over the
    /// weighted sums and the weights.
    pub reweighted: Estimate,
    /// tau_int along the chain.
    pub tau_int: TauInt,
}

/// Scalar observables of a run by name (e.g. a Python callable's columns).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScalarObservables {
    /// The observables, in the order given (a map by name in JSON).
    #[serde(serialize_with = "by_name")]
    pub observables: Vec<(String, ScalarObservable)>,
}

impl ScalarObservables {
    /// Measures `values` (N x k, row-major: observable j of proposal i at `i * k + j`, in
    /// proposal order; k = `names.len()`) on the proposals, along the chain and reweighted by
    /// `log_w`. Chain bins hold max(1, ceil(2 tau_int)) states (the largest tau of the k), at
    /// most N/20; the proposals are independent (bins of one).
    pub fn measure(values: &[f64], names: &[String], chain: &Chain, log_w: &[f64]) -> Result<Self> {
        let k = names.len();
        let n = log_w.len();
        if values.len() != n * k {
            return Err(gud_core::Error::ShapeMismatch {
                what: "observables of the proposals".into(),
                expected: format!("{n} x {k} values (one row per proposal)"),
                got: format!("{}", values.len()),
            }
            .into());
        }
        if k == 0 {
            return Ok(ScalarObservables::default());
        }
        if let Some(i) = values.iter().position(|x| !x.is_finite()) {
            bail!(
                "observable {:?} of proposal {} is {}: observables must be finite",
                names[i % k],
                i / k,
                values[i]
            );
        }
        let chain_values: Vec<f64> = chain
            .states
            .iter()
            .flat_map(|&s| values[s * k..(s + 1) * k].iter().copied())
            .collect();
        let column = |v: &[f64], j: usize| v.iter().skip(j).step_by(k).copied().collect::<Vec<_>>();
        let taus: Vec<TauInt> = (0..k)
            .map(|j| tau_int(&[&column(&chain_values, j)]))
            .collect();
        let tau_max = taus.iter().map(|t| t.tau).fold(0.5, f64::max);
        let steps = chain.states.len();
        let bin = ((2.0 * tau_max).ceil() as usize).clamp(1, (steps / 20).max(1));
        let chain_bins = Binned::new(&chain_values, k, bin);
        let raw_bins = Binned::new(values, k, 1);
        let weighted = gud_phi4::observables::weighted_primaries(values, k, log_w)?;
        let weighted_bins = Binned::new(&weighted, k + 1, 1);
        let observables = (0..k)
            .map(|j| {
                let o = ScalarObservable {
                    raw: raw_bins.jackknife(|m| m[j]),
                    chain: chain_bins.jackknife(|m| m[j]),
                    reweighted: weighted_bins.jackknife(|m| m[j] / m[k]),
                    tau_int: taus[j],
                };
                (names[j].clone(), o)
            })
            .collect();
        Ok(ScalarObservables { observables })
    }
}

/// Lattice phi^4 as an exact-sampling target: `log p = -S[phi]`, its observables (SPEC
/// section 7) on the proposals, the chain and the reweighting, the chain's tau_int, and with
/// `hmc_reference` > 0 the project's HMC cost at the same couplings.
pub struct Phi4<'a> {
    /// The lattice and its couplings.
    pub lattice: &'a Lattice,
    /// HMC configurations generated for the cost comparison (0: none).
    pub hmc_reference: usize,
}

/// What the phi^4 target measures.
#[derive(Debug, Clone, Serialize)]
pub struct Phi4Observed {
    /// Lattice size L.
    pub l: usize,
    /// m^2 of the target.
    pub m2: f64,
    /// lambda of the target.
    pub lam: f64,
    /// tau_int of |M| along the chain.
    pub tau_int_abs_m: TauInt,
    /// tau_int of chi_2pt = V M^2 along the chain.
    pub tau_int_chi_2pt: TauInt,
    /// tau_int of the action along the chain.
    pub tau_int_action: TauInt,
    /// The proposals as they are (biased).
    pub raw: Observables,
    /// The IMH chain (exact), binned jackknife.
    pub chain: Observables,
    /// Self-normalised reweighting of the proposals (exact), jackknife.
    pub reweighted: Observables,
    /// The project's HMC at the same couplings.
    pub hmc: Option<HmcCost>,
}

impl ExactTarget for Phi4<'_> {
    type Observed = Phi4Observed;
    fn dim(&self) -> usize {
        self.lattice.l * self.lattice.l
    }
    fn describe(&self) -> String {
        format!("an {l} x {l} lattice", l = self.lattice.l)
    }
    fn log_densities(&self, fields: &[f64]) -> Result<Vec<f64>> {
        Ok(log_densities(self.lattice, fields))
    }
    fn observe(&self, run: &Observation<'_>, monitor: &dyn Monitor) -> Result<Phi4Observed> {
        let lattice = self.lattice;
        let l = lattice.l;
        let v = l * l;
        let chain_fields = run.chain_fields(v);
        let couplings = Some(lattice.couplings);
        let raw = measure(run.fields, l, couplings)?;
        let chain = measure(&chain_fields, l, couplings)?;
        let reweighted = measure_weighted(run.fields, l, couplings, run.log_w)?;
        let series = |f: &dyn Fn(&[f64]) -> f64| -> Vec<f64> {
            chain_fields.chunks_exact(v).map(f).collect()
        };
        let mean = |phi: &[f64]| phi.iter().sum::<f64>() / v as f64;
        let hmc = (self.hmc_reference > 0)
            .then(|| hmc_cost(lattice, self.hmc_reference, run.seed, monitor))
            .transpose()?;
        Ok(Phi4Observed {
            l,
            m2: lattice.couplings.m2,
            lam: lattice.couplings.lam,
            tau_int_abs_m: tau_int(&[&series(&|p| mean(p).abs())]),
            tau_int_chi_2pt: tau_int(&[&series(&|p| v as f64 * mean(p).powi(2))]),
            tau_int_action: tau_int(&[&series(&|p| lattice.action(p))]),
            raw,
            chain,
            reweighted,
            hmc,
        })
    }
    /// The cost per effective sample of |M|.
    fn tau(&self, observed: &Phi4Observed) -> Option<f64> {
        Some(observed.tau_int_abs_m.tau)
    }
}

/// What a phi^4 exact-sampling run measured.
pub type McmcReport = ExactReport<Phi4Observed>;

/// A finished phi^4 run: the report, the proposals with their log q and log p, and the chain.
pub type Mcmc = ExactRun<Phi4Observed>;

/// What proposes: a local coupling flow (SPEC 9.1), or a score with the config's
/// deterministic sampler on its grid, or the continuous ODE at `tol`.
pub enum Proposal<'a> {
    /// A flow's couplings, on the design's RG steps.
    Flow(&'a gud_core::flow::Couplings),
    /// A score with the config's sampler (`tol`: the continuous ODE instead).
    Score {
        /// The score model.
        score: &'a dyn ScoreModel,
        /// The config (its sampler, grid and batch).
        config: Box<Config>,
        /// The continuous ODE's tolerance, if it proposes.
        tol: Option<f64>,
    },
}

impl Proposal<'_> {
    /// The proposer as a person reads it: "flow", "exp, 10 points, neural",
    /// "ode-adaptive, tol 0.0001, gaussian".
    pub fn describe(&self) -> String {
        match self {
            Proposal::Flow(_) => "flow".into(),
            Proposal::Score {
                score,
                tol: Some(t),
                ..
            } => {
                format!("ode-adaptive, tol {t}, {}", score.name())
            }
            Proposal::Score {
                score,
                config,
                tol: None,
            } => format!(
                "{}, {} points, {}",
                format!("{:?}", config.sampler.kind).to_lowercase(),
                config.sampler.points(),
                score.name()
            ),
        }
    }

    /// Calls `f` with the proposer on `design`.
    pub fn with<T>(
        &self,
        design: &Design,
        f: impl FnOnce(&dyn Proposer) -> Result<T>,
    ) -> Result<T> {
        match self {
            Proposal::Flow(c) => {
                crate::flow::check_design(design)?;
                f(&gud_core::flow::LocalFlow::new(design, c)?)
            }
            Proposal::Score {
                score,
                config,
                tol: Some(tol),
            } => f(&OdeProposer {
                design,
                score: *score,
                tol: *tol,
                batch: config.sampler.batch,
            }),
            Proposal::Score {
                score,
                config,
                tol: None,
            } => {
                let plan = crate::sample::plan(config, design)?;
                f(&SamplerProposer {
                    design,
                    plan: &plan,
                    score: *score,
                    config: &config.sampler,
                })
            }
        }
    }
}

/// What exact sampling measures for any target (SPEC section 9): the chain's and the weights'
/// statistics, without a target's observables.
#[derive(Debug, Clone, Serialize)]
pub struct WeightsReport {
    /// Proposals N.
    pub proposals: usize,
    /// IMH acceptance rate.
    pub acceptance: f64,
    /// The longest run of consecutive rejections.
    pub longest_rejection_run: usize,
    /// Proposals with a non-finite log q or log p (rejected, weight zero).
    pub non_finite: usize,
    /// `(sum w)^2 / (N sum w^2)`.
    pub ess_fraction: f64,
    /// Standard deviation of the finite `log w`.
    pub log_w_std: f64,
    /// `log Z = log mean w` (Z: the normalisation of exp(log p)).
    pub log_z: f64,
    /// Its standard error.
    pub log_z_error: f64,
}

/// The independence Metropolis-Hastings chain (seed `seed`) and the weights' statistics of
/// proposals with `log_q` against any target's `log_p` (a non-finite one is a rejection).
pub fn weigh(log_q: &[f64], log_p: &[f64], seed: u64) -> Result<(Chain, WeightsReport)> {
    if log_q.len() != log_p.len() {
        return Err(gud_core::Error::ShapeMismatch {
            what: "log p of the proposals".into(),
            expected: format!("{} values (one per proposal)", log_q.len()),
            got: format!("{}", log_p.len()),
        }
        .into());
    }
    if log_q.len() < 2 {
        return Err(gud_core::Error::param(
            "proposals",
            log_q.len(),
            "at least 2 (a chain and errors need two)",
        )
        .into());
    }
    let log_w = log_weights(log_p, log_q);
    let chain = independence_metropolis(&log_w, seed)?;
    let finite: Vec<f64> = log_w.iter().copied().filter(|x| x.is_finite()).collect();
    let (_, vw) = gud_core::numerics::mean_var(&finite);
    let (log_z, log_z_error) = log_mean_weight(&log_w);
    let report = WeightsReport {
        proposals: log_q.len(),
        acceptance: chain.acceptance(),
        longest_rejection_run: chain.longest_rejection_run,
        non_finite: chain.non_finite,
        ess_fraction: ess_fraction(&log_w),
        log_w_std: vw.sqrt(),
        log_z,
        log_z_error,
    };
    Ok((chain, report))
}

/// The project's HMC at the lattice's couplings: seconds per configuration x 2 tau_int(|M|),
/// tau_int in units of the saved configurations.
fn hmc_cost(lattice: &Lattice, n: usize, seed: u64, monitor: &dyn Monitor) -> Result<HmcCost> {
    let cfg = HmcConfig {
        seed: seed.wrapping_add(7919),
        ..HmcConfig::default()
    };
    let run = gud_phi4::hmc::sample(lattice, n, &cfg, monitor)?;
    let s = &run.summary;
    let tau = s.tau_int_abs_m_saved.tau;
    Ok(HmcCost {
        configurations: n,
        wall_s: s.wall_s,
        tau_int_abs_m: tau,
        s_per_effective_sample: s.wall_s / n as f64 * 2.0 * tau,
    })
}
