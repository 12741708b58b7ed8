//! Writing answers: a table (Arrow's pretty printer), CSV, or JSON lines; to stdout or
//! one file per partition in a folder, partition by partition, so an answer larger
//! than memory never has to be gathered.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use arrow::array::RecordBatch;
use clap::ValueEnum;
use outcore::io::staged::StagedFolder;
use outcore::{Error, Result};

/// How answers are printed.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// A boxed table.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per row.
    Json,
    /// A Parquet dataset (one file per partition and a manifest); needs `--out`.
    Parquet,
}

fn arrow_write_err(path: &Path, e: arrow::error::ArrowError) -> Error {
    match e {
        arrow::error::ArrowError::IoError(_, io) => Error::io(path, io),
        other => Error::Arrow(other),
    }
}

/// Rows of a batch formatted as CSV in one piece (see [`write_batch`]).
const CSV_SLICE_ROWS: usize = 16 * 1024;

/// Rows of a batch drawn as one boxed table. Arrow's pretty printer holds every
/// cell of its table as a string with its layout (about a kilobyte a row), so a
/// partition of a million rows is drawn as tables of this many rows, each
/// written before the next is drawn.
const TABLE_SLICE_ROWS: usize = 1024;

/// Writes `batch` to `out` in `format`; `header` says whether CSV gets its header.
fn write_batch(
    out: &mut dyn Write,
    path: &Path,
    batch: &RecordBatch,
    format: Format,
    header: bool,
) -> Result<()> {
    match format {
        Format::Table => {
            let rows = batch.num_rows();
            for start in (0..rows.max(1)).step_by(TABLE_SLICE_ROWS) {
                let slice = batch.slice(start, TABLE_SLICE_ROWS.min(rows - start));
                let table = arrow::util::pretty::pretty_format_batches(&[slice])?;
                writeln!(out, "{table}").map_err(|e| Error::io(path, e))?;
            }
        }
        Format::Csv => {
            // Formatted into memory first: arrow's CSV writer reports a closed pipe
            // as text, which would hide the BrokenPipe that `| head` should exit 0 on.
            // Slices of a large batch are formatted on the session's threads (when
            // called in one of its workers: answers are handed over in order, one at
            // a time, so formatting on the one thread would be the run's tail), a
            // slice per thread at a time: the text held is a few slices', never the
            // whole partition's.
            let rows = batch.num_rows();
            let slices = rows.div_ceil(CSV_SLICE_ROWS).max(1);
            // A slice's buffers are its batch's: its share of them sizes its text.
            let per_row = outcore_storage::measure::batch_bytes(batch) / rows.max(1);
            let format = |i: usize| -> Result<Vec<u8>> {
                let start = i * CSV_SLICE_ROWS;
                let slice = batch.slice(start, CSV_SLICE_ROWS.min(rows - start));
                let mut text = Vec::with_capacity(per_row * slice.num_rows());
                outcore::io::csv_write::write_csv(&mut text, &slice, header && i == 0)?;
                Ok(text)
            };
            let at_once = if rayon::current_thread_index().is_some() {
                rayon::current_num_threads().max(1)
            } else {
                1
            };
            for first in (0..slices).step_by(at_once) {
                let group = first..slices.min(first + at_once);
                let texts = if group.len() > 1 {
                    use rayon::prelude::*;
                    group
                        .into_par_iter()
                        .map(format)
                        .collect::<Result<Vec<_>>>()?
                } else {
                    vec![format(first)?]
                };
                for text in texts {
                    out.write_all(&text).map_err(|e| Error::io(path, e))?;
                }
            }
        }
        Format::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut *out);
            w.write(batch).map_err(|e| arrow_write_err(path, e))?;
            w.finish().map_err(|e| arrow_write_err(path, e))?;
        }
        Format::Parquet => {
            return Err(Error::plan(
                "--format parquet",
                "writes a dataset folder: give --out DIR",
            ))
        }
    }
    Ok(())
}

/// Writes `batch` to stdout, clearing a progress bar on the terminal while rows print.
fn print(batch: &RecordBatch, format: Format, header: bool) -> Result<()> {
    super::progress::suspend(|| {
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        let path = Path::new("<stdout>");
        write_batch(&mut out, path, batch, format, header)?;
        out.flush().map_err(|e| Error::io(path, e))
    })
}

/// Prints the `# NAME` line that heads an answer of several on stdout (as the
/// bag's several results are headed).
pub fn print_answer_name(name: &str) -> Result<()> {
    super::progress::suspend(|| {
        let mut out = std::io::stdout().lock();
        let path = Path::new("<stdout>");
        writeln!(out, "# {name}").map_err(|e| Error::io(path, e))?;
        out.flush().map_err(|e| Error::io(path, e))
    })
}

