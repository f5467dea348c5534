//! The extension module `gud._gud`: gud's pure-Rust parts (gud-core, gud-phi4 and the `gud`
//! library without the network) for numpy. The Python package `gud` (python/gud) re-exports it
//! with a thin layer of keyword defaults; docs/python.md is the guide.
//!
//! Conventions: arrays in are anything `numpy.ascontiguousarray(x, dtype=float64)` accepts
//! (float32 is converted, a C-contiguous float64 array is read in place); arrays out are
//! float64 and own their memory (no copy on the way out). Long calls release the GIL and check
//! for KeyboardInterrupt between batches. Errors carry the binary's messages: ValueError for
//! values, OSError for files, KeyboardInterrupt for a stop.

use numpy::{PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::sync::Mutex;

mod design;
mod phi4;
mod proposal;
mod sampling;
mod score;
mod target;

/// The full message of an error and its causes, "context: cause: cause", as the binary prints.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.ends_with(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

/// True when the error (through any context) is a failed file operation.
fn is_file_error(e: &gud::Error) -> bool {
    match e {
        gud::Error::Io(gud_io::IoError::Io { .. }) => true,
        gud::Error::Context { source, .. } => is_file_error(source),
        _ => false,
    }
}

/// A gud error as a Python exception: KeyboardInterrupt for a stop, OSError for a file,
/// ValueError otherwise; the message is the binary's.
pub(crate) fn to_py(e: impl Into<gud::Error>) -> PyErr {
    let e: gud::Error = e.into();
    let text = chain(&e);
    if e.interrupted().is_some() {
        PyKeyboardInterrupt::new_err(text)
    } else if is_file_error(&e) {
        PyOSError::new_err(text)
    } else {
        PyValueError::new_err(text)
    }
}

/// A ValueError with `text`.
pub(crate) fn value_error(text: impl Into<String>) -> PyErr {
    PyValueError::new_err(text.into())
}

/// A float64 C-contiguous view of an array-like (converted only when it is not one already).
pub(crate) struct Floats<'py> {
    array: PyReadonlyArrayDyn<'py, f64>,
}

impl<'py> Floats<'py> {
    /// Reads `obj` (`what` names it in errors).
    pub(crate) fn new(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        let py = obj.py();
        let np = py.import("numpy")?;
        check_dtype(&np, obj, what)?;
        let converted = np
            .getattr("ascontiguousarray")?
            .call((obj,), Some(&[("dtype", "float64")].into_py_dict_str(py)?))
            .map_err(|e| value_error(format!("{what}: expected an array of numbers ({e})")))?;
        let array = converted
            .cast_into::<PyArrayDyn<f64>>()
            .map_err(|_| value_error(format!("{what}: expected a float array")))?
            .readonly();
        Ok(Floats { array })
    }
    /// The values, in C order.
    pub(crate) fn values(&self) -> &[f64] {
        self.array.as_slice().expect("C-contiguous by construction")
    }
    /// The shape.
    pub(crate) fn shape(&self) -> Vec<usize> {
        self.array.shape().to_vec()
    }
    /// Rows of `d` values: the leading axis is the batch and the rest must hold d values (or a
    /// 1-d array of exactly d values, one row).
    pub(crate) fn rows(&self, d: usize, what: &str) -> PyResult<usize> {
        let shape = self.shape();
        let total: usize = shape.iter().product();
        let rows = match shape.len() {
            0 => None,
            1 if shape[0] == d => Some(1),
            1 => None,
            _ if shape[1..].iter().product::<usize>() == d => Some(shape[0]),
            _ => None,
        };
        rows.filter(|_| total.is_multiple_of(d.max(1)))
            .ok_or_else(|| {
                value_error(format!(
                    "{what}: expected a batch of samples with {d} values each (shape (n, {d}) or \
                 (n, ...) with {d} values per sample), got shape {shape:?}"
                ))
            })
    }
}

