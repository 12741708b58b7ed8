//! Grouped accumulators: typed state vectors indexed by group id, updated from raw
//! rows (`update`, the chunk step) or from other accumulators' states (`merge`, the
//! combine step), and turned into partial state columns (`state`) or the answer
//! (`finalize`). Every loop is over a typed Arrow slice; no per-row boxing.

use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BinaryBuilder, Float64Array, Int64Array, ListBuilder,
    StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type};
use arrow::row::{RowConverter, SortField};
use hashbrown::HashSet;

use super::AggFunc;
use crate::error::{Error, Result};

/// One aggregation's running state over all groups.
pub trait Accumulator: Send {
    /// Adds raw rows: `values[i]` belongs to group `groups[i]`; `ngroups` is the
    /// number of groups there are now (ids are below it).
    fn update(&mut self, values: &ArrayRef, groups: &[u32], ngroups: usize) -> Result<()>;
    /// Adds partial states made by [`Accumulator::state`] of the same function.
    fn merge(&mut self, states: &[ArrayRef], groups: &[u32], ngroups: usize) -> Result<()>;
    /// The partial state, one row per group, as the columns [`state_fields`] names.
    fn state(&mut self, ngroups: usize) -> Result<Vec<ArrayRef>>;
    /// The answer, one row per group.
    fn finalize(&mut self, ngroups: usize) -> Result<ArrayRef>;
}

/// The columns of `func`'s partial state for an input of type `input`.
pub fn state_fields(func: AggFunc, input: &DataType, prefix: &str) -> Vec<Field> {
    let f = |suffix: &str, t: DataType| Field::new(format!("{prefix}{suffix}"), t, true);
    match func {
        AggFunc::Sum => vec![f("sum", func.output_type(input))],
        AggFunc::Count | AggFunc::Size => vec![f("count", DataType::Int64)],
        AggFunc::Mean => vec![f("sum", DataType::Float64), f("count", DataType::Int64)],
        AggFunc::Var | AggFunc::Std => vec![
            f("count", DataType::Int64),
            f("mean", DataType::Float64),
            f("m2", DataType::Float64),
        ],
        AggFunc::Min | AggFunc::Max | AggFunc::First | AggFunc::Last => {
            vec![f("value", input.clone())]
        }
        AggFunc::Nunique => vec![f(
            "set",
            DataType::List(Arc::new(Field::new("item", DataType::Binary, true))),
        )],
        AggFunc::Median | AggFunc::Quantile(_) => vec![f("values", super::holistic::values_type())],
        AggFunc::Nlargest(_) => vec![f(
            "top",
            DataType::List(Arc::new(Field::new("item", func.output_type(input), true))),
        )],
        AggFunc::Corr => super::comoments::state_fields(prefix),
    }
}

/// A fresh accumulator of `func` over values of type `input`.
pub fn new_accumulator(func: AggFunc, input: &DataType) -> Result<Box<dyn Accumulator>> {
    Ok(match func {
        AggFunc::Sum if input.is_floating() => Box::new(SumF64::default()),
        AggFunc::Sum => Box::new(SumI64::default()),
        AggFunc::Count => Box::new(Count {
            rows: false,
            counts: Vec::new(),
        }),
        AggFunc::Size => Box::new(Count {
            rows: true,
            counts: Vec::new(),
        }),
        AggFunc::Mean => Box::new(Moments::new(func)),
        AggFunc::Var | AggFunc::Std => Box::new(Moments::new(func)),
        AggFunc::Min | AggFunc::Max => {
            let is_min = func == AggFunc::Min;
            if input.is_floating() {
                Box::new(Extreme::<f64>::new(is_min, input.clone()))
            } else if input == &DataType::Utf8 {
                Box::new(StrExtreme {
                    is_min,
                    values: Vec::new(),
                })
            } else {
                Box::new(Extreme::<i64>::new(is_min, input.clone()))
            }
        }
        AggFunc::First | AggFunc::Last => Box::new(Pick {
            first: func == AggFunc::First,
            data_type: input.clone(),
            arrays: Vec::new(),
            picks: Vec::new(),
        }),
        AggFunc::Nunique => Box::new(Distinct {
            converter: RowConverter::new(vec![SortField::new(input.clone())])?,
            sets: Vec::new(),
        }),
        AggFunc::Median => Box::new(super::holistic::Values::new(0.5)),
        AggFunc::Quantile(q) => Box::new(super::holistic::Values::new(q.get())),
        AggFunc::Nlargest(n) if input.is_floating() => {
            Box::new(super::holistic::Top::<f64>::new(n as usize))
        }
        AggFunc::Nlargest(n) => Box::new(super::holistic::Top::<i64>::new(n as usize)),
        AggFunc::Corr => Box::new(super::comoments::CoMoments::default()),
    })
}

