//! Command-line arguments (clap) and dispatch to one module per subcommand.

mod datasets;
mod demo;
mod output;
mod query;

use clap::{Args, Parser, Subcommand, ValueEnum};
use outcore::scheduler::Mode;
use outcore::{Result, Session};

/// outcore: out-of-core dataframe queries over CSV globs.
#[derive(Parser)]
#[command(name = "outcore", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Filter, group and aggregate a CSV glob.
    Query(query::QueryArgs),
    /// Write generated data sets (timeseries, the db-benchmark groupby table).
    #[command(subcommand)]
    Datasets(datasets::DatasetsCommand),
    /// Make a small timeseries set and run the classic queries on it.
    Demo(demo::DemoArgs),
}

/// Settings every computing subcommand takes.
#[derive(Args, Clone)]
pub struct RunArgs {
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Bytes per partition when reading, e.g. 64MB, 512KiB, 100.
    #[arg(long, value_parser = parse_size)]
    blocksize: Option<u64>,
    /// Scheduler: parallel, or sync (one task at a time, for debugging).
    #[arg(long, value_enum, default_value_t = SchedulerArg::Parallel)]
    scheduler: SchedulerArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum SchedulerArg {
    Parallel,
    Sync,
}

impl RunArgs {
    fn session(&self) -> Result<Session> {
        let mut b = Session::builder().with_scheduler(match self.scheduler {
            SchedulerArg::Parallel => Mode::Parallel,
            SchedulerArg::Sync => Mode::Sync,
        });
        if let Some(t) = self.threads {
            b = b.with_threads(t);
        }
        if let Some(bs) = self.blocksize {
            b = b.with_blocksize(bs);
        }
        b.build()
    }
}

/// `64MB`, `1.5GiB`, `512k`, `100` → bytes (decimal units for MB/GB, binary for MiB/GiB).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}; use e.g. 64MB, 512KiB or 100"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1048576.0,
        "g" | "gb" => 1e9,
        "gib" => 1073741824.0,
        "t" | "tb" => 1e12,
        "tib" => 1099511627776.0,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?}; use B, KB, KiB, MB, MiB, GB or GiB"
            ))
        }
    };
    let bytes = (value * mult).round();
    if bytes < 1.0 {
        return Err(format!("size {s:?} must be at least 1 byte"));
    }
    Ok(bytes as u64)
}

/// Parses the arguments and runs the subcommand.
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Query(a) => query::run(a),
        Command::Datasets(c) => datasets::run(c),
        Command::Demo(a) => demo::run(a),
    }
}
