//! Evaluates an [`Expr`] against a `RecordBatch` with Arrow's compute kernels: one
//! kernel call per operator per batch, never a loop over rows. Operands are brought
//! to a common type first: integers widen to `Int64`, an integer meeting a float
//! becomes `Float64`, `/` is always floating point (as in pandas), and a string
//! literal compared with a date or timestamp column is parsed as one.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::kernels::{cmp, numeric};
use arrow::compute::{and_kleene, cast, is_not_null, is_null, not, or_kleene};
use arrow::datatypes::DataType;
use datafusion_common::ScalarValue;

use super::{BinaryOp, Expr};
use crate::error::{Error, Result};

/// A column of values or one value that stands for every row.
enum Value {
    Array(ArrayRef),
    Scalar(ScalarValue),
}

impl Value {
    fn data_type(&self) -> DataType {
        match self {
            Value::Array(a) => a.data_type().clone(),
            Value::Scalar(s) => s.data_type(),
        }
    }

    fn cast_to(self, to: &DataType) -> Result<Value> {
        if &self.data_type() == to {
            return Ok(self);
        }
        Ok(match self {
            Value::Array(a) => Value::Array(cast(&a, to)?),
            // A text literal meets a timestamp: parse it as the CSV reader does
            // (`2000-01-05`, `2000-01-05 12:30`, `T`, fractions), with a clear error.
            Value::Scalar(ScalarValue::Utf8(Some(text)))
                if matches!(to, DataType::Timestamp(..) | DataType::Date32) =>
            {
                let ns = crate::io::csv::parse_timestamp_ns(text.trim().as_bytes()).ok_or_else(
                    || {
                        Error::plan(
                            "expression",
                            format!(
                                "{text:?} is not a timestamp; write it as 2000-01-05, \
                                 2000-01-05 12:30:00 or 2000-01-05T12:30:00.5"
                            ),
                        )
                    },
                )?;
                Value::Scalar(ScalarValue::TimestampNanosecond(Some(ns), None).cast_to(to)?)
            }
            Value::Scalar(s) => Value::Scalar(s.cast_to(to)?),
        })
    }

    fn into_array(self, rows: usize) -> Result<ArrayRef> {
        Ok(match self {
            Value::Array(a) => a,
            Value::Scalar(s) => s.to_array_of_size(rows)?,
        })
    }
}

/// Evaluates `expr` on `batch`, giving one value per row.
pub fn evaluate(expr: &Expr, batch: &RecordBatch) -> Result<ArrayRef> {
    eval(expr, batch)?.into_array(batch.num_rows())
}

/// Evaluates a boolean `expr` on `batch`; use the result with Arrow's `filter`, where
/// a null counts as false.
pub fn evaluate_predicate(expr: &Expr, batch: &RecordBatch) -> Result<BooleanArray> {
    let array = evaluate(expr, batch)?;
    let array = if array.data_type() == &DataType::Null {
        Arc::new(BooleanArray::new_null(array.len())) as ArrayRef
    } else {
        array
    };
    array
        .as_any()
        .downcast_ref::<BooleanArray>()
        .cloned()
        .ok_or_else(|| {
            Error::plan(
                "filter",
                format!("`{expr}` is {}, not a boolean condition", array.data_type()),
            )
        })
}

fn eval(expr: &Expr, batch: &RecordBatch) -> Result<Value> {
    Ok(match expr {
        Expr::Column(name) => match batch.column_by_name(name) {
            Some(a) => Value::Array(unpack_dictionary(a.clone())?),
            None => return Err(super::unknown_column(&batch.schema(), name)),
        },
        Expr::Literal(v) => Value::Scalar(v.clone()),
        Expr::Binary { left, op, right } => {
            let l = eval(left, batch)?;
            let r = eval(right, batch)?;
            binary(l, *op, r, batch.num_rows())?
        }
        Expr::Not(e) => {
            let a = eval(e, batch)?
                .cast_to(&DataType::Boolean)?
                .into_array(batch.num_rows())?;
            Value::Array(Arc::new(not(as_bool(&a)?)?))
        }
        Expr::Negative(e) => match eval(e, batch)? {
            Value::Scalar(s) => Value::Scalar(s.arithmetic_negate()?),
            Value::Array(a) => Value::Array(numeric::neg(&a)?),
        },
        Expr::IsNull(e) => {
            let a = eval(e, batch)?.into_array(batch.num_rows())?;
            Value::Array(Arc::new(is_null(&a)?))
        }
        Expr::IsNotNull(e) => {
            let a = eval(e, batch)?.into_array(batch.num_rows())?;
            Value::Array(Arc::new(is_not_null(&a)?))
        }
        Expr::Cast { expr, to } => eval(expr, batch)?.cast_to(to)?,
    })
}

