//! Lattice phi^4 (SPEC section 7): HMC ensembles, observables with binned-jackknife errors and
//! tau_int, the action, and exact sampling of the theory with a diffusion proposal (section 9).

use crate::design::PyDesign;
use crate::sampling::to_dict;
use crate::{array, to_py, value_error, Arr, Floats, PyMonitor};
use gud_core::exact::Proposer;
use gud_phi4::{hmc, observables, Couplings, HmcConfig, Lattice};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Couplings (m2, lam) checked as the binary checks them.
fn couplings(m2: f64, lam: f64) -> PyResult<Couplings> {
    Couplings::new(m2, lam).map_err(to_py)
}

/// Configurations (n, L, L) (or (n, 1, L, L), or (n, L*L) with `l`) as (values, n, L).
fn configurations<'py>(
    obj: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<(Floats<'py>, usize, usize)> {
    let x = Floats::new(obj, what)?;
    let shape = x.shape();
    let (n, l) = match shape.as_slice() {
        [n, h, w] if h == w => (*n, *h),
        [n, 1, h, w] if h == w => (*n, *h),
        _ => {
            return Err(value_error(format!(
                "{what}: expected configurations of shape (n, L, L), got {shape:?}"
            )))
        }
    };
    if n == 0 || l == 0 {
        return Err(value_error(format!(
            "{what}: expected at least one configuration, got shape {shape:?}"
        )));
    }
    // a NaN field has no action (regression, issue 34: a silent NaN)
    if let Some(i) = x.values().iter().position(|v| !v.is_finite()) {
        return Err(value_error(format!(
            "{what}: non-finite value {} in configuration {} at site {}",
            x.values()[i],
            i / (l * l),
            i % (l * l)
        )));
    }
    Ok((x, n, l))
}

/// Couplings (m2, lam) of the hopping-parameter convention (kappa, lambda), exactly (SPEC 7).
#[pyfunction]
fn couplings_from_hopping(kappa: f64, lambda: f64) -> PyResult<(f64, f64)> {
    let c = Couplings::from_hopping(kappa, lambda).map_err(to_py)?;
    Ok((c.m2, c.lam))
}

/// HMC ensemble of n configurations of the L x L theory (SPEC section 7): many parallel chains
/// (chain k on stream k of `seed`), step size tuned, thermalisation and separation chosen
/// from a pilot's tau_int unless given. Returns (configs (n, L, L), summary). Ctrl-C stops it
/// between rounds of 10 trajectories with KeyboardInterrupt.
#[pyfunction]
#[pyo3(signature = (l, m2, lam, n, seed=crate::Int(0), chains=crate::Int(64), leapfrog_steps=crate::Int(10), target_acceptance=0.8, therm=None, sep=None))]
fn hmc_sample<'py>(
    py: Python<'py>,
    l: crate::Int<usize>,
    m2: f64,
    lam: f64,
    n: crate::Int<usize>,
    seed: crate::Int<u64>,
    chains: crate::Int<usize>,
    leapfrog_steps: crate::Int<usize>,
    target_acceptance: f64,
    therm: Option<crate::Int<usize>>,
    sep: Option<crate::Int<usize>>,
) -> PyResult<(Arr<'py>, Bound<'py, PyAny>)> {
    let l = l.0;
    let n = n.0;
    let seed = seed.0;
    let chains = chains.0;
    let leapfrog_steps = leapfrog_steps.0;
    let therm = therm.map(|v| v.0);
    let sep = sep.map(|v| v.0);
    let lattice = Lattice::new(l, couplings(m2, lam)?).map_err(to_py)?;
    let cfg = HmcConfig {
        chains,
        leapfrog_steps,
        target_acceptance,
        therm,
        sep,
        seed,
        ..HmcConfig::default()
    };
    let monitor = PyMonitor::new(None);
    let r = py.detach(|| hmc::sample(&lattice, n, &cfg, &monitor).map_err(gud::Error::from));
    let run = monitor.finish(r)?;
    Ok((
        array(py, run.configs, &[n, l, l])?,
        to_dict(py, &run.summary)?,
    ))
}

