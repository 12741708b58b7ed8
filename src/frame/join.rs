//! `merge`: joining two frames on key columns, as pandas' `merge` (inner, left,
//! right, outer; `_x`/`_y` suffixes on clashing column names; null keys match each
//! other, as in pandas).
//!
//! Three ways to run it, chosen when the merge is written:
//! - **partition-wise**: both frames indexed by the key with the same divisions, so
//!   partition `i` of one meets only partition `i` of the other; nothing moves.
//! - **broadcast**: one side is small (one partition, or an estimated size under a
//!   sixteenth of the memory limit): it is gathered once and every partition of the
//!   other side joins against it. Its hash table is built once per computation,
//!   reserved from the memory account, and freed after the last probe.
//! - **shuffle**: both sides are hash-partitioned on the key through the shuffle
//!   store into the same partition numbers, and partition `i` of one joins
//!   partition `i` of the other; as a grace hash join ([`grace`]) when the
//!   account refuses its build side.
//!
//! The kernel hashes the key columns in Arrow's row format (one byte string per
//! row, whatever the key types), chains equal keys of the build side, and
//! materialises the answer with `take` over index arrays, nulls standing for the
//! missing side of an outer row, in batches of at most [`JOIN_BATCH_ROWS`] rows.
//! Join operators are streaming sources (`Operator::run_stream`): the scheduler
//! hands each batch through the maps after the join to the fold that consumes it,
//! so a key with many matches never exists as one batch.

mod grace;
mod table;

pub use table::{BuildTable, Layout};

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::kernels::zip::zip;
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::{RowConverter, Rows};

use super::plan::Plan;
use super::DataFrame;
use crate::error::{Error, Result};
use crate::expr::col;
use crate::graph::{Operator, Streaming, Value};
use crate::scheduler::{MemoryReservation, RunContext};

/// Which rows a merge keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Rows whose key is on both sides.
    Inner,
    /// Every left row; right columns null where no right row matches.
    Left,
    /// Every right row; left columns null where no left row matches.
    Right,
    /// Every row of both sides.
    Outer,
}

impl How {
    /// The name as pandas spells it.
    pub fn name(self) -> &'static str {
        match self {
            How::Inner => "inner",
            How::Left => "left",
            How::Right => "right",
            How::Outer => "outer",
        }
    }

    /// Parses `inner`, `left`, `right` or `outer`.
    pub fn parse(s: &str) -> Result<How> {
        Ok(match s {
            "inner" => How::Inner,
            "left" => How::Left,
            "right" => How::Right,
            "outer" => How::Outer,
            other => {
                return Err(Error::plan(
                    "merge",
                    format!("unknown join type {other:?}; expected inner, left, right or outer"),
                ))
            }
        })
    }
}

/// How a merge runs (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinStrategy {
    /// Partition `i` with partition `i` (same known divisions on the key).
    PartitionWise,
    /// The right side gathered and joined against every left partition.
    BroadcastRight,
    /// The left side gathered and joined against every right partition.
    BroadcastLeft,
    /// Both sides hash-partitioned through the shuffle store.
    Shuffle,
}

/// What to join on and how: `MergeOptions::on(&["id"]).how(How::Left)`.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    left_on: Vec<String>,
    right_on: Vec<String>,
    how: How,
    suffixes: (String, String),
    strategy: Option<JoinStrategy>,
    limits: JoinLimits,
}

/// Knobs that force a join's rare paths in tests: hidden, never needed by users.
#[derive(Debug, Clone, Copy, Default)]
pub struct JoinLimits {
    /// The most bytes a build side (or a chunk of one) may hold, whatever the memory
    /// account grants.
    pub max_build_bytes: Option<u64>,
    /// Spill writes of a grace join fail after this many bytes (a full disk).
    pub fail_spill_after: Option<u64>,
}

impl MergeOptions {
    /// Join on these columns, named alike on both sides.
    pub fn on<S: AsRef<str>>(keys: &[S]) -> MergeOptions {
        let keys: Vec<String> = keys.iter().map(|k| k.as_ref().to_string()).collect();
        MergeOptions::left_right(&keys, &keys)
    }

    /// Join the left frame's `left_on` columns with the right frame's `right_on`.
    pub fn left_right<S: AsRef<str>>(left_on: &[S], right_on: &[S]) -> MergeOptions {
        MergeOptions {
            left_on: left_on.iter().map(|k| k.as_ref().to_string()).collect(),
            right_on: right_on.iter().map(|k| k.as_ref().to_string()).collect(),
            how: How::Inner,
            suffixes: ("_x".into(), "_y".into()),
            strategy: None,
            limits: JoinLimits::default(),
        }
    }

