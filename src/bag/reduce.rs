//! Reductions of a bag to one value, as Dask's `Bag.reduction`: a function per
//! partition, then a tree of combines (`split_every` partials per task), so no task
//! sees more than a handful of partials. `count`, `sum`, `mean`, `var`/`std`, `min`,
//! `max`, `topk`, `fold` are built on it.

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::Value as J;

use super::{layer_name, per_partition, records, Bag, BagStats, KeyFn};
use crate::error::{Error, Result};
use crate::graph::{FnOperator, Key, Layer, Task, Value};

type ChunkFn = Arc<dyn Fn(&[J]) -> Result<J> + Send + Sync>;
type CombineFn = Arc<dyn Fn(Vec<J>) -> Result<J> + Send + Sync>;

fn number(op: &str, v: &J) -> Result<f64> {
    v.as_f64().ok_or_else(|| {
        Error::plan(
            "bag",
            format!(
                "{op}: expected a number, found {}; pluck a numeric field first",
                crate::io::json::line_head(v.to_string().as_bytes())
            ),
        )
    })
}

/// Orders JSON values: null first, numbers by value, strings by text, booleans;
/// other mixes are an error.
fn compare(op: &str, a: &J, b: &J) -> Result<Ordering> {
    match (a, b) {
        // Nulls (missing keys) order first, so `topk` puts them last.
        (J::Null, J::Null) => Ok(Ordering::Equal),
        (J::Null, _) => Ok(Ordering::Less),
        (_, J::Null) => Ok(Ordering::Greater),
        (J::Number(_), J::Number(_)) => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => Ok(x.cmp(&y)),
            _ => Ok(a
                .as_f64()
                .unwrap_or(f64::NAN)
                .total_cmp(&b.as_f64().unwrap_or(f64::NAN))),
        },
        (J::String(x), J::String(y)) => Ok(x.cmp(y)),
        (J::Bool(x), J::Bool(y)) => Ok(x.cmp(y)),
        _ => Err(Error::plan(
            "bag",
            format!("{op}: cannot order {a} and {b}"),
        )),
    }
}

fn f64_json(x: f64) -> J {
    serde_json::Number::from_f64(x).map_or(J::Null, J::Number)
}

/// The one record of a computed reduction.
fn one((mut got, stats): (Vec<J>, BagStats)) -> Result<(J, BagStats)> {
    let v = got
        .pop()
        .ok_or_else(|| Error::Internal("a reduction gave no value".into()))?;
    Ok((v, stats))
}

fn pair(v: &J) -> (f64, f64, f64) {
    let a = v.as_array();
    let g = |i: usize| a.and_then(|a| a.get(i)).and_then(J::as_f64).unwrap_or(0.0);
    (g(0), g(1), g(2))
}

impl Bag {
    /// Reduces the bag: `perpartition` on each partition's records, then `aggregate`
    /// on lists of partials (in a tree, so it must accept its own results too), as
    /// Dask's `reduction`.
    pub fn reduction(
        &self,
        perpartition: impl Fn(&[J]) -> Result<J> + Send + Sync + 'static,
        aggregate: impl Fn(Vec<J>) -> Result<J> + Send + Sync + 'static,
    ) -> Result<J> {
        Ok(self
            .reduce_with_stats(Arc::new(perpartition), Arc::new(aggregate))?
            .0)
    }

    /// [`reduction`](Self::reduction), and what the run did.
    pub fn reduction_with_stats(
        &self,
        perpartition: impl Fn(&[J]) -> Result<J> + Send + Sync + 'static,
        aggregate: impl Fn(Vec<J>) -> Result<J> + Send + Sync + 'static,
    ) -> Result<(J, BagStats)> {
        self.reduce_with_stats(Arc::new(perpartition), Arc::new(aggregate))
    }

    pub(crate) fn reduce_with_stats(
        &self,
        chunk: ChunkFn,
        combine: CombineFn,
    ) -> Result<(J, BagStats)> {
        let (mut got, stats) = self.reduce_bag(chunk, combine).compute_with_stats()?;
        let value = got
            .pop()
            .ok_or_else(|| Error::Internal("a reduction gave no value".into()))?;
        Ok((value, stats))
    }

    /// The reduction as a lazy bag of one record (the value), for
    /// [`super::compute_all`].
    pub fn reduction_bag(
        &self,
        perpartition: impl Fn(&[J]) -> Result<J> + Send + Sync + 'static,
        aggregate: impl Fn(Vec<J>) -> Result<J> + Send + Sync + 'static,
    ) -> Bag {
        self.reduce_bag(Arc::new(perpartition), Arc::new(aggregate))
    }