/// Refuses what float64 conversion would change silently (regression, issue 34: a complex
/// array lost its imaginary part with only numpy's warning): complex, bool, object, strings
/// and dates, and integer *arrays* (a typed array of integers is not a field of numbers; a
/// plain Python list or number of integers is). A TypeError naming the argument.
fn check_dtype(np: &Bound<'_, PyModule>, obj: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
    let typed = obj.hasattr("dtype")?;
    let dtype = if typed {
        obj.getattr("dtype")?
    } else {
        match np.getattr("asarray")?.call1((obj,)) {
            Ok(a) => a.getattr("dtype")?,
            // ragged lists and the like: numpy's own message, named
            Err(e) => {
                return Err(PyTypeError::new_err(format!(
                    "{what}: expected an array of numbers ({e})"
                )))
            }
        }
    };
    // a dtype attribute that is not numpy's (e.g. torch.float32) is judged by numpy's view
    let kind: String = match dtype.getattr("kind") {
        Ok(k) => k.extract()?,
        Err(_) => np
            .getattr("asarray")?
            .call1((obj,))
            .and_then(|a| a.getattr("dtype")?.getattr("kind")?.extract())
            .map_err(|e| {
                PyTypeError::new_err(format!("{what}: expected an array of numbers ({e})"))
            })?,
    };
    let name = dtype.str()?.to_string();
    let reason = match kind.as_str() {
        "f" => return Ok(()),
        "i" | "u" if !typed => return Ok(()),
        "i" | "u" => "an integer array: convert it with .astype(numpy.float64) if the integers are the values you mean",
        "c" => "complex values: their imaginary part would be dropped",
        "b" => "booleans, not numbers",
        _ => "not numbers",
    };
    Err(PyTypeError::new_err(format!(
        "{what}: expected a float array (float32 or float64), got dtype {name} ({reason})"
    )))
}

/// A count, index or seed argument: a non-negative integer of `T`'s range. A negative or huge
/// Python int is a ValueError (numpy's choice for `zeros(-1)`), not pyo3's OverflowError; the
/// argument's name comes with the exception as its note (regression, issue 34).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Int<T>(pub T);

macro_rules! int_argument {
    ($t:ty) => {
        impl<'a, 'py> FromPyObject<'a, 'py> for Int<$t> {
            type Error = PyErr;
            fn extract(obj: pyo3::Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
                match obj.extract::<$t>() {
                    Ok(v) => Ok(Int(v)),
                    Err(e) if e.is_instance_of::<pyo3::exceptions::PyOverflowError>(obj.py()) => {
                        Err(PyValueError::new_err(format!(
                            "expected an integer from 0 to {}, got {}",
                            <$t>::MAX,
                            obj.repr().map_or("?".into(), |r| r.to_string())
                        )))
                    }
                    Err(e) => Err(e),
                }
            }
        }
    };
}
int_argument!(usize);
int_argument!(u64);

/// `[("k", v)]` as a keyword dict.
trait IntoPyDictStr {
    fn into_py_dict_str<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>>;
}
impl IntoPyDictStr for &[(&str, &str)] {
    fn into_py_dict_str<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self {
            d.set_item(k, v)?;
        }
        Ok(d)
    }
}

/// A float64 array handed to Python.
pub(crate) type Arr<'py> = Bound<'py, PyArrayDyn<f64>>;

/// A float64 array of `shape` owning `values` (no copy).
pub(crate) fn array<'py>(py: Python<'py>, values: Vec<f64>, shape: &[usize]) -> PyResult<Arr<'py>> {
    PyArray1::from_vec(py, values).reshape(shape.to_vec())
}