    /// Which rows to keep (default inner).
    pub fn how(mut self, how: How) -> Self {
        self.how = how;
        self
    }

    /// Suffixes for columns named alike on both sides (default `_x`, `_y`).
    pub fn suffixes(mut self, left: &str, right: &str) -> Self {
        self.suffixes = (left.to_string(), right.to_string());
        self
    }

    /// Force a strategy instead of choosing one (tests, benchmarks). An impossible
    /// choice is an error.
    pub fn strategy(mut self, strategy: JoinStrategy) -> Self {
        self.strategy = Some(strategy);
        self
    }

    /// Tests: caps a build side (or chunk) at `bytes`, so that a shuffle join
    /// partitions into spilled buckets and takes a hot key's build rows in chunks
    /// on a few rows.
    #[doc(hidden)]
    pub fn max_build_bytes(mut self, bytes: u64) -> Self {
        self.limits.max_build_bytes = Some(bytes);
        self
    }

    /// Tests: a grace join's spill writes fail after `bytes` (as on a full disk).
    #[doc(hidden)]
    pub fn fail_spill_writes_after(mut self, bytes: u64) -> Self {
        self.limits.fail_spill_after = Some(bytes);
        self
    }
}

/// Where an output column comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    Left(usize),
    Right(usize),
    /// A key named alike on both sides: the left value, or the right one where the
    /// row has no left side.
    Key(usize, usize),
}

/// A checked merge: key positions, output columns and schema.
#[derive(Debug)]
pub struct JoinSpec {
    how: How,
    left_on: Vec<String>,
    right_on: Vec<String>,
    suffixes: (String, String),
    left_keys: Vec<usize>,
    right_keys: Vec<usize>,
    sources: Vec<Source>,
    left_schema: SchemaRef,
    right_schema: SchemaRef,
    /// The answer's schema.
    pub output: SchemaRef,
    limits: JoinLimits,
}

/// The type both keys convert to, or `None` when they cannot meet.
fn common_key_type(l: &DataType, r: &DataType) -> Option<DataType> {
    use DataType::*;
    let stringy = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    if l == r {
        Some(l.clone())
    } else if l.is_integer() && r.is_integer() {
        Some(Int64)
    } else if (l.is_integer() || l.is_floating()) && (r.is_integer() || r.is_floating()) {
        Some(Float64)
    } else if stringy(l) && stringy(r) {
        Some(Utf8)
    } else {
        None
    }
}

impl DataFrame {
    /// Joins with `other` on key columns named alike on both sides, as pandas'
    /// `merge(other, on=keys, how=how)`.
    pub fn merge<S: AsRef<str>>(&self, other: &DataFrame, on: &[S], how: How) -> Result<DataFrame> {
        self.merge_with(other, MergeOptions::on(on).how(how))
    }

    /// Joins with `other` as `options` say. Key columns whose types differ but can
    /// meet (two integer widths, integer and float, string kinds) are converted to
    /// a common type first; others are an error naming both columns and types.
    pub fn merge_with(&self, other: &DataFrame, options: MergeOptions) -> Result<DataFrame> {
        let MergeOptions {
            left_on,
            right_on,
            how,
            suffixes,
            strategy,
            limits,
        } = options;
        if left_on.is_empty() || left_on.len() != right_on.len() {
            return Err(Error::plan(
                "merge",
                format!(
                    "give as many left keys as right keys, at least one (got {} and {})",
                    left_on.len(),
                    right_on.len()
                ),
            ));
        }
        let (mut left, mut right) = (self.clone(), other.clone());
        for (lk, rk) in left_on.iter().zip(&right_on) {
            let lt = crate::expr::column_type(&left.schema(), lk)?;
            let rt = crate::expr::column_type(&right.schema(), rk)?;
            let Some(t) = common_key_type(&lt, &rt) else {
                return Err(Error::plan(
                    "merge",
                    format!("cannot join left column {lk:?} ({lt}) with right column {rk:?} ({rt}): the types cannot be compared"),
                ));
            };
            if lt != t {
                left = left.with_column(lk, col(lk).cast(t.clone()))?;
            }
            if rt != t {
                right = right.with_column(rk, col(rk).cast(t))?;
            }
        }
        let mut spec = JoinSpec::new(
            left.schema(),
            right.schema(),
            &left_on,
            &right_on,
            how,
            &suffixes,
        )?;
        spec.limits = limits;
        let spec = Arc::new(spec);
        let strategy = choose_strategy(&left, &right, &left_on, &right_on, how, strategy)?;
        let npartitions = match strategy {
            JoinStrategy::PartitionWise | JoinStrategy::BroadcastRight => left.npartitions(),
            JoinStrategy::BroadcastLeft => right.npartitions(),
            JoinStrategy::Shuffle => left.npartitions().max(right.npartitions()),
        };
        // Rows keep the left side's order and partitions where they come from the
        // left in order: its index survives when its column does.
        let keeps_index = matches!(how, How::Inner | How::Left)
            && matches!(
                strategy,
                JoinStrategy::PartitionWise | JoinStrategy::BroadcastRight
            );
        let index = left
            .plan
            .index()
            .filter(|ix| keeps_index && spec.output.index_of(&ix.column).is_ok());
        let joined = left.with_plan(Plan::Join {
            left: left.plan.clone(),
            right: right.plan.clone(),
            spec,
            strategy,
            npartitions,
        });
        Ok(match index {
            Some(ix) => joined.with_index(ix),
            None => joined,
        })
    }
}

