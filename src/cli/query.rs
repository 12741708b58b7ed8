//! `outcore query`: filter, join, index, group, aggregate, sort and print a glob of
//! CSV, JSON lines or Parquet, or an outcore dataset.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use arrow::datatypes::DataType;
use clap::Args;
use outcore::agg::exprs::parse_agg_list;
use outcore::expr::{parse, parse_type, TYPE_NAMES};
use outcore::frame::{sort_batch, How, MergeOptions};
use outcore::{Error, Result};

use super::output::{Format, PartitionWriter};
use super::RunArgs;

#[derive(Args)]
pub struct QueryArgs {
    /// What to read: a glob ('data/*.csv'), a folder, or a file, of CSV, JSON
    /// lines (.json, .jsonl, .ndjson; nested objects as struct columns) or Parquet
    /// (from any writer; key=value/ folders become columns), or a dataset folder
    /// written by `outcore persist` (with its index and divisions).
    glob: String,
    /// Keep rows where this is true, e.g. "y > 0 and name != 'Bob'".
    #[arg(long)]
    filter: Option<String>,
    /// Group by these columns (comma-separated); needs --agg.
    #[arg(long, value_delimiter = ',')]
    groupby: Vec<String>,
    /// Aggregations, e.g. 'sum(v1), mean(v3) as m, size()', 'median(v3)',
    /// 'quantile(v3, 0.9)', 'corr(v1, v2)', 'nlargest(2, v3)' (n rows per group),
    /// and arithmetic over them: 'max(v1) - min(v2) as range'. Without --groupby
    /// they aggregate the whole frame.
    #[arg(long)]
    agg: Option<String>,
    /// Join with another glob, of any format (pandas' merge), before grouping;
    /// needs --on.
    #[arg(long, value_name = "OTHER_GLOB")]
    join: Option<String>,
    /// Key columns of the join (comma-separated), named alike on both sides, or
    /// the left side's keys when --right-on is given.
    #[arg(long, value_delimiter = ',')]
    on: Vec<String>,
    /// The other side's key columns, when they are named differently.
    #[arg(long, value_delimiter = ',')]
    right_on: Vec<String>,
    /// Which rows the join keeps: inner, left, right or outer.
    #[arg(long, default_value = "inner")]
    how: String,
    /// Index the rows by this column: a range shuffle through the shuffle store
    /// sorts them across partitions (nulls last), with known divisions.
    #[arg(long)]
    set_index: Option<String>,
    /// The --set-index column is already in order across the files: check it and
    /// move no rows.
    #[arg(long, requires = "set_index")]
    sorted: bool,
    /// Output only these columns (comma-separated).
    #[arg(long, value_delimiter = ',')]
    select: Vec<String>,
    /// Sort the answer by these columns (comma-separated; a leading '-' sorts
    /// descending; nulls last). A partitioned answer is sorted through the shuffle
    /// store and streamed, never gathered.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    sort: Vec<String>,
    /// Print only the first N rows.
    #[arg(long)]
    head: Option<usize>,
    /// Spread a groupby's answer over N partitions through the shuffle store (each
    /// partition sorted by key, the partitions not); 1 forces a reduction tree.
    /// Without it, the strategy is chosen at run time from the measured partials.
    #[arg(long)]
    split_out: Option<usize>,
    /// Write one file per partition (part-00000.csv, ...) into this folder instead
    /// of printing; the folder appears only when every file is written.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace the --out folder if it exists.
    #[arg(long)]
    overwrite: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Declare a column's type: --dtype id=string (repeatable); for Parquet, the
    /// type of a partition folder column (month=6/).
    #[arg(long, value_parser = parse_dtype)]
    dtype: Vec<(String, DataType)>,
    /// Parse these columns as ISO-8601 timestamps (comma-separated).
    #[arg(long, value_delimiter = ',')]
    parse_dates: Vec<String>,
    /// JSON lines: lines read from each sampled file to infer the columns (default
    /// 1000); a field that the sample missed is an error naming its line.
    #[arg(long)]
    sample_lines: Option<usize>,
    #[command(flatten)]
    csv: super::CsvArgs,
    /// Print the time taken to stderr.
    #[arg(long)]
    time: bool,
    #[command(flatten)]
    run: RunArgs,
}

fn parse_dtype(s: &str) -> std::result::Result<(String, DataType), String> {
    let (col, ty) = s
        .split_once('=')
        .ok_or_else(|| format!("expected COLUMN=TYPE, found {s:?}"))?;
    let t =
        parse_type(ty.trim()).ok_or_else(|| format!("unknown type {ty:?}; known: {TYPE_NAMES}"))?;
    Ok((col.trim().to_string(), t))
}

