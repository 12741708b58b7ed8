//! The one grammar of the computing commands (`query`, `resample`, `rolling`,
//! `repartition`, `persist`): the same input and row flags ([`InputArgs`]: what to
//! read and how, `--filter`, `--select`, `--join … --on`, `--index`) and the same
//! output flags ([`OutputArgs`]: `--format table|csv|json|parquet`, `--out DIR`,
//! `--overwrite`), and one way to run a built frame and hand its answer over
//! ([`emit`]), with `--explain` and `--visualize`. Only argument handling lives here;
//! every operation is the library's.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use arrow::datatypes::DataType;
use clap::Args;
use outcore::expr::{parse, parse_type, TYPE_NAMES};
use outcore::frame::parquet::WriteOptions;
use outcore::frame::{How, MergeOptions};
use outcore::io::staged::StagedFolder;
use outcore::{DataFrame, Error, Result, Session};

use super::output::{Format, PartitionWriter};
use super::{CsvArgs, RunArgs};

/// What to read, which rows and columns to keep, and how to index them.
#[derive(Args)]
pub struct InputArgs {
    /// What to read: a glob ('data/*.csv'), a folder or a file, of CSV (.tsv: tab),
    /// JSON lines (.json, .jsonl, .ndjson) or Parquet (from any writer; key=value/
    /// folders become columns), or a dataset folder written by `outcore persist` or
    /// `outcore repartition` (its index and divisions are restored).
    pub glob: String,
    /// Keep rows where this is true, e.g. "y > 0 and name != 'Bob'".
    #[arg(long)]
    pub filter: Option<String>,
    /// Keep only these columns (comma-separated); `query` applies it to its answer.
    #[arg(long, value_delimiter = ',')]
    pub select: Vec<String>,
    /// Join with another glob, of any format (pandas' merge), after --filter;
    /// needs --on.
    #[arg(long, value_name = "OTHER_GLOB")]
    pub join: Option<String>,
    /// Key columns of the join (comma-separated), named alike on both sides, or
    /// the left side's keys when --right-on is given.
    #[arg(long, value_delimiter = ',')]
    pub on: Vec<String>,
    /// The other side's key columns, when they are named differently.
    #[arg(long, value_delimiter = ',')]
    pub right_on: Vec<String>,
    /// Which rows the join keeps: inner, left, right or outer.
    #[arg(long, default_value = "inner")]
    pub how: String,
    /// Index the rows by this column: a range shuffle sorts them across partitions
    /// (nulls last), with known divisions. resample and rolling read it as a
    /// timestamp.
    #[arg(long, alias = "set-index")]
    pub index: Option<String>,
    /// The --index column is already in order across the files: check it and move
    /// no rows (an error names the file where the order breaks).
    #[arg(long, requires = "index")]
    pub sorted: bool,
    /// Declare a column's type: --dtype id=string (repeatable); for Parquet, the
    /// type of a partition folder column (month=6/).
    #[arg(long, value_parser = parse_dtype)]
    pub dtype: Vec<(String, DataType)>,
    /// Parse these columns as ISO-8601 timestamps (comma-separated); CSV and JSON
    /// text.
    #[arg(long, value_delimiter = ',')]
    pub parse_dates: Vec<String>,
    /// A column's timestamps in a strftime format: --date-format 'when=%d/%m/%Y %H:%M'
    /// (repeatable; CSV).
    #[arg(long)]
    pub date_format: Vec<String>,
    /// JSON lines: lines read from each sampled file to infer the columns (default
    /// 1000); a field that the sample missed is an error naming its line.
    #[arg(long)]
    pub sample_lines: Option<usize>,
    #[command(flatten)]
    pub csv: CsvArgs,
    /// Print the time taken to stderr.
    #[arg(long)]
    pub time: bool,
    /// Print the optimized plan and a summary of the task graph (layers, tasks,
    /// shuffles, memory reservations) instead of running it.
    #[arg(long)]
    pub explain: bool,
    /// Write the task graph to this file: Graphviz DOT, or SVG for a .svg name
    /// (needs Graphviz's `dot` on PATH); the command then runs as usual.
    #[arg(long, value_name = "FILE")]
    pub visualize: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

fn parse_dtype(s: &str) -> std::result::Result<(String, DataType), String> {
    let (col, ty) = s
        .split_once('=')
        .ok_or_else(|| format!("expected COLUMN=TYPE, found {s:?}"))?;
    let t =
        parse_type(ty.trim()).ok_or_else(|| format!("unknown type {ty:?}; known: {TYPE_NAMES}"))?;
    Ok((col.trim().to_string(), t))
}

impl InputArgs {
    /// Reads the input and keeps the rows of `--filter`, joined with `--join`;
    /// `--index` is parsed as a timestamp when `time_index`.
    pub fn load(&self, session: &Session, time_index: bool) -> Result<DataFrame> {
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
        if time_index {
            dates.extend(self.index.iter().cloned());
        }
        dates.retain(|d| !formats.iter().any(|(c, _)| c == d));
        dates.dedup();
        reader = reader.with_parse_dates(dates);
        for (c, fmt) in formats {
            reader = reader.with_date_format(c, fmt);
        }
        for (c, t) in &self.dtype {
            reader = reader.with_dtype(c, t.clone());
        }
        if let Some(n) = self.sample_lines {
            reader = reader.with_sample_lines(n);
        }
        let mut df = reader.load()?;
        if let Some(f) = &self.filter {
            df = df.filter(parse(f)?)?;
        }
        if let Some(other) = &self.join {
            if self.on.is_empty() {
                return Err(Error::plan("--join", "give the key columns: --on KEY"));
            }
            let right = self.csv.apply_read(session.read(other)).load()?;
            let right_on = if self.right_on.is_empty() {
                &self.on
            } else {
                &self.right_on
            };
            let options = MergeOptions::left_right(&self.on, right_on).how(How::parse(&self.how)?);
            df = df.merge_with(&right, options)?;
        } else if !self.on.is_empty() || !self.right_on.is_empty() {
            return Err(Error::plan("--on", "--on and --right-on need --join"));
        }
        Ok(df)
    }