fn choose_strategy(
    left: &DataFrame,
    right: &DataFrame,
    left_on: &[String],
    right_on: &[String],
    how: How,
    forced: Option<JoinStrategy>,
) -> Result<JoinStrategy> {
    let same_divisions = left_on.len() == 1
        && left.index_column().as_deref() == Some(left_on[0].as_str())
        && right.index_column().as_deref() == Some(right_on[0].as_str())
        && left.divisions().is_some()
        && left.divisions() == right.divisions();
    let broadcast_right_ok = matches!(how, How::Inner | How::Left);
    let broadcast_left_ok = matches!(how, How::Inner | How::Right);
    if let Some(s) = forced {
        let ok = match s {
            JoinStrategy::PartitionWise => same_divisions,
            JoinStrategy::BroadcastRight => broadcast_right_ok,
            JoinStrategy::BroadcastLeft => broadcast_left_ok,
            JoinStrategy::Shuffle => true,
        };
        if !ok {
            return Err(Error::plan(
                "merge",
                format!("a {} join cannot run as {s:?}", how.name()),
            ));
        }
        return Ok(s);
    }
    if same_divisions {
        return Ok(JoinStrategy::PartitionWise);
    }
    let threshold = left.session().memory_policy().broadcast_bytes();
    let small = |df: &DataFrame| {
        df.npartitions() <= 1 || df.plan.estimated_bytes().is_some_and(|b| b <= threshold)
    };
    Ok(if broadcast_right_ok && small(right) {
        JoinStrategy::BroadcastRight
    } else if broadcast_left_ok && small(left) {
        JoinStrategy::BroadcastLeft
    } else {
        JoinStrategy::Shuffle
    })
}

impl JoinSpec {
    fn new(
        left_schema: SchemaRef,
        right_schema: SchemaRef,
        left_on: &[String],
        right_on: &[String],
        how: How,
        suffixes: &(String, String),
    ) -> Result<JoinSpec> {
        let position = |schema: &Schema, name: &str| {
            schema
                .index_of(name)
                .map_err(|_| crate::expr::unknown_column(schema, name))
        };
        let left_keys = left_on
            .iter()
            .map(|k| position(&left_schema, k))
            .collect::<Result<Vec<_>>>()?;
        let right_keys = right_on
            .iter()
            .map(|k| position(&right_schema, k))
            .collect::<Result<Vec<_>>>()?;
        // Keys named alike on both sides become one column.
        let shared: Vec<(usize, usize)> = left_keys
            .iter()
            .zip(&right_keys)
            .filter(|(l, r)| left_schema.field(**l).name() == right_schema.field(**r).name())
            .map(|(l, r)| (*l, *r))
            .collect();
        let right_kept: Vec<usize> = (0..right_schema.fields().len())
            .filter(|r| !shared.iter().any(|(_, sr)| sr == r))
            .collect();
        let left_names: Vec<&String> = left_schema.fields().iter().map(|f| f.name()).collect();
        let right_kept_names: Vec<&String> = right_kept
            .iter()
            .map(|&r| right_schema.field(r).name())
            .collect();
        let mut sources = Vec::new();
        let mut fields = Vec::new();
        let outer_nulls = |side_left: bool| match how {
            How::Inner => false,
            How::Left => !side_left,
            How::Right => side_left,
            How::Outer => true,
        };
        for (l, f) in left_schema.fields().iter().enumerate() {
            if let Some((_, r)) = shared.iter().find(|(sl, _)| *sl == l) {
                sources.push(Source::Key(l, *r));
                fields.push(Field::new(f.name(), f.data_type().clone(), true));
                continue;
            }
            let name = if right_kept_names.contains(&f.name()) {
                format!("{}{}", f.name(), suffixes.0)
            } else {
                f.name().clone()
            };
            sources.push(Source::Left(l));
            fields.push(Field::new(
                name,
                f.data_type().clone(),
                f.is_nullable() || outer_nulls(true),
            ));
        }
        for &r in &right_kept {
            let f = right_schema.field(r);
            let name = if left_names.contains(&f.name()) {
                format!("{}{}", f.name(), suffixes.1)
            } else {
                f.name().clone()
            };
            sources.push(Source::Right(r));
            fields.push(Field::new(
                name,
                f.data_type().clone(),
                f.is_nullable() || outer_nulls(false),
            ));
        }
        for (i, f) in fields.iter().enumerate() {
            if fields[..i].iter().any(|g| g.name() == f.name()) {
                return Err(Error::plan(
                    "merge",
                    format!(
                        "the answer would have two columns named {:?}; choose other suffixes",
                        f.name()
                    ),
                ));
            }
        }
        Ok(JoinSpec {
            how,
            left_on: left_on.to_vec(),
            right_on: right_on.to_vec(),
            suffixes: suffixes.clone(),
            left_keys,
            right_keys,
            sources,
            left_schema,
            right_schema,
            output: Arc::new(Schema::new(fields)),
            limits: JoinLimits::default(),
        })
    }