/// Every observable of SPEC section 7 (<|M|>, <M^2>, chi, chi_2pt, Binder, <phi^2>, <phi^4>,
/// S/V with couplings, C(t), m_eff) with binned-jackknife errors and tau_int, of
/// configurations (n, L, L) in their order (a chain). With `log_weights`, self-normalised
/// reweighting of independent proposals (SPEC section 9). Returns a dict.
#[pyfunction]
#[pyo3(signature = (configs, m2=None, lam=None, log_weights=None))]
fn observe<'py>(
    py: Python<'py>,
    configs: &Bound<'py, PyAny>,
    m2: Option<f64>,
    lam: Option<f64>,
    log_weights: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let (x, n, l) = configurations(configs, "configs")?;
    let c = match (m2, lam) {
        (Some(m2), Some(lam)) => Some(couplings(m2, lam)?),
        (None, None) => None,
        _ => return Err(value_error("m2 and lam: give both couplings, or neither")),
    };
    let values = x.values();
    let obs = match log_weights {
        None => py.detach(|| observables::measure(values, l, c)),
        Some(w) => {
            let w = Floats::new(w, "log_weights")?;
            if w.values().len() != n {
                return Err(value_error(format!(
                    "log_weights: expected one per configuration ({n}), got {}",
                    w.values().len()
                )));
            }
            let wv = w.values();
            py.detach(|| observables::measure_weighted(values, l, c, wv))
        }
    }
    .map_err(to_py)?;
    to_dict(py, &obs)
}

/// The action S[phi] of each configuration (n, L, L) (SPEC section 7); log p = -S.
#[pyfunction]
fn action<'py>(
    py: Python<'py>,
    configs: &Bound<'py, PyAny>,
    m2: f64,
    lam: f64,
) -> PyResult<Arr<'py>> {
    let (x, n, l) = configurations(configs, "configs")?;
    let lattice = Lattice::new(l, couplings(m2, lam)?).map_err(to_py)?;
    let v = l * l;
    let s: Vec<f64> = x
        .values()
        .chunks_exact(v)
        .map(|p| lattice.action(p))
        .collect();
    array(py, s, &[n])
}

/// Exact sampling of phi^4 at (m2, lam) with the design and score as the proposal (SPEC
/// section 9): `proposals` draws of the deterministic sampler (`exp`/`ode` on its grid, or the
/// continuous ODE with `tol`) with their exact log q, weighed against exp(-S), independence
/// Metropolis-Hastings and reweighting. Returns a dict: report (acceptance, ESS/N, log Z, the
/// raw / chain / reweighted observables, cost, and with `hmc_reference` > 0 the project's HMC
/// cost at the same couplings), proposals (N, L, L), log_q, log_p and chain (indices).
///
/// `score` may be a :class:`Flow` instead (a local coupling flow, SPEC 9.1): its proposals on
/// the design's RG steps, with log q for O(d); `tol` and sampler keys do not apply then.
#[pyfunction]
#[pyo3(signature = (design, score, m2, lam, proposals, seed=crate::Int(0), tol=None, hmc_reference=crate::Int(0), sampler=None, **keys))]
fn mcmc<'py>(
    py: Python<'py>,
    design: &PyDesign,
    score: &Bound<'py, PyAny>,
    m2: f64,
    lam: f64,
    proposals: crate::Int<usize>,
    seed: crate::Int<u64>,
    tol: Option<f64>,
    hmc_reference: crate::Int<usize>,
    sampler: Option<&Bound<'py, PyAny>>,
    keys: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let shape = design.design.shape();
    let lattice = Lattice::new(shape.h, couplings(m2, lam)?).map_err(to_py)?;
    let opts = gud::exact::McmcOptions {
        proposals: proposals.0,
        seed: seed.0,
        hmc_reference: hmc_reference.0,
        ode_tol: tol,
    };
    let g = &design.design;
    let src = crate::proposal::source(design, score, tol, sampler, keys, "score")?;
    let monitor = PyMonitor::new(src.callable());
    let r = py.detach(|| src.with(g, |p| gud::exact::mcmc_with(p, &lattice, &opts, &monitor)));
    let run = monitor.finish(r)?;
    let report = monitor.report(py, &run.report)?;
    mcmc_dict(py, run, report)
}

/// The dict of a phi^4 exact-sampling run: report, proposals (N, L, L), log_q, log_p, chain.
fn mcmc_dict<'py>(
    py: Python<'py>,
    run: gud::exact::Mcmc,
    report: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let (n, l) = (run.report.weights.proposals, run.report.target.l);
    crate::target::run_dict(py, run, report, &[n, l, l])
}

