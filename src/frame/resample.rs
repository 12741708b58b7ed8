//! `resample(rule).agg(...)`: time-bin aggregation of a frame indexed by a
//! timestamp column with known divisions, with pandas' bins, labels and defaults.
//!
//! ```text
//!   partition j ──chunk──► partial j (one row per bin: count, sum, mean, M2, min,
//!        │                  max, first, last per column)
//!        ├──────────────────► bounds (first and last bin of the whole frame)
//!        ▼
//!   output i = bins owned by i, merged from partial i and any later partial whose
//!              first bin started in i's range, with every empty bin filled in
//! ```
//!
//! A bin belongs to the output partition whose division range holds the bin's left
//! edge. Rows of partition `j` lie in `[d_j, d_{j+1}]`, so its bins run from
//! `bin(d_j)` to `bin(d_{j+1})` and the outputs that need partial `j` are known from
//! the divisions alone: usually one, two when a bin straddles the boundary, and
//! several when one bin spans many partitions (the output that owns it then reads
//! them all). Partials merge with Chan's formula for the variance, so the answer
//! does not depend on where the partitions are cut. A row outside its partition's
//! divisions is an error, not a silently lost row.
//!
//! Every bin from the first row's to the last row's is in the answer, so a fine
//! rule over a long span makes many bins (two rows ten years apart at `1s`: 3e8).
//! Bins are never allocated for a whole span: each output's bins are cut into
//! pieces of at most [`BINS_PER_PARTITION`], one output partition each, so the
//! answer streams out in bounded batches. The total is checked when the query is
//! built: more than [`MAX_BINS`] is an error that says to choose a coarser rule.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, TimestampNanosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit};
use datafusion_common::ScalarValue;

use super::plan::{layer_name, Index, PlanNode};
use super::timerule::{Binner, Rule, Side};
use super::DataFrame;
use crate::agg::{AggFunc, AggSpec};
use crate::error::{Error, Result};
use crate::graph::{FnOperator, Graph, Key, Layer, Task, Value};
use crate::scheduler::RunContext;

const OP: &str = "resample";

/// The most bins one output partition holds (its working memory is about 80 bytes
/// a bin for each value column).
pub const BINS_PER_PARTITION: i64 = 1 << 16;

/// The most bins a resample may make (about 150,000 output partitions).
pub const MAX_BINS: i64 = 10_000_000_000;

/// A resample being built: `df.resample("1h")?.agg(&[mean("x")])`.
#[must_use]
#[derive(Debug, Clone)]
pub struct Resampler {
    frame: DataFrame,
    rule: Rule,
    closed: Option<Side>,
    label: Option<Side>,
    index: String,
    divisions: Vec<i64>,
}

/// Nanoseconds since the epoch of a division value (a timestamp of any unit, or a
/// date).
pub(crate) fn division_ns(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampNanosecond(Some(x), _) => Some(*x),
        ScalarValue::TimestampMicrosecond(Some(x), _) => x.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(x), _) => x.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(x), _) => x.checked_mul(1_000_000_000),
        ScalarValue::Date32(Some(d)) => (*d as i64).checked_mul(86_400_000_000_000),
        _ => None,
    }
}

/// The frame's timestamp index and its divisions in ns, or the error that says how
/// to get them.
pub(crate) fn time_index(df: &DataFrame, op: &'static str) -> Result<(String, Vec<i64>)> {
    let hint = "set the index first: set_index(\"timestamp\") shuffles the rows into order, \
        set_index_sorted(\"timestamp\") (CLI: --index timestamp --sorted) declares files already \
        in time order";
    let Some(ix) = df.plan.index() else {
        return Err(Error::plan(
            op,
            format!("needs a datetime index with known divisions; {hint}"),
        ));
    };
    let t = crate::expr::column_type(&df.schema, &ix.column)?;
    if !matches!(t, DataType::Timestamp(..) | DataType::Date32) {
        return Err(Error::plan(
            op,
            format!(
                "needs a datetime index, but index {:?} is {t}; parse it as a timestamp \
                 (parse_dates / --parse-dates) and {hint}",
                ix.column
            ),
        ));
    }
    let Some(div) = ix.divisions else {
        return Err(Error::plan(
            op,
            format!("index {:?} has unknown divisions; {hint}", ix.column),
        ));
    };
    let div = div
        .iter()
        .map(division_ns)
        .collect::<Option<Vec<i64>>>()
        .ok_or_else(|| Error::plan(op, "the divisions are not all timestamps"))?;
    Ok((ix.column, div))
}

