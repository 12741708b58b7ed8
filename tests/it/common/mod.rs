//! Shared helpers of the integration tests: a deterministic row generator, CSV
//! writers, a session builder, conversions from Arrow batches to plain cells, and
//! NAIVE reference implementations (groupby aggregations, value counts, filters)
//! over `Vec` rows that share no code with outcore.
#![allow(dead_code)]

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampNanosecondType};
use outcore::agg::{AggFunc, AggSpec};
use outcore::scheduler::Mode;
use outcore::{DataFrame, Session};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// 2000-01-01 00:00:00 UTC in nanoseconds since the epoch (946,684,800 s).
pub const TS_BASE_NS: i64 = 946_684_800 * 1_000_000_000;

/// Names of the string key; `Bob` matters to the filters, the non-ASCII ones to
/// byte-order sorting.
pub const NAMES: [&str; 8] = [
    "Alice", "Bob", "Charlie", "Dan", "Edith", "Frank", "Zoë", "Ōta",
];

/// Words of the string value column. `NA` is a real string in a text column (only
/// the empty field is null there).
pub const WORDS: [&str; 10] = [
    "apple", "banana", "cherry", "date", "elder", "fig", "grape", "kiwi", "lemon", "NA",
];

// ---------------------------------------------------------------------------------
// Cells and tables
// ---------------------------------------------------------------------------------

/// One value of a plain row. Ordered as pandas sorts group keys: nulls last.
#[derive(Debug, Clone)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Nanoseconds since the epoch.
    Ts(i64),
    /// Days since the epoch.
    Date(i64),
}

