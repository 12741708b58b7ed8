//! The integration tests of outcore, one binary: `cargo test --test it`.

mod aggs;
mod bag;
mod cli;
mod common;
mod frame_ops;
mod groupby;
mod join;
mod memory;
mod ordering;
mod outofcore;
mod properties;
mod read_csv;
mod scheduler;
mod timeseries;
