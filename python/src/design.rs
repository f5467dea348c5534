//! `Design`: a fitted point of the design space (SPEC sections 1-3): basis U, prior S, mean mu,
//! component-wise schedule gamma_i(t), and the transforms between phi-space, components and
//! whitened components.

use crate::{array, section, to_py, value_error, Arr, Floats, PyMonitor};
use gud_core::config::{DesignConfig, SamplerConfig};
use gud_core::rng::{stream, Purpose};
use gud_core::{Dataset, Design, NoisingState, Shape};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::Path;
use std::sync::Arc;

/// Keys of `[design]` whose value may be given as the kind's name alone.
const DESIGN_SHORTHAND: &[&str] = &["basis", "prior", "schedule", "base"];

/// A design fitted to data: basis, prior, mean, schedule and analytic base (SPEC sections 1-4).
///
/// Build one with `Design.fit(data, design=None, **keys)` (keys of the `[design]` table, e.g.
/// `basis="fourier", prior="free", schedule={"kind": "rg"}`) or `Design.from_config(toml)`
/// (a whole gud config, TOML text or a file, with its `[data]`). It keeps its training data
/// for the data-dependent scores and the config's `[sampler]` as the samplers' defaults.
#[pyclass(module = "gud._gud", name = "Design", frozen)]
pub struct PyDesign {
    pub(crate) design: Arc<Design>,
    pub(crate) data: Option<Arc<Dataset>>,
    pub(crate) sampler: SamplerConfig,
    pub(crate) config: gud::config::Config,
    /// Whether the config's `[data]` made the training data (its held-out part is then known).
    pub(crate) from_data_config: bool,
    /// The whitened training set, computed once for `training_batch`.
    whitened: std::sync::OnceLock<Arc<Vec<f64>>>,
}

/// The shape of one sample from a data array's trailing axes: (n, c, h, w), (n, h, w) one
/// channel, (n, d) a one-channel row of d values.
fn sample_shape(shape: &[usize], what: &str) -> PyResult<Shape> {
    match shape {
        [_, c, h, w] => Ok(Shape::new(*c, *h, *w)),
        [_, h, w] => Ok(Shape::new(1, *h, *w)),
        [_, d] => Ok(Shape::new(1, 1, *d)),
        _ => Err(value_error(format!(
            "{what}: expected an array of shape (n, c, h, w), (n, h, w) or (n, d), got {shape:?}"
        ))),
    }
}