/// Integer-like values (ints, booleans, dates, timestamps) as `Int64`.
pub(super) fn to_i64(a: &ArrayRef) -> Result<ArrayRef> {
    Ok(match a.data_type() {
        DataType::Int64 => a.clone(),
        DataType::Date32 => cast(&cast(a, &DataType::Int32)?, &DataType::Int64)?,
        _ => cast(a, &DataType::Int64)?,
    })
}

pub(super) fn to_f64(a: &ArrayRef) -> Result<ArrayRef> {
    Ok(match a.data_type() {
        DataType::Float64 => a.clone(),
        _ => cast(a, &DataType::Float64)?,
    })
}

/// The inverse of [`to_i64`].
pub(super) fn from_i64(a: ArrayRef, to: &DataType) -> Result<ArrayRef> {
    Ok(match to {
        DataType::Int64 => a,
        DataType::Date32 => cast(&cast(&a, &DataType::Int32)?, &DataType::Date32)?,
        DataType::Boolean => Arc::new(arrow::compute::kernels::cmp::neq(
            &a,
            &Int64Array::new_scalar(0),
        )?),
        t => cast(&a, t)?,
    })
}

/// Calls `f(group, value)` for every non-null row.
#[inline]
pub(super) fn for_each_valid<T: Copy>(
    values: &[T],
    nulls: Option<&arrow::buffer::NullBuffer>,
    groups: &[u32],
    mut f: impl FnMut(usize, T),
) {
    match nulls.filter(|n| n.null_count() > 0) {
        None => {
            for (&g, &v) in groups.iter().zip(values) {
                f(g as usize, v);
            }
        }
        Some(n) => {
            for i in n.valid_indices() {
                f(groups[i] as usize, values[i]);
            }
        }
    }
}

#[derive(Default)]
struct SumI64 {
    sums: Vec<i64>,
}

impl Accumulator for SumI64 {
    fn update(&mut self, values: &ArrayRef, groups: &[u32], ngroups: usize) -> Result<()> {
        self.sums.resize(ngroups, 0);
        let a = to_i64(values)?;
        let a = a.as_primitive::<Int64Type>();
        let sums = &mut self.sums;
        for_each_valid(a.values(), a.nulls(), groups, |g, v| {
            sums[g] = sums[g].wrapping_add(v)
        });
        Ok(())
    }
    fn merge(&mut self, states: &[ArrayRef], groups: &[u32], ngroups: usize) -> Result<()> {
        self.update(&states[0], groups, ngroups)
    }
    fn state(&mut self, ngroups: usize) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.finalize(ngroups)?])
    }
    fn finalize(&mut self, ngroups: usize) -> Result<ArrayRef> {
        self.sums.resize(ngroups, 0);
        Ok(Arc::new(Int64Array::from(std::mem::take(&mut self.sums))))
    }
}

#[derive(Default)]
struct SumF64 {
    sums: Vec<f64>,
}