impl DataFrame {
    /// Groups rows into time bins of `rule` (pandas' spelling: `15min`, `1h`, `D`,
    /// `W`, `ME`, `MS`, ...) by the frame's timestamp index, which must have known
    /// divisions. Finish with [`Resampler::agg`].
    pub fn resample(&self, rule: &str) -> Result<Resampler> {
        let rule = Rule::parse(rule)?;
        let (index, divisions) = time_index(self, OP)?;
        Ok(Resampler {
            frame: self.clone(),
            rule,
            closed: None,
            label: None,
            index,
            divisions,
        })
    }
}

/// Checks that `a` is an aggregation resample computes per bin (sum, count, size,
/// mean, min, max, std, var, first, last; `ohlc` expands to those) over a numeric
/// column, for `op`; returns the column and its type (`None` for `size()`). Both
/// [`Resampler::agg`] and the grouped resampler's check through it.
pub(super) fn resample_column_type<'a>(
    op: &'static str,
    schema: &arrow::datatypes::Schema,
    a: &'a AggSpec,
) -> Result<Option<(&'a str, DataType)>> {
    if !matches!(
        a.func,
        AggFunc::Sum
            | AggFunc::Count
            | AggFunc::Size
            | AggFunc::Mean
            | AggFunc::Min
            | AggFunc::Max
            | AggFunc::Std
            | AggFunc::Var
            | AggFunc::First
            | AggFunc::Last
    ) {
        return Err(Error::plan(
            op,
            format!(
                "{} is not a resample aggregation; use sum, mean, count, size, min, max, std, var, first, last or ohlc",
                a.func.name()
            ),
        ));
    }
    let Some(c) = &a.column else {
        return Ok(None);
    };
    let t = crate::expr::column_type(schema, c)?;
    if !t.is_numeric() {
        return Err(Error::plan(
            op,
            format!("{}({c}): column {c:?} is {t}, not a number", a.func.name()),
        ));
    }
    Ok(Some((c.as_str(), t)))
}

impl Resampler {
    /// Which side of each bin is closed (pandas' default: right for `W` and `ME`,
    /// left otherwise).
    pub fn closed(mut self, side: Side) -> Self {
        self.closed = Some(side);
        self
    }

    /// Which edge labels each bin (same defaults as `closed`).
    pub fn label(mut self, side: Side) -> Self {
        self.label = Some(side);
        self
    }

    /// Aggregates each bin: sum, count, size, mean, min, max, std, var, first,
    /// last. Every bin from the first row's to the last row's is in the answer; an
    /// empty bin has count, size and sum 0 and nulls elsewhere (as pandas). The
    /// answer has the index column (bin labels) first, then one column per spec.
    pub fn agg(&self, aggs: &[AggSpec]) -> Result<DataFrame> {
        let schema = self.frame.schema();
        let mut value_cols: Vec<String> = Vec::new();
        let mut outs = Vec::new();
        let mut fields = vec![Field::new(
            &self.index,
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        )];
        for a in aggs {
            let (slot, t) = match resample_column_type(OP, &schema, a)? {
                None => (usize::MAX, DataType::Int64),
                Some((c, t)) => {
                    let slot = match value_cols.iter().position(|v| v == c) {
                        Some(s) => s,
                        None => {
                            value_cols.push(c.to_string());
                            value_cols.len() - 1
                        }
                    };
                    (slot, t)
                }
            };
            let out_t = match a.func {
                AggFunc::Sum if !t.is_floating() => DataType::Int64,
                f => f.output_type(&t),
            };
            if fields.iter().any(|f| f.name() == &a.alias) {
                return Err(Error::plan(
                    OP,
                    format!("column {:?} is computed twice", a.alias),
                ));
            }
            fields.push(Field::new(&a.alias, out_t, true));
            outs.push((a.func, slot));
        }
        let first = *self
            .divisions
            .first()
            .ok_or_else(|| Error::plan(OP, "no divisions"))?;
        let binner = Binner::new(&self.rule, self.closed, self.label, first);
        let mut inner = Inner {
            binner,
            index: self.index.clone(),
            value_cols,
            outs,
            divisions: self.divisions.clone(),
            pieces: Vec::new(),
            schema: Arc::new(Schema::new(fields)),
        };
        inner.cut_pieces(&self.rule.text)?;
        let node = ResampleNode {
            inner: Arc::new(inner),
        };
        Ok(self.frame.with_node(Arc::new(node)))
    }

