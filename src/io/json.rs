//! JSON-lines (and plain text) sources: a glob cut into byte-range blocks at line
//! ends, as for CSV, except that gzip (`.gz`) and zstd (`.zst`, `.zstd`) files cannot
//! be cut and are one partition each, streamed through their decoder in pieces of
//! about `blocksize` ([`super::compressed`]). Bags ([`crate::bag`]) read lines or
//! records from a [`LinesSource`]; JSON frames decode blocks into Arrow batches with
//! arrow's JSON reader after [`infer_schema`] sampled several files.
//!
//! A field outside the sample is never dropped silently: a frame that outputs every
//! column decodes in arrow's strict mode, and a field the schema lacks is an error
//! naming the file, line and field (a query that reads only some columns does not
//! depend on fields it does not read). Decoding errors name the line that failed.
//!
//! Invariants: every line of every file is in exactly one block; no read of a block
//! holds more than `blocksize + max_line_bytes` bytes of a file (decompressed or
//! not), so a file without line ends is an error, not an out-of-memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};

use super::blocks::{self, Block};
use super::compressed::RecordStream;
use super::stamp::FileStamp;
use crate::error::{Error, Location, Result};

/// The longest line read by default: 64 MiB.
pub const DEFAULT_MAX_LINE_BYTES: u64 = 64 << 20;

pub use super::compressed::Compression;

/// Options shared by every line-oriented reader.
#[derive(Debug, Clone)]
pub struct LinesOptions {
    /// Bytes per partition of uncompressed files.
    pub blocksize: u64,
    /// The longest line accepted.
    pub max_line_bytes: u64,
}

/// A glob of line-oriented files, cut into blocks.
#[derive(Debug)]
pub struct LinesSource {
    /// The glob it was opened from.
    pub pattern: String,
    /// The files, sorted by path, with their compression.
    pub files: Vec<(PathBuf, Compression)>,
    /// One block per partition; a compressed file's block covers the whole file.
    pub blocks: Vec<Block>,
    /// Each file's size and modification time when the source was opened (as
    /// `files`); every block read checks them.
    pub stamps: Vec<FileStamp>,
    /// The longest line accepted.
    pub max_line_bytes: u64,
    /// Piece size for streaming compressed files.
    pub blocksize: u64,
}

/// The bytes of one block: whole lines, and where they start.
pub struct BlockBytes<'a> {
    /// The file.
    pub path: &'a Path,
    /// The lines, each ending in `\n` except perhaps the last.
    pub bytes: Vec<u8>,
    /// The byte offset of `bytes[0]` in the (decompressed) file.
    pub offset: u64,
    /// The line of `bytes[0]` when known without reading the file again (a piece
    /// of a compressed file, whose lines were counted as it streamed).
    pub first_line: Option<u64>,
}

impl LinesSource {
    /// Expands the glob and cuts the files into blocks; reads no data.
    pub fn open(op: &'static str, pattern: &str, opts: &LinesOptions) -> Result<LinesSource> {
        if opts.blocksize == 0 || opts.blocksize > (2u64 << 30) {
            return Err(Error::plan(
                op,
                format!(
                    "blocksize must be between 1 byte and 2 GiB, got {}",
                    opts.blocksize
                ),
            ));
        }
        if opts.max_line_bytes == 0 {
            return Err(Error::plan(op, "max_line_bytes must be at least 1"));
        }
        let paths = super::glob::expand(pattern)?;
        let stamps = paths
            .iter()
            .map(|p| FileStamp::of(p))
            .collect::<Result<Vec<_>>>()?;
        let nblocks: u64 = stamps
            .iter()
            .map(|s| s.size.div_ceil(opts.blocksize).max(1))
            .sum();
        crate::graph::check_partitions(
            op,
            &format!("blocksize {} bytes", opts.blocksize),
            usize::try_from(nblocks).unwrap_or(usize::MAX),
            "use a larger blocksize",
        )?;
        let mut files = Vec::with_capacity(paths.len());
        let mut out = Vec::new();
        for (i, path) in paths.into_iter().enumerate() {
            let size = stamps[i].size;
            let c = Compression::of(&path);
            if c == Compression::None {
                out.extend(blocks::split(i, 0, size, opts.blocksize));
            } else {
                out.push(Block {
                    file: i,
                    start: 0,
                    end: size,
                });
            }
            files.push((path, c));
        }
        Ok(LinesSource {
            pattern: pattern.to_string(),
            files,
            blocks: out,
            stamps,
            max_line_bytes: opts.max_line_bytes,
            blocksize: opts.blocksize,
        })
    }

