//! `outcore bag`: a bag of JSON records (or text lines) from a glob: filter, pluck,
//! flatten, then a result (a count, frequencies, distinct values, top k, a sum or
//! mean, a groupby with aggregations) or the records themselves, as JSON lines or
//! CSV, to stdout or one file per partition in `--out DIR`. Several results in one
//! command (`--count --frequencies name --mean amount --by name`) are computed
//! together, the files read once ([`outcore::bag::compute_all`]), and printed one
//! after another, each under a `# NAME` line.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clap::{ArgGroup, Args, ValueEnum};
use outcore::bag::{key_path, Bag, FieldPath, OnError};
use outcore::{Error, Result};
use serde_json::Value as J;

use super::{parse_size, RunArgs};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum BagFormat {
    /// One JSON value per line.
    Json,
    /// CSV: objects by field, lists by position, other values as one column.
    Csv,
    /// A Parquet dataset (needs --out; records must be objects), read back by
    /// every frame command.
    Parquet,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum OnErrorArg {
    /// Fail, naming the file and line.
    Raise,
    /// Skip the line and report how many were skipped.
    Skip,
}

#[derive(Args)]
#[command(group(ArgGroup::new("result").multiple(true).args([
    "count", "frequencies", "distinct", "topk", "sum", "mean", "min", "max", "std", "var",
    "groupby", "take",
])))]
pub struct BagArgs {
    /// JSON-lines files (or text with --text): a glob, a folder, or a file; .gz and
    /// .zst files are read whole.
    glob: String,
    /// Read lines of text instead of JSON records.
    #[arg(long)]
    text: bool,
    /// Keep records where this is true, e.g. "age > 30 and address.city == 'Oslo'".
    #[arg(long)]
    filter: Option<String>,
    /// Replace each record by the value at this path, e.g. address.city or
    /// transactions[].amount.
    #[arg(long)]
    pluck: Option<String>,
    /// With --pluck: the value (JSON) for records without the path, instead of an
    /// error.
    #[arg(long, requires = "pluck")]
    default: Option<String>,
    /// Replace each record (a list) by its elements.
    #[arg(long)]
    flatten: bool,
    /// Print the number of records.
    #[arg(long)]
    count: bool,
    /// Print each distinct record with its count; with PATH, each distinct value at
    /// PATH (null where missing).
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "")]
    frequencies: Option<String>,
    /// Print each distinct record once.
    #[arg(long)]
    distinct: bool,
    /// Print the K largest records (by --by PATH).
    #[arg(long, value_name = "K")]
    topk: Option<usize>,
    /// The path --topk orders by; with --sum, --mean, --min or --max, the key:
    /// one result per distinct value at PATH (as --groupby PATH --agg 'mean(..)').
    #[arg(long, value_name = "PATH")]
    by: Option<String>,
    /// Print the sum of the values at PATH (every element when the path has []).
    #[arg(long, value_name = "PATH")]
    sum: Option<String>,
    /// Print the mean of the values at PATH.
    #[arg(long, value_name = "PATH")]
    mean: Option<String>,
    /// Print the smallest value at PATH.
    #[arg(long, value_name = "PATH")]
    min: Option<String>,
    /// Print the largest value at PATH.
    #[arg(long, value_name = "PATH")]
    max: Option<String>,
    /// Print the standard deviation of the values at PATH (--ddof, default 0 as
    /// Dask's bag).
    #[arg(long, value_name = "PATH")]
    std: Option<String>,
    /// Print the variance of the values at PATH (--ddof, default 0 as Dask's bag).
    #[arg(long, value_name = "PATH")]
    var: Option<String>,
    /// Delta degrees of freedom of --std and --var.
    #[arg(long, default_value_t = 0)]
    ddof: u32,
    /// Group records by the value at PATH; with --agg, one object per group, else
    /// [key, [records...]] pairs.
    #[arg(long, value_name = "PATH")]
    groupby: Option<String>,
    /// With --groupby: 'count(), sum(PATH), mean(PATH), min(PATH), max(PATH)'.
    #[arg(long, requires = "groupby")]
    agg: Option<String>,
    /// Print the first N records.
    #[arg(long, value_name = "N")]
    take: Option<usize>,
    /// Partitions of the result of --frequencies, --distinct and --groupby
    /// (default: input partitions / 8).
    #[arg(long)]
    split_out: Option<usize>,
    /// Lines that are not valid JSON: raise (default) or skip (and report the count).
    #[arg(long, value_enum, default_value_t = OnErrorArg::Raise)]
    on_error: OnErrorArg,
    /// The longest line accepted, e.g. 64MiB (default).
    #[arg(long, value_parser = parse_size)]
    max_line_bytes: Option<u64>,
    /// Write the records as JSON lines, one file per partition, into this folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace the --out folder if it exists.
    #[arg(long)]
    overwrite: bool,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = BagFormat::Json)]
    format: BagFormat,
    #[command(flatten)]
    run: RunArgs,
}

