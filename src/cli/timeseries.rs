//! `outcore resample`, `outcore rolling`, `outcore repartition` and `outcore
//! persist`: the time series and reuse commands. Each reads what `Session::read`
//! reads (CSV, JSON lines, Parquet, or a dataset folder as `persist` and
//! `repartition` write them, with their index and divisions), indexes it by
//! `--index` (a shuffle, or none with `--sorted`), and prints or writes the answer
//! partition by partition.

use std::time::Instant;

use clap::Args;
use datafusion_common::ScalarValue;
use outcore::agg::{parse_aggs, AggSpec};
use outcore::frame::repartition::Repartition;
use outcore::frame::resample::ohlc_specs;
use outcore::frame::rolling::Window;
use outcore::frame::timerule::{parse_timestamp, Side};
use outcore::{DataFrame, Error, Result, Session};

use super::grammar::{emit, emit_each, Answer, Emit, InputArgs, OutputArgs};
use super::output::Format;

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

#[derive(Args)]
pub struct ResampleArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Bin width in pandas' spelling: 15min, 1h, 6h, D, W, ME (month end), MS.
    /// Repeat it, each with its own --agg, for several answers from one read of
    /// the input (one task graph), printed in turn, each under a '# RULE AGG'
    /// line, or written to --out DIR/1, DIR/2, ...
    #[arg(long, required = true)]
    rule: Vec<String>,
    /// Aggregations per bin, e.g. 'mean(x), mean(y), count(x), ohlc(x)'; one for
    /// each --rule, in the same order.
    #[arg(long, required = true)]
    agg: Vec<String>,
    /// Bins per group of these columns (comma-separated), as pandas'
    /// df.groupby(keys).resample(rule): the keys, the bin, then the aggregations.
    #[arg(long, value_delimiter = ',')]
    groupby: Vec<String>,
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
    if a.rule.len() != a.agg.len() {
        return Err(Error::plan(
            "resample",
            format!(
                "give one --agg for each --rule: found {} --rule and {} --agg",
                a.rule.len(),
                a.agg.len()
            ),
        ));
    }
    // Every flag is checked before any work.
    let aggs = a
        .agg
        .iter()
        .map(|t| parse_agg_list(t))
        .collect::<Result<Vec<_>>>()?;
    let closed = a.closed.as_deref().map(Side::parse).transpose()?;
    let label = a.label.as_deref().map(Side::parse).transpose()?;
    let session = a.input.run.session()?;
    let bins = |df: &DataFrame, rule: &str, aggs: &[AggSpec]| {
        // The two builders share their methods but not a type.
        macro_rules! sides {
            ($r:expr) => {{
                let mut r = $r;
                if let Some(c) = closed {
                    r = r.closed(c);
                }
                if let Some(l) = label {
                    r = r.label(l);
                }
                r.agg(aggs)
            }};
        }
        if a.groupby.is_empty() {
            sides!(df.resample(rule)?)
        } else {
            sides!(df.groupby(&a.groupby)?.resample(rule)?)
        }
    };
    let e = Emit {
        input: &a.input,
        output: &a.output,
        default_format: Format::Table,
        started,
    };
    if a.rule.len() == 1 {
        let build = |session: &Session| {
            let df = a.input.load_indexed(session, &a.groupby)?;
            bins(&df, &a.rule[0], &aggs[0])
        };
        return emit(&session, &build, &e);
    }
    let input = |session: &Session| a.input.load_indexed(session, &a.groupby);
    let builders: Vec<Box<Answer<'_>>> = a
        .rule
        .iter()
        .zip(&aggs)
        .map(|(rule, aggs)| Box::new(move |df: &DataFrame| bins(df, rule, aggs)) as Box<Answer<'_>>)
        .collect();
    // Each answer printed under its rule and aggregations.
    let answers: Vec<(String, &Answer<'_>)> = a
        .rule
        .iter()
        .zip(&a.agg)
        .zip(&builders)
        .map(|((rule, agg), b)| (format!("{rule} {}", agg.trim()), b.as_ref()))
        .collect();
    emit_each(&session, &input, &answers, &e)
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
    /// Windows per group of these columns (comma-separated), as pandas'
    /// df.groupby(keys).rolling(window): rows in key order, then index order (needs
    /// --index); the keys first.
    #[arg(long, value_delimiter = ',')]
    groupby: Vec<String>,
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
        let df = a.input.load_indexed(session, &a.groupby)?;
        let window = Window::parse(&a.window)?;
        let aggs = parse_agg_list(&a.agg)?;
        if a.groupby.is_empty() {
            let mut r = df.rolling(window)?;
            if let Some(m) = a.min_periods {
                r = r.min_periods(m);
            }
            r.agg(&aggs)
        } else {
            let mut r = df.groupby(&a.groupby)?.rolling(window)?;
            if let Some(m) = a.min_periods {
                r = r.min_periods(m);
            }
            r.agg(&aggs)
        }
    };
    let e = Emit {
        input: &a.input,
        output: &a.output,
        default_format: Format::Table,
        started,
    };
    emit(&session, &build, &e)
}

#[derive(Args)]
pub struct RepartitionArgs {
    #[command(flatten)]
    input: InputArgs,
    /// This many partitions.
    #[arg(long, group = "partitioning")]
    npartitions: Option<usize>,
    /// Partitions of about this size in memory, e.g. 100MB.
    #[arg(long, value_parser = super::parse_size, group = "partitioning")]
    partition_size: Option<u64>,
    /// One partition per period, e.g. 1D or 6h (needs --index).
    #[arg(long, group = "partitioning")]
    freq: Option<String>,
    /// New divisions of the index, comma-separated timestamps (needs --index).
    #[arg(long, value_delimiter = ',', group = "partitioning")]
    divisions: Vec<String>,
    #[command(flatten)]
    output: OutputArgs,
}

/// `--out` is required where the answer is a dataset.
fn require_out(output: &OutputArgs, command: &'static str) -> Result<()> {
    if output.out.is_none() {
        return Err(Error::plan(command, "give the folder to write: --out DIR"));
    }
    Ok(())
}

pub fn repartition(a: RepartitionArgs) -> Result<()> {
    let started = Instant::now();
    require_out(&a.output, "repartition")?;
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
    let build = |session: &Session| a.input.load_indexed(session, &[])?.repartition(how.clone());
    let e = Emit {
        input: &a.input,
        output: &a.output,
        default_format: Format::Parquet,
        started,
    };
    emit(&session, &build, &e)
}

#[derive(Args)]
pub struct PersistArgs {
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn persist(a: PersistArgs) -> Result<()> {
    let started = Instant::now();
    require_out(&a.output, "persist")?;
    let session = a.input.run.session()?;
    let build = |session: &Session| a.input.load_indexed(session, &[]);
    let e = Emit {
        input: &a.input,
        output: &a.output,
        default_format: Format::Parquet,
        started,
    };
    emit(&session, &build, &e)
}
