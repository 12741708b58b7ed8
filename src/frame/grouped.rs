//! Time bins and windows per group: pandas' `df.groupby(k).resample(rule).agg(..)`
//! and `df.groupby(k).rolling(window).agg(..)`, built from operations that exist.
//!
//! ```text
//!   resample:  rows ─► bin number per row ─► groupby(keys, bin).agg ─► fill the empty
//!              (known divisions give the bins'     (one partition,      bins between a
//!               anchor)                              sorted by key, bin)  group's first and last
//!   rolling:   rows ─► sort_values(keys, index) ─► rolling windows that stop at a change of key
//! ```
//!
//! The answers follow pandas: for resample, the keys, the bin label, then one
//! column per aggregation; each group's bins run from its own first row's bin to
//! its last row's, an empty one with count, size and sum 0 and nulls elsewhere;
//! groups in key order, null keys dropped. For rolling, the rows in key order, then
//! in index order within a group (rows with a null key dropped, as pandas' default
//! `dropna=True`), the keys first, then the frame's other columns, then one column
//! per aggregation.
//!
//! Bins are anchored as pandas anchors them when it resamples each group alone: at
//! midnight of the group's first day. That differs from one anchor for all only for
//! rules that do not divide a day or are multiples of weeks or months; for those, one
//! more pass finds each group's first timestamp.
//!
//! Limits: a grouped resample's answer is one partition (groups × bins rows).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, Scalar, TimestampNanosecondArray,
    UInt32Array,
};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use arrow::row::{RowConverter, SortField};

use super::resample::{time_index, MAX_BINS};
use super::rolling::{Rolling, Window};
use super::timerule::{Binner, Rule, Side, Unit};
use super::{DataFrame, GroupBy};
use crate::agg::{AggFunc, AggSpec};
use crate::error::{Error, Result};

const OP: &str = "groupby-resample";

/// The bin number column's name while the groups are aggregated (`#` added
/// until no column has the name).
const BIN: &str = "bin#";

/// `df.groupby(keys)?.resample(rule)?`, waiting for its aggregations.
#[must_use]
#[derive(Debug, Clone)]
pub struct GroupedResampler {
    frame: DataFrame,
    keys: Vec<String>,
    rule: Rule,
    closed: Option<Side>,
    label: Option<Side>,
    index: String,
    /// The first division: where the bins are anchored.
    first: i64,
}

/// `df.groupby(keys)?.rolling(window)?`, waiting for its aggregations.
#[must_use]
#[derive(Debug, Clone)]
pub struct GroupedRolling {
    rolling: Rolling,
    keys: Vec<String>,
}

/// Nanoseconds in a day.
const NS_PER_DAY: i64 = 86_400_000_000_000;

/// Whether each group needs bins of its own: pandas resamples each group alone, so
/// its bins are anchored at midnight of the group's first day. That moves the bins
/// only when the rule does not divide a day (`7h`, `2D`) or is a multiple of weeks
/// or months (`2W`, `3MS`); otherwise every anchor gives the same bins.
fn anchored_per_group(rule: &Rule) -> bool {
    match rule.unit {
        Unit::Fixed(_) => rule.fixed_ns().is_some_and(|ns| NS_PER_DAY % ns != 0),
        _ => rule.n > 1,
    }
}

/// Each group's binner, anchored at its first timestamp, found by its keys in
/// Arrow's row format.
struct GroupBinners {
    key_types: Vec<DataType>,
    converter: RowConverter,
    binners: HashMap<Vec<u8>, Binner>,
}

