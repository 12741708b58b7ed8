//! Writing answers: a table (Arrow's pretty printer), CSV, or JSON lines.

use std::io::Write;

use arrow::array::RecordBatch;
use clap::ValueEnum;
use outcore::{Error, Result};

/// How answers are printed.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// A boxed table.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per row.
    Json,
}

fn stdout_err(e: std::io::Error) -> Error {
    Error::io("<stdout>", e)
}

/// Writes `batch` to stdout in `format`.
pub fn print(batch: &RecordBatch, format: Format) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        Format::Table => {
            let table = arrow::util::pretty::pretty_format_batches(std::slice::from_ref(batch))?;
            writeln!(out, "{table}").map_err(stdout_err)?;
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            w.write(batch).map_err(arrow_write_err)?;
        }
        Format::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
            w.write(batch).map_err(arrow_write_err)?;
            w.finish().map_err(arrow_write_err)?;
            drop(w);
            if batch.num_rows() > 0 {
                writeln!(out).map_err(stdout_err)?;
            }
        }
    }
    out.flush().map_err(stdout_err)
}

fn arrow_write_err(e: arrow::error::ArrowError) -> Error {
    match e {
        arrow::error::ArrowError::IoError(_, io) => stdout_err(io),
        other => Error::Arrow(other),
    }
}
