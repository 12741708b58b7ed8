//! Divisions by declaration, and `repartition`: by `npartitions`, by
//! `partition_size` (bytes), by new `divisions`, and by a time frequency.
//! Repartitioning moves no more data than needed: it only slices and concatenates
//! neighbouring partitions, never shuffles, and keeps the index and (where they
//! can be) the divisions.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch, Scalar};
use arrow::compute::kernels::cmp;
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::SchemaRef;
use datafusion_common::ScalarValue;

use super::plan::{layer_name, Index, PlanNode};
use super::resample::{division_ns, fmt_ts, time_index};
use super::timerule::{Binner, Rule, Side};
use super::DataFrame;
use crate::error::{Error, Result};
use crate::graph::{FnOperator, Graph, Key, Layer, Task, Value};
use crate::scheduler::RunContext;

impl DataFrame {
    /// The same rows, declared indexed by `column` with these divisions
    /// (`npartitions + 1` sorted boundaries), as Dask's
    /// `set_index(column, sorted=True, divisions=...)`. Nothing is checked now;
    /// operations that rely on the divisions (`resample`, `rolling`,
    /// `repartition`) fail with an error naming the partition if a row lies
    /// outside its division range.
    pub fn with_known_divisions(
        &self,
        column: &str,
        divisions: Vec<ScalarValue>,
    ) -> Result<DataFrame> {
        crate::expr::column_type(&self.schema, column)?;
        if divisions.len() != self.npartitions() + 1 {
            return Err(Error::plan(
                "with_known_divisions",
                format!(
                    "{} partitions need {} divisions, got {}",
                    self.npartitions(),
                    self.npartitions() + 1,
                    divisions.len()
                ),
            ));
        }
        if divisions
            .windows(2)
            .any(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less) && w[0] != w[1])
        {
            return Err(Error::plan(
                "with_known_divisions",
                "the divisions are not sorted",
            ));
        }
        Ok(self.with_index(Index {
            column: column.to_string(),
            divisions: Some(divisions.into()),
        }))
    }
}

/// How to [`repartition`](DataFrame::repartition).
#[derive(Debug, Clone, PartialEq)]
pub enum Repartition {
    /// This many partitions: neighbours are concatenated, or partitions are split
    /// (by index range when the divisions are known timestamps or integers, so they
    /// stay known; by row count otherwise).
    NPartitions(usize),
    /// Partitions of about this many bytes in memory (Arrow's count): computes the
    /// frame's partition sizes first (one pass, as Dask), then splits large
    /// partitions and concatenates runs of small ones.
    PartitionSize(u64),
    /// New divisions; the frame must have known divisions and the new ones must
    /// cover the old range.
    Divisions(Vec<ScalarValue>),
    /// One partition per period of a time rule (`1D`, `6h`, `MS`), boundaries on
    /// the rule's edges; needs a timestamp index with known divisions.
    Freq(String),
}

/// Where an output partition's rows come from.
#[derive(Debug, Clone)]
enum Piece {
    /// All of input partition `.0`.
    Whole(usize),
    /// Rows `len * k / of .. len * (k + 1) / of` of input partition `.0`.
    Slice(usize, usize, usize),
    /// Rows of input partition `.0` whose index is `>= lo` (if given) and `< hi`
    /// (`<= hi` when `.3`), if given.
    Range(usize, Option<ScalarValue>, Option<ScalarValue>, bool),
}

impl Piece {
    fn input(&self) -> usize {
        match self {
            Piece::Whole(i) | Piece::Slice(i, ..) | Piece::Range(i, ..) => *i,
        }
    }
}

struct RepartitionNode {
    outputs: Vec<Vec<Piece>>,
    index: Option<Index>,
}

