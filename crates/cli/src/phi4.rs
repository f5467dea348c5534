//! `gud phi4 sample` and `gud phi4 observe`: the lattice phi^4 generator and its observables.

use crate::progress::Terminal;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use gud_core::flow::{FlowConfig, FlowTraining};
use gud_phi4::hmc::{sample, HmcConfig};
use gud_phi4::observables::{measure, Observables};
use gud_phi4::stats::Estimate;
use gud_phi4::{Couplings, Lattice};
use std::path::{Path, PathBuf};

pub use crate::shared::CouplingArgs;

#[derive(Subcommand, Debug)]
pub enum Phi4Command {
    /// Generate configurations by HMC and write them as float32 (N, L, L) .npy.
    Sample {
        /// Lattice size L (an L x L periodic lattice).
        #[arg(long)]
        size: usize,
        #[command(flatten)]
        couplings: CouplingArgs,
        /// Configurations saved.
        #[arg(long, allow_hyphen_values = true)]
        samples: i64,
        /// Seed of the chains (chain k uses stream k).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output .npy (float32, (N, L, L)), written atomically.
        #[arg(long)]
        out: PathBuf,
        /// Parallel chains.
        #[arg(long, default_value_t = 64)]
        chains: usize,
        /// Leapfrog steps per trajectory.
        #[arg(long, default_value_t = 10)]
        leapfrog: usize,
        /// Acceptance rate the step-size tuning aims at.
        #[arg(long, default_value_t = 0.8)]
        target_acceptance: f64,
        /// Thermalisation trajectories (default: max(300, 20 tau_int) from a pilot run).
        #[arg(long)]
        therm: Option<usize>,
        /// Trajectories between saved configurations (default: ceil(2 tau_int)).
        #[arg(long)]
        sep: Option<usize>,
    },
    /// Exact sampling (docs/phi4.md): proposals of a deterministic diffusion sampler (exp or
    /// ode) with the exact density of their map, an independence Metropolis-Hastings chain and
    /// reweighting against exp(-S): acceptance, ESS, log Z, and every observable raw, from the
    /// chain and reweighted, with the cost per effective sample beside HMC's.
    Mcmc(Box<McmcArgs>),
    /// Train a local coupling flow on the RG steps of the config's design against the phi^4
    /// action (reverse KL; docs/phi4.md): an exact proposal whose log q costs O(d), for
    /// `gud phi4 mcmc --flow`. Its couplings do not depend on L: train small, propose large.
    Flow(Box<FlowArgs>),
    /// Proposals [F, F + N) of an exact-sampling run with their log q and log p, as one shard
    /// (.npz) for `gud phi4 mcmc --from` (docs/phi4.md, "Shards"): any split gives the run's
    /// chain and report bit for bit.
    Propose(Box<ProposeArgs>),
    /// Every observable (docs/phi4.md) with binned-jackknife errors and tau_int.
    Observe {
        /// Configurations, (N, L, L) or (N, 1, L, L) .npy, in Monte Carlo order.
        file: PathBuf,
        #[command(flatten)]
        couplings: CouplingArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct FlowArgs {
    /// The config whose design (fitted to its data) carries the flow; the built-in default when
    /// absent.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Target couplings; default: the config's phi^4 data.
    #[command(flatten)]
    pub couplings: CouplingArgs,
    /// Continue from this flow (its architecture; e.g. trained at a smaller L).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// RG steps of the Gaussian base (couplings after each).
    #[arg(long, default_value_t = FlowConfig::default().stages)]
    pub stages: usize,
    /// Coupling pairs (red, black) after each RG step.
    #[arg(long, default_value_t = FlowConfig::default().layers)]
    pub layers: usize,
    /// Hidden units of each coupling.
    #[arg(long, default_value_t = FlowConfig::default().hidden)]
    pub hidden: usize,
    /// Largest offset of the other colour's sites a coupling reads.
    #[arg(long, default_value_t = FlowConfig::default().radius)]
    pub radius: usize,
    /// Dilations of the coupling pairs, cycled (e.g. `2,1`: every other pair reads its colour's
    /// neighbours 2 sites away on a checkerboard of 2 x 2 blocks); default 1.
    #[arg(long, value_delimiter = ',', default_values_t = FlowConfig::default().dilations)]
    pub dilations: Vec<usize>,
    /// Sublattice levels of the coupling pairs, cycled (the decimation hierarchy: 0 the
    /// lattice's checkerboard, 1 the sites with x + y even, 2 those with x and y even, ...).
    #[arg(long, value_delimiter = ',', default_values_t = FlowConfig::default().levels)]
    pub levels: Vec<usize>,
    /// Give every site's map a term of sub-linear growth (the quartic tails of phi^4).
    #[arg(long)]
    pub tails: bool,
    /// Optimisation steps.
    #[arg(long, default_value_t = FlowTraining::default().steps, value_parser = crate::sample::at_least_one)]
    pub steps: usize,
    /// Prior draws per step.
    #[arg(long, default_value_t = FlowTraining::default().batch, value_parser = crate::sample::at_least_one)]
    pub batch: usize,
    /// Peak learning rate (Adam, cosine decay to a tenth).
    #[arg(long, default_value_t = FlowTraining::default().lr)]
    pub lr: f64,
    /// Train with the path gradient (the reverse KL's gradient without its zero-mean score term).
    #[arg(long)]
    pub path_gradient: bool,
    /// Clip each step's mean gradient to this norm (default: no clipping).
    #[arg(long, value_parser = crate::sample::positive)]
    pub clip: Option<f64>,
    /// Seed of the initial weights and the draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output flow (safetensors: the couplings' parameters, architecture and provenance); the
    /// resolved config of its design beside it (NAME.config.toml).
    #[arg(long)]
    pub out: PathBuf,
    /// Print JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// What defines a run's proposals (shared by `gud phi4 mcmc` and `gud phi4 propose`).
#[derive(Args, Debug)]
pub struct ProposalArgs {
    /// A trained run: its config and its network (EMA weights) make the proposal.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// A config with an analytic score instead of a run (the built-in default when neither).
    #[arg(long, conflicts_with = "run")]
    pub config: Option<PathBuf>,
    /// Propose with this local coupling flow (`gud phi4 flow`) on the config's design instead
    /// of the diffusion sampler: exact log q for O(d).
    #[arg(long, conflicts_with_all = ["run", "score", "sampler", "steps", "times", "tol"])]
    pub flow: Option<PathBuf>,
    /// Score model of the proposal; overrides the config's.
    #[arg(long, value_enum)]
    pub score: Option<crate::sample::ScoreKind>,
    /// Target couplings; default: the config's phi^4 data.
    #[command(flatten)]
    pub couplings: CouplingArgs,
    /// Lattice size L (checked against the config's).
    #[arg(long)]
    pub size: Option<usize>,
    /// exp | ode (deterministic samplers); overrides the config's.
    #[arg(long, value_parser = crate::sample::kebab::<gud_core::config::SamplerKind>)]
    pub sampler: Option<gud_core::config::SamplerKind>,
    /// Grid points K; overrides the config's.
    #[arg(long)]
    pub steps: Option<usize>,
    /// An explicit grid t_max = t_0 > t_1 > ... (comma-separated, e.g. from `gud tune-grid`)
    /// instead of K uniform points.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["steps", "tol"])]
    pub times: Vec<f64>,
    /// Propose with the continuous probability-flow ODE (adaptive, exact divergence) at this
    /// solver tolerance instead of the K-step map.
    #[arg(long, conflicts_with = "steps")]
    pub tol: Option<f64>,
    /// Proposals integrated together (each carries its d x d Jacobian; default: up to 128, fewer
    /// on large lattices, at most the config's sampler batch).
    #[arg(long, value_parser = crate::sample::at_least_one)]
    pub batch: Option<usize>,
    /// Seed of the proposals (proposal k uses stream k) and the accept/reject draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct McmcArgs {
    #[command(flatten)]
    pub source: ProposalArgs,
    /// Proposals N.
    #[arg(long, default_value_t = 4096)]
    pub proposals: usize,
    /// Merge these shards (`gud phi4 propose`) instead of proposing: the chain, weights and
    /// report of the single run they are the pieces of, bit for bit.
    #[arg(long, num_args = 1.., conflicts_with_all = ["run", "config", "flow", "score", "sampler", "steps", "times", "tol", "m2", "kappa", "size"])]
    pub from: Vec<PathBuf>,
    /// HMC configurations generated for the cost comparison (0: none).
    #[arg(long, default_value_t = 1024)]
    pub hmc: usize,
    /// The chain, float32 (N, L, L) .npy; beside it NAME.proposals.npy, NAME.weights.npy
    /// ((N, 2): log q, log p) and NAME.config.toml.
    #[arg(long)]
    pub out: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ProposeArgs {
    #[command(flatten)]
    pub source: ProposalArgs,
    /// First proposal index F of the shard (proposal k always uses stream k of the seed).
    #[arg(long, default_value_t = 0)]
    pub first: u64,
    /// Proposals N of the shard: [F, F + N).
    #[arg(long, value_parser = crate::sample::at_least_one)]
    pub count: usize,
    /// The shard (.npz: fields, log_q, log_p and the provenance), for `gud phi4 mcmc --from`.
    #[arg(long)]
    pub out: PathBuf,
}

/// A run's proposal as its flags define it: the fitted config, its target and the factor of
/// the fields' normalisation (hopping convention).
struct Setup {
    cfg: gud::config::Config,
    design: gud_core::Design,
    train: gud_core::Dataset,
    run: Option<gud::Run>,
    flow: Option<(PathBuf, gud::flow::FlowFile)>,
    lattice: Lattice,
    factor: f64,
}

/// Fits the config of `s` (a run's, a config's or the built-in default) with the sampler
/// overrides, and resolves the target.
fn setup(s: &ProposalArgs, run: Option<gud::Run>, config: Option<&Path>) -> Result<Setup> {
    use gud::config::DataConfig;
    let flow = match &s.flow {
        Some(p) => Some((p.clone(), gud::flow::load(p)?)),
        None => None,
    };
    let f = crate::shared::fit(config, None)?;
    let (mut cfg, train, design) = (f.config, f.data, f.design);
    if let Some(kind) = s.score {
        cfg.score = crate::sample::toml_score(kind)?;
    }
    if s.tol.is_some()
        && s.sampler
            .is_some_and(|k| k != gud_core::config::SamplerKind::Ode)
    {
        bail!("--tol sets the continuous ODE's tolerance: it goes with --sampler ode (or none)");
    }
    cfg.sampler.kind = s.sampler.unwrap_or(cfg.sampler.kind);
    if let Some(k) = s.steps {
        cfg.sampler.set_steps(k);
    }
    if !s.times.is_empty() {
        cfg.sampler.set_times(s.times.clone());
    }
    cfg.sampler.batch = gud::exact::proposals_per_batch(cfg.sampler.batch, s.batch, design.dim());
    let (couplings, factor) = match (s.couplings.resolve()?, &cfg.data) {
        (Some(r), _) => r,
        (None, DataConfig::Phi4(p)) => (Couplings::new(p.m2, p.lam)?, 1.0),
        (None, _) => {
            bail!("the config's data are not phi^4: give the target's couplings (--m2 M --lam LAM)")
        }
    };
    let l = design.shape().h;
    if let Some(size) = s.size {
        if size != l || design.shape().w != size {
            bail!(
                "--size {size} does not match the proposal's lattice ({}): the design of {} is fitted to L = {l}",
                design.shape(),
                config.map_or("the built-in default".into(), |p| p.display().to_string())
            );
        }
    }
    if design.shape().c != 1 || design.shape().w != l {
        bail!(
            "the proposal's design has shape {}, not an L x L lattice",
            design.shape()
        );
    }
    let lattice = Lattice::new(l, couplings)?;
    Ok(Setup {
        cfg,
        design,
        train,
        run,
        flow,
        lattice,
        factor,
    })
}

/// Calls `f` with the proposer of `st` (the flow, the continuous ODE or the K-step sampler)
/// and the fingerprint of everything that defines its proposals.
fn with_proposer<T>(
    st: &Setup,
    tol: Option<f64>,
    f: impl FnOnce(&dyn gud_core::exact::Proposer, String, String) -> Result<T>,
) -> Result<T> {
    let cfg_text = toml::to_string(&st.cfg)?;
    let target = format!(
        "L {} m2 {} lam {}",
        st.lattice.l, st.lattice.couplings.m2, st.lattice.couplings.lam
    );
    let score;
    let (proposal, weights) = match &st.flow {
        Some((path, file)) => (
            gud::exact::Proposal::Flow(&file.couplings),
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => {
            score = gud::sample::build_score(&st.cfg, &st.design, &st.train, st.run.as_ref())?;
            let weights = match &st.run {
                Some(r) => std::fs::read(r.checkpoint_path()).unwrap_or_default(),
                None => Vec::new(),
            };
            let proposal = gud::exact::Proposal::Score {
                score: score.as_ref(),
                config: Box::new(st.cfg.clone()),
                tol,
            };
            (proposal, weights)
        }
    };
    let what = proposal.describe();
    let fp = gud::shard::fingerprint(&[
        cfg_text.as_bytes(),
        what.as_bytes(),
        &weights,
        target.as_bytes(),
    ]);
    let mut out = None;
    proposal.with(&st.design, |p| {
        out = Some(f(p, fp, what));
        Ok(())
    })?;
    out.expect("the proposer was called")
}

/// `gud phi4 mcmc`: the library's exact sampler (or the merge of shards), its files and its
/// table.
fn mcmc(a: &McmcArgs) -> Result<()> {
    let from: Vec<Option<&Path>> = a.from.iter().map(|p| Some(p.as_path())).collect();
    let (run, config, mut outputs) = if a.from.is_empty() {
        crate::shared::run_or_config(
            a.source.run.as_deref(),
            a.source.config.as_deref(),
            &[a.source.flow.as_deref()],
        )
    } else {
        (None, None, crate::shared::outputs_for(None, &from))
    };
    // every output name is checked before the work
    let (chain_out, proposals_out, weights_out, config_out) =
        stage_mcmc_outputs(&mut outputs, &a.out)?;
    let monitor = Terminal::new("gud phi4 mcmc");
    let (m, cfg_text, factor) = if a.from.is_empty() {
        if a.proposals < 2 {
            bail!(
                "--proposals must be at least 2 (a chain and its errors need two), got {}",
                a.proposals
            );
        }
        let st = setup(&a.source, run, config.as_deref())?;
        let opts = gud::exact::McmcOptions {
            proposals: a.proposals,
            seed: a.source.seed,
            hmc_reference: a.hmc,
            ode_tol: a.source.tol,
        };
        let m = with_proposer(&st, a.source.tol, |p, _, _| {
            Ok(gud::exact::mcmc_with(p, &st.lattice, &opts, &monitor)?)
        })?;
        (m, toml::to_string(&st.cfg)?, st.factor)
    } else {
        let shards = gud::shard::read_all(&a.from)?;
        let cfg_text = shards
            .first()
            .map(|(_, s)| s.provenance.config.clone())
            .unwrap_or_default();
        (
            gud::shard::mcmc_from_shards(shards, a.hmc, &monitor)?,
            cfg_text,
            1.0,
        )
    };
    drop(monitor);
    let l = m.report.target.l;
    let n = m.report.weights.proposals;
    let v = l * l;
    let chain: Vec<f64> = m
        .chain
        .states
        .iter()
        .flat_map(|&k| {
            m.proposals.fields[k * v..(k + 1) * v]
                .iter()
                .map(|x| x / factor)
        })
        .collect();
    gud_io::npy::write_f32(&chain_out, &[m.chain.states.len(), l, l], &chain)?;
    let fields: Vec<f64> = m.proposals.fields.iter().map(|x| x / factor).collect();
    gud_io::npy::write_f32(&proposals_out, &[n, l, l], &fields)?;
    let weights: Vec<f64> = m
        .proposals
        .log_q
        .iter()
        .zip(&m.log_p)
        .flat_map(|(q, p)| [*q, *p])
        .collect();
    gud_io::npy::write_f32(&weights_out, &[n, 2], &weights)?;
    gud_io::atomic::write_atomic(&config_out, cfg_text.as_bytes())?;
    outputs.commit()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&m.report)?);
    } else {
        print_mcmc(&m.report);
    }
    Ok(())
}

/// The four outputs of `gud phi4 mcmc`: the chain, NAME.proposals.npy, NAME.weights.npy and
/// NAME.config.toml.
fn stage_mcmc_outputs(
    outputs: &mut gud_io::atomic::Outputs,
    out: &Path,
) -> Result<(PathBuf, PathBuf, PathBuf, PathBuf)> {
    let beside = |suffix: &str| crate::shared::beside(out, suffix);
    Ok((
        outputs.stage(out)?,
        outputs.stage(&beside("proposals.npy"))?,
        outputs.stage(&beside("weights.npy"))?,
        outputs.stage(&crate::shared::config_beside(out))?,
    ))
}

/// `gud phi4 propose`: one shard of a run's proposals, for `gud phi4 mcmc --from`.
fn propose(a: &ProposeArgs) -> Result<()> {
    let (run, config, mut outputs) = crate::shared::run_or_config(
        a.source.run.as_deref(),
        a.source.config.as_deref(),
        &[a.source.flow.as_deref()],
    );
    let out = outputs.stage(&a.out)?;
    let st = setup(&a.source, run, config.as_deref())?;
    if st.factor != 1.0 {
        bail!("shards hold fields in gud's convention: give the couplings as --m2 M --lam LAM");
    }
    let monitor = Terminal::new("gud phi4 propose");
    let shard = with_proposer(&st, a.source.tol, |p, fp, what| {
        let spec = gud::shard::ShardSpec {
            fingerprint: fp,
            proposer: what,
            config: toml::to_string(&st.cfg)?,
            seed: a.source.seed,
            first: a.first,
            count: a.count,
        };
        Ok(gud::shard::propose_shard(p, &st.lattice, &spec, &monitor)?)
    })?;
    drop(monitor);
    gud::shard::write(&out, &shard)?;
    outputs.commit()?;
    let p = &shard.provenance;
    eprintln!(
        "wrote {}: proposals {}..{} of seed {} ({}, fingerprint {}) in {:.1} s",
        a.out.display(),
        p.first,
        p.first + p.count as u64,
        p.seed,
        p.proposer,
        p.fingerprint,
        p.wall_s
    );
    Ok(())
}

fn print_mcmc(r: &gud::exact::McmcReport) {
    let s = &r.sampling;
    let (w, t) = (&r.weights, &r.target);
    println!(
        "gud phi4 mcmc: L = {}, m2 = {}, lam = {}: {} proposals of the {} score, {} sampler, {} NFE",
        t.l, t.m2, t.lam, w.proposals, s.score, s.sampler, s.nfe
    );
    println!(
        "  acceptance {:.3}, longest rejection run {}, non-finite {} (not injective {})",
        w.acceptance, w.longest_rejection_run, w.non_finite, r.non_injective
    );
    println!(
        "  ESS/N {:.3}, std(log w) {:.3}, log Z = {:.4} +- {:.4}",
        w.ess_fraction, w.log_w_std, w.log_z, w.log_z_error
    );
    println!(
        "  tau_int along the chain: |M| {:.2}, chi_2pt {:.2}, S {:.2}",
        t.tau_int_abs_m.tau, t.tau_int_chi_2pt.tau, t.tau_int_action.tau
    );
    print!(
        "  cost: {:.3e} s per proposal, {:.3e} s per effective sample",
        r.s_per_proposal, r.s_per_effective_sample
    );
    if let (Some(plain), Some(ratio)) = (r.s_per_sample_without_log_q, r.log_q_cost_ratio) {
        print!(" ({plain:.3e} s per sample without log q: log q costs {ratio:.2}x)");
    }
    match &t.hmc {
        Some(h) => println!(
            "; HMC {:.2e} s per effective sample ({} configurations, tau_int(|M|) {:.2})",
            h.s_per_effective_sample, h.configurations, h.tau_int_abs_m
        ),
        None => println!(),
    }
    println!(
        "    {:<9} {:>26} {:>26} {:>26}",
        "", "proposals (raw)", "chain (exact)", "reweighted (exact)"
    );
    let rows = |o: &Observables| -> Vec<(&'static str, Estimate)> {
        let mut v = vec![
            ("<|M|>", o.abs_m),
            ("<M^2>", o.m2),
            ("chi", o.chi),
            ("chi_2pt", o.chi_2pt),
            ("Binder", o.binder),
            ("<phi^2>", o.phi2),
            ("<phi^4>", o.phi4),
        ];
        if let Some(a) = o.action_density {
            v.push(("S/V", a));
        }
        v
    };
    for ((name, a), ((_, b), (_, c))) in rows(&t.raw)
        .into_iter()
        .zip(rows(&t.chain).into_iter().zip(rows(&t.reweighted)))
    {
        println!("    {name:<9} {} {} {}", fmt(&a), fmt(&b), fmt(&c));
    }
}

/// `gud phi4 flow`: trains a local coupling flow and writes it.
fn flow(a: &FlowArgs) -> Result<()> {
    use gud::config::DataConfig;
    let mut outputs = crate::shared::outputs_for(a.config.as_deref(), &[a.init.as_deref()]);
    let out = outputs.stage(&a.out)?;
    let config_out = outputs.stage(&crate::shared::config_beside(&a.out))?;
    let init = a.init.as_deref().map(gud::flow::load).transpose()?;
    let f = crate::shared::fit(a.config.as_deref(), None)?;
    let (couplings, _) = match (a.couplings.resolve()?, &f.config.data) {
        (Some(r), _) => r,
        (None, DataConfig::Phi4(p)) => (Couplings::new(p.m2, p.lam)?, 1.0),
        (None, _) => {
            bail!("the config's data are not phi^4: give the target's couplings (--m2 M --lam LAM)")
        }
    };
    gud::flow::check_design(&f.design)?;
    let lattice = Lattice::new(f.design.shape().h, couplings)?;
    let config = FlowConfig {
        stages: a.stages,
        layers: a.layers,
        hidden: a.hidden,
        radius: a.radius,
        dilations: a.dilations.clone(),
        tails: a.tails,
        levels: a.levels.clone(),
        ..FlowConfig::default()
    };
    let opts = FlowTraining {
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        seed: a.seed,
        clip: a.clip,
        path_gradient: a.path_gradient,
    };
    let monitor = Terminal::new("gud phi4 flow");
    let (file, log) = gud::flow::train(
        &f.design,
        &lattice,
        &config,
        init.map(|i| i.couplings),
        &opts,
        &monitor,
    )?;
    let stopped = gud_core::monitor::Monitor::should_stop(&monitor);
    drop(monitor);
    gud::flow::save(&out, &file)?;
    gud_io::config::write_toml(&config_out, &f.config)?;
    outputs.commit()?;
    if stopped && log.len() < a.steps {
        let why = format!(
            "stopped after {} of {} steps; {} holds the flow so far (continue with --init)",
            log.len(),
            a.steps,
            a.out.display()
        );
        return Err(gud::Error::from(gud_core::monitor::Interrupted::new(why)).into());
    }
    let p = &file.provenance;
    if a.json {
        println!("{}", serde_json::to_string_pretty(p)?);
    } else {
        println!(
            "gud phi4 flow: L = {}, m2 = {}, lam = {}: {} steps of {} draws in {:.1} s; last tenth: \
             log q - log p {:.4}, batch ESS/N {:.3}; wrote {}",
            p.l,
            p.m2,
            p.lam,
            log.len(),
            a.batch,
            p.wall_s,
            p.final_loss,
            p.final_ess_fraction,
            a.out.display()
        );
    }
    Ok(())
}

pub fn run(cmd: Phi4Command) -> Result<()> {
    match cmd {
        Phi4Command::Mcmc(a) => mcmc(&a),
        Phi4Command::Flow(a) => flow(&a),
        Phi4Command::Propose(a) => propose(&a),
        Phi4Command::Sample {
            size,
            couplings,
            samples,
            seed,
            out,
            chains,
            leapfrog,
            target_acceptance,
            therm,
            sep,
        } => {
            let Some((c, factor)) = couplings.resolve()? else {
                bail!("phi4 sample needs couplings: --m2 M --lam LAM or --kappa K --lambda L");
            };
            if samples <= 0 {
                bail!("--samples must be a positive number of configurations, got {samples}");
            }
            let lat = Lattice::new(size, c)?;
            let mut outputs = gud_io::atomic::Outputs::new::<&Path>([]);
            let npy_out = outputs.stage(&out)?;
            let cfg = HmcConfig {
                chains,
                leapfrog_steps: leapfrog,
                target_acceptance,
                therm,
                sep,
                seed,
                ..HmcConfig::default()
            };
            let run = hmc_with_progress(&lat, samples as usize, &cfg)?;
            let data: Vec<f64> = run.configs.iter().map(|p| p / factor).collect();
            gud_io::npy::write_f32(&npy_out, &[samples as usize, size, size], &data)?;
            outputs.commit()?;
            let mut summary = serde_json::to_value(&run.summary)?;
            summary["out"] = serde_json::json!(out.display().to_string());
            if factor != 1.0 {
                summary["kappa"] = serde_json::json!(couplings.kappa);
                summary["lambda"] = serde_json::json!(couplings.lambda);
                summary["field_normalisation"] =
                    serde_json::json!("hopping (varphi = phi / sqrt(kappa))");
            }
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Phi4Command::Observe {
            file,
            couplings,
            json,
        } => {
            let resolved = couplings.resolve()?;
            let (l, configs) = read_configs(&file)?;
            let factor = resolved.map_or(1.0, |r| r.1);
            let phi: Vec<f64> = configs.iter().map(|v| v * factor).collect();
            let obs = measure(&phi, l, resolved.map(|r| r.0))
                .with_context(|| format!("measuring {}", file.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&obs)?);
            } else {
                print_table(&file, &obs);
            }
            Ok(())
        }
    }
}

/// HMC with a progress bar; SIGINT / SIGTERM stop it with the typed interruption (nothing
/// written).
fn hmc_with_progress(lat: &Lattice, samples: usize, cfg: &HmcConfig) -> Result<gud_phi4::HmcRun> {
    let run = sample(lat, samples, cfg, &Terminal::new("phi4"));
    Ok(run.map_err(gud::Error::from)?)
}

/// Reads (N, L, L) or (N, 1, L, L) configurations.
pub fn read_configs(path: &Path) -> Result<(usize, Vec<f64>)> {
    let arr = gud_io::npy::read_array(path)?;
    let l = match arr.shape[..] {
        [_, a, b] | [_, 1, a, b] if a == b && a >= 2 => a,
        _ => bail!(
            "{}: array has shape {:?}; expected lattice configurations (N, L, L) with L >= 2",
            path.display(),
            arr.shape
        ),
    };
    if arr.shape[0] < 2 {
        bail!(
            "{}: {} configuration(s); at least 2 are needed for errors",
            path.display(),
            arr.shape[0]
        );
    }
    if let Some(i) = arr.data.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: non-finite value in configuration {} at site {}",
            path.display(),
            i / (l * l),
            i % (l * l)
        );
    }
    Ok((l, arr.data))
}