    /// `df` with only the `--select` columns (and the `--index` column, and
    /// `keep`), in the order given.
    pub fn select(&self, df: DataFrame, keep: &[String]) -> Result<DataFrame> {
        if self.select.is_empty() {
            return Ok(df);
        }
        let mut columns: Vec<String> = Vec::new();
        for c in self.index.iter().chain(keep).chain(&self.select) {
            if !columns.contains(c) {
                columns.push(c.clone());
            }
        }
        df.select(&columns)
    }

    /// `df` indexed by `--index`: kept as is when already indexed so (a dataset),
    /// checked when `--sorted`, else shuffled into order.
    pub fn set_index(&self, df: DataFrame) -> Result<DataFrame> {
        Ok(match &self.index {
            None => df,
            Some(c) if df.index_column().as_ref() == Some(c) && df.known_divisions() => df,
            Some(c) if self.sorted => df.set_index_sorted(c)?,
            Some(c) => df.set_index(c)?,
        })
    }

    /// The input as the time series commands read it: loaded, filtered, joined,
    /// selected (keeping `keep`) and indexed.
    pub fn load_indexed(&self, session: &Session, keep: &[String]) -> Result<DataFrame> {
        let df = self.load(session, true)?;
        let df = self.select(df, keep)?;
        self.set_index(df)
    }
}

/// Where the answer goes and in what form.
#[derive(Args)]
pub struct OutputArgs {
    /// Write into this folder instead of printing: one file per partition (CSV,
    /// JSON lines), or a Parquet dataset with its manifest (index, divisions), which
    /// every command reads back; the folder appears only when all is written.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the --out folder if it exists (the old one stays if writing fails).
    #[arg(long)]
    pub overwrite: bool,
    /// Output format: table, csv, json (JSON lines) or parquet (needs --out).
    /// Default: table when printing; parquet for persist and repartition.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

/// What [`emit`] needs besides the frame.
pub struct Emit<'a> {
    /// The input flags (for --stats, --time, --explain, --visualize).
    pub input: &'a InputArgs,
    /// The output flags.
    pub output: &'a OutputArgs,
    /// The format when none is given.
    pub default_format: Format,
    /// When the command started.
    pub started: Instant,
}

impl Emit<'_> {
    fn format(&self) -> Format {
        self.output.format.unwrap_or(self.default_format)
    }