/// Dictionary-encoded columns are compared and computed on through their values.
fn unpack_dictionary(a: ArrayRef) -> Result<ArrayRef> {
    match a.data_type() {
        DataType::Dictionary(_, value) => Ok(cast(&a, value)?),
        _ => Ok(a),
    }
}

fn as_bool(a: &ArrayRef) -> Result<&BooleanArray> {
    a.as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| Error::Internal(format!("expected a boolean array, got {}", a.data_type())))
}

fn is_integer(t: &DataType) -> bool {
    t.is_integer()
}

fn is_float(t: &DataType) -> bool {
    t.is_floating()
}

fn is_temporal(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
    )
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn value_type(t: &DataType) -> &DataType {
    match t {
        DataType::Dictionary(_, v) => v,
        other => other,
    }
}

/// The types both operands are cast to before `op` runs, or `None` when `op` does not
/// apply to these types.
fn operand_types(l: &DataType, op: BinaryOp, r: &DataType) -> Option<(DataType, DataType)> {
    let (l, r) = (value_type(l), value_type(r));
    use DataType::*;
    if matches!(op, BinaryOp::And | BinaryOp::Or) {
        return match (l, r) {
            (Boolean | Null, Boolean | Null) => Some((Boolean, Boolean)),
            _ => None,
        };
    }
    if l == &Null || r == &Null {
        let t = if l == &Null { r.clone() } else { l.clone() };
        return Some((t.clone(), t));
    }
    let numeric = |a: &DataType, b: &DataType| -> Option<DataType> {
        if (is_integer(a) || is_float(a) || a == &Boolean)
            && (is_integer(b) || is_float(b) || b == &Boolean)
        {
            if is_float(a) || is_float(b) || op == BinaryOp::Div {
                Some(Float64)
            } else {
                Some(Int64)
            }
        } else {
            None
        }
    };
    if op.is_arithmetic() {
        if let Some(t) = numeric(l, r) {
            if l == &Boolean && r == &Boolean {
                return None;
            }
            return Some((t.clone(), t));
        }
        // timestamp - timestamp is a duration; a text operand is read as a timestamp
        if op == BinaryOp::Sub && is_temporal(l) && (l == r || is_string(r)) {
            return Some((l.clone(), l.clone()));
        }
        if op == BinaryOp::Sub && is_string(l) && is_temporal(r) {
            return Some((r.clone(), r.clone()));
        }
        // timestamp ± duration is a timestamp
        if matches!(op, BinaryOp::Add | BinaryOp::Sub)
            && matches!(l, Timestamp(..))
            && matches!(r, Duration(_))
        {
            return Some((l.clone(), r.clone()));
        }
        if op == BinaryOp::Add && matches!(l, Duration(_)) && matches!(r, Timestamp(..)) {
            return Some((l.clone(), r.clone()));
        }
        return None;
    }
    debug_assert!(op.is_comparison());
    if let Some(t) = numeric(l, r) {
        if l == &Boolean && r == &Boolean {
            return Some((Boolean, Boolean));
        }
        if (l == &Boolean) != (r == &Boolean) {
            return None;
        }
        return Some((t.clone(), t));
    }
    if is_string(l) && is_string(r) {
        return Some((Utf8, Utf8));
    }
    if is_temporal(l) && (l == r || is_string(r)) {
        return Some((l.clone(), l.clone()));
    }
    if is_temporal(r) && is_string(l) {
        return Some((r.clone(), r.clone()));
    }
    // Timestamps of different units, or a date against a timestamp: compare as
    // nanosecond timestamps.
    if is_temporal(l) && is_temporal(r) {
        return Some((
            Timestamp(arrow::datatypes::TimeUnit::Nanosecond, None),
            Timestamp(arrow::datatypes::TimeUnit::Nanosecond, None),
        ));
    }
    None
}

/// The type `l op r` evaluates to, or `None` when `op` does not apply.
pub(super) fn binary_result_type(l: &DataType, op: BinaryOp, r: &DataType) -> Option<DataType> {
    let (lt, rt) = operand_types(l, op, r)?;
    if op.is_comparison() || matches!(op, BinaryOp::And | BinaryOp::Or) {
        return Some(DataType::Boolean);
    }
    if matches!(rt, DataType::Duration(_)) {
        return Some(lt);
    }
    if matches!(lt, DataType::Duration(_)) {
        return Some(rt);
    }
    if op == BinaryOp::Sub && is_temporal(&lt) {
        return match &lt {
            DataType::Timestamp(unit, _) => Some(DataType::Duration(*unit)),
            _ => Some(DataType::Duration(arrow::datatypes::TimeUnit::Millisecond)),
        };
    }
    Some(lt)
}