impl GroupBinners {
    /// One pass over `frame` (keys and index): the first timestamp of each group.
    fn compute(
        frame: &DataFrame,
        keys: &[String],
        index: &str,
        make: &dyn Fn(i64) -> Binner,
    ) -> Result<GroupBinners> {
        let mut columns: Vec<String> = keys.to_vec();
        columns.push(index.to_string());
        let projected = frame.select(&columns)?;
        let schema = projected.schema();
        let key_types: Vec<DataType> = keys
            .iter()
            .map(|k| crate::expr::column_type(&schema, k))
            .collect::<Result<_>>()?;
        let mut fields: Vec<Field> = schema.fields()[..keys.len()]
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("first#", DataType::Int64, true));
        let out = Arc::new(Schema::new(fields));
        let (nk, o) = (keys.len(), out.clone());
        let as_ns = projected.map_partitions(out, move |batch| {
            let ts = cast(
                batch.column(nk),
                &DataType::Timestamp(TimeUnit::Nanosecond, None),
            )?;
            let mut cols = batch.columns()[..nk].to_vec();
            cols.push(cast(&ts, &DataType::Int64)?);
            Ok(RecordBatch::try_new(o.clone(), cols)?)
        });
        let firsts = as_ns
            .groupby(keys)?
            .split_out(1)?
            .agg(&[AggSpec::new(AggFunc::Min, "first#").alias("first#")])?
            .compute()?;
        let converter = RowConverter::new(
            key_types
                .iter()
                .map(|t| SortField::new(t.clone()))
                .collect(),
        )?;
        let key_columns: Vec<ArrayRef> = (0..nk)
            .map(|i| cast(firsts.column(i), &key_types[i]))
            .collect::<std::result::Result<_, _>>()?;
        let rows = converter.convert_columns(&key_columns)?;
        let first = firsts.column(nk).as_primitive::<Int64Type>();
        let mut binners = HashMap::with_capacity(firsts.num_rows());
        for i in 0..firsts.num_rows() {
            if first.is_valid(i) {
                binners.insert(rows.row(i).as_ref().to_vec(), make(first.value(i)));
            }
        }
        Ok(GroupBinners {
            key_types,
            converter,
            binners,
        })
    }

    /// The binner of each row of `keys` (none for a key never seen: a null key).
    fn for_rows<'a>(&'a self, keys: &[ArrayRef]) -> Result<Vec<Option<&'a Binner>>> {
        let keys: Vec<ArrayRef> = keys
            .iter()
            .zip(&self.key_types)
            .map(|(k, t)| cast(k, t))
            .collect::<std::result::Result<_, _>>()?;
        let rows = self.converter.convert_columns(&keys)?;
        Ok((0..rows.num_rows())
            .map(|i| self.binners.get(rows.row(i).as_ref()))
            .collect())
    }
}

impl GroupBy {
    /// Time bins of `rule` per group (pandas' `df.groupby(k).resample(rule)`), by the
    /// frame's timestamp index, which must have known divisions (as for
    /// [`DataFrame::resample`]). Finish with [`GroupedResampler::agg`].
    ///
    /// ```no_run
    /// # use outcore::agg::mean;
    /// # let session = outcore::Session::new()?;
    /// let df = session.read("data/timeseries/*.csv").with_parse_dates(["timestamp"]).load()?;
    /// let hourly = df.set_index("timestamp")?.groupby(&["name"])?.resample("1h")?.agg(&[mean("x")])?;
    /// # Ok::<(), outcore::Error>(())
    /// ```
    pub fn resample(self, rule: &str) -> Result<GroupedResampler> {
        let rule = Rule::parse(rule)?;
        let (index, divisions) = time_index(&self.frame, OP)?;
        if self.keys.contains(&index) {
            return Err(Error::plan(
                OP,
                format!("the index {index:?} cannot also be a group key"),
            ));
        }
        Ok(GroupedResampler {
            frame: self.frame,
            keys: self.keys,
            rule,
            closed: None,
            label: None,
            index,
            first: divisions[0],
        })
    }

    /// Moving windows per group (pandas' `df.groupby(k).rolling(window)`): rows are
    /// ordered by the keys, then by the frame's index (which must exist; a time
    /// window needs a timestamp index), and no window reaches across a change of
    /// key. Finish with [`GroupedRolling::agg`].
    pub fn rolling(self, window: Window) -> Result<GroupedRolling> {
        let Some(index) = self.frame.index_column() else {
            return Err(Error::plan(
                "groupby-rolling",
                "needs an index that orders the rows within each group: \
                 set_index(\"timestamp\") first (CLI: --index timestamp)",
            ));
        };
        if self.keys.contains(&index) {
            return Err(Error::plan(
                "groupby-rolling",
                format!("the index {index:?} cannot also be a group key"),
            ));
        }
        // Rows with a null key belong to no group (pandas' dropna=True).
        let mut keyed: Option<crate::expr::Expr> = None;
        for k in &self.keys {
            let e = crate::expr::col(k).is_not_null();
            keyed = Some(match keyed {
                Some(all) => all.and(e),
                None => e,
            });
        }
        let frame = match keyed {
            Some(e) => self.frame.filter(e)?,
            None => self.frame.clone(),
        };
        let mut by: Vec<(&str, bool)> = self.keys.iter().map(|k| (k.as_str(), true)).collect();
        by.push((index.as_str(), true));
        let sorted = frame.sort_values(&by)?;
        Ok(GroupedRolling {
            rolling: super::rolling::grouped(sorted, window, self.keys.clone(), index)?,
            keys: self.keys,
        })
    }
}

