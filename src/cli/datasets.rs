//! `outcore datasets`: write the generated data sets.

use std::path::PathBuf;
use std::time::Instant;

use clap::Subcommand;
use outcore::datasets::{
    write_groupby, write_join, write_records, write_timeseries, GroupbySpec, JoinSpec, RecordsSpec,
    TimeseriesSpec,
};
use outcore::Result;

#[derive(Subcommand)]
pub enum DatasetsCommand {
    /// Per-second rows from 2000-01-01 (timestamp, id, name, x, y), one CSV a day.
    Timeseries {
        /// Number of days.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Seconds between rows.
        #[arg(long, default_value_t = 1)]
        freq_seconds: u32,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Folder to write into.
        #[arg(long)]
        out: PathBuf,
    },
    /// The db-benchmark G1 groupby table (id1..id6, v1..v3) in several CSV files.
    Groupby {
        /// Number of rows, e.g. 10000000 or 1e7.
        #[arg(long, value_parser = parse_count)]
        rows: u64,
        /// Cardinality K of the small keys.
        #[arg(long, value_parser = parse_count, default_value = "100")]
        k: u64,
        /// Number of files.
        #[arg(long, default_value_t = 8)]
        files: u32,
        /// Percentage of empty (null) cells.
        #[arg(long, default_value_t = 0)]
        nulls: u32,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Folder to write into.
        #[arg(long)]
        out: PathBuf,
    },
    /// The db-benchmark J1 join tables: x (N rows), small (N/1e6), medium (N/1e3)
    /// and big (N), in folders x/, small/, medium/, big/ (90% of keys shared).
    Join {
        /// N, e.g. 10000000 or 1e7.
        #[arg(long, value_parser = parse_count)]
        rows: u64,
        /// Files for x and for big.
        #[arg(long, default_value_t = 8)]
        files: u32,
        /// Random seed.
        #[arg(long, default_value_t = 108)]
        seed: u64,
        /// Folder to write into.
        #[arg(long)]
        out: PathBuf,
    },
    /// JSON-lines records (id, name, age, occupation, address {city, zip}, 0 to 7
    /// transactions {amount, date}), for bags and JSON frames.
    Records {
        /// Number of records, e.g. 1000000 or 1e6.
        #[arg(long, value_parser = parse_count)]
        records: u64,
        /// Number of files.
        #[arg(long, default_value_t = 8)]
        files: u32,
        /// Percentage of records without `age`, and of records without `address`.
        #[arg(long, default_value_t = 0)]
        missing: u32,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Folder to write into.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `10000000`, `1e7`, `1_000_000`.
fn parse_count(s: &str) -> std::result::Result<u64, String> {
    let t = s.replace('_', "");
    if let Ok(v) = t.parse::<u64>() {
        return Ok(v);
    }
    match t.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.fract() == 0.0 && v < 1e19 => Ok(v as u64),
        _ => Err(format!(
            "expected a whole number such as 10000000 or 1e7, found {s:?}"
        )),
    }
}

pub fn run(c: DatasetsCommand) -> Result<()> {
    let started = Instant::now();
    let files = match c {
        DatasetsCommand::Timeseries {
            days,
            freq_seconds,
            seed,
            out,
        } => {
            let spec = TimeseriesSpec {
                days,
                freq_seconds,
                seed,
                ..TimeseriesSpec::default()
            };
            write_timeseries(&out, &spec)?
        }
        DatasetsCommand::Groupby {
            rows,
            k,
            files,
            nulls,
            seed,
            out,
        } => {
            let spec = GroupbySpec {
                rows,
                k,
                files,
                seed,
                null_percent: nulls,
            };
            write_groupby(&out, &spec)?
        }
        DatasetsCommand::Join {
            rows,
            files,
            seed,
            out,
        } => write_join(&out, &JoinSpec { rows, files, seed })?,
        DatasetsCommand::Records {
            records,
            files,
            missing,
            seed,
            out,
        } => {
            let spec = RecordsSpec {
                records,
                files,
                seed,
                missing_percent: missing,
            };
            write_records(&out, &spec)?
        }
    };
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "wrote {} files, {:.1} MB, in {:.2} s",
        files.len(),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    for f in files {
        println!("{}", f.display());
    }
    Ok(())
}
