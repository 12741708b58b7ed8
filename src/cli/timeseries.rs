//! `outcore resample`, `outcore rolling`, `outcore repartition` and `outcore
//! persist`: the time series and reuse commands. Each reads what `Session::read`
//! reads (CSV, JSON lines, Parquet, or a dataset folder as `persist` and
//! `repartition` write them, with their index and divisions), indexes it by
//! `--index` (a shuffle, or none with `--sorted`), and prints or writes the answer
//! partition by partition.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::Args;
use datafusion_common::ScalarValue;
use outcore::agg::{parse_aggs, AggSpec};
use outcore::frame::parquet::WriteOptions;
use outcore::frame::repartition::Repartition;
use outcore::frame::resample::ohlc_specs;
use outcore::frame::rolling::Window;
use outcore::frame::timerule::{parse_timestamp, Side};
use outcore::{DataFrame, Error, Result, Session};

use super::output::{Format, PartitionWriter};
use super::RunArgs;

/// Where the data comes from and how it is indexed.
#[derive(Args)]
pub struct InputArgs {
    /// What to read: CSV, JSON lines or Parquet (a glob, a folder or a file), or
    /// a dataset folder written by `outcore persist` or `outcore repartition` (its
    /// index and divisions are restored, so no shuffle is needed).
    glob: String,
    /// Index the rows by this timestamp column (parsed as a timestamp when read
    /// from CSV): a range shuffle sorts them, unless --sorted.
    #[arg(long, alias = "set-index")]
    index: Option<String>,
    /// The --index column is already in time order across the files: check it and
    /// move no rows (an error names the file where the order breaks).
    #[arg(long, requires = "index")]
    sorted: bool,
    /// Also parse these columns as timestamps (comma-separated).
    #[arg(long, value_delimiter = ',')]
    parse_dates: Vec<String>,
    /// A column's timestamps in a strftime format: --date-format 'when=%d/%m/%Y %H:%M'
    /// (repeatable).
    #[arg(long)]
    date_format: Vec<String>,
    /// Print the time taken to stderr.
    #[arg(long)]
    time: bool,
    #[command(flatten)]
    csv: super::CsvArgs,
    #[command(flatten)]
    run: RunArgs,
}

impl InputArgs {
    fn load(&self, session: &Session) -> Result<DataFrame> {
        let mut reader = self.csv.apply_read(session.read(&self.glob));
        let mut formats = Vec::new();
        for f in &self.date_format {
            let (c, fmt) = f.split_once('=').ok_or_else(|| {
                Error::plan(
                    "--date-format",
                    format!("expected COLUMN=FORMAT, found {f:?}"),
                )
            })?;
            formats.push((c.trim().to_string(), fmt.to_string()));
        }
        let mut dates = self.parse_dates.clone();
        dates.extend(self.index.iter().cloned());
        dates.retain(|d| !formats.iter().any(|(c, _)| c == d));
        dates.dedup();
        reader = reader.with_parse_dates(dates);
        for (c, fmt) in formats {
            reader = reader.with_date_format(c, fmt);
        }
        let df = reader.load()?;
        Ok(match &self.index {
            None => df,
            // A dataset already indexed by this column keeps its divisions.
            Some(c) if df.index_column().as_ref() == Some(c) && df.known_divisions() => df,
            Some(c) if self.sorted => df.set_index_sorted(c)?,
            Some(c) => df.set_index(c)?,
        })
    }
}

/// Where the answer goes.
#[derive(Args)]
pub struct OutputArgs {
    /// Write one file per partition into this folder instead of printing; the
    /// folder appears only when every file is written.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace the --out folder if it exists (the old one stays if writing fails).
    #[arg(long)]
    overwrite: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Parses `--agg`, where `ohlc(x)` stands for open, high, low and close of x.
fn parse_agg_list(text: &str) -> Result<Vec<AggSpec>> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.strip_prefix("ohlc(").and_then(|r| r.strip_suffix(')')) {
            Some(col) => out.extend(ohlc_specs(col.trim())),
            None => out.extend(parse_aggs(item)?),
        }
    }
    if out.is_empty() {
        return Err(Error::plan(
            "--agg",
            "give at least one aggregation, e.g. 'mean(x)'",
        ));
    }
    Ok(out)
}

