//! # gud-io: files and figures
//!
//! NumPy `.npy` arrays ([`npy`]), image data sets (IDX, PNG folders: [`images`]), TOML configs ([`config`]), atomic writes ([`atomic`]) and
//! PNG figures ([`figures`]). Every error names the file and what was expected.

#![warn(missing_docs)]

pub mod atomic;
pub mod config;
pub mod figures;
pub mod images;
pub mod npy;

use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum IoError {
    // the OS error is part of the message, not a `source` (that printed its text twice)
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path}: {error}")]
    Core {
        path: PathBuf,
        error: gud_core::Error,
    },
    #[error("figure {path}: {reason}")]
    Figure { path: PathBuf, reason: String },
}

pub type Result<T, E = IoError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IoError + '_ {
    move |error| IoError::Io {
        path: path.to_path_buf(),
        error,
    }
}

pub(crate) fn format_err(path: &Path, reason: impl Into<String>) -> IoError {
    IoError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}