/// A data set from an array (`what` names it in errors).
pub(crate) fn dataset(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Dataset> {
    let x = Floats::new(obj, what)?;
    let shape = sample_shape(&x.shape(), what)?;
    Dataset::new(shape, x.values().to_vec()).map_err(|e| value_error(format!("{what}: {e}")))
}

impl PyDesign {
    fn new(design: Design, data: Option<Dataset>, config: gud::config::Config) -> Self {
        PyDesign {
            design: Arc::new(design),
            data: data.map(Arc::new),
            sampler: config.sampler.clone(),
            config,
            from_data_config: false,
            whitened: std::sync::OnceLock::new(),
        }
    }

    /// The held-out data of the config's `[data]` (`gud nll`'s test set: the test images with
    /// their quantisation, or an independent phi^4 reference set).
    pub(crate) fn test_data(&self, py: Python<'_>) -> PyResult<Dataset> {
        let data = self
            .data
            .as_ref()
            .filter(|_| self.from_data_config)
            .ok_or_else(|| {
                value_error(
                    "data=\"test\": this design was not fitted to a config's [data] \
                 (use Design.from_config, or pass the held-out samples as an array)",
                )
            })?;
        let monitor = PyMonitor::new(None);
        let r = py.detach(|| gud::data::test_data(&self.config, data, &monitor));
        monitor.finish(r)
    }

    /// The full shape (n, c, h, w) of n fields.
    pub(crate) fn fields_shape(&self, n: usize) -> Vec<usize> {
        let s = self.design.shape();
        vec![n, s.c, s.h, s.w]
    }

    /// The config of the sampler: the design's `[sampler]` with `table` and `overrides` on top.
    pub(crate) fn sampler_config(
        &self,
        table: Option<&Bound<'_, PyAny>>,
        overrides: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<SamplerConfig> {
        section(&self.sampler, table, overrides, "sampler", &[])
    }

    /// The sampler of exact proposals: as [`Self::sampler_config`], with the batch of
    /// [`gud::exact::proposals_per_batch`] (a batch given in `table` or `overrides` wins).
    pub(crate) fn proposal_config(
        &self,
        table: Option<&Bound<'_, PyAny>>,
        overrides: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<SamplerConfig> {
        let mut c = self.sampler_config(table, overrides)?;
        let given =
            table.is_some() || overrides.is_some_and(|k| k.contains("batch").unwrap_or(false));
        c.batch = gud::exact::proposals_per_batch(
            self.sampler.batch,
            given.then_some(c.batch),
            self.design.dim(),
        );
        Ok(c)
    }

    /// The whole config with `sampler` as its `[sampler]`.
    pub(crate) fn config_with(&self, sampler: SamplerConfig) -> gud::config::Config {
        gud::config::Config {
            sampler,
            ..self.config.clone()
        }
    }

    /// Per-time rows of a per-component quantity of the noising state: (d,) for a scalar t,
    /// (m, d) for m times.
    fn per_time<'py>(
        &self,
        t: &Bound<'py, PyAny>,
        f: impl Fn(&NoisingState) -> Vec<f64>,
    ) -> PyResult<Arr<'py>> {
        let py = t.py();
        let times = Floats::new(t, "t")?;
        let d = self.design.dim();
        let mut out = Vec::with_capacity(times.values().len() * d);
        for &ti in times.values() {
            if !ti.is_finite() {
                return Err(value_error(format!("t: expected finite times, got {ti}")));
            }
            out.extend(f(&self.design.state(ti)));
        }
        // a scalar t (numpy.ndim == 0) gives (d,), an array of times (..., d)
        let scalar: usize = py.import("numpy")?.call_method1("ndim", (t,))?.extract()?;
        let mut shape = if scalar == 0 { vec![] } else { times.shape() };
        shape.push(d);
        array(py, out, &shape)
    }

    /// Rows of `x` with d values each, transformed row by row by `f`, in the shape `out`.
    fn map_rows<'py>(
        &self,
        x: &Bound<'py, PyAny>,
        what: &str,
        fields_out: bool,
        f: impl Fn(&Design, &[f64], &mut [f64]) + Sync,
    ) -> PyResult<Arr<'py>> {
        let py = x.py();
        let d = self.design.dim();
        let x = Floats::new(x, what)?;
        let n = x.rows(d, what)?;
        let values = x.values();
        let design = &self.design;
        let out = py.detach(|| {
            use rayon::prelude::*;
            let mut out = vec![0.0; n * d];
            out.par_chunks_mut(d)
                .zip(values.par_chunks(d))
                .for_each(|(o, r)| f(design, r, o));
            out
        });
        let shape = if fields_out {
            self.fields_shape(n)
        } else {
            vec![n, d]
        };
        array(py, out, &shape)
    }
}

#[pymethods]
impl PyDesign {
    /// Fits a design to `data` ((n, c, h, w), (n, h, w) or (n, d)): `design` is the `[design]`
    /// table as a dict or TOML text, `keys` override its keys. Missing keys take the documented
    /// defaults (fourier basis, free-field prior, RG schedule, Gaussian base).
    #[staticmethod]
    #[pyo3(signature = (data, design=None, **keys))]
    fn fit(
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        design: Option<&Bound<'_, PyAny>>,
        keys: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let data = dataset(data, "data")?;
        let cfg: DesignConfig = section(
            &DesignConfig::default(),
            design,
            keys,
            "design",
            DESIGN_SHORTHAND,
        )?;
        let fitted = py
            .detach(|| Design::fit(&cfg, &data))
            .map_err(|e| value_error(format!("fitting the design: {e}")))?;
        let config = gud::config::Config {
            design: fitted.resolved_config().clone(),
            ..Default::default()
        };
        Ok(PyDesign::new(fitted, Some(data), config))
    }

