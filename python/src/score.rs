//! `Score`: a model of eps_hat(chi_t, gamma_t) in whitened component space (SPEC section 4):
//! gud's analytic scores, or a Python callable (your own network).

use crate::design::{dataset, PyDesign};
use crate::{array, section, to_py, value_error, Arr, Floats};
use gud_core::config::ScoreConfig;
use gud_core::score::{GaussianScore, MixtureScore, ScoreModel};
use gud_core::NoisingState;
use numpy::PyArrayMethods;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A score model: `Score(design, kind="gaussian", data=None, **options)` builds an analytic one
/// (kinds gaussian, empirical, smoothed, els, mixture, with the options of the config's
/// `[score]` table; the data-dependent ones use `data` or the design's training data; `base`:
/// the design's own analytic base, Gaussian or its fitted mixtures);
/// `Score.from_callable(fn, dim, vjp=None, float32=False)` wraps your own network.
#[pyclass(module = "gud._gud", name = "Score", frozen)]
pub struct PyScore {
    pub(crate) model: Arc<dyn ScoreModel>,
    pub(crate) callable: Option<Arc<CallableScore>>,
}

impl PyScore {
    /// The callable behind this score, if it is one (its exception is raised after a call).
    pub(crate) fn callable(&self) -> Option<&CallableScore> {
        self.callable.as_deref()
    }
    /// Checks that the score has the design's dimension.
    pub(crate) fn check_dim(&self, design: &PyDesign) -> PyResult<()> {
        let (a, b) = (self.model.dim(), design.design.dim());
        if a != b {
            return Err(value_error(format!(
                "score: the score has {a} components, the design {b}"
            )));
        }
        Ok(())
    }
}

#[pymethods]
impl PyScore {
    /// An analytic score for `design` (SPEC section 4).
    #[new]
    #[pyo3(signature = (design, kind="gaussian", data=None, **options))]
    fn new(
        py: Python<'_>,
        design: &PyDesign,
        kind: &str,
        data: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        if kind == "base" {
            // the design's own analytic base (SPEC section 4): Gaussian, or its fitted mixtures
            if options.is_some_and(|o| !o.is_empty()) || data.is_some() {
                return Err(value_error(
                    "score kind \"base\" is the design's own base: it takes no data or options",
                ));
            }
            return Ok(PyScore {
                model: Arc::new(MixtureScore::new(design.design.base().clone())),
                callable: None,
            });
        }
        let kind_only = PyDict::new(py);
        kind_only.set_item("kind", kind)?;
        if let Some(o) = options {
            kind_only.update(o.as_mapping())?;
        }
        let cfg: ScoreConfig = section(
            &ScoreConfig::Gaussian {},
            Some(kind_only.as_any()),
            None,
            "score",
            &[],
        )?;
        let g = &design.design;
        let model: Box<dyn ScoreModel> = match (&cfg, data) {
            (ScoreConfig::Gaussian {}, None) => {
                Box::new(GaussianScore::new(g.sigma_data().to_vec()))
            }
            (_, Some(obj)) => {
                let ds = dataset(obj, "data")?;
                py.detach(|| cfg.build(g, &ds))
                    .map_err(|e| value_error(format!("data: {}", crate::chain(&e))))?
            }
            (_, None) => {
                let ds = design.data.as_ref().ok_or_else(|| {
                    value_error(format!(
                        "score.kind = {kind:?} needs training data: pass data=..., or fit the \
                         design to data"
                    ))
                })?;
                py.detach(|| cfg.build(g, ds)).map_err(to_py)?
            }
        };
        Ok(PyScore {
            model: Arc::from(model),
            callable: None,
        })
    }

    /// Your own eps_hat as a score: `fn(chi_t, gamma_t) -> eps_hat`, all (n, d) arrays in
    /// whitened component space (gamma_t repeats the step's gamma on every row). `vjp`
    /// (optional), `vjp(chi_t, gamma_t, u) -> u^T d eps_hat / d chi_t` (n, d), makes the ODE
    /// likelihood and exact densities use your autograd instead of finite differences. With
    /// `float32=True` the arrays passed are float32 (the result may be either).
    #[staticmethod]
    #[pyo3(signature = (eps_hat, dim, vjp=None, float32=false, allow_nonfinite=false))]
    fn from_callable(
        py: Python<'_>,
        eps_hat: Py<PyAny>,
        dim: crate::Int<usize>,
        vjp: Option<Py<PyAny>>,
        float32: bool,
        allow_nonfinite: bool,
    ) -> PyResult<Self> {
        let dim = dim.0;
        if dim == 0 {
            return Err(value_error("dim: expected at least 1 component"));
        }
        if !eps_hat.bind(py).is_callable() {
            return Err(PyTypeError::new_err(
                "eps_hat: expected a callable fn(chi_t, gamma_t)",
            ));
        }
        if vjp.as_ref().is_some_and(|v| !v.bind(py).is_callable()) {
            return Err(PyTypeError::new_err(
                "vjp: expected a callable fn(chi_t, gamma_t, u)",
            ));
        }
        let c = Arc::new(CallableScore {
            eps_hat,
            vjp,
            d: dim,
            float32,
            allow_nonfinite,
            nonfinite: AtomicU64::new(0),
            error: Mutex::new(None),
        });
        Ok(PyScore {
            model: c.clone(),
            callable: Some(c),
        })
    }

