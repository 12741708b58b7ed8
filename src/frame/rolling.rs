//! `rolling(window).agg(...)`: moving-window mean, sum, min, max, std, var and
//! count over a window of the last `n` rows or of a time span (`5min`, the window
//! `(t - 5min, t]` as pandas), computed per partition with the rows before it
//! ("ghosting", Dask's `map_overlap`).
//!
//! ```text
//!   part 0 ──► tail 0 ──► tail 1 ──► tail 2 ...     tail j = the rows a window
//!     │          │  ▲       │  ▲                      ending in part j+1 may still
//!     ▼          ▼  │part 1 ▼  │part 2              need (last n - 1 rows, or rows
//!   out 0      out 1        out 2                   within the span of the last)
//! ```
//!
//! Each tail is built from the previous tail and its partition, so a window that
//! reaches back over several partitions still sees every row it needs (Dask
//! refuses windows larger than a partition). Tails hold only the index and the
//! aggregated columns. Sums and variances slide with Welford's update (add the new
//! row, remove the old); min and max with monotonic deques: O(rows) per partition
//! whatever the window.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit};

use super::plan::{layer_name, Index, PlanNode};
use super::resample::{fmt_ts, time_index};
use super::timerule::Rule;
use super::DataFrame;
use crate::agg::{AggFunc, AggSpec};
use crate::error::{Error, Result};
use crate::graph::{FnOperator, Graph, Key, Layer, Task, Value};
use crate::scheduler::RunContext;

const OP: &str = "rolling";

/// A rolling window: the last `n` rows, or a time span back from each row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Window {
    /// The row and the `n - 1` rows before it.
    Rows(usize),
    /// Rows whose index lies in `(t - span, t]`, the span as a fixed rule (`5min`).
    Time(String),
}

impl Window {
    /// `3` is three rows; `5min`, `1h`, `2D` are time spans.
    pub fn parse(text: &str) -> Result<Window> {
        match text.trim().parse::<usize>() {
            Ok(n) => Ok(Window::Rows(n)),
            Err(_) => Ok(Window::Time(text.trim().to_string())),
        }
    }
}

/// A rolling computation being built: `df.rolling(Window::Rows(3))?.agg(...)`.
#[must_use]
#[derive(Debug, Clone)]
pub struct Rolling {
    frame: DataFrame,
    kind: Kind,
    min_periods: Option<usize>,
    /// Group keys (`groupby(keys).rolling(..)`): windows never reach across a
    /// change of key; the frame is sorted by the keys, then `ordered_by`.
    keys: Vec<String>,
    /// The column that orders rows within a group (the index), when grouped.
    ordered_by: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Rows(usize),
    /// Span in ns.
    Time(i64),
}

impl DataFrame {
    /// A moving window over the rows in order; finish with [`Rolling::agg`]. Time
    /// windows need a timestamp index with known divisions.
    pub fn rolling(&self, window: Window) -> Result<Rolling> {
        let kind = kind_of(window)?;
        if let Kind::Time(_) = kind {
            time_index(self, OP)?;
        }
        Ok(Rolling {
            frame: self.clone(),
            kind,
            min_periods: None,
            keys: Vec::new(),
            ordered_by: None,
        })
    }
}

/// `window` as a [`Kind`], checking that a time window is a fixed span.
fn kind_of(window: Window) -> Result<Kind> {
    match window {
        Window::Rows(0) => Err(Error::plan(OP, "the window must be at least 1 row")),
        Window::Rows(n) => Ok(Kind::Rows(n)),
        Window::Time(span) => {
            let ns = Rule::parse(&span)?.fixed_ns().ok_or_else(|| {
                Error::plan(
                    OP,
                    format!("a time window is a fixed span (s, min, h, D), not {span:?}"),
                )
            })?;
            Ok(Kind::Time(ns))
        }
    }
}

