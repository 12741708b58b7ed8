//! Reading files into partitions: glob expansion ([`glob`]), byte-range blocks aligned
//! to line ends ([`blocks`]), schema inference that samples several files ([`infer`]),
//! the CSV block decoder ([`csv`]), JSON-lines and text sources ([`json`]), and
//! compressed files streamed through their decoder ([`compressed`]), and Parquet
//! sources from any writer, with partition folders and pruning on row-group
//! statistics ([`parquet`]).
//!
//! ```text
//!   "data/*.csv" ─glob─► files ─headers, sizes─► blocks (≈ blocksize each, one per partition)
//!                          └─sample first/middle/last files─► schema
//!   task i: read block i's bytes (whole lines) ─BlockDecoder─► RecordBatch (projected columns)
//! ```

pub mod blocks;
pub mod compressed;
pub mod csv;
pub mod csv_write;
pub mod glob;
pub mod infer;
pub mod json;
pub mod parquet;
pub mod staged;
pub mod stamp;
pub mod tokenize;

pub use self::csv::{CsvOptions, CsvSource};
