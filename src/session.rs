//! The entry point of the Rust API: a [`Session`] holds the settings every
//! computation shares (threads, scheduler mode, memory limit, spill folder, default
//! block size) and the thread pool, and opens data sources ([`Session::read`]
//! for any format).
//!
//! The memory limit defaults to half the machine's RAM
//! ([`DEFAULT_LIMIT_FRACTION`](crate::scheduler::DEFAULT_LIMIT_FRACTION)); the block
//! size, unless given, follows it: the smaller of 16 MiB and limit / threads / 10.
//!
//! ```no_run
//! use outcore::Session;
//! let session = Session::builder().with_threads(4).memory_limit(2_000_000_000).build()?;
//! let df = session.read_csv("data/timeseries/*.csv").load()?;
//! println!("{}", df.num_rows()?);
//! # Ok::<(), outcore::Error>(())
//! ```

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arrow::datatypes::DataType;

use outcore_storage::spill::SpillCache;

use crate::error::{Error, Result};
use crate::frame::read::{Format, ReadBuilder};
use crate::frame::DataFrame;
use crate::io::{CsvOptions, CsvSource};
use crate::scheduler::{Executor, HeldCache, MemoryPolicy, MemoryPool, Mode, Progress, RunContext};

/// Settings and the thread pool shared by every computation of a session.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("threads", &self.inner.threads)
            .field("mode", &self.inner.mode)
            .field("blocksize", &self.inner.blocksize)
            .field("memory", &self.inner.memory)
            .finish_non_exhaustive()
    }
}

struct SessionInner {
    threads: usize,
    mode: Mode,
    blocksize: u64,
    split_every: usize,
    memory: MemoryPolicy,
    /// The memory account every computation of the session draws on.
    account: Arc<MemoryPool>,
    cancel: Arc<AtomicBool>,
    pool: rayon::ThreadPool,
    /// Where `persist()` keeps partitions: made on first use, counted in the account.
    persisted: std::sync::OnceLock<Arc<SpillCache<crate::graph::Value>>>,
    /// CSV columns whose inferred type proved too narrow: (glob, column, wider type).
    widened: std::sync::Mutex<Vec<(String, String, DataType)>>,
    /// See [`SessionBuilder::with_sort_run_write_failure_after`].
    sort_run_write_allowance: Option<u64>,
    /// Told how each run goes (the command line's progress bar).
    progress: Option<Arc<dyn Progress>>,
}

/// Builds a [`Session`]; every setting has a default.
#[must_use]
#[derive(Clone)]
pub struct SessionBuilder {
    threads: Option<usize>,
    mode: Mode,
    blocksize: Option<u64>,
    split_every: usize,
    memory_limit: Option<u64>,
    /// Accept a limit below [`MIN_MEMORY_LIMIT`](crate::scheduler::MIN_MEMORY_LIMIT).
    tiny_limit: bool,
    spill_dir: Option<PathBuf>,
    cancel: Option<Arc<AtomicBool>>,
    /// Fault injection: sorted-run writes fail after this many bytes.
    sort_run_write_allowance: Option<u64>,
    progress: Option<Arc<dyn Progress>>,
    /// See [`SessionBuilder::watch_process_memory`].
    watch_process: bool,
}

impl std::fmt::Debug for SessionBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBuilder")
            .field("threads", &self.threads)
            .field("mode", &self.mode)
            .field("blocksize", &self.blocksize)
            .field("memory_limit", &self.memory_limit)
            .field("spill_dir", &self.spill_dir)
            .finish_non_exhaustive()
    }
}

impl Default for SessionBuilder {
    fn default() -> Self {
        SessionBuilder {
            threads: None,
            mode: Mode::Parallel,
            blocksize: None,
            split_every: 8,
            memory_limit: None,
            tiny_limit: false,
            spill_dir: None,
            cancel: None,
            sort_run_write_allowance: None,
            progress: None,
            watch_process: false,
        }
    }
}

