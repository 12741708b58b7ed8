//! `Bag`: a lazy, partitioned, unordered collection of JSON records, as `dask.bag`.
//!
//! A bag is a cheap handle: where its partitions come from (a JSON-lines or text
//! glob cut into blocks, a sequence in memory, or the graph of an earlier
//! all-to-all operation) and the element-wise steps (`map`, `filter`, `flatten`,
//! `pluck`, `map_partitions`) still to apply. The steps are applied record by record
//! inside the task that makes the records, so a `read_json → filter → pluck →
//! count` chain never copies a record and a bad record is reported with its file
//! and line.
//!
//! ```text
//!   read_json(glob) ─► blocks ─► task i: parse lines ─► steps per record ─► partition i
//!        reductions (count, sum, mean, var, min, max, topk, fold): per partition,
//!            then a tree of combines (split_every) ─► one value
//!        keyed (frequencies, distinct, foldby, groupby): per-partition partials,
//!            hash-partitioned through the shuffle store ─► split_out partitions
//! ```
//!
//! ```
//! use outcore::bag::key_path;
//! use serde_json::json;
//!
//! let session = outcore::Session::builder().with_threads(2).build()?;
//! let people = session.from_sequence(
//!     vec![
//!         json!({"name": "Ann", "age": 41, "tx": [{"amount": 2.5}, {"amount": 1.5}]}),
//!         json!({"name": "Bob", "age": 25, "tx": []}),
//!         json!({"name": "Ann", "age": 33, "tx": [{"amount": 4.0}]}),
//!     ],
//!     2,
//! )?;
//! assert_eq!(people.query("age > 30")?.count()?, 2);
//! assert_eq!(people.pluck("tx")?.flatten().pluck("amount")?.mean()?, 8.0 / 3.0);
//! let mut names = people.pluck("name")?.frequencies().compute()?;
//! names.sort_by_key(|p| p[0].to_string());
//! assert_eq!(names, vec![json!(["Ann", 2]), json!(["Bob", 1])]);
//! let groups = people.groupby(key_path("name")?).compute()?;
//! assert_eq!(groups.len(), 2);
//! # Ok::<(), outcore::Error>(())
//! ```
//!
//! Defaults follow Dask's bag: `var`/`std` take `ddof` and Dask's default is 0
//! ([`Bag::var`] with `0` gives the population variance). Keyed operations spread
//! their result over `ceil(npartitions / split_every)` partitions (at least 1), or
//! over [`Bag::with_split_out`] of them, so many distinct keys are never gathered
//! into one task.

mod extract;
mod filter;
mod frame;
mod keyed;
mod path;
mod project;
mod read;
mod reduce;
mod scan;
mod write;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value as J;

pub use filter::RecordExpr;
pub use frame::JsonFrameReadBuilder;
pub use path::FieldPath;
pub use read::{BagReadBuilder, OnError};
pub use write::write_json_lines;

use crate::error::{Error, Result};
use crate::graph::{FnOperator, Graph, Key, Layer, Task, Value};
use crate::scheduler::{RunContext, RunStats};
use crate::session::Session;

/// A function of one record.
pub type RecordFn = Arc<dyn Fn(J) -> Result<J> + Send + Sync>;
/// A predicate on one record.
pub type PredicateFn = Arc<dyn Fn(&J) -> Result<bool> + Send + Sync>;
/// A function of a whole partition.
pub type PartitionFn = Arc<dyn Fn(Vec<J>) -> Result<Vec<J>> + Send + Sync>;
/// The key of a record, for `foldby`, `groupby`, `topk`.
pub type KeyFn = Arc<dyn Fn(&J) -> Result<J> + Send + Sync>;

/// One element-wise step still to apply.
#[derive(Clone)]
pub(crate) enum Stage {
    Map(RecordFn),
    /// `pluck`: kept apart from `Map` so the reader can extract the value while
    /// parsing ([`extract`]).
    Pluck(Arc<Pluck>),
    Filter(PredicateFn),
    /// Each record replaced by null (what `count` needs): kept apart from `Map` so a
    /// shared read need not copy the record first.
    Discard,
    /// Each record reduced to the needed parts (`select_paths`); `None` keeps it.
    Select(Option<Arc<project::Need>>),
    Flatten,
    /// Each record replaced by the list of the values at some paths
    /// ([`Bag::values_at`]); kept apart so the reader can walk to them while parsing.
    Values(Arc<Values>),
    Partition(PartitionFn),
}

