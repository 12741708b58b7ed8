//! Aggregation lists as `--agg` writes them: plain calls (`sum(v1)`,
//! `quantile(v3, 0.9) as q90`, `corr(v1, v2)`, `nlargest(2, v3)`, `count(*)`) and
//! arithmetic over calls (`max(v1) - min(v2) as range_v1_v2`,
//! `corr(v1, v2) * corr(v1, v2) as r2`).
//!
//! An expression item is split into its calls, each computed once as a hidden
//! aggregation column (`__agg0`, ...; equal calls share one), and an [`Expr`] over
//! those columns that a projection evaluates after the aggregation. The projection
//! runs per output partition, so expressions work with `split_out` too, and the
//! expression language is `crate::expr`'s (`+ - * /`, `cast`, comparisons).

use super::{corr, quantile, size, AggFunc, AggSpec};
use crate::error::{Error, Result};
use crate::expr::{col, Expr};

/// A parsed `--agg` list.
#[derive(Debug, Clone, PartialEq)]
pub struct AggList {
    /// The aggregations to compute: the plain items under their names, then the
    /// calls inside expressions under hidden names `__agg<k>`.
    pub aggs: Vec<AggSpec>,
    /// When some item is an expression: every output column after the keys, in
    /// the order written (a plain item is a reference to its column). `None` when
    /// the aggregations' columns are the answer.
    pub exprs: Option<Vec<(Expr, String)>>,
}

impl AggList {
    /// Plain aggregations, no expressions.
    pub fn plain(aggs: Vec<AggSpec>) -> AggList {
        AggList { aggs, exprs: None }
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

struct Cursor<'a> {
    input: &'a str,
    chars: Vec<char>,
}

impl Cursor<'_> {
    fn error(&self, position: usize, reason: impl Into<String>) -> Error {
        Error::Syntax {
            input: self.input.to_string(),
            position,
            reason: reason.into(),
        }
    }

    fn skip_ws(&self, i: &mut usize) {
        while *i < self.chars.len() && self.chars[*i].is_whitespace() {
            *i += 1;
        }
    }

    fn word(&self, i: &mut usize) -> String {
        let s = *i;
        while *i < self.chars.len() && is_ident(self.chars[*i]) {
            *i += 1;
        }
        self.chars[s..*i].iter().collect()
    }

    fn text(&self, s: usize, e: usize) -> String {
        self.chars[s..e].iter().collect()
    }

