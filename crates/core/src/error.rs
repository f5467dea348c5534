//! The one error type of the core library.

use thiserror::Error;

/// Errors of the design-space core. Every variant names what was wrong and what was expected.
#[derive(Debug, Error)]
pub enum Error {
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    ShapeMismatch {
        what: String,
        expected: String,
        got: String,
    },
    #[error("basis `{basis}` cannot take shape {shape}: {reason}")]
    UnsupportedShape {
        basis: &'static str,
        shape: String,
        reason: String,
    },
    #[error("non-finite value ({value}) in {what} at flat index {index}")]
    NonFinite {
        what: String,
        index: usize,
        value: f64,
    },
    #[error("invalid parameter `{name}` = {value}: expected {expected}")]
    InvalidParameter {
        name: String,
        value: String,
        expected: String,
    },
    #[error("{what} needs {needs}, which the `{basis}` basis does not provide")]
    MissingMetadata {
        what: String,
        needs: &'static str,
        basis: &'static str,
    },
    #[error("empty data set: {0}")]
    EmptyData(String),
    #[error("numerical failure in {what}: {reason}")]
    Numerical { what: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for an [`Error::InvalidParameter`].
    pub fn param(name: &str, value: impl ToString, expected: &str) -> Self {
        Error::InvalidParameter {
            name: name.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }
}

/// Checks that a parameter is finite and lies in `[lo, hi]` (either bound may be infinite).
pub fn check_range(name: &str, value: f64, lo: f64, hi: f64) -> Result<f64> {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(value)
    } else {
        Err(Error::param(
            name,
            value,
            &format!("a finite number in [{lo}, {hi}]"),
        ))
    }
}