/// A `values_at` step: its paths, and the walk that takes them while parsing
/// (`None`: paths the walk does not take).
pub(crate) struct Values {
    pub paths: Vec<FieldPath>,
    pub walk: Option<extract::ValuesWalk>,
}

impl Values {
    fn apply(&self, r: &J) -> J {
        J::Array(
            self.paths
                .iter()
                .map(|p| p.get(r).map_or(J::Null, std::borrow::Cow::into_owned))
                .collect(),
        )
    }
}

fn parse_paths<S: AsRef<str>>(paths: &[S]) -> Result<Vec<FieldPath>> {
    paths.iter().map(|p| FieldPath::parse(p.as_ref())).collect()
}

/// Pushes what `stages` make of record `r` onto `out`.
pub(crate) fn push_record(stages: &[Stage], r: J, out: &mut Vec<J>) -> Result<()> {
    let Some((first, rest)) = stages.split_first() else {
        out.push(r);
        return Ok(());
    };
    match first {
        Stage::Map(f) => push_record(rest, f(r)?, out),
        Stage::Pluck(p) => push_record(rest, p.apply(r)?, out),
        Stage::Discard => push_record(rest, J::Null, out),
        Stage::Select(need) => match need {
            Some(n) => push_record(rest, project::prune(r, n), out),
            None => push_record(rest, r, out),
        },
        Stage::Filter(p) => {
            if p(&r)? {
                push_record(rest, r, out)
            } else {
                Ok(())
            }
        }
        Stage::Values(v) => push_record(rest, v.apply(&r), out),
        Stage::Flatten => match r {
            J::Array(items) => {
                for item in items {
                    push_record(rest, item, out)?;
                }
                Ok(())
            }
            other => Err(Error::plan(
                "flatten",
                format!(
                    "expected a list, found {}",
                    crate::io::json::line_head(other.to_string().as_bytes())
                ),
            )),
        },
        Stage::Partition(_) => Err(Error::Internal(
            "a partition step reached the per-record pipeline".into(),
        )),
    }
}

/// A `pluck` step: the value at `path`, or `default`, or an error.
pub(crate) struct Pluck {
    pub path: FieldPath,
    pub default: Option<J>,
}

impl Pluck {
    fn apply(&self, r: J) -> Result<J> {
        match self.path.get(&r) {
            Some(v) => Ok(v.into_owned()),
            None => self.default.clone().ok_or_else(|| {
                Error::plan(
                    "pluck",
                    format!(
                        "path {:?} is missing in a record\n  hint: give a default (Rust: .pluck_or(path, default); CLI: --default VALUE)",
                        self.path.as_str(),
                    ),
                )
            }),
        }
    }
}

/// The per-record prefix of `stages` (up to the first partition step) and the rest.
pub(crate) fn split_stages(stages: &[Stage]) -> (&[Stage], &[Stage]) {
    let at = stages
        .iter()
        .position(|s| matches!(s, Stage::Partition(_)))
        .unwrap_or(stages.len());
    stages.split_at(at)
}

/// Applies the steps after the per-record prefix: partition functions, and the
/// per-record runs between them.
pub(crate) fn apply_rest(stages: &[Stage], mut records: Vec<J>) -> Result<Vec<J>> {
    let mut rest = stages;
    while let Some((Stage::Partition(f), after)) = rest.split_first() {
        records = f(records)?;
        let (prefix, tail) = split_stages(after);
        if !prefix.is_empty() {
            let mut out = Vec::with_capacity(records.len());
            for r in records {
                push_record(prefix, r, &mut out)?;
            }
            records = out;
        }
        rest = tail;
    }
    Ok(records)
}

/// Applies every step to a partition.
pub(crate) fn apply_all(stages: &[Stage], records: Vec<J>) -> Result<Vec<J>> {
    let (prefix, rest) = split_stages(stages);
    let records = if prefix.is_empty() {
        records
    } else {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            push_record(prefix, r, &mut out)?;
        }
        out
    };
    apply_rest(rest, records)
}

/// What one computation of a bag shares while its graph is built and run.
pub(crate) struct LowerCtx {
    pub run: Arc<RunContext>,
    /// Lines skipped as bad JSON (`OnError::Skip`).
    pub skipped: Arc<AtomicU64>,
    /// When several bags are computed together ([`compute_all`]): the reads they
    /// share.
    pub(crate) shared: Option<Arc<read::SharedReads>>,
}

/// What [`per_partition`] runs: the partition number and its input.
pub(crate) type TaskFn = Arc<dyn Fn(usize, &Value) -> Result<Value> + Send + Sync>;

