//! Samplers (SPEC section 5), likelihoods (section 6) and exact sampling (section 9) for a
//! design and a score.

use crate::design::{dataset, PyDesign};
use crate::score::PyScore;
use crate::{array, to_py, value_error, Arr, Floats, PyMonitor};
use gud_core::exact;
use gud_core::likelihood::Divergence;
use gud_core::sampler::{PosteriorVariance, TimeGrid};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// One of a config enum's kebab-case names (`key` names it in the error, with the choices).
fn choice<T: serde::de::DeserializeOwned>(key: &str, value: &str) -> PyResult<T> {
    T::deserialize(toml::Value::String(value.to_string()))
        .map_err(|e| value_error(format!("{key}: {}", e.message().trim())))
}

/// A serialisable report as a Python dict (through JSON, the binary's `--json` form).
pub(crate) fn to_dict<'py>(
    py: Python<'py>,
    value: &impl serde::Serialize,
) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| value_error(e.to_string()))?;
    py.import("json")?.call_method1("loads", (text,))
}

/// Draws samples `first .. first + n` (fields (n, c, h, w)) with the design's `[sampler]`
/// (or `sampler`, a dict or TOML text, and keyword keys on top: kind, steps, grid,
/// posterior_variance, projection, batch, order, times). Sample k starts from stream k of `seed`, so
/// any one regenerates alone, and equals the binary's `gud sample` draw. Returns
/// (fields, report).
#[pyfunction]
#[pyo3(signature = (design, score, n, seed=crate::Int(0), first=crate::Int(0), sampler=None, **keys))]
fn sample<'py>(
    py: Python<'py>,
    design: &PyDesign,
    score: &PyScore,
    n: crate::Int<usize>,
    seed: crate::Int<u64>,
    first: crate::Int<u64>,
    sampler: Option<&Bound<'py, PyAny>>,
    keys: Option<&Bound<'py, PyDict>>,
) -> PyResult<(Arr<'py>, Bound<'py, PyAny>)> {
    let n = n.0;
    let seed = seed.0;
    let first = first.0;
    score.check_dim(design)?;
    let cfg = design.config_with(design.sampler_config(sampler, keys)?);
    let monitor = PyMonitor::new(score.callable());
    let (g, model) = (&design.design, &score.model);
    let r = py.detach(|| gud::sample::draw(&cfg, g, model.as_ref(), seed, first, n, &monitor));
    let (fields, report) = monitor.finish(r)?;
    Ok((
        array(py, fields, &design.fields_shape(n))?,
        monitor.report(py, &report)?,
    ))
}

/// The `steps`-point grid of the design's deterministic sampler (`exp` or `ode`; `sampler`
/// and keyword keys as in :func:`sample`) that minimises the mean squared error per site
/// against a uniform grid of `reference_steps` points on `pilot` prior draws (`gud tune-grid`,
/// docs/samplers.md). Returns a dict: `times` (pass as `times=` to :func:`sample` or
/// :func:`propose`), `rms_error`, `uniform_rms_error`, `reference_rms_error`, `trials`.
#[pyfunction]
#[pyo3(signature = (design, score, steps=crate::Int(10), pilot=crate::Int(256), reference_steps=crate::Int(200), max_trials=crate::Int(200), seed=crate::Int(0), sampler=None, **keys))]
#[allow(clippy::too_many_arguments)]
fn tune_grid<'py>(
    py: Python<'py>,
    design: &PyDesign,
    score: &PyScore,
    steps: crate::Int<usize>,
    pilot: crate::Int<usize>,
    reference_steps: crate::Int<usize>,
    max_trials: crate::Int<usize>,
    seed: crate::Int<u64>,
    sampler: Option<&Bound<'py, PyAny>>,
    keys: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let steps = steps.0;
    let pilot = pilot.0;
    let reference_steps = reference_steps.0;
    let max_trials = max_trials.0;
    let seed = seed.0;
    score.check_dim(design)?;
    let cfg = design.config_with(design.sampler_config(sampler, keys)?);
    let tuning = gud_core::sampler::GridTuning {
        points: steps,
        pilot,
        reference_points: reference_steps,
        seed,
        max_trials,
    };
    let monitor = PyMonitor::new(score.callable());
    let (g, model) = (&design.design, &score.model);
    let r = py.detach(|| gud::sample::tune_grid(&cfg, g, model.as_ref(), &tuning, &monitor));
    let tuned = monitor.finish(r)?;
    monitor.report(py, &tuned)
}