/// One shard of an exact-sampling run (`gud phi4 propose`): proposals [first, first + count)
/// of `proposal` (a :class:`gud.Score` with the design's sampler, or a :class:`Flow`) with
/// their log q and log p against phi^4 at (m2, lam), written to `out` (.npz, numpy reads it).
/// Proposal k always uses stream k of `seed`, so shards computed anywhere (threads, processes,
/// a Dask cluster, Slurm) are the pieces of one run: :func:`merge_shards` gives its chain bit
/// for bit. Returns the shard's provenance (dict). A callable score is fingerprinted by name
/// only: keep one network per run.
#[pyfunction]
#[pyo3(signature = (design, proposal, m2, lam, first, count, out, seed=crate::Int(0), tol=None, sampler=None, **keys))]
fn propose_shard<'py>(
    py: Python<'py>,
    design: &PyDesign,
    proposal: &Bound<'py, PyAny>,
    m2: f64,
    lam: f64,
    first: crate::Int<u64>,
    count: crate::Int<usize>,
    out: std::path::PathBuf,
    seed: crate::Int<u64>,
    tol: Option<f64>,
    sampler: Option<&Bound<'py, PyAny>>,
    keys: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let g = &design.design;
    let lattice = Lattice::new(g.shape().h, couplings(m2, lam)?).map_err(to_py)?;
    let mut outputs = gud_io::atomic::Outputs::new::<&std::path::Path>([]);
    let tmp = outputs
        .stage(&out)
        .map_err(|e| to_py(gud::Error::from(e)))?;
    let target = format!("L {} m2 {m2} lam {lam}", g.shape().h);
    let src = crate::proposal::source(design, proposal, tol, sampler, keys, "proposal")?;
    let (what, weights) = src.describe();
    let cfg_text = toml::to_string(src.config(design)).map_err(|e| value_error(e.to_string()))?;
    let fingerprint = gud::shard::fingerprint(&[
        cfg_text.as_bytes(),
        what.as_bytes(),
        &weights,
        target.as_bytes(),
    ]);
    let spec = gud::shard::ShardSpec {
        fingerprint,
        proposer: what,
        config: cfg_text,
        seed: seed.0,
        first: first.0,
        count: count.0,
    };
    let monitor = PyMonitor::new(src.callable());
    let r = py.detach(|| {
        src.with(g, |p| {
            gud::shard::propose_shard(p, &lattice, &spec, &monitor)
        })
    });
    let shard = monitor.finish(r)?;
    gud::shard::write(&tmp, &shard).map_err(to_py)?;
    outputs.commit().map_err(|e| to_py(gud::Error::from(e)))?;
    to_dict(py, &shard.provenance)
}

/// The run whose pieces are the shard files `paths` (any order; written by
/// :func:`propose_shard` or `gud phi4 propose`): the dict of :func:`mcmc`, bit for bit the
/// single run's but for the timings. Shards of another run, and ranges with gaps, overlaps or
/// repeats, are a ValueError naming the shard.
#[pyfunction]
#[pyo3(signature = (paths, hmc_reference=crate::Int(0)))]
fn merge_shards<'py>(
    py: Python<'py>,
    paths: Vec<std::path::PathBuf>,
    hmc_reference: crate::Int<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let monitor = PyMonitor::new(None);
    let r = py.detach(|| {
        let shards = gud::shard::read_all(&paths)?;
        gud::shard::mcmc_from_shards(shards, hmc_reference.0, &monitor)
    });
    let run = monitor.finish(r)?;
    let report = monitor.report(py, &run.report)?;
    mcmc_dict(py, run, report)
}

/// A local coupling flow (SPEC 9.1): the RG steps of a design's Gaussian base with
/// checkerboard couplings between them, trained by the reverse Kullback-Leibler divergence
/// against the phi^4 action; its exact log q costs O(d). Its couplings do not depend on L: a
/// flow trained at one size proposes on the design of any other. Use it as the `score` of
/// :func:`mcmc`, or :meth:`propose`.
#[pyclass(module = "gud._gud", name = "Flow", frozen)]
pub struct PyFlow {
    pub(crate) file: gud::flow::FlowFile,
}