    /// Reads block `i` and calls `f` with its whole lines: once for a block of a
    /// plain file; once per piece of about `blocksize` bytes for a compressed file,
    /// streamed through its decoder. `f` returns false to stop early.
    ///
    /// The bytes read are reserved from the running task's memory account first
    /// (for a compressed file, two pieces: the decoder's and the copy `f` gets)
    /// and given back when `f` has returned.
    pub fn for_each_piece(
        &self,
        i: usize,
        mut f: impl FnMut(BlockBytes<'_>) -> Result<bool>,
    ) -> Result<()> {
        let block = self.blocks[i];
        let held = match self.files[block.file].1 {
            Compression::None => block.end - block.start,
            _ => 2 * self.blocksize,
        };
        crate::scheduler::reserve("JSON lines block", held)?;
        let read = self.read_pieces(block, &mut f);
        crate::scheduler::release(held);
        read
    }

    fn read_pieces(
        &self,
        block: Block,
        f: &mut impl FnMut(BlockBytes<'_>) -> Result<bool>,
    ) -> Result<()> {
        let (path, c) = &self.files[block.file];
        let stamp = &self.stamps[block.file];
        if *c == Compression::None {
            let (bytes, offset) = blocks::read_lines_stamped(
                path,
                Some(stamp),
                0,
                block.start,
                block.end,
                self.max_line_bytes,
            )?;
            f(BlockBytes {
                path,
                bytes,
                offset,
                first_line: None,
            })?;
            return Ok(());
        }
        let reader = c.open_stamped(path, stamp)?;
        let mut stream = RecordStream::new(
            path,
            reader,
            (0, 1),
            None,
            self.blocksize,
            self.max_line_bytes,
        );
        while let Some(piece) = stream.next_piece()? {
            let more = f(BlockBytes {
                path,
                bytes: piece.bytes.to_vec(),
                offset: piece.offset,
                first_line: Some(piece.line),
            })?;
            if !more {
                return Ok(());
            }
        }
        // A file changed while it streamed (a short read ends a decoder's stream).
        stamp.open(path)?;
        Ok(())
    }

    /// The 1-based line number in the file of `at`, the offset of a line inside `block`
    /// (only error paths call this).
    pub fn line_number(&self, block: &BlockBytes<'_>, at: usize) -> u64 {
        match block.first_line {
            Some(line) => line + memchr::memchr_iter(b'\n', &block.bytes[..at]).count() as u64,
            None => blocks::line_of_offset(block.path, block.offset + at as u64),
        }
    }

    /// The error for a line longer than the limit.
    pub fn too_long(&self, block: &BlockBytes<'_>, at: usize) -> Error {
        Error::Malformed {
            at: Location {
                path: block.path.to_path_buf(),
                line: self.line_number(block, at),
            },
            reason: format!(
                "a line is longer than the limit of {} bytes; raise the limit (max_line_bytes) if the file really has such lines",
                self.max_line_bytes
            ),
        }
    }
}

/// The first bytes of a line, for error messages.
pub fn line_head(line: &[u8]) -> String {
    const HEAD: usize = 60;
    let s = String::from_utf8_lossy(&line[..line.len().min(HEAD)]);
    if line.len() > HEAD {
        format!("{s}…")
    } else {
        s.into_owned()
    }
}

/// Splits `bytes` into lines (without `\n` or a trailing `\r`), with each line's
/// offset in `bytes`; blank lines are left out.
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || loop {
        if at >= bytes.len() {
            return None;
        }
        let end = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |i| at + i);
        let start = at;
        at = end + 1;
        let mut line = &bytes[start..end];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            return Some((start, line));
        }
    })
}

/// Infers one schema for a JSON-lines source from samples of several files (the
/// first, the last, and some between; up to `sample_lines` lines of each), widening
/// types as arrow's JSON inference does (an integer field that is a float elsewhere
/// is a float). Nested objects become struct columns, lists list columns.
pub fn infer_schema(source: &LinesSource, sample_lines: usize) -> Result<SchemaRef> {
    let n = source.blocks.len();
    let mut picks: Vec<usize> = Vec::new();
    // The first block of every file is cheap to find; take up to 10 files spread out.
    let firsts: Vec<usize> = (0..n)
        .filter(|&i| i == 0 || source.blocks[i - 1].file != source.blocks[i].file)
        .collect();
    let step = firsts.len().div_ceil(10).max(1);
    picks.extend(firsts.iter().step_by(step));
    if let Some(last) = firsts.last() {
        picks.push(*last);
    }
    picks.sort_unstable();
    picks.dedup();
    let mut values: Vec<serde_json::Value> = Vec::new();
    for first in picks {
        // The first `sample_lines` lines of the file, over as many blocks as it takes.
        let mut left = sample_lines;
        let mut i = first;
        while left > 0 && i < n && source.blocks[i].file == source.blocks[first].file {
            source.for_each_piece(i, |block| {
                for (at, line) in lines(&block.bytes).take(left) {
                    let v: serde_json::Value = serde_json::from_slice(line)
                        .map_err(|e| bad_json(source, &block, at, line, &e.to_string()))?;
                    values.push(v);
                    left -= 1;
                }
                Ok(left > 0)
            })?;
            i += 1;
        }
    }
    let schema = arrow::json::reader::infer_json_schema_from_iterator(values.iter().map(Ok))?;
    if schema.fields().is_empty() {
        return Err(Error::plan(
            "read_json",
            format!(
                "no fields found in the first lines of {:?}; is it JSON lines of objects?",
                source.pattern
            ),
        ));
    }
    Ok(Arc::new(schema))
}

