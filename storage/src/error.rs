//! The storage layer's errors. Every error that concerns a file or folder carries its
//! path, so the person who has to act (free disk, fix permissions, report a bug)
//! knows where to look.

use std::path::PathBuf;

/// The result type of storage calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a storage file or folder failed (sled errors land here too,
    /// naming the database folder).
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's (or sled's) error.
        source: std::io::Error,
    },
    /// Bytes that should hold Arrow IPC do not: truncated or corrupt.
    #[error("corrupt stored batch: {0}")]
    Corrupt(String),
    /// A spill file failed its checks (magic, length, checksum) or its payload did
    /// not decode; its bytes are never returned as data.
    #[error("{}: corrupt spill file: {reason}", .path.display())]
    CorruptFile {
        /// The spill file.
        path: PathBuf,
        /// Which check failed.
        reason: String,
    },
    /// A shuffle partition's pieces failed their checks when read back (a piece
    /// whose checksum does not match, a chunk missing from the store); its bytes are
    /// never returned as data.
    #[error("{}: shuffle partition {partition}: {reason}", .dir.display())]
    CorruptShuffle {
        /// The shuffle store's folder.
        dir: PathBuf,
        /// The output partition being read.
        partition: usize,
        /// Which check failed.
        reason: String,
    },
    /// The caller passed an argument the store cannot serve (a partition out of
    /// range); this is a bug in the caller.
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