impl SessionBuilder {
    /// Worker threads (default: all cores).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Sync (one task at a time on the calling thread, for debugging) or parallel.
    pub fn with_scheduler(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Default bytes per partition when reading files (default: the smaller of
    /// 16 MiB and memory limit / threads / 10).
    pub fn with_blocksize(mut self, bytes: u64) -> Self {
        self.blocksize = Some(bytes);
        self
    }

    /// Bytes a computation may hold in memory (default: half the machine's RAM; at
    /// least [`MIN_MEMORY_LIMIT`](crate::scheduler::MIN_MEMORY_LIMIT), 4 MiB).
    /// Past it, read tasks are held back and finished results are spilled to disk.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Counts in the memory account what the process holds beyond what its
    /// consumers reserve (the allocator's unreturned free pages, bookkeeping),
    /// measured every few milliseconds, so that the process stays near the limit
    /// as measured from outside (see [`MemoryPool::watch_process`]). For a
    /// session that has its process to itself, as the command line's does; off
    /// by default, since sessions sharing a process would count each other.
    pub fn watch_process_memory(mut self, on: bool) -> Self {
        self.watch_process = on;
        self
    }

    /// A memory limit below the minimum, for tests: tiny limits force the spill
    /// paths on a few kilobytes of data.
    #[doc(hidden)]
    pub fn tiny_memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self.tiny_limit = true;
        self
    }

    /// The folder under which each computation makes its spill and shuffle folders
    /// (default: the system's temporary folder). It is created if missing.
    pub fn with_spill_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spill_dir = Some(dir.into());
        self
    }

    /// A flag that, once set (e.g. by a Ctrl-C handler), stops the running
    /// computation with [`Error::Interrupted`] after removing its temporary files.
    pub fn with_cancel_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// An observer told how every run of the session goes: tasks done of total,
    /// bytes read, spilled and shuffled (the command line draws its progress bar
    /// from it). See [`Progress`] for the contract.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// How many partials one combine task of a tree reduction takes (default 8).
    pub fn with_split_every(mut self, n: usize) -> Self {
        self.split_every = n;
        self
    }

    /// Fault injection for tests: an external sort's run writes fail (as a full
    /// disk would) once `bytes` have been written in one computation.
    #[doc(hidden)]
    pub fn with_sort_run_write_failure_after(mut self, bytes: u64) -> Self {
        self.sort_run_write_allowance = Some(bytes);
        self
    }

    /// Checks the settings and starts the thread pool.
    pub fn build(self) -> Result<Session> {
        let threads = self.threads.unwrap_or_else(num_cpus::get);
        if threads == 0 {
            return Err(Error::plan("session", "threads must be at least 1"));
        }
        if self.blocksize == Some(0) {
            return Err(Error::plan("session", "blocksize must be at least 1 byte"));
        }
        let mut memory = MemoryPolicy::machine_default();
        if let Some(limit) = self.memory_limit {
            if limit == 0 {
                return Err(Error::plan(
                    "session",
                    "the memory limit must be at least 1 byte",
                ));
            }
            memory.limit = limit;
            if !self.tiny_limit {
                memory.validate()?;
            }
        }
        if let Some(dir) = self.spill_dir {
            memory.spill_dir = dir;
        }
        check_spill_dir(&memory.spill_dir)?;
        let blocksize = self
            .blocksize
            .unwrap_or_else(|| memory.default_blocksize(threads));
        if self.split_every < 2 {
            return Err(Error::plan("session", "split_every must be at least 2"));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("outcore-worker-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the thread pool: {e}")))?;
        let account = MemoryPool::new(memory.limit);
        account.watch_process(self.watch_process);
        Ok(Session {
            inner: Arc::new(SessionInner {
                threads,
                mode: self.mode,
                blocksize,
                split_every: self.split_every,
                account,
                memory,
                cancel: self.cancel.unwrap_or_default(),
                pool,
                persisted: std::sync::OnceLock::new(),
                widened: Default::default(),
                sort_run_write_allowance: self.sort_run_write_allowance,
                progress: self.progress,
            }),
        })
    }
}

impl Session {
    /// A builder with default settings.
    pub fn builder() -> SessionBuilder {
        SessionBuilder::default()
    }

    /// A session with default settings.
    pub fn new() -> Result<Session> {
        Session::builder().build()
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.inner.threads
    }

    /// Scheduler mode.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// Combine fan-in of tree reductions.
    pub fn split_every(&self) -> usize {
        self.inner.split_every
    }

    /// What radix-partitioned aggregation sizes its parts from.
    pub fn radix_sizing(&self) -> crate::agg::radix::Sizing {
        crate::agg::radix::Sizing {
            threads: self.inner.threads,
            memory_limit: self.inner.memory.limit,
        }
    }