    /// Top-level comma-separated items (commas inside parentheses, quotes or
    /// backticks do not split).
    fn items(&self) -> Vec<(usize, usize)> {
        let (mut out, mut depth, mut quote, mut start) = (Vec::new(), 0i32, None, 0);
        for (i, &c) in self.chars.iter().enumerate() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '\'' | '"' | '`' => quote = Some(c),
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push((start, i));
                        start = i + 1;
                    }
                    _ => {}
                },
            }
        }
        out.push((start, self.chars.len()));
        out
    }

    /// Splits a trailing `as NAME` off the item `[s, e)`: the body's end and the name.
    fn alias(&self, s: usize, e: usize) -> Result<(usize, Option<String>)> {
        let mut end = e;
        while end > s && self.chars[end - 1].is_whitespace() {
            end -= 1;
        }
        let name_end = end;
        while end > s && is_ident(self.chars[end - 1]) {
            end -= 1;
        }
        let name_start = end;
        let mut k = end;
        while k > s && self.chars[k - 1].is_whitespace() {
            k -= 1;
        }
        if name_start == name_end || k == end || k < s + 2 {
            return Ok((e, None));
        }
        let kw = self.text(k - 2, k);
        let before_ok = k - 2 == s || !is_ident(self.chars[k - 3]);
        if kw.eq_ignore_ascii_case("as") && before_ok {
            if k - 2 == s || self.text(s, k - 2).trim().is_empty() {
                return Err(self.error(s, "expected an aggregation before `as`"));
            }
            return Ok((k - 2, Some(self.text(name_start, name_end))));
        }
        Ok((e, None))
    }

    /// Parses the call `name(args)` starting at `start`; returns it and the index
    /// just past its `)`.
    fn call(&self, start: usize) -> Result<(AggSpec, usize)> {
        enum Arg {
            Name(String),
            Star,
            Num(f64),
        }
        let chars = &self.chars;
        let mut i = start;
        let fname = self.word(&mut i);
        let func = AggFunc::from_name(&fname).ok_or_else(|| self.unknown(start, &fname))?;
        self.skip_ws(&mut i);
        if chars.get(i) != Some(&'(') {
            return Err(self.error(i, format!("expected `(` after {fname}")));
        }
        i += 1;
        let mut args: Vec<(Arg, usize)> = Vec::new();
        loop {
            self.skip_ws(&mut i);
            if args.is_empty() && chars.get(i) == Some(&')') {
                i += 1;
                break;
            }
            let at = i;
            let arg = match chars.get(i) {
                Some('`') => {
                    let close = chars[i + 1..]
                        .iter()
                        .position(|&c| c == '`')
                        .ok_or_else(|| self.error(i, "unterminated `name`"))?;
                    let name = self.text(i + 1, i + 1 + close);
                    i += close + 2;
                    Arg::Name(name)
                }
                Some('*') => {
                    i += 1;
                    Arg::Star
                }
                Some(c) if c.is_ascii_digit() || *c == '.' || *c == '-' => {
                    i += 1;
                    while i < chars.len()
                        && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '+' | '-'))
                    {
                        i += 1;
                    }
                    let t = self.text(at, i);
                    Arg::Num(
                        t.parse().map_err(|_| {
                            self.error(at, format!("expected a number, found {t:?}"))
                        })?,
                    )
                }
                _ => {
                    let w = self.word(&mut i);
                    if w.is_empty() {
                        return Err(self.error(i, "expected a column name"));
                    }
                    Arg::Name(w)
                }
            };
            args.push((arg, at));
            self.skip_ws(&mut i);
            match chars.get(i) {
                Some(',') => i += 1,
                Some(')') => {
                    i += 1;
                    break;
                }
                _ => return Err(self.error(i, "expected `,` or `)`")),
            }
        }
        let usage = |what: &str| self.error(start, format!("{fname} takes {what}"));
        let spec = match (func, args.as_slice()) {
            (AggFunc::Size, [] | [(Arg::Star, _)]) | (AggFunc::Count, [] | [(Arg::Star, _)]) => {
                size()
            }
            (AggFunc::Size, _) => return Err(usage("no column: size()")),
            (AggFunc::Quantile(_), [(Arg::Name(c), _), (Arg::Num(q), at)]) => quantile(c, *q)
                .map_err(|_| self.error(*at, format!("quantile {q} is outside [0, 1]")))?,
            (AggFunc::Quantile(_), _) => {
                return Err(usage("a column and a fraction: quantile(v3, 0.9)"))
            }
            (
                AggFunc::Nlargest(_),
                [(Arg::Num(n), at), (Arg::Name(c), _)] | [(Arg::Name(c), _), (Arg::Num(n), at)],
            ) => {
                if *n < 1.0 || n.fract() != 0.0 || *n > u32::MAX as f64 {
                    return Err(
                        self.error(*at, format!("expected a count of at least 1, found {n}"))
                    );
                }
                AggSpec::new(AggFunc::Nlargest(*n as u32), c)
            }
            (AggFunc::Nlargest(_), _) => {
                return Err(usage("a count and a column: nlargest(2, v3)"))
            }
            (AggFunc::Corr, [(Arg::Name(x), _), (Arg::Name(y), _)]) => corr(x, y),
            (AggFunc::Corr, _) => return Err(usage("two columns: corr(v1, v2)")),
            (f, [(Arg::Name(c), _)]) => AggSpec::new(f, c),
            (_, []) | (_, [(Arg::Star, _)]) => {
                return Err(self.error(start, format!("{fname} needs a column")))
            }
            _ => return Err(usage("one column")),
        };
        Ok((spec, i))
    }

    fn unknown(&self, at: usize, name: &str) -> Error {
        let names: Vec<_> = AggFunc::ALL.iter().map(|f| f.name()).collect();
        self.error(
            at,
            format!("unknown aggregation {name:?}; known: {}", names.join(", ")),
        )
    }

    /// The aggregation calls in `[s, e)`: (start, end, spec), outside quotes.
    fn calls(&self, s: usize, e: usize) -> Result<Vec<(usize, usize, AggSpec)>> {
        let (mut out, mut i, mut quote) = (Vec::new(), s, None);
        while i < e {
            let c = self.chars[i];
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                }
                i += 1;
                continue;
            }
            if matches!(c, '\'' | '"' | '`') {
                quote = Some(c);
                i += 1;
                continue;
            }
            if (c.is_alphabetic() || c == '_') && (i == s || !is_ident(self.chars[i - 1])) {
                let start = i;
                let w = self.word(&mut i);
                let mut j = i;
                self.skip_ws(&mut j);
                if j < e && self.chars[j] == '(' {
                    if AggFunc::from_name(&w).is_some() {
                        let (spec, end) = self.call(start)?;
                        out.push((start, end, spec));
                        i = end;
                    } else if !w.eq_ignore_ascii_case("cast") {
                        return Err(self.unknown(start, &w));
                    }
                }
                continue;
            }
            i += 1;
        }
        Ok(out)
    }
}

