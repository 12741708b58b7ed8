//! Column expressions: `col("y").gt(lit(0.0)).and(col("name").not_eq(lit("Bob")))`.
//!
//! An [`Expr`] is a small tree checked against a schema when an operation is added
//! ([`Expr::data_type`], which also reports unknown columns) and evaluated per batch
//! with Arrow's compute kernels ([`eval`]). [`parse`] turns the CLI's strings
//! (`"y > 0 and name != 'Bob'"`) into the same tree.

mod eval;
mod parse;

use std::collections::BTreeSet;
use std::fmt;

use arrow::datatypes::{DataType, Schema};
use datafusion_common::ScalarValue;

pub use eval::{evaluate, evaluate_predicate};
pub use parse::{parse, parse_type, TYPE_NAMES};

use crate::error::{Error, Result};

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (always floating point, as in pandas)
    Div,
    /// `%`
    Rem,
    /// `==`
    Eq,
    /// `!=`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `and` (Kleene logic: null and false is false)
    And,
    /// `or` (Kleene logic: null or true is true)
    Or,
}

impl BinaryOp {
    /// The operator as written in expression strings.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
            BinaryOp::Eq => "==",
            BinaryOp::NotEq => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
        }
    }

    fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq
                | BinaryOp::NotEq
                | BinaryOp::Lt
                | BinaryOp::LtEq
                | BinaryOp::Gt
                | BinaryOp::GtEq
        )
    }

    fn is_arithmetic(self) -> bool {
        matches!(
            self,
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem
        )
    }
}

/// A column expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A column by name.
    Column(String),
    /// A constant.
    Literal(ScalarValue),
    /// `left op right`.
    Binary {
        /// Left operand.
        left: Box<Expr>,
        /// The operator.
        op: BinaryOp,
        /// Right operand.
        right: Box<Expr>,
    },
    /// Logical negation.
    Not(Box<Expr>),
    /// Arithmetic negation.
    Negative(Box<Expr>),
    /// True where the value is null.
    IsNull(Box<Expr>),
    /// True where the value is not null.
    IsNotNull(Box<Expr>),
    /// Convert to another type (Arrow's cast rules; a value that cannot convert is an error).
    Cast {
        /// What to convert.
        expr: Box<Expr>,
        /// The target type.
        to: DataType,
    },
}

/// A reference to column `name`.
pub fn col(name: impl Into<String>) -> Expr {
    Expr::Column(name.into())
}

/// A constant: `lit(0)`, `lit(1.5)`, `lit("Bob")`, `lit(true)`.
pub fn lit(value: impl Into<ScalarValue>) -> Expr {
    Expr::Literal(value.into())
}