/// Builds the frame with `build` and prints or writes it partition by partition;
/// when a CSV column proves wider than inferred, builds and runs it again
/// ([`Session::run_widening`]), skipping the partitions already printed.
fn emit(
    session: &Session,
    build: &dyn Fn(&Session) -> Result<DataFrame>,
    out: &OutputArgs,
    input: &InputArgs,
    started: Instant,
) -> Result<()> {
    let writer = match &out.out {
        Some(dir) => PartitionWriter::folder(dir, out.format, out.overwrite)?,
        None => PartitionWriter::stdout(out.format),
    };
    let rows = AtomicUsize::new(0);
    session.run_widening(|| {
        let df = build(session)?;
        let stats = if out.format == Format::Table && out.out.is_none() {
            // One table, not one per partition.
            let (all, stats) = df.compute_with_stats()?;
            rows.store(all.num_rows(), Ordering::Relaxed);
            writer.write(0, &all)?;
            stats
        } else {
            df.for_each_partition(&|i, batch| {
                rows.fetch_add(batch.num_rows(), Ordering::Relaxed);
                writer.write(i, batch)
            })?
        };
        input.run.report(&stats);
        Ok(())
    })?;
    writer.finish_and_report(rows.load(Ordering::Relaxed), started, input.time)
}

#[derive(Args)]
pub struct ResampleArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Bin width in pandas' spelling: 15min, 1h, 6h, D, W, ME (month end), MS.
    #[arg(long)]
    rule: String,
    /// Aggregations per bin, e.g. 'mean(x), mean(y), count(x), ohlc(x)'.
    #[arg(long)]
    agg: String,
    /// Which side of a bin is closed: left or right (default as pandas: right
    /// for W and ME, left otherwise).
    #[arg(long)]
    closed: Option<String>,
    /// Which edge labels a bin: left or right (defaults as --closed).
    #[arg(long)]
    label: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn resample(a: ResampleArgs) -> Result<()> {
    let started = Instant::now();
    let session = a.input.run.session()?;
    let build = |session: &Session| {
        let df = a.input.load(session)?;
        let aggs = parse_agg_list(&a.agg)?;
        let mut r = df.resample(&a.rule)?;
        if let Some(c) = &a.closed {
            r = r.closed(Side::parse(c)?);
        }
        if let Some(l) = &a.label {
            r = r.label(Side::parse(l)?);
        }
        r.agg(&aggs)
    };
    emit(&session, &build, &a.output, &a.input, started)
}