    /// The score's name (gaussian, empirical, smoothed, els, mixture, callable).
    #[getter]
    fn name(&self) -> &'static str {
        self.model.name()
    }
    /// Number of components d.
    #[getter]
    fn dim(&self) -> usize {
        self.model.dim()
    }

    /// eps_hat(chi_t, gamma_t) for rows `chi_t` (n, d) and `gamma_t` (d,) shared by all rows
    /// or (n, d) one per row.
    fn eps_hat<'py>(
        &self,
        py: Python<'py>,
        chi_t: &Bound<'py, PyAny>,
        gamma_t: &Bound<'py, PyAny>,
    ) -> PyResult<Arr<'py>> {
        let d = self.model.dim();
        let x = Floats::new(chi_t, "chi_t")?;
        let n = x.rows(d, "chi_t")?;
        let g = Floats::new(gamma_t, "gamma_t")?;
        let gv = g.values();
        if gv.len() != d && gv.len() != n * d {
            return Err(value_error(format!(
                "gamma_t: expected {d} values or ({n}, {d}), got shape {:?}",
                g.shape()
            )));
        }
        let xv = x.values();
        let model = &self.model;
        let out = py.detach(|| {
            let mut out = vec![0.0; n * d];
            // rows sharing a gamma go together
            let mut start = 0;
            while start < n {
                let row_gamma = |k: usize| {
                    if gv.len() == d {
                        gv
                    } else {
                        &gv[k * d..(k + 1) * d]
                    }
                };
                let mut end = start + 1;
                while end < n && row_gamma(end) == row_gamma(start) {
                    end += 1;
                }
                let state = NoisingState::new(f64::NAN, row_gamma(start).to_vec(), vec![0.0; d]);
                model.eps_hat(
                    &xv[start * d..end * d],
                    &state,
                    None,
                    &mut out[start * d..end * d],
                );
                start = end;
            }
            out
        });
        if let Some(e) = self.callable().and_then(|c| c.take_error()) {
            return Err(e);
        }
        array(py, out, &[n, d])
    }

    fn __repr__(&self) -> String {
        format!(
            "Score(name={}, dim={})",
            self.model.name(),
            self.model.dim()
        )
    }
}

/// A Python callable as a [`ScoreModel`]. Its first exception is kept (and later calls return
/// NaN at once) until the caller takes it and raises it.
pub struct CallableScore {
    eps_hat: Py<PyAny>,
    vjp: Option<Py<PyAny>>,
    d: usize,
    float32: bool,
    allow_nonfinite: bool,
    nonfinite: AtomicU64,
    error: Mutex<Option<PyErr>>,
}

