//! `corr(x, y)`: Pearson correlation per group from a streaming state (count, the
//! two means, the two sums of squared deviations and the co-moment), merged with
//! the pairwise formulas of Chan et al. as `var`/`std` are, so the answer does not
//! depend on how rows were split into partitions. The two input columns arrive as
//! one `Struct{x, y}` of `Float64` (see `AggregatePlan::chunk`); a row counts only
//! where both are non-null, as pandas' `corr`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type};

use super::accumulator::Accumulator;
use crate::error::Result;

/// The state columns.
pub fn state_fields(prefix: &str) -> Vec<Field> {
    let f = |s: &str, t: DataType| Field::new(format!("{prefix}{s}"), t, true);
    vec![
        f("count", DataType::Int64),
        f("mean_x", DataType::Float64),
        f("mean_y", DataType::Float64),
        f("m2_x", DataType::Float64),
        f("m2_y", DataType::Float64),
        f("c_xy", DataType::Float64),
    ]
}

/// One group's moments.
#[derive(Clone, Copy, Default)]
struct M {
    n: i64,
    mx: f64,
    my: f64,
    m2x: f64,
    m2y: f64,
    cxy: f64,
}

impl M {
    #[inline]
    fn combine(&mut self, b: M) {
        if b.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = b;
            return;
        }
        let n = self.n + b.n;
        let (dx, dy) = (b.mx - self.mx, b.my - self.my);
        let w = self.n as f64 * b.n as f64 / n as f64;
        self.mx += dx * b.n as f64 / n as f64;
        self.my += dy * b.n as f64 / n as f64;
        self.m2x += b.m2x + dx * dx * w;
        self.m2y += b.m2y + dy * dy * w;
        self.cxy += b.cxy + dx * dy * w;
        self.n = n;
    }
}

/// The `corr` accumulator.
#[derive(Default)]
pub(super) struct CoMoments {
    groups: Vec<M>,
}

impl Accumulator for CoMoments {
    fn update(&mut self, values: &ArrayRef, groups: &[u32], ngroups: usize) -> Result<()> {
        self.groups.resize(ngroups, M::default());
        let s = values.as_struct();
        let (x, y) = (
            s.column(0).as_primitive::<Float64Type>(),
            s.column(1).as_primitive::<Float64Type>(),
        );
        let both = arrow::buffer::NullBuffer::union(x.nulls(), y.nulls());
        let valid = |i: usize| both.as_ref().is_none_or(|n| n.is_valid(i));
        let (xv, yv) = (x.values(), y.values());
        // Welford's update row by row, as `Moments` does: stable for large
        // values, and a batch costs its rows whatever the groups held.
        for (i, &g) in groups.iter().enumerate() {
            if valid(i) {
                let m = &mut self.groups[g as usize];
                m.n += 1;
                let inv = 1.0 / m.n as f64;
                let (dx, dy) = (xv[i] - m.mx, yv[i] - m.my);
                m.mx += dx * inv;
                m.my += dy * inv;
                let (ex, ey) = (xv[i] - m.mx, yv[i] - m.my);
                m.m2x += dx * ex;
                m.m2y += dy * ey;
                m.cxy += dx * ey;
            }
        }
        Ok(())
    }

    fn merge(&mut self, states: &[ArrayRef], groups: &[u32], ngroups: usize) -> Result<()> {
        self.groups.resize(ngroups, M::default());
        let n = states[0].as_primitive::<Int64Type>().values();
        let f = |k: usize| states[k].as_primitive::<Float64Type>().values();
        let (mx, my, m2x, m2y, cxy) = (f(1), f(2), f(3), f(4), f(5));
        for (i, &g) in groups.iter().enumerate() {
            self.groups[g as usize].combine(M {
                n: n[i],
                mx: mx[i],
                my: my[i],
                m2x: m2x[i],
                m2y: m2y[i],
                cxy: cxy[i],
            });
        }
        Ok(())
    }

    fn state(&mut self, ngroups: usize) -> Result<Vec<ArrayRef>> {
        self.groups.resize(ngroups, M::default());
        let g = std::mem::take(&mut self.groups);
        let col = |f: fn(&M) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(g.iter().map(f)))
        };
        Ok(vec![
            Arc::new(Int64Array::from_iter_values(g.iter().map(|m| m.n))),
            col(|m| m.mx),
            col(|m| m.my),
            col(|m| m.m2x),
            col(|m| m.m2y),
            col(|m| m.cxy),
        ])
    }

    fn finalize(&mut self, ngroups: usize) -> Result<ArrayRef> {
        self.groups.resize(ngroups, M::default());
        let out: Float64Array = self
            .groups
            .iter()
            .map(|m| {
                let d = (m.m2x * m.m2y).sqrt();
                (m.n > 1 && d > 0.0).then(|| (m.cxy / d).clamp(-1.0, 1.0))
            })
            .collect();
        self.groups.clear();
        Ok(Arc::new(out))
    }
}