fn binary(l: Value, op: BinaryOp, r: Value, rows: usize) -> Result<Value> {
    let (lt, rt) = operand_types(&l.data_type(), op, &r.data_type()).ok_or_else(|| {
        Error::plan(
            "expression",
            format!(
                "cannot apply {:?} to {} and {}",
                op.symbol(),
                l.data_type(),
                r.data_type()
            ),
        )
    })?;
    let l = l.cast_to(&lt)?;
    let r = r.cast_to(&rt)?;
    if matches!(op, BinaryOp::And | BinaryOp::Or) {
        let la = l.into_array(rows)?;
        let ra = r.into_array(rows)?;
        let (la, ra) = (as_bool(&la)?, as_bool(&ra)?);
        let out = if op == BinaryOp::And {
            and_kleene(la, ra)?
        } else {
            or_kleene(la, ra)?
        };
        return Ok(Value::Array(Arc::new(out)));
    }
    let both_scalar = matches!((&l, &r), (Value::Scalar(_), Value::Scalar(_)));
    let (la, ra) = (to_datum(l)?, to_datum(r)?);
    let (ld, rd) = (datum_ref(&la), datum_ref(&ra));
    let out: ArrayRef = match op {
        BinaryOp::Add => numeric::add(ld, rd)?,
        BinaryOp::Sub => numeric::sub(ld, rd)?,
        BinaryOp::Mul => numeric::mul(ld, rd)?,
        BinaryOp::Div => numeric::div(ld, rd)?,
        BinaryOp::Rem => numeric::rem(ld, rd)?,
        BinaryOp::Eq => Arc::new(cmp::eq(ld, rd)?),
        BinaryOp::NotEq => Arc::new(cmp::neq(ld, rd)?),
        BinaryOp::Lt => Arc::new(cmp::lt(ld, rd)?),
        BinaryOp::LtEq => Arc::new(cmp::lt_eq(ld, rd)?),
        BinaryOp::Gt => Arc::new(cmp::gt(ld, rd)?),
        BinaryOp::GtEq => Arc::new(cmp::gt_eq(ld, rd)?),
        BinaryOp::And | BinaryOp::Or => unreachable!("handled above"),
    };
    if both_scalar {
        Ok(Value::Scalar(ScalarValue::try_from_array(&out, 0)?))
    } else {
        Ok(Value::Array(out))
    }
}

enum OwnedDatum {
    Array(ArrayRef),
    Scalar(arrow::array::Scalar<ArrayRef>),
}

fn to_datum(v: Value) -> Result<OwnedDatum> {
    Ok(match v {
        Value::Array(a) => OwnedDatum::Array(a),
        Value::Scalar(s) => OwnedDatum::Scalar(s.to_scalar()?),
    })
}

fn datum_ref(d: &OwnedDatum) -> &dyn arrow::array::Datum {
    match d {
        OwnedDatum::Array(a) => a,
        OwnedDatum::Scalar(s) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{col, lit, parse};
    use arrow::array::{Float64Array, Int64Array, StringArray};

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            (
                "i",
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(4)])) as ArrayRef,
            ),
            (
                "x",
                Arc::new(Float64Array::from(vec![0.5, -1.0, 2.0, f64::NAN])) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec![
                    Some("Bob"),
                    Some("Al"),
                    None,
                    Some("Bob"),
                ])) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    fn bools(e: &str) -> Vec<Option<bool>> {
        evaluate_predicate(&parse(e).unwrap(), &batch())
            .unwrap()
            .iter()
            .collect()
    }

    #[test]
    fn comparisons_widen_and_propagate_nulls() {
        assert_eq!(
            bools("i > 1"),
            vec![Some(false), None, Some(true), Some(true)]
        );
        assert_eq!(
            bools("i > 1.5"),
            vec![Some(false), None, Some(true), Some(true)]
        );
        assert_eq!(
            bools("s != 'Bob'"),
            vec![Some(false), Some(true), None, Some(false)]
        );
        assert_eq!(
            bools("i > 1 or s == 'Al'"),
            vec![Some(false), Some(true), Some(true), Some(true)]
        );
        assert_eq!(
            bools("i is null"),
            vec![Some(false), Some(true), Some(false), Some(false)]
        );
        assert_eq!(
            bools("not (x < 1)"),
            vec![Some(false), Some(false), Some(true), Some(true)]
        );
    }

    #[test]
    fn arithmetic() {
        let a = evaluate(&parse("i / 2 + x").unwrap(), &batch()).unwrap();
        let a = a.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(a.value(0), 1.0);
        assert!(a.is_null(1));
        assert_eq!(a.value(2), 3.5);
        let b = evaluate(&col("i").mul(lit(2i64)).neg(), &batch()).unwrap();
        let b = b.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            vec![Some(-2), None, Some(-6), Some(-8)]
        );
    }

    #[test]
    fn type_errors_are_plan_errors() {
        let schema = batch().schema();
        let err = parse("s + 1").unwrap().data_type(&schema).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot apply \"+\" to Utf8 and Int64"),
            "{err}"
        );
        let err = parse("nope > 1").unwrap().data_type(&schema).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown column \"nope\"; the columns are: i, x, s"),
            "{err}"
        );
    }
}
