//! Command-line arguments (clap) and dispatch to one module per subcommand.

mod bag;
mod datasets;
mod demo;
mod grammar;
mod output;
mod progress;
mod query;
mod timeseries;
mod visualize;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use outcore::error::human_bytes;
use outcore::scheduler::{Mode, RunStats};
use outcore::{Error, Result, Session};

/// outcore: out-of-core dataframe and bag queries over CSV, JSON-lines and Parquet globs.
#[derive(Parser)]
#[command(name = "outcore", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Filter, group and aggregate a glob of CSV, JSON lines or Parquet, or a dataset.
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
    /// Write the input as a Parquet dataset with its index and divisions.
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
    /// No progress bar (it is drawn on stderr only when stderr is a terminal and
    /// the run takes more than about a second).
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// How CSV inputs are read (every command that reads CSV takes these).
#[derive(Args, Clone)]
pub struct CsvArgs {
    /// Field separator of CSV inputs: one character (';', '|'), or 'tab' / '\t'.
    /// Default: tab for .tsv files, else sniffed from the header and first lines
    /// among ',', tab, ';' and '|'.
    #[arg(long, value_parser = parse_delimiter)]
    delimiter: Option<u8>,
    /// The longest line accepted, e.g. 64MB (the default); a quoted field's line
    /// breaks count within its line. A longer one is an error naming file and line.
    #[arg(long, value_parser = parse_size)]
    max_line_bytes: Option<u64>,
}

impl CsvArgs {
    /// `reader` (any format) with these settings: the delimiter only when given,
    /// so that a JSON or Parquet input without one is not refused.
    pub fn apply_read(
        &self,
        mut reader: outcore::frame::read::ReadBuilder,
    ) -> outcore::frame::read::ReadBuilder {
        if let Some(d) = self.delimiter {
            reader = reader.with_delimiter(d);
        }
        match self.max_line_bytes {
            Some(n) => reader.with_max_line_bytes(n),
            None => reader,
        }
    }
}

/// `;`, `|`, `tab`, `\t` → the byte.
fn parse_delimiter(s: &str) -> std::result::Result<u8, String> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() && s != "\"" && s != "\n" && s != "\r" => Ok(s.as_bytes()[0]),
        _ => Err(format!(
            "invalid delimiter {s:?}: give one ASCII character other than a quote or line break, or 'tab'"
        )),
    }
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
        // One computation has this process to itself: the account can count what
        // the process holds beyond its consumers' reservations.
        b = b.watch_process_memory(true);
        if let Some(d) = &self.spill_dir {
            b = b.with_spill_dir(d);
        }
        if !self.quiet {
            if let Some(bar) = progress::Bar::for_stderr() {
                b = b.with_progress(bar);
            }
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
    let row_groups = if s.row_groups_read + s.row_groups_skipped > 0 {
        format!(
            "; Parquet row groups: {} read, {} skipped by statistics",
            s.row_groups_read, s.row_groups_skipped
        )
    } else {
        String::new()
    };
    let radix = if s.radix_parts > 0 {
        let mut notes = Vec::new();
        if s.fold_tables > 0 {
            notes.push(format!(
                "{} running tables, {} taken out early",
                s.fold_tables, s.fold_flushes
            ));
        }
        if s.radix_splits > 0 {
            notes.push(format!("{} merged in sub-parts", s.radix_splits));
        }
        if notes.is_empty() {
            format!("; radix parts {}", s.radix_parts)
        } else {
            format!("; radix parts {} ({})", s.radix_parts, notes.join(", "))
        }
    } else {
        String::new()
    };
    let join = if s.join_buckets_spilled + s.join_build_chunks > 0 {
        format!(
            "; join buckets spilled {}, build chunks {}",
            s.join_buckets_spilled, s.join_build_chunks
        )
    } else {
        String::new()
    };
    let runs = if s.sort_runs_spilled > 0 {
        format!("; sort runs spilled {}", s.sort_runs_spilled)
    } else {
        String::new()
    };
    let consumers = s
        .peak_consumers
        .iter()
        .map(|(name, bytes)| format!("{name} {}", human_bytes(*bytes)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "stats: read {}; peak reserved {} of {} ({}); spilled {} ({} values), read back {}; \
         shuffled {} ({} held in memory, {} on disk); {} tasks; reads held back {} times{row_groups}{radix}{join}{runs}",
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
        human_bytes(s.shuffle_held_bytes),
        human_bytes(s.shuffle_disk_bytes),
        s.tasks_run,
        s.reads_held_back,
    )
}

/// Set by the signal thread when it is removing the folders and about to exit: the
/// main thread must then not exit first (with the error the removal causes).
static EXITING: AtomicBool = AtomicBool::new(false);

/// Whether a signal is ending the process; if so, the caller waits for the exit.
pub fn exiting() -> bool {
    EXITING.load(Ordering::SeqCst)
}

/// A flag the first Ctrl-C sets, so the running computation stops and removes its
/// temporary files. A second Ctrl-C, or SIGTERM, removes every spill, shuffle and
/// staging folder of the process at once and exits (130, 143). The signals are
/// handled on a thread of their own (not in a signal handler), so the removal may
/// do ordinary I/O.
fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    // One handler thread per process, however many sessions a command makes.
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    if let Some(f) = FLAG.get() {
        return Ok(f.clone());
    }
    let flag = install_signal_thread()?;
    Ok(FLAG.get_or_init(|| flag).clone())
}

fn install_signal_thread() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Error::Internal(format!("cannot handle Ctrl-C: {e}")))?;
    let seen = flag.clone();
    std::thread::Builder::new()
        .name("outcore-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let first_ctrl_c = sig == SIGINT && !seen.swap(true, Ordering::SeqCst);
                if !first_ctrl_c {
                    EXITING.store(true, Ordering::SeqCst);
                    outcore_storage::workdir::remove_all();
                    eprintln!("error: interrupted; temporary files were removed");
                    std::process::exit(128 + sig);
                }
            }
        })
        .map_err(|e| Error::Internal(format!("cannot handle Ctrl-C: {e}")))?;
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

/// Runs this process again (same pid, same arguments, `exec`) with glibc's malloc
/// tuned for the memory limit given, or for none
/// ([`outcore::scheduler::malloc_tunables`]): glibc reads its settings only at
/// start, from `GLIBC_TUNABLES`, and setting them from inside would take
/// `unsafe`. Nothing happens when the variable is already set (by the user, or
/// by the first run), on other platforms, or when the exec fails (the run goes
/// on untuned).
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("GLIBC_TUNABLES").is_some() {
            return;
        }
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let tunables = outcore::scheduler::malloc_tunables(memory_limit_arg(&args));
        let mut again = std::process::Command::new("/proc/self/exe");
        again
            .args(args.iter().skip(1))
            .env("GLIBC_TUNABLES", tunables);
        if let Some(argv0) = args.first() {
            again.arg0(argv0);
        }
        // Returns only if the exec failed.
        let _ = again.exec();
    }
}

/// The value of `--memory-limit` among `args`, if given and valid (clap reports
/// a bad one later).
fn memory_limit_arg(args: &[std::ffi::OsString]) -> Option<u64> {
    let mut it = args.iter().filter_map(|a| a.to_str());
    while let Some(a) = it.next() {
        if a == "--" {
            return None;
        }
        if a == "--memory-limit" {
            return it.next().and_then(|v| parse_size(v).ok());
        }
        if let Some(v) = a.strip_prefix("--memory-limit=") {
            return parse_size(v).ok();
        }
    }
    None
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