    /// A design from a whole gud config (TOML text, or the path of a .toml file), fitted to the
    /// config's `[data]` (phi^4 HMC configurations are generated and cached as the binary does)
    /// or to `data` when given.
    #[staticmethod]
    #[pyo3(signature = (config, data=None))]
    fn from_config(
        py: Python<'_>,
        config: &str,
        data: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let path = Path::new(config);
        // TOML text has a line break or a key = value; anything else names a file
        let is_file = !config.contains('\n') && !config.contains('=');
        let (cfg, origin) = if is_file {
            (gud::config::load(path).map_err(to_py)?, config.to_string())
        } else {
            let origin = "the config text";
            let cfg = gud::config::parse(config, Path::new(origin)).map_err(to_py)?;
            (cfg, origin.to_string())
        };
        let monitor = PyMonitor::new(None);
        if let Some(data) = data {
            let data = dataset(data, "data")?;
            let fitted = py
                .detach(|| Design::fit(&cfg.design, &data))
                .map_err(|e| value_error(format!("fitting the design of {origin}: {e}")))?;
            let config = gud::config::Config {
                design: fitted.resolved_config().clone(),
                ..cfg
            };
            return Ok(PyDesign::new(fitted, Some(data), config));
        }
        let r = py.detach(|| gud::data::fit_config(cfg, &origin, None, &monitor));
        let f = monitor.finish(r)?;
        Ok(PyDesign {
            from_data_config: true,
            ..PyDesign::new(f.design, Some(f.data), f.config)
        })
    }

