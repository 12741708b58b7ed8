//! Errors, built around who has to act: bad input data names the file, line and
//! column and says what was expected; a query that cannot be built says why before
//! anything runs; a failed task names the task; a bug in outcore says so.

use std::fmt;
use std::path::PathBuf;

use arrow::datatypes::DataType;
use arrow::error::ArrowError;

/// The result type of every fallible outcore call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A place in an input file: `data/ts/part-3.csv:1042`. Lines count from 1 at the
/// start of the file (not of the block being read); the header is line 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number, absolute in the file.
    pub line: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// A value that does not parse as its column's type.
#[derive(Debug, thiserror::Error)]
#[error("{at}: column {column:?}: expected {expected}, found {found:?}\n  hint: {hint}")]
pub struct ParseError {
    /// Where the value is.
    pub at: Location,
    /// The column's name.
    pub column: String,
    /// The type the column was given (inferred or declared).
    pub expected: DataType,
    /// The text that was found.
    pub found: String,
    /// What to do about it.
    pub hint: String,
}

/// A value that does not fit its column's *inferred* type: not bad data, a guess
/// that sampling got too narrow. [`crate::Session::run_widening`] reads the column
/// as `to` and runs the query again.
#[derive(Debug, thiserror::Error)]
#[error("{at}: column {column:?} was inferred as {from} from samples, but holds {found:?}; it must be read as {to}\n  hint: run the query again in this session (Session::run_widening does, and so does the CLI), or declare the column's type, e.g. --dtype {column}={}", self.type_name())]
pub struct Widening {
    /// Where the value is.
    pub at: Location,
    /// The glob the column was read from (the session remembers the wider type for it).
    pub pattern: String,
    /// The column's name.
    pub column: String,
    /// The inferred type.
    pub from: DataType,
    /// The type that holds every value of the block where `found` is.
    pub to: DataType,
    /// The value that did not fit.
    pub found: String,
}

impl Widening {
    fn type_name(&self) -> &'static str {
        match self.to {
            DataType::Float64 => "float64",
            DataType::Int64 => "int64",
            DataType::Boolean => "bool",
            _ => "string",
        }
    }
}

/// Everything that can go wrong in outcore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value in an input file does not parse as its column's type: the user fixes the
    /// file or declares the column's dtype. Boxed: it is the largest variant.
    #[error("{0}")]
    Parse(Box<ParseError>),
    /// A value does not fit its column's inferred type: the column must be read with
    /// a wider type and the work redone ([`crate::Session::run_widening`]).
    #[error("{0}")]
    Widen(Box<Widening>),
    /// An input file is malformed in a way that is not about one value (wrong number of
    /// fields, not UTF-8, a header that differs from the other files').
    #[error("{at}: {reason}")]
    Malformed {
        /// Where the problem is.
        at: Location,
        /// What is wrong.
        reason: String,
    },
    /// An input file is not what its format says (a Parquet file cut short or
    /// corrupt): the user replaces or rewrites the file. `reason` names the part of
    /// the file (a row group) when it is known.
    #[error("{}: {reason}", .path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where in the file.
        reason: String,
    },
    /// The query cannot be built: raised when the operation is added, before compute.
    #[error("{op}: {reason}")]
    Plan {
        /// The operation being added (`filter`, `groupby`, `read_csv`, ...).
        op: &'static str,
        /// Why it cannot be built.
        reason: String,
    },
    /// A column that the frame does not have.
    #[error("unknown column {name:?}; the columns are: {}", columns.join(", "))]
    UnknownColumn {
        /// The name asked for.
        name: String,
        /// The columns there are.
        columns: Vec<String>,
    },
    /// An expression string could not be parsed; `position` is a 0-based char offset.
    #[error("invalid expression at character {}: {reason}\n  {input}\n  {caret}^", position + 1, caret = " ".repeat(*position))]
    Syntax {
        /// The expression text.
        input: String,
        /// 0-based character offset of the offending character.
        position: usize,
        /// What was expected there.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// An input file changed (cut, grown, rewritten) between planning and reading:
    /// the rows read would belong to no one version of it.
    #[error("{}: the file changed after the query was planned ({reason}); run the query again", .path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// A task of a computation failed; `source` says why.
    #[error("{source}\n  (in task {key})")]
    Task {
        /// The task's key, `(name, index)`.
        key: String,
        /// The error the task returned.
        source: Box<Error>,
    },
    /// One task's result alone is larger than the memory limit, so no amount of
    /// spilling can keep the computation under it.
    #[error("task {key} made a result of {} but the memory limit is {}; {hint}", human_bytes(*needed), human_bytes(*limit))]
    MemoryLimit {
        /// The task.
        key: String,
        /// Bytes its result holds.
        needed: u64,
        /// The limit.
        limit: u64,
        /// What to do about it.
        hint: String,
    },
    /// An operator needed more memory than the limit leaves, with every cache paged
    /// out and no other task left to finish and release.
    #[error("{operator} needs {} more, but {} of the {} memory limit is reserved and nothing else can spill or finish; {hint}", human_bytes(*needed), human_bytes(*reserved), human_bytes(*limit))]
    MemoryExhausted {
        /// The operator that asked (e.g. "join build side").
        operator: String,
        /// The bytes it asked for.
        needed: u64,
        /// The bytes reserved when it asked.
        reserved: u64,
        /// The limit.
        limit: u64,
        /// What to do about it.
        hint: String,
    },
    /// Paging results out to the spill folder failed (a full disk, say); what was
    /// being written is removed.
    #[error("cannot spill to {}: {source}; free space there or choose another folder with --spill-dir", .dir.display())]
    Spill {
        /// The spill folder.
        dir: PathBuf,
        /// What failed.
        source: outcore_storage::Error,
    },
    /// The computation was interrupted (Ctrl-C); its temporary files were removed.
    #[error("interrupted; temporary files were removed")]
    Interrupted,
    /// An error from an Arrow kernel.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// An error from the storage layer (shuffle store, spill cache, codec).
    #[error(transparent)]
    Storage(#[from] outcore_storage::Error),
    /// A bug in outcore.
    #[error("internal error: {0}; this is a bug in outcore, please report it")]
    Internal(String),
}

impl Error {
    /// A [`Error::Plan`] error.
    pub fn plan(op: &'static str, reason: impl Into<String>) -> Self {
        Error::Plan {
            op,
            reason: reason.into(),
        }
    }

    /// An [`Error::Io`] error for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The innermost error: a task failure unwrapped to what the task reported.
    pub fn root(&self) -> &Error {
        match self {
            Error::Task { source, .. } => source.root(),
            other => other,
        }
    }
}

/// An Arrow error's text without the variant's prefix ("Json error: ...").
pub fn strip_arrow_prefix(text: &str) -> &str {
    for p in [
        "Json error: ",
        "Parser error: ",
        "Invalid argument error: ",
        "Cast error: ",
    ] {
        if let Some(rest) = text.strip_prefix(p) {
            return rest;
        }
    }
    text
}

/// `1536` → `1.5 KiB`: sizes in messages and `--stats`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl From<datafusion_common::DataFusionError> for Error {
    fn from(e: datafusion_common::DataFusionError) -> Self {
        match e {
            datafusion_common::DataFusionError::ArrowError(a, _) => Error::Arrow(*a),
            other => Error::Internal(other.to_string()),
        }
    }
}