    /// The columns each side must give for the consumer to read `required` of the
    /// answer: the keys, the columns behind each required output, and the other
    /// side of a suffixed pair one side of which is read (so the answer's names do
    /// not change).
    pub fn input_columns(
        &self,
        required: &BTreeSet<String>,
    ) -> (BTreeSet<String>, BTreeSet<String>) {
        let lname = |i: usize| self.left_schema.field(i).name().clone();
        let rname = |i: usize| self.right_schema.field(i).name().clone();
        let mut left: BTreeSet<String> = self.left_on.iter().cloned().collect();
        let mut right: BTreeSet<String> = self.right_on.iter().cloned().collect();
        for (source, field) in self.sources.iter().zip(self.output.fields()) {
            let wanted = required.contains(field.name());
            match *source {
                Source::Left(i) if wanted => {
                    left.insert(lname(i));
                    if field.name() != &lname(i) {
                        right.insert(lname(i));
                    }
                }
                Source::Right(i) if wanted => {
                    right.insert(rname(i));
                    if field.name() != &rname(i) {
                        left.insert(rname(i));
                    }
                }
                Source::Left(_) | Source::Right(_) => {}
                Source::Key(..) => {}
            }
        }
        (left, right)
    }

    /// Positions of the left side's key columns.
    pub fn left_keys(&self) -> &[usize] {
        &self.left_keys
    }

    /// Positions of the right side's key columns.
    pub fn right_keys(&self) -> &[usize] {
        &self.right_keys
    }

    /// The test caps.
    pub fn limits(&self) -> JoinLimits {
        self.limits
    }

    /// The same merge over inputs that give fewer columns.
    pub fn over(&self, left: SchemaRef, right: SchemaRef) -> Result<JoinSpec> {
        let mut spec = JoinSpec::new(
            left,
            right,
            &self.left_on,
            &self.right_on,
            self.how,
            &self.suffixes,
        )?;
        spec.limits = self.limits;
        Ok(spec)
    }

    /// Joins one left batch with one right batch, building the hash table on the
    /// right.
    pub fn join(&self, left: &RecordBatch, right: &RecordBatch) -> Result<RecordBatch> {
        let table = BuildTable::new(right, &self.right_keys)?;
        self.collect(|emit| self.probe_whole(left, &table, emit))
    }

    /// Gathers a stream of output batches into one batch.
    fn collect(
        &self,
        stream: impl FnOnce(&mut dyn FnMut(RecordBatch) -> Result<()>) -> Result<()>,
    ) -> Result<RecordBatch> {
        let mut batches = Vec::new();
        stream(&mut |b| {
            batches.push(b);
            Ok(())
        })?;
        Ok(arrow::compute::concat_batches(&self.output, &batches)?)
    }