impl Accumulator for SumF64 {
    fn update(&mut self, values: &ArrayRef, groups: &[u32], ngroups: usize) -> Result<()> {
        self.sums.resize(ngroups, 0.0);
        let a = to_f64(values)?;
        let a = a.as_primitive::<Float64Type>();
        let sums = &mut self.sums;
        for_each_valid(a.values(), a.nulls(), groups, |g, v| sums[g] += v);
        Ok(())
    }
    fn merge(&mut self, states: &[ArrayRef], groups: &[u32], ngroups: usize) -> Result<()> {
        self.update(&states[0], groups, ngroups)
    }
    fn state(&mut self, ngroups: usize) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.finalize(ngroups)?])
    }
    fn finalize(&mut self, ngroups: usize) -> Result<ArrayRef> {
        self.sums.resize(ngroups, 0.0);
        Ok(Arc::new(Float64Array::from(std::mem::take(&mut self.sums))))
    }
}

/// `count` (non-null values) or `size` (rows).
struct Count {
    rows: bool,
    counts: Vec<i64>,
}

impl Accumulator for Count {
    fn update(&mut self, values: &ArrayRef, groups: &[u32], ngroups: usize) -> Result<()> {
        self.counts.resize(ngroups, 0);
        let nulls = if self.rows {
            None
        } else {
            values.logical_nulls()
        };
        match nulls.filter(|n| n.null_count() > 0) {
            None => {
                for &g in groups {
                    self.counts[g as usize] += 1;
                }
            }
            Some(n) => {
                for i in n.valid_indices() {
                    self.counts[groups[i] as usize] += 1;
                }
            }
        }
        Ok(())
    }
    fn merge(&mut self, states: &[ArrayRef], groups: &[u32], ngroups: usize) -> Result<()> {
        self.counts.resize(ngroups, 0);
        let a = states[0].as_primitive::<Int64Type>();
        let counts = &mut self.counts;
        for_each_valid(a.values(), None, groups, |g, v| counts[g] += v);
        Ok(())
    }
    fn state(&mut self, ngroups: usize) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.finalize(ngroups)?])
    }
    fn finalize(&mut self, ngroups: usize) -> Result<ArrayRef> {
        self.counts.resize(ngroups, 0);
        Ok(Arc::new(Int64Array::from(std::mem::take(&mut self.counts))))
    }
}

/// `mean`, `var` and `std`: count, mean and the sum of squared deviations per
/// group, updated row by row with Welford's formula and combined with Chan's, so
/// the answer is stable for large values whatever the partitioning. For `mean`,
/// `mean` holds each group's sum (its state is the sum and the count, as pandas
/// divides).
struct Moments {
    func: AggFunc,
    count: Vec<i64>,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Moments {
    fn new(func: AggFunc) -> Self {
        Moments {
            func,
            count: Vec::new(),
            mean: Vec::new(),
            m2: Vec::new(),
        }
    }

    fn resize(&mut self, n: usize) {
        self.count.resize(n, 0);
        self.mean.resize(n, 0.0);
        self.m2.resize(n, 0.0);
    }

    /// Folds in a group's `(n, mean, m2)` from elsewhere.
    #[inline]
    fn combine(&mut self, g: usize, nb: i64, mb: f64, m2b: f64) {
        if nb == 0 {
            return;
        }
        let na = self.count[g];
        if na == 0 {
            self.count[g] = nb;
            self.mean[g] = mb;
            self.m2[g] = m2b;
            return;
        }
        let n = na + nb;
        let delta = mb - self.mean[g];
        self.mean[g] += delta * nb as f64 / n as f64;
        self.m2[g] += m2b + delta * delta * (na as f64 * nb as f64 / n as f64);
        self.count[g] = n;
    }
}

impl Accumulator for Moments {
    /// Welford's update, row by row: each row touches its own group only, so a
    /// batch costs its rows whatever the groups held (a running table folded
    /// across chunks holds millions).
    fn update(&mut self, values: &ArrayRef, groups: &[u32], ngroups: usize) -> Result<()> {
        self.resize(ngroups);
        let a = to_f64(values)?;
        let a = a.as_primitive::<Float64Type>();
        let (count, mean, m2) = (&mut self.count, &mut self.mean, &mut self.m2);
        if self.func == AggFunc::Mean {
            for_each_valid(a.values(), a.nulls(), groups, |g, v| {
                count[g] += 1;
                mean[g] += v;
            });
            return Ok(());
        }
        for_each_valid(a.values(), a.nulls(), groups, |g, v| {
            count[g] += 1;
            let delta = v - mean[g];
            mean[g] += delta / count[g] as f64;
            m2[g] += delta * (v - mean[g]);
        });
        Ok(())
    }

