//! outcore's storage layer: bytes and Arrow IPC, nothing of frames. It speaks
//! bytes, keys and partition numbers only, so it could later serve other processes;
//! it never imports `outcore`.
//!
//! ```text
//!   task results ──► spill::SpillCache ──over budget──► <dir>/segment-N.spill
//!                      (LRU, one mutex)                  (records appended: magic,
//!                                                         length, CRC32, payload)
//!
//!   shuffle writes ─► shuffle::ShuffleService ──over budget──► a file per partition
//!   shuffle reads ◄─  (a buffer per output partition)  ◄── one piece at a time
//!
//!   RecordBatch ⇄ bytes: codec (Arrow IPC stream, LZ4-framed bodies)
//! ```
//!
//! - [`codec`]: `RecordBatch` ⇄ Arrow IPC stream bytes, the one format in which
//!   partitions leave memory; [`measure`]: the memory a batch holds, each
//!   allocation once (batches read back share their message's body).
//! - [`spill`]: the spill cache, which keeps task results under a byte budget and
//!   pages the least recently used to checksummed records in [`segments`], a
//!   few files of many records each.
//! - [`shuffle`]: the shuffle store, which collects pieces of bytes per output
//!   partition from many writers under a byte budget, flushing to a file per
//!   partition, and reads them back one piece at a time.
//!
//! - [`catalog`]: the manifest of a persisted dataset (schema, index,
//!   divisions, the query that made it), shared by readers without a lock.
//!
//! - [`workdir`]: the spill and shuffle folders, each with a lock file naming its
//!   process, and the sweep that removes the folders of killed runs.
//!
//! Every error names the file or folder involved ([`Error`]).

pub mod catalog;
pub mod codec;
mod error;
pub mod measure;
pub mod segments;
pub mod shuffle;
pub mod spill;
pub mod workdir;

pub use error::{Error, Result};
