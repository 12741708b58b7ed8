//! The parser for expression strings given on the command line:
//! `y > 0 and name != 'Bob'`, `(x + y) / 2 >= 0.5`, `not (id % 2 == 0)`,
//! `name is not null`, `cast(id as float64) > 999.5`.
//!
//! Precedence, loosest first: `or`; `and`; `not`; comparisons (`== = != <> < <= > >=`,
//! `is [not] null`); `+ -`; `* / %`; unary `-`. Identifiers that are not plain words
//! go in backticks (`` `my col` ``); strings in single or double quotes, a doubled
//! quote escaping itself. Errors carry the character offset of the offending token.

use arrow::datatypes::{DataType, TimeUnit};
use datafusion_common::ScalarValue;

use super::{BinaryOp, Expr};
use crate::error::{Error, Result};

/// Parses an expression string into an [`Expr`].
///
/// ```
/// use outcore::expr::{col, lit, parse};
/// let e = parse("y > 0 and name != 'Bob'").unwrap();
/// assert_eq!(e, col("y").gt(lit(0i64)).and(col("name").not_eq(lit("Bob"))));
/// ```
pub fn parse(input: &str) -> Result<Expr> {
    let tokens = tokenize(input)?;
    let mut p = Parser {
        input,
        tokens,
        pos: 0,
    };
    let e = p.or_expr()?;
    match p.peek() {
        Tok::End => Ok(e),
        _ => Err(p.error_here("expected an operator or the end of the expression")),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Int(i64),
    Float(f64),
    Str(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
    End,
}

/// A token and the char offset where it starts.
type Spanned = (Tok, usize);

fn syntax(input: &str, position: usize, reason: impl Into<String>) -> Error {
    Error::Syntax {
        input: input.to_string(),
        position,
        reason: reason.into(),
    }
}

fn tokenize(input: &str) -> Result<Vec<Spanned>> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '_') {
                i += 1;
            }
            let mut is_float = false;
            if i < chars.len() && chars[i] == '.' {
                is_float = true;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    is_float = true;
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            if i < chars.len() && (chars[i].is_alphabetic() || chars[i] == '_') {
                return Err(syntax(input, i, "a number must not run into a name"));
            }
            let text: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            let tok = if is_float {
                Tok::Float(
                    text.parse()
                        .map_err(|_| syntax(input, start, format!("invalid number {text:?}")))?,
                )
            } else {
                match text.parse::<i64>() {
                    Ok(v) => Tok::Int(v),
                    Err(_) => {
                        Tok::Float(text.parse().map_err(|_| {
                            syntax(input, start, format!("invalid number {text:?}"))
                        })?)
                    }
                }
            };
            out.push((tok, start));
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            // A name may be a field path (`address.city`, `transactions[].amount`),
            // so bags can filter on nested fields; frames see one dotted name.
            let is_name = |ch: char| ch.is_alphanumeric() || ch == '_';
            while i < chars.len() {
                let dot_name = chars[i] == '.'
                    && chars
                        .get(i + 1)
                        .is_some_and(|&n| n.is_alphabetic() || n == '_');
                if is_name(chars[i]) || dot_name {
                    i += 1;
                } else if chars[i] == '[' {
                    let close = chars[i..].iter().position(|&ch| ch == ']');
                    match close {
                        Some(k) if chars[i + 1..i + k].iter().all(|ch| ch.is_ascii_digit()) => {
                            i += k + 1
                        }
                        _ => break,
                    }
                } else {
                    break;
                }
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), start));
            continue;
        }
        if c == '`' {
            i += 1;
            let mut name = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(syntax(input, start, "unterminated `quoted name`")),
                    Some('`') if chars.get(i + 1) == Some(&'`') => {
                        name.push('`');
                        i += 2;
                    }
                    Some('`') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        name.push(*ch);
                        i += 1;
                    }
                }
            }
            // A quoted name is always a column, never a keyword.
            out.push((Tok::Ident(format!("`{name}")), start));
            continue;
        }
        if c == '\'' || c == '"' {
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(syntax(input, start, "unterminated string")),
                    Some(&q) if q == c && chars.get(i + 1) == Some(&c) => {
                        s.push(c);
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push((Tok::Str(s), start));
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op2 = match two.as_str() {
            "==" => Some("=="),
            "!=" | "<>" => Some("!="),
            "<=" => Some("<="),
            ">=" => Some(">="),
            "&&" => Some("and"),
            "||" => Some("or"),
            _ => None,
        };
        if let Some(op) = op2 {
            out.push((Tok::Op(op), start));
            i += 2;
            continue;
        }
        let tok = match c {
            '+' => Tok::Op("+"),
            '-' => Tok::Op("-"),
            '*' => Tok::Op("*"),
            '/' => Tok::Op("/"),
            '%' => Tok::Op("%"),
            '<' => Tok::Op("<"),
            '>' => Tok::Op(">"),
            '=' => Tok::Op("=="),
            '!' | '~' => Tok::Op("not"),
            '&' => Tok::Op("and"),
            '|' => Tok::Op("or"),
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ',' => Tok::Comma,
            other => {
                return Err(syntax(
                    input,
                    start,
                    format!("unexpected character {other:?}"),
                ))
            }
        };
        out.push((tok, start));
        i += 1;
    }
    out.push((Tok::End, chars.len()));
    Ok(out)
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Spanned>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.tokens[self.pos].0
    }

    fn offset(&self) -> usize {
        self.tokens[self.pos].1
    }

    fn bump(&mut self) -> Tok {
        let t = self.tokens[self.pos].0.clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn error_here(&self, reason: &str) -> Error {
        let found = match self.peek() {
            Tok::End => "the end".to_string(),
            Tok::Ident(s) => format!("{:?}", s.trim_start_matches('`')),
            Tok::Int(v) => v.to_string(),
            Tok::Float(v) => v.to_string(),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Op(o) => format!("{o:?}"),
            Tok::LParen => "\"(\"".into(),
            Tok::RParen => "\")\"".into(),
            Tok::Comma => "\",\"".into(),
        };
        syntax(
            self.input,
            self.offset(),
            format!("{reason}, found {found}"),
        )
    }

    /// True (and consumes it) when the next token is keyword `kw` (case-insensitive).
    fn keyword(&mut self, kw: &str) -> bool {
        if let Tok::Ident(s) = self.peek() {
            if s.eq_ignore_ascii_case(kw) {
                self.bump();
                return true;
            }
        }
        false
    }

    fn op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Tok::Op(o) if *o == op) {
            self.bump();
            return true;
        }
        false
    }

    fn or_expr(&mut self) -> Result<Expr> {
        let mut left = self.and_expr()?;
        while self.keyword("or") || self.op("or") {
            let right = self.and_expr()?;
            left = left.or(right);
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr> {
        let mut left = self.not_expr()?;
        while self.keyword("and") || self.op("and") {
            let right = self.not_expr()?;
            left = left.and(right);
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> Result<Expr> {
        if self.keyword("not") || self.op("not") {
            return Ok(self.not_expr()?.not());
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr> {
        let left = self.additive()?;
        if self.keyword("is") {
            let negated = self.keyword("not");
            if !self.keyword("null") {
                return Err(self.error_here("expected `null` after `is`"));
            }
            return Ok(if negated {
                left.is_not_null()
            } else {
                left.is_null()
            });
        }
        let op = match self.peek() {
            Tok::Op("==") => BinaryOp::Eq,
            Tok::Op("!=") => BinaryOp::NotEq,
            Tok::Op("<") => BinaryOp::Lt,
            Tok::Op("<=") => BinaryOp::LtEq,
            Tok::Op(">") => BinaryOp::Gt,
            Tok::Op(">=") => BinaryOp::GtEq,
            _ => return Ok(left),
        };
        self.bump();
        let right = self.additive()?;
        if matches!(self.peek(), Tok::Op("==" | "!=" | "<" | "<=" | ">" | ">=")) {
            return Err(self.error_here("comparisons do not chain; join them with `and`"));
        }
        Ok(Expr::Binary {
            left: Box::new(left),
            op,
            right: Box::new(right),
        })
    }

    fn additive(&mut self) -> Result<Expr> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Tok::Op("+") => BinaryOp::Add,
                Tok::Op("-") => BinaryOp::Sub,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.multiplicative()?;
            left = Expr::Binary {
                left: Box::new(left),
                op,
                right: Box::new(right),
            };
        }
    }

    fn multiplicative(&mut self) -> Result<Expr> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Op("*") => BinaryOp::Mul,
                Tok::Op("/") => BinaryOp::Div,
                Tok::Op("%") => BinaryOp::Rem,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.unary()?;
            left = Expr::Binary {
                left: Box::new(left),
                op,
                right: Box::new(right),
            };
        }
    }

    fn unary(&mut self) -> Result<Expr> {
        if self.op("-") {
            return Ok(match self.unary()? {
                Expr::Literal(ScalarValue::Int64(Some(v))) => {
                    Expr::Literal(ScalarValue::Int64(Some(-v)))
                }
                Expr::Literal(ScalarValue::Float64(Some(v))) => {
                    Expr::Literal(ScalarValue::Float64(Some(-v)))
                }
                other => other.neg(),
            });
        }
        if self.op("+") {
            return self.unary();
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr> {
        let start = self.offset();
        match self.peek().clone() {
            Tok::Int(v) => {
                self.bump();
                Ok(Expr::Literal(ScalarValue::Int64(Some(v))))
            }
            Tok::Float(v) => {
                self.bump();
                Ok(Expr::Literal(ScalarValue::Float64(Some(v))))
            }
            Tok::Str(s) => {
                self.bump();
                Ok(Expr::Literal(ScalarValue::Utf8(Some(s))))
            }
            Tok::LParen => {
                self.bump();
                let e = self.or_expr()?;
                if self.peek() != &Tok::RParen {
                    return Err(self.error_here("expected `)`"));
                }
                self.bump();
                Ok(e)
            }
            Tok::Ident(name) => {
                if let Some(quoted) = name.strip_prefix('`') {
                    self.bump();
                    return Ok(Expr::Column(quoted.to_string()));
                }
                match name.to_ascii_lowercase().as_str() {
                    "true" => {
                        self.bump();
                        return Ok(Expr::Literal(ScalarValue::Boolean(Some(true))));
                    }
                    "false" => {
                        self.bump();
                        return Ok(Expr::Literal(ScalarValue::Boolean(Some(false))));
                    }
                    "null" | "none" => {
                        self.bump();
                        return Ok(Expr::Literal(ScalarValue::Null));
                    }
                    "and" | "or" | "not" | "is" => {
                        return Err(self.error_here("expected a value"));
                    }
                    "cast" if self.tokens[self.pos + 1].0 == Tok::LParen => {
                        self.bump();
                        self.bump();
                        let e = self.or_expr()?;
                        if !(self.keyword("as")
                            || matches!(self.peek(), Tok::Comma) && {
                                self.bump();
                                true
                            })
                        {
                            return Err(self.error_here("expected `as TYPE` in cast"));
                        }
                        let type_at = self.offset();
                        let Tok::Ident(tname) = self.bump() else {
                            return Err(syntax(self.input, type_at, "expected a type name"));
                        };
                        let to = parse_type(&tname).ok_or_else(|| {
                            syntax(
                                self.input,
                                type_at,
                                format!("unknown type {tname:?}; known: {}", TYPE_NAMES),
                            )
                        })?;
                        if self.peek() != &Tok::RParen {
                            return Err(self.error_here("expected `)` after the cast's type"));
                        }
                        self.bump();
                        return Ok(e.cast(to));
                    }
                    _ => {}
                }
                self.bump();
                if self.peek() == &Tok::LParen {
                    return Err(syntax(
                        self.input,
                        start,
                        format!("unknown function {name:?}; only cast(x as TYPE) is known"),
                    ));
                }
                Ok(Expr::Column(name))
            }
            _ => Err(self.error_here("expected a value")),
        }
    }
}

/// The type names accepted by `cast(x as T)` and by `--dtype col=T`.
pub const TYPE_NAMES: &str =
    "int64 (int), float64 (float), string (str), bool, date, timestamp (datetime)";

/// A type by its user-facing name (`int64`, `float`, `string`, `bool`, `date`, `timestamp`).
pub fn parse_type(name: &str) -> Option<DataType> {
    Some(match name.to_ascii_lowercase().as_str() {
        "int" | "int64" | "integer" | "i64" | "bigint" => DataType::Int64,
        "int32" | "i32" => DataType::Int32,
        "float" | "float64" | "double" | "f64" => DataType::Float64,
        "float32" | "f32" => DataType::Float32,
        "str" | "string" | "utf8" | "text" | "object" | "category" => DataType::Utf8,
        "bool" | "boolean" => DataType::Boolean,
        "date" | "date32" => DataType::Date32,
        "timestamp" | "datetime" | "datetime64" | "datetime64[ns]" => {
            DataType::Timestamp(TimeUnit::Nanosecond, None)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{col, lit};

    fn err_pos(s: &str) -> usize {
        match parse(s) {
            Err(Error::Syntax { position, .. }) => position,
            other => panic!("expected a syntax error for {s:?}, got {other:?}"),
        }
    }

    #[test]
    fn precedence() {
        assert_eq!(
            parse("a + b * 2 > 3 or not c and d").unwrap(),
            col("a")
                .add(col("b").mul(lit(2i64)))
                .gt(lit(3i64))
                .or(col("c").not().and(col("d")))
        );
        assert_eq!(
            parse("(a - b) - c").unwrap(),
            col("a").sub(col("b")).sub(col("c"))
        );
        assert_eq!(
            parse("a - b - c").unwrap(),
            col("a").sub(col("b")).sub(col("c"))
        );
    }

    #[test]
    fn literals_and_names() {
        assert_eq!(parse("x >= -1.5e0").unwrap(), col("x").gt_eq(lit(-1.5f64)));
        assert_eq!(
            parse("name = \"O'Neil\"").unwrap(),
            col("name").eq(lit("O'Neil"))
        );
        assert_eq!(
            parse("name == 'it''s'").unwrap(),
            col("name").eq(lit("it's"))
        );
        assert_eq!(
            parse("`my col` != 1_000").unwrap(),
            col("my col").not_eq(lit(1000i64))
        );
        assert_eq!(parse("flag == TRUE").unwrap(), col("flag").eq(lit(true)));
        assert_eq!(parse("v is not null").unwrap(), col("v").is_not_null());
        assert_eq!(parse("v is null").unwrap(), col("v").is_null());
        assert_eq!(
            parse("cast(id as float) > 2").unwrap(),
            col("id").cast(DataType::Float64).gt(lit(2i64))
        );
        assert_eq!(
            parse("y > 0 && z < 1").unwrap(),
            col("y").gt(lit(0i64)).and(col("z").lt(lit(1i64)))
        );
    }

    #[test]
    fn errors_point_at_the_character() {
        assert_eq!(err_pos("y > "), 4);
        assert_eq!(err_pos("y > 0 and"), 9);
        assert_eq!(err_pos("y $ 0"), 2);
        assert_eq!(err_pos("(y > 0"), 6);
        assert_eq!(err_pos("y > 0)"), 5);
        assert_eq!(err_pos("name == 'Bob"), 8);
        assert_eq!(err_pos("1 < y < 3"), 6);
        assert_eq!(err_pos("12abc > 1"), 2);
        assert_eq!(err_pos("foo(x)"), 0);
        let msg = parse("y >> 0").unwrap_err().to_string();
        assert!(msg.contains("character 4"), "{msg}");
        assert!(msg.contains("y >> 0\n     ^"), "{msg}");
    }
}