    /// The shape (c, h, w) of one sample.
    #[getter]
    fn shape(&self) -> (usize, usize, usize) {
        let s = self.design.shape();
        (s.c, s.h, s.w)
    }
    /// The number of components d = c h w.
    #[getter]
    fn dim(&self) -> usize {
        self.design.dim()
    }
    /// The basis' name (pixel, fourier, pca, haar).
    #[getter]
    fn basis(&self) -> &'static str {
        self.design.basis().name()
    }
    /// The mean mu (d,), phi-space.
    #[getter]
    fn mean<'py>(&self, py: Python<'py>) -> PyResult<Arr<'py>> {
        array(py, self.design.mean().to_vec(), &[self.design.dim()])
    }
    /// The prior scale S_i (d,): chi = S^-1 U (phi - mu).
    #[getter]
    fn scale<'py>(&self, py: Python<'py>) -> PyResult<Arr<'py>> {
        array(py, self.design.scale().to_vec(), &[self.design.dim()])
    }
    /// Sigma_i (d,): the data variance of each whitened component.
    #[getter]
    fn sigma_data<'py>(&self, py: Python<'py>) -> PyResult<Arr<'py>> {
        array(py, self.design.sigma_data().to_vec(), &[self.design.dim()])
    }
    /// Var(chi_tilde_i) (d,): the data variance of each component before the prior scaling.
    #[getter]
    fn component_variance<'py>(&self, py: Python<'py>) -> PyResult<Arr<'py>> {
        array(
            py,
            self.design.component_variance().to_vec(),
            &[self.design.dim()],
        )
    }
    /// The training data the design was fitted to, (n, c, h, w).
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> PyResult<Option<Arr<'py>>> {
        self.data
            .as_ref()
            .map(|ds| {
                let values: Vec<f64> = ds.samples().flatten().copied().collect();
                array(py, values, &self.fields_shape(ds.len()))
            })
            .transpose()
    }
    /// The resolved config as TOML (the fitted design, e.g. the prior's fitted mass, and the
    /// sampler defaults): writing it out and loading it reproduces the design.
    #[getter]
    fn config(&self) -> PyResult<String> {
        toml::to_string(&self.config).map_err(|e| value_error(e.to_string()))
    }

    /// gamma_i(t) = log(sigma_i^2 / alpha_i^2): (d,) for a scalar t, (m, d) for m times.
    fn gamma<'py>(&self, t: &Bound<'py, PyAny>) -> PyResult<Arr<'py>> {
        self.per_time(t, |s| s.gamma().to_vec())
    }
    /// d gamma_i / dt.
    fn dgamma_dt<'py>(&self, t: &Bound<'py, PyAny>) -> PyResult<Arr<'py>> {
        self.per_time(t, |s| s.dgamma_dt().to_vec())
    }
    /// alpha_i^2(t) = sigmoid(-gamma_i).
    fn alpha_sq<'py>(&self, t: &Bound<'py, PyAny>) -> PyResult<Arr<'py>> {
        self.per_time(t, |s| s.alpha_sq().to_vec())
    }
    /// sigma_i^2(t) = sigmoid(gamma_i).
    fn sigma_sq<'py>(&self, t: &Bound<'py, PyAny>) -> PyResult<Arr<'py>> {
        self.per_time(t, |s| s.sigma_sq().to_vec())
    }
    /// The signal-to-noise ratio SNR_i(t) = Sigma_i exp(-gamma_i) of each component (GUD eq. 17).
    fn snr<'py>(&self, t: &Bound<'py, PyAny>) -> PyResult<Arr<'py>> {
        let sd = self.design.sigma_data().to_vec();
        self.per_time(t, move |s| {
            (0..s.dim()).map(|i| s.log_snr_data(i, &sd).exp()).collect()
        })
    }

    /// chi_tilde = U (phi - mu): fields (n, ...) -> components (n, d).
    fn to_components<'py>(&self, phi: &Bound<'py, PyAny>) -> PyResult<Arr<'py>> {
        self.map_rows(phi, "phi", false, |g, x, o| {
            let centred: Vec<f64> = x.iter().zip(g.mean()).map(|(a, m)| a - m).collect();
            g.basis().forward(&centred, o);
        })
    }
    /// phi = U^T chi_tilde + mu: components (n, d) -> fields (n, c, h, w).
    fn from_components<'py>(&self, comp: &Bound<'py, PyAny>) -> PyResult<Arr<'py>> {
        self.map_rows(comp, "components", true, |g, x, o| {
            g.basis().inverse(x, o);
            o.iter_mut().zip(g.mean()).for_each(|(p, m)| *p += m);
        })
    }
    /// chi = S^-1 chi_tilde: components (n, d) -> whitened (n, d).
    fn whiten<'py>(&self, comp: &Bound<'py, PyAny>) -> PyResult<Arr<'py>> {
        self.map_rows(comp, "components", false, |g, x, o| {
            for ((o, x), s) in o.iter_mut().zip(x).zip(g.scale()) {
                *o = x / s;
            }
        })
    }
    /// chi_tilde = S chi: whitened (n, d) -> components (n, d).
    fn unwhiten<'py>(&self, chi: &Bound<'py, PyAny>) -> PyResult<Arr<'py>> {
        self.map_rows(chi, "chi", false, |g, x, o| {
            for ((o, x), s) in o.iter_mut().zip(x).zip(g.scale()) {
                *o = x * s;
            }
        })
    }
    /// chi = S^-1 U (phi - mu): fields (n, ...) -> whitened components (n, d).
    fn to_whitened<'py>(&self, phi: &Bound<'py, PyAny>) -> PyResult<Arr<'py>> {
        self.map_rows(phi, "phi", false, |g, x, o| {
            let w = g
                .field_to_whitened(&gud_core::Field(x.to_vec()))
                .expect("length checked");
            o.copy_from_slice(w.as_slice());
        })
    }
    /// phi = U^T S chi + mu: whitened components (n, d) -> fields (n, c, h, w).
    fn to_fields<'py>(&self, chi: &Bound<'py, PyAny>) -> PyResult<Arr<'py>> {
        self.map_rows(chi, "chi", true, |g, x, o| {
            o.copy_from_slice(&g.whitened_batch_to_fields(x));
        })
    }

    /// The forward process (SPEC section 2): chi_t = alpha_t chi0 + sigma_t eps for whitened
    /// rows `chi0` (n, d) at time `t` (a scalar, or one time per row), with eps ~ N(0, I) of
    /// row k drawn from the stream (seed, user noise, first + k). Returns (chi_t, eps).
    #[pyo3(signature = (chi0, t, seed=crate::Int(0), first=crate::Int(0)))]
    fn noise<'py>(
        &self,
        py: Python<'py>,
        chi0: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
        seed: crate::Int<u64>,
        first: crate::Int<u64>,
    ) -> PyResult<(Arr<'py>, Arr<'py>)> {
        let seed = seed.0;
        let first = first.0;
        let d = self.design.dim();
        let x = Floats::new(chi0, "chi0")?;
        let n = x.rows(d, "chi0")?;
        let times = Floats::new(t, "t")?;
        let tv = times.values();
        if tv.len() != 1 && tv.len() != n {
            return Err(value_error(format!(
                "t: expected one time or one per row ({n}), got {}",
                tv.len()
            )));
        }
        if let Some(bad) = tv.iter().find(|t| !t.is_finite()) {
            return Err(value_error(format!("t: expected finite times, got {bad}")));
        }
        if first.checked_add(n as u64).is_none() {
            return Err(value_error(format!(
                "first: {first} + {n} rows must stay below 2^64"
            )));
        }
        let (values, design) = (x.values(), &self.design);
        let (chi_t, eps) = py.detach(|| {
            let (mut chi_t, mut eps) = (vec![0.0; n * d], vec![0.0; n * d]);
            let mut state = design.state(tv[0]);
            for k in 0..n {
                if tv.len() > 1 && k > 0 {
                    state = design.state(tv[k]);
                }
                let mut rng = stream(seed, Purpose::UserNoise, first + k as u64);
                let e = &mut eps[k * d..(k + 1) * d];
                gud_core::sampler::draw_prior(&mut rng, e);
                let x = gud_core::process::forward_with_noise(
                    &state,
                    &gud_core::Whitened(values[k * d..(k + 1) * d].to_vec()),
                    e,
                );
                chi_t[k * d..(k + 1) * d].copy_from_slice(x.as_slice());
            }
            (chi_t, eps)
        });
        Ok((array(py, chi_t, &[n, d])?, array(py, eps, &[n, d])?))
    }

    /// A training batch for your own network (the denoising objective, SPEC section 2): rows
    /// of the design's whitened training data drawn uniformly, t stratified over the
    /// schedule's range, eps ~ N(0, I), chi_t = alpha chi0 + sigma eps, all from the stream
    /// (seed, user batch, step). Returns a dict of chi_t (B, d), gamma_t (B, d), eps (B, d),
    /// t (B,), index (B,) — regress eps on (chi_t, gamma_t).
    #[pyo3(signature = (batch, step, seed=crate::Int(0)))]
    fn training_batch<'py>(
        &self,
        py: Python<'py>,
        batch: crate::Int<usize>,
        step: crate::Int<u64>,
        seed: crate::Int<u64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let batch = batch.0;
        let step = step.0;
        let seed = seed.0;
        let data = self.data.as_ref().ok_or_else(|| {
            value_error("training_batch: this design has no training data (fit it to data)")
        })?;
        if batch == 0 {
            return Err(value_error("batch: expected at least 1"));
        }
        let d = self.design.dim();
        gud_core::memory::check_alloc(&format!("a batch of {batch}"), &[4, batch, d], 8)
            .map_err(to_py)?;
        let design = &self.design;
        let nb = py.detach(|| {
            // the whitened set once per design, not once per batch (60000 images: 0.1 s)
            let chi0 = match self.whitened.get() {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(gud_core::score::whitened_training_set(design, data)?);
                    self.whitened.get_or_init(|| c).clone()
                }
            };
            let mut rng = stream(seed, Purpose::UserBatch, step);
            Ok::<_, gud_core::Error>(gud_core::process::noised_batch(
                design.schedule(),
                &chi0,
                batch,
                &mut rng,
            ))
        });
        let nb = nb.map_err(to_py)?;
        let out = PyDict::new(py);
        out.set_item("chi_t", array(py, nb.chi_t, &[batch, d])?)?;
        out.set_item("gamma_t", array(py, nb.gamma, &[batch, d])?)?;
        out.set_item("eps", array(py, nb.eps, &[batch, d])?)?;
        out.set_item("t", array(py, nb.t, &[batch])?)?;
        out.set_item("index", nb.index)?;
        Ok(out)
    }

    fn __repr__(&self) -> String {
        let c = self.design.resolved_config();
        format!(
            "Design(shape={}, basis={}, prior={}, schedule={})",
            self.design.shape(),
            self.design.basis().name(),
            serde_json::to_string(&c.prior).unwrap_or_default(),
            serde_json::to_string(&c.schedule).unwrap_or_default(),
        )
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDesign>()
}