/// Windows per group over `sorted`, whose rows are in order of `keys`, then of
/// `ordered_by` (see [`super::grouped`]).
pub(crate) fn grouped(
    sorted: DataFrame,
    window: Window,
    keys: Vec<String>,
    ordered_by: String,
) -> Result<Rolling> {
    let kind = kind_of(window)?;
    if let Kind::Time(_) = kind {
        let t = crate::expr::column_type(&sorted.schema(), &ordered_by)?;
        if !matches!(t, DataType::Timestamp(..) | DataType::Date32) {
            return Err(Error::plan(
                OP,
                format!("a time window needs a datetime index, but {ordered_by:?} is {t}"),
            ));
        }
    }
    Ok(Rolling {
        frame: sorted,
        kind,
        min_periods: None,
        keys,
        ordered_by: Some(ordered_by),
    })
}

impl Rolling {
    /// Non-null values a window needs for a result (default: the window's row
    /// count for row windows, 1 for time windows, as pandas). `count` ignores it.
    pub fn min_periods(mut self, n: usize) -> Self {
        self.min_periods = Some(n);
        self
    }

    /// The frame's columns and one more per spec (mean, sum, min, max, std, var,
    /// count of a numeric column), computed over each row's window.
    pub fn agg(&self, aggs: &[AggSpec]) -> Result<DataFrame> {
        let schema = self.frame.schema();
        let mut value_cols: Vec<String> = Vec::new();
        let mut outs = Vec::new();
        for a in aggs {
            let ok = matches!(
                a.func,
                AggFunc::Mean
                    | AggFunc::Sum
                    | AggFunc::Min
                    | AggFunc::Max
                    | AggFunc::Std
                    | AggFunc::Var
                    | AggFunc::Count
            );
            let Some(c) = a.column.as_ref().filter(|_| ok) else {
                return Err(Error::plan(
                    OP,
                    format!("{} is not a rolling aggregation; use mean, sum, min, max, std, var or count", a.func.name()),
                ));
            };
            let t = crate::expr::column_type(&schema, c)?;
            if !t.is_numeric() {
                return Err(Error::plan(
                    OP,
                    format!("column {c:?} is {t}, not a number"),
                ));
            }
            if schema.index_of(&a.alias).is_ok() || outs.iter().any(|o: &OutCol| o.alias == a.alias)
            {
                return Err(Error::plan(
                    OP,
                    format!("column {:?} already exists", a.alias),
                ));
            }
            let slot = match value_cols.iter().position(|v| v == c) {
                Some(s) => s,
                None => {
                    value_cols.push(c.clone());
                    value_cols.len() - 1
                }
            };
            let out_t = match a.func {
                AggFunc::Count => DataType::Int64,
                _ => DataType::Float64,
            };
            outs.push(OutCol {
                func: a.func,
                slot,
                alias: a.alias.clone(),
                data_type: out_t,
            });
        }
        let index = match &self.ordered_by {
            Some(_) => None,
            None => self.frame.plan.index(),
        };
        let time_column = match &self.ordered_by {
            Some(c) => Some(c.clone()),
            None => index.as_ref().map(|ix| ix.column.clone()),
        };
        let min_periods = self.min_periods.unwrap_or(match self.kind {
            Kind::Rows(n) => n,
            Kind::Time(_) => 1,
        });
        let node = RollingNode {
            inner: Arc::new(Inner {
                kind: self.kind,
                min_periods,
                index: time_column,
                keys: self.keys.clone(),
                value_cols,
                outs,
            }),
            index,
        };
        Ok(self.frame.with_node(Arc::new(node)))
    }
}

struct OutCol {
    func: AggFunc,
    slot: usize,
    alias: String,
    data_type: DataType,
}

struct Inner {
    kind: Kind,
    min_periods: usize,
    index: Option<String>,
    /// Group keys: windows stop at a change of key.
    keys: Vec<String>,
    value_cols: Vec<String>,
    outs: Vec<OutCol>,
}

