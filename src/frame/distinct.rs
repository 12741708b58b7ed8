//! Distinct rows and distinct counts of a frame: `drop_duplicates(subset)` (the
//! first row of each distinct `subset`, as pandas' `keep='first'`) and global
//! `nunique(column)`. Both are groupbys in disguise, so they reuse the aggregation
//! machinery, including the split_out hash shuffle for many distinct values:
//!
//! ```text
//!   rows ─pack non-key columns into one Struct─► groupby(subset).first(row) ─unpack─► rows
//!   column ─groupby(column).size() (split_out through the shuffle)─► count the groups
//! ```
//!
//! `first` over the packed struct keeps a whole row (its non-null struct value)
//! rather than each column's first non-null value. Keys are compared as groupby
//! keys (nulls equal to each other, as pandas); float columns cannot be keys, so
//! `drop_duplicates` needs its subset to be integer, string, boolean, date or
//! timestamp columns, while `nunique` of a float column counts with the in-memory
//! distinct set of `AggFunc::Nunique`.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, StructArray};
use arrow::datatypes::{DataType, Field, Fields, Schema};

use super::DataFrame;
use crate::agg::{first, nunique, size};
use crate::error::{Error, Result};
use crate::scheduler::RunStats;

/// The hidden column that carries the non-key columns of a row.
const ROW: &str = "__row";

impl DataFrame {
    /// The frame without duplicate rows: the first row (in partition order) of
    /// each distinct combination of `subset` (every column when empty), as pandas'
    /// `drop_duplicates(subset, keep='first')`. With `split_out > 1` the rows are
    /// hash-partitioned by `subset` through the shuffle store into `split_out`
    /// partitions, so no task holds more than about 1/n of the distinct rows; rows
    /// are then in first-seen order within each partition only. Columns keep
    /// their order; dictionary strings come back as plain strings.
    pub fn drop_duplicates<S: AsRef<str>>(
        &self,
        subset: &[S],
        split_out: usize,
    ) -> Result<DataFrame> {
        let all = self.columns();
        let keys: Vec<String> = if subset.is_empty() {
            all.clone()
        } else {
            subset.iter().map(|s| s.as_ref().to_string()).collect()
        };
        for k in &keys {
            crate::expr::column_type(&self.schema, k)?;
        }
        let rest: Vec<usize> = (0..all.len())
            .filter(|&i| !keys.contains(&all[i]))
            .collect();
        let grouped = |frame: &DataFrame| {
            frame
                .groupby(&keys)?
                .keep_null_keys()
                .unsorted()
                .split_out(split_out)
        };
        let deduped = if rest.is_empty() {
            let counted = grouped(self)?.agg(&[size().alias(ROW)])?;
            counted.select(&keys)?
        } else {
            let row_fields: Fields = rest
                .iter()
                .map(|&i| self.schema.field(i).clone().with_nullable(true))
                .collect();
            let mut packed_fields: Vec<Field> = keys
                .iter()
                .map(|k| {
                    let f = self.schema.field_with_name(k).expect("keys were checked");
                    f.clone()
                })
                .collect();
            packed_fields.push(Field::new(ROW, DataType::Struct(row_fields.clone()), false));
            let packed_schema = Arc::new(Schema::new(packed_fields));
            let (key_idx, rest_idx) = (
                keys.iter()
                    .map(|k| self.schema.index_of(k).expect("keys were checked"))
                    .collect::<Vec<_>>(),
                rest.clone(),
            );
            let out_schema = packed_schema.clone();
            let packed = self.map_partitions(packed_schema, move |b: RecordBatch| {
                let mut cols: Vec<ArrayRef> =
                    key_idx.iter().map(|&i| b.column(i).clone()).collect();
                let children: Vec<ArrayRef> =
                    rest_idx.iter().map(|&i| b.column(i).clone()).collect();
                cols.push(Arc::new(StructArray::try_new(
                    row_fields.clone(),
                    children,
                    None,
                )?));
                Ok(RecordBatch::try_new(out_schema.clone(), cols)?)
            });
            let firsts = grouped(&packed)?.agg(&[first(ROW).alias(ROW)])?;
            // Unpack into the original column order.
            let agg_schema = firsts.schema();
            let row_at = agg_schema.index_of(ROW).expect("the row column");
            let DataType::Struct(children) = agg_schema.field(row_at).data_type().clone() else {
                return Err(Error::Internal("the packed row is not a struct".into()));
            };
            let order: Vec<(bool, usize)> = all
                .iter()
                .map(|c| match keys.iter().position(|k| k == c) {
                    Some(k) => (true, k),
                    None => (
                        false,
                        children
                            .iter()
                            .position(|f| f.name() == c)
                            .expect("a packed column"),
                    ),
                })
                .collect();
            let fields: Vec<Field> = order
                .iter()
                .map(|&(is_key, i)| {
                    if is_key {
                        agg_schema.field(i).clone()
                    } else {
                        children[i].as_ref().clone()
                    }
                })
                .collect();
            let schema = Arc::new(Schema::new(fields));
            let out = schema.clone();
            firsts.map_partitions(schema, move |b: RecordBatch| {
                let row = b.column(row_at).as_struct();
                let cols: Vec<ArrayRef> = order
                    .iter()
                    .map(|&(is_key, i)| {
                        if is_key {
                            b.column(i).clone()
                        } else {
                            row.column(i).clone()
                        }
                    })
                    .collect();
                let options =
                    arrow::array::RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
                Ok(RecordBatch::try_new_with_options(
                    out.clone(),
                    cols,
                    &options,
                )?)
            })
        };
        Ok(deduped)
    }

    /// The number of distinct non-null values of `column` (Dask's
    /// `df[column].nunique(split_out=...)`). With `split_out > 1` (and a column
    /// that can be a groupby key) the values are hash-partitioned through the
    /// shuffle store and each partition's distinct values counted there, so no
    /// task holds more than about 1/n of them; otherwise one distinct set is
    /// reduced by the combine tree.
    pub fn nunique(&self, column: &str, split_out: usize) -> Result<i64> {
        Ok(self.nunique_with_stats(column, split_out)?.0)
    }

    /// [`nunique`](Self::nunique), and what the run did.
    pub fn nunique_with_stats(&self, column: &str, split_out: usize) -> Result<(i64, RunStats)> {
        let t = crate::expr::column_type(&self.schema, column)?;
        let keyable = !matches!(
            t,
            DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Null
        ) && !matches!(
            t,
            DataType::Struct(_) | DataType::List(_) | DataType::Binary
        );
        let one = self.select(&[column])?;
        if split_out > 1 && keyable {
            let groups = one
                .groupby(&[column])?
                .unsorted()
                .split_out(split_out)?
                .agg(&[size()])?;
            let count = std::sync::atomic::AtomicI64::new(0);
            let stats = groups.for_each_partition(&|_, b| {
                count.fetch_add(b.num_rows() as i64, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            })?;
            return Ok((count.into_inner(), stats));
        }
        let (b, stats) = one.agg(&[nunique(column)])?.compute_with_stats()?;
        let n = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        Ok((if n.is_empty() { 0 } else { n.value(0) }, stats))
    }
}