    /// Joins `left` against a built right side that holds the whole right side of
    /// this partition: unmatched right rows are added at the end for right and
    /// outer joins. Output in batches of at most [`JOIN_BATCH_ROWS`] rows.
    pub fn probe_whole(
        &self,
        left: &RecordBatch,
        table: &BuildTable,
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let mut matched = self.keeps_right().then(|| vec![false; table.num_rows()]);
        self.probe_batch(
            table,
            left,
            ProbeSide::Left,
            self.keeps_left(),
            matched.as_deref_mut(),
            None,
            emit,
        )?;
        if let Some(m) = matched {
            self.emit_unmatched_build(table, &m, emit)?;
        }
        Ok(())
    }

    /// Whether every left row is kept (left and outer joins).
    fn keeps_left(&self) -> bool {
        matches!(self.how, How::Left | How::Outer)
    }

    /// Whether every right row is kept (right and outer joins).
    fn keeps_right(&self) -> bool {
        matches!(self.how, How::Right | How::Outer)
    }

    /// Probes `probe` (rows of `side`) against `table` (the other side), emitting
    /// matches in probe order in batches of at most [`JOIN_BATCH_ROWS`] rows. With
    /// `keep_probe`, unmatched probe rows come out paired with nulls where they
    /// fall; `build_matched` and `probe_matched` (when given) get the rows that
    /// matched marked, for unmatched rows emitted later.
    #[allow(clippy::too_many_arguments)]
    fn probe_batch(
        &self,
        table: &BuildTable,
        probe: &RecordBatch,
        side: ProbeSide,
        keep_probe: bool,
        mut build_matched: Option<&mut [bool]>,
        mut probe_matched: Option<&mut [bool]>,
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let keys = match side {
            ProbeSide::Left => &self.left_keys,
            ProbeSide::Right => &self.right_keys,
        };
        let entries = table.lookup(probe, keys)?;
        let mut pairs = Pairs::new(probe.num_rows().min(JOIN_BATCH_ROWS));
        for (i, &entry) in entries.iter().enumerate() {
            if entry == table::NONE {
                if keep_probe {
                    pairs.push(i as u32, table::NONE);
                    if pairs.len() >= JOIN_BATCH_ROWS {
                        self.emit_pairs(probe, table.batch(), side, &mut pairs, emit)?;
                    }
                }
                continue;
            }
            if let Some(m) = probe_matched.as_deref_mut() {
                m[i] = true;
            }
            for j in table.chain(entry) {
                pairs.push(i as u32, j);
                if let Some(m) = build_matched.as_deref_mut() {
                    m[j as usize] = true;
                }
                if pairs.len() >= JOIN_BATCH_ROWS {
                    self.emit_pairs(probe, table.batch(), side, &mut pairs, emit)?;
                }
            }
        }
        if pairs.len() > 0 {
            self.emit_pairs(probe, table.batch(), side, &mut pairs, emit)?;
        }
        Ok(())
    }

    /// Emits the build rows of `table` (the right side) not marked in `matched`,
    /// paired with nulls, in batches.
    fn emit_unmatched_build(
        &self,
        table: &BuildTable,
        matched: &[bool],
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let empty = RecordBatch::new_empty(self.left_schema.clone());
        self.emit_unmatched(table.batch(), matched, &empty, ProbeSide::Right, emit)
    }

    /// Emits the rows of `rows` (of side `side`) not marked in `matched`, with the
    /// other side's columns null (`other` is any batch of the other side's
    /// schema), in batches.
    fn emit_unmatched(
        &self,
        rows: &RecordBatch,
        matched: &[bool],
        other: &RecordBatch,
        side: ProbeSide,
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let mut pairs = Pairs::new(JOIN_BATCH_ROWS.min(rows.num_rows()));
        for (j, m) in matched.iter().enumerate().take(rows.num_rows()) {
            if !m {
                pairs.push(j as u32, table::NONE);
                if pairs.len() >= JOIN_BATCH_ROWS {
                    self.emit_pairs(rows, other, side, &mut pairs, emit)?;
                }
            }
        }
        if pairs.len() > 0 {
            self.emit_pairs(rows, other, side, &mut pairs, emit)?;
        }
        Ok(())
    }

    /// Emits one batch: `rows` (of side `side`) taken at the pairs' first rows,
    /// beside `other` (the other side) taken at their second rows (nulls where
    /// there is none), and empties `pairs`.
    fn emit_pairs(
        &self,
        rows: &RecordBatch,
        other: &RecordBatch,
        side: ProbeSide,
        pairs: &mut Pairs,
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let (i, n) = pairs.finish();
        emit(match side {
            ProbeSide::Left => self.materialize(rows, other, &i, &n)?,
            ProbeSide::Right => self.materialize(other, rows, &n, &i)?,
        })
    }