#[derive(Args)]
pub struct RollingArgs {
    #[command(flatten)]
    input: InputArgs,
    /// The window: a row count (3) or a time span back from each row (5min, 1h;
    /// needs --index).
    #[arg(long)]
    window: String,
    /// Aggregations over each window, e.g. 'mean(x), max(y)'; added as columns.
    #[arg(long)]
    agg: String,
    /// Non-null values a window needs (default: the row count, or 1 for spans).
    #[arg(long)]
    min_periods: Option<usize>,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn rolling(a: RollingArgs) -> Result<()> {
    let started = Instant::now();
    let session = a.input.run.session()?;
    let build = |session: &Session| {
        let df = a.input.load(session)?;
        let mut r = df.rolling(Window::parse(&a.window)?)?;
        if let Some(m) = a.min_periods {
            r = r.min_periods(m);
        }
        r.agg(&parse_agg_list(&a.agg)?)
    };
    emit(&session, &build, &a.output, &a.input, started)
}

#[derive(Args)]
pub struct RepartitionArgs {
    #[command(flatten)]
    input: InputArgs,
    /// This many partitions.
    #[arg(long, group = "how")]
    npartitions: Option<usize>,
    /// Partitions of about this size in memory, e.g. 100MB.
    #[arg(long, value_parser = super::parse_size, group = "how")]
    partition_size: Option<u64>,
    /// One partition per period, e.g. 1D or 6h (needs --index).
    #[arg(long, group = "how")]
    freq: Option<String>,
    /// New divisions of the index, comma-separated timestamps (needs --index).
    #[arg(long, value_delimiter = ',', group = "how")]
    divisions: Vec<String>,
    /// The output folder: a Parquet dataset with a catalog (index, divisions), or
    /// CSV / JSON files with --format.
    #[arg(long)]
    out: PathBuf,
    /// Replace the --out folder if it exists (the old one stays if writing fails).
    #[arg(long)]
    overwrite: bool,
    /// parquet (default), csv or json.
    #[arg(long, default_value = "parquet")]
    format: String,
}

/// The command line, kept in a dataset's catalog.
fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

fn write_dataset(
    session: &Session,
    build: &dyn Fn(&Session) -> Result<DataFrame>,
    input: &InputArgs,
    out: &Path,
    overwrite: bool,
    format: &str,
    started: Instant,
) -> Result<()> {
    match format {
        "parquet" => {
            // A failed write leaves nothing, so a widened column simply writes again.
            let (stats, npartitions) = session.run_widening(|| {
                let df = build(session)?;
                let stats = df.to_parquet(
                    out,
                    &WriteOptions {
                        overwrite,
                        query: Some(command_line()),
                    },
                )?;
                Ok((stats, df.npartitions()))
            })?;
            input.run.report(&stats);
            eprintln!("wrote {} ({npartitions} partitions)", out.display());
            if input.time {
                eprintln!("{:.3} s", started.elapsed().as_secs_f64());
            }
            Ok(())
        }
        "csv" | "json" => {
            let output = OutputArgs {
                out: Some(out.to_path_buf()),
                overwrite,
                format: if format == "csv" {
                    Format::Csv
                } else {
                    Format::Json
                },
            };
            emit(session, build, &output, input, started)
        }
        other => Err(Error::plan(
            "--format",
            format!("{other:?}: use parquet, csv or json"),
        )),
    }
}

pub fn repartition(a: RepartitionArgs) -> Result<()> {
    let started = Instant::now();
    let session = a.input.run.session()?;
    let how = if let Some(n) = a.npartitions {
        Repartition::NPartitions(n)
    } else if let Some(b) = a.partition_size {
        Repartition::PartitionSize(b)
    } else if let Some(f) = &a.freq {
        Repartition::Freq(f.clone())
    } else if !a.divisions.is_empty() {
        Repartition::Divisions(
            a.divisions
                .iter()
                .map(|d| {
                    Ok(ScalarValue::TimestampNanosecond(
                        Some(parse_timestamp(d)?),
                        None,
                    ))
                })
                .collect::<Result<_>>()?,
        )
    } else {
        return Err(Error::plan(
            "repartition",
            "say how: --npartitions N, --partition-size 100MB, --freq 1D or --divisions a,b,c",
        ));
    };
    let build = |session: &Session| a.input.load(session)?.repartition(how.clone());
    write_dataset(
        &session,
        &build,
        &a.input,
        &a.out,
        a.overwrite,
        &a.format,
        started,
    )
}

#[derive(Args)]
pub struct PersistArgs {
    #[command(flatten)]
    input: InputArgs,
    /// The dataset folder: one Parquet file per partition and a manifest (schema,
    /// index, divisions, this command), so later commands on it need no shuffle.
    #[arg(long)]
    out: PathBuf,
    /// Replace the --out folder if it exists (the old one stays if writing fails).
    #[arg(long)]
    overwrite: bool,
}

pub fn persist(a: PersistArgs) -> Result<()> {
    let started = Instant::now();
    let session = a.input.run.session()?;
    let build = |session: &Session| a.input.load(session);
    write_dataset(
        &session,
        &build,
        &a.input,
        &a.out,
        a.overwrite,
        "parquet",
        started,
    )
}