/// One aggregation of `--agg`.
#[derive(Clone)]
struct BagAgg {
    func: String,
    path: Option<FieldPath>,
    name: String,
}

fn parse_bag_aggs(s: &str) -> Result<Vec<BagAgg>> {
    let mut out = Vec::new();
    for part in split_top(s) {
        let t = part.trim();
        let bad = || {
            Error::plan(
                "bag",
                format!("invalid aggregation {t:?}; write e.g. 'count(), sum(transactions[].amount), mean(age)'"),
            )
        };
        let open = t.find('(').ok_or_else(bad)?;
        let inner = t
            .strip_suffix(')')
            .ok_or_else(bad)?
            .get(open + 1..)
            .ok_or_else(bad)?
            .trim();
        let func = t[..open].trim().to_ascii_lowercase();
        if !matches!(func.as_str(), "count" | "sum" | "mean" | "min" | "max") {
            return Err(Error::plan(
                "bag",
                format!("unknown aggregation {func:?}; use count, sum, mean, min or max"),
            ));
        }
        let path = if inner.is_empty() {
            if func != "count" {
                return Err(bad());
            }
            None
        } else {
            Some(FieldPath::parse(inner)?)
        };
        out.push(BagAgg {
            name: format!("{func}({inner})"),
            func,
            path,
        });
    }
    if out.is_empty() {
        return Err(Error::plan("bag", "--agg names no aggregation"));
    }
    Ok(out)
}

/// Splits on commas outside brackets and parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0usize, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !s[start..].trim().is_empty() {
        out.push(&s[start..]);
    }
    out
}

fn fnum(x: f64) -> J {
    serde_json::Number::from_f64(x).map_or(J::Null, J::Number)
}

fn better(func: &str, new: &J, old: &J) -> bool {
    if old.is_null() {
        return true;
    }
    let ord = match (new, old) {
        (J::String(a), J::String(b)) => a.cmp(b),
        _ => new
            .as_f64()
            .unwrap_or(f64::NAN)
            .total_cmp(&old.as_f64().unwrap_or(f64::NAN)),
    };
    if func == "min" {
        ord.is_lt()
    } else {
        ord.is_gt()
    }
}

/// One aggregation's running value over one record's values, typed (no JSON
/// value built per value): a record's list of amounts becomes one slot.
enum Running {
    Count(u64),
    Sum(f64),
    Mean(f64, u64),
    /// The smallest or largest value so far (numbers or strings).
    Extreme(Option<J>),
}

impl Running {
    fn new(func: &str) -> Running {
        match func {
            "count" => Running::Count(0),
            "sum" => Running::Sum(0.0),
            "mean" => Running::Mean(0.0, 0),
            _ => Running::Extreme(None),
        }
    }