    /// `agg` with one function over several columns, named as the columns (as
    /// pandas' `df[['x', 'y']].resample('1h').mean()`).
    pub fn apply(&self, func: AggFunc, columns: &[&str]) -> Result<DataFrame> {
        let specs: Vec<AggSpec> = columns
            .iter()
            .map(|c| AggSpec::new(func, *c).alias(*c))
            .collect();
        self.agg(&specs)
    }

    /// Open, high, low and close of `column` per bin, named `open(column)`,
    /// `high(column)`, `low(column)`, `close(column)` (pandas' `ohlc()`).
    pub fn ohlc(&self, column: &str) -> Result<DataFrame> {
        self.agg(&ohlc_specs(column))
    }
}

/// The four aggregations of `ohlc(column)`.
pub fn ohlc_specs(column: &str) -> Vec<AggSpec> {
    vec![
        AggSpec::new(AggFunc::First, column).alias(format!("open({column})")),
        AggSpec::new(AggFunc::Max, column).alias(format!("high({column})")),
        AggSpec::new(AggFunc::Min, column).alias(format!("low({column})")),
        AggSpec::new(AggFunc::Last, column).alias(format!("close({column})")),
    ]
}

struct Inner {
    binner: Binner,
    index: String,
    value_cols: Vec<String>,
    /// Each output column after the index: its function and value column slot.
    outs: Vec<(AggFunc, usize)>,
    divisions: Vec<i64>,
    /// The output partitions: each one a range of bins `[lo, hi]` (empty when
    /// `lo > hi`), in order; the ranges tile the bins of the divisions' span.
    pieces: Vec<(i64, i64)>,
    schema: SchemaRef,
}

struct ResampleNode {
    inner: Arc<Inner>,
}

/// Per-bin state of one value column.
#[derive(Clone, Copy, Default)]
struct State {
    n: i64,
    sum: f64,
    isum: i64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    first: f64,
    last: f64,
}

impl State {
    /// Merges `b`, which comes later in time (Chan et al. for the variance).
    fn merge(&mut self, b: &State) {
        if b.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *b;
            return;
        }
        let n = self.n + b.n;
        let delta = b.mean - self.mean;
        self.mean += delta * b.n as f64 / n as f64;
        self.m2 += b.m2 + delta * delta * (self.n as f64) * (b.n as f64) / n as f64;
        self.sum += b.sum;
        self.isum = self.isum.wrapping_add(b.isum);
        self.min = self.min.min(b.min);
        self.max = self.max.max(b.max);
        self.last = b.last;
        self.n = n;
    }
}

/// Fields of a partial: `bin`, `rows`, then these per value column.
const STATE_FIELDS: usize = 9;

impl Inner {
    fn npart(&self) -> usize {
        self.divisions.len() - 1
    }

