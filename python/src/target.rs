//! Exact sampling for any target from Python (SPEC section 9): `gud.mcmc` with a numpy
//! callable log p and, optionally, the callable's own observables, through
//! `gud::exact::run` (the same stage as phi^4's).

use crate::design::PyDesign;
use crate::{array, value_error, Floats, PyMonitor};
use gud::exact::{ExactTarget, Observation, ScalarObservables};
use gud_core::monitor::Monitor;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::Mutex;

/// A Python target: `log_p(fields) -> (rows,)` and optionally `observables(fields) -> {name:
/// (rows,)}`, called with at most `chunk` rows (fields (rows, c, h, w)). The first exception
/// is kept and raised again after the run.
struct PyTarget {
    log_p: Py<PyAny>,
    observables: Option<Py<PyAny>>,
    shape: [usize; 3],
    chunk: usize,
    error: Mutex<Option<PyErr>>,
}

impl PyTarget {
    fn d(&self) -> usize {
        self.shape.iter().product()
    }

    /// Calls `f` on the fields in chunks of rows, with the interpreter attached; a Python
    /// error is kept and becomes a gud error that names `what`.
    fn chunks(
        &self,
        fields: &[f64],
        what: &str,
        mut f: impl FnMut(Python<'_>, Bound<'_, PyAny>, usize) -> PyResult<()>,
    ) -> gud::Result<()> {
        let d = self.d();
        let n = fields.len() / d;
        let r = Python::attach(|py| -> PyResult<()> {
            for start in (0..n).step_by(self.chunk) {
                let rows = self.chunk.min(n - start);
                let [c, h, w] = self.shape;
                let x = array(
                    py,
                    fields[start * d..(start + rows) * d].to_vec(),
                    &[rows, c, h, w],
                )?;
                f(py, x.into_any(), rows)?;
                py.check_signals()?;
            }
            Ok(())
        });
        r.map_err(|e| {
            self.error.lock().expect("target lock").get_or_insert(e);
            gud::Error::Invalid(format!("{what} raised an exception"))
        })
    }
}

impl ExactTarget for PyTarget {
    type Observed = ScalarObservables;
    fn dim(&self) -> usize {
        self.d()
    }
    fn describe(&self) -> String {
        let [c, h, w] = self.shape;
        format!("a callable log_p of ({c}, {h}, {w}) fields")
    }
    fn log_densities(&self, fields: &[f64]) -> gud::Result<Vec<f64>> {
        let mut lp = Vec::with_capacity(fields.len() / self.d());
        self.chunks(fields, "log_p", |py, x, rows| {
            let out = self.log_p.bind(py).call1((x,))?;
            let v = Floats::new(&out, "log_p")?;
            if v.shape() != [rows] {
                return Err(value_error(format!(
                    "log_p: the callable returned shape {:?}, expected ({rows},) (one value per row)",
                    v.shape()
                )));
            }
            lp.extend_from_slice(v.values());
            Ok(())
        })?;
        Ok(lp)
    }
    fn observe(
        &self,
        run: &Observation<'_>,
        _monitor: &dyn Monitor,
    ) -> gud::Result<ScalarObservables> {
        let Some(obs) = &self.observables else {
            return Ok(ScalarObservables::default());
        };
        let mut names: Vec<String> = Vec::new();
        let mut columns: Vec<Vec<f64>> = Vec::new();
        self.chunks(run.fields, "observables", |py, x, rows| {
            let out = obs.bind(py).call1((x,))?;
            let dict = out.cast::<PyDict>().map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(
                    "observables: the callable must return a dict {name: array of shape (rows,)}",
                )
            })?;
            let keys: Vec<String> = dict
                .keys()
                .iter()
                .map(|k| k.extract::<String>())
                .collect::<PyResult<_>>()
                .map_err(|_| value_error("observables: the dict's keys must be strings"))?;
            if columns.is_empty() {
                columns = vec![Vec::new(); keys.len()];
                names = keys.clone();
            } else if keys != names {
                return Err(value_error(format!(
                    "observables: the callable returned the keys {keys:?}, before {names:?}: \
                     return the same names every call"
                )));
            }
            for ((name, value), col) in dict.iter().zip(&mut columns) {
                let what = format!("observables[{:?}]", name.to_string());
                let v = Floats::new(&value, &what)?;
                if v.shape() != [rows] {
                    return Err(value_error(format!(
                        "{what}: shape {:?}, expected ({rows},) (one value per row)",
                        v.shape()
                    )));
                }
                col.extend_from_slice(v.values());
            }
            Ok(())
        })?;
        let n = run.log_w.len();
        let k = names.len();
        let mut values = vec![0.0; n * k];
        for (j, col) in columns.iter().enumerate() {
            for (i, x) in col.iter().enumerate() {
                values[i * k + j] = *x;
            }
        }
        ScalarObservables::measure(&values, &names, run.chain, run.log_w)
    }
    /// The first observable's tau_int sets the cost per effective sample.
    fn tau(&self, observed: &ScalarObservables) -> Option<f64> {
        observed.observables.first().map(|(_, o)| o.tau_int.tau)
    }
}

