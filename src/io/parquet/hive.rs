//! Hive-style partition folders: `sales/month=6/day=2/part-0.parquet` gives every
//! row of that file the columns `month = 6` and `day = 2` (pyarrow, Spark, DuckDB and
//! Polars write folders this way). This module finds the `key=value` folder names
//! under a dataset's root, checks that every file has the same keys in the same
//! order, and gives each key one type: integer, float, date or string, or the type
//! the user declared. `__HIVE_DEFAULT_PARTITION__` (and an empty value) is null.
//!
//! Values that do not all parse as one type (`month=6` beside `month=June`) are an
//! error naming both folders, with the hint to declare the type, because guessing
//! would change the meaning of filters such as `month > 10`.

use std::path::{Path, PathBuf};

use arrow::datatypes::{DataType, Field};
use datafusion_common::ScalarValue;

use crate::error::{Error, Result};

/// The value Hive and Spark write for a null partition value.
const NULL_VALUE: &str = "__HIVE_DEFAULT_PARTITION__";

/// The partition columns of a list of files, and each file's values.
#[derive(Debug, Clone, Default)]
pub struct HiveColumns {
    /// One field per `key=` level, in folder order (nullable).
    pub fields: Vec<Field>,
    /// For each file, one value per field.
    pub values: Vec<Vec<ScalarValue>>,
}

/// The `key=value` folders of `file` below `root`, percent-decoded, in order.
fn pairs(root: &Path, file: &Path) -> Vec<(String, String)> {
    let rel = file.strip_prefix(root).unwrap_or(file);
    let mut out = Vec::new();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            let s = c.as_os_str().to_string_lossy();
            if let Some((k, v)) = s.split_once('=') {
                if !k.is_empty() {
                    out.push((percent_decode(k), percent_decode(v)));
                }
            }
        }
    }
    out
}

/// `%3A` → `:` (writers escape `/ : = %` and the like in folder names).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a folder value looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Integer,
    Float,
    Date,
    Text,
}

impl Kind {
    fn of(v: &str) -> Kind {
        if v.parse::<i64>().is_ok() {
            Kind::Integer
        } else if v.bytes().any(|c| c.is_ascii_digit())
            && v.bytes()
                .all(|c| c.is_ascii_digit() || b"+-.eE".contains(&c))
            && v.parse::<f64>().is_ok()
        {
            Kind::Float
        } else if chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok() {
            Kind::Date
        } else {
            Kind::Text
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Integer => "an integer",
            Kind::Float => "a number",
            Kind::Date => "a date",
            Kind::Text => "text",
        }
    }
}

/// The type a key's values share: integers, integers and floats (as floats), dates,
/// or text when none is a number or a date. Anything else is ambiguous.
fn common_type(kinds: &[Kind]) -> Option<DataType> {
    let has = |k: Kind| kinds.contains(&k);
    if kinds.iter().all(|&k| k == Kind::Text) {
        Some(DataType::Utf8)
    } else if has(Kind::Text) || (has(Kind::Date) && kinds.iter().any(|&k| k != Kind::Date)) {
        None
    } else if has(Kind::Date) {
        Some(DataType::Date32)
    } else if has(Kind::Float) {
        Some(DataType::Float64)
    } else {
        Some(DataType::Int64)
    }
}

/// Parses `v` as `t`: the inferred type, or one the user declared.
fn parse_value(v: Option<&str>, t: &DataType) -> Option<ScalarValue> {
    let Some(v) = v else {
        return ScalarValue::try_from(t).ok();
    };
    let text = ScalarValue::Utf8(Some(v.to_string()));
    match t {
        DataType::Utf8 => Some(text),
        DataType::Int64 => v.parse::<i64>().ok().map(|i| ScalarValue::Int64(Some(i))),
        DataType::Float64 => v.parse::<f64>().ok().map(|f| ScalarValue::Float64(Some(f))),
        DataType::Date32 => chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .ok()
            .map(|d| {
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
                ScalarValue::Date32(Some((d - epoch).num_days() as i32))
            }),
        other => text.cast_to(other).ok().filter(|s| !s.is_null()),
    }
}

