//! outcore: an out-of-core dataframe and bag query engine.
//!
//! Every collection is a list of **partitions** plus a plan that says how to compute
//! each one. Operations never touch data: they add a node to the plan. `compute()`
//! prunes unused columns, lowers the plan to a task graph, culls, fuses and orders
//! it, and runs it on a pool of threads.
//!
//! ```text
//!   CSV, JSON, Parquet ──► io: line blocks, row groups ──► frame / bag (lazy, partitioned)
//!                                              │ ops add plan nodes
//!                                              ▼
//!          frame::plan: prune columns ─ lower to layers of tasks (graph)
//!                                              ▼
//!                         graph: cull ─ fuse ─ order (priorities)
//!                                              ▼
//!                      scheduler: rayon pool, ready heap, results freed early
//! ```
//!
//! A tour, on the sample data that ships with the repository:
//!
//! ```
//! use outcore::agg::{mean, size, sum};
//! use outcore::expr::{col, lit};
//! use outcore::Session;
//!
//! let session = Session::builder().with_threads(2).build()?;
//! let df = session.read_csv("data/groupby/*.csv").load()?;     // reads headers and samples only
//! let answer = df
//!     .filter(col("v2").gt(lit(10i64)))?                        // checked against the schema now
//!     .groupby(&["id1"])?
//!     .agg(&[sum("v1"), mean("v3"), size()])?
//!     .compute()?;                                              // runs: reads id1, v1, v2, v3 only
//! assert_eq!(answer.num_rows(), 10);
//! println!("{}", arrow::util::pretty::pretty_format_batches(&[answer]).unwrap());
//! # Ok::<(), outcore::Error>(())
//! ```
//!
//! Modules, in the order data flows: [`io`] (globs, blocks, inference, the CSV
//! decoder, JSON-lines and Parquet sources), [`frame`] (the lazy `DataFrame` and its plan),
//! [`bag`] (the lazy `Bag` of JSON records), [`expr`] (column
//! expressions), [`agg`] (chunk → combine → finalize aggregations), [`graph`] (keys,
//! tasks, cull, fuse, order), [`scheduler`] (runs a graph), [`session`] (settings,
//! entry point), [`datasets`] (seeded generators).

#![warn(missing_docs)]

pub mod agg;
pub mod bag;
pub mod datasets;
pub mod error;
pub mod expr;
pub mod frame;
pub mod graph;
pub mod io;
pub mod scheduler;
pub mod session;
pub mod sort;

pub use bag::Bag;
pub use error::{Error, Result};
pub use frame::DataFrame;
pub use session::Session;
