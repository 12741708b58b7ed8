//! Aggregations that need more than a fixed-size summary of a group: exact
//! `median` / `quantile` (every non-null value of the group) and `nlargest` (the
//! `n` largest values). Their partial state is a list per group (Arrow
//! `LargeList<Float64>` and `List<T>`), so partials stay Arrow columns that the
//! combine tree and the split_out shuffle move like any other: with
//! `split_out = n`, a group's values meet in one of `n` shuffle partitions and no
//! task holds more than about 1/n of them.
//!
//! `quantile` interpolates linearly between the two nearest ranks, as pandas and
//! numpy do by default; `median` is `quantile(0.5)`.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, GenericListArray, LargeListArray, ListArray,
    OffsetSizeTrait,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Float64Type};

use super::accumulator::{for_each_valid, to_f64, Accumulator, Ordered};
use crate::error::Result;

/// The state type of `median` / `quantile`.
pub fn values_type() -> DataType {
    DataType::LargeList(Arc::new(Field::new("item", DataType::Float64, true)))
}

/// Offsets for lists of these lengths.
fn offsets<O: OffsetSizeTrait>(lens: impl Iterator<Item = usize>) -> OffsetBuffer<O> {
    OffsetBuffer::<O>::from_lengths(lens)
}

/// The rows of list `i` of `lists` as a slice of its (primitive) values.
fn list_slice<'a, O: OffsetSizeTrait, T>(
    lists: &GenericListArray<O>,
    values: &'a [T],
    i: usize,
) -> &'a [T] {
    let off = lists.value_offsets();
    &values[off[i].as_usize()..off[i + 1].as_usize()]
}

/// `q`-quantile of `v` (non-empty) by linear interpolation; reorders `v`.
pub fn quantile_of(v: &mut [f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    let (_, a, right) = v.select_nth_unstable_by(lo, f64::total_cmp);
    let a = *a;
    if frac == 0.0 || right.is_empty() {
        return a;
    }
    let b = right.iter().copied().fold(f64::INFINITY, f64::min);
    if q == 0.5 {
        // As pandas' median: the mean of the two middle values.
        return (a + b) / 2.0;
    }
    // numpy's lerp, exact at both ends.
    if frac < 0.5 {
        a + (b - a) * frac
    } else {
        b - (b - a) * (1.0 - frac)
    }
}

/// `median` / `quantile(q)`: every non-null value of each group, as `f64`.
///
/// The values are kept flat, each with its group, in arrival order, and put in
/// group order by one counting sort when the state or the answer is asked for: no
/// vector per group, which for ten million groups of a value or two each was ten
/// million allocations per step.
pub(super) struct Values {
    q: f64,
    groups: Vec<u32>,
    values: Vec<f64>,
}

impl Values {
    /// An accumulator of the `q`-quantile.
    pub fn new(q: f64) -> Values {
        Values {
            q,
            groups: Vec::new(),
            values: Vec::new(),
        }
    }

    /// The values in group order (a group's in arrival order) and the offsets of
    /// each of `ngroups` groups in them; empties the accumulator.
    fn by_group(&mut self, ngroups: usize) -> (Vec<i64>, Vec<f64>) {
        let groups = std::mem::take(&mut self.groups);
        let values = std::mem::take(&mut self.values);
        let mut offsets = vec![0i64; ngroups + 1];
        for &g in &groups {
            offsets[g as usize + 1] += 1;
        }
        for i in 0..ngroups {
            offsets[i + 1] += offsets[i];
        }
        let mut next: Vec<i64> = offsets[..ngroups].to_vec();
        let mut sorted = vec![0.0f64; values.len()];
        for (&g, &v) in groups.iter().zip(&values) {
            let at = &mut next[g as usize];
            sorted[*at as usize] = v;
            *at += 1;
        }
        (offsets, sorted)
    }
}

impl Accumulator for Values {
    fn update(&mut self, values: &ArrayRef, groups: &[u32], _ngroups: usize) -> Result<()> {
        let a = to_f64(values)?;
        let a = a.as_primitive::<Float64Type>();
        self.groups.reserve(groups.len());
        self.values.reserve(groups.len());
        let (out_g, out_v) = (&mut self.groups, &mut self.values);
        for_each_valid(a.values(), a.nulls(), groups, |g, v| {
            if !v.is_nan() {
                out_g.push(g as u32);
                out_v.push(v);
            }
        });
        Ok(())
    }

    fn merge(&mut self, states: &[ArrayRef], groups: &[u32], _ngroups: usize) -> Result<()> {
        let lists = states[0].as_list::<i64>();
        let items = lists.values().as_primitive::<Float64Type>();
        let off = lists.value_offsets();
        let total = (off[lists.len()] - off[0]) as usize;
        self.groups.reserve(total);
        self.values.reserve(total);
        for (i, &g) in groups.iter().enumerate() {
            let slice = list_slice(lists, items.values(), i);
            self.values.extend_from_slice(slice);
            self.groups.extend(std::iter::repeat_n(g, slice.len()));
        }
        Ok(())
    }

    fn state(&mut self, ngroups: usize) -> Result<Vec<ArrayRef>> {
        let (offsets, sorted) = self.by_group(ngroups);
        let field = Arc::new(Field::new("item", DataType::Float64, true));
        Ok(vec![Arc::new(LargeListArray::new(
            field,
            OffsetBuffer::new(offsets.into()),
            Arc::new(Float64Array::from(sorted)),
            None,
        ))])
    }

    fn finalize(&mut self, ngroups: usize) -> Result<ArrayRef> {
        let (offsets, mut sorted) = self.by_group(ngroups);
        let q = self.q;
        let out: Float64Array = offsets
            .windows(2)
            .map(|w| {
                let v = &mut sorted[w[0] as usize..w[1] as usize];
                (!v.is_empty()).then(|| quantile_of(v, q))
            })
            .collect();
        Ok(Arc::new(out))
    }
}

/// `nlargest(n)`: the `n` largest non-null values of each group, largest first.
pub(super) struct Top<T> {
    n: usize,
    groups: Vec<Vec<T>>,
}

impl<T: Ordered> Top<T> {
    /// An accumulator of the `n` largest.
    pub fn new(n: usize) -> Top<T> {
        Top {
            n,
            groups: Vec::new(),
        }
    }

    #[inline]
    fn offer(top: &mut Vec<T>, n: usize, v: T) {
        // NaN is no value (pandas' nlargest drops it); `v != v` only for NaN.
        #[allow(clippy::eq_op)]
        if v != v || (top.len() == n && v <= top[n - 1]) {
            return;
        }
        let at = top.partition_point(|x| *x >= v);
        if top.len() == n {
            top.pop();
        }
        top.insert(at, v);
    }

    fn list(&mut self, ngroups: usize) -> ArrayRef {
        self.groups.resize_with(ngroups, Vec::new);
        let groups = std::mem::take(&mut self.groups);
        let offsets = offsets::<i32>(groups.iter().map(Vec::len));
        let flat: Vec<Option<T>> = groups.into_iter().flatten().map(Some).collect();
        let values = T::array(flat);
        let field = Arc::new(Field::new("item", values.data_type().clone(), true));
        Arc::new(ListArray::new(field, offsets, values, None))
    }
}

impl<T: Ordered> Accumulator for Top<T> {
    fn update(&mut self, values: &ArrayRef, groups: &[u32], ngroups: usize) -> Result<()> {
        self.groups.resize_with(ngroups, Vec::new);
        let a = T::column(values)?;
        let (vals, nulls) = T::values(&a);
        let (out, n) = (&mut self.groups, self.n);
        for_each_valid(vals, nulls, groups, |g, v| Self::offer(&mut out[g], n, v));
        Ok(())
    }

    fn merge(&mut self, states: &[ArrayRef], groups: &[u32], ngroups: usize) -> Result<()> {
        self.groups.resize_with(ngroups, Vec::new);
        let lists = states[0].as_list::<i32>();
        let (vals, _) = T::values(lists.values());
        for (i, &g) in groups.iter().enumerate() {
            for &v in list_slice(lists, vals, i) {
                Self::offer(&mut self.groups[g as usize], self.n, v);
            }
        }
        Ok(())
    }

    fn state(&mut self, ngroups: usize) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.list(ngroups)])
    }

    fn finalize(&mut self, ngroups: usize) -> Result<ArrayRef> {
        Ok(self.list(ngroups))
    }
}