    /// Adds `value`, the value at `agg`'s path in one record (`None` for
    /// `count()`, which counts the record).
    fn add(&mut self, agg: &BagAgg, value: Option<&J>) -> Result<()> {
        let Some(value) = value else {
            if let Running::Count(n) = self {
                *n += 1;
            }
            return Ok(());
        };
        let num = |v: &J| {
            v.as_f64().ok_or_else(|| {
                Error::plan("bag", format!("{}: expected a number, found {v}", agg.func))
            })
        };
        let mut add_one = |v: &J| -> Result<()> {
            match self {
                Running::Count(n) => *n += 1,
                Running::Sum(s) => *s += num(v)?,
                Running::Mean(s, n) => {
                    *s += num(v)?;
                    *n += 1;
                }
                Running::Extreme(best) => {
                    if best.as_ref().is_none_or(|b| better(&agg.func, v, b)) {
                        *best = Some(v.clone());
                    }
                }
            }
            Ok(())
        };
        // Every element when the value is a list; nulls and missing values are left out.
        match value {
            J::Array(items) => items.iter().filter(|v| !v.is_null()).try_for_each(add_one),
            J::Null => Ok(()),
            v => add_one(v),
        }
    }

    /// The accumulator as the foldby's JSON slot (see [`merge_partial`]).
    fn into_slot(self) -> J {
        match self {
            Running::Count(n) => J::from(n),
            Running::Sum(s) => fnum(s),
            Running::Mean(s, n) => J::Array(vec![fnum(s), J::from(n)]),
            Running::Extreme(v) => v.unwrap_or(J::Null),
        }
    }
}

/// `--groupby PATH --agg ...` as a foldby: each record's values are first folded
/// into typed accumulators ([`Running`]), one slot per aggregation; the foldby
/// merges slots by key (a slot holds a count, a sum, `[sum, n]` for a mean, or the
/// extreme so far) and each group is finished into one object.
fn groupby_agg(bag: &Bag, key: &str, aggs: Vec<BagAgg>) -> Result<Bag> {
    // Only the key and the aggregated paths are read, taken from each record
    // while it is parsed (`values_at`): [key, value at path 1, ...].
    let mut reads = vec![key.to_string()];
    let mut at = Vec::with_capacity(aggs.len());
    for a in &aggs {
        at.push(a.path.as_ref().map(|p| {
            let p = p.to_string();
            reads.iter().position(|r| *r == p).unwrap_or_else(|| {
                reads.push(p);
                reads.len() - 1
            })
        }));
    }
    let aggs = Arc::new(aggs);
    let (a0, a1, a3) = (aggs.clone(), aggs.clone(), aggs.clone());
    // Each record becomes [key, slot 1, slot 2, ...] as soon as it is parsed (its
    // own values already summed, counted or compared), so a partition holds small
    // lists rather than records, and the foldby merges slots as it merges partials.
    let rows = bag.values_at(&reads)?.map(move |r| {
        let J::Array(mut values) = r else {
            return Err(Error::Internal("values_at gave no list".into()));
        };
        let mut row = Vec::with_capacity(a0.len() + 1);
        for (a, i) in a0.iter().zip(&at) {
            let mut run = Running::new(&a.func);
            run.add(a, i.map(|i| &values[i]))?;
            row.push(run.into_slot());
        }
        row.insert(0, std::mem::take(&mut values[0]));
        Ok(J::Array(row))
    });
    let initial = J::Array(
        aggs.iter()
            .map(|a| Running::new(&a.func).into_slot())
            .collect(),
    );
    // Adds slots (of a record, or of another partial) into an accumulator.
    let merge = Arc::new(move |acc: J, other: &[J]| {
        let J::Array(mut acc) = acc else {
            return Err(Error::Internal("groupby partials are not lists".into()));
        };
        for ((slot, o), ag) in acc.iter_mut().zip(other).zip(a1.iter()) {
            merge_partial(&ag.func, slot, o);
        }
        Ok(J::Array(acc))
    });
    let merge2 = merge.clone();
    let folded = rows.foldby(
        Arc::new(|r: &J| Ok(r.get(0).cloned().unwrap_or(J::Null))),
        move |acc, r| merge(acc, r.as_array().and_then(|r| r.get(1..)).unwrap_or(&[])),
        initial,
        move |a, b| merge2(a, b.as_array().map_or(&[][..], |b| &b[..])),
    );
    let key_name = key.to_string();
    Ok(folded.map(move |pair| {
        let J::Array(mut kv) = pair else {
            return Err(Error::Internal("a groupby result is not a pair".into()));
        };
        let acc = kv.pop().unwrap_or(J::Null);
        let k = kv.pop().unwrap_or(J::Null);
        let mut obj = serde_json::Map::new();
        obj.insert(key_name.clone(), k);
        if let J::Array(slots) = acc {
            for (slot, a) in slots.into_iter().zip(a3.iter()) {
                let v = match a.func.as_str() {
                    "mean" => {
                        let n = slot.get(1).and_then(J::as_f64).unwrap_or(0.0);
                        let s = slot.get(0).and_then(J::as_f64).unwrap_or(0.0);
                        if n > 0.0 {
                            fnum(s / n)
                        } else {
                            J::Null
                        }
                    }
                    _ => slot,
                };
                obj.insert(a.name.clone(), v);
            }
        }
        Ok(J::Object(obj))
    }))
}

