//! Radix-partitioned aggregation (DuckDB's design), and the run-time choice between
//! it and one merge of all partials. Frame groupbys and the bag's keyed operations
//! (`foldby`, `frequencies`, `distinct`, `groupby`) both lower through [`lower`].
//!
//! ```text
//!   partition i ─chunk─► partial i, split by key hash into P parts ─► part (i, p)
//!                                                                        │ (held in the spill cache)
//!   finalize p  ◄── part (0, p), part (1, p), … part (N-1, p)  ◄─────────┘
//! ```
//!
//! Each key is hashed once, in its chunk task; the parts carry the hash and the key
//! in the grouper's own form, so a finalize task neither re-encodes nor rehashes,
//! and merges each of its keys once: no tree of merges over tables of many groups.
//!
//! **Choosing P at run time in a static graph.** The scheduler runs a graph fixed
//! before any data is read, but the number of groups is only known from the data.
//! So the graph has `S` slots (an upper bound, [`Sizing::slots`]), and the first
//! chunk task to finish measures its partial and fixes `P ≤ S` for the whole
//! aggregation ([`Decision`]): every chunk splits into the same `P` parts, and the
//! tasks of slots `P..S` carry empty values (a no-op each, under a microsecond).
//! When the partials are small in total (few groups), `P = 1`: one task merges all
//! of them, which for so little data is as fast as a tree and holds less. When
//! they are large, `P` is the estimated total over a target part size (a fraction
//! of one thread's share of the memory limit, so a finalize task's table fits in its
//! share), and at least two parts per thread so that every core merges.
//!
//! The estimate is the first partial's bytes times the number of chunks: partitions
//! are blocks of about the same size, and a partial only shrinks when the data has
//! fewer groups than rows, which the first block shows as well as any. Later chunks
//! size their hash tables from the groups per row measured so far.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use arrow::array::RecordBatch;

use super::AggregatePlan;
use crate::error::{Error, Result};
use crate::graph::{Graph, Key, Layer, Operator, Task, Value};
use crate::scheduler::{self, MemoryReservation, RunContext};

/// The most bytes of partials a part is sized for, however roomy the limit:
/// smaller tables merge faster in cache, and two finalize tasks at once hold
/// about eight times their parts. The first partial's measure undercounts when
/// a chunk's block comes in several streamed pieces (q10 at K=1e5 measured 333 MB
/// of partials for 896 MiB), so the parts come out a few times this size. On the
/// 1e7-row G1 files at the default limit, 8 MiB against 32 MiB: q10 at K=1e5
/// 4.0–4.5 s and 1.10 GB against 4.9–6.0 s and 1.52 GB; q2, q9 and the median q6
/// at K=1e5 as fast with 0.1–0.2 GB less (with two-key parts grouped by column
/// from [`PAIRS_BY_COLUMN_ROWS`](super::grouper::PAIRS_BY_COLUMN_ROWS) rows).
const MAX_PART_TARGET: u64 = 8 << 20;

/// The most slots (and so parts) one aggregation has.
pub const MAX_SLOTS: usize = 256;

/// What the choice of `P` depends on besides the data: the session's threads and
/// memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// Worker threads.
    pub threads: usize,
    /// The memory limit in bytes.
    pub memory_limit: u64,
}

impl Sizing {
    /// The slots of an aggregation over `chunks` partitions: enough for one part per
    /// chunk (a partial is at most a few times its block) and two per thread, at
    /// most [`MAX_SLOTS`]; a part past its target is merged in sub-parts.
    pub fn slots(&self, chunks: usize) -> usize {
        chunks.max(2 * self.threads).clamp(1, MAX_SLOTS)
    }

    /// Bytes of partials a part should hold: an eighth of one thread's share of the
    /// limit (a finalize task holds its part, its table, its answer and the sorted
    /// answer: about four times the part), at most [`MAX_PART_TARGET`].
    fn part_target_bytes(&self) -> u64 {
        (self.memory_limit / (8 * self.threads.max(1) as u64)).clamp(16 << 10, MAX_PART_TARGET)
    }

    /// The most bytes one running table ([`Folder`]) holds before it is taken
    /// out: a third of one thread's share of the limit, so that the tables of
    /// every worker hold at most a third of it, between 1 MiB and 1 GiB (a
    /// million groups of q3 take about 110 MB: they fit at a 1 GB limit).
    fn fold_table_bytes(&self) -> u64 {
        (self.memory_limit / (3 * self.threads.max(1) as u64)).clamp(1 << 20, 1 << 30)
    }

    /// Partials up to this many bytes in total are merged by one task.
    fn one_merge_bytes(&self) -> u64 {
        (self.memory_limit / 16).min(16 << 20)
    }

    /// The parts for partials of about `total_bytes` in all, given `slots`.
    pub fn parts(&self, total_bytes: u64, slots: usize) -> usize {
        if total_bytes <= self.one_merge_bytes() {
            return 1;
        }
        let by_size = total_bytes.div_ceil(self.part_target_bytes()) as usize;
        by_size.max(2 * self.threads).clamp(1, slots)
    }
}

/// The part of a key whose hash is `hash`, of `parts`: a multiply-shift on bits
/// 24..48, which neither the hash table's bucket index (the low bits) nor its tag
/// (the top seven) use, so the keys of one part still spread over a table.
#[inline]
pub fn part_of(hash: u64, parts: usize) -> usize {
    ((((hash >> 24) & 0xFF_FFFF) * parts as u64) >> 24) as usize
}

/// The choice of `P` for one run of one aggregation, made once by the first chunk
/// measured, and what the chunks measured so far.
pub struct Decision {
    sizing: Sizing,
    chunks: usize,
    slots: usize,
    parts: OnceLock<usize>,
    groups_seen: AtomicU64,
    rows_seen: AtomicU64,
    /// Bytes of the partials measured so far, and of the inputs they came from.
    partial_bytes: AtomicU64,
    input_bytes: AtomicU64,
    /// The running tables, when the aggregation folds chunks into them.
    folding: Option<Folding>,
    ctx: Arc<RunContext>,
}

/// The running tables of one aggregation that no chunk task is folding into now,
/// and what their folds measured (see [`Folder`]).
struct Folding {
    idle: Mutex<Vec<Running>>,
    /// Tables made so far.
    made: AtomicUsize,
    /// Rows folded into tables that already held groups, and the groups they added.
    rows: AtomicU64,
    added: AtomicU64,
    /// Tables taken out early in a row that held a single chunk's groups.
    single_flushes: AtomicUsize,
    /// Set once folds add nearly a group per row, or tables fill up with one
    /// chunk each: later chunks no longer fold.
    off: AtomicBool,
}

/// One running table and its reservation in the memory account.
struct Running {
    table: Box<dyn Folder>,
    reservation: Option<MemoryReservation>,
    /// Chunks folded in, their input bytes and rows, since the table was last taken.
    chunks: usize,
    input_bytes: u64,
    rows: u64,
}