struct RollingNode {
    inner: Arc<Inner>,
    index: Option<Index>,
}

impl Inner {
    /// The columns tails keep, in this order: the index (time windows), the group
    /// keys, then the value columns.
    fn tail_columns(&self) -> Vec<String> {
        let mut c = Vec::new();
        if let (Kind::Time(_), Some(ix)) = (self.kind, &self.index) {
            c.push(ix.clone());
        }
        c.extend(self.keys.iter().cloned());
        c.extend(self.value_cols.iter().cloned());
        c
    }

    /// Position of the first key column in a projected batch.
    fn key_offset(&self) -> usize {
        usize::from(matches!(self.kind, Kind::Time(_)) && self.index.is_some())
    }

    /// For each row of a projected batch, the first row of its group (all 0
    /// without keys).
    fn group_starts(&self, batch: &RecordBatch) -> Result<Vec<usize>> {
        let n = batch.num_rows();
        if self.keys.is_empty() || n == 0 {
            return Ok(vec![0; n]);
        }
        let off = self.key_offset();
        let keys: Vec<ArrayRef> = (off..off + self.keys.len())
            .map(|i| batch.column(i).clone())
            .collect();
        let mut starts = Vec::with_capacity(n);
        for r in arrow::compute::partition(&keys)?.ranges() {
            starts.extend(std::iter::repeat_n(r.start, r.len()));
        }
        Ok(starts)
    }