/// Where partitions go, one at a time, in order.
pub enum PartitionWriter {
    /// Standard output: CSV's header once, a table per partition that has rows
    /// (an answer with no rows at all is one empty table, at the end).
    Stdout {
        /// Output format.
        format: Format,
        /// Partitions written so far.
        written: Mutex<usize>,
        /// Which: a query run again after a column widened (`Session::run_widening`)
        /// skips the partitions it already printed (their values read the same).
        done: Mutex<std::collections::HashSet<usize>>,
        /// The first empty partition of a table, drawn at the end if no other was.
        empty: Mutex<Option<RecordBatch>>,
    },
    /// `part-00000.csv`, ... in a temporary folder beside the target, moved into
    /// place by [`PartitionWriter::finish`]; dropped unfinished, the folder goes.
    /// Empty partitions (a groupby's slots past its parts) get no file; the files
    /// are numbered in partition order, and an answer with no rows at all is one
    /// file with the header.
    Folder {
        /// Output format (a table is written as CSV).
        format: Format,
        /// The folder being written.
        staged: StagedFolder,
        /// File number of each partition written (a query run again after a
        /// column widened writes the same files again).
        files: Mutex<std::collections::BTreeMap<usize, usize>>,
        /// The first empty partition, written at the end if no other was.
        empty: Mutex<Option<RecordBatch>>,
    },
}

impl PartitionWriter {
    /// Writes to stdout.
    pub fn stdout(format: Format) -> PartitionWriter {
        PartitionWriter::Stdout {
            format,
            written: Mutex::new(0),
            done: Mutex::default(),
            empty: Mutex::default(),
        }
    }

    /// Writes one file per partition into `dir`, which must not exist unless
    /// `overwrite`; checked now, before any work.
    pub fn folder(dir: &Path, format: Format, overwrite: bool) -> Result<PartitionWriter> {
        Ok(PartitionWriter::Folder {
            format,
            staged: StagedFolder::new("query", dir, overwrite)?,
            files: Mutex::default(),
            empty: Mutex::default(),
        })
    }

    /// Writes partition `index`.
    pub fn write(&self, index: usize, batch: &RecordBatch) -> Result<()> {
        match self {
            PartitionWriter::Stdout {
                format,
                written,
                done,
                empty,
            } => {
                if !done.lock().unwrap_or_else(|p| p.into_inner()).insert(index) {
                    return Ok(());
                }
                if *format == Format::Table && batch.num_rows() == 0 {
                    empty
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert_with(|| batch.clone());
                    return Ok(());
                }
                let mut written = written.lock().unwrap_or_else(|p| p.into_inner());
                let header = *written == 0;
                *written += 1;
                print(batch, *format, header)
            }
            PartitionWriter::Folder {
                format,
                staged,
                files,
                empty,
            } => {
                if batch.num_rows() == 0 {
                    empty
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert_with(|| batch.clone());
                    return Ok(());
                }
                let number = {
                    let mut files = files.lock().unwrap_or_else(|p| p.into_inner());
                    let next = files.len();
                    *files.entry(index).or_insert(next)
                };
                Self::write_file(staged, *format, number, batch)
            }
        }
    }

    fn write_file(
        staged: &StagedFolder,
        format: Format,
        number: usize,
        batch: &RecordBatch,
    ) -> Result<()> {
        let (format, ext) = match format {
            Format::Json => (Format::Json, "json"),
            _ => (Format::Csv, "csv"),
        };
        let path = staged.path().join(format!("part-{number:05}.{ext}"));
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut out = BufWriter::new(file);
        write_batch(&mut out, &path, batch, format, true)?;
        let file = out
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        file.sync_data().map_err(|e| Error::io(&path, e))
    }

    /// On stdout, ends the answer: an answer with no rows at all is drawn as one
    /// empty table (or its CSV header) now, so that the next answer's rows follow
    /// it. Nothing for a folder, whose files are all written.
    pub fn finish_answer(&self) -> Result<()> {
        if let PartitionWriter::Stdout {
            format,
            written,
            empty,
            ..
        } = self
        {
            let mut written = written.lock().unwrap_or_else(|p| p.into_inner());
            let empty = empty.lock().unwrap_or_else(|p| p.into_inner());
            if let (0, Some(batch)) = (*written, empty.as_ref()) {
                print(batch, *format, true)?;
                *written = 1;
            }
        }
        Ok(())
    }

    /// Moves the finished folder into place (replacing the old one when allowed).
    pub fn finish(self) -> Result<Option<PathBuf>> {
        match self {
            PartitionWriter::Stdout { .. } => {
                self.finish_answer()?;
                Ok(None)
            }
            PartitionWriter::Folder {
                staged,
                format,
                files,
                empty,
            } => {
                let none = files.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
                let empty = empty.into_inner().unwrap_or_else(|p| p.into_inner());
                if let (true, Some(batch)) = (none, empty) {
                    Self::write_file(&staged, format, 0, &batch)?;
                }
                Ok(Some(staged.finish()?))
            }
        }
    }

    /// Finishes (moving a folder into place and saying so) and, with `time`, prints
    /// the rows written and the time since `started` to stderr.
    pub fn finish_and_report(
        self,
        rows: usize,
        started: std::time::Instant,
        time: bool,
    ) -> Result<()> {
        if let Some(dir) = self.finish()? {
            eprintln!("wrote {}", dir.display());
        }
        if time {
            eprintln!("{rows} rows in {:.3} s", started.elapsed().as_secs_f64());
        }
        Ok(())
    }
}
