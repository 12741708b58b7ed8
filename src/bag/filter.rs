//! Expressions over JSON records: the frame's expression parser
//! ([`crate::expr::parse`]) gives the tree, and this evaluator reads each name as a
//! [`FieldPath`] into the record. `age > 30 and address.city == 'Oslo'`.
//!
//! Semantics follow the frame's: a missing field is null; comparisons with null, or
//! between a number and a string, are null; `and`/`or` are Kleene; a filter keeps
//! records whose condition is true.

use std::borrow::Cow;

use datafusion_common::ScalarValue;
use serde_json::Value as J;

use super::path::FieldPath;
use crate::error::{Error, Result};
use crate::expr::{BinaryOp, Expr};

/// An expression compiled for records: names parsed into paths once.
#[derive(Debug, Clone)]
pub enum RecordExpr {
    /// A field.
    Field(FieldPath),
    /// A constant.
    Literal(J),
    /// `left op right`.
    Binary(Box<RecordExpr>, BinaryOp, Box<RecordExpr>),
    /// `not`.
    Not(Box<RecordExpr>),
    /// Unary minus.
    Negative(Box<RecordExpr>),
    /// `is null` (true) or `is not null` (false).
    IsNull(Box<RecordExpr>, bool),
}

impl RecordExpr {
    /// Parses an expression string for records.
    pub fn parse(text: &str) -> Result<RecordExpr> {
        RecordExpr::from_expr(&crate::expr::parse(text)?)
    }

    /// Compiles a frame expression for records.
    pub fn from_expr(e: &Expr) -> Result<RecordExpr> {
        Ok(match e {
            Expr::Column(name) => RecordExpr::Field(FieldPath::parse(name)?),
            Expr::Literal(s) => RecordExpr::Literal(scalar_to_json(s)?),
            Expr::Binary { left, op, right } => RecordExpr::Binary(
                Box::new(RecordExpr::from_expr(left)?),
                *op,
                Box::new(RecordExpr::from_expr(right)?),
            ),
            Expr::Not(x) => RecordExpr::Not(Box::new(RecordExpr::from_expr(x)?)),
            Expr::Negative(x) => RecordExpr::Negative(Box::new(RecordExpr::from_expr(x)?)),
            Expr::IsNull(x) => RecordExpr::IsNull(Box::new(RecordExpr::from_expr(x)?), true),
            Expr::IsNotNull(x) => RecordExpr::IsNull(Box::new(RecordExpr::from_expr(x)?), false),
            Expr::Cast { .. } => {
                return Err(Error::plan(
                    "filter",
                    format!(
                        "`{e}`: cast is not supported on records; JSON values keep their own types"
                    ),
                ))
            }
        })
    }