type LowerFn = Arc<dyn Fn(&mut Graph, &LowerCtx) -> Vec<Key> + Send + Sync>;

#[derive(Clone)]
enum Source {
    Read(Arc<read::ReadSpec>),
    Sequence(Arc<Vec<Vec<J>>>),
    Graph(LowerFn),
}

/// What a bag computation did: the run's counters and the lines skipped as bad JSON.
#[derive(Debug, Clone, Default)]
pub struct BagStats {
    /// Bytes read, spilled, shuffled; tasks run.
    pub run: RunStats,
    /// Lines that were not valid JSON and were skipped (with [`OnError::Skip`]).
    pub skipped_lines: u64,
}

/// A lazy, partitioned bag of JSON records.
#[derive(Clone)]
pub struct Bag {
    session: Session,
    npartitions: usize,
    source: Source,
    stages: Vec<Stage>,
    split_out: Option<usize>,
    /// Which raw fields the steps read, so the reader can parse only those.
    fields: project::Fields,
}

impl std::fmt::Debug for Bag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bag(npartitions={})", self.npartitions)
    }
}

pub(crate) fn records(v: &Value) -> Result<&Vec<J>> {
    match v {
        Value::Records(r) => Ok(r),
        other => Err(Error::Internal(format!(
            "a bag partition is {}",
            other.kind()
        ))),
    }
}

static LAYER_ID: AtomicU64 = AtomicU64::new(0);

pub(crate) fn layer_name(op: &str) -> Arc<str> {
    format!("bag-{op}-{}", LAYER_ID.fetch_add(1, Ordering::Relaxed)).into()
}

/// Adds one layer with a task per input key, each running `f` on its input.
pub(crate) fn per_partition(graph: &mut Graph, op: &str, inputs: &[Key], f: TaskFn) -> Vec<Key> {
    let deps = inputs.iter().map(|k| vec![k.clone()]).collect();
    crate::frame::plan::task_layer(graph, op, deps, &|i| {
        let f = f.clone();
        FnOperator::new(op.to_string(), move |inputs: &[Arc<Value>]| {
            f(i, inputs[0].as_ref())
        })
    })
}

impl Session {
    /// A bag of the lines of a text glob (without their line ends); gzip and zstd
    /// files are one partition each, others are cut into blocks at line ends.
    pub fn read_text(&self, pattern: impl Into<String>) -> BagReadBuilder {
        BagReadBuilder::new(self.clone(), pattern.into(), read::ReadKind::Text)
    }

    /// A bag of the records of a JSON-lines glob, one per non-blank line.
    pub fn read_json(&self, pattern: impl Into<String>) -> BagReadBuilder {
        BagReadBuilder::new(self.clone(), pattern.into(), read::ReadKind::Json)
    }

    /// A frame of a JSON-lines glob: Arrow batches decoded by arrow's JSON reader,
    /// the schema inferred from samples of several files (nested objects become
    /// struct columns).
    pub fn read_json_frame(&self, pattern: impl Into<String>) -> JsonFrameReadBuilder {
        JsonFrameReadBuilder::new(self.clone(), pattern.into())
    }

    /// A bag of `values` cut into `npartitions` partitions of nearly equal length.
    pub fn from_sequence(&self, values: Vec<J>, npartitions: usize) -> Result<Bag> {
        if npartitions == 0 {
            return Err(Error::plan(
                "from_sequence",
                "npartitions must be at least 1",
            ));
        }
        crate::graph::check_partitions(
            "from_sequence",
            &format!("npartitions {npartitions}"),
            npartitions,
            "ask for fewer",
        )?;
        let n = values.len();
        let (base, extra) = (n / npartitions, n % npartitions);
        let mut parts = Vec::with_capacity(npartitions);
        let mut it = values.into_iter();
        for p in 0..npartitions {
            let len = base + usize::from(p < extra);
            parts.push(it.by_ref().take(len).collect());
        }
        Ok(Bag {
            session: self.clone(),
            npartitions,
            source: Source::Sequence(Arc::new(parts)),
            stages: Vec::new(),
            split_out: None,
            fields: project::Fields::default(),
        })
    }
}

impl Bag {
    pub(crate) fn from_graph(session: Session, npartitions: usize, lower: LowerFn) -> Bag {
        Bag {
            session,
            npartitions,
            source: Source::Graph(lower),
            stages: Vec::new(),
            split_out: None,
            fields: project::Fields::default(),
        }
    }

