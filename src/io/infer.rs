//! Column type inference: the lattice `Null < Boolean < Int64 < Float64 < Utf8`, and
//! the sampling of several files (first, last, and some between; the start and the
//! middle of each) so that a type that changes late in a data set is seen before any
//! row is decoded. Dask guesses from the first rows of the first file and fails later
//! with "Mismatched dtypes"; we look wider.

use arrow::datatypes::DataType;

use super::csv::{is_na, parse_bool, parse_f64, parse_i64};

/// What the values seen so far of one column allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Inferred {
    /// Only empty or NA values so far.
    #[default]
    Null,
    /// `true` / `false`.
    Boolean,
    /// Whole numbers that fit in 64 bits.
    Int64,
    /// Numbers.
    Float64,
    /// Anything.
    Utf8,
}

impl Inferred {
    /// Widens `self` to admit `value`.
    pub fn widen(self, value: &[u8]) -> Inferred {
        if value.is_empty() || (self != Inferred::Utf8 && is_na(value)) {
            return self;
        }
        let fits = |t: Inferred| match t {
            Inferred::Null => false,
            Inferred::Boolean => parse_bool(value).is_some(),
            Inferred::Int64 => parse_i64(value).is_some(),
            Inferred::Float64 => parse_f64(value).is_some(),
            Inferred::Utf8 => true,
        };
        let candidates = [
            Inferred::Boolean,
            Inferred::Int64,
            Inferred::Float64,
            Inferred::Utf8,
        ];
        for t in candidates {
            // Booleans do not widen into numbers: a column of `true` and `3` is text.
            if t < self
                || (self == Inferred::Boolean && t != Inferred::Boolean && t != Inferred::Utf8)
            {
                continue;
            }
            if fits(t) {
                return t;
            }
        }
        Inferred::Utf8
    }

    /// The least type that admits every value of both `self` and `other`.
    pub fn join(self, other: Inferred) -> Inferred {
        let (lo, hi) = if self <= other {
            (self, other)
        } else {
            (other, self)
        };
        match (lo, hi) {
            (Inferred::Null, t) => t,
            // Booleans do not widen into numbers.
            (Inferred::Boolean, Inferred::Int64 | Inferred::Float64) => Inferred::Utf8,
            (_, t) => t,
        }
    }

    /// The lattice point of a type a column was read as (text for other types).
    pub fn of(t: &DataType) -> Inferred {
        match t {
            DataType::Null => Inferred::Null,
            DataType::Boolean => Inferred::Boolean,
            DataType::Int64 => Inferred::Int64,
            DataType::Float64 => Inferred::Float64,
            _ => Inferred::Utf8,
        }
    }

    /// The Arrow type for a column inferred as `self`. A column with no values at all
    /// is read as text, which never fails to parse.
    pub fn data_type(self) -> DataType {
        match self {
            Inferred::Null | Inferred::Utf8 => DataType::Utf8,
            Inferred::Boolean => DataType::Boolean,
            Inferred::Int64 => DataType::Int64,
            Inferred::Float64 => DataType::Float64,
        }
    }
}

/// Which files to sample: the first, the last, and up to `n - 2` spread between.
pub fn sample_files(nfiles: usize, n: usize) -> Vec<usize> {
    if nfiles <= n {
        return (0..nfiles).collect();
    }
    let mut out: Vec<usize> = (0..n).map(|i| i * (nfiles - 1) / (n - 1).max(1)).collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(values: &[&str]) -> Inferred {
        values
            .iter()
            .fold(Inferred::Null, |t, v| t.widen(v.as_bytes()))
    }

    #[test]
    fn lattice() {
        assert_eq!(infer(&["", "NA"]), Inferred::Null);
        assert_eq!(infer(&["1", "", "-3"]), Inferred::Int64);
        assert_eq!(infer(&["1", "2.5"]), Inferred::Float64);
        assert_eq!(infer(&["2.5", "7", "nan"]), Inferred::Float64);
        assert_eq!(infer(&["1", "x"]), Inferred::Utf8);
        assert_eq!(infer(&["true", "False"]), Inferred::Boolean);
        assert_eq!(infer(&["true", "3"]), Inferred::Utf8);
        assert_eq!(infer(&["99999999999999999999"]), Inferred::Float64);
        assert_eq!(Inferred::Int64.join(Inferred::Float64), Inferred::Float64);
        assert_eq!(Inferred::Boolean.join(Inferred::Int64), Inferred::Utf8);
        assert_eq!(Inferred::Null.join(Inferred::Boolean), Inferred::Boolean);
    }

    #[test]
    fn samples_first_last_and_between() {
        assert_eq!(sample_files(3, 5), vec![0, 1, 2]);
        assert_eq!(sample_files(100, 5), vec![0, 24, 49, 74, 99]);
    }
}