    /// The field paths the expression reads.
    pub fn paths(&self) -> Vec<FieldPath> {
        fn walk(e: &RecordExpr, out: &mut Vec<FieldPath>) {
            match e {
                RecordExpr::Field(p) => out.push(p.clone()),
                RecordExpr::Literal(_) => {}
                RecordExpr::Binary(a, _, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                RecordExpr::Not(x) | RecordExpr::Negative(x) | RecordExpr::IsNull(x, _) => {
                    walk(x, out)
                }
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// The value of the expression for one record (null when a field is missing).
    pub fn eval<'a>(&'a self, r: &'a J) -> Cow<'a, J> {
        match self {
            RecordExpr::Field(p) => p.get(r).unwrap_or(Cow::Owned(J::Null)),
            RecordExpr::Literal(v) => Cow::Borrowed(v),
            RecordExpr::Not(x) => Cow::Owned(match truth(&x.eval(r)) {
                Some(b) => J::Bool(!b),
                None => J::Null,
            }),
            RecordExpr::Negative(x) => Cow::Owned(match x.eval(r).as_ref() {
                J::Number(n) if n.is_i64() => J::from(-n.as_i64().unwrap_or(0)),
                J::Number(n) => n.as_f64().map_or(J::Null, |f| J::from(-f)),
                _ => J::Null,
            }),
            RecordExpr::IsNull(x, want_null) => {
                Cow::Owned(J::Bool(x.eval(r).is_null() == *want_null))
            }
            RecordExpr::Binary(a, op, b) => Cow::Owned(binary(&a.eval(r), *op, &b.eval(r))),
        }
    }

    /// True when the expression is true for the record (null counts as false).
    pub fn test(&self, r: &J) -> bool {
        truth(&self.eval(r)) == Some(true)
    }
}

fn truth(v: &J) -> Option<bool> {
    match v {
        J::Bool(b) => Some(*b),
        _ => None,
    }
}

fn binary(a: &J, op: BinaryOp, b: &J) -> J {
    use std::cmp::Ordering;
    match op {
        BinaryOp::And => match (truth(a), truth(b)) {
            (Some(false), _) | (_, Some(false)) => J::Bool(false),
            (Some(true), Some(true)) => J::Bool(true),
            _ => J::Null,
        },
        BinaryOp::Or => match (truth(a), truth(b)) {
            (Some(true), _) | (_, Some(true)) => J::Bool(true),
            (Some(false), Some(false)) => J::Bool(false),
            _ => J::Null,
        },
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => {
            let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
                return J::Null;
            };
            if let (Some(i), Some(j), false) = (a.as_i64(), b.as_i64(), op == BinaryOp::Div) {
                let r = match op {
                    BinaryOp::Add => i.checked_add(j),
                    BinaryOp::Sub => i.checked_sub(j),
                    BinaryOp::Mul => i.checked_mul(j),
                    _ => i.checked_rem(j),
                };
                return r.map_or(J::Null, J::from);
            }
            let r = match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
                _ => x % y,
            };
            serde_json::Number::from_f64(r).map_or(J::Null, J::Number)
        }
        _ => {
            let ord: Option<Ordering> = match (a, b) {
                (J::Number(_), J::Number(_)) => match (a.as_i64(), b.as_i64()) {
                    (Some(i), Some(j)) => Some(i.cmp(&j)),
                    _ => a
                        .as_f64()
                        .zip(b.as_f64())
                        .and_then(|(x, y)| x.partial_cmp(&y)),
                },
                (J::String(x), J::String(y)) => Some(x.cmp(y)),
                (J::Bool(x), J::Bool(y)) => Some(x.cmp(y)),
                _ => None,
            };
            let Some(o) = ord else { return J::Null };
            J::Bool(match op {
                BinaryOp::Eq => o == Ordering::Equal,
                BinaryOp::NotEq => o != Ordering::Equal,
                BinaryOp::Lt => o == Ordering::Less,
                BinaryOp::LtEq => o != Ordering::Greater,
                BinaryOp::Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            })
        }
    }
}

fn scalar_to_json(s: &ScalarValue) -> Result<J> {
    Ok(match s {
        ScalarValue::Null => J::Null,
        ScalarValue::Boolean(b) => b.map_or(J::Null, J::Bool),
        ScalarValue::Int64(i) => i.map_or(J::Null, J::from),
        ScalarValue::Float64(f) => f
            .and_then(serde_json::Number::from_f64)
            .map_or(J::Null, J::Number),
        ScalarValue::Utf8(s) => s.clone().map_or(J::Null, J::String),
        other => {
            return Err(Error::plan(
                "filter",
                format!("the constant {other} has no JSON value"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_read_nested_fields_and_treat_missing_as_null() {
        let r = json!({"age": 41, "address": {"city": "Oslo"}, "t": [{"a": 1.5}]});
        let t = |s: &str| RecordExpr::parse(s).unwrap().test(&r);
        assert!(t("age > 30"));
        assert!(t("age > 30 and address.city == 'Oslo'"));
        assert!(!t("address.zip == '1'"));
        assert!(t("address.zip is null"));
        assert!(t("t[0].a * 2 == 3"));
        assert!(!t("age == 'x'"));
        assert!(t("not (age < 30)"));
        assert!(t("missing > 1 or age == 41"));
    }
}
