//! The entry point of the Rust API: a [`Session`] holds the settings every
//! computation shares (threads, scheduler mode, default block size) and the thread
//! pool, and opens data sources.
//!
//! ```no_run
//! use outcore::Session;
//! let session = Session::builder().with_threads(4).build()?;
//! let df = session.read_csv("data/timeseries/*.csv").load()?;
//! println!("{}", df.num_rows()?);
//! # Ok::<(), outcore::Error>(())
//! ```

use std::sync::Arc;

use arrow::datatypes::DataType;

use crate::error::{Error, Result};
use crate::frame::DataFrame;
use crate::io::{CsvOptions, CsvSource};
use crate::scheduler::Mode;

/// Settings and the thread pool shared by every computation of a session.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    threads: usize,
    mode: Mode,
    blocksize: u64,
    split_every: usize,
    pool: rayon::ThreadPool,
}

/// Builds a [`Session`]; every setting has a default.
#[must_use]
#[derive(Debug, Clone)]
pub struct SessionBuilder {
    threads: Option<usize>,
    mode: Mode,
    blocksize: u64,
    split_every: usize,
}

impl Default for SessionBuilder {
    fn default() -> Self {
        SessionBuilder {
            threads: None,
            mode: Mode::Parallel,
            blocksize: 64 << 20,
            split_every: 8,
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

    /// Default bytes per partition when reading files (default 64 MiB).
    pub fn with_blocksize(mut self, bytes: u64) -> Self {
        self.blocksize = bytes;
        self
    }

    /// How many partials one combine task of a tree reduction takes (default 8).
    pub fn with_split_every(mut self, n: usize) -> Self {
        self.split_every = n;
        self
    }

    /// Checks the settings and starts the thread pool.
    pub fn build(self) -> Result<Session> {
        let threads = self.threads.unwrap_or_else(num_cpus::get);
        if threads == 0 {
            return Err(Error::plan("session", "threads must be at least 1"));
        }
        if self.blocksize == 0 {
            return Err(Error::plan("session", "blocksize must be at least 1 byte"));
        }
        if self.split_every < 2 {
            return Err(Error::plan("session", "split_every must be at least 2"));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("outcore-worker-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the thread pool: {e}")))?;
        Ok(Session {
            inner: Arc::new(SessionInner {
                threads,
                mode: self.mode,
                blocksize: self.blocksize,
                split_every: self.split_every,
                pool,
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

    /// The executor that runs this session's graphs.
    pub fn executor(&self) -> crate::scheduler::Executor<'_> {
        crate::scheduler::Executor {
            mode: self.inner.mode,
            pool: &self.inner.pool,
        }
    }

    /// Starts reading a CSV glob (a pattern, a folder, or one file).
    pub fn read_csv(&self, pattern: impl Into<String>) -> CsvReadBuilder {
        CsvReadBuilder {
            session: self.clone(),
            pattern: pattern.into(),
            options: CsvOptions {
                blocksize: self.inner.blocksize,
                ..CsvOptions::default()
            },
        }
    }
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

    /// Field separator (default `,`).
    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.options.delimiter = delimiter;
        self
    }

    /// Expands the glob, reads headers, infers the schema from samples of several
    /// files, and cuts blocks. Reads no other rows.
    pub fn load(self) -> Result<DataFrame> {
        let source = CsvSource::open(&self.pattern, &self.options)?;
        Ok(DataFrame::from_csv(self.session, Arc::new(source)))
    }
}