/// The error for a line that is not valid JSON.
pub fn bad_json(
    source: &LinesSource,
    block: &BlockBytes<'_>,
    at: usize,
    line: &[u8],
    why: &str,
) -> Error {
    Error::Malformed {
        at: Location {
            path: block.path.to_path_buf(),
            line: source.line_number(block, at),
        },
        reason: format!(
            "not valid JSON ({why}); the line starts {:?}\n  hint: fix the line, or skip bad lines with --on-error skip (Rust: .on_error(OnError::Skip))",
            line_head(line)
        ),
    }
}

/// Decodes block `i` of a JSON-lines source into one batch of `schema`'s columns.
/// With `strict`, a field that `schema` lacks is an error naming its file, line and
/// field (use it when `schema` is every column the source has); otherwise such
/// fields are ignored, so a projected schema decodes less.
pub fn read_frame_block(
    source: &LinesSource,
    i: usize,
    schema: &SchemaRef,
    strict: bool,
) -> Result<RecordBatch> {
    let mut batches = Vec::new();
    let mut rows = 0usize;
    source.for_each_piece(i, |block| {
        if schema.fields().is_empty() {
            // No columns wanted (a row count): count the lines, decode nothing.
            rows += lines(&block.bytes).count();
        } else {
            batches.push(decode_piece(source, &block, schema, strict)?);
        }
        Ok(true)
    })?;
    if schema.fields().is_empty() {
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
        return Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            vec![],
            &options,
        )?);
    }
    match batches.len() {
        0 => Ok(RecordBatch::new_empty(schema.clone())),
        1 => Ok(batches.pop().expect("one batch")),
        _ => Ok(arrow::compute::concat_batches(schema, &batches)?),
    }
}

fn json_decoder(
    schema: &SchemaRef,
    strict: bool,
    rows: usize,
) -> Result<arrow::json::reader::Decoder> {
    Ok(arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.max(1))
        .with_strict_mode(strict)
        .build_decoder()?)
}

/// Decodes the lines of one block (or piece) into one batch.
fn decode_piece(
    source: &LinesSource,
    block: &BlockBytes<'_>,
    schema: &SchemaRef,
    strict: bool,
) -> Result<RecordBatch> {
    // One batch per piece: rows are at most the lines.
    let mut decoder = json_decoder(
        schema,
        strict,
        memchr::memchr_iter(b'\n', &block.bytes).count() + 1,
    )?;
    let mut rest: &[u8] = &block.bytes;
    let decoded = (|| -> std::result::Result<Option<RecordBatch>, arrow::error::ArrowError> {
        while !rest.is_empty() {
            let n = decoder.decode(rest)?;
            if n == 0 {
                break;
            }
            rest = &rest[n..];
        }
        decoder.flush()
    })();
    match decoded {
        Ok(batch) => Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(schema.clone()))),
        Err(e) => Err(locate_json_error(source, block, schema, strict, e)),
    }
}

/// Arrow does not say which line failed: decode line by line to find it (error
/// paths only), and say what is wrong with it.
fn locate_json_error(
    source: &LinesSource,
    block: &BlockBytes<'_>,
    schema: &SchemaRef,
    strict: bool,
    e: arrow::error::ArrowError,
) -> Error {
    for (at, line) in lines(&block.bytes) {
        let value = match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(v) => v,
            Err(je) => return bad_json(source, block, at, line, &je.to_string()),
        };
        let here = || Location {
            path: block.path.to_path_buf(),
            line: source.line_number(block, at),
        };
        if strict {
            if let Some(obj) = value.as_object() {
                if let Some(k) = obj.keys().find(|k| schema.field_with_name(k).is_err()) {
                    return Error::Malformed {
                        at: here(),
                        reason: format!(
                            "field {k:?} is not among the columns inferred from samples of the files ({}); it would be dropped\n  hint: sample more lines (CLI: --sample-lines N; Rust: .with_sample_lines(n)), give a schema that has it (Rust: .with_schema(..)), or read the records as a bag (`outcore bag`), which keeps every field",
                            schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    };
                }
            }
        }
        let one = json_decoder(schema, strict, 1).and_then(|mut d| {
            d.decode(line)?;
            d.decode(b"\n")?;
            Ok(d.flush()?)
        });
        if let Err(err) = one {
            return Error::Malformed {
                at: here(),
                reason: format!(
                    "{}; the line starts {:?}\n  hint: the columns' types were inferred from samples of the files; give a schema (Rust: .with_schema(..)) whose type admits this value",
                    crate::error::strip_arrow_prefix(&err.to_string()),
                    line_head(line)
                ),
            };
        }
    }
    Error::Malformed {
        at: Location {
            path: block.path.to_path_buf(),
            line: source.line_number(block, 0),
        },
        reason: format!("in the block starting here: {e}"),
    }
}

/// `schema` restricted to `projection` (all when `None`).
pub fn project(schema: &SchemaRef, projection: Option<&[usize]>) -> SchemaRef {
    match projection {
        None => schema.clone(),
        Some(p) => Arc::new(Schema::new(
            p.iter()
                .map(|&i| schema.field(i).clone())
                .collect::<Vec<_>>(),
        )),
    }
}