    /// With --explain: prints the plan of `df` and says the command is done.
    /// With --visualize: writes the picture (once) and goes on.
    pub fn explain_or_picture(&self, df: &DataFrame, pictured: &std::sync::Once) -> Result<bool> {
        if self.input.explain {
            print!("{}", df.explain()?);
            return Ok(true);
        }
        if let Some(file) = &self.input.visualize {
            let mut result = Ok(());
            pictured.call_once(|| result = super::visualize::write(df, file));
            result?;
        }
        Ok(false)
    }
}

/// The command line, kept in a dataset's manifest.
pub fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// Builds the frame with `build`, then prints or writes it: as a table (gathered),
/// CSV or JSON lines partition by partition (to stdout or one file each), or as a
/// Parquet dataset. When a CSV column proves wider than inferred, builds and runs it
/// again ([`Session::run_widening`]), skipping the partitions already printed.
pub fn emit(
    session: &Session,
    build: &dyn Fn(&Session) -> Result<DataFrame>,
    e: &Emit<'_>,
) -> Result<()> {
    let format = e.format();
    let pictured = std::sync::Once::new();
    if format == Format::Parquet {
        let Some(out) = &e.output.out else {
            return Err(Error::plan(
                "--format parquet",
                "writes a dataset folder: give --out DIR",
            ));
        };
        // A failed write leaves nothing, so a widened column simply writes again.
        let done = session.run_widening(|| {
            let df = build(session)?;
            if e.explain_or_picture(&df, &pictured)? {
                return Ok(None);
            }
            let stats = df.to_parquet(
                out,
                &WriteOptions {
                    overwrite: e.output.overwrite,
                    query: Some(command_line()),
                },
            )?;
            Ok(Some((stats, df.npartitions())))
        })?;
        if let Some((stats, npartitions)) = done {
            e.input.run.report(&stats);
            let plural = if npartitions == 1 { "" } else { "s" };
            eprintln!("wrote {} ({npartitions} partition{plural})", out.display());
            if e.input.time {
                eprintln!("{:.3} s", e.started.elapsed().as_secs_f64());
            }
        }
        return Ok(());
    }
    let writer = match &e.output.out {
        Some(dir) if !e.input.explain => PartitionWriter::folder(dir, format, e.output.overwrite)?,
        _ => PartitionWriter::stdout(format),
    };
    let rows = AtomicUsize::new(0);
    let explained = session.run_widening(|| {
        let df = build(session)?;
        if e.explain_or_picture(&df, &pictured)? {
            return Ok(true);
        }
        // Partition by partition, a table too (never the answer gathered whole).
        let stats = df.for_each_partition(&|i, batch| {
            rows.fetch_add(batch.num_rows(), Ordering::Relaxed);
            writer.write(i, batch)
        })?;
        e.input.run.report(&stats);
        Ok(false)
    })?;
    if explained {
        return Ok(());
    }
    writer.finish_and_report(rows.load(Ordering::Relaxed), e.started, e.input.time)
}

/// One answer of several made from the same input (see [`emit_each`]).
pub type Answer<'a> = outcore::frame::each::Answer<'a>;

