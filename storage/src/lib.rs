//! outcore's storage layer: bytes and Arrow IPC, nothing of frames.
//!
//! - [`codec`]: `RecordBatch` ⇄ Arrow IPC stream bytes, the one format in which
//!   partitions leave memory (for the shuffle store and the spill cache).
//!
//! The sled-backed shuffle store and the spill cache will live here (issue #4); they
//! speak bytes and partition numbers only, so they can later serve other processes.

pub mod codec;
mod error;

pub use error::{Error, Result};