/// Parses an `--agg` list: plain aggregations and expressions over them, each
/// optionally named with `as NAME` (an expression without a name is named by its
/// text).
///
/// ```
/// use outcore::agg::{exprs::parse_agg_list, max, min};
/// let l = parse_agg_list("max(v1) - min(v2) as range_v1_v2").unwrap();
/// assert_eq!(l.aggs, vec![max("v1").alias("__agg0"), min("v2").alias("__agg1")]);
/// assert_eq!(l.exprs.unwrap()[0].1, "range_v1_v2");
/// ```
pub fn parse_agg_list(input: &str) -> Result<AggList> {
    let cur = Cursor {
        input,
        chars: input.chars().collect(),
    };
    enum Item {
        Plain(String),
        Expr(Expr, String),
    }
    let mut plain: Vec<AggSpec> = Vec::new();
    let mut hidden: Vec<AggSpec> = Vec::new();
    let mut items = Vec::new();
    for (s, e) in cur.items() {
        let (body_end, alias) = cur.alias(s, e)?;
        let body = cur.text(s, body_end);
        if body.trim().is_empty() {
            return Err(cur.error(s, "expected an aggregation such as sum(v1)"));
        }
        let calls = cur.calls(s, body_end)?;
        if calls.is_empty() {
            return Err(cur.error(s, "expected an aggregation such as sum(v1)"));
        }
        let only = calls.len() == 1
            && cur.text(s, calls[0].0).trim().is_empty()
            && cur.text(calls[0].1, body_end).trim().is_empty();
        if only {
            let mut spec = calls.into_iter().next().expect("one call").2;
            if let Some(a) = alias {
                spec = spec.alias(a);
            }
            items.push(Item::Plain(spec.alias.clone()));
            plain.push(spec);
            continue;
        }
        let mut text = String::new();
        let mut at = s;
        for (cs, ce, spec) in calls {
            if spec.func.is_multi_row() {
                return Err(cur.error(
                    cs,
                    format!(
                        "{} gives several rows per group; it cannot be part of an expression",
                        spec.func.name()
                    ),
                ));
            }
            let key = spec.to_string();
            let k = match hidden.iter().position(|h| h.to_string() == key) {
                Some(k) => k,
                None => {
                    hidden.push(spec.alias(format!("__agg{}", hidden.len())));
                    hidden.len() - 1
                }
            };
            text.push_str(&cur.text(at, cs));
            text.push_str(&format!(" __agg{k} "));
            at = ce;
        }
        text.push_str(&cur.text(at, body_end));
        let expr = crate::expr::parse(&text)
            .map_err(|e| cur.error(s, format!("in the expression `{}`: {e}", body.trim())))?;
        items.push(Item::Expr(
            expr,
            alias.unwrap_or_else(|| body.trim().to_string()),
        ));
    }
    if hidden.is_empty() {
        return Ok(AggList::plain(plain));
    }
    let exprs = items
        .into_iter()
        .map(|it| match it {
            Item::Plain(name) => (col(&name), name),
            Item::Expr(e, name) => (e, name),
        })
        .collect();
    plain.extend(hidden);
    Ok(AggList {
        aggs: plain,
        exprs: Some(exprs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::{max, mean, nlargest, std, sum};
    use crate::expr::lit;

    #[test]
    fn plain_lists() {
        let l = parse_agg_list("sum(v1), mean(v3) as m, count(*), std(`x y`)").unwrap();
        assert_eq!(l.exprs, None);
        assert_eq!(
            l.aggs,
            vec![sum("v1"), mean("v3").alias("m"), size(), std("x y")]
        );
        let l = parse_agg_list("quantile(v3, 0.25) as q, corr(v1, v2), nlargest(2, v3)").unwrap();
        assert_eq!(l.aggs[0], quantile("v3", 0.25).unwrap().alias("q"));
        assert_eq!(l.aggs[1], corr("v1", "v2"));
        assert_eq!(l.aggs[1].alias, "corr(v1, v2)");
        assert_eq!(l.aggs[2], nlargest(2, "v3"));
    }

    #[test]
    fn expressions_share_equal_calls() {
        let l = parse_agg_list("id_max as_is, max(v1) - min(v2) as r").unwrap_err();
        assert!(l.to_string().contains("expected an aggregation"), "{l}");
        let l =
            parse_agg_list("sum(v1) as s, corr(v1, v2) * corr(v1,v2) as r2, max(v1) / 2").unwrap();
        assert_eq!(
            l.aggs,
            vec![
                sum("v1").alias("s"),
                corr("v1", "v2").alias("__agg0"),
                max("v1").alias("__agg1")
            ]
        );
        let exprs = l.exprs.unwrap();
        assert_eq!(exprs[0], (col("s"), "s".to_string()));
        assert_eq!(
            exprs[1],
            (col("__agg0").mul(col("__agg0")), "r2".to_string())
        );
        assert_eq!(
            exprs[2],
            (col("__agg1").div(lit(2i64)), "max(v1) / 2".to_string())
        );
    }

    #[test]
    fn errors_point_at_the_call() {
        let err = parse_agg_list("sum(v1), foo(v3)").unwrap_err().to_string();
        assert!(
            err.contains("character 10") && err.contains("unknown aggregation \"foo\""),
            "{err}"
        );
        assert!(parse_agg_list("sum(v1").is_err());
        assert!(parse_agg_list("sum(v1) mean(v2)").is_err());
        assert!(parse_agg_list("quantile(v3, 1.5)").is_err());
        assert!(parse_agg_list("quantile(v3)").is_err());
        assert!(parse_agg_list("nlargest(0, v3)").is_err());
        assert!(parse_agg_list("corr(v1)").is_err());
        assert!(parse_agg_list("nlargest(2, v3) + 1").is_err());
        assert!(parse_agg_list("median()").is_err());
        assert!(parse_agg_list("sum(v1) as").is_err());
        assert!(parse_agg_list("as m").is_err());
    }
}