impl PlanNode for RepartitionNode {
    fn name(&self) -> &str {
        "repartition"
    }
    fn schema(&self, inputs: &[SchemaRef]) -> SchemaRef {
        inputs[0].clone()
    }
    fn npartitions(&self, _inputs: &[usize]) -> usize {
        self.outputs.len()
    }
    fn index(&self) -> Option<Index> {
        self.index.clone()
    }
    fn input_columns(&self, required: Option<&BTreeSet<String>>) -> Vec<Option<BTreeSet<String>>> {
        vec![required.map(|r| {
            let mut r = r.clone();
            if let Some(ix) = &self.index {
                r.insert(ix.column.clone());
            }
            r
        })]
    }
    fn lower(&self, inputs: &[Vec<Key>], graph: &mut Graph, _ctx: &Arc<RunContext>) -> Vec<Key> {
        let name = layer_name("repartition");
        let column = self.index.as_ref().map(|ix| ix.column.clone());
        let tasks: Vec<Task> = self
            .outputs
            .iter()
            .enumerate()
            .map(|(j, pieces)| {
                let pieces = pieces.clone();
                let column = column.clone();
                Task {
                    key: Key::new(&name, j),
                    deps: pieces
                        .iter()
                        .map(|p| inputs[0][p.input()].clone())
                        .collect(),
                    op: FnOperator::new("repartition", move |v: &[Arc<Value>]| {
                        let mut parts = Vec::with_capacity(pieces.len());
                        for (p, value) in pieces.iter().zip(v) {
                            parts.push(cut(p, value.as_batch()?, column.as_deref())?);
                        }
                        let schema = match parts.first() {
                            Some(b) => b.schema(),
                            None => {
                                return Err(Error::Internal(
                                    "an empty repartition piece list".into(),
                                ))
                            }
                        };
                        Ok(Value::Batch(concat_batches(&schema, &parts)?))
                    }),
                }
            })
            .collect();
        let keys = tasks.iter().map(|t| t.key.clone()).collect();
        graph.add_layer(Layer { name, tasks });
        keys
    }
}

fn cut(piece: &Piece, batch: &RecordBatch, column: Option<&str>) -> Result<RecordBatch> {
    Ok(match piece {
        Piece::Whole(_) => batch.clone(),
        Piece::Slice(_, k, of) => {
            let n = batch.num_rows();
            let (a, b) = (n * k / of, n * (k + 1) / of);
            batch.slice(a, b - a)
        }
        Piece::Range(_, lo, hi, hi_inclusive) => {
            let column =
                column.ok_or_else(|| Error::Internal("range piece without index".into()))?;
            let a = batch
                .column_by_name(column)
                .ok_or_else(|| crate::expr::unknown_column(&batch.schema(), column))?;
            let mut mask: Option<BooleanArray> = None;
            let mut and = |m: BooleanArray| -> Result<()> {
                mask = Some(match mask.take() {
                    None => m,
                    Some(old) => arrow::compute::and(&old, &m)?,
                });
                Ok(())
            };
            if let Some(lo) = lo {
                and(cmp::gt_eq(
                    a,
                    &Scalar::new(lo.cast_to(a.data_type())?.to_array()?),
                )?)?;
            }
            if let Some(hi) = hi {
                let hi = Scalar::new(hi.cast_to(a.data_type())?.to_array()?);
                and(if *hi_inclusive {
                    cmp::lt_eq(a, &hi)?
                } else {
                    cmp::lt(a, &hi)?
                })?;
            }
            match mask {
                None => batch.clone(),
                Some(m) => filter_record_batch(batch, &m)?,
            }
        }
    })
}

/// A division as an integer on a line (ns for timestamps), for interpolation.
fn as_number(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int64(Some(x)) => Some(*x),
        other => division_ns(other),
    }
}

fn from_number(like: &ScalarValue, x: i64) -> ScalarValue {
    match like {
        ScalarValue::Int64(_) => ScalarValue::Int64(Some(x)),
        ScalarValue::TimestampNanosecond(_, tz) => {
            ScalarValue::TimestampNanosecond(Some(x), tz.clone())
        }
        _ => ScalarValue::TimestampNanosecond(Some(x), None),
    }
}