    fn materialize(
        &self,
        left: &RecordBatch,
        right: &RecordBatch,
        l: &UInt32Array,
        r: &UInt32Array,
    ) -> Result<RecordBatch> {
        let columns = self
            .sources
            .iter()
            .map(|s| {
                Ok(match *s {
                    Source::Left(i) => take(left.column(i), l, None)?,
                    Source::Right(i) => take(right.column(i), r, None)?,
                    Source::Key(li, ri) => {
                        let from_left = take(left.column(li), l, None)?;
                        if l.null_count() == 0 {
                            from_left
                        } else {
                            let from_right = take(right.column(ri), r, None)?;
                            let has_left = arrow::compute::is_not_null(l)?;
                            zip(&has_left, &from_left, &from_right)?
                        }
                    }
                })
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(l.len()));
        Ok(RecordBatch::try_new_with_options(
            self.output.clone(),
            columns,
            &options,
        )?)
    }
}

/// Row pairs of an output batch being gathered: a row of one side, and the row of
/// the other it meets ([`table::NONE`] for none, a null in the answer).
struct Pairs {
    rows: Vec<u32>,
    others: Vec<u32>,
    /// Whether any of `others` is [`table::NONE`].
    any_none: bool,
}

impl Pairs {
    fn new(capacity: usize) -> Pairs {
        Pairs {
            rows: Vec::with_capacity(capacity),
            others: Vec::with_capacity(capacity),
            any_none: false,
        }
    }

    #[inline]
    fn push(&mut self, row: u32, other: u32) {
        self.rows.push(row);
        self.others.push(other);
        self.any_none |= other == table::NONE;
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    /// The two index arrays, nulls in the second for [`table::NONE`]; empties
    /// `self` (keeping its capacity).
    fn finish(&mut self) -> (UInt32Array, UInt32Array) {
        let capacity = self.rows.capacity();
        let rows = std::mem::replace(&mut self.rows, Vec::with_capacity(capacity));
        let others = std::mem::replace(&mut self.others, Vec::with_capacity(capacity));
        let others = if std::mem::take(&mut self.any_none) {
            others
                .into_iter()
                .map(|o| (o != table::NONE).then_some(o))
                .collect()
        } else {
            UInt32Array::from(others)
        };
        (UInt32Array::from(rows), others)
    }
}

/// Most rows in one batch of a join's output: a key with many matches comes out
/// in several batches, never as one batch of the whole key.
pub const JOIN_BATCH_ROWS: usize = 64 * 1024;

/// Which side the probe rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeSide {
    Left,
    Right,
}

fn key_rows(converter: &RowConverter, batch: &RecordBatch, keys: &[usize]) -> Result<Rows> {
    let columns: Vec<ArrayRef> = keys.iter().map(|&k| batch.column(k).clone()).collect();
    Ok(converter.convert_columns(&columns)?)
}

/// A broadcast side's hash table, built by the first join task to run while the
/// others wait for it (they all need it), so it is built and held once. Its bytes
/// are reserved from the memory account while it is held, and it is let go when
/// the last of the tasks that probe it is done. When the account refuses it (the
/// side measured bigger than planned), every probe task joins its partition
/// against the side's rows in chunks that fit instead.
pub struct SharedTable {
    slot: Mutex<Option<Built>>,
    /// Probe tasks still to finish.
    users: AtomicUsize,
}

enum Built {
    Table {
        table: Arc<BuildTable>,
        /// Held (never read) so the table's bytes stay reserved while it lives.
        _held: Option<MemoryReservation>,
    },
    /// The account refused the table.
    TooBig,
}

impl SharedTable {
    /// A table that `users` tasks probe.
    pub fn new(users: usize) -> SharedTable {
        SharedTable {
            slot: Mutex::new(None),
            users: AtomicUsize::new(users),
        }
    }