/// A Python value (dict, list, str, int, float, bool) as TOML, for the config structs
/// (`what` names the key in errors).
pub(crate) fn to_toml(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<toml::Value> {
    if obj.is_instance_of::<PyBool>() {
        return Ok(toml::Value::Boolean(obj.extract()?));
    }
    if obj.is_instance_of::<PyInt>() {
        let v: i64 = obj
            .extract()
            .map_err(|_| value_error(format!("{what}: integer out of range")))?;
        return Ok(toml::Value::Integer(v));
    }
    if obj.is_instance_of::<PyFloat>() {
        return Ok(toml::Value::Float(obj.extract()?));
    }
    if obj.is_instance_of::<PyString>() {
        return Ok(toml::Value::String(obj.extract()?));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut t = toml::Table::new();
        for (k, v) in d.iter() {
            let k: String = k
                .extract()
                .map_err(|_| value_error(format!("{what}: keys must be strings")))?;
            let v = to_toml(&v, &format!("{what}.{k}"))?;
            t.insert(k, v);
        }
        return Ok(toml::Value::Table(t));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for (i, v) in obj.try_iter()?.enumerate() {
            out.push(to_toml(&v?, &format!("{what}[{i}]"))?);
        }
        return Ok(toml::Value::Array(out));
    }
    // numpy scalars and anything else that is a number
    if let Ok(v) = obj.extract::<f64>() {
        return Ok(toml::Value::Float(v));
    }
    Err(value_error(format!(
        "{what}: expected a dict, list, string, number or bool, got {}",
        obj.get_type().name()?
    )))
}

/// A config section: the defaults of `base` with the keys of `table` (a dict or TOML text, may
/// be None) and of `overrides` on top, checked by the section's own deserialiser.
pub(crate) fn section<T: serde::Serialize + serde::de::DeserializeOwned>(
    base: &T,
    table: Option<&Bound<'_, PyAny>>,
    overrides: Option<&Bound<'_, PyDict>>,
    what: &str,
    shorthand: &[&str],
) -> PyResult<T> {
    let mut t = toml::Table::try_from(base).map_err(|e| value_error(format!("{what}: {e}")))?;
    let defaults = t.clone();
    let mut touched: Vec<String> = Vec::new();
    let mut layers = Vec::new();
    if let Some(obj) = table.filter(|o| !o.is_none()) {
        if let Ok(text) = obj.extract::<String>() {
            layers.push(section_text(&t, &text, what)?);
        } else {
            match to_toml(obj, what)? {
                toml::Value::Table(parsed) => layers.push(parsed),
                _ => return Err(value_error(format!("{what}: expected a dict or TOML text"))),
            }
        }
    }
    if let Some(kw) = overrides {
        if let toml::Value::Table(parsed) = to_toml(kw.as_any(), what)? {
            layers.push(parsed);
        }
    }
    for layer in layers {
        for (k, v) in layer {
            if !touched.contains(&k) {
                touched.push(k.clone());
            }
            // `basis = "fourier"` is short for `basis = { kind = "fourier" }`
            let v = match v {
                toml::Value::String(s) if shorthand.contains(&k.as_str()) => {
                    let mut kind = toml::Table::new();
                    kind.insert("kind".into(), toml::Value::String(s));
                    toml::Value::Table(kind)
                }
                v => v,
            };
            // a new kind replaces the whole table (its keys belong to the old kind)
            let replace = matches!((&v, t.get(&k)), (toml::Value::Table(n), Some(toml::Value::Table(o)))
                if n.get("kind").is_some() && n.get("kind") != o.get("kind"));
            match (t.get_mut(&k), v) {
                (Some(toml::Value::Table(old)), toml::Value::Table(new)) if !replace => {
                    for (kk, vv) in new {
                        old.insert(kk, vv);
                    }
                }
                (_, v) => {
                    t.insert(k, v);
                }
            }
        }
    }
    let merged = toml::Value::Table(t.clone()).try_into::<T>();
    merged.map_err(|e| {
        // name the key: the first one that fails on its own over the defaults
        let culprit = touched.iter().find(|k| {
            let mut one = defaults.clone();
            if let Some(v) = t.get(k.as_str()) {
                one.insert(k.to_string(), v.clone());
            }
            toml::Value::Table(one).try_into::<T>().is_err()
        });
        let at = culprit.map_or(what.to_string(), |k| format!("{what}.{k}"));
        value_error(format!("{at}: {}", e.message().trim()))
    })
}

/// A section given as a string: TOML text (`key = value` lines), or, for a section with a
/// `kind`, a kind's name alone (`sampler="exp"`). Anything else names the section and its keys
/// (regression, issue 34: `sampler="nope"` and `Design.fit(x, "matched")` said "key with no
/// value, expected `=`").
fn section_text(base: &toml::Table, text: &str, what: &str) -> PyResult<toml::Table> {
    if text.contains('=') || text.contains('\n') {
        return toml::from_str(text)
            .map_err(|e| value_error(format!("{what}: not valid TOML: {}", e.message().trim())));
    }
    if base.contains_key("kind") {
        let mut kind = toml::Table::new();
        kind.insert("kind".into(), toml::Value::String(text.trim().to_string()));
        return Ok(kind);
    }
    let keys: Vec<&str> = base.keys().map(String::as_str).collect();
    Err(value_error(format!(
        "{what}: expected a dict or TOML text with the keys {}, got the string {text:?}; a \
         single choice goes by keyword (e.g. prior=\"matched\")",
        keys.join(", ")
    )))
}

/// The monitor of a Python call: stops at a pending KeyboardInterrupt (or another signal
/// handler's exception) and at a failed Python callable, and keeps the exception to raise.
pub(crate) struct PyMonitor<'a> {
    error: Mutex<Option<PyErr>>,
    callable: Option<&'a score::CallableScore>,
}

