//! Reading files into partitions: glob expansion ([`glob`]), byte-range blocks aligned
//! to line ends ([`blocks`]), schema inference that samples several files ([`infer`]),
//! and the CSV block decoder ([`csv`]).
//!
//! ```text
//!   "data/*.csv" ─glob─► files ─headers, sizes─► blocks (≈ blocksize each, one per partition)
//!                          └─sample first/middle/last files─► schema
//!   task i: read block i's bytes (whole lines) ─BlockDecoder─► RecordBatch (projected columns)
//! ```

pub mod blocks;
pub mod csv;
pub mod glob;
pub mod infer;
pub mod tokenize;
pub mod write;

pub use self::csv::{CsvOptions, CsvSource};