/// Exact sampling for any target (SPEC section 9): `n` proposals of `proposal` (a
/// :class:`Score` with the design's deterministic sampler, or a :class:`gud.phi4.Flow`) with
/// their exact log q, weighed against your `log_p(fields) -> (rows,)` (numpy in: fields
/// (rows, c, h, w), at most `chunk` rows a call), independence Metropolis-Hastings, the
/// weights' statistics and the cost. `observables(fields) -> {name: (rows,)}`, if given, are
/// measured on the proposals (raw), along the chain and reweighted, each with its error and
/// the chain's tau_int (the first one's sets the cost per effective sample; without
/// observables it is the cost per proposal over ESS/N). A NaN or infinite log p is a
/// rejection, counted in the report (`non_finite`); a wrong shape is a ValueError naming
/// `log_p`; an exception is raised again. Returns a dict: report (acceptance, ESS/N, log Z,
/// observables, cost), proposals, log_q, log_p, chain.
#[pyfunction]
#[pyo3(signature = (design, proposal, log_p, n, seed=crate::Int(0), tol=None, chunk=crate::Int(1024), observables=None, sampler=None, **keys))]
#[allow(clippy::too_many_arguments)]
fn mcmc_target<'py>(
    py: Python<'py>,
    design: &PyDesign,
    proposal: &Bound<'py, PyAny>,
    log_p: &Bound<'py, PyAny>,
    n: crate::Int<usize>,
    seed: crate::Int<u64>,
    tol: Option<f64>,
    chunk: crate::Int<usize>,
    observables: Option<&Bound<'py, PyAny>>,
    sampler: Option<&Bound<'py, PyAny>>,
    keys: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let (n, seed, chunk) = (n.0, seed.0, chunk.0.max(1));
    let callable = |f: &Bound<'py, PyAny>, what: &str, returns: &str| {
        if f.is_callable() {
            Ok(f.clone().unbind())
        } else {
            Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "{what}: expected a callable fields -> {returns}"
            )))
        }
    };
    let log_p = callable(log_p, "log_p", "log p (one value per row)")?;
    let observables = observables
        .filter(|o| !o.is_none())
        .map(|o| callable(o, "observables", "{name: values (one per row)}"))
        .transpose()?;
    if n < 2 {
        return Err(value_error(format!(
            "n: expected at least 2 proposals, got {n}"
        )));
    }
    let g = &design.design;
    let s = g.shape();
    let target = PyTarget {
        log_p,
        observables,
        shape: [s.c, s.h, s.w],
        chunk,
        error: Mutex::new(None),
    };
    let src = crate::proposal::source(design, proposal, tol, sampler, keys, "proposal")?;
    let monitor = PyMonitor::new(src.callable());
    let opts = gud::exact::RunOptions { proposals: n, seed };
    let r = py.detach(|| src.with(g, |p| gud::exact::run(&target, p, &opts, &monitor)));
    if let Some(e) = target.error.lock().expect("target lock").take() {
        return Err(e);
    }
    let run = monitor.finish(r)?;
    let report = monitor.report(py, &run.report)?;
    run_dict(py, run, report, &design.fields_shape(n))
}

/// The dict of an exact-sampling run: report, proposals (`shape`), log_q, log_p, chain.
pub(crate) fn run_dict<'py, O>(
    py: Python<'py>,
    run: gud::exact::ExactRun<O>,
    report: Bound<'py, PyAny>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyDict>> {
    let n = run.log_p.len();
    let out = PyDict::new(py);
    out.set_item("report", report)?;
    out.set_item("proposals", array(py, run.proposals.fields, shape)?)?;
    out.set_item("log_q", array(py, run.proposals.log_q, &[n])?)?;
    out.set_item("log_p", array(py, run.log_p, &[n])?)?;
    out.set_item(
        "chain",
        numpy::PyArray1::from_vec(py, run.chain.states.iter().map(|&s| s as i64).collect()),
    )?;
    Ok(out)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // `gud.mcmc` (gud.phi4.mcmc is `_gud.phi4.mcmc`)
    m.add_function(wrap_pyfunction!(mcmc_target, m)?)?;
    Ok(())
}