    fn reduce_bag(&self, chunk: ChunkFn, combine: CombineFn) -> Bag {
        let split_every = self.session.split_every();
        let input = self.clone();
        let build = move |graph: &mut crate::graph::Graph, ctx: &super::LowerCtx| -> Vec<Key> {
            let inputs = input.lower(graph, ctx);
            let chunk = chunk.clone();
            let mut level = per_partition(
                graph,
                "reduce-chunk",
                &inputs,
                Arc::new(move |_, v| Ok(Value::Records(vec![chunk(records(v)?)?]))),
            );
            loop {
                let last = level.len() <= split_every;
                let name = layer_name(if last {
                    "reduce-final"
                } else {
                    "reduce-combine"
                });
                let tasks: Vec<Task> = level
                    .chunks(split_every)
                    .enumerate()
                    .map(|(i, group)| {
                        let combine = combine.clone();
                        Task {
                            key: Key::new(&name, i),
                            deps: group.to_vec(),
                            op: FnOperator::new(
                                "reduce-combine",
                                move |inputs: &[Arc<Value>]| {
                                    let mut partials = Vec::with_capacity(inputs.len());
                                    for v in inputs {
                                        partials.extend(records(v)?.iter().cloned());
                                    }
                                    Ok(Value::Records(vec![combine(partials)?]))
                                },
                            ),
                        }
                    })
                    .collect();
                level = tasks.iter().map(|t| t.key.clone()).collect();
                graph.add_layer(Layer { name, tasks });
                if last {
                    return level;
                }
            }
        };
        Bag::from_graph(self.session.clone(), 1, Arc::new(build))
    }

    /// The number of records, lazily: a bag of one record (see
    /// [`super::compute_all`]).
    pub fn count_bag(&self) -> Bag {
        self.discard().reduce_bag(
            Arc::new(|r: &[J]| Ok(J::from(r.len() as u64))),
            Arc::new(|p: Vec<J>| Ok(J::from(p.iter().filter_map(J::as_u64).sum::<u64>()))),
        )
    }

    /// The sum of the records (numbers), lazily: a bag of one record.
    pub fn sum_bag(&self) -> Bag {
        self.reduction_bag(
            |r| {
                let mut s = 0.0;
                for x in r {
                    s += number("sum", x)?;
                }
                Ok(f64_json(s))
            },
            |p| Ok(f64_json(p.iter().filter_map(J::as_f64).sum())),
        )
    }

    /// The mean of the records (numbers), lazily: a bag of one record; an empty bag
    /// is an error when computed.
    pub fn mean_bag(&self) -> Bag {
        self.moments_bag("mean").map(|v| {
            let (n, mean, _) = pair(&v);
            if n == 0.0 {
                return Err(Error::plan("mean", "the bag is empty"));
            }
            Ok(f64_json(mean))
        })
    }

    /// The variance (`ddof` as [`var`](Self::var)), lazily: a bag of one record.
    pub fn var_bag(&self, ddof: u32) -> Bag {
        self.moments_bag("var").map(move |v| {
            let (n, _, m2) = pair(&v);
            let d = n - f64::from(ddof);
            Ok(f64_json(if d > 0.0 { m2 / d } else { f64::NAN }))
        })
    }

    /// The standard deviation (`ddof` as [`std`](Self::std)), lazily.
    pub fn std_bag(&self, ddof: u32) -> Bag {
        self.var_bag(ddof)
            .map(|v| Ok(v.as_f64().map_or(J::Null, |x| f64_json(x.sqrt()))))
    }

    /// The smallest record, lazily: a bag of one record.
    pub fn min_bag(&self) -> Bag {
        self.extreme_bag("min", Ordering::Less)
    }

    /// The largest record, lazily: a bag of one record.
    pub fn max_bag(&self) -> Bag {
        self.extreme_bag("max", Ordering::Greater)
    }

    /// Number of records.
    pub fn count(&self) -> Result<u64> {
        Ok(self.count_with_stats()?.0)
    }

    /// [`count`](Self::count), and what the run did.
    pub fn count_with_stats(&self) -> Result<(u64, BagStats)> {
        let (v, stats) = one(self.count_bag().compute_with_stats()?)?;
        Ok((v.as_u64().unwrap_or(0), stats))
    }

    /// Sum of the records, which must be numbers (0 for an empty bag).
    pub fn sum(&self) -> Result<f64> {
        let (v, _) = one(self.sum_bag().compute_with_stats()?)?;
        Ok(v.as_f64().unwrap_or(f64::NAN))
    }

    /// Count, mean and sum of squared deviations (Chan et al.'s parallel form), as
    /// a lazy bag of one `[n, mean, m2]` record.
    fn moments_bag(&self, op: &'static str) -> Bag {
        self.reduction_bag(
            move |r| {
                let (mut n, mut mean, mut m2) = (0.0f64, 0.0f64, 0.0f64);
                for x in r {
                    let x = number(op, x)?;
                    n += 1.0;
                    let d = x - mean;
                    mean += d / n;
                    m2 += d * (x - mean);
                }
                Ok(J::Array(vec![f64_json(n), f64_json(mean), f64_json(m2)]))
            },
            |p| {
                let (mut n, mut mean, mut m2) = (0.0f64, 0.0f64, 0.0f64);
                for q in &p {
                    let (nb, mb, m2b) = pair(q);
                    if nb == 0.0 {
                        continue;
                    }
                    let total = n + nb;
                    let d = mb - mean;
                    mean += d * nb / total;
                    m2 += m2b + d * d * n * nb / total;
                    n = total;
                }
                Ok(J::Array(vec![f64_json(n), f64_json(mean), f64_json(m2)]))
            },
        )
    }

