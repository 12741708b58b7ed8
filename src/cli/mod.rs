//! Command-line arguments (clap) and dispatch to one module per subcommand.

mod bag;
mod datasets;
mod demo;
mod output;
mod query;
mod timeseries;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use outcore::error::human_bytes;
use outcore::scheduler::{Mode, RunStats};
use outcore::{Error, Result, Session};

/// outcore: out-of-core dataframe and bag queries over CSV and JSON-lines globs.
#[derive(Parser)]
#[command(name = "outcore", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Filter, group and aggregate a CSV glob.
    Query(Box<query::QueryArgs>),
    /// Filter, pluck, count and group a bag of JSON records (JSON-lines files).
    Bag(Box<bag::BagArgs>),
    /// Write generated data sets (timeseries, the db-benchmark groupby table).
    #[command(subcommand)]
    Datasets(datasets::DatasetsCommand),
    /// Make a small timeseries set and run the classic queries on it.
    Demo(demo::DemoArgs),
    /// Aggregate time bins of a timestamp index: --rule 1h --agg 'mean(x)'.
    Resample(Box<timeseries::ResampleArgs>),
    /// Moving-window aggregations over rows or a time span: --window 5min.
    Rolling(Box<timeseries::RollingArgs>),
    /// Change the partitioning and write the result: --npartitions, --freq 1D, ...
    Repartition(Box<timeseries::RepartitionArgs>),
    /// Write a CSV glob as a Parquet dataset with its index and divisions.
    Persist(Box<timeseries::PersistArgs>),
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
    /// Memory the computation may hold, e.g. 2GB (default: half the machine's RAM).
    /// Past it, reads wait and finished results spill to disk.
    #[arg(long, value_parser = parse_size)]
    memory_limit: Option<u64>,
    /// Folder under which spill and shuffle files go (default: the system's
    /// temporary folder); they are removed when the command ends.
    #[arg(long)]
    spill_dir: Option<PathBuf>,
    /// Print what the computation did to stderr: bytes read, spilled, shuffled,
    /// the peak memory reserved and the largest consumers at that moment.
    #[arg(long)]
    stats: bool,
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
        if let Some(m) = self.memory_limit {
            b = b.memory_limit(m);
        }
        if let Some(d) = &self.spill_dir {
            b = b.with_spill_dir(d);
        }
        b.with_cancel_flag(interrupt_flag()?).build()
    }

    /// Prints `stats` to stderr when `--stats` was given.
    fn report(&self, stats: &RunStats) {
        if self.stats {
            eprintln!("{}", format_stats(stats));
        }
    }
}

/// One line of what a computation did, for `--stats`.
pub fn format_stats(s: &RunStats) -> String {
    let consumers = s
        .peak_consumers
        .iter()
        .map(|(name, bytes)| format!("{name} {}", human_bytes(*bytes)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "stats: read {}; peak reserved {} of {} ({}); spilled {} ({} values), read back {}; \
         shuffled {} ({} on disk); {} tasks; reads held back {} times",
        human_bytes(s.bytes_read),
        human_bytes(s.peak_reserved),
        human_bytes(s.memory_limit),
        if consumers.is_empty() {
            "nothing".to_string()
        } else {
            consumers
        },
        human_bytes(s.spilled_bytes),
        s.spilled_values,
        human_bytes(s.read_back_bytes),
        human_bytes(s.shuffled_bytes),
        human_bytes(s.shuffle_disk_bytes),
        s.tasks_run,
        s.reads_held_back,
    )
}

/// A flag Ctrl-C sets, so the running computation stops and removes its temporary
/// files; a second Ctrl-C exits at once.
fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let sig = signal_hook::consts::SIGINT;
    let register = |r: std::io::Result<signal_hook::SigId>| {
        r.map(|_| ())
            .map_err(|e| Error::Internal(format!("cannot handle Ctrl-C: {e}")))
    };
    register(signal_hook::flag::register_conditional_shutdown(
        sig,
        130,
        flag.clone(),
    ))?;
    register(signal_hook::flag::register(sig, flag.clone()))?;
    Ok(flag)
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
        Command::Query(a) => query::run(*a),
        Command::Bag(a) => bag::run(*a),
        Command::Datasets(c) => datasets::run(c),
        Command::Demo(a) => demo::run(a),
        Command::Resample(a) => timeseries::resample(*a),
        Command::Rolling(a) => timeseries::rolling(*a),
        Command::Repartition(a) => timeseries::repartition(*a),
        Command::Persist(a) => timeseries::persist(*a),
    }
}