    /// Cuts each input partition's owned bins into pieces of at most
    /// [`BINS_PER_PARTITION`]; an error when the span holds more than [`MAX_BINS`].
    fn cut_pieces(&mut self, rule: &str) -> Result<()> {
        let n = self.npart();
        let (d0, dn) = (self.divisions[0], self.divisions[n]);
        let (first, last) = (self.binner.bin(d0), self.binner.bin(dn));
        let total = i128::from(last) - i128::from(first) + 1;
        if total > i128::from(MAX_BINS) {
            return Err(Error::plan(
                OP,
                format!(
                    "rule {rule} over {} .. {} makes {total} bins, more than the limit of {MAX_BINS}; choose a coarser rule or filter the rows first",
                    fmt_ts(d0),
                    fmt_ts(dn)
                ),
            ));
        }
        let mut pieces = Vec::new();
        for i in 0..n {
            let lo = if i == 0 { first } else { self.first_owned(i) };
            let hi = if i + 1 < n {
                self.first_owned(i + 1).saturating_sub(1)
            } else {
                last
            };
            if hi < lo {
                pieces.push((lo, hi));
                continue;
            }
            let mut at = lo;
            loop {
                let end = at.saturating_add(BINS_PER_PARTITION - 1).min(hi);
                pieces.push((at, end));
                if end >= hi {
                    break;
                }
                at = end + 1;
            }
        }
        self.pieces = pieces;
        Ok(())
    }

    /// The first bin owned by output `i` (`i64::MIN` for the first).
    fn first_owned(&self, i: usize) -> i64 {
        if i == 0 {
            return i64::MIN;
        }
        let d = self.divisions[i];
        let b = self.binner.bin(d);
        if self.binner.left_edge(b) >= d {
            b
        } else {
            b + 1
        }
    }

    /// The answer's divisions: output `i` labels the bins it owns, so its labels lie
    /// in `[label(first owned by i), label(first owned by i + 1))`, and all lie
    /// between the labels of the first and last divisions' bins. Unknown when a
    /// partition owns no bin (repeated divisions).
    fn output_divisions(&self) -> Option<Arc<[ScalarValue]>> {
        let n = self.pieces.len();
        let mut d = Vec::with_capacity(n + 1);
        for &(lo, _) in &self.pieces {
            d.push(self.binner.label(lo));
        }
        d.push(
            self.binner
                .label(self.binner.bin(self.divisions[self.npart()])),
        );
        if d[..n].windows(2).any(|w| w[0] >= w[1]) || d[n] < d[n - 1] {
            return None;
        }
        Some(
            d.into_iter()
                .map(|x| ScalarValue::TimestampNanosecond(Some(x), None))
                .collect(),
        )
    }

    fn partial_schema(&self) -> SchemaRef {
        let mut fields = vec![
            Field::new("bin", DataType::Int64, false),
            Field::new("rows", DataType::Int64, false),
        ];
        for c in &self.value_cols {
            for (s, t) in [
                ("n", DataType::Int64),
                ("sum", DataType::Float64),
                ("isum", DataType::Int64),
                ("mean", DataType::Float64),
                ("m2", DataType::Float64),
                ("min", DataType::Float64),
                ("max", DataType::Float64),
                ("first", DataType::Float64),
                ("last", DataType::Float64),
            ] {
                fields.push(Field::new(format!("{c}\u{0}{s}"), t, false));
            }
        }
        Arc::new(Schema::new(fields))
    }