impl CallableScore {
    /// Calls of the callables since the last [`CallableScore::reset_count`] whose output held a
    /// NaN or an infinity.
    pub(crate) fn nonfinite_calls(&self) -> u64 {
        self.nonfinite.load(Ordering::Relaxed)
    }
    /// Starts the count of a new call from Python.
    pub(crate) fn reset_count(&self) {
        self.nonfinite.store(0, Ordering::Relaxed);
    }
    /// True once the callable has raised.
    pub(crate) fn failed(&self) -> bool {
        self.error.lock().expect("score lock").is_some()
    }
    /// The callable's exception, if it raised (cleared).
    pub(crate) fn take_error(&self) -> Option<PyErr> {
        self.error.lock().expect("score lock").take()
    }
    fn keep(&self, e: PyErr) {
        let mut slot = self.error.lock().expect("score lock");
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    /// An (n, d) argument array, float64 or float32.
    fn arg<'py>(&self, py: Python<'py>, values: &[f64], n: usize) -> PyResult<Bound<'py, PyAny>> {
        if self.float32 {
            let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
            Ok(numpy::PyArray1::from_vec(py, v)
                .reshape(vec![n, self.d])?
                .into_any())
        } else {
            Ok(array(py, values.to_vec(), &[n, self.d])?.into_any())
        }
    }

    /// Calls `f(chi_t, gamma_t, *extra)` and writes its (n, d) result into `out`.
    fn call(
        &self,
        f: &Py<PyAny>,
        what: &str,
        chi_t: &[f64],
        state: &NoisingState,
        extra: Option<&[f64]>,
        out: &mut [f64],
    ) -> PyResult<()> {
        let d = self.d;
        let n = chi_t.len() / d;
        Python::attach(|py| {
            let x = self.arg(py, chi_t, n)?;
            let mut g = Vec::with_capacity(n * d);
            for _ in 0..n {
                g.extend_from_slice(state.gamma());
            }
            let g = self.arg(py, &g, n)?;
            let r = match extra {
                None => f.bind(py).call1((x, g))?,
                Some(u) => f.bind(py).call1((x, g, self.arg(py, u, n)?))?,
            };
            let r = Floats::new(&r, what)?;
            // the shape, not only the count (regression, issue 34: (d, n) was taken as (n, d))
            if r.shape() != [n, d] {
                return Err(value_error(format!(
                    "{what}: the callable returned shape {:?}, expected ({n}, {d}) (one row \
                     per row of chi_t)",
                    r.shape()
                )));
            }
            let values = r.values();
            if let Some(i) = values.iter().position(|x| !x.is_finite()) {
                self.nonfinite.fetch_add(1, Ordering::Relaxed);
                if !self.allow_nonfinite {
                    return Err(value_error(format!(
                        "{what}: the callable returned {} at row {}, component {} (gamma_t \
                         of that row from {:.4} to {:.4}); pass allow_nonfinite=True to count \
                         such calls in the report instead",
                        values[i],
                        i / d,
                        i % d,
                        state.gamma().iter().copied().fold(f64::INFINITY, f64::min),
                        state
                            .gamma()
                            .iter()
                            .copied()
                            .fold(f64::NEG_INFINITY, f64::max),
                    )));
                }
            }
            out.copy_from_slice(values);
            Ok(())
        })
    }
}

impl ScoreModel for CallableScore {
    fn name(&self) -> &'static str {
        "callable"
    }
    fn dim(&self) -> usize {
        self.d
    }
    fn eps_hat(&self, chi_t: &[f64], state: &NoisingState, _: Option<&[usize]>, out: &mut [f64]) {
        if self.failed() {
            out.fill(f64::NAN);
            return;
        }
        if let Err(e) = self.call(&self.eps_hat, "eps_hat", chi_t, state, None, out) {
            self.keep(e);
            out.fill(f64::NAN);
        }
    }

    /// With a `vjp`: q_b = (u_b^T J_b) . v_b from one vector-Jacobian product per row.
    fn jacobian_form(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        u: &[f64],
        v: &[f64],
        eps_hat: &mut [f64],
        q: &mut [f64],
    ) {
        let Some(vjp) = &self.vjp else {
            return gud_core::score::default_jacobian_form(self, chi_t, state, u, v, eps_hat, q);
        };
        self.eps_hat(chi_t, state, None, eps_hat);
        let mut ut_j = vec![0.0; chi_t.len()];
        if self.failed() {
            q.fill(f64::NAN);
            return;
        }
        if let Err(e) = self.call(vjp, "vjp", chi_t, state, Some(u), &mut ut_j) {
            self.keep(e);
            q.fill(f64::NAN);
            return;
        }
        let d = self.d;
        for (b, qb) in q.iter_mut().enumerate() {
            *qb = ut_j[b * d..(b + 1) * d]
                .iter()
                .zip(&v[b * d..(b + 1) * d])
                .map(|(a, w)| a * w)
                .sum();
        }
    }

    /// With a `vjp`: the Jacobian's rows e_i^T J from d vector-Jacobian products, all rows of
    /// the batch in one call (the forward pass is the user's to share).
    fn eps_jacobian(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        eps_hat: &mut [f64],
        jac: &mut [f64],
    ) {
        let Some(vjp) = &self.vjp else {
            self.eps_hat(chi_t, state, None, eps_hat);
            return gud_core::score::finite_difference_jacobian(self, chi_t, state, jac);
        };
        self.eps_hat(chi_t, state, None, eps_hat);
        let d = self.d;
        let n = chi_t.len() / d;
        // row (b, i): chi_t of sample b with cotangent e_i
        let mut x = Vec::with_capacity(n * d * d);
        let mut u = vec![0.0; n * d * d];
        for b in 0..n {
            for i in 0..d {
                x.extend_from_slice(&chi_t[b * d..(b + 1) * d]);
                u[(b * d + i) * d + i] = 1.0;
            }
        }
        if self.failed() {
            jac.fill(f64::NAN);
            return;
        }
        if let Err(e) = self.call(vjp, "vjp", &x, state, Some(&u), jac) {
            self.keep(e);
            jac.fill(f64::NAN);
        }
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyScore>()
}