    fn merge(&mut self, states: &[ArrayRef], groups: &[u32], ngroups: usize) -> Result<()> {
        self.resize(ngroups);
        if self.func == AggFunc::Mean {
            let sum = states[0].as_primitive::<Float64Type>().values();
            let count = states[1].as_primitive::<Int64Type>().values();
            for (i, &g) in groups.iter().enumerate() {
                self.count[g as usize] += count[i];
                self.mean[g as usize] += sum[i];
            }
        } else {
            let count = states[0].as_primitive::<Int64Type>().values();
            let mean = states[1].as_primitive::<Float64Type>().values();
            let m2 = states[2].as_primitive::<Float64Type>().values();
            for (i, &g) in groups.iter().enumerate() {
                self.combine(g as usize, count[i], mean[i], m2[i]);
            }
        }
        Ok(())
    }

    fn state(&mut self, ngroups: usize) -> Result<Vec<ArrayRef>> {
        self.resize(ngroups);
        let count = std::mem::take(&mut self.count);
        let mean = std::mem::take(&mut self.mean);
        let m2 = std::mem::take(&mut self.m2);
        if self.func == AggFunc::Mean {
            return Ok(vec![
                Arc::new(Float64Array::from(mean)),
                Arc::new(Int64Array::from(count)),
            ]);
        }
        Ok(vec![
            Arc::new(Int64Array::from(count)),
            Arc::new(Float64Array::from(mean)),
            Arc::new(Float64Array::from(m2)),
        ])
    }

    fn finalize(&mut self, ngroups: usize) -> Result<ArrayRef> {
        self.resize(ngroups);
        let out: Float64Array = (0..ngroups)
            .map(|g| {
                let n = self.count[g];
                match self.func {
                    AggFunc::Mean => (n > 0).then(|| self.mean[g] / n as f64),
                    AggFunc::Var => (n > 1).then(|| self.m2[g] / (n - 1) as f64),
                    _ => (n > 1).then(|| (self.m2[g] / (n - 1) as f64).sqrt()),
                }
            })
            .collect();
        Ok(Arc::new(out))
    }
}

/// A type `min`/`max` keeps natively.
pub(super) trait Ordered: Copy + Default + PartialOrd + Send + 'static {
    fn column(a: &ArrayRef) -> Result<ArrayRef>;
    fn values(a: &ArrayRef) -> (&[Self], Option<&arrow::buffer::NullBuffer>);
    fn array(v: Vec<Option<Self>>) -> ArrayRef;
}

impl Ordered for i64 {
    fn column(a: &ArrayRef) -> Result<ArrayRef> {
        to_i64(a)
    }
    fn values(a: &ArrayRef) -> (&[Self], Option<&arrow::buffer::NullBuffer>) {
        let p = a.as_primitive::<Int64Type>();
        (p.values(), p.nulls())
    }
    fn array(v: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(Int64Array::from(v))
    }
}

impl Ordered for f64 {
    fn column(a: &ArrayRef) -> Result<ArrayRef> {
        to_f64(a)
    }
    fn values(a: &ArrayRef) -> (&[Self], Option<&arrow::buffer::NullBuffer>) {
        let p = a.as_primitive::<Float64Type>();
        (p.values(), p.nulls())
    }
    fn array(v: Vec<Option<Self>>) -> ArrayRef {
        Arc::new(Float64Array::from(v))
    }
}

struct Extreme<T> {
    is_min: bool,
    data_type: DataType,
    values: Vec<T>,
    seen: Vec<bool>,
}

impl<T: Ordered> Extreme<T> {
    fn new(is_min: bool, data_type: DataType) -> Self {
        Extreme {
            is_min,
            data_type,
            values: Vec::new(),
            seen: Vec::new(),
        }
    }
}