    /// The table, or `None` when the account refuses it (or it is over the test
    /// cap).
    fn get_or_build(
        &self,
        batch: &RecordBatch,
        keys: &[usize],
        limits: &JoinLimits,
    ) -> Result<Option<Arc<BuildTable>>> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some(Built::Table { table, .. }) => return Ok(Some(table.clone())),
            Some(Built::TooBig) => return Ok(None),
            None => {}
        }
        let bytes = BuildTable::estimated_bytes(batch, keys)
            + outcore_storage::measure::batch_bytes(batch) as u64;
        let granted = if limits.max_build_bytes.is_some_and(|cap| bytes > cap) {
            None
        } else {
            crate::scheduler::try_reserve_shared("broadcast hash table", bytes)?
        };
        let Some(reservation) = granted else {
            *slot = Some(Built::TooBig);
            return Ok(None);
        };
        let t = Arc::new(BuildTable::new(batch, keys)?);
        *slot = Some(Built::Table {
            table: t.clone(),
            _held: reservation,
        });
        Ok(Some(t))
    }

    /// One probe task is done; the last one frees the table and its reservation.
    fn done(&self) {
        if self.users.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

/// Gathers a broadcast side and builds its table, once, before any probe task
/// runs: on several threads (the table's parts), while no probe task waits on a
/// lock for it. Its value is an empty batch when the table was built (the table
/// holds the rows, under its own reservation), or the whole side when the account
/// refused the table, for the probe tasks to join in chunks.
pub struct BroadcastBuild {
    /// The table the probe tasks share.
    pub table: Arc<SharedTable>,
    /// The side's schema.
    pub schema: SchemaRef,
    /// Its key columns.
    pub keys: Vec<usize>,
    /// The merge's test caps.
    pub limits: JoinLimits,
}

impl Operator for BroadcastBuild {
    fn name(&self) -> &str {
        "broadcast-gather"
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        let batches = inputs
            .iter()
            .map(|v| v.as_batch().cloned())
            .collect::<Result<Vec<_>>>()?;
        let all = arrow::compute::concat_batches(&self.schema, &batches)?;
        drop(batches);
        Ok(Value::Batch(
            match self.table.get_or_build(&all, &self.keys, &self.limits)? {
                Some(_) => RecordBatch::new_empty(self.schema.clone()),
                None => all,
            },
        ))
    }
}

/// Emits at least one batch (an empty one of `schema` when `stream` emits none),
/// as a streaming operator must.
fn at_least_one(
    schema: &SchemaRef,
    emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    stream: impl FnOnce(&mut dyn FnMut(RecordBatch) -> Result<()>) -> Result<()>,
) -> Result<()> {
    let mut any = false;
    stream(&mut |b| {
        any = true;
        emit(b)
    })?;
    if !any {
        emit(RecordBatch::new_empty(schema.clone()))?;
    }
    Ok(())
}

/// Joins one partition of each side (partition-wise), or a partition of the left
/// with the gathered right (broadcast right).
pub struct JoinPartitions {
    /// The merge.
    pub spec: Arc<JoinSpec>,
    /// For a broadcast, the right side's table (built by its [`BroadcastBuild`]).
    pub broadcast: Option<Arc<SharedTable>>,
    /// The computation (its spill folder and counters).
    pub ctx: Arc<RunContext>,
}

impl Operator for JoinPartitions {
    fn name(&self) -> &str {
        "join"
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        Ok(Value::Batch(
            self.spec.collect(|emit| self.run_stream(inputs, emit))?,
        ))
    }
    fn streaming(&self) -> Streaming {
        Streaming::Source
    }
    fn run_stream(
        &self,
        inputs: &[Arc<Value>],
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let [left, right] = inputs else {
            return Err(Error::Internal("a join task takes two inputs".into()));
        };
        let (left, right) = (left.as_batch()?, right.as_batch()?);
        let spec = &self.spec;
        let table = match &self.broadcast {
            None => {
                let bytes = BuildTable::estimated_bytes(right, &spec.right_keys);
                let fits = spec.limits.max_build_bytes.is_none_or(|cap| bytes <= cap)
                    && crate::scheduler::try_reserve(bytes)?;
                if !fits {
                    // Partition-wise, the build side refused: a grace join of the pair.
                    return at_least_one(&spec.output, emit, |emit| {
                        grace::join(
                            spec,
                            &self.ctx,
                            &grace::Side::Batches(std::slice::from_ref(right)),
                            &grace::Side::Batches(std::slice::from_ref(left)),
                            emit,
                        )
                    });
                }
                Arc::new(BuildTable::new(right, &spec.right_keys)?)
            }
            Some(shared) => match shared.get_or_build(right, &spec.right_keys, &spec.limits)? {
                Some(table) => table,
                None => {
                    let out = at_least_one(&spec.output, emit, |emit| {
                        grace::chunked(
                            spec,
                            &self.ctx,
                            &grace::Side::Batches(std::slice::from_ref(right)),
                            &grace::Side::Batches(std::slice::from_ref(left)),
                            emit,
                        )
                    });
                    shared.done();
                    return out;
                }
            },
        };
        let out = at_least_one(&spec.output, emit, |emit| {
            spec.probe_whole(left, &table, emit)
        });
        drop(table);
        if let Some(shared) = &self.broadcast {
            shared.done();
        }
        out
    }
}

/// Joins the gathered left side with one partition of the right (broadcast left).
pub struct JoinBroadcastLeft {
    /// The merge.
    pub spec: Arc<JoinSpec>,
    /// The left side's table (built by its [`BroadcastBuild`]).
    pub table: Arc<SharedTable>,
    /// The computation (its spill folder and counters).
    pub ctx: Arc<RunContext>,
}

impl Operator for JoinBroadcastLeft {
    fn name(&self) -> &str {
        "join"
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        Ok(Value::Batch(
            self.spec.collect(|emit| self.run_stream(inputs, emit))?,
        ))
    }
    fn streaming(&self) -> Streaming {
        Streaming::Source
    }
    fn run_stream(
        &self,
        inputs: &[Arc<Value>],
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let [left, right] = inputs else {
            return Err(Error::Internal("a join task takes two inputs".into()));
        };
        let (left, right) = (left.as_batch()?, right.as_batch()?);
        let spec = &self.spec;
        let Some(table) = self
            .table
            .get_or_build(left, &spec.left_keys, &spec.limits)?
        else {
            // Too big to hold as a table: a hash join of this right partition
            // (in chunks that fit) probed by the left side's rows.
            let out = at_least_one(&spec.output, emit, |emit| {
                grace::chunked(
                    spec,
                    &self.ctx,
                    &grace::Side::Batches(std::slice::from_ref(right)),
                    &grace::Side::Batches(std::slice::from_ref(left)),
                    emit,
                )
            });
            self.table.done();
            return out;
        };
        // Probed with the right rows, so the answer follows the right's order; a
        // broadcast left side runs only inner and right joins.
        let out = at_least_one(&spec.output, emit, |emit| {
            spec.probe_batch(
                &table,
                right,
                ProbeSide::Right,
                spec.keeps_right(),
                None,
                None,
                emit,
            )
        });
        drop(table);
        self.table.done();
        out
    }
}

/// Reads partition `i` of both sides of a shuffle join and joins them (as a grace
/// hash join when the right side does not fit, see [`grace`]), then frees their
/// disk.
pub struct ShuffleJoin {
    /// The computation whose shuffle store to read.
    pub ctx: Arc<RunContext>,
    /// The left side's and right side's shuffle partitions.
    pub partitions: (usize, usize),
    /// The merge.
    pub spec: Arc<JoinSpec>,
}

impl Operator for ShuffleJoin {
    fn name(&self) -> &str {
        "shuffle-join"
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        Ok(Value::Batch(
            self.spec.collect(|emit| self.run_stream(inputs, emit))?,
        ))
    }
    fn streaming(&self) -> Streaming {
        Streaming::Source
    }
    fn run_stream(
        &self,
        _inputs: &[Arc<Value>],
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let shuffle = self.ctx.shuffle()?;
        // Both sides stay in the store and are read a piece at a time on each pass:
        // the build side's table is what the grace join reserves, not the pieces.
        at_least_one(&self.spec.output, emit, |emit| {
            grace::join(
                &self.spec,
                &self.ctx,
                &grace::Side::Shuffled(&self.ctx, &shuffle, self.partitions.1),
                &grace::Side::Shuffled(&self.ctx, &shuffle, self.partitions.0),
                emit,
            )
        })?;
        self.ctx
            .drop_shuffle_partition(&shuffle, self.partitions.1)?;
        self.ctx
            .drop_shuffle_partition(&shuffle, self.partitions.0)?;
        Ok(())
    }
}

/// Hash partitioners for the two sides of a shuffle join: equal keys (already of
/// one type on both sides) land in the same partition number.
pub fn key_partitioners(
    spec: &JoinSpec,
) -> (
    super::partitioning::Partitioner,
    super::partitioning::Partitioner,
) {
    let names = |schema: &SchemaRef, keys: &[usize]| -> Vec<String> {
        keys.iter()
            .map(|&k| schema.field(k).name().clone())
            .collect()
    };
    (
        super::partitioning::Partitioner::Hash {
            keys: names(&spec.left_schema, &spec.left_keys),
        },
        super::partitioning::Partitioner::Hash {
            keys: names(&spec.right_schema, &spec.right_keys),
        },
    )
}