impl Cell {
    fn rank(&self) -> u8 {
        match self {
            Cell::Bool(_) => 0,
            Cell::Int(_) => 1,
            Cell::Float(_) => 2,
            Cell::Str(_) => 3,
            Cell::Ts(_) => 4,
            Cell::Date(_) => 5,
            Cell::Null => 6,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }

    /// The numeric value of an int or float cell.
    pub fn num(&self) -> Option<f64> {
        match self {
            Cell::Int(i) => Some(*i as f64),
            Cell::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn str(&self) -> Option<&str> {
        match self {
            Cell::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The text written into a CSV field (not quoted).
    pub fn to_field(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Bool(b) => b.to_string(),
            Cell::Int(i) => i.to_string(),
            // Generated floats are multiples of 1/4: two decimals are exact.
            Cell::Float(f) => format!("{f:.2}"),
            Cell::Str(s) => s.clone(),
            Cell::Ts(ns) => format_ts(*ns),
            Cell::Date(days) => {
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
                (epoch + chrono::TimeDelta::days(*days)).to_string()
            }
        }
    }
}

impl Ord for Cell {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Cell::Bool(a), Cell::Bool(b)) => a.cmp(b),
            (Cell::Int(a), Cell::Int(b)) => a.cmp(b),
            (Cell::Float(a), Cell::Float(b)) => a.total_cmp(b),
            (Cell::Str(a), Cell::Str(b)) => a.cmp(b),
            (Cell::Ts(a), Cell::Ts(b)) => a.cmp(b),
            (Cell::Date(a), Cell::Date(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Cell {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Cell {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Cell {}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Null => write!(f, "null"),
            Cell::Str(s) => write!(f, "{s:?}"),
            Cell::Float(x) => write!(f, "{x:?}"),
            other => write!(f, "{}", other.to_field()),
        }
    }
}

/// `2000-01-01 HH:MM:SS[.fffffffff]` for an instant on 2000-01-01 (the only day the
/// generator uses); written by hand, independent of outcore's parser.
pub fn format_ts(ns: i64) -> String {
    let since = ns - TS_BASE_NS;
    assert!(
        (0..86_400 * 1_000_000_000).contains(&since),
        "format_ts only knows 2000-01-01"
    );
    let secs = since / 1_000_000_000;
    let frac = since % 1_000_000_000;
    let mut s = format!(
        "2000-01-01 {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        s.push_str(&format!(".{frac:09}"));
    }
    s
}

/// Nanoseconds of `2000-01-01` plus `secs` seconds.
pub fn ts(secs: i64) -> i64 {
    TS_BASE_NS + secs * 1_000_000_000
}

/// Plain rows with named columns.
#[derive(Debug, Clone)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(columns: &[&str]) -> Table {
        Table {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn idx(&self, column: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == column)
            .unwrap_or_else(|| panic!("no column {column:?} in the reference table"))
    }

    /// Every value of `column`, in row order.
    pub fn column(&self, column: &str) -> Vec<Cell> {
        let i = self.idx(column);
        self.rows.iter().map(|r| r[i].clone()).collect()
    }

    /// A row's value by column name.
    pub fn get<'a>(&self, row: &'a [Cell], column: &str) -> &'a Cell {
        &row[self.idx(column)]
    }

    /// The rows where `pred` is true (three-valued: `None` is unknown, dropped).
    pub fn filter(&self, pred: impl Fn(&Table, &[Cell]) -> Option<bool>) -> Table {
        Table {
            columns: self.columns.clone(),
            rows: self
                .rows
                .iter()
                .filter(|r| pred(self, r) == Some(true))
                .cloned()
                .collect(),
        }
    }

    /// The header line and the rows `rows` as CSV text (`\n` line ends).
    pub fn csv_text(&self, rows: &[Vec<Cell>]) -> String {
        let mut out = self.columns.join(",");
        out.push('\n');
        for r in rows {
            let fields: Vec<String> = r.iter().map(|c| quote(&c.to_field())).collect();
            out.push_str(&fields.join(","));
            out.push('\n');
        }
        out
    }

    /// Writes the rows into `nfiles` files `part-000.csv`, ... of `dir`, split as
    /// evenly as possible and in order (so file order is row order).
    pub fn write_files(&self, dir: &Path, nfiles: usize) -> Vec<PathBuf> {
        let n = self.rows.len();
        let cuts: Vec<usize> = (0..=nfiles).map(|i| i * n / nfiles).collect();
        self.write_cut(dir, &cuts)
    }

    /// Writes rows `cuts[i]..cuts[i+1]` into file `i` (`cuts` starts at 0 and ends at
    /// the row count; equal neighbours make header-only files).
    pub fn write_cut(&self, dir: &Path, cuts: &[usize]) -> Vec<PathBuf> {
        assert_eq!(cuts[0], 0);
        assert_eq!(*cuts.last().unwrap(), self.rows.len());
        let mut paths = Vec::new();
        for (i, w) in cuts.windows(2).enumerate() {
            let path = dir.join(format!("part-{i:03}.csv"));
            std::fs::write(&path, self.csv_text(&self.rows[w[0]..w[1]])).unwrap();
            paths.push(path);
        }
        paths
    }
}

/// Quotes a CSV field when it needs it (doubling inner quotes).
pub fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

// ---------------------------------------------------------------------------------
// Generated data
// ---------------------------------------------------------------------------------

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct GenOpts {
    pub rows: usize,
    /// Probability that a key cell (name, id, flag, ts) is empty.
    pub key_nulls: f64,
    /// Probability that a value cell (x, v, s) is empty.
    pub value_nulls: f64,
    /// Distinct values of the integer key `id` (from -2 up).
    pub nkeys: i64,
}

impl GenOpts {
    pub fn new(rows: usize) -> GenOpts {
        GenOpts {
            rows,
            key_nulls: 0.0,
            value_nulls: 0.0,
            nkeys: 12,
        }
    }

    pub fn nulls(mut self, key_nulls: f64, value_nulls: f64) -> GenOpts {
        self.key_nulls = key_nulls;
        self.value_nulls = value_nulls;
        self
    }
}

/// The columns of [`gen_table`].
pub const GEN_COLUMNS: [&str; 8] = ["i", "name", "id", "flag", "ts", "x", "v", "s"];

/// Seeded rows with columns `i` (row number, never null), keys `name` (string),
/// `id` (int), `flag` (bool), `ts` (timestamp on 2000-01-01, 20 distinct seconds),
/// and values `x` (float, a multiple of 1/4 in [-100, 100]), `v` (int in
/// [-1000, 1000]), `s` (a word). Row 0 has no nulls, so inference always sees
/// every column's type.
pub fn gen_table(seed: u64, o: &GenOpts) -> Table {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut t = Table::new(&GEN_COLUMNS);
    for i in 0..o.rows {
        let maybe = |p: f64, rng: &mut Pcg64Mcg, c: Cell| -> Cell {
            if i > 0 && p > 0.0 && rng.random_bool(p) {
                Cell::Null
            } else {
                c
            }
        };
        let name = Cell::Str(NAMES[rng.random_range(0..NAMES.len())].to_string());
        let id = Cell::Int(rng.random_range(-2..o.nkeys - 2));
        let flag = Cell::Bool(rng.random_bool(0.5));
        let tsv = Cell::Ts(ts(rng.random_range(0..20) * 3));
        let x = Cell::Float(rng.random_range(-400i64..=400) as f64 / 4.0);
        let v = Cell::Int(rng.random_range(-1000i64..=1000));
        let s = Cell::Str(WORDS[rng.random_range(0..WORDS.len())].to_string());
        let row = vec![
            Cell::Int(i as i64),
            maybe(o.key_nulls, &mut rng, name),
            maybe(o.key_nulls, &mut rng, id),
            maybe(o.key_nulls, &mut rng, flag),
            maybe(o.key_nulls, &mut rng, tsv),
            maybe(o.value_nulls, &mut rng, x),
            maybe(o.value_nulls, &mut rng, v),
            maybe(o.value_nulls, &mut rng, s),
        ];
        t.rows.push(row);
    }
    t
}

/// A session with these settings (split_every 8).
pub fn session(threads: usize, mode: Mode, blocksize: u64) -> Session {
    session_split(threads, mode, blocksize, 8)
}

/// A session with these settings.
pub fn session_split(threads: usize, mode: Mode, blocksize: u64, split_every: usize) -> Session {
    Session::builder()
        .with_threads(threads)
        .with_scheduler(mode)
        .with_blocksize(blocksize)
        .with_split_every(split_every)
        .build()
        .expect("a valid session")
}

/// Opens `dir/*.csv` with `ts` parsed as timestamps (the generated table's layout).
pub fn load_gen(session: &Session, dir: &Path) -> DataFrame {
    session
        .read_csv(glob_of(dir))
        .with_parse_dates(["ts"])
        .load()
        .expect("the generated files load")
}

/// `dir/*.csv` as a string.
pub fn glob_of(dir: &Path) -> String {
    dir.join("*.csv").to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------
// Arrow → cells
// ---------------------------------------------------------------------------------

/// A column of a batch as cells (ints of any width as `Int`, timestamps as `Ts` in
/// nanoseconds).
pub fn array_cells(a: &dyn Array) -> Vec<Cell> {
    let n = a.len();
    let valid = |i: usize| a.is_valid(i);
    match a.data_type() {
        DataType::Null => vec![Cell::Null; n],
        t if t.is_integer() => {
            let c = cast(a, &DataType::Int64).unwrap();
            let p = c.as_primitive::<Int64Type>();
            (0..n)
                .map(|i| {
                    if valid(i) {
                        Cell::Int(p.value(i))
                    } else {
                        Cell::Null
                    }
                })
                .collect()
        }
        DataType::Float64 => {
            let p = a.as_primitive::<Float64Type>();
            (0..n)
                .map(|i| {
                    if valid(i) {
                        Cell::Float(p.value(i))
                    } else {
                        Cell::Null
                    }
                })
                .collect()
        }
        DataType::Utf8 => {
            let s = a.as_string::<i32>();
            (0..n)
                .map(|i| {
                    if valid(i) {
                        Cell::Str(s.value(i).to_string())
                    } else {
                        Cell::Null
                    }
                })
                .collect()
        }
        DataType::Boolean => {
            let b = a.as_boolean();
            (0..n)
                .map(|i| {
                    if valid(i) {
                        Cell::Bool(b.value(i))
                    } else {
                        Cell::Null
                    }
                })
                .collect()
        }
        DataType::Timestamp(TimeUnit::Nanosecond, None) => {
            let p = a.as_primitive::<TimestampNanosecondType>();
            (0..n)
                .map(|i| {
                    if valid(i) {
                        Cell::Ts(p.value(i))
                    } else {
                        Cell::Null
                    }
                })
                .collect()
        }
        DataType::Date32 => {
            let p = a.as_primitive::<arrow::datatypes::Date32Type>();
            (0..n)
                .map(|i| {
                    if valid(i) {
                        Cell::Date(p.value(i) as i64)
                    } else {
                        Cell::Null
                    }
                })
                .collect()
        }
        other => panic!("array_cells: unexpected type {other}"),
    }
}

/// Column `name` of `batch` as cells.
pub fn cells(batch: &RecordBatch, name: &str) -> Vec<Cell> {
    let a = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name:?} in {:?}", batch.schema()));
    array_cells(a.as_ref())
}

/// Every row of `batch` as cells.
pub fn batch_rows(batch: &RecordBatch) -> Vec<Vec<Cell>> {
    let cols: Vec<Vec<Cell>> = batch
        .columns()
        .iter()
        .map(|a| array_cells(a.as_ref()))
        .collect();
    (0..batch.num_rows())
        .map(|r| cols.iter().map(|c| c[r].clone()).collect())
        .collect()
}

// ---------------------------------------------------------------------------------
// Comparisons
// ---------------------------------------------------------------------------------

/// Relative tolerance 1e-9 (absolute 1e-9 below magnitude 1).
pub fn close(a: f64, b: f64) -> bool {
    if a == b {
        return true;
    }
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Equal cells, numbers (int or float) equal within [`close`].
pub fn cell_matches(got: &Cell, expected: &Cell) -> bool {
    match (got, expected) {
        (Cell::Int(a), Cell::Int(b)) => a == b,
        (a, b) if a.num().is_some() && b.num().is_some() => {
            close(a.num().unwrap(), b.num().unwrap())
        }
        (a, b) => a == b,
    }
}

/// Asserts two columns of cells match, naming the first difference.
pub fn assert_cells(got: &[Cell], expected: &[Cell], what: &str) {
    assert_eq!(
        got.len(),
        expected.len(),
        "{what}: {} values, expected {}",
        got.len(),
        expected.len()
    );
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(cell_matches(g, e), "{what}: row {i}: got {g}, expected {e}");
    }
}

// ---------------------------------------------------------------------------------
// Naive reference implementations
// ---------------------------------------------------------------------------------

/// Row indexes of each group, in file order, groups sorted by key (nulls last, as
/// pandas). Rows with any null key are dropped unless `keep_null_keys`.
pub fn ref_groups(
    t: &Table,
    keys: &[&str],
    keep_null_keys: bool,
) -> BTreeMap<Vec<Cell>, Vec<usize>> {
    let idx: Vec<usize> = keys.iter().map(|k| t.idx(k)).collect();
    let mut groups: BTreeMap<Vec<Cell>, Vec<usize>> = BTreeMap::new();
    for (r, row) in t.rows.iter().enumerate() {
        let key: Vec<Cell> = idx.iter().map(|&i| row[i].clone()).collect();
        if !keep_null_keys && key.iter().any(Cell::is_null) {
            continue;
        }
        groups.entry(key).or_default().push(r);
    }
    groups
}

/// `func(column)` over rows `rows` of `t`, by the textbook definitions: sum (0 for
/// no values), count (non-null), size (rows), mean, min, max, var and std (ddof 1,
/// null below two values), first and last (non-null, in row order), nunique.
pub fn ref_agg(t: &Table, rows: &[usize], func: &str, column: Option<&str>) -> Cell {
    if func == "size" {
        return Cell::Int(rows.len() as i64);
    }
    let c = t.idx(column.expect("a column"));
    let values: Vec<&Cell> = rows
        .iter()
        .map(|&r| &t.rows[r][c])
        .filter(|v| !v.is_null())
        .collect();
    let nums = || -> Vec<f64> {
        values
            .iter()
            .map(|v| v.num().expect("a numeric column"))
            .collect()
    };
    let n = values.len();
    match func {
        "count" => Cell::Int(n as i64),
        "sum" => {
            if values.iter().all(|v| matches!(v, Cell::Int(_))) {
                Cell::Int(
                    values
                        .iter()
                        .map(|v| match v {
                            Cell::Int(i) => *i,
                            _ => unreachable!(),
                        })
                        .sum(),
                )
            } else {
                Cell::Float(nums().iter().sum())
            }
        }
        "mean" => {
            if n == 0 {
                Cell::Null
            } else {
                Cell::Float(nums().iter().sum::<f64>() / n as f64)
            }
        }
        "var" | "std" => {
            if n < 2 {
                return Cell::Null;
            }
            let xs = nums();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
            Cell::Float(if func == "var" { var } else { var.sqrt() })
        }
        "min" => values.iter().min().map_or(Cell::Null, |v| (*v).clone()),
        "max" => values.iter().max().map_or(Cell::Null, |v| (*v).clone()),
        "first" => values.first().map_or(Cell::Null, |v| (*v).clone()),
        "last" => values.last().map_or(Cell::Null, |v| (*v).clone()),
        "nunique" => {
            let mut distinct: Vec<&Cell> = values.clone();
            distinct.sort();
            distinct.dedup();
            Cell::Int(distinct.len() as i64)
        }
        other => panic!("ref_agg: unknown function {other}"),
    }
}

/// An aggregation to test: function name and column (`None` for size).
pub type Agg = (&'static str, Option<&'static str>);

/// The outcore spec of an [`Agg`].
pub fn spec(a: &Agg) -> AggSpec {
    match a {
        ("size", None) => outcore::agg::size(),
        (f, Some(c)) => AggSpec::new(AggFunc::from_name(f).expect("known function"), *c),
        other => panic!("bad agg {other:?}"),
    }
}

/// The output column name outcore gives an [`Agg`].
pub fn alias(a: &Agg) -> String {
    match a {
        ("size", None) => "size".to_string(),
        (f, Some(c)) => format!("{f}({c})"),
        other => panic!("bad agg {other:?}"),
    }
}

pub fn specs(aggs: &[Agg]) -> Vec<AggSpec> {
    aggs.iter().map(spec).collect()
}

/// Every function over the float `x`, the int `v` and the string `s` (the ones
/// that apply to strings), plus size.
pub fn all_aggs() -> Vec<Agg> {
    let mut out: Vec<Agg> = vec![("size", None)];
    for f in [
        "sum", "count", "mean", "min", "max", "var", "std", "first", "last", "nunique",
    ] {
        out.push((f, Some("x")));
        out.push((f, Some("v")));
    }
    for f in ["count", "min", "max", "first", "last", "nunique"] {
        out.push((f, Some("s")));
    }
    out
}

/// Asserts that `batch` (a groupby's answer) equals the naive reference: the same
/// groups in the same (sorted) order, and every aggregation's values.
pub fn check_groupby(
    batch: &RecordBatch,
    t: &Table,
    keys: &[&str],
    aggs: &[Agg],
    keep_null_keys: bool,
    ctx: &str,
) {
    let groups = ref_groups(t, keys, keep_null_keys);
    let mut got_keys: Vec<Vec<Cell>> = vec![Vec::new(); batch.num_rows()];
    for k in keys {
        for (r, c) in cells(batch, k).into_iter().enumerate() {
            got_keys[r].push(c);
        }
    }
    let expected_keys: Vec<Vec<Cell>> = groups.keys().cloned().collect();
    let mut got_sorted = got_keys.clone();
    got_sorted.sort();
    got_sorted.dedup();
    assert_eq!(
        got_sorted.len(),
        got_keys.len(),
        "{ctx}: a group appears twice"
    );
    assert_eq!(
        got_sorted, expected_keys,
        "{ctx}: the set of groups by {keys:?} differs from the reference"
    );
    assert_eq!(
        got_keys, expected_keys,
        "{ctx}: groups by {keys:?} are not sorted by key (nulls last, as pandas)"
    );
    for a in aggs {
        let name = alias(a);
        let expected: Vec<Cell> = groups
            .values()
            .map(|rows| ref_agg(t, rows, a.0, a.1))
            .collect();
        assert_cells(
            &cells(batch, &name),
            &expected,
            &format!("{ctx}: {name} by {keys:?}"),
        );
    }
}

/// pandas' `value_counts`: (value, count), most frequent first, ties by value,
/// nulls left out.
pub fn ref_value_counts(t: &Table, column: &str) -> Vec<(Cell, i64)> {
    let mut counts: BTreeMap<Cell, i64> = BTreeMap::new();
    for c in t.column(column) {
        if !c.is_null() {
            *counts.entry(c).or_default() += 1;
        }
    }
    let mut out: Vec<(Cell, i64)> = counts.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

// Three-valued logic for reference predicates: `None` is SQL's unknown.

pub fn and3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

pub fn or3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

pub fn not3(a: Option<bool>) -> Option<bool> {
    a.map(|b| !b)
}

/// `cell <op> value` for a numeric cell; unknown when the cell is null.
pub fn cmp_num(c: &Cell, f: impl Fn(f64) -> bool) -> Option<bool> {
    c.num().map(f)
}

// ------------------------------------------------------------ the binary

/// Runs the `outcore` binary with `args` and returns what it did.
pub fn outcore(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_outcore"))
        .args(args)
        .output()
        .expect("the outcore binary runs")
}

/// Runs `outcore args`, asserts it succeeded, returns stdout.
pub fn ok(args: &[&str]) -> String {
    ok_both(args).0
}

/// Runs `outcore args`, asserts it succeeded, returns stdout and stderr.
pub fn ok_both(args: &[&str]) -> (String, String) {
    let out = outcore(args);
    assert!(
        out.status.success(),
        "outcore {args:?} failed with {:?}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}