impl<T: Ordered> Accumulator for Extreme<T> {
    fn update(&mut self, values: &ArrayRef, groups: &[u32], ngroups: usize) -> Result<()> {
        self.values.resize(ngroups, T::default());
        self.seen.resize(ngroups, false);
        let a = T::column(values)?;
        let (vals, nulls) = T::values(&a);
        let (best, seen, is_min) = (&mut self.values, &mut self.seen, self.is_min);
        for_each_valid(vals, nulls, groups, |g, v| {
            if !seen[g] || (is_min && v < best[g]) || (!is_min && v > best[g]) {
                best[g] = v;
                seen[g] = true;
            }
        });
        Ok(())
    }
    fn merge(&mut self, states: &[ArrayRef], groups: &[u32], ngroups: usize) -> Result<()> {
        self.update(&states[0], groups, ngroups)
    }
    fn state(&mut self, ngroups: usize) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.finalize(ngroups)?])
    }
    fn finalize(&mut self, ngroups: usize) -> Result<ArrayRef> {
        self.values.resize(ngroups, T::default());
        self.seen.resize(ngroups, false);
        let v: Vec<Option<T>> = self
            .values
            .iter()
            .zip(&self.seen)
            .map(|(&v, &s)| s.then_some(v))
            .collect();
        let a = T::array(v);
        if self.data_type.is_floating() || self.data_type == DataType::Int64 {
            return Ok(cast(&a, &self.data_type)?);
        }
        from_i64(a, &self.data_type)
    }
}

struct StrExtreme {
    is_min: bool,
    values: Vec<Option<Box<str>>>,
}

impl Accumulator for StrExtreme {
    fn update(&mut self, values: &ArrayRef, groups: &[u32], ngroups: usize) -> Result<()> {
        self.values.resize(ngroups, None);
        let a = values.as_string::<i32>();
        for (i, &g) in groups.iter().enumerate() {
            if a.is_null(i) {
                continue;
            }
            let v = a.value(i);
            let slot = &mut self.values[g as usize];
            let better = match slot {
                None => true,
                Some(cur) => (self.is_min && v < &**cur) || (!self.is_min && v > &**cur),
            };
            if better {
                *slot = Some(v.into());
            }
        }
        Ok(())
    }
    fn merge(&mut self, states: &[ArrayRef], groups: &[u32], ngroups: usize) -> Result<()> {
        self.update(&states[0], groups, ngroups)
    }
    fn state(&mut self, ngroups: usize) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.finalize(ngroups)?])
    }
    fn finalize(&mut self, ngroups: usize) -> Result<ArrayRef> {
        self.values.resize(ngroups, None);
        let v = std::mem::take(&mut self.values);
        Ok(Arc::new(StringArray::from_iter(
            v.iter().map(|s| s.as_deref()),
        )))
    }
}

/// `first` / `last`: the first (last) non-null value of each group in row order,
/// kept as a pointer (array, row) and gathered with `interleave` at the end.
struct Pick {
    first: bool,
    data_type: DataType,
    arrays: Vec<ArrayRef>,
    picks: Vec<Option<(u32, u32)>>,
}

impl Accumulator for Pick {
    fn update(&mut self, values: &ArrayRef, groups: &[u32], ngroups: usize) -> Result<()> {
        self.picks.resize(ngroups, None);
        let which = self.arrays.len() as u32;
        self.arrays.push(values.clone());
        let nulls = values.logical_nulls();
        for (i, &g) in groups.iter().enumerate() {
            if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                continue;
            }
            let slot = &mut self.picks[g as usize];
            if !self.first || slot.is_none() {
                *slot = Some((which, i as u32));
            }
        }
        Ok(())
    }
    fn merge(&mut self, states: &[ArrayRef], groups: &[u32], ngroups: usize) -> Result<()> {
        self.update(&states[0], groups, ngroups)
    }
    fn state(&mut self, ngroups: usize) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.finalize(ngroups)?])
    }
    fn finalize(&mut self, ngroups: usize) -> Result<ArrayRef> {
        self.picks.resize(ngroups, None);
        let null_at = self.arrays.len();
        let mut arrays: Vec<&dyn Array> = self.arrays.iter().map(|a| a.as_ref()).collect();
        let null = new_null_array(&self.data_type, 1);
        arrays.push(null.as_ref());
        let indices: Vec<(usize, usize)> = self
            .picks
            .iter()
            .map(|p| p.map_or((null_at, 0), |(a, r)| (a as usize, r as usize)))
            .collect();
        let out = arrow::compute::interleave(&arrays, &indices)?;
        self.arrays.clear();
        self.picks.clear();
        Ok(out)
    }
}