/// Finds the partition columns of `files` (all under `root`); `declared` gives
/// types for some keys. An error when files differ in their keys or a key's
/// values have no one type.
pub fn columns(
    root: &Path,
    files: &[PathBuf],
    declared: &[(String, DataType)],
) -> Result<HiveColumns> {
    let all: Vec<Vec<(String, String)>> = files.iter().map(|f| pairs(root, f)).collect();
    let Some(first) = all.first() else {
        return Ok(HiveColumns::default());
    };
    let keys: Vec<&String> = first.iter().map(|(k, _)| k).collect();
    for (f, p) in files.iter().zip(&all) {
        let these: Vec<&String> = p.iter().map(|(k, _)| k).collect();
        if these != keys {
            let show = |k: &[&String]| {
                if k.is_empty() {
                    "none".to_string()
                } else {
                    k.iter()
                        .map(|s| format!("{s}="))
                        .collect::<Vec<_>>()
                        .join("/")
                }
            };
            return Err(Error::plan(
                "read_parquet",
                format!(
                    "partition folders differ: {} is under {} but {} is under {}; every file \
                     needs the same key=value folders, in the same order",
                    files[0].display(),
                    show(&keys),
                    f.display(),
                    show(&these)
                ),
            ));
        }
    }
    let mut out = HiveColumns {
        fields: Vec::new(),
        values: vec![Vec::with_capacity(keys.len()); files.len()],
    };
    for (k, key) in keys.iter().enumerate() {
        let raw = |i: usize| -> Option<&str> {
            let v = all[i][k].1.as_str();
            (!v.is_empty() && v != NULL_VALUE).then_some(v)
        };
        let t = match declared.iter().find(|(c, _)| c == *key) {
            Some((_, t)) => t.clone(),
            None => {
                let mut kinds: Vec<(Kind, usize)> = Vec::new();
                for i in 0..files.len() {
                    if let Some(v) = raw(i) {
                        let kind = Kind::of(v);
                        if !kinds.iter().any(|(k, _)| *k == kind) {
                            kinds.push((kind, i));
                        }
                    }
                }
                let only: Vec<Kind> = kinds.iter().map(|(k, _)| *k).collect();
                match common_type(&only) {
                    Some(t) => t,
                    None => {
                        kinds.sort();
                        let (a, b) = (kinds[0], kinds[kinds.len() - 1]);
                        return Err(Error::plan(
                            "read_parquet",
                            format!(
                                "the partition folders give {key:?} values of more than one type: \
                                 {:?} ({}) in {} and {:?} ({}) in {}\n  hint: declare its type, \
                                 e.g. --dtype {key}=string (Rust: .with_dtype({key:?}, DataType::Utf8))",
                                raw(a.1).unwrap_or_default(),
                                a.0.name(),
                                files[a.1].display(),
                                raw(b.1).unwrap_or_default(),
                                b.0.name(),
                                files[b.1].display(),
                            ),
                        ));
                    }
                }
            }
        };
        for (i, vals) in out.values.iter_mut().enumerate() {
            let v = parse_value(raw(i), &t).ok_or_else(|| {
                Error::plan(
                    "read_parquet",
                    format!(
                        "{}: partition folder value {key}={:?} is not {t}",
                        files[i].display(),
                        raw(i).unwrap_or_default()
                    ),
                )
            })?;
            vals.push(v);
        }
        out.fields.push(Field::new(key.as_str(), t, true));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(paths: &[&str]) -> Vec<PathBuf> {
        paths.iter().map(|p| Path::new("/d").join(p)).collect()
    }

    #[test]
    fn keys_types_and_nulls() {
        let f = files(&[
            "year=2024/month=6/a.parquet",
            "year=2024/month=12/b.parquet",
            "year=__HIVE_DEFAULT_PARTITION__/month=7/c.parquet",
        ]);
        let h = columns(Path::new("/d"), &f, &[]).unwrap();
        assert_eq!(h.fields[0], Field::new("year", DataType::Int64, true));
        assert_eq!(h.fields[1], Field::new("month", DataType::Int64, true));
        assert_eq!(h.values[1][1], ScalarValue::Int64(Some(12)));
        assert_eq!(h.values[2][0], ScalarValue::Int64(None));
        let f = files(&["d=2024-01-02/a", "d=2024-01-03/b"]);
        let h = columns(Path::new("/d"), &f, &[]).unwrap();
        assert_eq!(h.fields[0].data_type(), &DataType::Date32);
        let f = files(&["x=1/a", "x=1.5/b", "s=a%3Ab/c"]);
        let e = columns(Path::new("/d"), &f, &[]).unwrap_err().to_string();
        assert!(e.contains("partition folders differ"), "{e}");
        let f = files(&["x=1/a", "x=1.5/b"]);
        let h = columns(Path::new("/d"), &f, &[]).unwrap();
        assert_eq!(h.values[1][0], ScalarValue::Float64(Some(1.5)));
        let h = columns(Path::new("/d"), &files(&["s=a%3Ab/c"]), &[]).unwrap();
        assert_eq!(h.values[0][0], ScalarValue::Utf8(Some("a:b".into())));
    }

    #[test]
    fn mixed_values_are_an_error_unless_declared() {
        let f = files(&["month=6/a.parquet", "month=June/b.parquet"]);
        let e = columns(Path::new("/d"), &f, &[]).unwrap_err().to_string();
        assert!(
            e.contains("\"month\" values of more than one type: \"6\" (an integer) in /d/month=6/a.parquet and \"June\" (text) in /d/month=June/b.parquet"),
            "{e}"
        );
        assert!(e.contains("--dtype month=string"), "{e}");
        let h = columns(Path::new("/d"), &f, &[("month".into(), DataType::Utf8)]).unwrap();
        assert_eq!(h.values[0][0], ScalarValue::Utf8(Some("6".into())));
        let e = columns(Path::new("/d"), &f, &[("month".into(), DataType::Int64)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "/d/month=June/b.parquet: partition folder value month=\"June\" is not Int64"
            ),
            "{e}"
        );
    }
}