impl Folding {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Running>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a fold of `rows` rows that added `added` groups to a table that
    /// held some: once folds have added nine groups in ten rows over a block's
    /// worth of rows, folding is turned off (the chunks hold distinct keys, and a
    /// table would only cost a second hash pass).
    fn measure(&self, rows: usize, added: usize) {
        let rows = self.rows.fetch_add(rows as u64, Ordering::Relaxed) + rows as u64;
        let added = self.added.fetch_add(added as u64, Ordering::Relaxed) + added as u64;
        if rows >= 1 << 16 && 10 * added >= 9 * rows {
            self.off.store(true, Ordering::Relaxed);
        }
    }

    /// Records a table taken out early after `chunks` chunks were folded in: once
    /// [`SINGLE_FLUSHES`] tables in a row were full with the groups of one chunk
    /// (a small limit, and chunks of distinct keys), folding is turned off. Such
    /// a table only holds one chunk's partial longer than the chunk would, and
    /// its rows never fold into a table that held groups, so [`Folding::measure`]
    /// never sees them.
    fn measure_flush(&self, chunks: usize) {
        if chunks > 1 {
            self.single_flushes.store(0, Ordering::Relaxed);
        } else if self.single_flushes.fetch_add(1, Ordering::Relaxed) + 1 >= SINGLE_FLUSHES {
            self.off.store(true, Ordering::Relaxed);
        }
    }
}

/// See [`Folding::measure_flush`].
const SINGLE_FLUSHES: usize = 4;

impl Decision {
    fn new(sizing: Sizing, chunks: usize, folds: bool, ctx: Arc<RunContext>) -> Arc<Decision> {
        Arc::new(Decision {
            sizing,
            chunks,
            slots: sizing.slots(chunks),
            parts: OnceLock::new(),
            groups_seen: AtomicU64::new(0),
            rows_seen: AtomicU64::new(0),
            partial_bytes: AtomicU64::new(0),
            input_bytes: AtomicU64::new(0),
            folding: folds.then(|| Folding {
                idle: Mutex::new(Vec::new()),
                made: AtomicUsize::new(0),
                rows: AtomicU64::new(0),
                added: AtomicU64::new(0),
                single_flushes: AtomicUsize::new(0),
                off: AtomicBool::new(false),
            }),
            ctx,
        })
    }

    /// The running tables, while chunks fold into them.
    fn folding(&self) -> Option<&Folding> {
        self.folding
            .as_ref()
            .filter(|f| !f.off.load(Ordering::Relaxed))
    }

    /// Groups a chunk of `rows` rows is expected to make, from the chunks measured
    /// so far (0 before any).
    pub fn expected_groups(&self, rows: usize) -> usize {
        let seen = self.rows_seen.load(Ordering::Relaxed);
        if seen == 0 {
            return 0;
        }
        let groups = self.groups_seen.load(Ordering::Relaxed);
        (rows as u128 * groups as u128 / seen as u128) as usize
    }

    /// Whether the chunks measured so far made nearly one group per row (at least
    /// three in four), so that a chunk's table would merge almost nothing: later
    /// chunks then store each row as a group of its own and leave the merging to
    /// the finalize tasks (DataFusion skips its partial aggregation the same way).
    pub fn rows_as_groups(&self) -> bool {
        let seen = self.rows_seen.load(Ordering::Relaxed);
        let groups = self.groups_seen.load(Ordering::Relaxed);
        seen >= 1024 && 4 * groups >= 3 * seen
    }

    /// The bytes of the partial of an input of `input_bytes`, from the chunks
    /// measured so far (the input's size before any).
    pub fn expected_partial_bytes(&self, input_bytes: u64) -> u64 {
        let seen = self.input_bytes.load(Ordering::Relaxed);
        if seen == 0 {
            return input_bytes;
        }
        let partial = self.partial_bytes.load(Ordering::Relaxed);
        (input_bytes as u128 * partial as u128 / seen as u128) as u64
    }

    /// Records a chunk's partial (`bytes`, `groups` from `rows` rows of an input of
    /// `input_bytes`) and returns the parts every chunk splits into: fixed by the
    /// first chunk to get here.
    fn record(&self, bytes: usize, groups: usize, rows: usize, input_bytes: usize) -> usize {
        self.measure(groups, rows);
        self.record_partial(bytes, input_bytes as u64, bytes as u64 * self.chunks as u64)
    }

    /// Records `groups` made from `rows` input rows.
    fn measure(&self, groups: usize, rows: usize) {
        self.groups_seen.fetch_add(groups as u64, Ordering::Relaxed);
        self.rows_seen.fetch_add(rows as u64, Ordering::Relaxed);
    }

    /// Records a partial of `bytes` from inputs of `input_bytes`, and returns the
    /// parts every partial splits into: fixed by the first partial, from
    /// `total_estimate`, its guess of the bytes of every partial together.
    fn record_partial(&self, bytes: usize, input_bytes: u64, total_estimate: u64) -> usize {
        self.partial_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.input_bytes.fetch_add(input_bytes, Ordering::Relaxed);
        *self.parts.get_or_init(|| {
            let p = self.sizing.parts(total_estimate, self.slots);
            self.ctx.record_radix_parts(p);
            p
        })
    }

    /// Takes `running`'s groups out as a partial split into the parts; the table
    /// starts afresh (its reservation shrinks with it). For the first partial's
    /// choice of the parts, `tables` is the number of partials of this size
    /// expected in all, and `alongside` the bytes of the tables taken out with
    /// this one (the drain knows them all: tables of unequal sizes are estimated
    /// by their sum, not by whichever is taken first).
    fn take_parts(
        &self,
        agg: &dyn RadixAggregation,
        running: &mut Running,
        tables: u64,
        alongside: u64,
    ) -> Result<Value> {
        let partial = running.table.take()?;
        let bytes = partial.size_bytes();
        // The partial is the task's now; the table keeps what it still holds.
        match &mut running.reservation {
            Some(r) => scheduler::hand_over(r, running.table.size_bytes() as u64, bytes as i64)?,
            None => scheduler::allocated(bytes as u64)?,
        }
        running.chunks = 0;
        running.rows = 0;
        let input_bytes = std::mem::take(&mut running.input_bytes);
        let total = (bytes as u64 * tables.max(1)).max(bytes as u64 + alongside);
        let parts = self.record_partial(bytes, input_bytes, total);
        Ok(Value::Pieces(agg.split(partial, parts)?))
    }

    /// Whether the answer is small enough to gather into one partition: the
    /// partials of every chunk, measured (every chunk has run before any finalize
    /// task), are below [`scheduler::gathered_answer_bytes`].
    fn gather_all(&self) -> bool {
        self.partial_bytes.load(Ordering::Relaxed)
            < scheduler::gathered_answer_bytes(self.sizing.memory_limit)
    }
}