/// Adds another partition's accumulator `other` into `slot` (both as
/// [`Running::into_slot`] makes them).
fn merge_partial(func: &str, slot: &mut J, other: &J) {
    match func {
        "count" => *slot = J::from(slot.as_u64().unwrap_or(0) + other.as_u64().unwrap_or(0)),
        "sum" => *slot = fnum(slot.as_f64().unwrap_or(0.0) + other.as_f64().unwrap_or(0.0)),
        "mean" => {
            let part = |v: &J, i: usize| v.get(i).and_then(J::as_f64).unwrap_or(0.0);
            let s = part(slot, 0) + part(other, 0);
            let n = slot.get(1).and_then(J::as_u64).unwrap_or(0)
                + other.get(1).and_then(J::as_u64).unwrap_or(0);
            *slot = J::Array(vec![fnum(s), J::from(n)]);
        }
        _ => {
            if !other.is_null() && better(func, other, slot) {
                *slot = other.clone();
            }
        }
    }
}

/// A bag of every value at `path` (each element when it is a list; records
/// without it left out).
fn values_bag(bag: &Bag, path: &str) -> Result<Bag> {
    // A pluck (with a null default) lets the reader extract the values while
    // parsing; lists are then spread and nulls dropped.
    Ok(bag.pluck_or(path, J::Null)?.map_partitions(|vals| {
        let mut out = Vec::with_capacity(vals.len());
        for v in vals {
            match v {
                J::Array(items) => out.extend(items.into_iter().filter(|v| !v.is_null())),
                J::Null => {}
                other => out.push(other),
            }
        }
        Ok(out)
    }))
}

