//! # gud-io: files and figures
//!
//! NumPy `.npy` arrays ([`npy`]), image data sets (IDX, PNG folders: [`images`]), TOML configs ([`config`]), atomic writes ([`atomic`]) and
//! PNG figures ([`figures`]). Every error names the file and what was expected.
//!
//! ```
//! use gud_core::{Dataset, Shape};
//! let path = std::env::temp_dir().join(format!("gud-io-doc-{}.npy", std::process::id()));
//! let data = Dataset::new(Shape::lattice(2), vec![0.5, -1.0, 2.0, 0.25])?;
//! gud_io::npy::write_dataset(&path, &data)?;           // float32 (N, H, W)
//! let back = gud_io::npy::read_dataset(&path)?;
//! assert_eq!(back, data);
//! # std::fs::remove_file(&path).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod atomic;
pub mod config;
pub mod figures;
pub mod images;
pub mod npy;
pub mod npz;

use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
/// Errors of file formats and figures; each names the file.
pub enum IoError {
    // the OS error is part of the message, not a `source` (that printed its text twice)
    #[error("{path}: {error}")]
    /// An OS error.
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    #[error("{path}: {reason}")]
    /// A file whose format is wrong.
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    #[error("{path}: {error}")]
    /// A file whose contents the core rejects.
    Core {
        /// The file.
        path: PathBuf,
        /// The core's error.
        error: gud_core::Error,
    },
    #[error("figure {path}: {reason}")]
    /// A figure that could not be drawn.
    Figure {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The io crate's result.
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