pub fn run(a: QueryArgs) -> Result<()> {
    let started = Instant::now();
    let session = a.run.session()?;
    let writer = match &a.out {
        Some(dir) => PartitionWriter::folder(dir, a.format, a.overwrite)?,
        None => PartitionWriter::stdout(a.format),
    };
    let rows = AtomicUsize::new(0);
    // A CSV column found wider than inferred runs the query again.
    session.run_widening(|| run_once(&a, &session, &writer, &rows))?;
    writer.finish_and_report(rows.load(Ordering::Relaxed), started, a.time)
}

fn run_once(
    a: &QueryArgs,
    session: &outcore::Session,
    writer: &PartitionWriter,
    rows: &AtomicUsize,
) -> Result<()> {
    let mut reader = a
        .csv
        .apply_read(session.read(&a.glob))
        .with_parse_dates(a.parse_dates.clone());
    if let Some(n) = a.sample_lines {
        reader = reader.with_sample_lines(n);
    }
    for (c, t) in &a.dtype {
        reader = reader.with_dtype(c, t.clone());
    }
    let mut df = reader.load()?;
    if let Some(f) = &a.filter {
        df = df.filter(parse(f)?)?;
    }
    if let Some(other) = &a.join {
        if a.on.is_empty() {
            return Err(Error::plan("query", "--join needs --on KEY"));
        }
        let right = a.csv.apply_read(session.read(other)).load()?;
        let right_on = if a.right_on.is_empty() {
            &a.on
        } else {
            &a.right_on
        };
        let options = MergeOptions::left_right(&a.on, right_on).how(How::parse(&a.how)?);
        df = df.merge_with(&right, options)?;
    } else if !a.on.is_empty() || !a.right_on.is_empty() {
        return Err(Error::plan("query", "--on and --right-on need --join"));
    }
    if let Some(column) = &a.set_index {
        df = if a.sorted {
            df.set_index_sorted(column)?
        } else {
            df.set_index(column)?
        };
    }
    let aggs = a.agg.as_deref().map(parse_agg_list).transpose()?;
    if a.split_out.is_some() && a.groupby.is_empty() {
        return Err(Error::plan("query", "--split-out needs --groupby"));
    }
    let aggregated = match (&aggs, a.groupby.is_empty()) {
        (Some(aggs), false) => {
            let mut g = df.groupby(&a.groupby)?;
            if let Some(n) = a.split_out {
                g = g.split_out(n)?;
            }
            Some(g.agg_list(aggs)?)
        }
        (Some(aggs), true) => Some(df.agg_list(aggs)?),
        (None, false) => {
            return Err(Error::plan(
                "query",
                "--groupby needs --agg, e.g. --agg 'sum(v1)'",
            ));
        }
        (None, true) => None,
    };
    let sort: Vec<(String, bool)> = a
        .sort
        .iter()
        .map(|s| match s.strip_prefix('-') {
            Some(c) => (c.to_string(), false),
            None => (s.clone(), true),
        })
        .collect();
    let mut df = aggregated.unwrap_or(df);
    if !a.select.is_empty() {
        df = df.select(&a.select)?;
    }
    for (c, _) in &sort {
        outcore::expr::column_type(&df.schema(), c)?;
    }
    // One partition sorts in memory below; more are sorted across partitions
    // through the shuffle store and streamed like any other answer.
    let sort = if !sort.is_empty() && df.npartitions() > 1 {
        let by: Vec<(&str, bool)> = sort.iter().map(|(c, asc)| (c.as_str(), *asc)).collect();
        df = df.sort_values(&by)?;
        Vec::new()
    } else {
        sort
    };
    let streamed = a.format != Format::Table || a.out.is_some();
    if sort.is_empty() && a.head.is_none() && streamed {
        // Partition by partition: the answer is never gathered.
        let stats = df.for_each_partition(&|i, batch| {
            rows.fetch_add(batch.num_rows(), Ordering::Relaxed);
            writer.write(i, batch)
        })?;
        a.run.report(&stats);
    } else {
        let batch = if sort.is_empty() {
            match a.head {
                Some(n) => df.head(n)?,
                None => {
                    let (all, stats) = df.compute_with_stats()?;
                    a.run.report(&stats);
                    all
                }
            }
        } else {
            let (all, stats) = df.compute_with_stats()?;
            a.run.report(&stats);
            let by: Vec<(&str, bool)> = sort.iter().map(|(c, asc)| (c.as_str(), *asc)).collect();
            let sorted = sort_batch(&all, &by)?;
            match a.head {
                Some(n) => sorted.slice(0, n.min(sorted.num_rows())),
                None => sorted,
            }
        };
        rows.store(batch.num_rows(), Ordering::Relaxed);
        writer.write(0, &batch)?;
    }
    Ok(())
}