impl DataFrame {
    /// Changes the partitioning without a shuffle (see [`Repartition`]); the index
    /// is kept, and the divisions where they can be.
    ///
    /// ```
    /// use outcore::frame::repartition::Repartition;
    /// # let s = outcore::Session::builder().with_threads(1).build()?;
    /// let df = outcore::datasets::timeseries(&s, "2000-01-01", "2000-01-03", "1min", "6h", 1)?;
    /// let daily = df.repartition(Repartition::Freq("1D".into()))?;
    /// assert_eq!((daily.npartitions(), daily.known_divisions()), (2, true));
    /// # Ok::<(), outcore::Error>(())
    /// ```
    pub fn repartition(&self, how: Repartition) -> Result<DataFrame> {
        const OP: &str = "repartition";
        let n_in = self.npartitions();
        let index = self.plan.index();
        let old = index.as_ref().and_then(|ix| ix.divisions.clone());
        let with = |outputs: Vec<Vec<Piece>>, divisions: Option<Vec<ScalarValue>>| {
            let index = index.clone().map(|ix| Index {
                column: ix.column,
                divisions: divisions.map(Into::into),
            });
            self.with_node(Arc::new(RepartitionNode { outputs, index }))
        };
        match how {
            Repartition::NPartitions(n) => {
                if n == 0 {
                    return Err(Error::plan(OP, "npartitions must be at least 1"));
                }
                crate::graph::check_partitions(
                    OP,
                    &format!("npartitions {n}"),
                    n,
                    "ask for fewer",
                )?;
                if n <= n_in {
                    // Concatenate runs of neighbours; divisions at the run starts.
                    let bounds: Vec<usize> = (0..=n).map(|j| j * n_in / n).collect();
                    let outputs = bounds
                        .windows(2)
                        .map(|w| (w[0]..w[1]).map(Piece::Whole).collect())
                        .collect();
                    let div = old.map(|d| bounds.iter().map(|&b| d[b].clone()).collect());
                    return Ok(with(outputs, div));
                }
                // Split: input i into k_i pieces, as evenly as possible.
                let k: Vec<usize> = (0..n_in)
                    .map(|i| (i + 1) * n / n_in - i * n / n_in)
                    .collect();
                if let Some(d) = old.as_ref() {
                    if let Some(nums) = d.iter().map(as_number).collect::<Option<Vec<i64>>>() {
                        let mut new = vec![nums[0]];
                        for i in 0..n_in {
                            for m in 1..=k[i] {
                                let x = nums[i]
                                    + ((nums[i + 1] - nums[i]) as i128 * m as i128 / k[i] as i128)
                                        as i64;
                                if x > *new.last().expect("not empty")
                                    || (i + 1 == n_in && m == k[i])
                                {
                                    new.push(x);
                                }
                            }
                        }
                        let new: Vec<ScalarValue> =
                            new.iter().map(|&x| from_number(&d[0], x)).collect();
                        return self.repartition(Repartition::Divisions(new));
                    }
                }
                let outputs = (0..n_in)
                    .flat_map(|i| {
                        let ki = k[i];
                        (0..ki).map(move |m| vec![Piece::Slice(i, m, ki)])
                    })
                    .collect();
                Ok(with(outputs, None))
            }
            Repartition::Divisions(new) => {
                let Some(d) = old else {
                    return Err(Error::plan(
                        OP,
                        "repartition by divisions needs known divisions; set_index first",
                    ));
                };
                if new.len() < 2 {
                    return Err(Error::plan(OP, "give at least two divisions"));
                }
                crate::graph::check_partitions(
                    OP,
                    &format!("{} divisions", new.len()),
                    new.len() - 1,
                    "give fewer divisions",
                )?;
                let lt = |a: &ScalarValue, b: &ScalarValue| {
                    a.partial_cmp(b) == Some(std::cmp::Ordering::Less)
                };
                if new.windows(2).any(|w| !lt(&w[0], &w[1])) {
                    return Err(Error::plan(
                        OP,
                        "the new divisions must be strictly increasing",
                    ));
                }
                let (n0, nl) = (&new[0], &new[new.len() - 1]);
                if lt(&d[0], n0) || lt(nl, &d[d.len() - 1]) {
                    return Err(Error::plan(
                        OP,
                        format!(
                            "the new divisions [{n0}, {nl}] must cover the old ones [{}, {}]",
                            d[0],
                            d[d.len() - 1]
                        ),
                    ));
                }
                let m = new.len() - 1;
                let mut outputs = Vec::with_capacity(m);
                for j in 0..m {
                    let (lo, hi) = (&new[j], &new[j + 1]);
                    let last = j + 1 == m;
                    let mut pieces = Vec::new();
                    for i in 0..n_in {
                        let (a, b) = (&d[i], &d[i + 1]);
                        // Input i holds [a, b]; output j takes [lo, hi) ([lo, hi] last).
                        if lt(hi, a) || (!last && hi == a) || lt(b, lo) {
                            continue;
                        }
                        let lo_cut = (j > 0 && lt(a, lo)).then(|| lo.clone());
                        let hi_cut = (!last && !lt(b, hi)).then(|| hi.clone());
                        pieces.push(if lo_cut.is_none() && hi_cut.is_none() {
                            Piece::Whole(i)
                        } else {
                            Piece::Range(i, lo_cut, hi_cut, false)
                        });
                    }
                    if pieces.is_empty() {
                        // No input overlaps: an empty slice of the first input keeps the schema.
                        pieces.push(Piece::Slice(0, 0, usize::MAX));
                    }
                    outputs.push(pieces);
                }
                Ok(with(outputs, Some(new)))
            }
            Repartition::Freq(rule) => {
                let (_, d) = time_index(self, OP)?;
                let rule = Rule::parse(&rule)?;
                let (first, last) = (d[0], d[d.len() - 1]);
                let b = Binner::new(&rule, Some(Side::Left), Some(Side::Left), first);
                let spans = i128::from(b.bin(last)) - i128::from(b.bin(first)) + 1;
                crate::graph::check_partitions(
                    OP,
                    &format!(
                        "freq {} over {} .. {}",
                        rule.text,
                        fmt_ts(first),
                        fmt_ts(last)
                    ),
                    usize::try_from(spans).unwrap_or(usize::MAX),
                    "choose a longer freq",
                )?;
                let mut edges = vec![first];
                let mut k = b.bin(first) + 1;
                while b.left_edge(k) < last {
                    edges.push(b.left_edge(k));
                    k += 1;
                }
                edges.push(last);
                if edges.len() == 2 && edges[0] == edges[1] {
                    edges.pop();
                    return self.repartition(Repartition::NPartitions(1));
                }
                let like = self
                    .plan
                    .index()
                    .and_then(|ix| ix.divisions)
                    .map(|d| d[0].clone());
                let like = like.unwrap_or(ScalarValue::TimestampNanosecond(None, None));
                self.repartition(Repartition::Divisions(
                    edges.into_iter().map(|x| from_number(&like, x)).collect(),
                ))
            }
            Repartition::PartitionSize(target) => {
                if target == 0 {
                    return Err(Error::plan(OP, "partition_size must be at least 1 byte"));
                }
                let sizes = std::sync::Mutex::new(vec![0u64; n_in]);
                self.for_each_partition(&|i, b| {
                    sizes.lock().unwrap_or_else(|p| p.into_inner())[i] =
                        outcore_storage::measure::batch_bytes(b) as u64;
                    Ok(())
                })?;
                let sizes = sizes.into_inner().unwrap_or_else(|p| p.into_inner());
                let pieces: u64 = sizes.iter().map(|s| s.div_ceil(target).max(1)).sum();
                crate::graph::check_partitions(
                    OP,
                    &format!("partition_size {target} bytes"),
                    usize::try_from(pieces).unwrap_or(usize::MAX),
                    "choose a larger partition size",
                )?;
                // Split the large, then concatenate runs of small neighbours.
                let mut units: Vec<(Piece, u64)> = Vec::new();
                let mut split_any = false;
                for (i, &s) in sizes.iter().enumerate() {
                    let k = s.div_ceil(target).max(1) as usize;
                    if k == 1 {
                        units.push((Piece::Whole(i), s));
                    } else {
                        split_any = true;
                        units.extend((0..k).map(|m| (Piece::Slice(i, m, k), s / k as u64)));
                    }
                }
                let mut outputs: Vec<Vec<Piece>> = Vec::new();
                let mut starts = Vec::new();
                let mut acc = u64::MAX;
                for (p, s) in units {
                    if acc.saturating_add(s) > target {
                        starts.push(p.input());
                        outputs.push(Vec::new());
                        acc = 0;
                    }
                    acc += s;
                    outputs.last_mut().expect("pushed above").push(p);
                }
                if outputs.is_empty() {
                    outputs.push(vec![Piece::Slice(0, 0, usize::MAX)]);
                }
                let div = match (split_any, old) {
                    (false, Some(d)) => {
                        let mut v: Vec<ScalarValue> =
                            starts.iter().map(|&i| d[i].clone()).collect();
                        v.push(d[d.len() - 1].clone());
                        Some(v)
                    }
                    _ => None,
                };
                Ok(with(outputs, div))
            }
        }
    }
}
