//! Predicate pushdown on statistics: which row groups can hold a row that a filter
//! keeps. A filter predicate is rewritten into a predicate over each column's
//! minimum, maximum and null count (`x > 5` becomes `max(x) > 5 and nulls(x) !=
//! rows`), which is evaluated with the ordinary expression kernels on a small batch
//! with one row per row group. Where a statistic is missing the rewritten predicate
//! is null, which keeps the row group: pruning only ever skips what cannot match,
//! and the filter still runs on what is read.
//!
//! Partition folder columns (`month=6/`) take part as columns whose minimum and
//! maximum are the folder's value, so the same rewrite prunes whole folders.
//!
//! Floats: writers leave NaN out of the statistics, and our comparisons order NaN
//! above every number, so `>`, `>=` and `!=` on a float column never prune.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion_common::ScalarValue;

use crate::expr::{BinaryOp, Expr};

/// Which statistic of a column a rewritten predicate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stat {
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// How many values are null.
    Nulls,
}

/// The name of a statistics column in the batch the rewritten predicate runs on.
fn stat_column(stat: Stat, column: &str) -> String {
    let s = match stat {
        Stat::Min => "min",
        Stat::Max => "max",
        Stat::Nulls => "nulls",
    };
    format!("\u{1}{s}\u{1}{column}")
}

/// The column holding each row group's row count.
const ROWS: &str = "\u{1}rows";

fn unknown() -> Expr {
    Expr::Literal(ScalarValue::Boolean(Some(true)))
}

fn stat(stat: Stat, column: &str) -> Expr {
    Expr::Column(stat_column(stat, column))
}

/// A filter predicate rewritten over statistics, and the statistics it reads.
#[derive(Debug, Clone)]
pub struct StatsPredicate {
    expr: Expr,
    /// The columns whose statistics are read (null counts always come with them).
    pub columns: Vec<String>,
}

impl StatsPredicate {
    /// Rewrites `predicate` (checked against `schema`); `None` when no part of it
    /// can be decided from statistics.
    pub fn new(predicate: &Expr, schema: &Schema) -> Option<StatsPredicate> {
        let expr = rewrite(predicate, false, schema);
        if expr == unknown() {
            return None;
        }
        let columns: Vec<String> = expr
            .columns()
            .into_iter()
            .filter_map(|c| {
                c.strip_prefix('\u{1}')
                    .and_then(|r| r.split_once('\u{1}'))
                    .map(|(_, name)| name.to_string())
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        Some(StatsPredicate { expr, columns })
    }

    /// For each of `rows.len()` row groups, whether it may hold a matching row.
    /// `stats` gives, for each column in [`columns`](Self::columns), arrays of its
    /// minimum, maximum (of the column's type) and null count (UInt64), one entry
    /// per row group, null where unknown. Any failure keeps every row group.
    pub fn may_match(
        &self,
        rows: &UInt64Array,
        stats: &BTreeMap<String, (ArrayRef, ArrayRef, UInt64Array)>,
    ) -> Vec<bool> {
        let n = rows.len();
        let keep_all = vec![true; n];
        let mut fields = vec![Field::new(ROWS, DataType::UInt64, true)];
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(rows.clone())];
        for c in &self.columns {
            let Some((min, max, nulls)) = stats.get(c) else {
                return keep_all;
            };
            if min.len() != n || max.len() != n || nulls.len() != n {
                return keep_all;
            }
            for (s, a) in [
                (Stat::Min, min.clone()),
                (Stat::Max, max.clone()),
                (Stat::Nulls, Arc::new(nulls.clone()) as ArrayRef),
            ] {
                fields.push(Field::new(stat_column(s, c), a.data_type().clone(), true));
                arrays.push(a);
            }
        }
        let Ok(batch) = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays) else {
            return keep_all;
        };
        match crate::expr::evaluate(&self.expr, &batch) {
            Ok(a) => match a.as_any().downcast_ref::<BooleanArray>() {
                // Null: the statistics cannot tell, so the row group is read.
                Some(b) if b.len() == n => (0..n).map(|i| b.is_null(i) || b.value(i)).collect(),
                _ => keep_all,
            },
            Err(_) => keep_all,
        }
    }
}

fn flip(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::LtEq => BinaryOp::GtEq,
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::GtEq => BinaryOp::LtEq,
        other => other,
    }
}

fn negate(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Eq => BinaryOp::NotEq,
        BinaryOp::NotEq => BinaryOp::Eq,
        BinaryOp::Lt => BinaryOp::GtEq,
        BinaryOp::LtEq => BinaryOp::Gt,
        BinaryOp::Gt => BinaryOp::LtEq,
        BinaryOp::GtEq => BinaryOp::Lt,
        other => other,
    }
}

/// `predicate` (negated when `neg`) as a predicate over statistics that is false
/// only when no row of the row group can make `predicate` true.
fn rewrite(predicate: &Expr, neg: bool, schema: &Schema) -> Expr {
    match predicate {
        Expr::Binary { left, op, right } if matches!(op, BinaryOp::And | BinaryOp::Or) => {
            let (l, r) = (rewrite(left, neg, schema), rewrite(right, neg, schema));
            // not (a and b) = not a or not b
            let and = (*op == BinaryOp::And) != neg;
            if and {
                match (l == unknown(), r == unknown()) {
                    (true, _) => r,
                    (_, true) => l,
                    _ => l.and(r),
                }
            } else if l == unknown() || r == unknown() {
                unknown()
            } else {
                l.or(r)
            }
        }
        Expr::Not(inner) => rewrite(inner, !neg, schema),
        Expr::Binary { left, op, right } => {
            let (column, op, value) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v)) => (c, *op, v),
                (Expr::Literal(v), Expr::Column(c)) => (c, flip(*op), v),
                _ => return unknown(),
            };
            let op = if neg { negate(op) } else { op };
            compare(column, op, value, schema)
        }
        Expr::IsNull(e) | Expr::IsNotNull(e) => {
            let Expr::Column(c) = e.as_ref() else {
                return unknown();
            };
            let wants_null = matches!(predicate, Expr::IsNull(_)) != neg;
            let nulls = stat(Stat::Nulls, c);
            if wants_null {
                nulls.gt(Expr::Literal(ScalarValue::UInt64(Some(0))))
            } else {
                nulls.lt(Expr::Column(ROWS.into()))
            }
        }
        _ => unknown(),
    }
}