/// A chunk task's partial and what it measured.
pub struct Chunked {
    /// The partial.
    pub partial: Value,
    /// Its groups.
    pub groups: usize,
    /// The input rows it came from.
    pub rows: usize,
}

/// A running table that folds the inputs of many chunk tasks, one after another
/// (DuckDB's thread-local pre-aggregation): a chunk task takes an idle table,
/// folds its input in and puts it back, so a worker keeps one table for all the
/// chunks it runs. When the data has fewer groups than rows across chunks (1e6
/// groups in 1e8 rows, where each block's 3e5 rows are nearly all distinct),
/// every row merges into the table once and only the tables are split into parts,
/// instead of every chunk's partial. A table is taken out early when it reaches
/// its share of the limit or the account refuses it room, and at the end by drain
/// tasks; folding is turned off for the rest of a run when folds add nearly a
/// group per row.
pub trait Folder: Send {
    /// Adds an input partition's rows; returns the groups they added.
    fn fold(&mut self, input: &Value) -> Result<usize>;
    /// Groups held.
    fn groups(&self) -> usize;
    /// Bytes held.
    fn size_bytes(&self) -> usize;
    /// Bytes held for the groups alone (no scratch), for the bytes per group.
    fn group_bytes(&self) -> usize;
    /// The groups as a partial, in the form [`RadixAggregation::split`] takes;
    /// the table starts afresh.
    fn take(&mut self) -> Result<Value>;
}

/// An aggregation that can run radix-partitioned: chunk, split by key hash,
/// finalize a part. Contract: `split` sends every key to the same part in every
/// chunk (by [`part_of`] of the key's hash, the one [`hashes`](Self::hashes)
/// gives); `finalize` gets part `p` of every chunk (in chunk order; empty parts
/// left out) and gives the answer for those keys; no key is in two parts.
pub trait RadixAggregation: Send + Sync {
    /// A short name for the graph's layers (`agg`, `foldby`).
    fn name(&self) -> &str;
    /// One input partition → its partial; `decision` sizes its table.
    fn chunk(&self, input: &Value, decision: &Decision) -> Result<Chunked>;
    /// A partial → `parts` parts (one value when `parts` is 1).
    fn split(&self, partial: Value, parts: usize) -> Result<Vec<Value>>;
    /// Part `p` of each chunk → the answer for its keys.
    fn finalize(&self, parts: &[&Value]) -> Result<Value>;
    /// About the bytes of the answer `finalize` makes of `parts` (their own bytes
    /// unless the aggregation knows better).
    fn answer_bytes(&self, parts: &[&Value]) -> u64 {
        parts.iter().map(|v| v.size_bytes() as u64).sum()
    }
    /// The hash of each group of a part, as `split` partitioned it.
    fn hashes(&self, part: &Value) -> Result<Vec<u64>>;
    /// The groups at positions `rows` of a part (a part of its own).
    fn take(&self, part: &Value, rows: &[u32]) -> Result<Value>;
    /// Answers of `finalize` for disjoint sets of keys → one answer, in the order
    /// `finalize` gives (by key, when it sorts).
    fn merge_answers(&self, answers: Vec<Value>) -> Result<Value>;
    /// The bytes [`merge_answers`](Self::merge_answers) holds beside `answers`
    /// (a whole copy unless the aggregation knows better).
    fn merge_bytes(&self, answers: &[Value]) -> u64 {
        answers.iter().map(|v| v.size_bytes() as u64).sum()
    }
    /// The answer with no groups.
    fn empty_answer(&self) -> Value;
    /// Whether a small answer is gathered into one partition (a frame's groupby,
    /// sorted by key as a whole); else each slot is a partition.
    fn gathers(&self) -> bool {
        false
    }
    /// Whether chunks fold into running tables ([`Folder`]: every state is of a
    /// fixed size per group), rather than each make its own partial.
    fn folds(&self) -> bool {
        false
    }
    /// A fresh running table, when [`folds`](Self::folds).
    fn folder(self: Arc<Self>) -> Result<Box<dyn Folder>> {
        Err(Error::Internal(format!(
            "{} has no running table",
            self.name()
        )))
    }
}

/// The sub-part of a key whose hash is `hash`, of `k` (at most [`MAX_SLOTS`]), when
/// a finalize task merges its part in pieces: bits 48..57, which neither
/// [`part_of`] nor the hash table's bucket index and tag use.
#[inline]
pub fn sub_part_of(hash: u64, k: usize) -> usize {
    ((((hash >> 48) & 0x1FF) * k as u64) >> 9) as usize
}

static LAYER_ID: AtomicUsize = AtomicUsize::new(0);

fn layer(op: &str) -> Arc<str> {
    format!("radix-{op}-{}", LAYER_ID.fetch_add(1, Ordering::Relaxed)).into()
}

/// An empty part (of a slot past `P`, or of a chunk with no rows for it).
fn empty() -> Value {
    Value::Pieces(Vec::new())
}

fn is_empty(v: &Value) -> bool {
    matches!(v, Value::Pieces(p) if p.is_empty())
}

struct ChunkOp {
    agg: Arc<dyn RadixAggregation>,
    decision: Arc<Decision>,
    name: String,
}

impl Operator for ChunkOp {
    fn name(&self) -> &str {
        &self.name
    }
    fn streaming(&self) -> crate::graph::Streaming {
        crate::graph::Streaming::Fold
    }
    /// The parts of several streamed batches' partials: part `p` of each, side by
    /// side in one partial (`finalize` merges equal keys wherever they are).
    fn merge(&self, values: Vec<Value>) -> Result<Value> {
        merge_parts(values)
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        let [input] = inputs else {
            return Err(Error::Internal(format!(
                "a radix chunk got {} inputs",
                inputs.len()
            )));
        };
        if let Some(folding) = self.decision.folding() {
            return self.fold(input, folding);
        }
        // The partial's table: about the input's size per row measured so far
        // (the input itself when nothing is measured yet), reserved before it grows.
        let table = self
            .decision
            .expected_partial_bytes(input.size_bytes() as u64);
        scheduler::reserve(&format!("{} hash table", self.agg.name()), table)?;
        let c = self.agg.chunk(input, &self.decision)?;
        let parts =
            self.decision
                .record(c.partial.size_bytes(), c.groups, c.rows, input.size_bytes());
        let own = Value::Pieces(self.agg.split(c.partial, parts)?);
        // Folding was turned off: the tables made before that would otherwise
        // hold their groups (and their share of the limit) until the drains, so
        // each later chunk takes one out with its own parts (after its own
        // partial has fixed the parts from the chunks' count, not the tables').
        let leftover = self.decision.folding.as_ref().and_then(|f| {
            let mut idle = f.lock();
            idle.pop()
                .map(|r| (r, f.made.load(Ordering::Relaxed) as u64))
        });
        let leftover = match leftover {
            Some((mut running, tables)) if running.table.groups() > 0 => {
                self.decision.ctx.record_fold_flush();
                Some(
                    self.decision
                        .take_parts(self.agg.as_ref(), &mut running, tables, 0)?,
                )
            }
            _ => None,
        };
        match leftover {
            Some(table) => merge_parts(vec![own, table]),
            None => Ok(own),
        }
    }
}