/// Proposals with the exact log-density of the map that produced them (SPEC section 9):
/// n samples of a deterministic sampler (`exp` or `ode` on the sampler's grid; or, with
/// `tol`, the continuous probability-flow ODE at that solver tolerance), each with log q in
/// phi-space (nats). Returns (fields (n, c, h, w), log_q (n,), report).
#[pyfunction]
#[pyo3(signature = (design, score, n, seed=crate::Int(0), first=crate::Int(0), tol=None, sampler=None, **keys))]
fn propose<'py>(
    py: Python<'py>,
    design: &PyDesign,
    score: &PyScore,
    n: crate::Int<usize>,
    seed: crate::Int<u64>,
    first: crate::Int<u64>,
    tol: Option<f64>,
    sampler: Option<&Bound<'py, PyAny>>,
    keys: Option<&Bound<'py, PyDict>>,
) -> PyResult<(Arr<'py>, Arr<'py>, Bound<'py, PyAny>)> {
    let n = n.0;
    let seed = seed.0;
    let first = first.0;
    score.check_dim(design)?;
    let scfg = design.proposal_config(sampler, keys)?;
    if let Some(t) = tol {
        if !(t > 0.0 && t < 1.0) {
            return Err(value_error(format!("tol: expected 0 < tol < 1, got {t}")));
        }
    }
    let monitor = PyMonitor::new(score.callable());
    let (g, model) = (&design.design, score.model.as_ref());
    let r = py.detach(|| -> gud::Result<exact::Proposals> {
        Ok(match tol {
            Some(t) => exact::propose_ode(g, model, t, seed, first, n)?,
            None => {
                let cfg = design.config_with(scfg);
                let plan = gud::sample::plan(&cfg, g)?;
                exact::propose(g, &plan, model, &cfg.sampler, seed, first, n, &mut |_| {})?
            }
        })
    });
    let p = monitor.finish(r)?;
    Ok((
        array(py, p.fields, &design.fields_shape(n))?,
        array(py, p.log_q, &[n])?,
        monitor.report(py, &p.report)?,
    ))
}

/// The negative log-likelihood of `data` under the design and score (SPEC section 6):
/// method "elbo" (a bound, `steps` grid points) or "ode" (the probability-flow ODE, adaptive
/// solver at `tol`; divergence "exact" or "hutchinson" with `probes`, default exact up to
/// d = 256). The ELBO's reverse kernels take `posterior_variance` ("none" or "gaussian"),
/// by default the design's `[sampler]` one, as `gud nll` does. Returns the report (nats per
/// sample, bits/dim, their standard errors, ...).
///
/// `data="test"` is the held-out data of the design's config (`Design.from_config`: its test
/// images, dequantised and with the 8-bit offset in bits/dim as `gud nll` does; `samples`:
/// the first ones only), so that the number compares with the binary's.
#[pyfunction]
#[pyo3(signature = (design, score, data, method="elbo", steps=crate::Int(100), tol=1e-5, divergence=None, probes=crate::Int(1), seed=crate::Int(0), batch=crate::Int(64), grid="uniform-t", posterior_variance=None, samples=None))]
fn nll<'py>(
    py: Python<'py>,
    design: &PyDesign,
    score: &PyScore,
    data: &Bound<'py, PyAny>,
    method: &str,
    steps: crate::Int<usize>,
    tol: f64,
    divergence: Option<&str>,
    probes: crate::Int<usize>,
    seed: crate::Int<u64>,
    batch: crate::Int<usize>,
    grid: &str,
    posterior_variance: Option<&str>,
    samples: Option<crate::Int<usize>>,
) -> PyResult<Bound<'py, PyAny>> {
    let steps = steps.0;
    let probes = probes.0;
    let seed = seed.0;
    let batch = batch.0;
    score.check_dim(design)?;
    let held_out = data.extract::<String>().ok();
    let test = match held_out.as_deref() {
        Some("test") => design.test_data(py)?,
        Some(other) => {
            return Err(value_error(format!(
                "data: expected an array of samples or \"test\" (the config's held-out data), got {other:?}"
            )))
        }
        None => dataset(data, "data")?,
    };
    let test = match samples.map(|n| n.0) {
        Some(0) => return Err(value_error("samples: expected at least 1")),
        Some(n) => test.head(n),
        None => test,
    };
    let method: gud::nll::Method = choice("method", method)?;
    let divergence: Option<Divergence> = divergence.map(|d| choice("divergence", d)).transpose()?;
    let time_grid: TimeGrid = choice("grid", grid)?;
    // as `gud nll`: the design's [sampler] posterior variance unless one is given
    let posterior_variance: PosteriorVariance = match posterior_variance {
        Some(v) => choice("posterior_variance", v)?,
        None => design.sampler.posterior_variance,
    };
    if !(tol > 0.0 && tol < 1.0) {
        return Err(value_error(format!("tol: expected 0 < tol < 1, got {tol}")));
    }
    if steps == 0 || probes == 0 {
        return Err(value_error("steps and probes: expected at least 1"));
    }
    let opts = gud::nll::NllOptions {
        method,
        steps,
        time_grid,
        posterior_variance,
        divergence,
        probes,
        tol,
        seed,
        batch,
    };
    let monitor = PyMonitor::new(score.callable());
    let (g, model) = (&design.design, score.model.as_ref());
    let r = py.detach(|| gud::nll::nll(g, model, &test, &opts, &monitor));
    let report = monitor.finish(r)?;
    monitor.report(py, &report)
}

