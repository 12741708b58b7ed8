//! `merge`: joining two frames on key columns, as pandas' `merge` (inner, left,
//! right, outer; `_x`/`_y` suffixes on clashing column names; null keys match each
//! other, as in pandas).
//!
//! Three ways to run it, chosen when the merge is written:
//! - **partition-wise**: both frames indexed by the key with the same divisions, so
//!   partition `i` of one meets only partition `i` of the other; nothing moves.
//! - **broadcast**: one side is small (one partition, or an estimated size under a
//!   sixteenth of the memory limit): it is gathered once and every partition of the
//!   other side joins against it. Its hash table is built once per computation.
//! - **shuffle**: both sides are hash-partitioned on the key through the shuffle
//!   store into the same partition numbers, and partition `i` of one joins
//!   partition `i` of the other.
//!
//! The kernel hashes the key columns in Arrow's row format (one byte string per
//! row, whatever the key types), chains equal keys of the build side, and
//! materialises the answer with `take` over index arrays, nulls standing for the
//! missing side of an outer row.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array, UInt32Builder};
use arrow::compute::kernels::zip::zip;
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::{RowConverter, Rows, SortField};
use hashbrown::HashTable;

use super::plan::Plan;
use super::DataFrame;
use crate::error::{Error, Result};
use crate::expr::col;
use crate::graph::{Operator, Value};
use crate::scheduler::RunContext;

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
        let spec = Arc::new(JoinSpec::new(
            left.schema(),
            right.schema(),
            &left_on,
            &right_on,
            how,
            &suffixes,
        )?);
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

    /// The same merge over inputs that give fewer columns.
    pub fn over(&self, left: SchemaRef, right: SchemaRef) -> Result<JoinSpec> {
        JoinSpec::new(
            left,
            right,
            &self.left_on,
            &self.right_on,
            self.how,
            &self.suffixes,
        )
    }

    /// Joins one left batch with one right batch, building the hash table on the
    /// right.
    pub fn join(&self, left: &RecordBatch, right: &RecordBatch) -> Result<RecordBatch> {
        let table = BuildTable::new(right, &self.right_keys)?;
        self.probe(left, &table)
    }

    /// Joins `left` against a built right side. Unmatched right rows are added for
    /// right and outer joins, so the table must hold the whole right side of this
    /// partition.
    pub fn probe(&self, left: &RecordBatch, table: &BuildTable) -> Result<RecordBatch> {
        let keep_left = matches!(self.how, How::Left | How::Outer);
        let keep_right = matches!(self.how, How::Right | How::Outer);
        let (l, r) = table.matches(left, &self.left_keys, keep_left, keep_right)?;
        self.materialize(left, &table.batch, &l, &r)
    }

    /// Joins a built left side against `right` (a broadcast left side): the table
    /// is probed with the right rows, so the answer follows the right's order.
    pub fn probe_from_right(&self, table: &BuildTable, right: &RecordBatch) -> Result<RecordBatch> {
        let keep_right = matches!(self.how, How::Right | How::Outer);
        let (r, l) = table.matches(right, &self.right_keys, keep_right, false)?;
        self.materialize(&table.batch, right, &l, &r)
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

/// One side of a join, its key rows hashed: equal keys chained together.
pub struct BuildTable {
    batch: RecordBatch,
    converter: RowConverter,
    rows: Rows,
    /// (hash, first row) per distinct key.
    heads: HashTable<(u64, u32)>,
    /// The next row with the same key, or `u32::MAX`.
    next: Vec<u32>,
    hasher: foldhash::fast::FixedState,
}

fn key_rows(converter: &RowConverter, batch: &RecordBatch, keys: &[usize]) -> Result<Rows> {
    let columns: Vec<ArrayRef> = keys.iter().map(|&k| batch.column(k).clone()).collect();
    Ok(converter.convert_columns(&columns)?)
}

impl BuildTable {
    /// Hashes `batch`'s `keys` columns.
    pub fn new(batch: &RecordBatch, keys: &[usize]) -> Result<BuildTable> {
        use std::hash::BuildHasher;
        let fields = keys
            .iter()
            .map(|&k| SortField::new(batch.column(k).data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)?;
        let rows = key_rows(&converter, batch, keys)?;
        let hasher = foldhash::fast::FixedState::with_seed(0x101);
        let n = batch.num_rows();
        if n >= u32::MAX as usize {
            return Err(Error::plan(
                "merge",
                format!("one side of a join partition has {n} rows; use more partitions"),
            ));
        }
        let mut heads: HashTable<(u64, u32)> = HashTable::with_capacity(n);
        let mut next = vec![u32::MAX; n];
        // Walk backwards so each chain lists rows in order.
        for i in (0..n).rev() {
            let row = rows.row(i);
            let h = hasher.hash_one(row.as_ref());
            match heads.find_mut(h, |&(hh, j)| hh == h && rows.row(j as usize) == row) {
                Some(head) => {
                    next[i] = head.1;
                    head.1 = i as u32;
                }
                None => {
                    heads.insert_unique(h, (h, i as u32), |&(hh, _)| hh);
                }
            }
        }
        Ok(BuildTable {
            batch: batch.clone(),
            converter,
            rows,
            heads,
            next,
            hasher,
        })
    }

    /// Index pairs (probe row, build row) of every match, in probe order; with
    /// `keep_probe`, unmatched probe rows paired with null; with `keep_build`,
    /// unmatched build rows paired with null at the end.
    fn matches(
        &self,
        probe: &RecordBatch,
        keys: &[usize],
        keep_probe: bool,
        keep_build: bool,
    ) -> Result<(UInt32Array, UInt32Array)> {
        use std::hash::BuildHasher;
        let rows = key_rows(&self.converter, probe, keys)?;
        let mut p = UInt32Builder::with_capacity(probe.num_rows());
        let mut b = UInt32Builder::with_capacity(probe.num_rows());
        let mut matched = if keep_build {
            vec![false; self.batch.num_rows()]
        } else {
            Vec::new()
        };
        for i in 0..probe.num_rows() {
            let row = rows.row(i);
            let h = self.hasher.hash_one(row.as_ref());
            match self
                .heads
                .find(h, |&(hh, j)| hh == h && self.rows.row(j as usize) == row)
            {
                Some(&(_, first)) => {
                    let mut j = first;
                    while j != u32::MAX {
                        p.append_value(i as u32);
                        b.append_value(j);
                        if keep_build {
                            matched[j as usize] = true;
                        }
                        j = self.next[j as usize];
                    }
                }
                None if keep_probe => {
                    p.append_value(i as u32);
                    b.append_null();
                }
                None => {}
            }
        }
        for (j, m) in matched.iter().enumerate() {
            if !m {
                p.append_null();
                b.append_value(j as u32);
            }
        }
        Ok((p.finish(), b.finish()))
    }
}

/// A broadcast side's hash table, built by the first join task to run while the
/// others wait for it (they all need it), so it is built and held once.
#[derive(Default)]
pub struct SharedTable(Mutex<Option<Arc<BuildTable>>>);

impl SharedTable {
    fn get_or_build(&self, batch: &RecordBatch, keys: &[usize]) -> Result<Arc<BuildTable>> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = slot.as_ref() {
            return Ok(t.clone());
        }
        let t = Arc::new(BuildTable::new(batch, keys)?);
        *slot = Some(t.clone());
        Ok(t)
    }
}

/// Joins one partition of each side (partition-wise), or a partition of the left
/// with the gathered right (broadcast right).
pub struct JoinPartitions {
    /// The merge.
    pub spec: Arc<JoinSpec>,
    /// For a broadcast, the right side's table.
    pub broadcast: Option<SharedTable>,
}

impl Operator for JoinPartitions {
    fn name(&self) -> &str {
        "join"
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        let [left, right] = inputs else {
            return Err(Error::Internal("a join task takes two inputs".into()));
        };
        let (left, right) = (left.as_batch()?, right.as_batch()?);
        Ok(Value::Batch(match &self.broadcast {
            None => self.spec.join(left, right)?,
            Some(shared) => {
                let table = shared.get_or_build(right, &self.spec.right_keys)?;
                self.spec.probe(left, &table)?
            }
        }))
    }
}

/// Joins the gathered left side with one partition of the right (broadcast left).
pub struct JoinBroadcastLeft {
    /// The merge.
    pub spec: Arc<JoinSpec>,
    /// The left side's table.
    pub table: SharedTable,
}

impl Operator for JoinBroadcastLeft {
    fn name(&self) -> &str {
        "join"
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        let [left, right] = inputs else {
            return Err(Error::Internal("a join task takes two inputs".into()));
        };
        let (left, right) = (left.as_batch()?, right.as_batch()?);
        let table = self.table.get_or_build(left, &self.spec.left_keys)?;
        Ok(Value::Batch(self.spec.probe_from_right(&table, right)?))
    }
}

/// Reads partition `i` of both sides of a shuffle join and joins them, then frees
/// their disk.
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
    fn run(&self, _inputs: &[Arc<Value>]) -> Result<Value> {
        let gather = |partition: usize, schema: &SchemaRef| -> Result<RecordBatch> {
            let shuffle = self.ctx.shuffle()?;
            let mut batches = Vec::new();
            for bytes in super::ops::get_reserved(&shuffle, partition)? {
                batches.extend(outcore_storage::codec::decode_batches(&bytes)?.1);
            }
            let all = arrow::compute::concat_batches(schema, &batches)?;
            shuffle.drop_partition(partition)?;
            Ok(all)
        };
        let right = gather(self.partitions.1, &self.spec.right_schema)?;
        let left = gather(self.partitions.0, &self.spec.left_schema)?;
        // The hash table over the build side: about its size again.
        crate::scheduler::reserve("join build side", right.get_array_memory_size() as u64)?;
        Ok(Value::Batch(self.spec.join(&left, &right)?))
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