impl<'a> PyMonitor<'a> {
    pub(crate) fn new(callable: Option<&'a score::CallableScore>) -> Self {
        if let Some(c) = callable {
            c.reset_count();
        }
        PyMonitor {
            error: Mutex::new(None),
            callable,
        }
    }
    /// A report (a dict) with `callable_nonfinite_calls`, the calls of a callable score whose
    /// output held a NaN or an infinity (allowed with `allow_nonfinite=True`), when the score
    /// is a callable.
    pub(crate) fn report<'py>(
        &self,
        py: Python<'py>,
        report: &impl serde::Serialize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let dict = sampling::to_dict(py, report)?;
        if let Some(c) = self.callable {
            dict.set_item("callable_nonfinite_calls", c.nonfinite_calls())?;
        }
        Ok(dict)
    }

    /// The result of a call under this monitor: a callable's exception first, then a signal's,
    /// then the call's own error.
    pub(crate) fn finish<T>(&self, r: gud::Result<T>) -> PyResult<T> {
        if let Some(e) = self.callable.and_then(|c| c.take_error()) {
            return Err(e);
        }
        if let Some(e) = self.error.lock().expect("monitor lock").take() {
            return Err(e);
        }
        r.map_err(to_py)
    }
}

impl gud_core::monitor::Monitor for PyMonitor<'_> {
    fn should_stop(&self) -> bool {
        if self.callable.is_some_and(|c| c.failed()) {
            return true;
        }
        let mut slot = self.error.lock().expect("monitor lock");
        if slot.is_some() {
            return true;
        }
        if let Err(e) = Python::attach(|py| py.check_signals()) {
            *slot = Some(e);
            return true;
        }
        false
    }
}

/// Sets the number of threads of gud's parallel work (rayon), once per process and before any
/// parallel call; later calls are ignored. Default: RAYON_NUM_THREADS, OMP_NUM_THREADS, else
/// all cores.
#[pyfunction]
fn set_threads(threads: usize) -> PyResult<()> {
    gud::threads::init(Some(threads)).map_err(to_py)
}

/// gud's Rust core for Python.
#[pymodule]
fn _gud(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    design::register(m)?;
    score::register(m)?;
    sampling::register(m)?;
    target::register(m)?;
    phi4::register(m)?;
    Ok(())
}