fn csv_cell(v: &J) -> String {
    let s = match v {
        J::Null => String::new(),
        J::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Writes records to stdout in order, the CSV header once.
struct Printer {
    format: BagFormat,
    header: Mutex<Option<Vec<String>>>,
}

impl Printer {
    fn write(&self, records: &[J]) -> Result<()> {
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        let path = Path::new("<stdout>");
        let io = |e| Error::io(path, e);
        match self.format {
            BagFormat::Parquet => {
                return Err(Error::plan(
                    "--format parquet",
                    "writes a dataset of records (objects): give --out DIR, and no \
                     reduction (--count, --sum, --take, ...)",
                ))
            }
            BagFormat::Json => outcore::bag::write_json_lines(&mut out, path, records)?,
            BagFormat::Csv => {
                let mut header = self.header.lock().unwrap_or_else(|p| p.into_inner());
                for r in records {
                    let cols: Vec<String> = match r {
                        J::Object(o) => o.keys().cloned().collect(),
                        J::Array(a) => (0..a.len()).map(|i| format!("c{i}")).collect(),
                        _ => vec!["value".into()],
                    };
                    if header.is_none() {
                        writeln!(out, "{}", cols.join(",")).map_err(io)?;
                        *header = Some(cols.clone());
                    }
                    let cells: Vec<String> = match r {
                        J::Object(o) => header
                            .as_ref()
                            .map(|h| {
                                h.iter()
                                    .map(|c| csv_cell(o.get(c).unwrap_or(&J::Null)))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        J::Array(a) => a.iter().map(csv_cell).collect(),
                        other => vec![csv_cell(other)],
                    };
                    writeln!(out, "{}", cells.join(",")).map_err(io)?;
                }
            }
        }
        out.flush().map_err(io)
    }
}

pub fn run(a: BagArgs) -> Result<()> {
    let reduces = a.count
        || a.take.is_some()
        || a.topk.is_some()
        || [&a.sum, &a.mean, &a.min, &a.max, &a.std, &a.var]
            .iter()
            .any(|p| p.is_some());
    if a.format == BagFormat::Parquet && (a.out.is_none() || reduces) {
        return Err(Error::plan(
            "--format parquet",
            "writes a dataset of records (objects): give --out DIR, and no reduction \
             (--count, --sum, --take, ...)",
        ));
    }
    let session = a.run.session()?;
    let mut reader = if a.text {
        session.read_text(&a.glob)
    } else {
        session.read_json(&a.glob)
    };
    if let Some(m) = a.max_line_bytes {
        reader = reader.with_max_line_bytes(m);
    }
    if a.on_error == OnErrorArg::Skip {
        reader = reader.on_error(OnError::Skip);
    }
    let mut bag = reader.load()?;
    let read = bag.clone();
    if let Some(f) = &a.filter {
        bag = bag.query(f)?;
    }
    if let Some(p) = &a.pluck {
        bag = match &a.default {
            Some(d) => {
                let d: J = serde_json::from_str(d).unwrap_or_else(|_| J::String(d.clone()));
                bag.pluck_or(p, d)?
            }
            None => bag.pluck(p)?,
        };
    }
    if a.flatten {
        bag = bag.flatten();
    }
    if let Some(n) = a.split_out {
        bag = bag.with_split_out(n)?;
    }
    let printer = Printer {
        format: a.format,
        header: Mutex::new(None),
    };
    if a.take.is_some() || a.topk.is_some() {
        let rows = match (a.take, a.topk) {
            (Some(n), None) if questions(&a, &bag)?.is_empty() => bag.take(n)?,
            (None, Some(k)) if questions(&a, &bag)?.is_empty() => {
                let key = a.by.as_deref().map(key_path).transpose()?;
                bag.topk(k, key)?
            }
            _ => return Err(Error::plan(
                "bag",
                "--take and --topk give records, not one result among several: ask for them alone",
            )),
        };
        report_skipped(&read);
        printer.write(&rows)?;
        return Ok(());
    }
    let mut asked = questions(&a, &bag)?;
    if asked.len() > 1 {
        if a.out.is_some() {
            return Err(Error::plan(
                "bag",
                "--out writes one bag: ask for one result (or none) with it",
            ));
        }
        // One graph, the files read once; each result printed under its name.
        let bags: Vec<&Bag> = asked.iter().map(|q| &q.bag).collect();
        let (results, stats) = outcore::bag::compute_all(&bags)?;
        a.run.report(&stats.run);
        report_skipped(&read);
        let stdout = std::io::stdout();
        for (q, records) in asked.iter().zip(results) {
            {
                let mut out = stdout.lock();
                writeln!(out, "# {}", q.name)
                    .and_then(|_| out.flush())
                    .map_err(|e| Error::io(Path::new("<stdout>"), e))?;
            }
            let section = Printer {
                format: a.format,
                header: Mutex::new(None),
            };
            section.write(&records)?;
        }
        return Ok(());
    }
    let result = match asked.pop() {
        Some(q) if q.scalar => {
            let (got, stats) = q.bag.compute_with_stats()?;
            a.run.report(&stats.run);
            report_skipped(&read);
            return printer.write(&got);
        }
        Some(q) => q.bag,
        None => bag,
    };
    if a.format == BagFormat::Parquet {
        // Records (objects) as a frame, written as the frame commands write it.
        let Some(dir) = &a.out else {
            return Err(Error::plan(
                "--format parquet",
                "writes a dataset folder: give --out DIR",
            ));
        };
        let stats = result.to_dataframe(None)?.to_parquet(
            dir,
            &outcore::frame::parquet::WriteOptions {
                overwrite: a.overwrite,
                query: Some(super::grammar::command_line()),
            },
        )?;
        a.run.report(&stats);
        report_skipped(&read);
        eprintln!("wrote {}", dir.display());
        return Ok(());
    }
    if let Some(dir) = &a.out {
        let (dir, stats) = result.to_textfiles(dir, a.overwrite)?;
        a.run.report(&stats.run);
        report_skipped(&read);
        eprintln!("wrote {}", dir.display());
        return Ok(());
    }
    let stats = result.for_each_partition(&|_, records| printer.write(records))?;
    a.run.report(&stats.run);
    report_skipped(&read);
    Ok(())
}

/// One result a command asks for: its name (the `# NAME` line when there are
/// several), the bag that answers it, and whether that is one value.
struct Question {
    name: String,
    bag: Bag,
    scalar: bool,
}

/// The results asked for, in a fixed order: count, sum, mean, min, max, std, var,
/// frequencies, distinct, groupby.
fn questions(a: &BagArgs, bag: &Bag) -> Result<Vec<Question>> {
    let mut out = Vec::new();
    let one = |name: String, bag: Bag| Question {
        name,
        bag,
        scalar: true,
    };
    let many = |name: String, bag: Bag| Question {
        name,
        bag,
        scalar: false,
    };
    if a.count {
        out.push(one("count".into(), bag.count_bag()));
    }
    // With --by (and not --topk), sums, means and extremes are per key.
    let by = a.by.as_deref().filter(|_| a.topk.is_none());
    for (func, path) in [
        ("sum", &a.sum),
        ("mean", &a.mean),
        ("min", &a.min),
        ("max", &a.max),
    ] {
        let Some(p) = path else { continue };
        let name = format!("{func}({p})");
        out.push(match by {
            Some(key) => {
                let agg = BagAgg {
                    func: func.to_string(),
                    path: Some(FieldPath::parse(p)?),
                    name: name.clone(),
                };
                many(
                    format!("{name} by {key}"),
                    groupby_agg(bag, key, vec![agg])?,
                )
            }
            None => {
                let values = values_bag(bag, p)?;
                let lazy = match func {
                    "sum" => values.sum_bag(),
                    "mean" => values.mean_bag(),
                    "min" => values.min_bag(),
                    _ => values.max_bag(),
                };
                one(name, lazy)
            }
        });
    }
    for (func, path) in [("std", &a.std), ("var", &a.var)] {
        let Some(p) = path else { continue };
        if by.is_some() {
            return Err(Error::plan(
                "bag",
                format!("--{func} has no --by; --by keys --sum, --mean, --min and --max"),
            ));
        }
        let values = values_bag(bag, p)?;
        let lazy = match func {
            "std" => values.std_bag(a.ddof),
            _ => values.var_bag(a.ddof),
        };
        out.push(one(format!("{func}({p})"), lazy));
    }
    if by.is_some()
        && ![&a.sum, &a.mean, &a.min, &a.max]
            .iter()
            .any(|p| p.is_some())
    {
        return Err(Error::plan(
            "bag",
            "--by needs --topk, --sum, --mean, --min or --max",
        ));
    }
    if let Some(path) = &a.frequencies {
        let (name, values) = if path.is_empty() {
            ("frequencies".to_string(), bag.clone())
        } else {
            (format!("frequencies({path})"), bag.pluck_or(path, J::Null)?)
        };
        let freq = values.frequencies().map(|pair| match pair {
            J::Array(mut kv) if kv.len() == 2 => {
                let n = kv.pop().unwrap_or(J::Null);
                let mut o = serde_json::Map::new();
                o.insert("value".into(), kv.pop().unwrap_or(J::Null));
                o.insert("count".into(), n);
                Ok(J::Object(o))
            }
            other => Ok(other),
        });
        out.push(many(name, freq));
    }
    if a.distinct {
        out.push(many("distinct".into(), bag.distinct()));
    }
    if let Some(key) = &a.groupby {
        let g = match &a.agg {
            Some(spec) => groupby_agg(bag, key, parse_bag_aggs(spec)?)?,
            None => bag.groupby(key_path(key)?),
        };
        out.push(many(format!("groupby({key})"), g));
    }
    Ok(out)
}

fn report_skipped(read: &Bag) {
    let n = read.skipped_lines();
    if n > 0 {
        eprintln!("skipped {n} lines that were not valid JSON");
    }
}
