//! `outcore demo`: makes a small timeseries set and runs the classic queries on it,
//! printing each answer and its time.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use outcore::agg::{count, max, mean, size, std};
use outcore::datasets::{write_timeseries, TimeseriesSpec};
use outcore::expr::{col, lit};
use outcore::{Error, Result};

use super::RunArgs;

#[derive(Args)]
pub struct DemoArgs {
    /// Folder for the data (default: a temporary folder, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Days of per-second data to make.
    #[arg(long, default_value_t = 7)]
    days: u32,
    #[command(flatten)]
    run: RunArgs,
}

fn show(
    title: &str,
    code: &str,
    started: Instant,
    batch: &arrow::array::RecordBatch,
) -> Result<()> {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "── {title}\n   {code}\n{}\n   ({} rows, {secs:.3} s)\n",
        arrow::util::pretty::pretty_format_batches(std::slice::from_ref(batch))?,
        batch.num_rows()
    );
    Ok(())
}

pub fn run(a: DemoArgs) -> Result<()> {
    let temp;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
            temp.path().to_path_buf()
        }
    };
    let t = Instant::now();
    let files = write_timeseries(
        &dir,
        &TimeseriesSpec {
            days: a.days,
            ..TimeseriesSpec::default()
        },
    )?;
    println!(
        "made {} days of per-second timeseries ({} rows) in {} ({:.2} s)\n",
        files.len(),
        files.len() * 86_400,
        dir.display(),
        t.elapsed().as_secs_f64()
    );
    let session = a.run.session()?;
    let glob = dir.join("*.csv").to_string_lossy().into_owned();
    let df = session
        .read_csv(&glob)
        .with_parse_dates(["timestamp"])
        .load()?;
    println!(
        "{} partitions, columns: {}\n",
        df.npartitions(),
        df.columns().join(", ")
    );

    let t = Instant::now();
    let answer = df
        .filter(col("y").gt(lit(0.0)))?
        .groupby(&["name"])?
        .agg(&[std("x")])?
        .compute()?;
    show(
        "std of x by name where y > 0",
        "df[df.y > 0].groupby('name').x.std()",
        t,
        &answer,
    )?;

    let t = Instant::now();
    let answer = df
        .groupby(&["name"])?
        .agg(&[count("id"), mean("x"), max("y"), size()])?
        .compute()?;
    let answer = answer.slice(0, 5.min(answer.num_rows()));
    show(
        "several aggregations by name (first 5 groups)",
        "df.groupby('name').agg({'id': 'count', 'x': 'mean', 'y': 'max'})",
        t,
        &answer,
    )?;

    let t = Instant::now();
    let rows = df.filter(col("x").gt(lit(0.5)))?.num_rows()?;
    let secs = t.elapsed().as_secs_f64();
    println!("── rows with x > 0.5\n   len(df[df.x > 0.5])\n   {rows}\n   ({secs:.3} s)\n");
    Ok(())
}