    /// The memory limit in bytes.
    pub fn memory_limit(&self) -> u64 {
        self.inner.memory.limit
    }

    /// The folder under which spill and shuffle folders are made.
    pub fn spill_dir(&self) -> &std::path::Path {
        &self.inner.memory.spill_dir
    }

    /// The default bytes per partition when reading files.
    pub fn blocksize(&self) -> u64 {
        self.inner.blocksize
    }

    /// The executor that runs this session's graphs, under its memory limit.
    pub fn executor(&self) -> Executor<'_> {
        let e = Executor::new(self.inner.mode, &self.inner.pool)
            .with_account(
                self.inner.account.clone(),
                self.inner.memory.spill_dir.clone(),
                self.inner.blocksize,
            )
            .with_cancel(self.inner.cancel.clone());
        match &self.inner.progress {
            Some(p) => e.with_progress(p.clone()),
            None => e,
        }
    }

    /// The session's memory account.
    pub fn memory_pool(&self) -> &Arc<MemoryPool> {
        &self.inner.account
    }

    /// The session's memory policy (limit, spill folder, the sizes derived from it).
    pub fn memory_policy(&self) -> &MemoryPolicy {
        &self.inner.memory
    }

    /// A fresh context for one computation: its counters and, when it shuffles, its
    /// shuffle store, whose buffers and cache are reserved from the account.
    pub fn run_context(&self) -> Arc<RunContext> {
        let ctx = RunContext::new(&self.inner.memory, self.inner.account.clone());
        if let Some(bytes) = self.inner.sort_run_write_allowance {
            ctx.fail_sort_runs_after(bytes);
        }
        ctx
    }

    /// The cache persisted frames keep their partitions in (one per session; its
    /// resident partitions are counted in the account, which pages them to its
    /// folder in the spill folder when other consumers need the room).
    pub(crate) fn persist_cache(&self) -> Result<Arc<SpillCache<crate::graph::Value>>> {
        if let Some(c) = self.inner.persisted.get() {
            return Ok(c.clone());
        }
        let limit = self.inner.memory.limit;
        let cache = Arc::new(SpillCache::new(
            &self.inner.memory.spill_dir,
            usize::try_from(limit).unwrap_or(usize::MAX),
        )?);
        let stored = self.inner.persisted.get_or_init(|| cache.clone()).clone();
        if Arc::ptr_eq(&stored, &cache) {
            let held: Arc<dyn HeldCache> = cache;
            self.inner
                .account
                .register_cache("persisted", Arc::downgrade(&held), limit);
            self.inner.account.rebalance()?;
        }
        Ok(stored)
    }

    /// Starts reading `pattern` (a file, a glob or a folder), whatever it holds:
    /// CSV, JSON lines, Parquet from any writer (with Hive-style `key=value/`
    /// partition folders as columns), or a dataset folder written by `persist`
    /// (with its index and divisions). The format comes from the names and, when
    /// they say nothing, the first bytes; see [`Format::detect`].
    ///
    /// ```no_run
    /// # let session = outcore::Session::new()?;
    /// let flights = session.read("flights/").load()?;          // month=1/part-0.parquet, ...
    /// let late = flights.query("month == 6 and delay > 60")?;  // reads June's row groups only
    /// # Ok::<(), outcore::Error>(())
    /// ```
    pub fn read(&self, pattern: impl Into<String>) -> ReadBuilder {
        ReadBuilder::new(self.clone(), pattern.into())
    }

    /// Opens Parquet: a dataset folder (restoring the index and divisions that
    /// [`DataFrame::to_parquet`] recorded), a folder, a glob or a file.
    pub fn read_parquet(&self, path: impl AsRef<std::path::Path>) -> Result<DataFrame> {
        self.read(path.as_ref().to_string_lossy())
            .with_format(Format::Parquet)
            .load()
    }

    /// The session's thread pool.
    pub(crate) fn pool(&self) -> &rayon::ThreadPool {
        &self.inner.pool
    }

    /// Starts reading a CSV glob (a pattern, a folder, or one file).
    pub fn read_csv(&self, pattern: impl Into<String>) -> CsvReadBuilder {
        let pattern = pattern.into();
        let widened = self
            .inner
            .widened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(p, _, _)| *p == pattern)
            .map(|(_, c, t)| (c.clone(), t.clone()))
            .collect();
        CsvReadBuilder {
            session: self.clone(),
            pattern,
            options: CsvOptions {
                blocksize: self.inner.blocksize,
                widened,
                ..CsvOptions::default()
            },
        }
    }

    /// Runs `f` (which builds a query from `read_csv` and computes it); when a CSV
    /// column's inferred type proves too narrow ([`Error::Widen`]), notes on stderr
    /// the column, file and line and the wider type, remembers it for that glob, and
    /// runs `f` again, so the work decoded with the narrower type is redone. A column
    /// widens at most twice (int → float → string), so this ends.
    ///
    /// ```no_run
    /// # use outcore::Session;
    /// let session = Session::new()?;
    /// let answer = session.run_widening(|| session.read_csv("data/*.csv").load()?.compute())?;
    /// # Ok::<(), outcore::Error>(())
    /// ```
    pub fn run_widening<T>(&self, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let mut rounds = 0usize;
        loop {
            match f() {
                Err(e) => {
                    let Error::Widen(w) = e.root() else {
                        return Err(e);
                    };
                    rounds += 1;
                    if rounds > 256 {
                        return Err(e);
                    }
                    eprintln!(
                        "note: {}: column {:?} holds {:?}, which does not fit its inferred type {}; reading it as {} and running again",
                        w.at, w.column, w.found, w.from, w.to
                    );
                    self.note_widening(&w.pattern, &w.column, w.to.clone());
                }
                ok => return ok,
            }
        }
    }

    /// Remembers that column `column` of CSV glob `pattern` must be read as at least
    /// `to` (later [`Session::read_csv`] of the same glob infer it so).
    pub fn note_widening(&self, pattern: &str, column: &str, to: DataType) {
        let mut w = self.inner.widened.lock().unwrap_or_else(|p| p.into_inner());
        w.retain(|(p, c, _)| !(p == pattern && c == column));
        w.push((pattern.to_string(), column.to_string(), to));
    }
}