fn fmt(e: &Estimate) -> String {
    format!("{:>12.6} +- {:<10.6}", e.value, e.error)
}

fn print_table(file: &Path, o: &Observables) {
    println!(
        "{}: N = {}, L = {}, {} bins of {}",
        file.display(),
        o.n,
        o.l,
        o.bins,
        o.bin_size
    );
    println!(
        "  tau_int(|M|) = {:.2} +- {:.2}, tau_int(phi^2) = {:.2} +- {:.2}",
        o.tau_int_abs_m.tau, o.tau_int_abs_m.error, o.tau_int_phi2.tau, o.tau_int_phi2.error
    );
    if let Some(t) = o.tau_int_action {
        println!("  tau_int(S) = {:.2} +- {:.2}", t.tau, t.error);
    }
    let rows: [(&str, &Estimate); 8] = [
        ("<|M|>", &o.abs_m),
        ("<M>", &o.m),
        ("<M^2>", &o.m2),
        ("chi", &o.chi),
        ("chi_2pt", &o.chi_2pt),
        ("Binder", &o.binder),
        ("<phi^2>", &o.phi2),
        ("<phi^4>", &o.phi4),
    ];
    for (name, e) in rows {
        println!("  {name:<10} {}", fmt(e));
    }
    if let Some(a) = &o.action_density {
        println!("  {:<10} {}", "S/V", fmt(a));
    }
    for (t, c) in o.c_t.iter().enumerate() {
        println!("  C({t:<2})      {}", fmt(c));
    }
    for (t, m) in o.m_eff.iter().enumerate() {
        match m {
            Some(m) => println!("  m_eff({:<2})  {}", t + 1, fmt(m)),
            None => println!("  m_eff({:<2})  undefined", t + 1),
        }
    }
}