    /// Partition `j`'s rows → one row per bin.
    fn chunk(&self, j: usize, batch: &RecordBatch) -> Result<RecordBatch> {
        let ts = batch
            .column_by_name(&self.index)
            .ok_or_else(|| crate::expr::unknown_column(&batch.schema(), &self.index))?;
        let ts = cast(ts, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
        let ts = ts
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .ok_or_else(|| Error::Internal("index cast to timestamp".into()))?;
        let (lo, hi) = (self.divisions[j], self.divisions[j + 1]);
        // (bin, row) of rows with a timestamp, in bin order.
        let mut rows: Vec<(i64, u32)> = Vec::with_capacity(ts.len());
        let mut sorted = true;
        for (r, t) in ts.iter().enumerate() {
            let Some(t) = t else { continue };
            if t < lo || t > hi {
                return Err(Error::plan(
                    OP,
                    format!(
                        "partition {j} holds index value {} outside its divisions [{}, {}]; \
                         the divisions are wrong (set the index again)",
                        fmt_ts(t),
                        fmt_ts(lo),
                        fmt_ts(hi)
                    ),
                ));
            }
            let b = self.binner.bin(t);
            if rows.last().is_some_and(|&(pb, _)| pb > b) {
                sorted = false;
            }
            rows.push((b, r as u32));
        }
        if !sorted {
            rows.sort_by_key(|&(b, _)| b);
        }
        // Runs of equal bins.
        let mut runs: Vec<(i64, usize, usize)> = Vec::new();
        let mut s = 0;
        while s < rows.len() {
            let b = rows[s].0;
            let mut e = s + 1;
            while e < rows.len() && rows[e].0 == b {
                e += 1;
            }
            runs.push((b, s, e));
            s = e;
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(runs.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(
                runs.iter().map(|r| (r.2 - r.1) as i64),
            )),
        ];
        for c in &self.value_cols {
            let a = batch
                .column_by_name(c)
                .ok_or_else(|| crate::expr::unknown_column(&batch.schema(), c))?;
            let f = cast(a, &DataType::Float64)?;
            let f = f.as_primitive::<Float64Type>();
            let ints = if a.data_type().is_integer() {
                Some(cast(a, &DataType::Int64)?)
            } else {
                None
            };
            let ints = ints.as_ref().map(|a| a.as_primitive::<Int64Type>());
            let mut states = Vec::with_capacity(runs.len());
            for &(_, s, e) in &runs {
                let mut st = State::default();
                for &(_, r) in &rows[s..e] {
                    let r = r as usize;
                    if f.is_null(r) || f.value(r).is_nan() {
                        continue;
                    }
                    let x = f.value(r);
                    if st.n == 0 {
                        st.first = x;
                        st.min = x;
                        st.max = x;
                    } else {
                        st.min = st.min.min(x);
                        st.max = st.max.max(x);
                    }
                    st.last = x;
                    st.n += 1;
                    st.sum += x;
                    if let Some(i) = ints {
                        st.isum = st.isum.wrapping_add(i.value(r));
                    }
                }
                if st.n > 0 {
                    st.mean = st.sum / st.n as f64;
                    let mut m2 = 0.0;
                    for &(_, r) in &rows[s..e] {
                        let r = r as usize;
                        if f.is_valid(r) && !f.value(r).is_nan() {
                            let d = f.value(r) - st.mean;
                            m2 += d * d;
                        }
                    }
                    st.m2 = m2;
                }
                states.push(st);
            }
            columns.extend(state_columns(&states));
        }
        Ok(RecordBatch::try_new(self.partial_schema(), columns)?)
    }

    /// Output piece `k` from the bounds and the partials it needs, in partition
    /// order.
    fn finalize(
        &self,
        k: usize,
        bounds: Option<(i64, i64)>,
        partials: &[&RecordBatch],
    ) -> Result<RecordBatch> {
        let (lo, hi) = match bounds {
            None => (0, -1),
            Some((gl, gh)) => {
                let (plo, phi) = self.pieces[k];
                (plo.max(gl), phi.min(gh))
            }
        };
        let nbins = if hi >= lo { (hi - lo + 1) as usize } else { 0 };
        let ncols = self.value_cols.len();
        let mut rows = vec![0i64; nbins];
        let mut states = vec![State::default(); nbins * ncols];
        for p in partials {
            let bins = p.column(0).as_primitive::<Int64Type>();
            let counts = p.column(1).as_primitive::<Int64Type>();
            let cols: Vec<PartialCols> = (0..ncols).map(|c| PartialCols::new(p, c)).collect();
            for r in 0..p.num_rows() {
                let b = bins.value(r);
                if b < lo || b > hi {
                    continue;
                }
                let slot = (b - lo) as usize;
                rows[slot] += counts.value(r);
                for (c, pc) in cols.iter().enumerate() {
                    states[slot * ncols + c].merge(&pc.get(r));
                }
            }
        }
        let labels = TimestampNanosecondArray::from_iter_values(
            (0..nbins as i64).map(|k| self.binner.label(lo + k)),
        );
        let mut columns: Vec<ArrayRef> = vec![Arc::new(labels)];
        for ((func, slot), field) in self.outs.iter().zip(self.schema.fields().iter().skip(1)) {
            let st = |k: usize| &states[k * ncols + *slot];
            let f64s = |g: &dyn Fn(&State) -> Option<f64>| -> ArrayRef {
                Arc::new(Float64Array::from_iter((0..nbins).map(|k| g(st(k)))))
            };
            let a: ArrayRef = match func {
                AggFunc::Size => Arc::new(Int64Array::from_iter_values(rows.iter().copied())),
                AggFunc::Count => {
                    Arc::new(Int64Array::from_iter_values((0..nbins).map(|k| st(k).n)))
                }
                AggFunc::Sum if field.data_type() == &DataType::Int64 => {
                    Arc::new(Int64Array::from_iter_values((0..nbins).map(|k| st(k).isum)))
                }
                AggFunc::Sum => f64s(&|s| Some(if s.n > 0 { s.sum } else { 0.0 })),
                AggFunc::Mean => f64s(&|s| (s.n > 0).then_some(s.mean)),
                AggFunc::Var => f64s(&|s| (s.n > 1).then(|| s.m2 / (s.n - 1) as f64)),
                AggFunc::Std => f64s(&|s| (s.n > 1).then(|| (s.m2 / (s.n - 1) as f64).sqrt())),
                AggFunc::Min => f64s(&|s| (s.n > 0).then_some(s.min)),
                AggFunc::Max => f64s(&|s| (s.n > 0).then_some(s.max)),
                AggFunc::First => f64s(&|s| (s.n > 0).then_some(s.first)),
                AggFunc::Last => f64s(&|s| (s.n > 0).then_some(s.last)),
                other => return Err(Error::Internal(format!("{} in resample", other.name()))),
            };
            let a = if a.data_type() == field.data_type() {
                a
            } else {
                cast(&a, field.data_type())?
            };
            columns.push(a);
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

fn state_columns(states: &[State]) -> Vec<ArrayRef> {
    let f = |g: fn(&State) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(states.iter().map(g)))
    };
    vec![
        Arc::new(Int64Array::from_iter_values(states.iter().map(|s| s.n))),
        f(|s| s.sum),
        Arc::new(Int64Array::from_iter_values(states.iter().map(|s| s.isum))),
        f(|s| s.mean),
        f(|s| s.m2),
        f(|s| s.min),
        f(|s| s.max),
        f(|s| s.first),
        f(|s| s.last),
    ]
}

/// Typed views of one value column's state fields in a partial.
struct PartialCols<'a> {
    n: &'a Int64Array,
    isum: &'a Int64Array,
    f: [&'a Float64Array; 7],
}

impl<'a> PartialCols<'a> {
    fn new(p: &'a RecordBatch, c: usize) -> Self {
        let base = 2 + c * STATE_FIELDS;
        let fl = |k: usize| p.column(base + k).as_primitive::<Float64Type>();
        PartialCols {
            n: p.column(base).as_primitive::<Int64Type>(),
            isum: p.column(base + 2).as_primitive::<Int64Type>(),
            f: [fl(1), fl(3), fl(4), fl(5), fl(6), fl(7), fl(8)],
        }
    }

    fn get(&self, r: usize) -> State {
        State {
            n: self.n.value(r),
            sum: self.f[0].value(r),
            isum: self.isum.value(r),
            mean: self.f[1].value(r),
            m2: self.f[2].value(r),
            min: self.f[3].value(r),
            max: self.f[4].value(r),
            first: self.f[5].value(r),
            last: self.f[6].value(r),
        }
    }
}

/// `2000-01-05 12:00:00` for error messages.
pub(crate) fn fmt_ts(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .naive_utc()
        .format("%Y-%m-%dT%H:%M:%S%.f")
        .to_string()
}

impl PlanNode for ResampleNode {
    fn name(&self) -> &str {
        OP
    }
    fn schema(&self, _inputs: &[SchemaRef]) -> SchemaRef {
        self.inner.schema.clone()
    }
    fn npartitions(&self, _inputs: &[usize]) -> usize {
        self.inner.pieces.len()
    }
    fn index(&self) -> Option<Index> {
        Some(Index {
            column: self.inner.index.clone(),
            divisions: self.inner.output_divisions(),
        })
    }
    fn input_columns(&self, _required: Option<&BTreeSet<String>>) -> Vec<Option<BTreeSet<String>>> {
        let mut need: BTreeSet<String> = self.inner.value_cols.iter().cloned().collect();
        need.insert(self.inner.index.clone());
        vec![Some(need)]
    }
    fn lower(&self, inputs: &[Vec<Key>], graph: &mut Graph, _ctx: &Arc<RunContext>) -> Vec<Key> {
        let inner = &self.inner;
        let n = inner.pieces.len();
        let chunk_name = layer_name("resample-chunk");
        let chunks: Vec<Task> = inputs[0]
            .iter()
            .enumerate()
            .map(|(j, k)| {
                let me = inner.clone();
                Task {
                    key: Key::new(&chunk_name, j),
                    deps: vec![k.clone()],
                    op: FnOperator::new("resample-chunk", move |v: &[Arc<Value>]| {
                        Ok(Value::Batch(me.chunk(j, v[0].as_batch()?)?))
                    }),
                }
            })
            .collect();
        let partials: Vec<Key> = chunks.iter().map(|t| t.key.clone()).collect();
        graph.add_layer(Layer {
            name: chunk_name,
            tasks: chunks,
        });
        let bounds_name = layer_name("resample-bounds");
        let bounds = Key::new(&bounds_name, 0);
        graph.add_layer(Layer {
            name: bounds_name,
            tasks: vec![Task {
                key: bounds.clone(),
                deps: partials.clone(),
                op: FnOperator::new("resample-bounds", |v: &[Arc<Value>]| {
                    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
                    for p in v {
                        let b = p.as_batch()?.column(0).as_primitive::<Int64Type>().clone();
                        if !b.is_empty() {
                            lo = lo.min(b.value(0));
                            hi = hi.max(b.value(b.len() - 1));
                        }
                    }
                    Ok(Value::Pieces(if lo <= hi {
                        vec![
                            Value::Scalar(ScalarValue::Int64(Some(lo))),
                            Value::Scalar(ScalarValue::Int64(Some(hi))),
                        ]
                    } else {
                        vec![]
                    }))
                }),
            }],
        });
        // Which outputs read partial j: the pieces whose bins meet the bins its
        // divisions allow. (Piece ends never decrease, so a binary search finds the
        // first.)
        let mut deps: Vec<Vec<Key>> = vec![vec![bounds.clone()]; n];
        for (j, pk) in partials.iter().enumerate() {
            let a = inner.binner.bin(inner.divisions[j]);
            let b = inner.binner.bin(inner.divisions[j + 1]);
            let start = inner.pieces.partition_point(|&(_, hi)| hi < a);
            for (k, &(lo, hi)) in inner.pieces.iter().enumerate().skip(start) {
                if lo > b {
                    break;
                }
                if lo <= hi {
                    deps[k].push(pk.clone());
                }
            }
        }
        let name = layer_name("resample-finalize");
        let tasks: Vec<Task> = deps
            .into_iter()
            .enumerate()
            .map(|(i, deps)| {
                let me = inner.clone();
                Task {
                    key: Key::new(&name, i),
                    deps,
                    op: FnOperator::new("resample-finalize", move |v: &[Arc<Value>]| {
                        let bounds = match v[0].as_ref() {
                            Value::Pieces(p) => match p.as_slice() {
                                [Value::Scalar(ScalarValue::Int64(Some(a))), Value::Scalar(ScalarValue::Int64(Some(b)))] => {
                                    Some((*a, *b))
                                }
                                _ => None,
                            },
                            _ => None,
                        };
                        let parts = v[1..].iter().map(|x| x.as_batch()).collect::<Result<Vec<_>>>()?;
                        Ok(Value::Batch(me.finalize(i, bounds, &parts)?))
                    }),
                }
            })
            .collect();
        let keys = tasks.iter().map(|t| t.key.clone()).collect();
        graph.add_layer(Layer { name, tasks });
        keys
    }
}
