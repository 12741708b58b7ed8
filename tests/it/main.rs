//! The integration tests of outcore, one binary: `cargo test --test it`.

mod aggs;
mod bag;
mod cli;
mod common;
mod faults;
mod frame_ops;
mod fuzz;
mod grammar;
mod groupby;
mod join;
mod memory;
mod ordering;
mod outofcore;
mod properties;
mod radix;
mod read_csv;
mod read_inputs;
mod read_parquet;
mod scheduler;
mod timeseries;
