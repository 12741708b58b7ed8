//! outcore's storage layer: bytes and Arrow IPC, nothing of frames.
//!
//! - [`codec`]: `RecordBatch` ⇄ Arrow IPC stream bytes, the one format in which
//!   partitions leave memory (for the shuffle store and the spill cache).
//! - [`spill`]: the spill cache, which keeps task results under a byte budget and
//!   pages the least recently used to checksummed files.

pub mod codec;
mod error;
pub mod spill;

pub use error::{Error, Result};