impl ChunkOp {
    /// Folds `input` into an idle running table (a new one when every table is in
    /// use). The table is first taken out, as this chunk's parts, when the rows'
    /// possible new groups would take it past its share of the limit or the
    /// account refuses them; else the chunk gives no parts.
    fn fold(&self, input: &Value, folding: &Folding) -> Result<Value> {
        let popped = folding.lock().pop();
        let mut running = match popped {
            Some(r) => r,
            None => {
                let table = self.agg.clone().folder()?;
                folding.made.fetch_add(1, Ordering::Relaxed);
                self.decision.ctx.record_fold_table();
                Running {
                    table,
                    reservation: None,
                    chunks: 0,
                    input_bytes: 0,
                    rows: 0,
                }
            }
        };
        let rows = input.num_rows();
        let before = running.table.groups();
        // Room for the groups the rows may add: a group's bytes so far (the
        // input's bytes per row before any, and at most four times them: a small
        // table's fixed overhead over its few groups says nothing of the next)
        // times the rows, as a share of new groups per row measured so far, and a
        // group id per row of scratch.
        let row_bytes = input.size_bytes() / rows.max(1);
        let per_group = if before > 0 {
            (running.table.group_bytes() / before).min(4 * row_bytes + 64)
        } else {
            row_bytes
        };
        // New groups per row: as folds into tables that held groups measured
        // them; before any, twice what this table's own groups per row say of
        // the rows' keys (`unseen_groups`); with no table, as the first folds
        // into empty tables did; before those, every row.
        let measured_rows = folding.rows.load(Ordering::Relaxed);
        let new_rows = if measured_rows > 0 {
            (rows as u128 * folding.added.load(Ordering::Relaxed) as u128 / measured_rows as u128)
                as usize
        } else if before > 0 && running.rows > 0 {
            (2 * unseen_groups(running.rows, before as u64, rows as u64)).min(rows as u64) as usize
        } else if self.decision.rows_seen.load(Ordering::Relaxed) > 0 {
            self.decision.expected_groups(rows)
        } else {
            rows
        };
        let growth = (new_rows.max(rows / 16) * per_group + 4 * rows) as u64;
        let name = format!("{} running table", self.agg.name());
        // Tables of this size to come in all, were every table taken out when
        // this full: the chunks over those folded into this one, or the tables.
        let tables = |folded: usize| {
            ((self.decision.chunks / folded.max(1)) as u64)
                .max(folding.made.load(Ordering::Relaxed) as u64)
        };
        // Takes the table out early, as this chunk's parts.
        let flush = |running: &mut Running| -> Result<Value> {
            self.decision.ctx.record_fold_flush();
            folding.measure_flush(running.chunks);
            let t = tables(running.chunks);
            self.decision.take_parts(self.agg.as_ref(), running, t, 0)
        };
        let mut out = None;
        if before > 0
            && running.table.size_bytes() as u64 + growth > self.decision.sizing.fold_table_bytes()
        {
            out = Some(flush(&mut running)?);
        }
        let mut reserved = growth;
        if !scheduler::try_reserve(growth)? {
            if out.is_none() && running.table.groups() > 0 {
                out = Some(flush(&mut running)?);
            }
            // The growth is an upper bound (every row a new group): past what the
            // account can grant, the table's measured size is counted after the
            // fold instead.
            reserved = growth.min(scheduler::reservable());
            scheduler::reserve(&name, reserved)?;
        }
        let before = running.table.groups();
        let added = running.table.fold(input)?;
        running.chunks += 1;
        running.input_bytes += input.size_bytes() as u64;
        running.rows += rows as u64;
        self.decision.measure(added, rows);
        if before > 0 {
            folding.measure(rows, added);
        }
        // The table's reservation follows its size; what the task reserved for it
        // goes back.
        let size = running.table.size_bytes() as u64;
        if running.reservation.is_none() {
            running.reservation = scheduler::outliving_reservation(&name);
        }
        match &mut running.reservation {
            Some(r) => scheduler::hand_over(r, size, -(reserved as i64))?,
            None => scheduler::release(reserved),
        }
        // One chunk of (nearly) distinct keys filled more than half of an empty
        // table: the next chunk's groups would not fit beside them, so the table
        // could only be taken out again after each chunk, merging nothing.
        // Folding is turned off, and the table is taken out now, as this chunk's
        // parts, instead of being held idle (a share of the limit no cache can
        // page out) until a later chunk takes it. q10 at 64 MB held two 8 MiB
        // tables through its first chunks this way.
        let cap = self.decision.sizing.fold_table_bytes();
        if before == 0 && rows >= 1024 && 10 * added >= 9 * rows && 2 * size > cap {
            folding.off.store(true, Ordering::Relaxed);
            if out.is_none() {
                out = Some(flush(&mut running)?);
            }
        }
        folding.lock().push(running);
        Ok(out.unwrap_or_else(|| Value::Pieces(Vec::new())))
    }
}