    fn project(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let names = self.tail_columns();
        let idx = names
            .iter()
            .map(|n| {
                batch
                    .schema()
                    .index_of(n)
                    .map_err(|_| crate::expr::unknown_column(&batch.schema(), n))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(batch.project(&idx)?)
    }

    fn times(&self, batch: &RecordBatch, j: usize, groups: &[usize]) -> Result<Option<Vec<i64>>> {
        let (Kind::Time(_), Some(ix)) = (self.kind, &self.index) else {
            return Ok(None);
        };
        let a = cast(
            batch
                .column_by_name(ix)
                .ok_or_else(|| crate::expr::unknown_column(&batch.schema(), ix))?,
            &DataType::Timestamp(TimeUnit::Nanosecond, None),
        )?;
        let a = cast(&a, &DataType::Int64)?;
        let a = a.as_primitive::<Int64Type>();
        if a.null_count() > 0 {
            return Err(Error::plan(
                OP,
                format!("partition {j}: the index {ix:?} has nulls"),
            ));
        }
        let v = a.values().to_vec();
        let unsorted = (1..v.len()).find(|&r| v[r] < v[r - 1] && groups[r] != r);
        if let Some(w) = unsorted.map(|r| r - 1) {
            return Err(Error::plan(
                OP,
                format!(
                    "partition {j}: the index {ix:?} is not sorted ({} after {}); set_index first",
                    fmt_ts(v[w + 1]),
                    fmt_ts(v[w])
                ),
            ));
        }
        Ok(Some(v))
    }

    /// The rows a later window may need, from the previous tail and partition `j`.
    fn tail(
        &self,
        j: usize,
        prev: Option<&RecordBatch>,
        part: &RecordBatch,
    ) -> Result<RecordBatch> {
        let part = self.project(part)?;
        let both = match prev {
            Some(p) => concat_batches(&part.schema(), [p, &part])?,
            None => part,
        };
        let n = both.num_rows();
        let groups = self.group_starts(&both)?;
        // Only the last group's rows can be in a later window.
        let g = groups.last().copied().unwrap_or(0);
        let keep = match self.kind {
            Kind::Rows(w) => (w - 1).min(n - g),
            Kind::Time(span) => {
                let t = self.times(&both, j, &groups)?.expect("time window");
                match t.last() {
                    None => 0,
                    Some(&last) => n - g - t[g..].partition_point(|&x| x <= last - span),
                }
            }
        };
        Ok(both.slice(n - keep, keep))
    }

    /// Partition `j` with the rolled columns appended.
    fn output(
        &self,
        j: usize,
        prev: Option<&RecordBatch>,
        part: &RecordBatch,
    ) -> Result<RecordBatch> {
        let own = self.project(part)?;
        let skip = prev.map_or(0, |p| p.num_rows());
        let both = match prev {
            Some(p) => concat_batches(&own.schema(), [p, &own])?,
            None => own,
        };
        let n = both.num_rows();
        let groups = self.group_starts(&both)?;
        // Window start of each row, never before its group's first row.
        let starts: Vec<usize> = match self.kind {
            Kind::Rows(w) => (0..n)
                .map(|r| (r + 1).saturating_sub(w).max(groups[r]))
                .collect(),
            Kind::Time(span) => {
                let t = self.times(&both, j, &groups)?.expect("time window");
                let mut s = 0;
                t.iter()
                    .enumerate()
                    .map(|(r, &x)| {
                        s = s.max(groups[r]);
                        while t[s] <= x - span {
                            s += 1;
                        }
                        s
                    })
                    .collect()
            }
        };
        let offset = self.key_offset() + self.keys.len();
        let values: Vec<ArrayRef> = (0..self.value_cols.len())
            .map(|c| cast(both.column(offset + c), &DataType::Float64))
            .collect::<Result<_, _>>()?;
        let mut columns: Vec<ArrayRef> = part.columns().to_vec();
        let mut fields: Vec<Field> = part
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for o in &self.outs {
            let x = values[o.slot].as_primitive::<Float64Type>();
            let a = slide(x, &starts, o.func, self.min_periods);
            columns.push(a.slice(skip, n - skip));
            fields.push(Field::new(&o.alias, o.data_type.clone(), true));
        }
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(part.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &options,
        )?)
    }
}

/// `func` over the window `[starts[r], r]` of every row `r`.
fn slide(x: &Float64Array, starts: &[usize], func: AggFunc, min_periods: usize) -> ArrayRef {
    let n = x.len();
    let valid = |i: usize| x.is_valid(i) && !x.value(i).is_nan();
    match func {
        AggFunc::Min | AggFunc::Max => {
            let better = |a: f64, b: f64| if func == AggFunc::Min { a <= b } else { a >= b };
            let mut dq: VecDeque<usize> = VecDeque::new();
            let mut count = 0usize;
            let mut lo = 0;
            let mut out = Vec::with_capacity(n);
            for (r, &start) in starts.iter().enumerate() {
                if valid(r) {
                    while dq.back().is_some_and(|&b| better(x.value(r), x.value(b))) {
                        dq.pop_back();
                    }
                    dq.push_back(r);
                    count += 1;
                }
                while lo < start {
                    if valid(lo) {
                        count -= 1;
                    }
                    lo += 1;
                }
                while dq.front().is_some_and(|&f| f < start) {
                    dq.pop_front();
                }
                out.push(
                    (count >= min_periods.max(1)).then(|| x.value(*dq.front().expect("count > 0"))),
                );
            }
            Arc::new(Float64Array::from(out))
        }
        _ => {
            let (mut cnt, mut mean, mut m2, mut sum) = (0i64, 0.0f64, 0.0f64, 0.0f64);
            let mut lo = 0;
            let mut counts = Vec::with_capacity(if func == AggFunc::Count { n } else { 0 });
            let mut out = Vec::with_capacity(n);
            for (r, &start) in starts.iter().enumerate() {
                if valid(r) {
                    let v = x.value(r);
                    cnt += 1;
                    sum += v;
                    let d = v - mean;
                    mean += d / cnt as f64;
                    m2 += d * (v - mean);
                }
                while lo < start {
                    if valid(lo) {
                        let v = x.value(lo);
                        cnt -= 1;
                        sum -= v;
                        if cnt == 0 {
                            (mean, m2, sum) = (0.0, 0.0, 0.0);
                        } else {
                            let d = v - mean;
                            mean -= d / cnt as f64;
                            m2 -= d * (v - mean);
                        }
                    }
                    lo += 1;
                }
                let enough = cnt as usize >= min_periods.max(1);
                match func {
                    AggFunc::Count => counts.push(cnt),
                    AggFunc::Sum => out.push(enough.then_some(sum)),
                    AggFunc::Mean => out.push(enough.then_some(mean)),
                    AggFunc::Var => {
                        out.push((enough && cnt > 1).then(|| m2.max(0.0) / (cnt - 1) as f64))
                    }
                    _ => out
                        .push((enough && cnt > 1).then(|| (m2.max(0.0) / (cnt - 1) as f64).sqrt())),
                }
            }
            if func == AggFunc::Count {
                Arc::new(Int64Array::from(counts))
            } else {
                Arc::new(Float64Array::from(out))
            }
        }
    }
}

impl PlanNode for RollingNode {
    fn name(&self) -> &str {
        OP
    }
    fn schema(&self, inputs: &[SchemaRef]) -> SchemaRef {
        let mut fields: Vec<Field> = inputs[0]
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(
            self.inner
                .outs
                .iter()
                .map(|o| Field::new(&o.alias, o.data_type.clone(), true)),
        );
        Arc::new(Schema::new(fields))
    }
    fn npartitions(&self, inputs: &[usize]) -> usize {
        inputs[0]
    }
    fn index(&self) -> Option<Index> {
        self.index.clone()
    }
    fn input_columns(&self, required: Option<&BTreeSet<String>>) -> Vec<Option<BTreeSet<String>>> {
        vec![required.map(|r| {
            let mut need: BTreeSet<String> = r
                .iter()
                .filter(|c| !self.inner.outs.iter().any(|o| &o.alias == *c))
                .cloned()
                .collect();
            need.extend(self.inner.tail_columns());
            if let Some(ix) = &self.index {
                need.insert(ix.column.clone());
            }
            need
        })]
    }
    fn lower(&self, inputs: &[Vec<Key>], graph: &mut Graph, _ctx: &Arc<RunContext>) -> Vec<Key> {
        let parts = &inputs[0];
        let tail_name = layer_name("rolling-tail");
        let out_name = layer_name("rolling");
        let mut tails = Vec::with_capacity(parts.len());
        let mut outs = Vec::with_capacity(parts.len());
        for (j, pk) in parts.iter().enumerate() {
            let prev: Option<Key> = (j > 0).then(|| Key::new(&tail_name, j - 1));
            let deps: Vec<Key> = prev.iter().cloned().chain([pk.clone()]).collect();
            let (me, me2) = (self.inner.clone(), self.inner.clone());
            if j + 1 < parts.len() {
                tails.push(Task {
                    key: Key::new(&tail_name, j),
                    deps: deps.clone(),
                    op: FnOperator::new("rolling-tail", move |v: &[Arc<Value>]| {
                        let (prev, part) = split(v)?;
                        Ok(Value::Batch(me.tail(j, prev, part)?))
                    }),
                });
            }
            outs.push(Task {
                key: Key::new(&out_name, j),
                deps,
                op: FnOperator::new("rolling", move |v: &[Arc<Value>]| {
                    let (prev, part) = split(v)?;
                    Ok(Value::Batch(me2.output(j, prev, part)?))
                }),
            });
        }
        let keys = outs.iter().map(|t| t.key.clone()).collect();
        graph.add_layer(Layer {
            name: tail_name,
            tasks: tails,
        });
        graph.add_layer(Layer {
            name: out_name,
            tasks: outs,
        });
        keys
    }
}

fn split(v: &[Arc<Value>]) -> Result<(Option<&RecordBatch>, &RecordBatch)> {
    match v {
        [part] => Ok((None, part.as_batch()?)),
        [prev, part] => Ok((Some(prev.as_batch()?), part.as_batch()?)),
        _ => Err(Error::Internal(format!("rolling: {} inputs", v.len()))),
    }
}