    /// Adds a step after which the steps can read `fields` of the raw records.
    fn with_step(&self, stage: Stage, fields: project::Fields) -> Bag {
        let mut b = self.clone();
        b.stages.push(stage);
        b.fields = fields;
        b
    }

    /// Adds a closure step, which may read anything.
    fn with_stage(&self, stage: Stage) -> Bag {
        self.with_step(stage, self.fields.opaque())
    }

    /// Each record (an object) reduced to these top-level fields; see
    /// [`select_paths`](Self::select_paths).
    pub fn select_fields<S: AsRef<str>>(&self, fields: &[S]) -> Result<Bag> {
        self.select_paths(fields)
    }

    /// Each record reduced to the parts at these paths (`name`,
    /// `transactions[].amount`: objects keep only the fields on the paths, lists
    /// their elements). Reading files, only these parts are parsed.
    pub fn select_paths<S: AsRef<str>>(&self, paths: &[S]) -> Result<Bag> {
        let paths = parse_paths(paths)?;
        let fields = self.fields.select(&paths);
        let need = project::Fields::default()
            .select(&paths)
            .projection()
            .map(Arc::new);
        Ok(self.with_step(Stage::Select(need), fields))
    }

    /// Each record replaced by the list of the values at `paths` (null where a
    /// path is missing; a path with `[]` gives a list, as
    /// [`FieldPath::get`]): `values_at(&["name", "transactions[].amount"])` makes
    /// `{"name": "Ann", "transactions": [{"amount": 5}, {"amount": 7}]}` into
    /// `["Ann", [5, 7]]`. Reading files, the values are taken while parsing, and
    /// nothing else of the record is built.
    pub fn values_at<S: AsRef<str>>(&self, paths: &[S]) -> Result<Bag> {
        let paths = parse_paths(paths)?;
        let fields = self.fields.select(&paths);
        let walk = extract::ValuesWalk::plan(&paths);
        Ok(self.with_step(Stage::Values(Arc::new(Values { paths, walk })), fields))
    }

    /// The same number of records, each replaced by null: what `count` needs, so
    /// the reader parses no more than the filters read.
    pub(crate) fn discard(&self) -> Bag {
        self.with_step(Stage::Discard, self.fields.discard())
    }

    /// Lines skipped as bad JSON by every computation so far that read this bag's
    /// files (with [`OnError::Skip`]); 0 for bags not read from files.
    pub fn skipped_lines(&self) -> u64 {
        match &self.source {
            Source::Read(spec) => spec.skipped_total.load(Ordering::Relaxed),
            _ => 0,
        }
    }

    /// Number of partitions.
    pub fn npartitions(&self) -> usize {
        self.npartitions
    }

