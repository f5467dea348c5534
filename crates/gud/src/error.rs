//! The error of the pipeline: the typed errors of the crates below, a stop request
//! ([`Interrupted`]), a failed check of the pipeline's own, and context around any of them.

use gud_core::monitor::Interrupted;

/// Errors of the pipeline. [`Error::Context`] displays its own text only and names the cause
/// as its `source`, so that a report of the whole chain (`anyhow`'s `{:#}`) reads
/// "context: cause".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The design-space mathematics.
    #[error(transparent)]
    Core(#[from] gud_core::Error),
    /// A file: npy, IDX, TOML, PNG.
    #[error(transparent)]
    Io(#[from] gud_io::IoError),
    /// Lattice phi^4.
    #[error(transparent)]
    Phi4(gud_phi4::Phi4Error),
    /// The network (its errors, from the registered [`crate::network::Network`]).
    #[error("{0}")]
    Network(Box<dyn std::error::Error + Send + Sync>),
    /// Something needs the network and none is registered ([`crate::network::register`]).
    #[error(
        "{0} needs the neural network (libtorch), which this program does not include: use \
         the `gud` binary built with the default cargo features (`make setup` installs \
         libtorch), or register `gud-torch` (gud_torch::register()) in a program of your own"
    )]
    NoNetwork(String),
    /// JSON of a report or a metrics line.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A long loop stopped because its monitor asked it to, after saving its last consistent
    /// state.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    /// A check of the pipeline's own failed; the text names the setting and what was expected.
    #[error("{0}")]
    Invalid(String),
    /// What was being done when `source` failed.
    #[error("{context}")]
    Context {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: Box<Error>,
    },
}

/// The pipeline's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<gud_phi4::Phi4Error> for Error {
    fn from(e: gud_phi4::Phi4Error) -> Self {
        match e {
            gud_phi4::Phi4Error::Interrupted => {
                Error::Interrupted(Interrupted::new("nothing was written"))
            }
            e => Error::Phi4(e),
        }
    }
}

impl Error {
    /// The network's error `e`.
    pub fn network(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Network(Box::new(e))
    }

    /// What needed the network, if this error (through any context) is [`Error::NoNetwork`].
    pub fn no_network(&self) -> Option<&str> {
        match self {
            Error::NoNetwork(what) => Some(what),
            Error::Context { source, .. } => source.no_network(),
            _ => None,
        }
    }

    /// The stop request inside this error (through any context), if it is one.
    pub fn interrupted(&self) -> Option<&Interrupted> {
        match self {
            Error::Interrupted(i) => Some(i),
            Error::Context { source, .. } => source.interrupted(),
            _ => None,
        }
    }
}

/// Adds what was being done to an error, as `anyhow::Context` does.
pub trait Context<T> {
    /// Wraps the error with `context`.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Wraps the error with the text `f` makes (only on failure).
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: context.into(),
            source: Box::new(e.into()),
        })
    }

    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: f().into(),
            source: Box::new(e.into()),
        })
    }
}

/// Returns an [`Error::Invalid`] with a formatted message.
#[macro_export]
#[doc(hidden)]
macro_rules! __bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($arg)*)))
    };
}
pub use crate::__bail as bail;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_displays_itself_and_keeps_the_cause_and_the_stop_request() {
        let e: Result<()> = Err(Error::Interrupted(Interrupted::new("kept"))).context("training");
        let e = e.unwrap_err();
        assert_eq!(e.to_string(), "training");
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert_eq!(cause, "interrupted: kept");
        assert_eq!(e.interrupted(), Some(&Interrupted::new("kept")));
        let p: Error = gud_phi4::Phi4Error::Interrupted.into();
        assert!(p.interrupted().is_some());
    }
}
