//! JSON-lines (and plain text) sources: a glob cut into byte-range blocks at line
//! ends, as for CSV, except that gzip (`.gz`) and zstd (`.zst`, `.zstd`) files cannot
//! be cut and are one partition each. Bags ([`crate::bag`]) read lines or records
//! from a [`LinesSource`]; JSON frames decode blocks into Arrow batches with arrow's
//! JSON reader after [`infer_schema`] sampled several files.
//!
//! Invariants: every line of every file is in exactly one block; no read of a block
//! holds more than `blocksize + max_line_bytes` bytes of an uncompressed file, so a
//! file without line ends is an error, not an out-of-memory.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};

use super::blocks::{self, Block};
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
    /// The longest line accepted.
    pub max_line_bytes: u64,
}

/// The bytes of one block: whole lines, and where they start.
pub struct BlockBytes<'a> {
    /// The file.
    pub path: &'a Path,
    /// The lines, each ending in `\n` except perhaps the last.
    pub bytes: Vec<u8>,
    /// The byte offset of `bytes[0]` in the (uncompressed) file.
    pub offset: u64,
    /// True when the file is compressed (so offsets are in the decompressed text).
    pub compressed: bool,
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
        let mut files = Vec::with_capacity(paths.len());
        let mut out = Vec::new();
        for (i, path) in paths.into_iter().enumerate() {
            let size = std::fs::metadata(&path)
                .map_err(|e| Error::io(&path, e))?
                .len();
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
            max_line_bytes: opts.max_line_bytes,
        })
    }

    /// Reads block `i`: its whole lines (a compressed file decompressed whole).
    pub fn read_block(&self, i: usize) -> Result<BlockBytes<'_>> {
        let block = self.blocks[i];
        let (path, c) = &self.files[block.file];
        let (bytes, offset) = match c {
            Compression::None => {
                blocks::read_lines_limited(path, 0, block.start, block.end, self.max_line_bytes)?
            }
            Compression::Gzip | Compression::Zstd => (decompress(path, *c)?, 0),
        };
        Ok(BlockBytes {
            path,
            bytes,
            offset,
            compressed: *c != Compression::None,
        })
    }

    /// The 1-based line number in the file of `at`, the offset of a line inside `block`
    /// (only error paths call this).
    pub fn line_number(&self, block: &BlockBytes<'_>, at: usize) -> u64 {
        if block.compressed {
            1 + memchr::memchr_iter(b'\n', &block.bytes[..at]).count() as u64
        } else {
            blocks::line_of_offset(block.path, block.offset + at as u64)
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

fn decompress(path: &Path, c: Compression) -> Result<Vec<u8>> {
    let io = |e| Error::io(path, e);
    let file = std::fs::File::open(path).map_err(io)?;
    let mut out = Vec::new();
    match c {
        Compression::Gzip => {
            flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file))
                .read_to_end(&mut out)
                .map_err(io)?;
        }
        Compression::Zstd => {
            zstd::stream::read::Decoder::new(file)
                .map_err(io)?
                .read_to_end(&mut out)
                .map_err(io)?;
        }
        Compression::None => {
            std::io::BufReader::new(file)
                .read_to_end(&mut out)
                .map_err(io)?;
        }
    }
    Ok(out)
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
    for i in picks {
        let block = source.read_block(i)?;
        for (at, line) in lines(&block.bytes).take(sample_lines) {
            let v: serde_json::Value = serde_json::from_slice(line)
                .map_err(|e| bad_json(source, &block, at, line, &e.to_string()))?;
            values.push(v);
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

/// Decodes block `i` of a JSON-lines source into one batch of `schema`'s columns
/// (fields not in the schema are ignored, so a projected schema decodes less).
pub fn read_frame_block(source: &LinesSource, i: usize, schema: &SchemaRef) -> Result<RecordBatch> {
    let block = source.read_block(i)?;
    if schema.fields().is_empty() {
        // No columns wanted (a row count): count the lines, decode nothing.
        let rows = lines(&block.bytes).count();
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
        return Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            vec![],
            &options,
        )?);
    }
    let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
        // One batch per block: rows are at most the lines.
        .with_batch_size(memchr::memchr_iter(b'\n', &block.bytes).count() + 1)
        .build_decoder()?;
    let mut rest: &[u8] = &block.bytes;
    let locate = |e: arrow::error::ArrowError| -> Error {
        // arrow does not say which line failed: find it (error path only).
        for (at, line) in lines(&block.bytes) {
            if let Err(je) = serde_json::from_slice::<serde_json::Value>(line) {
                return bad_json(source, &block, at, line, &je.to_string());
            }
        }
        Error::Malformed {
            at: Location {
                path: block.path.to_path_buf(),
                line: source.line_number(&block, 0),
            },
            reason: format!("in the block starting here: {e}"),
        }
    };
    while !rest.is_empty() {
        let n = decoder.decode(rest).map_err(locate)?;
        if n == 0 {
            break;
        }
        rest = &rest[n..];
    }
    let batch = decoder.flush().map_err(locate)?;
    Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
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