fn compare(column: &str, op: BinaryOp, value: &ScalarValue, schema: &Schema) -> Expr {
    let Ok(field) = schema.field_with_name(column) else {
        return unknown();
    };
    if value.is_null() {
        // A comparison with null is null for every row: no row is kept.
        return Expr::Literal(ScalarValue::Boolean(Some(false)));
    }
    let float = field.data_type().is_floating()
        || matches!(field.data_type(), DataType::Dictionary(_, v) if v.is_floating());
    let nan = matches!(value, ScalarValue::Float64(Some(f)) if f.is_nan())
        || matches!(value, ScalarValue::Float32(Some(f)) if f.is_nan());
    if nan || (float && matches!(op, BinaryOp::Gt | BinaryOp::GtEq | BinaryOp::NotEq)) {
        return unknown();
    }
    let v = || Expr::Literal(value.clone());
    let (min, max) = (stat(Stat::Min, column), stat(Stat::Max, column));
    let bound = match op {
        BinaryOp::Eq => min.lt_eq(v()).and(max.gt_eq(v())),
        BinaryOp::NotEq => min.not_eq(v()).or(max.not_eq(v())),
        BinaryOp::Lt => min.lt(v()),
        BinaryOp::LtEq => min.lt_eq(v()),
        BinaryOp::Gt => max.gt(v()),
        BinaryOp::GtEq => max.gt_eq(v()),
        _ => return unknown(),
    };
    // A row group whose values are all null matches no comparison.
    stat(Stat::Nulls, column)
        .not_eq(Expr::Column(ROWS.into()))
        .and(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::parse;
    use arrow::array::{Float64Array, Int64Array, StringArray};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
        ])
    }

    /// Three row groups: i in [0, 9], [10, 19], all null; x in [0, 1], [5, 6],
    /// unknown; s in [a, c], [d, f], [x, z].
    fn decide(predicate: &str) -> Vec<bool> {
        let p = StatsPredicate::new(&parse(predicate).unwrap(), &schema());
        let Some(p) = p else { return vec![true; 3] };
        let rows = UInt64Array::from(vec![10, 10, 10]);
        let mut stats = BTreeMap::new();
        stats.insert(
            "i".to_string(),
            (
                Arc::new(Int64Array::from(vec![Some(0), Some(10), None])) as ArrayRef,
                Arc::new(Int64Array::from(vec![Some(9), Some(19), None])) as ArrayRef,
                UInt64Array::from(vec![Some(0), Some(1), Some(10)]),
            ),
        );
        stats.insert(
            "x".to_string(),
            (
                Arc::new(Float64Array::from(vec![Some(0.0), Some(5.0), None])) as ArrayRef,
                Arc::new(Float64Array::from(vec![Some(1.0), Some(6.0), None])) as ArrayRef,
                UInt64Array::from(vec![None, None, None]),
            ),
        );
        stats.insert(
            "s".to_string(),
            (
                Arc::new(StringArray::from(vec!["a", "d", "x"])) as ArrayRef,
                Arc::new(StringArray::from(vec!["c", "f", "z"])) as ArrayRef,
                UInt64Array::from(vec![0, 0, 0]),
            ),
        );
        p.may_match(&rows, &stats)
    }

    #[test]
    fn comparisons_prune_what_cannot_match() {
        assert_eq!(decide("i > 9"), vec![false, true, false]);
        assert_eq!(decide("9 < i"), vec![false, true, false]);
        assert_eq!(decide("i == 12"), vec![false, true, false]);
        assert_eq!(decide("i <= 0"), vec![true, false, false]);
        assert_eq!(decide("i is null"), vec![false, true, true]);
        assert_eq!(decide("i is not null"), vec![true, true, false]);
        assert_eq!(decide("s == 'e'"), vec![false, true, false]);
        assert_eq!(decide("s >= 'y'"), vec![false, false, true]);
        assert_eq!(decide("i > 9 and s == 'b'"), vec![false, false, false]);
        assert_eq!(decide("i > 9 or s == 'b'"), vec![true, true, false]);
        assert_eq!(decide("not (i < 10)"), vec![false, true, false]);
        assert_eq!(decide("not (i < 10 or s < 'e')"), vec![false, true, false]);
    }

    #[test]
    fn what_statistics_cannot_decide_is_kept() {
        // Float maxima leave out NaN, which compares above every number.
        assert_eq!(decide("x > 3"), vec![true, true, true]);
        assert_eq!(decide("x < 3"), vec![true, false, true]);
        assert_eq!(decide("i + 1 > 100"), vec![true, true, true]);
        assert_eq!(decide("i > 9 or i + 1 > 100"), vec![true, true, true]);
        assert_eq!(decide("i > 9 and i + 1 > 100"), vec![false, true, false]);
        assert_eq!(decide("i != 5"), vec![true, true, false]);
    }
}
