//! The one error type of the core library.

use thiserror::Error;

/// Errors of the design-space core. Every variant names what was wrong and what was expected.
#[derive(Debug, Error)]
pub enum Error {
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    /// Two sizes or shapes that must agree do not.
    ShapeMismatch {
        /// What was checked.
        what: String,
        /// The size or shape expected.
        expected: String,
        /// The size or shape found.
        got: String,
    },
    #[error("basis `{basis}` cannot take shape {shape}: {reason}")]
    /// A basis that cannot represent fields of this shape.
    UnsupportedShape {
        /// The basis's config name.
        basis: &'static str,
        /// The shape asked for.
        shape: String,
        /// Why it cannot.
        reason: String,
    },
    #[error("non-finite value ({value}) in {what} at flat index {index}")]
    /// A NaN or infinity in data or a result.
    NonFinite {
        /// Where it was found.
        what: String,
        /// Its flat index.
        index: usize,
        /// The value.
        value: f64,
    },
    #[error("invalid parameter `{name}` = {value}: expected {expected}")]
    /// A parameter outside its valid range.
    InvalidParameter {
        /// The parameter's config name.
        name: String,
        /// Its value.
        value: String,
        /// What it must be.
        expected: String,
    },
    #[error("{what} needs {needs}, which the `{basis}` basis does not provide")]
    /// A design choice that needs component metadata the basis does not have (e.g. momenta).
    MissingMetadata {
        /// What needs it.
        what: String,
        /// The metadata needed.
        needs: &'static str,
        /// The basis's config name.
        basis: &'static str,
    },
    #[error("empty data set: {0}")]
    /// A data set without samples, or too few for the computation named.
    EmptyData(String),
    #[error("degenerate data: {0}")]
    /// Data that hold samples but cannot define what is asked (e.g. zero variance).
    DegenerateData(String),
    #[error("{what} needs {needs} of memory; this machine has {has}")]
    /// A size beyond this machine's memory, checked before allocating.
    TooLarge {
        /// What was to be allocated.
        what: String,
        /// The memory it needs.
        needs: String,
        /// The memory this machine has.
        has: String,
    },
    #[error("numerical failure in {what}: {reason}")]
    /// A numerical failure (no convergence, a singular matrix).
    Numerical {
        /// The computation.
        what: String,
        /// What went wrong.
        reason: String,
    },
}

/// The core's result.
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

/// Checks that a parameter is finite and lies in `[lo, hi]` (either bound may be infinite; a
/// lower bound of `f64::MIN_POSITIVE` means "> 0").
pub fn check_range(name: &str, value: f64, lo: f64, hi: f64) -> Result<f64> {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(value)
    } else {
        Err(Error::param(name, value, &describe_range(lo, hi)))
    }
}

/// "a finite number > 0", "a finite number in [0, 1]", ...: the range as a person writes it
/// (regression, issue 20: "[2.2250738585072014e-308, inf]").
pub fn describe_range(lo: f64, hi: f64) -> String {
    let positive = lo == f64::MIN_POSITIVE;
    match (positive, lo.is_finite(), hi.is_finite()) {
        (true, _, false) => "a finite number > 0".into(),
        (true, _, true) => format!("a finite number in (0, {hi}]"),
        (false, true, false) => format!("a finite number >= {lo}"),
        (false, false, true) => format!("a finite number <= {hi}"),
        (false, false, false) => "a finite number".into(),
        (false, true, true) => format!("a finite number in [{lo}, {hi}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_as_people_write_them() {
        let e = check_range("prior.m2", -1.0, f64::MIN_POSITIVE, f64::INFINITY)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a finite number > 0") && !e.contains("e-308"),
            "{e}"
        );
        assert_eq!(
            describe_range(f64::MIN_POSITIVE, 1.0),
            "a finite number in (0, 1]"
        );
        assert_eq!(describe_range(0.0, 1.0), "a finite number in [0, 1]");
        assert_eq!(describe_range(1.0, f64::INFINITY), "a finite number >= 1");
        assert!(check_range("x", f64::NAN, 0.0, 1.0).is_err());
    }
}