/// Creates `dir` if missing and checks a file can be written in it, so a bad spill
/// folder is reported before any work starts; removes the spill and shuffle folders
/// that killed runs left there (see [`outcore_storage::workdir`]).
fn check_spill_dir(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    tempfile::tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    outcore_storage::workdir::sweep(dir);
    Ok(())
}

/// Options for [`Session::read_csv`]; `load` opens the files.
#[must_use]
pub struct CsvReadBuilder {
    session: Session,
    pattern: String,
    options: CsvOptions,
}

impl CsvReadBuilder {
    /// Bytes per partition (down to a few bytes, for tests).
    pub fn with_blocksize(mut self, bytes: u64) -> Self {
        self.options.blocksize = bytes;
        self
    }

    /// Declares a column's type instead of inferring it.
    pub fn with_dtype(mut self, column: impl Into<String>, data_type: DataType) -> Self {
        self.options.dtypes.push((column.into(), data_type));
        self
    }

    /// Parses these columns as ISO-8601 timestamps.
    pub fn with_parse_dates<S: Into<String>>(
        mut self,
        columns: impl IntoIterator<Item = S>,
    ) -> Self {
        self.options
            .parse_dates
            .extend(columns.into_iter().map(Into::into));
        self
    }

    /// Parses `column` as timestamps written in a `strftime` format, e.g.
    /// `.with_date_format("when", "%d/%m/%Y %H:%M")` (pandas' `date_format`).
    pub fn with_date_format(
        mut self,
        column: impl Into<String>,
        format: impl Into<String>,
    ) -> Self {
        self.options
            .date_formats
            .push((column.into(), format.into()));
        self
    }

    /// Field separator (default: tab for `.tsv` files, else sniffed from the header
    /// and first lines among `,`, tab, `;` and `|`).
    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.options.delimiter = Some(delimiter);
        self
    }

    /// The longest line accepted (default 64 MiB); a quoted field's line breaks
    /// count within its line. A longer one is an error naming its file and line.
    pub fn with_max_line_bytes(mut self, bytes: u64) -> Self {
        self.options.max_line_bytes = bytes;
        self
    }

    /// Expands the glob, reads headers, infers the schema from samples of several
    /// files, and cuts blocks. Reads no other rows.
    pub fn load(self) -> Result<DataFrame> {
        let source = CsvSource::open(&self.pattern, &self.options)?;
        Ok(DataFrame::from_csv(self.session, Arc::new(source)))
    }
}