/// The groups `rows` more rows are expected to add to a table that made `groups`
/// groups of `seen` rows, were the keys drawn evenly from `d` values: `d` is
/// solved from `groups = d (1 - e^(-seen/d))`, and the new groups are the keys not
/// yet seen that the rows draw, `d e^(-seen/d) (1 - e^(-rows/d))`. A table whose
/// every row was a group of its own says nothing of `d`: every row is new then.
/// (q3's second fold: 1e5 keys, 190,000 rows seen; 16,000 new groups expected,
/// where the first fold's 85,000 groups per 190,000 rows said five times that.)
fn unseen_groups(seen: u64, groups: u64, rows: u64) -> u64 {
    let (n, g) = (seen as f64, groups as f64);
    if groups == 0 || g >= n * 0.999 {
        return rows;
    }
    let made = |d: f64| d * -(-n / d).exp_m1();
    // made(d) grows with d from made(g) < g towards n: bisect on a log scale.
    let (mut lo, mut hi) = (g, g);
    while made(hi) < g {
        hi *= 2.0;
    }
    for _ in 0..60 {
        let mid = (lo * hi).sqrt();
        if made(mid) < g {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let d = hi;
    let unseen = d * (-n / d).exp();
    (unseen * -(-(rows as f64) / d).exp_m1()).ceil() as u64
}

/// Concatenates part `p` of each of `values` (each the parts of one partial, or
/// none) into one part `p`.
fn merge_parts(values: Vec<Value>) -> Result<Value> {
    let mut slots: Vec<Vec<RecordBatch>> = Vec::new();
    for v in values {
        let Value::Pieces(parts) = v else {
            return Err(Error::Internal(format!(
                "a radix chunk gave {}, not parts",
                v.kind()
            )));
        };
        slots.resize_with(slots.len().max(parts.len()), Vec::new);
        for (slot, part) in parts.into_iter().enumerate() {
            if !is_empty(&part) {
                slots[slot].push(part.as_batch()?.clone());
            }
        }
    }
    let parts = slots
        .into_iter()
        .map(|batches| match batches.first() {
            None => Ok(empty()),
            Some(first) => Ok(Value::Batch(arrow::compute::concat_batches(
                &first.schema(),
                &batches,
            )?)),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Value::Pieces(parts))
}

/// After every chunk: takes the idle running tables out as parts (each drain
/// task takes tables until none is left, so the drains share them).
struct DrainOp {
    agg: Arc<dyn RadixAggregation>,
    decision: Arc<Decision>,
}

impl Operator for DrainOp {
    fn name(&self) -> &str {
        "radix-drain"
    }
    fn run(&self, _: &[Arc<Value>]) -> Result<Value> {
        let Some(folding) = &self.decision.folding else {
            return Ok(empty());
        };
        // Every idle table at once, so that the first taken out knows the others'
        // bytes.
        let mut idle: Vec<Running> = std::mem::take(&mut *folding.lock());
        idle.retain(|r| r.table.groups() > 0);
        let all: u64 = idle.iter().map(|r| r.table.size_bytes() as u64).sum();
        let tables = folding.made.load(Ordering::Relaxed) as u64;
        let mut values = Vec::new();
        for mut running in idle {
            let alongside = all - running.table.size_bytes() as u64;
            values.push(self.decision.take_parts(
                self.agg.as_ref(),
                &mut running,
                tables,
                alongside,
            )?);
        }
        merge_parts(values)
    }
}

struct PartOp {
    slot: usize,
    name: String,
}

impl Operator for PartOp {
    fn name(&self) -> &str {
        &self.name
    }
    /// A piece of its input, sharing its buffers.
    fn working_bytes_beyond(&self, _: u64) -> u64 {
        0
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        match inputs {
            [v] => match v.as_ref() {
                Value::Pieces(parts) => Ok(parts.get(self.slot).cloned().unwrap_or_else(empty)),
                other => Err(Error::Internal(format!(
                    "a radix chunk gave {}, not parts",
                    other.kind()
                ))),
            },
            _ => Err(Error::Internal(format!(
                "a radix part got {} inputs",
                inputs.len()
            ))),
        }
    }
}

/// A no-op after every part of one chunk: the first finalize task waits on it, so
/// the graph's order runs a chunk's part tasks right after the chunk, while its
/// partial is resident, instead of reading it back from the spill cache once per
/// slot.
struct ChunkDone;

impl Operator for ChunkDone {
    fn name(&self) -> &str {
        "radix-chunk-done"
    }
    /// Makes nothing of its input.
    fn working_bytes_beyond(&self, _: u64) -> u64 {
        0
    }
    fn run(&self, _: &[Arc<Value>]) -> Result<Value> {
        Ok(empty())
    }
}

struct FinalizeOp {
    agg: Arc<dyn RadixAggregation>,
    decision: Arc<Decision>,
    name: String,
}

/// A finalize task's working memory per byte of its parts, besides the answer,
/// in halves: the parts themselves, their keys decoded from the stored form, the
/// table and its key arenas, and the order that sorts the groups; reserved before
/// the table grows, so that the account pages results out first. It was 3 while
/// parts read back from the spill cache measured about 1.5 times their memory
/// (arrow counted their shared IPC body once per buffer); measured right, 3 let
/// q2 at K=1e5 reach 1.3x a 64 MB limit.
const FINALIZE_WORK_HALVES: u64 = 9;

/// A finalize task's working memory for parts of `bytes` in all, besides the
/// answer (see [`FINALIZE_WORK_HALVES`]).
pub fn finalize_work_bytes(bytes: u64) -> u64 {
    FINALIZE_WORK_HALVES * bytes / 2
}

impl FinalizeOp {
    /// Merges the parts whole if the account grants the work and the answer
    /// (the work [`FINALIZE_WORK_HALVES`] / 2 times the parts' bytes; the answer as the aggregation
    /// estimates it: a median's keeps a number of each group's list), else in
    /// sub-parts by more hash bits, one at a time, each with its own reservation,
    /// so the table never holds more than what fits; the sub-answers are merged
    /// in order.
    fn merge(&self, parts: &[&Value]) -> Result<Value> {
        if parts.is_empty() {
            return self.agg.finalize(&[]);
        }
        let bytes: u64 = parts.iter().map(|v| v.size_bytes() as u64).sum();
        let answer = self.agg.answer_bytes(parts).min(bytes);
        let work = finalize_work_bytes(bytes);
        let need = work + answer;
        let have = scheduler::task_reserved();
        if scheduler::try_reserve(need.saturating_sub(have))? {
            return self.agg.finalize(parts);
        }
        self.decision.ctx.record_radix_split();
        // What the task holds (its inputs' size) and what is free now, less room
        // for the answers (`answer` in all), is what one sub-part may take: its
        // rows taken out of the parts and its table, each about `bytes / k`.
        let budget = (have + scheduler::reservable().min(work + answer)).saturating_sub(answer);
        let k = work.div_ceil(budget.max(1)).clamp(2, MAX_SLOTS as u64) as usize;
        let hashes = parts
            .iter()
            .map(|p| self.agg.hashes(p))
            .collect::<Result<Vec<_>>>()?;
        // Each part's rows grouped by sub-part: `order[offsets[q]..offsets[q + 1]]`.
        let grouped: Vec<(Vec<u32>, Vec<usize>)> = hashes
            .iter()
            .map(|hs| {
                let mut offsets = vec![0usize; k + 1];
                for &h in hs {
                    offsets[sub_part_of(h, k) + 1] += 1;
                }
                for q in 0..k {
                    offsets[q + 1] += offsets[q];
                }
                let mut next = offsets.clone();
                let mut order = vec![0u32; hs.len()];
                for (i, &h) in hs.iter().enumerate() {
                    let q = sub_part_of(h, k);
                    order[next[q]] = i as u32;
                    next[q] += 1;
                }
                (order, offsets)
            })
            .collect();
        drop(hashes);
        // One sub-part at a time: reserved once (waiting for others to release if
        // need be), its memory reused by the next.
        let sub_work = (work / k as u64).saturating_sub(have);
        let operator = format!("{} finalize sub-part", self.agg.name());
        scheduler::reserve(&operator, sub_work)?;
        // The sub-answers, held until they are merged: waited for while other
        // tasks can release, so that two finalize tasks do not both exceed the
        // limit with them.
        scheduler::reserve_or_exceed(&operator, answer)?;
        let answer_reserved = answer;
        let mut made = 0u64;
        let mut answers = Vec::with_capacity(k);
        for q in 0..k {
            let subs = parts
                .iter()
                .zip(&grouped)
                .filter(|(_, (_, off))| off[q + 1] > off[q])
                .map(|(p, (order, off))| self.agg.take(p, &order[off[q]..off[q + 1]]))
                .collect::<Result<Vec<_>>>()?;
            if subs.is_empty() {
                continue;
            }
            let answer = self.agg.finalize(&subs.iter().collect::<Vec<_>>())?;
            drop(subs);
            let size = answer.size_bytes() as u64;
            // Beyond the estimate reserved: counted as it is made.
            scheduler::allocated((made + size).saturating_sub(answer_reserved.max(made)))?;
            made += size;
            answers.push(answer);
        }
        if answers.is_empty() {
            return self.agg.finalize(&[]);
        }
        // The sub-parts' tables are gone: their room goes back before the merge,
        // which copies the sub-answers into one answer, letting go of each
        // sub-answer's column once it is copied: what it holds beside them is
        // reserved before (results paged out first, other tasks waited for).
        scheduler::release(sub_work);
        scheduler::reserve_or_exceed(&operator, self.agg.merge_bytes(&answers))?;
        self.agg.merge_answers(answers)
    }
}

impl Operator for FinalizeOp {
    fn name(&self) -> &str {
        &self.name
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        let parts: Vec<&Value> = inputs
            .iter()
            .map(|v| v.as_ref())
            .filter(|v| !is_empty(v))
            .collect();
        let answer = self.merge(&parts)?;
        if !self.agg.gathers() {
            return Ok(answer);
        }
        // [own partition, for the gather]: one of them empty.
        Ok(Value::Pieces(if self.decision.gather_all() {
            vec![self.agg.empty_answer(), answer]
        } else {
            vec![answer, self.agg.empty_answer()]
        }))
    }
}

/// Piece `piece` of a finalize task's [own, for the gather] pair.
struct PieceOp {
    piece: usize,
}

fn piece(v: &Value, i: usize) -> Result<Value> {
    match v {
        Value::Pieces(p) if p.len() == 2 => Ok(p[i].clone()),
        other => Err(Error::Internal(format!(
            "a radix finalize task gave {}, not a pair",
            other.kind()
        ))),
    }
}

impl Operator for PieceOp {
    fn name(&self) -> &str {
        "radix-piece"
    }
    /// A piece of its input, sharing its buffers.
    fn working_bytes_beyond(&self, _: u64) -> u64 {
        0
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        // An own partition also waits on its slot's piece for the gather (see
        // `lower`), which it ignores.
        match inputs.first() {
            Some(v) => piece(v, self.piece),
            None => Err(Error::Internal("a radix piece got no inputs".into())),
        }
    }
}

/// The last partition of a gathering aggregation: every part's answer merged when
/// the answer is small, else its own slot's answer.
struct GatherOp {
    agg: Arc<dyn RadixAggregation>,
    decision: Arc<Decision>,
}

impl Operator for GatherOp {
    fn name(&self) -> &str {
        "radix-gather"
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        let Some((last, rest)) = inputs.split_last() else {
            return Err(Error::Internal("a radix gather got no inputs".into()));
        };
        if !self.decision.gather_all() {
            return piece(last, 0);
        }
        let mut answers: Vec<Value> = rest.iter().map(|v| v.as_ref().clone()).collect();
        answers.push(piece(last, 1)?);
        self.agg.merge_answers(answers)
    }
}

/// Adds a radix-partitioned aggregation over `inputs` (one chunk task each):
/// returns the keys of its `S` output partitions (see the module's doc). Without
/// [`RadixAggregation::gathers`], partition `p` holds the keys of part `p` (slots
/// past the `P` chosen at run time hold what `finalize` gives for no parts). With
/// it, a small answer (below [`scheduler::gathered_answer_bytes`]) is merged into
/// the last partition, the others empty; a larger one stays one partition per
/// part. The gather is last so that, when it does not gather, the partitions
/// before it stream out as their parts finish.
pub fn lower(
    graph: &mut Graph,
    inputs: &[Key],
    agg: Arc<dyn RadixAggregation>,
    sizing: Sizing,
    ctx: &Arc<RunContext>,
) -> Vec<Key> {
    let decision = Decision::new(sizing, inputs.len(), agg.folds(), ctx.clone());
    let slots = decision.slots;
    let name = agg.name().to_string();
    let chunk_layer = layer(&format!("{name}-chunk"));
    let chunk: Arc<dyn Operator> = Arc::new(ChunkOp {
        agg: agg.clone(),
        decision: decision.clone(),
        name: format!("{name}-radix-chunk"),
    });
    let chunks: Vec<Task> = inputs
        .iter()
        .enumerate()
        .map(|(i, k)| Task {
            key: Key::new(&chunk_layer, i),
            deps: vec![k.clone()],
            op: chunk.clone(),
        })
        .collect();
    let chunk_keys: Vec<Key> = chunks.iter().map(|t| t.key.clone()).collect();
    graph.add_layer(Layer {
        name: chunk_layer,
        tasks: chunks,
    });
    let (mut part_keys, mut done_keys) = add_parts(graph, &name, &chunk_keys, slots);
    if decision.folding.is_some() {
        // The running tables, taken out after every chunk (the drains wait on
        // the chunks' no-ops, not on the chunks, so no chunk's parts are held
        // for them), as `threads` more chunks' parts.
        let drain_layer = layer(&format!("{name}-drain"));
        let drain: Arc<dyn Operator> = Arc::new(DrainOp {
            agg: agg.clone(),
            decision: decision.clone(),
        });
        let drains: Vec<Task> = (0..sizing.threads.max(1))
            .map(|d| Task {
                key: Key::new(&drain_layer, d),
                deps: done_keys.clone(),
                op: drain.clone(),
            })
            .collect();
        let drain_keys: Vec<Key> = drains.iter().map(|t| t.key.clone()).collect();
        graph.add_layer(Layer {
            name: drain_layer,
            tasks: drains,
        });
        let (drain_parts, drain_dones) = add_parts(graph, &name, &drain_keys, slots);
        part_keys.extend(drain_parts);
        done_keys.extend(drain_dones);
    }
    let finalize_layer = layer(&format!("{name}-finalize"));
    let finalize: Arc<dyn Operator> = Arc::new(FinalizeOp {
        agg: agg.clone(),
        decision: decision.clone(),
        name: format!("{name}-radix-finalize"),
    });
    let finals: Vec<Task> = (0..slots)
        .map(|p| {
            // The first finalize task also waits on every chunk's no-op (see
            // `ChunkDone`), listed first so the order walks them first.
            let mut deps = if p == 0 {
                done_keys.clone()
            } else {
                Vec::new()
            };
            deps.extend(part_keys.iter().map(|parts| parts[p].clone()));
            Task {
                key: Key::new(&finalize_layer, p),
                deps,
                op: finalize.clone(),
            }
        })
        .collect();
    let final_keys: Vec<Key> = finals.iter().map(|t| t.key.clone()).collect();
    graph.add_layer(Layer {
        name: finalize_layer,
        tasks: finals,
    });
    if !agg.gathers() {
        return final_keys;
    }
    let (last, rest) = final_keys.split_last().expect("at least one slot");
    let gathered_layer = layer(&format!("{name}-to-gather"));
    let to_gather: Arc<dyn Operator> = Arc::new(PieceOp { piece: 1 });
    let gathered: Vec<Task> = rest
        .iter()
        .enumerate()
        .map(|(p, k)| Task {
            key: Key::new(&gathered_layer, p),
            deps: vec![k.clone()],
            op: to_gather.clone(),
        })
        .collect();
    let mut gather_deps: Vec<Key> = gathered.iter().map(|t| t.key.clone()).collect();
    gather_deps.push(last.clone());
    graph.add_layer(Layer {
        name: gathered_layer,
        tasks: gathered,
    });
    // Own partition `p` also waits on slot `p`'s piece for the gather, so the
    // order takes that piece right after the finalize task and its pair is let go
    // as soon as the partition is handed over (not when the gather runs).
    let own_layer = layer(&format!("{name}-own"));
    let own: Arc<dyn Operator> = Arc::new(PieceOp { piece: 0 });
    let owns: Vec<Task> = rest
        .iter()
        .enumerate()
        .map(|(p, k)| Task {
            key: Key::new(&own_layer, p),
            deps: vec![k.clone(), gather_deps[p].clone()],
            op: own.clone(),
        })
        .collect();
    let mut out: Vec<Key> = owns.iter().map(|t| t.key.clone()).collect();
    graph.add_layer(Layer {
        name: own_layer,
        tasks: owns,
    });
    let gather_layer = layer(&format!("{name}-gather"));
    let gather_key = Key::new(&gather_layer, 0);
    graph.add_layer(Layer {
        name: gather_layer,
        tasks: vec![Task {
            key: gather_key.clone(),
            deps: gather_deps,
            op: Arc::new(GatherOp { agg, decision }),
        }],
    });
    out.push(gather_key);
    out
}

/// Adds a part task per slot after each of `producers` (chunks, or drains of
/// the running tables), and a no-op after each producer's parts (see
/// [`ChunkDone`]): returns each producer's part keys, by slot, and the no-ops.
fn add_parts(
    graph: &mut Graph,
    name: &str,
    producers: &[Key],
    slots: usize,
) -> (Vec<Vec<Key>>, Vec<Key>) {
    let part_layer = layer(&format!("{name}-part"));
    let part_ops: Vec<Arc<dyn Operator>> = (0..slots)
        .map(|slot| {
            Arc::new(PartOp {
                slot,
                name: format!("{name}-radix-part"),
            }) as Arc<dyn Operator>
        })
        .collect();
    let mut parts = Vec::with_capacity(producers.len() * slots);
    for (i, c) in producers.iter().enumerate() {
        for (p, op) in part_ops.iter().enumerate() {
            parts.push(Task {
                key: Key::new(&part_layer, i * slots + p),
                deps: vec![c.clone()],
                op: op.clone(),
            });
        }
    }
    let part_keys: Vec<Vec<Key>> = parts
        .chunks(slots)
        .map(|c| c.iter().map(|t| t.key.clone()).collect())
        .collect();
    graph.add_layer(Layer {
        name: part_layer,
        tasks: parts,
    });
    let done_layer = layer(&format!("{name}-chunk-done"));
    let done_op: Arc<dyn Operator> = Arc::new(ChunkDone);
    let dones: Vec<Task> = part_keys
        .iter()
        .enumerate()
        .map(|(i, keys)| Task {
            key: Key::new(&done_layer, i),
            deps: keys.clone(),
            op: done_op.clone(),
        })
        .collect();
    let done_keys: Vec<Key> = dones.iter().map(|t| t.key.clone()).collect();
    graph.add_layer(Layer {
        name: done_layer,
        tasks: dones,
    });
    (part_keys, done_keys)
}

impl RadixAggregation for AggregatePlan {
    fn name(&self) -> &str {
        "agg"
    }

    fn chunk(&self, input: &Value, decision: &Decision) -> Result<Chunked> {
        let batch = input.as_batch()?;
        let rows = batch.num_rows();
        let partial = self.chunk_stored(
            batch,
            decision.expected_groups(rows),
            decision.rows_as_groups(),
        )?;
        Ok(Chunked {
            groups: partial.num_rows(),
            partial: Value::Batch(partial),
            rows,
        })
    }

    fn split(&self, partial: Value, parts: usize) -> Result<Vec<Value>> {
        let Value::Batch(b) = partial else {
            return Err(Error::Internal(format!(
                "an aggregation partial is {}",
                partial.kind()
            )));
        };
        Ok(self
            .split_stored(b, parts)?
            .into_iter()
            .map(|b| {
                if b.num_rows() == 0 {
                    empty()
                } else {
                    Value::Batch(b)
                }
            })
            .collect())
    }

    fn finalize(&self, parts: &[&Value]) -> Result<Value> {
        let batches = parts
            .iter()
            .map(|v| v.as_batch())
            .collect::<Result<Vec<&RecordBatch>>>()?;
        Ok(Value::Batch(self.finalize_stored(&batches)?))
    }

    fn hashes(&self, part: &Value) -> Result<Vec<u64>> {
        Ok(self.stored_hashes(part.as_batch()?)?.values().to_vec())
    }

    fn answer_bytes(&self, parts: &[&Value]) -> u64 {
        let batches: Vec<&RecordBatch> = parts.iter().filter_map(|v| v.as_batch().ok()).collect();
        self.answer_bytes_stored(&batches)
    }

    fn take(&self, part: &Value, rows: &[u32]) -> Result<Value> {
        let idx = arrow::array::UInt32Array::from(rows.to_vec());
        Ok(Value::Batch(arrow::compute::take_record_batch(
            part.as_batch()?,
            &idx,
        )?))
    }

    fn merge_answers(&self, answers: Vec<Value>) -> Result<Value> {
        let batches = answers
            .into_iter()
            .map(|v| match v {
                Value::Batch(b) => Ok(b),
                other => Err(Error::Internal(format!(
                    "an aggregation answer is {}",
                    other.kind()
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Value::Batch(self.gather(batches)?))
    }

    fn merge_bytes(&self, answers: &[Value]) -> u64 {
        let batches: Vec<RecordBatch> = answers
            .iter()
            .filter_map(|v| v.as_batch().ok().cloned())
            .collect();
        self.gather_bytes(&batches)
    }

    fn empty_answer(&self) -> Value {
        Value::Batch(RecordBatch::new_empty(self.output_schema.clone()))
    }

    fn gathers(&self) -> bool {
        true
    }

    /// Not for an unsorted answer: its groups come in order of first appearance,
    /// which needs the chunks merged in order.
    fn folds(&self) -> bool {
        self.sort && !self.keys.is_empty() && self.fixed_state_bytes().is_some()
    }

    fn folder(self: Arc<Self>) -> Result<Box<dyn Folder>> {
        match self.fold_table()? {
            Some(t) => Ok(Box::new(t)),
            None => Err(Error::Internal(
                "an aggregation without fixed-size states has no running table".into(),
            )),
        }
    }
}

impl Folder for super::FoldTable {
    fn fold(&mut self, input: &Value) -> Result<usize> {
        super::FoldTable::fold(self, input.as_batch()?)
    }
    fn groups(&self) -> usize {
        super::FoldTable::groups(self)
    }
    fn size_bytes(&self) -> usize {
        super::FoldTable::size_bytes(self)
    }
    fn group_bytes(&self) -> usize {
        super::FoldTable::group_bytes(self)
    }
    fn take(&mut self) -> Result<Value> {
        Ok(Value::Batch(super::FoldTable::take(self)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The estimate against keys drawn evenly (a fixed xorshift stream): the
    /// groups a second batch of rows really adds, counted.
    #[test]
    fn unseen_groups_follow_evenly_drawn_keys() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut draw = |d: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % d
        };
        for (d, seen, rows) in [
            (100_000, 190_000, 190_000),
            (1_000, 5_000, 500),
            (1 << 20, 60_000, 60_000),
        ] {
            let mut keys = std::collections::HashSet::new();
            for _ in 0..seen {
                keys.insert(draw(d));
            }
            let groups = keys.len() as u64;
            for _ in 0..rows {
                keys.insert(draw(d));
            }
            let added = keys.len() as u64 - groups;
            let expected = unseen_groups(seen, groups, rows);
            let off = expected.abs_diff(added) as f64 / (added.max(1) as f64);
            assert!(
                off < 0.1 || expected.abs_diff(added) < 20,
                "{d} {seen} {rows}: expected {expected}, added {added}"
            );
        }
        // Every row a group of its own: every row may be new.
        assert_eq!(unseen_groups(1000, 1000, 500), 500);
        assert_eq!(unseen_groups(1000, 0, 500), 500);
    }

    #[test]
    fn parts_follow_the_measured_total() {
        let s = Sizing {
            threads: 2,
            memory_limit: 8 << 30,
        };
        assert_eq!(s.slots(32), 32);
        assert_eq!(s.slots(1), 4);
        assert_eq!(s.slots(10_000), MAX_SLOTS);
        // Few groups: one merge.
        assert_eq!(s.parts(4 << 20, 32), 1);
        // 1e7 groups over 32 chunks (~900 MB of partials): 8 MiB parts, capped by
        // the slots.
        assert_eq!(s.parts(200 << 20, 32), 25);
        assert_eq!(s.parts(900 << 20, 32), 32);
        assert_eq!(s.parts(900 << 20, 256), 113);
        // Just past one merge: at least two parts per thread.
        assert_eq!(s.parts(20 << 20, 32), 4);
        // A tiny limit partitions even small totals.
        let tiny = Sizing {
            threads: 1,
            memory_limit: 64 << 10,
        };
        assert_eq!(tiny.parts(8 << 10, 8), 2);
    }

    /// The stored path (chunk, split into P parts, finalize each part, gather) gives
    /// the tree's answer for every P, over the three stored key forms, with null
    /// keys kept, and a holistic aggregation.
    #[test]
    fn the_answer_does_not_depend_on_the_parts() {
        use arrow::array::{Float64Array, Int64Array, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        let n = 500usize;
        let ids: Int64Array = (0..n)
            .map(|i| (i % 7 != 3).then_some((i * 7919 % 97) as i64))
            .collect();
        let names: StringArray = (0..n)
            .map(|i| (i % 11 != 5).then(|| format!("k{}", i * 31 % 13)))
            .collect();
        let xs: Float64Array = (0..n).map(|i| Some((i * 37 % 101) as f64 / 4.0)).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(ids), Arc::new(names), Arc::new(xs)],
        )
        .unwrap();
        let chunks: Vec<RecordBatch> = (0..5).map(|i| batch.slice(i * 100, 100)).collect();
        for keys in [vec!["id"], vec!["name"], vec!["name", "id"]] {
            let plan = AggregatePlan::new(
                &schema,
                keys.iter().map(|k| k.to_string()).collect(),
                vec![
                    super::super::sum("x"),
                    super::super::median("x"),
                    super::super::size(),
                ],
                true,
                true,
            )
            .unwrap();
            let partials: Vec<RecordBatch> =
                chunks.iter().map(|c| plan.chunk(c).unwrap()).collect();
            let expected = plan.finalize(&partials.iter().collect::<Vec<_>>()).unwrap();
            for (parts, rows_as_groups) in (1..=9).flat_map(|p| [(p, false), (p, true)]) {
                let split: Vec<Vec<RecordBatch>> = chunks
                    .iter()
                    .map(|c| {
                        let stored = plan.chunk_stored(c, 0, rows_as_groups).unwrap();
                        plan.split_stored(stored, parts).unwrap()
                    })
                    .collect();
                let answers: Vec<RecordBatch> = (0..parts)
                    .map(|p| {
                        let mine: Vec<&RecordBatch> = split.iter().map(|s| &s[p]).collect();
                        plan.finalize_stored(&mine).unwrap()
                    })
                    .collect();
                let got = plan.gather(answers).unwrap();
                assert_eq!(
                    got, expected,
                    "keys {keys:?}, {parts} parts, rows as groups {rows_as_groups}"
                );
            }
        }
    }

    #[test]
    fn every_hash_has_a_part_below_the_count() {
        for parts in [1, 2, 3, 7, 16, 256] {
            let mut seen = vec![0usize; parts];
            for k in 0..10_000i64 {
                let p = part_of(crate::agg::grouper::hash_i64(k), parts);
                assert!(p < parts);
                seen[p] += 1;
            }
            // Spread: no part gets more than twice its share.
            assert!(
                seen.iter().all(|&n| n <= 2 * 10_000 / parts + 8),
                "{seen:?}"
            );
        }
        assert_eq!(part_of(u64::MAX, 5), 4);
    }
}
