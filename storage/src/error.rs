//! The storage layer's errors.

use std::path::PathBuf;

/// The result type of storage calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a storage file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Bytes that should hold Arrow IPC do not: truncated or corrupt.
    #[error("corrupt stored batch: {0}")]
    Corrupt(String),
}