    fn moments(&self, op: &'static str) -> Result<(f64, f64, f64)> {
        let (v, _) = one(self.moments_bag(op).compute_with_stats()?)?;
        Ok(pair(&v))
    }

    /// Mean of the records (numbers); an empty bag is an error.
    pub fn mean(&self) -> Result<f64> {
        let (n, mean, _) = self.moments("mean")?;
        if n == 0.0 {
            return Err(Error::plan("mean", "the bag is empty"));
        }
        Ok(mean)
    }

    /// Variance of the records with `ddof` delta degrees of freedom. Dask's bag
    /// default is `ddof = 0` (the population variance); pass 1 for the sample
    /// variance, as frames and pandas use. Fewer than `ddof + 1` records give NaN.
    pub fn var(&self, ddof: u32) -> Result<f64> {
        let (n, _, m2) = self.moments("var")?;
        let d = n - f64::from(ddof);
        Ok(if d > 0.0 { m2 / d } else { f64::NAN })
    }

    /// Standard deviation: the square root of [`var`](Self::var) with `ddof`
    /// (Dask's bag default is 0).
    pub fn std(&self, ddof: u32) -> Result<f64> {
        Ok(self.var(ddof)?.sqrt())
    }

    fn extreme_bag(&self, op: &'static str, want: Ordering) -> Bag {
        let pick = move |p: &[J]| -> Result<J> {
            let mut best: Option<&J> = None;
            for x in p {
                if x.is_null() {
                    continue;
                }
                best = match best {
                    Some(b) if compare(op, x, b)? != want => Some(b),
                    _ => Some(x),
                };
            }
            Ok(best.cloned().unwrap_or(J::Null))
        };
        self.reduction_bag(pick, move |p| pick(&p)).map(move |v| {
            if v.is_null() {
                return Err(Error::plan(op, "the bag is empty"));
            }
            Ok(v)
        })
    }

    fn extreme(&self, op: &'static str, want: Ordering) -> Result<J> {
        Ok(one(self.extreme_bag(op, want).compute_with_stats()?)?.0)
    }

    /// The smallest record (numbers, or strings).
    pub fn min(&self) -> Result<J> {
        self.extreme("min", Ordering::Less)
    }

    /// The largest record (numbers, or strings).
    pub fn max(&self) -> Result<J> {
        self.extreme("max", Ordering::Greater)
    }

    /// The `k` largest records by `key` (the record itself when `None`), largest
    /// first, as Dask's `topk`. Each partition keeps its own `k`, so no task holds
    /// more than `k × split_every` records.
    pub fn topk(&self, k: usize, key: Option<KeyFn>) -> Result<Vec<J>> {
        let key: KeyFn = key.unwrap_or_else(|| Arc::new(|r: &J| Ok(r.clone())));
        let top = move |items: Vec<(J, J)>| -> Result<Vec<(J, J)>> {
            let mut items = items;
            let mut err = None;
            items.sort_by(|a, b| {
                compare("topk", &b.0, &a.0).unwrap_or_else(|e| {
                    err.get_or_insert(e);
                    Ordering::Equal
                })
            });
            if let Some(e) = err {
                return Err(e);
            }
            items.truncate(k);
            Ok(items)
        };
        let top2 = top;
        let to_json = |items: Vec<(J, J)>| {
            J::Array(
                items
                    .into_iter()
                    .map(|(k, r)| J::Array(vec![k, r]))
                    .collect(),
            )
        };
        let from_json = |v: J| -> Vec<(J, J)> {
            match v {
                J::Array(items) => items
                    .into_iter()
                    .filter_map(|p| match p {
                        J::Array(mut kv) if kv.len() == 2 => {
                            let r = kv.pop()?;
                            Some((kv.pop()?, r))
                        }
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        let v = self.reduction(
            move |r| {
                let items = r
                    .iter()
                    .map(|x| Ok((key(x)?, x.clone())))
                    .collect::<Result<Vec<_>>>()?;
                Ok(to_json(top(items)?))
            },
            move |p| Ok(to_json(top2(p.into_iter().flat_map(from_json).collect())?)),
        )?;
        Ok(from_json(v).into_iter().map(|(_, r)| r).collect())
    }

    /// Folds the records: `binop(acc, record)` from `initial` in each partition, then
    /// `combine(acc, acc)` over the partials (associative), as Dask's `fold`.
    pub fn fold(
        &self,
        initial: J,
        binop: impl Fn(J, &J) -> Result<J> + Send + Sync + 'static,
        combine: impl Fn(J, J) -> Result<J> + Send + Sync + 'static,
    ) -> Result<J> {
        self.reduction(
            move |r| r.iter().try_fold(initial.clone(), &binop),
            move |p| {
                let mut it = p.into_iter();
                let first = it.next().unwrap_or(J::Null);
                it.try_fold(first, &combine)
            },
        )
    }
}