impl GroupedRolling {
    /// Non-null values a window needs for a result (as [`Rolling::min_periods`]).
    pub fn min_periods(mut self, n: usize) -> Self {
        self.rolling = self.rolling.min_periods(n);
        self
    }

    /// The keys, the frame's other columns, then one column per spec (mean, sum,
    /// min, max, std, var, count of a numeric column) over each row's window within
    /// its group.
    pub fn agg(&self, aggs: &[AggSpec]) -> Result<DataFrame> {
        let rolled = self.rolling.agg(aggs)?;
        let mut order = self.keys.clone();
        order.extend(
            rolled
                .columns()
                .into_iter()
                .filter(|c| !self.keys.contains(c)),
        );
        rolled.select(&order)
    }
}

impl GroupedResampler {
    /// Which side of each bin is closed (pandas' defaults, as
    /// [`Resampler::closed`](super::resample::Resampler::closed)).
    pub fn closed(mut self, side: Side) -> Self {
        self.closed = Some(side);
        self
    }

    /// Which edge labels each bin.
    pub fn label(mut self, side: Side) -> Self {
        self.label = Some(side);
        self
    }

    /// Aggregates each group's bins: sum, count, size, mean, min, max, std, var,
    /// first, last. The answer: the keys, the index column (bin labels), then one
    /// column per spec; see the module's notes for empty bins.
    pub fn agg(&self, aggs: &[AggSpec]) -> Result<DataFrame> {
        let schema = self.frame.schema();
        let mut needed: Vec<String> = self.keys.clone();
        needed.push(self.index.clone());
        for a in aggs {
            if let Some((c, _)) = super::resample::resample_column_type(OP, &schema, a)? {
                if !needed.iter().any(|n| n == c) {
                    needed.push(c.to_string());
                }
            }
            if self.keys.contains(&a.alias) || a.alias == self.index {
                return Err(Error::plan(
                    OP,
                    format!("column {:?} is both a key and an aggregation", a.alias),
                ));
            }
        }
        let binner = Arc::new(Binner::new(&self.rule, self.closed, self.label, self.first));
        let (rule, closed, label) = (&self.rule, self.closed, self.label);
        let groups: Option<Arc<GroupBinners>> = if anchored_per_group(rule) {
            Some(Arc::new(GroupBinners::compute(
                &self.frame,
                &self.keys,
                &self.index,
                &|first| Binner::new(rule, closed, label, first),
            )?))
        } else {
            None
        };
        let nk = self.keys.len();
        let projected = self.frame.select(&needed)?;
        let mut fields: Vec<Field> = projected
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut bin = BIN.to_string();
        while fields.iter().any(|f| f.name() == &bin) {
            bin.push('#');
        }
        fields.push(Field::new(&bin, DataType::Int64, true));
        let binned_schema = Arc::new(Schema::new(fields));
        let (b, index, out) = (binner.clone(), self.index.clone(), binned_schema.clone());
        let g = groups.clone();
        let binned = projected.map_partitions(binned_schema, move |batch| {
            let ts = batch
                .column_by_name(&index)
                .ok_or_else(|| crate::expr::unknown_column(&batch.schema(), &index))?;
            let ts = cast(ts, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
            let ts = ts
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
                .ok_or_else(|| Error::Internal("index cast to timestamp".into()))?;
            let bins: Int64Array = match &g {
                None => ts.unary_opt(|t| Some(b.bin(t))),
                Some(g) => {
                    let per_row = g.for_rows(&batch.columns()[..nk])?;
                    ts.iter()
                        .zip(per_row)
                        .map(|(t, b)| Some(b?.bin(t?)))
                        .collect()
                }
            };
            let mut columns = batch.columns().to_vec();
            columns.push(Arc::new(bins));
            Ok(RecordBatch::try_new(out.clone(), columns)?)
        });
        let mut group_keys = self.keys.clone();
        group_keys.push(bin);
        let aggregated = binned.groupby(&group_keys)?.split_out(1)?.agg(aggs)?;
        let agg_schema = aggregated.schema();
        let mut fields: Vec<Field> = agg_schema.fields()[..nk]
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(
            &self.index,
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        ));
        // An empty bin's aggregations are null (or 0).
        fields.extend(
            agg_schema.fields()[nk + 1..]
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true)),
        );
        let filled_schema: SchemaRef = Arc::new(Schema::new(fields));
        let zero_filled: Arc<[bool]> = aggs
            .iter()
            .map(|a| matches!(a.func, AggFunc::Sum | AggFunc::Count | AggFunc::Size))
            .collect();
        let out = filled_schema.clone();
        Ok(aggregated.map_partitions(filled_schema, move |batch| {
            fill_bins(&batch, nk, &binner, groups.as_deref(), &zero_filled, &out)
        }))
    }

    /// Open, high, low and close of `column` per group and bin.
    pub fn ohlc(&self, column: &str) -> Result<DataFrame> {
        self.agg(&super::resample::ohlc_specs(column))
    }
}