/// A 1-d array of log weights (or log densities) named `what`, at least `min` long: -inf is a
/// weight of zero (a rejected proposal); NaN and +inf are errors that name the index
/// (regression, issue 34: `ess_fraction([0, nan, 1])` returned 0.549 and `metropolis` took a
/// (3, 3) array as 9 weights).
fn log_weight_array<'py>(
    obj: &Bound<'py, PyAny>,
    what: &str,
    min: usize,
    allow_nan: bool,
) -> PyResult<Floats<'py>> {
    let w = Floats::new(obj, what)?;
    let shape = w.shape();
    if shape.len() != 1 {
        return Err(value_error(format!(
            "{what}: expected a 1-d array (one value per proposal), got shape {shape:?}"
        )));
    }
    if shape[0] < min {
        return Err(value_error(format!(
            "{what}: expected at least {min} value(s), got {}",
            shape[0]
        )));
    }
    let bad = w
        .values()
        .iter()
        .position(|x| (x.is_nan() && !allow_nan) || *x == f64::INFINITY);
    if let Some(i) = bad {
        return Err(value_error(format!(
            "{what}[{i}] = {}: expected finite values or -inf (a weight of zero)",
            w.values()[i]
        )));
    }
    Ok(w)
}

/// log w = log p - log q per proposal (a non-finite one gives -inf: weight zero).
#[pyfunction]
fn log_weights<'py>(
    py: Python<'py>,
    log_p: &Bound<'py, PyAny>,
    log_q: &Bound<'py, PyAny>,
) -> PyResult<Arr<'py>> {
    // a non-finite log p or log q is a rejection (SPEC 9), so NaN is taken here
    let p = log_weight_array(log_p, "log_p", 1, true)?;
    let q = log_weight_array(log_q, "log_q", 1, true)?;
    if p.values().len() != q.values().len() {
        return Err(value_error(format!(
            "log_p and log_q: expected equal lengths, got {} and {}",
            p.values().len(),
            q.values().len()
        )));
    }
    let w = exact::log_weights(p.values(), q.values());
    let n = w.len();
    array(py, w, &[n])
}

/// The effective sample size per proposal, (sum w)^2 / (N sum w^2) (SPEC section 9).
#[pyfunction]
fn ess_fraction(log_w: &Bound<'_, PyAny>) -> PyResult<f64> {
    let w = log_weight_array(log_w, "log_w", 1, false)?;
    Ok(exact::ess_fraction(w.values()))
}

/// log Z = log mean w with its standard error (the free energy when p = exp(-S)).
#[pyfunction]
fn log_mean_weight(log_w: &Bound<'_, PyAny>) -> PyResult<(f64, f64)> {
    let w = log_weight_array(log_w, "log_w", 2, false)?;
    Ok(exact::log_mean_weight(w.values()))
}

/// Independence Metropolis-Hastings over proposals with log weights `log_w` (SPEC section 9):
/// returns a dict with the chain's states (indices into the proposals), the acceptance rate,
/// the longest run of rejections and the count of non-finite weights.
#[pyfunction]
#[pyo3(signature = (log_w, seed=crate::Int(0)))]
fn metropolis<'py>(
    py: Python<'py>,
    log_w: &Bound<'py, PyAny>,
    seed: crate::Int<u64>,
) -> PyResult<Bound<'py, PyDict>> {
    let seed = seed.0;
    let w = log_weight_array(log_w, "log_w", 1, false)?;
    let chain = exact::independence_metropolis(w.values(), seed).map_err(to_py)?;
    let out = PyDict::new(py);
    out.set_item("acceptance", chain.acceptance())?;
    out.set_item("longest_rejection_run", chain.longest_rejection_run)?;
    out.set_item("non_finite", chain.non_finite)?;
    out.set_item(
        "states",
        numpy::PyArray1::from_vec(py, chain.states.iter().map(|&s| s as i64).collect()),
    )?;
    Ok(out)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sample, m)?)?;
    m.add_function(wrap_pyfunction!(propose, m)?)?;
    m.add_function(wrap_pyfunction!(tune_grid, m)?)?;
    m.add_function(wrap_pyfunction!(nll, m)?)?;
    m.add_function(wrap_pyfunction!(log_weights, m)?)?;
    m.add_function(wrap_pyfunction!(ess_fraction, m)?)?;
    m.add_function(wrap_pyfunction!(log_mean_weight, m)?)?;
    m.add_function(wrap_pyfunction!(metropolis, m)?)?;
    Ok(())
}