/// Several answers from one read of the input, as Dask's `compute(a, b, c)`
/// ([`DataFrame::for_each_answer`]): printed one after another, each under a
/// `# NAME` line, or written into `--out DIR` as `DIR/1`, `DIR/2`, … (the folder
/// appears only when every answer is written). As Parquet datasets, the input is
/// kept once in the session's persist cache (counted in the memory account, paged
/// to disk past the limit) and each dataset is written from it in turn.
pub fn emit_each(
    session: &Session,
    input: &dyn Fn(&Session) -> Result<DataFrame>,
    answers: &[(String, &Answer<'_>)],
    e: &Emit<'_>,
) -> Result<()> {
    let format = e.format();
    if e.input.visualize.is_some() {
        return Err(Error::plan(
            "--visualize",
            "draws the graph of one answer; ask for one answer at a time",
        ));
    }
    if e.input.explain {
        let df = input(session)?;
        for (name, answer) in answers {
            println!("# {name}");
            print!("{}", answer(&df)?.explain()?);
        }
        return Ok(());
    }
    if format == Format::Parquet && e.output.out.is_none() {
        return Err(Error::plan(
            "--format parquet",
            "writes a dataset folder: give --out DIR",
        ));
    }
    if format == Format::Json && e.output.out.is_none() {
        return Err(Error::plan(
            "--format json",
            "several answers printed as JSON lines would run together: give --out DIR \
             (a folder per answer) or --format csv",
        ));
    }
    let staged = match &e.output.out {
        Some(dir) => Some(StagedFolder::new("query", dir, e.output.overwrite)?),
        None => None,
    };
    let answer_dir = |a: usize| staged.as_ref().map(|s| s.path().join((a + 1).to_string()));
    let mut rows = 0;
    if format == Format::Parquet {
        let kept = session.run_widening(|| {
            let (kept, stats) = input(session)?.persist_with_stats()?;
            e.input.run.report(&stats);
            Ok(kept)
        })?;
        for (a, (_, answer)) in answers.iter().enumerate() {
            let dir = answer_dir(a).expect("checked above: parquet has --out");
            let options = WriteOptions {
                overwrite: false,
                query: Some(command_line()),
            };
            e.input
                .run
                .report(&answer(&kept)?.to_parquet(&dir, &options)?);
        }
    } else {
        let writers = answers
            .iter()
            .enumerate()
            .map(|(a, _)| match answer_dir(a) {
                Some(dir) => PartitionWriter::folder(&dir, format, false),
                None => Ok(PartitionWriter::stdout(format)),
            })
            .collect::<Result<Vec<_>>>()?;
        // On stdout, an answer is finished (an empty table drawn) before the
        // next one's name and first partition.
        let names: Vec<&str> = answers.iter().map(|(n, _)| n.as_str()).collect();
        let named = |a: usize| match staged {
            None => super::output::print_answer_name(names[a]),
            Some(_) => Ok(()),
        };
        let current = std::sync::Mutex::new(None::<usize>);
        let written = AtomicUsize::new(0);
        let builders: Vec<&Answer<'_>> = answers.iter().map(|(_, b)| *b).collect();
        session.run_widening(|| {
            let df = input(session)?;
            let stats = df.for_each_answer(&builders, &|a, i, batch| {
                let mut at = current.lock().unwrap_or_else(|p| p.into_inner());
                while at.is_none_or(|n| n < a) {
                    if let Some(n) = *at {
                        writers[n].finish_answer()?;
                    }
                    let next = at.map_or(0, |n| n + 1);
                    named(next)?;
                    *at = Some(next);
                }
                written.fetch_add(batch.num_rows(), Ordering::Relaxed);
                writers[a].write(i, batch)
            })?;
            e.input.run.report(&stats);
            Ok(())
        })?;
        let at = current.into_inner().unwrap_or_else(|p| p.into_inner());
        for (a, writer) in writers.into_iter().enumerate() {
            if at.is_none_or(|n| a > n) {
                named(a)?;
            }
            writer.finish()?;
        }
        rows = written.into_inner();
    }
    if let Some(staged) = staged {
        eprintln!("wrote {}", staged.finish()?.display());
    }
    if e.input.time {
        eprintln!(
            "{rows} rows in {} answers in {:.3} s",
            answers.len(),
            e.started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