/// Repeats every row of `batch` once per item of its list column `list` (an
/// answer of [`Top`]), replacing the list by its items: pandas' `explode`, except
/// that a row with an empty list is dropped (a group without values has no
/// largest value).
pub fn explode(columns: Vec<ArrayRef>, list: usize) -> Result<(Vec<ArrayRef>, usize)> {
    let lists = columns[list].as_list::<i32>().clone();
    let off = lists.value_offsets();
    let mut take = Vec::with_capacity(lists.values().len());
    for row in 0..lists.len() {
        for _ in off[row]..off[row + 1] {
            take.push(row as u32);
        }
    }
    let idx = arrow::array::UInt32Array::from(take);
    let rows = idx.len();
    let first = off[0] as usize;
    let items = lists
        .values()
        .slice(first, off[lists.len()] as usize - first);
    let out = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i == list {
                Ok(items.clone())
            } else {
                Ok(arrow::compute::take(c.as_ref(), &idx, None)?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((out, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_linearly() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile_of(&mut v, 0.5), 2.5);
        assert_eq!(quantile_of(&mut v, 0.0), 1.0);
        assert_eq!(quantile_of(&mut v, 1.0), 4.0);
        // numpy: np.quantile([1, 2, 3, 4], 0.9) == 3.7
        assert!((quantile_of(&mut v, 0.9) - 3.7).abs() < 1e-12);
        assert!((quantile_of(&mut v, 0.1) - 1.3).abs() < 1e-12);
        assert_eq!(quantile_of(&mut [7.0], 0.3), 7.0);
    }

    #[test]
    fn top_keeps_the_largest_in_order() {
        let mut t: Vec<i64> = Vec::new();
        for v in [3, 9, 1, 9, 4] {
            Top::<i64>::offer(&mut t, 3, v);
        }
        assert_eq!(t, vec![9, 9, 4]);
    }
}
