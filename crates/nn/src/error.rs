use std::path::PathBuf;

/// Errors of the network crate; each names the file or the config field at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] gud_core::Error),
    #[error("invalid `{field}`: {reason}")]
    Config { field: String, reason: String },
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] gud_io::IoError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

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