/// `nunique`: the distinct non-null values of each group, as Arrow row bytes; the
/// partial state is a list of those bytes per group.
struct Distinct {
    converter: RowConverter,
    sets: Vec<HashSet<Box<[u8]>>>,
}

impl Accumulator for Distinct {
    fn update(&mut self, values: &ArrayRef, groups: &[u32], ngroups: usize) -> Result<()> {
        self.sets.resize_with(ngroups, HashSet::new);
        // -0.0 and 0.0 are one value (as in pandas), but their row bytes differ.
        let values = &match values.data_type() {
            DataType::Float64 => {
                let a = values.as_primitive::<Float64Type>();
                Arc::new(arrow::compute::kernels::arity::unary::<_, _, Float64Type>(
                    a,
                    |x| x + 0.0,
                )) as ArrayRef
            }
            _ => values.clone(),
        };
        let rows = self
            .converter
            .convert_columns(std::slice::from_ref(values))?;
        let nulls = values.logical_nulls();
        for (i, &g) in groups.iter().enumerate() {
            if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                continue;
            }
            let row = rows.row(i);
            let set = &mut self.sets[g as usize];
            if !set.contains(row.as_ref()) {
                set.insert(row.as_ref().into());
            }
        }
        Ok(())
    }
    fn merge(&mut self, states: &[ArrayRef], groups: &[u32], ngroups: usize) -> Result<()> {
        self.sets.resize_with(ngroups, HashSet::new);
        let lists = states[0].as_list::<i32>();
        for (i, &g) in groups.iter().enumerate() {
            let items = lists.value(i);
            let items = items.as_binary::<i32>();
            let set = &mut self.sets[g as usize];
            for v in items.iter().flatten() {
                if !set.contains(v) {
                    set.insert(v.into());
                }
            }
        }
        Ok(())
    }
    fn state(&mut self, ngroups: usize) -> Result<Vec<ArrayRef>> {
        self.sets.resize_with(ngroups, HashSet::new);
        let mut b = ListBuilder::new(BinaryBuilder::new());
        for set in self.sets.drain(..) {
            for v in set {
                b.values().append_value(v);
            }
            b.append(true);
        }
        Ok(vec![Arc::new(b.finish())])
    }
    fn finalize(&mut self, ngroups: usize) -> Result<ArrayRef> {
        self.sets.resize_with(ngroups, HashSet::new);
        let out: Int64Array = self.sets.iter().map(|s| Some(s.len() as i64)).collect();
        self.sets.clear();
        Ok(Arc::new(out))
    }
}

/// An error for an aggregation that does not apply to a column's type.
pub fn check_input(func: AggFunc, column: &str, t: &DataType) -> Result<()> {
    let numeric = t.is_numeric() || t == &DataType::Boolean;
    let ordered = numeric
        || matches!(
            t,
            DataType::Utf8 | DataType::Date32 | DataType::Timestamp(..)
        );
    let ok = match func {
        AggFunc::Sum | AggFunc::Mean | AggFunc::Var | AggFunc::Std => numeric,
        AggFunc::Median | AggFunc::Quantile(_) | AggFunc::Corr | AggFunc::Nlargest(_) => numeric,
        AggFunc::Min | AggFunc::Max => ordered,
        AggFunc::Count | AggFunc::Size | AggFunc::First | AggFunc::Last | AggFunc::Nunique => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::plan(
            "agg",
            format!(
                "{}({column}) needs a numeric column, but {column:?} is {t}",
                func.name()
            ),
        ))
    }
}
