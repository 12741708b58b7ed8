//! `outcore query`: filter, join, index, group, aggregate, sort and print a glob of
//! CSV, JSON lines or Parquet, or an outcore dataset.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::Args;
use outcore::agg::exprs::parse_agg_list;
use outcore::frame::sort_batch;
use outcore::{DataFrame, Error, Result, Session};

use super::grammar::{Emit, InputArgs, OutputArgs};
use super::output::{Format, PartitionWriter};

#[derive(Args)]
pub struct QueryArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Group by these columns (comma-separated); needs --agg.
    #[arg(long, value_delimiter = ',')]
    groupby: Vec<String>,
    /// Aggregations, e.g. 'sum(v1), mean(v3) as m, size()', 'median(v3)',
    /// 'quantile(v3, 0.9)', 'corr(v1, v2)', 'nlargest(2, v3)' (n rows per group),
    /// and arithmetic over them: 'max(v1) - min(v2) as range'. Without --groupby
    /// they aggregate the whole frame.
    #[arg(long)]
    agg: Option<String>,
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
    #[command(flatten)]
    output: OutputArgs,
}

/// The query's frame, and what is left to do on the gathered answer.
struct Built {
    df: DataFrame,
    /// Sort keys to apply in memory (a one-partition answer).
    sort: Vec<(String, bool)>,
}

fn build(a: &QueryArgs, session: &Session) -> Result<Built> {
    let df = a.input.load(session, false)?;
    let df = a.input.set_index(df)?;
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
    if !a.input.select.is_empty() {
        df = df.select(&a.input.select)?;
    }
    for (c, _) in &sort {
        outcore::expr::column_type(&df.schema(), c)?;
    }
    // One partition sorts in memory after computing; more are sorted across
    // partitions through the shuffle store and streamed like any other answer (and
    // so is any answer written as Parquet).
    let parquet = a.output.format == Some(Format::Parquet);
    let sort = if !sort.is_empty() && (df.npartitions() > 1 || parquet) {
        let by: Vec<(&str, bool)> = sort.iter().map(|(c, asc)| (c.as_str(), *asc)).collect();
        df = df.sort_values(&by)?;
        Vec::new()
    } else {
        sort
    };
    Ok(Built { df, sort })
}

pub fn run(a: QueryArgs) -> Result<()> {
    let started = Instant::now();
    let session = a.input.run.session()?;
    let e = Emit {
        input: &a.input,
        output: &a.output,
        default_format: Format::Table,
        started,
    };
    let format = a.output.format.unwrap_or(Format::Table);
    if a.head.is_some() && format == Format::Parquet {
        return Err(Error::plan(
            "--head",
            "prints the first rows; to write fewer rows as Parquet, use --filter",
        ));
    }
    if format == Format::Parquet || a.input.explain {
        // The answer as a dataset, or the plan.
        return super::grammar::emit(&session, &|s| Ok(build(&a, s)?.df), &e);
    }
    let writer = match &a.output.out {
        Some(dir) => PartitionWriter::folder(dir, format, a.output.overwrite)?,
        None => PartitionWriter::stdout(format),
    };
    let rows = AtomicUsize::new(0);
    let pictured = std::sync::Once::new();
    // A CSV column found wider than inferred runs the query again.
    session.run_widening(|| {
        let built = build(&a, &session)?;
        e.explain_or_picture(&built.df, &pictured)?;
        run_once(&a, built, &writer, &rows)
    })?;
    writer.finish_and_report(rows.load(Ordering::Relaxed), started, a.input.time)
}

fn run_once(
    a: &QueryArgs,
    built: Built,
    writer: &PartitionWriter,
    rows: &AtomicUsize,
) -> Result<()> {
    let Built { df, sort } = built;
    if sort.is_empty() && a.head.is_none() {
        // Partition by partition: the answer is never gathered (a table is drawn
        // per partition, as CSV is written per partition).
        let stats = df.for_each_partition(&|i, batch| {
            rows.fetch_add(batch.num_rows(), Ordering::Relaxed);
            writer.write(i, batch)
        })?;
        a.input.run.report(&stats);
    } else {
        let batch = if sort.is_empty() {
            match a.head {
                Some(n) => df.head(n)?,
                None => {
                    let (all, stats) = df.compute_with_stats()?;
                    a.input.run.report(&stats);
                    all
                }
            }
        } else {
            let (all, stats) = df.compute_with_stats()?;
            a.input.run.report(&stats);
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