/// Adds the empty bins between each group's first and last (the batch is sorted
/// by the `nk` keys, then the bin number at column `nk`), replaces bin numbers by
/// labels (of the group's own binner when `groups` has them), and gives the empty
/// bins 0 in the `zero_filled` aggregations.
fn fill_bins(
    batch: &RecordBatch,
    nk: usize,
    binner: &Binner,
    groups: Option<&GroupBinners>,
    zero_filled: &[bool],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let bins = batch.column(nk).as_primitive::<Int64Type>();
    let keys: Vec<ArrayRef> = batch.columns()[..nk].to_vec();
    let ranges = if batch.num_rows() == 0 {
        Vec::new()
    } else {
        arrow::compute::partition(&keys)?.ranges()
    };
    let mut total: i64 = 0;
    for r in &ranges {
        total += bins.value(r.end - 1) - bins.value(r.start) + 1;
        if total > MAX_BINS {
            return Err(Error::plan(
                OP,
                format!(
                    "the groups' bins add up to more than {MAX_BINS}; choose a coarser rule or filter the rows first"
                ),
            ));
        }
    }
    let total = total as usize;
    let own = match groups {
        Some(g) => Some(g.for_rows(&keys)?),
        None => None,
    };
    let mut key_rows: Vec<u32> = Vec::with_capacity(total);
    let mut value_rows: Vec<Option<u32>> = Vec::with_capacity(total);
    let mut labels: Vec<i64> = Vec::with_capacity(total);
    for r in &ranges {
        let mut row = r.start;
        let binner = own.as_ref().and_then(|o| o[r.start]).unwrap_or(binner);
        for b in bins.value(r.start)..=bins.value(r.end - 1) {
            key_rows.push(r.start as u32);
            labels.push(binner.label(b));
            if row < r.end && bins.value(row) == b {
                value_rows.push(Some(row as u32));
                row += 1;
            } else {
                value_rows.push(None);
            }
        }
    }
    let key_rows = UInt32Array::from(key_rows);
    let value_rows = UInt32Array::from(value_rows);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for k in &keys {
        columns.push(take(k, &key_rows, None)?);
    }
    columns.push(Arc::new(TimestampNanosecondArray::from(labels)));
    for (i, zero) in zero_filled.iter().enumerate() {
        let taken = take(batch.column(nk + 1 + i), &value_rows, None)?;
        columns.push(if *zero && taken.null_count() > 0 {
            let zero = cast(&Int64Array::from(vec![0]), taken.data_type())?;
            let nulls = arrow::compute::is_null(&taken)?;
            arrow::compute::kernels::zip::zip(&nulls, &Scalar::new(zero), &taken)?
        } else {
            taken
        });
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
