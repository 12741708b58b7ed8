//! outcore: an out-of-core dataframe and bag query engine.
pub mod agg;
pub mod datasets;
pub mod error;
pub mod expr;
pub mod frame;
pub mod graph;
pub mod io;
pub mod scheduler;
pub mod session;
pub use error::{Error, Result};
pub use frame::DataFrame;
pub use session::Session;