    /// The session this bag belongs to.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Applies `f` to every record.
    pub fn map(&self, f: impl Fn(J) -> Result<J> + Send + Sync + 'static) -> Bag {
        self.with_stage(Stage::Map(Arc::new(f)))
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(&self, f: impl Fn(&J) -> Result<bool> + Send + Sync + 'static) -> Bag {
        self.with_stage(Stage::Filter(Arc::new(f)))
    }

    /// Keeps the records for which the expression string is true:
    /// `bag.query("age > 30 and address.city == 'Oslo'")`. Names are field paths; a
    /// missing field is null, and null is not true.
    pub fn query(&self, expr: &str) -> Result<Bag> {
        let e = RecordExpr::parse(expr)?;
        let fields = self.fields.read(&e.paths());
        Ok(self.with_step(Stage::Filter(Arc::new(move |r| Ok(e.test(r)))), fields))
    }

    /// Each record (a list) replaced by its elements; a record that is not a list is
    /// an error.
    pub fn flatten(&self) -> Bag {
        self.with_step(Stage::Flatten, self.fields.flatten())
    }

    /// Each record replaced by the value at `path` (`address.city`,
    /// `transactions[].amount`); a record without it is an error naming the path and
    /// the record's file and line. See [`pluck_or`](Self::pluck_or).
    pub fn pluck(&self, path: &str) -> Result<Bag> {
        self.pluck_with(path, None)
    }

    /// As [`pluck`](Self::pluck), with `default` for records without the path.
    pub fn pluck_or(&self, path: &str, default: J) -> Result<Bag> {
        self.pluck_with(path, Some(default))
    }

    fn pluck_with(&self, path: &str, default: Option<J>) -> Result<Bag> {
        let p = FieldPath::parse(path)?;
        let fields = self.fields.pluck(&p);
        let step = Stage::Pluck(Arc::new(Pluck { path: p, default }));
        Ok(self.with_step(step, fields))
    }

    /// Applies `f` to every partition (a list of records).
    pub fn map_partitions(
        &self,
        f: impl Fn(Vec<J>) -> Result<Vec<J>> + Send + Sync + 'static,
    ) -> Bag {
        self.with_stage(Stage::Partition(Arc::new(f)))
    }

    /// The next keyed operation (`frequencies`, `distinct`, `foldby`, `groupby`)
    /// spreads its result over `n` partitions through the shuffle store (`n = 1`:
    /// one partition by a reduction tree), overriding the default: parts chosen at
    /// run time from the measured partials (see [`crate::agg::radix`]).
    pub fn with_split_out(&self, n: usize) -> Result<Bag> {
        if n == 0 {
            return Err(Error::plan("split_out", "split_out must be at least 1"));
        }
        crate::graph::check_partitions(
            "split_out",
            &format!("split_out {n}"),
            n,
            "use a smaller split_out",
        )?;
        let mut b = self.clone();
        b.split_out = Some(n);
        Ok(b)
    }

    /// Adds the bag's layers to `graph`; returns a key per partition.
    pub(crate) fn lower(&self, graph: &mut Graph, ctx: &LowerCtx) -> Vec<Key> {
        let stages: Arc<[Stage]> = self.stages.clone().into();
        match &self.source {
            Source::Read(spec) => {
                let only = self.fields.projection().map(Arc::new);
                read::lower(spec, stages, only, graph, ctx)
            }
            Source::Sequence(parts) => {
                let name = layer_name("from-sequence");
                let tasks = (0..parts.len())
                    .map(|i| {
                        let (parts, stages) = (parts.clone(), stages.clone());
                        Task {
                            key: Key::new(&name, i),
                            deps: vec![],
                            op: FnOperator::new("from-sequence", move |_: &[Arc<Value>]| {
                                Ok(Value::Records(apply_all(&stages, parts[i].clone())?))
                            }),
                        }
                    })
                    .collect::<Vec<_>>();
                let keys = tasks.iter().map(|t| t.key.clone()).collect();
                graph.add_layer(Layer { name, tasks });
                keys
            }
            Source::Graph(f) => {
                let keys = f(graph, ctx);
                if stages.is_empty() {
                    return keys;
                }
                per_partition(
                    graph,
                    "map",
                    &keys,
                    Arc::new(move |_, v| {
                        Ok(Value::Records(apply_all(&stages, records(v)?.clone())?))
                    }),
                )
            }
        }
    }

    /// Builds the graph with `build`, runs the keys it returns (those in `parts`),
    /// and hands each output to `sink` in order.
    pub(crate) fn run_graph(
        &self,
        build: &dyn Fn(&mut Graph, &LowerCtx) -> Vec<Key>,
        parts: Option<std::ops::Range<usize>>,
        sink: &(dyn Fn(usize, &Value) -> Result<()> + Sync),
    ) -> Result<BagStats> {
        let ctx = LowerCtx {
            run: self.session.run_context(),
            skipped: Arc::new(AtomicU64::new(0)),
            shared: None,
        };
        let mut graph = Graph::new();
        let keys = build(&mut graph, &ctx);
        let range = parts.unwrap_or(0..keys.len());
        let start = range.start;
        let exec = graph.compile(&keys[range])?;
        drop(graph);
        let mut stats = self
            .session
            .executor()
            .run_streaming(&exec, &|i, v| sink(start + i, v.as_ref()))?;
        let shuffled = ctx.run.shuffle_totals();
        stats.bytes_read = ctx.run.bytes_read();
        stats.shuffled_bytes = shuffled.bytes_shuffled;
        stats.shuffle_held_bytes = shuffled.bytes_held;
        stats.shuffle_disk_bytes = shuffled.bytes_on_disk;
        stats.radix_parts = ctx.run.radix_parts() as u64;
        stats.sort_runs_spilled = ctx.run.sort_runs();
        stats.radix_splits = ctx.run.radix_splits();
        (stats.fold_tables, stats.fold_flushes) = ctx.run.fold_tables();
        Ok(BagStats {
            run: stats,
            skipped_lines: ctx.skipped.load(Ordering::Relaxed),
        })
    }

    /// Runs the bag and hands each partition to `sink` with its number, in order; a
    /// partition is freed once `sink` returns.
    pub fn for_each_partition(
        &self,
        sink: &(dyn Fn(usize, &[J]) -> Result<()> + Sync),
    ) -> Result<BagStats> {
        self.run_graph(&|g, c| self.lower(g, c), None, &|i, v| sink(i, records(v)?))
    }

    fn compute_some(&self, parts: Option<std::ops::Range<usize>>) -> Result<(Vec<J>, BagStats)> {
        let got: Mutex<Vec<J>> = Mutex::new(Vec::new());
        let stats = self.run_graph(&|g, c| self.lower(g, c), parts, &|_, v| {
            got.lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(records(v)?.iter().cloned());
            Ok(())
        })?;
        Ok((got.into_inner().unwrap_or_else(|p| p.into_inner()), stats))
    }

    /// Runs the bag and gathers every record, partition by partition.
    pub fn compute(&self) -> Result<Vec<J>> {
        Ok(self.compute_some(None)?.0)
    }

    /// [`compute`](Self::compute), and what the run did.
    pub fn compute_with_stats(&self) -> Result<(Vec<J>, BagStats)> {
        self.compute_some(None)
    }

    /// The first `n` records. Computes the first partition, then more (doubling)
    /// while the records are too few.
    pub fn take(&self, n: usize) -> Result<Vec<J>> {
        let (mut got, mut next, mut step) = (Vec::new(), 0usize, 1usize);
        while got.len() < n && next < self.npartitions {
            let end = (next + step).min(self.npartitions);
            got.extend(self.compute_some(Some(next..end))?.0);
            next = end;
            step *= 2;
        }
        got.truncate(n);
        Ok(got)
    }
}

/// Computes several bags in one graph, as Dask's `dask.compute(a, b, c)`: bags
/// read from the same JSON-lines files (derived from one [`Session::read_json`])
/// share one read, each line parsed once for all of them, so three questions about
/// a folder of records cost one pass over its bytes. Returns each bag's records, in
/// the order of `bags`, and what the run did. Lazy reductions
/// ([`Bag::count_bag`], [`Bag::mean_bag`], ...) are one-record bags, so counts and
/// means join keyed results (`frequencies`, `foldby`) in one computation.
///
/// Memory: the shared read hands each bag only what its own steps make of a block
/// (a count's placeholders, a pluck's values), never the parsed records; those are
/// dropped line by line. The bags must belong to one session.
pub fn compute_all(bags: &[&Bag]) -> Result<(Vec<Vec<J>>, BagStats)> {
    let Some(first) = bags.first() else {
        return Ok((Vec::new(), BagStats::default()));
    };
    let session = &first.session;
    let shared = Arc::new(read::SharedReads::default());
    let ctx = LowerCtx {
        run: session.run_context(),
        skipped: Arc::new(AtomicU64::new(0)),
        shared: Some(shared.clone()),
    };
    let mut graph = Graph::new();
    // Each bag's keys, and where they start in the list of outputs.
    let mut keys = Vec::new();
    let mut owner = Vec::new();
    for (b, bag) in bags.iter().enumerate() {
        let ks = bag.lower(&mut graph, &ctx);
        owner.extend(std::iter::repeat_n(b, ks.len()));
        keys.extend(ks);
    }
    shared.finish(&mut graph, &ctx);
    let exec = graph.compile(&keys)?;
    drop(graph);
    // Outputs arrive in order: bag by bag, partition by partition.
    let got: Vec<Mutex<Vec<J>>> = bags.iter().map(|_| Mutex::new(Vec::new())).collect();
    let mut stats = session.executor().run_streaming(&exec, &|i, v| {
        got[owner[i]]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(records(v.as_ref())?.iter().cloned());
        Ok(())
    })?;
    let shuffled = ctx.run.shuffle_totals();
    stats.bytes_read = ctx.run.bytes_read();
    stats.shuffled_bytes = shuffled.bytes_shuffled;
    stats.shuffle_held_bytes = shuffled.bytes_held;
    stats.shuffle_disk_bytes = shuffled.bytes_on_disk;
    stats.radix_parts = ctx.run.radix_parts() as u64;
    let out = got
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect();
    Ok((
        out,
        BagStats {
            run: stats,
            skipped_lines: ctx.skipped.load(Ordering::Relaxed),
        },
    ))
}

/// A key function reading `path` (null when missing).
pub fn key_path(path: &str) -> Result<KeyFn> {
    let p = FieldPath::parse(path)?;
    Ok(Arc::new(move |r: &J| {
        Ok(p.get(r).map_or(J::Null, std::borrow::Cow::into_owned))
    }))
}
