//! Exact lattice sampling (SPEC section 9): proposals of a deterministic sampler with their
//! exact log q, importance weights against `-S[phi]`, an independence Metropolis-Hastings
//! chain, reweighted observables, log Z, and the cost per effective sample beside HMC's.

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
use gud_phi4::stats::{tau_int, TauInt};
use gud_phi4::{HmcConfig, Lattice};
use serde::Serialize;
use std::time::Instant;

pub use gud_core::exact::proposal_batch;

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

/// What an exact-sampling run measured.
#[derive(Debug, Clone, Serialize)]
pub struct McmcReport {
    /// Lattice size L.
    pub l: usize,
    /// m^2 of the target.
    pub m2: f64,
    /// lambda of the target.
    pub lam: f64,
    /// Proposals N.
    pub proposals: usize,
    /// The proposal's sampler and cost per sample.
    pub sampling: SampleReport,
    /// IMH acceptance rate.
    pub acceptance: f64,
    /// The longest run of consecutive rejections.
    pub longest_rejection_run: usize,
    /// Proposals with a non-finite log q or log p (rejected, weight zero).
    pub non_finite: usize,
    /// Of those, proposals whose map was not injective (a negative Jacobian determinant).
    pub non_injective: usize,
    /// `(sum w)^2 / (N sum w^2)`.
    pub ess_fraction: f64,
    /// Standard deviation of the finite `log w`.
    pub log_w_std: f64,
    /// `log Z = log mean w` (Z = the integral of exp(-S)).
    pub log_z: f64,
    /// Its standard error.
    pub log_z_error: f64,
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
    /// Seconds of proposing (with log q).
    pub wall_s: f64,
    /// Seconds per proposal.
    pub s_per_proposal: f64,
    /// Seconds per effectively independent sample of the chain: `wall_s / N x 2 tau_int(|M|)`.
    pub s_per_effective_sample: f64,
    /// Seconds per field of the same map without its log q (measured on the first
    /// min(N, 512) proposals again), where the proposer has such a path.
    pub s_per_sample_without_log_q: Option<f64>,
    /// `s_per_proposal / s_per_sample_without_log_q`: what the exact density costs, as a factor.
    pub log_q_cost_ratio: Option<f64>,
    /// The project's HMC at the same couplings.
    pub hmc: Option<HmcCost>,
}

/// A finished run: the report, the proposals with their log q and log p, and the chain.
#[derive(Debug, Clone)]
pub struct Mcmc {
    /// What was measured.
    pub report: McmcReport,
    /// The proposals with log q.
    pub proposals: Proposals,
    /// `log p = -S` of each proposal.
    pub log_p: Vec<f64>,
    /// The IMH chain (indices into the proposals).
    pub chain: Chain,
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
/// flow): batches of `proposer.batch()`, then the chain, the weights and the report.
pub fn mcmc_with(
    proposer: &dyn Proposer,
    lattice: &Lattice,
    opts: &McmcOptions,
    monitor: &dyn Monitor,
) -> Result<Mcmc> {
    check_proposals(proposer, lattice, opts.proposals)?;
    let start = Instant::now();
    let proposals = propose_range(proposer, opts.seed, 0, opts.proposals, monitor)?;
    let wall_s = start.elapsed().as_secs_f64();
    let plain_count = opts.proposals.min(512);
    let plain_start = Instant::now();
    let s_per_sample_without_log_q = proposer
        .fields_only(opts.seed, 0, plain_count)
        .transpose()?
        .map(|_| plain_start.elapsed().as_secs_f64() / plain_count as f64);
    let log_p = log_densities(lattice, &proposals.fields);
    analyse(
        proposals,
        log_p,
        lattice,
        opts,
        wall_s,
        s_per_sample_without_log_q,
        monitor,
    )
}

/// Checks a run of `count` proposals of `proposer` against the lattice and this machine's
/// memory (before the first proposal, not after hours of them: regression, issue 34).
fn check_proposals(proposer: &dyn Proposer, lattice: &Lattice, count: usize) -> Result<()> {
    let l = lattice.l;
    let d = proposer.dim();
    if d != l * l {
        bail!(
            "the proposal has {d} values per field, the target an {l} x {l} lattice: train or \
             fit the design on L = {l} configurations"
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

/// The chain, the weights, the observables and the report of proposals with their log p.
pub(crate) fn analyse(
    proposals: Proposals,
    log_p: Vec<f64>,
    lattice: &Lattice,
    opts: &McmcOptions,
    wall_s: f64,
    s_per_sample_without_log_q: Option<f64>,
    monitor: &dyn Monitor,
) -> Result<Mcmc> {
    let l = lattice.l;
    let (chain, weights) = weigh(&proposals.log_q, &log_p, opts.seed)?;
    let log_w = log_weights(&log_p, &proposals.log_q);
    let v = l * l;
    let chain_fields: Vec<f64> = chain
        .states
        .iter()
        .flat_map(|&k| proposals.fields[k * v..(k + 1) * v].iter().copied())
        .collect();
    let couplings = Some(lattice.couplings);
    let raw = measure(&proposals.fields, l, couplings)?;
    let chain_obs = measure(&chain_fields, l, couplings)?;
    let reweighted = measure_weighted(&proposals.fields, l, couplings, &log_w)?;
    let series =
        |f: &dyn Fn(&[f64]) -> f64| -> Vec<f64> { chain_fields.chunks_exact(v).map(f).collect() };
    let mean = |phi: &[f64]| phi.iter().sum::<f64>() / v as f64;
    let tau_abs_m = tau_int(&[&series(&|p| mean(p).abs())]);
    let tau_chi = tau_int(&[&series(&|p| v as f64 * mean(p).powi(2))]);
    let tau_action = tau_int(&[&series(&|p| lattice.action(p))]);
    let hmc = (opts.hmc_reference > 0)
        .then(|| hmc_cost(lattice, opts.hmc_reference, opts.seed, monitor))
        .transpose()?;
    let n = opts.proposals as f64;
    let report = McmcReport {
        l,
        m2: lattice.couplings.m2,
        lam: lattice.couplings.lam,
        proposals: opts.proposals,
        sampling: proposals.report.clone(),
        acceptance: weights.acceptance,
        longest_rejection_run: weights.longest_rejection_run,
        non_finite: weights.non_finite,
        non_injective: proposals.non_injective,
        ess_fraction: weights.ess_fraction,
        log_w_std: weights.log_w_std,
        log_z: weights.log_z,
        log_z_error: weights.log_z_error,
        tau_int_abs_m: tau_abs_m,
        tau_int_chi_2pt: tau_chi,
        tau_int_action: tau_action,
        raw,
        chain: chain_obs,
        reweighted,
        wall_s,
        s_per_proposal: wall_s / n,
        s_per_effective_sample: wall_s / n * 2.0 * tau_abs_m.tau.max(0.5),
        s_per_sample_without_log_q,
        log_q_cost_ratio: s_per_sample_without_log_q.map(|s| wall_s / n / s),
        hmc,
    };
    Ok(Mcmc {
        report,
        proposals,
        log_p,
        chain,
    })
}

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