macro_rules! binary_builders {
    ($($(#[$doc:meta])* $name:ident => $op:ident),* $(,)?) => {
        impl Expr {
            $(
                $(#[$doc])*
                #[allow(clippy::should_implement_trait)]
                pub fn $name(self, other: Expr) -> Expr {
                    Expr::Binary { left: Box::new(self), op: BinaryOp::$op, right: Box::new(other) }
                }
            )*
        }
    };
}

binary_builders! {
    /// `self + other`
    add => Add,
    /// `self - other`
    sub => Sub,
    /// `self * other`
    mul => Mul,
    /// `self / other`
    div => Div,
    /// `self % other`
    rem => Rem,
    /// `self == other`
    eq => Eq,
    /// `self != other`
    not_eq => NotEq,
    /// `self < other`
    lt => Lt,
    /// `self <= other`
    lt_eq => LtEq,
    /// `self > other`
    gt => Gt,
    /// `self >= other`
    gt_eq => GtEq,
    /// `self and other`
    and => And,
    /// `self or other`
    or => Or,
}

impl Expr {
    /// `not self`
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Expr {
        Expr::Not(Box::new(self))
    }

    /// `-self`
    #[allow(clippy::should_implement_trait)]
    pub fn neg(self) -> Expr {
        Expr::Negative(Box::new(self))
    }

    /// `self is null`
    pub fn is_null(self) -> Expr {
        Expr::IsNull(Box::new(self))
    }

    /// `self is not null`
    pub fn is_not_null(self) -> Expr {
        Expr::IsNotNull(Box::new(self))
    }

    /// `cast(self as to)`
    pub fn cast(self, to: DataType) -> Expr {
        Expr::Cast {
            expr: Box::new(self),
            to,
        }
    }

    /// The columns this expression reads.
    pub fn columns(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect_columns(&mut out);
        out
    }

    fn collect_columns(&self, out: &mut BTreeSet<String>) {
        match self {
            Expr::Column(name) => {
                out.insert(name.clone());
            }
            Expr::Literal(_) => {}
            Expr::Binary { left, right, .. } => {
                left.collect_columns(out);
                right.collect_columns(out);
            }
            Expr::Not(e)
            | Expr::Negative(e)
            | Expr::IsNull(e)
            | Expr::IsNotNull(e)
            | Expr::Cast { expr: e, .. } => e.collect_columns(out),
        }
    }

    /// A name for the column this expression makes: the column's own name for a plain
    /// reference, the expression's text otherwise.
    pub fn output_name(&self) -> String {
        match self {
            Expr::Column(name) => name.clone(),
            other => other.to_string(),
        }
    }

    /// The type of the result against `schema`, checking that every column exists and
    /// every operator applies to its operands' types.
    pub fn data_type(&self, schema: &Schema) -> Result<DataType> {
        match self {
            Expr::Column(name) => column_type(schema, name),
            Expr::Literal(v) => Ok(v.data_type()),
            Expr::Binary { left, op, right } => {
                let l = left.data_type(schema)?;
                let r = right.data_type(schema)?;
                eval::binary_result_type(&l, *op, &r).ok_or_else(|| {
                    Error::plan(
                        "expression",
                        format!("cannot apply {:?} to {l} and {r} in `{self}`", op.symbol()),
                    )
                })
            }
            Expr::Not(e) => match e.data_type(schema)? {
                DataType::Boolean | DataType::Null => Ok(DataType::Boolean),
                other => Err(Error::plan(
                    "expression",
                    format!("`not` needs a boolean, found {other} in `{self}`"),
                )),
            },
            Expr::Negative(e) => {
                let t = e.data_type(schema)?;
                if t.is_numeric() {
                    Ok(t)
                } else {
                    Err(Error::plan(
                        "expression",
                        format!("cannot negate {t} in `{self}`"),
                    ))
                }
            }
            Expr::IsNull(e) | Expr::IsNotNull(e) => {
                e.data_type(schema)?;
                Ok(DataType::Boolean)
            }
            Expr::Cast { expr, to } => {
                let from = expr.data_type(schema)?;
                if arrow::compute::can_cast_types(&from, to) {
                    Ok(to.clone())
                } else {
                    Err(Error::plan(
                        "expression",
                        format!("cannot cast {from} to {to} in `{self}`"),
                    ))
                }
            }
        }
    }
}

/// The type of column `name`, or an error listing the columns there are.
pub fn column_type(schema: &Schema, name: &str) -> Result<DataType> {
    match schema.field_with_name(name) {
        Ok(f) => Ok(f.data_type().clone()),
        Err(_) => Err(unknown_column(schema, name)),
    }
}

/// The error for a column that is not in `schema`; it lists the columns there are.
pub fn unknown_column(schema: &Schema, name: &str) -> Error {
    Error::UnknownColumn {
        name: name.to_string(),
        columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Column(name) => write!(f, "{name}"),
            Expr::Literal(ScalarValue::Utf8(Some(s))) => write!(f, "'{}'", s.replace('\'', "''")),
            Expr::Literal(v) if v.is_null() => write!(f, "null"),
            Expr::Literal(v) => write!(f, "{v}"),
            Expr::Binary { left, op, right } => write!(f, "({left} {} {right})", op.symbol()),
            Expr::Not(e) => write!(f, "not {e}"),
            Expr::Negative(e) => write!(f, "-{e}"),
            Expr::IsNull(e) => write!(f, "{e} is null"),
            Expr::IsNotNull(e) => write!(f, "{e} is not null"),
            Expr::Cast { expr, to } => write!(f, "cast({expr} as {to})"),
        }
    }
}
