use std::path::PathBuf;

/// Errors of the network crate; each names the file or the config field at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    /// The design space.
    Core(#[from] gud_core::Error),
    #[error("invalid `{field}`: {reason}")]
    /// A bad setting.
    Config {
        /// The config field.
        field: String,
        /// Why.
        reason: String,
    },
    #[error("checkpoint {}: {reason}", path.display())]
    /// A checkpoint that does not fit.
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    #[error("{}: {error}", path.display())]
    /// An OS error.
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    #[error(transparent)]
    /// A file format.
    File(#[from] gud_io::IoError),
    #[error("libtorch: {0}")]
    /// libtorch.
    Torch(#[from] tch::TchError),
}

/// The network crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn config(field: &str, reason: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }
    pub(crate) fn checkpoint(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