#[pymethods]
impl PyFlow {
    /// Trains a flow on `design` against phi^4 at (m2, lam) (`init`: a flow to continue, whose
    /// architecture is kept; `clip`: the largest norm of a step's mean gradient; `dilations`:
    /// of the coupling pairs, cycled, default [1]; `levels`: their sublattice levels, cycled,
    /// default [0]; `tails`: the sub-linear term of every site's map; `path_gradient`: train
    /// with the path gradient). The same as `gud phi4 flow`.
    #[staticmethod]
    #[pyo3(signature = (design, m2, lam, steps=crate::Int(1000), batch=crate::Int(64), lr=1e-2, seed=crate::Int(0), stages=crate::Int(4), layers=crate::Int(2), hidden=crate::Int(16), radius=crate::Int(2), init=None, clip=None, dilations=None, tails=false, levels=None, path_gradient=false))]
    #[allow(clippy::too_many_arguments)]
    fn train(
        py: Python<'_>,
        design: &PyDesign,
        m2: f64,
        lam: f64,
        steps: crate::Int<usize>,
        batch: crate::Int<usize>,
        lr: f64,
        seed: crate::Int<u64>,
        stages: crate::Int<usize>,
        layers: crate::Int<usize>,
        hidden: crate::Int<usize>,
        radius: crate::Int<usize>,
        init: Option<&PyFlow>,
        clip: Option<f64>,
        dilations: Option<Vec<crate::Int<usize>>>,
        tails: bool,
        levels: Option<Vec<crate::Int<usize>>>,
        path_gradient: bool,
    ) -> PyResult<Self> {
        let g = &design.design;
        gud::flow::check_design(g).map_err(to_py)?;
        let lattice = Lattice::new(g.shape().h, couplings(m2, lam)?).map_err(to_py)?;
        let config = gud_core::flow::FlowConfig {
            stages: stages.0,
            layers: layers.0,
            hidden: hidden.0,
            radius: radius.0,
            dilations: dilations.map_or_else(|| vec![1], |d| d.into_iter().map(|x| x.0).collect()),
            tails,
            levels: levels.map_or_else(|| vec![0], |l| l.into_iter().map(|x| x.0).collect()),
            ..Default::default()
        };
        let opts = gud_core::flow::FlowTraining {
            steps: steps.0,
            batch: batch.0,
            lr,
            seed: seed.0,
            clip,
            path_gradient,
        };
        let init = init.map(|f| f.file.couplings.clone());
        let monitor = PyMonitor::new(None);
        let r = py.detach(|| gud::flow::train(g, &lattice, &config, init, &opts, &monitor));
        let (file, _) = monitor.finish(r)?;
        Ok(PyFlow { file })
    }

    /// Reads a flow file (`gud phi4 flow --out`).
    #[staticmethod]
    fn load(path: std::path::PathBuf) -> PyResult<Self> {
        let file = gud::flow::load(&path).map_err(to_py)?;
        Ok(PyFlow { file })
    }

    /// Writes the flow (safetensors; the binary reads it with `gud phi4 mcmc --flow`).
    fn save(&self, path: std::path::PathBuf) -> PyResult<()> {
        let mut outputs = gud_io::atomic::Outputs::new::<&std::path::Path>([]);
        let tmp = outputs
            .stage(&path)
            .map_err(|e| to_py(gud::Error::from(e)))?;
        gud::flow::save(&tmp, &self.file).map_err(to_py)?;
        outputs.commit().map_err(|e| to_py(gud::Error::from(e)))
    }

    /// Proposals `first .. first + n` on `design` with their exact log q: (fields (n, L, L),
    /// log_q (n,)).
    #[pyo3(signature = (design, n, seed=crate::Int(0), first=crate::Int(0)))]
    fn propose<'py>(
        &self,
        py: Python<'py>,
        design: &PyDesign,
        n: crate::Int<usize>,
        seed: crate::Int<u64>,
        first: crate::Int<u64>,
    ) -> PyResult<(Arr<'py>, Arr<'py>)> {
        let g = &design.design;
        let couplings = &self.file.couplings;
        let r = py.detach(|| -> gud::Result<gud_core::exact::Proposals> {
            gud::flow::check_design(g)?;
            let lf = gud_core::flow::LocalFlow::new(g, couplings)?;
            Ok(lf.propose(seed.0, first.0, n.0, &mut |_| {})?)
        });
        let p = r.map_err(to_py)?;
        let l = g.shape().h;
        Ok((
            array(py, p.fields, &[n.0, l, l])?,
            array(py, p.log_q, &[n.0])?,
        ))
    }

    /// Where the flow was trained: gud version, L, couplings, settings, final loss and ESS.
    #[getter]
    fn provenance<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_dict(py, &self.file.provenance)
    }

    fn __repr__(&self) -> String {
        let p = &self.file.provenance;
        format!(
            "Flow(trained at L = {}, m2 = {}, lam = {}, {} steps; {} parameters)",
            p.l,
            p.m2,
            p.lam,
            p.training.steps,
            self.file.couplings.params.len()
        )
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(couplings_from_hopping, m)?)?;
    m.add_function(wrap_pyfunction!(hmc_sample, m)?)?;
    m.add_function(wrap_pyfunction!(observe, m)?)?;
    m.add_function(wrap_pyfunction!(action, m)?)?;
    m.add_function(wrap_pyfunction!(mcmc, m)?)?;
    m.add_class::<PyFlow>()?;
    m.add_function(wrap_pyfunction!(propose_shard, m)?)?;
    m.add_function(wrap_pyfunction!(merge_shards, m)?)?;
    Ok(())
}
