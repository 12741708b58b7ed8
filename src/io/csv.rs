//! CSV sources: a glob of CSV files with one header line each, cut into blocks that
//! become partitions, and the typed decoder that turns one block's bytes into an
//! Arrow `RecordBatch` of the projected columns only.
//!
//! Decoding is where reading costs (tokenising is several times cheaper), so only
//! the columns a query uses are parsed, each in one typed loop over its fields.
//! Empty fields are null in every column; in numeric, boolean and date columns the
//! usual NA spellings (`NA`, `N/A`, `NaN`, `nan`, `null`, `NULL`, `None`, `<NA>`,
//! `#N/A`, `n/a`) are null too, as pandas reads them. In text columns only the empty
//! field is null, so a person called "NA" keeps her name.
//!
//! Reading right whatever the blocks:
//! - Quoted fields may hold line breaks. A block owns the records that start in it,
//!   and whether its first byte lies inside quotes depends on every quote before it.
//!   A block task guesses "outside" (true unless a quoted line break straddles the
//!   block's start), decodes, and then checks the guess against the parity of the
//!   quotes in the blocks before it (each block records its own parity when read;
//!   missing ones are counted with memchr), and reads again with the right state
//!   when the guess was wrong. A file with one block never checks anything.
//! - A value that does not fit a column's *inferred* type is an [`Error::Widen`]
//!   naming the column, file and line and the wider type (int → float → string);
//!   [`crate::Session::run_widening`] notes it on stderr and runs the query again,
//!   reading the column with the wider type. A value that does not fit a *declared*
//!   type is an error naming file, line, column, expected type and value.
//! - `.gz` and `.zst` files are one partition each, streamed through the decoder in
//!   pieces of about `blocksize` (see [`super::compressed`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::NullBufferBuilder;
use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Array, Float64Array, Int64Array, RecordBatch,
    RecordBatchOptions, TimestampNanosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use std::sync::OnceLock;

use super::blocks::{self, Block};
use super::compressed::{first_line, Compression, RecordStream};
use super::infer::{sample_files, Inferred};
use super::stamp::FileStamp;
use super::tokenize::{tokenize, tokenize_hinted, Fields, TokenizeError};
use crate::error::{Error, Location, Result, Widening};

/// The quote character: RFC 4180's, with `""` for a quote inside a quoted field.
const QUOTE: u8 = b'"';

/// The longest line (or record) read by default: 64 MiB.
pub const DEFAULT_MAX_LINE_BYTES: u64 = 64 << 20;

/// How to read a CSV glob.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// Target bytes per partition.
    pub blocksize: u64,
    /// Field separator; `None` reads `.tsv` files as tab-separated and sniffs the
    /// others (`,`, tab, `;` or `|`, from the header and the first lines).
    pub delimiter: Option<u8>,
    /// The longest line (a record, when quoted fields hold line breaks) accepted.
    pub max_line_bytes: u64,
    /// Inferred types found too narrow by an earlier run ([`Error::Widen`]): the
    /// least a column is inferred as. Unlike `dtypes`, they can widen further.
    pub widened: Vec<(String, DataType)>,
    /// Declared column types; they override inference.
    pub dtypes: Vec<(String, DataType)>,
    /// Columns to parse as timestamps (ISO 8601, with or without `T`, fractional
    /// seconds allowed).
    pub parse_dates: Vec<String>,
    /// Columns whose timestamps follow a `strftime` format (`%d/%m/%Y %H:%M`), as
    /// pandas' `date_format`; they are read as timestamps.
    pub date_formats: Vec<(String, String)>,
    /// How many files inference samples (first, last, and some between).
    pub sample_files: usize,
    /// Bytes sampled from the start (and as many from the middle) of each sampled file.
    pub sample_bytes: u64,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            blocksize: 64 << 20,
            delimiter: None,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            widened: Vec::new(),
            dtypes: Vec::new(),
            parse_dates: Vec::new(),
            date_formats: Vec::new(),
            sample_files: 5,
            sample_bytes: 256 << 10,
        }
    }
}

/// One file of a source.
#[derive(Debug, Clone)]
pub struct CsvFile {
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes when the source was opened (`stamp.size`).
    pub size: u64,
    /// Its size and modification time when the source was opened; every block
    /// read checks them.
    pub stamp: FileStamp,
    /// Offset of the first byte after the header line (in the decompressed text of
    /// a compressed file).
    pub data_start: u64,
    /// How the file is compressed (then it is one block, streamed).
    pub compression: Compression,
}

/// A CSV glob, opened: files, their common schema, and the blocks to read.
#[derive(Debug)]
pub struct CsvSource {
    /// The glob it was opened from.
    pub pattern: String,
    /// The files, sorted by path.
    pub files: Vec<CsvFile>,
    /// Every column, with its inferred or declared type.
    pub schema: SchemaRef,
    /// One block per partition.
    pub blocks: Vec<Block>,
    /// Field separator.
    pub delimiter: u8,
    /// The `strftime` format of each column that has one (by column index).
    pub date_formats: Vec<(usize, String)>,
    /// Which columns have a declared type (the others were inferred and may widen).
    pub declared: Vec<bool>,
    /// The longest record accepted.
    pub max_line_bytes: u64,
    /// Piece size for streaming compressed files.
    pub blocksize: u64,
    /// Per block: the parity of the quotes in its byte range, once known.
    quote_parity: Vec<OnceLock<bool>>,
    /// Per block: whether its start lies inside a quoted field, once known.
    quote_state: Vec<OnceLock<bool>>,
}

impl CsvSource {
    /// The file and 1-based line of row `row` (0-based, counting data rows) of
    /// block `block`, for error messages; counts the newlines before the block, so
    /// a quoted field spanning lines makes it approximate.
    pub fn line_of(&self, block: usize, row: usize) -> Result<(PathBuf, u64)> {
        let b = self
            .blocks
            .get(block)
            .ok_or_else(|| Error::Internal(format!("no block {block}")))?;
        let path = &self.files[b.file].path;
        let io = |e| Error::io(path, e);
        let mut f = std::fs::File::open(path).map_err(io)?;
        let mut before = vec![0u8; b.start as usize];
        std::io::Read::read_exact(&mut f, &mut before).map_err(io)?;
        let newlines = memchr::memchr_iter(b'\n', &before).count() as u64;
        // A block owns the lines that start in it: when `start` is inside a line,
        // its first row is the line after.
        let inside = b.start > self.files[b.file].data_start && before.last() != Some(&b'\n');
        Ok((path.clone(), newlines + u64::from(inside) + 1 + row as u64))
    }

    /// Expands the glob, reads every file's header, checks that they agree, infers
    /// column types from samples, and cuts the files into blocks. Reads no other rows.
    pub fn open(pattern: &str, opts: &CsvOptions) -> Result<CsvSource> {
        if opts.blocksize == 0 || opts.blocksize > (2u64 << 30) {
            return Err(Error::plan(
                "read_csv",
                format!(
                    "blocksize must be between 1 byte and 2 GiB, got {}",
                    opts.blocksize
                ),
            ));
        }
        if opts.max_line_bytes == 0 {
            return Err(Error::plan("read_csv", "max_line_bytes must be at least 1"));
        }
        let paths = super::glob::expand(pattern)?;
        let delimiter = match opts.delimiter {
            Some(d) => d,
            None => sniff_delimiter(&paths, opts)?,
        };
        let mut files = Vec::with_capacity(paths.len());
        let mut header: Option<(Vec<String>, PathBuf)> = None;
        for path in paths {
            let stamp = FileStamp::of(&path)?;
            let size = stamp.size;
            let compression = Compression::of(&path);
            let (names, data_start) = read_header(&path, compression, delimiter, opts)?;
            if let Some(names) = names {
                match &header {
                    None => header = Some((names, path.clone())),
                    Some((first, first_path)) if *first != names => {
                        return Err(Error::Malformed {
                            at: Location {
                                path: path.clone(),
                                line: 1,
                            },
                            reason: format!(
                                "header differs from {}'s: expected [{}], found [{}]",
                                first_path.display(),
                                first.join(", "),
                                names.join(", ")
                            ),
                        });
                    }
                    Some(_) => {}
                }
            }
            files.push(CsvFile {
                path,
                size,
                stamp,
                data_start,
                compression,
            });
        }
        let names = header.map(|(n, _)| dedupe_names(n)).unwrap_or_default();
        let nblocks: u64 = files
            .iter()
            .map(|f| {
                f.size
                    .saturating_sub(f.data_start)
                    .div_ceil(opts.blocksize)
                    .max(1)
            })
            .sum();
        crate::graph::check_partitions(
            "read_csv",
            &format!("blocksize {} bytes", opts.blocksize),
            usize::try_from(nblocks).unwrap_or(usize::MAX),
            "use a larger blocksize",
        )?;
        let schema = infer_schema(&files, &names, delimiter, opts)?;
        let blocks: Vec<Block> = files
            .iter()
            .enumerate()
            .flat_map(|(i, f)| match f.compression {
                Compression::None => blocks::split(i, f.data_start, f.size, opts.blocksize),
                // Streamed whole: the range is the compressed file's, for byte counts.
                _ => vec![Block {
                    file: i,
                    start: 0,
                    end: f.size,
                }],
            })
            .collect();
        let declared = names
            .iter()
            .map(|n| is_declared(opts, n).is_some())
            .collect();
        let date_formats = opts
            .date_formats
            .iter()
            .map(|(c, f)| (schema.index_of(c).expect("checked by inference"), f.clone()))
            .collect();
        Ok(CsvSource {
            pattern: pattern.to_string(),
            files,
            schema,
            quote_parity: blocks.iter().map(|_| OnceLock::new()).collect(),
            quote_state: blocks.iter().map(|_| OnceLock::new()).collect(),
            blocks,
            delimiter,
            date_formats,
            declared,
            max_line_bytes: opts.max_line_bytes,
            blocksize: opts.blocksize,
        })
    }

    /// Reads block `block` and decodes the columns in `projection` (indexes into
    /// [`CsvSource::schema`]), in that order.
    pub fn read_block(&self, block: usize, projection: &[usize]) -> Result<RecordBatch> {
        let b = self.blocks[block];
        let file = &self.files[b.file];
        if file.compression != Compression::None {
            return self.read_compressed(file, projection);
        }
        if let Some(batch) = self.read_streamed(block, projection, PIECE_BYTES) {
            return Ok(batch);
        }
        self.read_whole(block, projection)
    }

    /// Reads block `block` in pieces of about `piece` bytes through one buffer,
    /// tokenising and decoding each piece while it is in the core's cache (reading the
    /// whole block first costs a copy into fresh memory and a second trip through
    /// memory for the tokenizer). Only for the common block: uncompressed, no quote
    /// character, rows of the header's width without blank lines, values that fit
    /// their types. Anything else, errors included, gives `None`, and the caller reads
    /// the block whole ([`CsvSource::read_whole`]), which handles every case and says
    /// what is wrong with file, line and column.
    fn read_streamed(
        &self,
        block: usize,
        projection: &[usize],
        piece: usize,
    ) -> Option<RecordBatch> {
        use std::io::{Read, Seek, SeekFrom};
        let b = self.blocks[block];
        let file = &self.files[b.file];
        if file.compression != Compression::None || b.end <= b.start {
            return None;
        }
        let mut columns = projection
            .iter()
            .map(|&c| {
                let by_format = self.date_formats.iter().any(|(i, _)| *i == c);
                let to = self.schema.field(c).data_type();
                (!by_format).then(|| StreamedColumn::new(to)).flatten()
            })
            .collect::<Option<Vec<_>>>()?;
        let ncols = self.schema.fields().len();
        let mut slot_of = vec![None; ncols];
        for (slot, &c) in projection.iter().enumerate() {
            slot_of[c] = Some(slot);
        }
        let mut f = file.stamp.open(&file.path).ok()?;
        // One byte before `start` tells whether a record begins exactly at `start`.
        let begin = if b.start > file.data_start {
            b.start - 1
        } else {
            b.start
        };
        f.seek(SeekFrom::Start(begin)).ok()?;
        let piece = piece.max(1);
        let mut buf = vec![0u8; piece];
        let (mut len, mut pos) = (0usize, begin);
        // Until the first line end: the record the previous block owns.
        let mut skipping = begin < b.start;
        let mut fields = Fields::empty(projection.len());
        let mut rows = 0usize;
        let has_quote = |bytes: &[u8]| memchr::memchr(QUOTE, bytes).is_some();
        loop {
            if len == buf.len() {
                if len as u64 > self.max_line_bytes.saturating_add(piece as u64) {
                    return None;
                }
                buf.resize(2 * len, 0);
            }
            let n = f.read(&mut buf[len..]).ok()?;
            len += n;
            let eof = n == 0;
            if eof && pos + (len as u64) < file.stamp.size {
                // A short read: the whole read says so.
                return None;
            }
            let mut off = 0;
            if skipping {
                match memchr::memchr(b'\n', &buf[..len]) {
                    Some(i) => {
                        if has_quote(&buf[..i]) {
                            return None;
                        }
                        if pos + i as u64 + 1 >= b.end {
                            // No record starts in the block.
                            break;
                        }
                        skipping = false;
                        off = i + 1;
                    }
                    None if eof => break,
                    None => {
                        if has_quote(&buf[..len]) {
                            return None;
                        }
                        pos += len as u64;
                        len = 0;
                        continue;
                    }
                }
            }
            // `buf[off..len]` starts at a record start. The block's last record is
            // the one that holds byte `end - 1`.
            let last = (b.end - 1).saturating_sub(pos) as usize;
            let stop = if last < len {
                memchr::memchr(b'\n', &buf[last.max(off)..len]).map(|i| last.max(off) + i + 1)
            } else {
                None
            };
            let seg_end = match stop {
                Some(e) => e,
                None if eof => len,
                None => memchr::memrchr(b'\n', &buf[off..len]).map_or(off, |i| off + i + 1),
            };
            if seg_end > off {
                let seg = &buf[off..seg_end];
                if has_quote(seg)
                    || !super::tokenize::tokenize_regular(
                        seg,
                        self.delimiter,
                        &slot_of,
                        self.max_line_bytes,
                        &mut fields,
                    )
                {
                    return None;
                }
                if rows == 0 {
                    // Size the columns once, from the first piece's rows per byte.
                    let expect = (b.end - b.start) as usize / seg.len().max(1) + 1;
                    for (slot, col) in columns.iter_mut().enumerate() {
                        col.reserve(&fields.ranges[slot], seg, expect);
                    }
                }
                for (slot, col) in columns.iter_mut().enumerate() {
                    if !col.push(&fields.ranges[slot], seg) {
                        return None;
                    }
                }
                rows += fields.rows();
            }
            if stop.is_some() || eof {
                break;
            }
            if (len - seg_end) as u64 > self.max_line_bytes.saturating_add(1) {
                return None;
            }
            buf.copy_within(seg_end..len, 0);
            pos += seg_end as u64;
            len -= seg_end;
        }
        file.stamp.check(&file.path, &f).ok()?;
        // Every byte of the block's range was looked at: it holds no quote.
        let _ = self.quote_parity[block].set(false);
        if self.starts_inside_quotes(block).ok()? {
            return None;
        }
        let arrays = columns
            .into_iter()
            .map(|c| c.finish())
            .collect::<Option<Vec<_>>>()?;
        let schema = Arc::new(self.schema.project(projection).ok()?);
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(schema, arrays, &options).ok()
    }

    /// Reads block `block` whole, then decodes it: every case (quotes, blank lines,
    /// errors); see [`CsvSource::read_block`].
    fn read_whole(&self, block: usize, projection: &[usize]) -> Result<RecordBatch> {
        let b = self.blocks[block];
        let file = &self.files[b.file];
        // Guess that the block starts outside quotes, then check (see the module doc).
        let mut inside = false;
        loop {
            let records = match blocks::read_records(
                &file.path,
                Some(&file.stamp),
                file.data_start,
                b.start,
                b.end,
                self.max_line_bytes,
                Some((QUOTE, inside)),
            ) {
                Ok(r) => r,
                // A wrong guess can make a record look endless: check before blaming
                // the file.
                Err(e) if self.starts_inside_quotes(block)? == inside => return Err(e),
                Err(_) => {
                    inside = !inside;
                    continue;
                }
            };
            let _ = self.quote_parity[block].set(records.range_quote_parity);
            let path = &file.path;
            let at = |row_start: u64| Location {
                path: path.to_path_buf(),
                line: blocks::line_of_offset(path, records.offset + row_start),
            };
            let decoded =
                self.decode_hinted(&records.bytes, &at, projection, records.may_have_quotes);
            let actual = self.starts_inside_quotes(block)?;
            if actual == inside {
                return decoded;
            }
            inside = actual;
        }
    }

    /// Whether block `block` starts inside a quoted field: the parity of the quotes
    /// in the file's blocks before it. Walks back to the nearest block whose state is
    /// known and forward again, remembering each state on the way.
    fn starts_inside_quotes(&self, block: usize) -> Result<bool> {
        let first_of_file = |i: usize| i == 0 || self.blocks[i - 1].file != self.blocks[i].file;
        let mut j = block;
        let mut state = loop {
            if first_of_file(j) {
                break false;
            }
            if let Some(&s) = self.quote_state[j].get() {
                break s;
            }
            j -= 1;
        };
        while j < block {
            state ^= self.range_quote_parity(j)?;
            j += 1;
            let _ = self.quote_state[j].set(state);
        }
        Ok(state)
    }

    /// The parity of the quotes in block `i`'s byte range: recorded when the block
    /// was read, else counted now.
    fn range_quote_parity(&self, i: usize) -> Result<bool> {
        if let Some(&p) = self.quote_parity[i].get() {
            return Ok(p);
        }
        use std::io::{Read, Seek, SeekFrom};
        let b = self.blocks[i];
        let path = &self.files[b.file].path;
        let io = |e| Error::io(path, e);
        let mut f = std::fs::File::open(path).map_err(io)?;
        f.seek(SeekFrom::Start(b.start)).map_err(io)?;
        let mut reader = f.take(b.end - b.start);
        let mut buf = vec![0u8; (1 << 20).min((b.end - b.start) as usize).max(1)];
        let mut count = 0usize;
        loop {
            let n = reader.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            count += memchr::memchr_iter(QUOTE, &buf[..n]).count();
        }
        let p = count % 2 == 1;
        let _ = self.quote_parity[i].set(p);
        Ok(p)
    }

    /// Reads a compressed file, streamed through its decoder in pieces of about
    /// `blocksize` decompressed bytes, each decoded as it comes.
    fn read_compressed(&self, file: &CsvFile, projection: &[usize]) -> Result<RecordBatch> {
        use std::io::Read;
        let path = &file.path;
        let mut reader = file.compression.open_stamped(path, &file.stamp)?;
        std::io::copy(
            &mut (&mut reader).take(file.data_start),
            &mut std::io::sink(),
        )
        .map_err(|e| Error::io(path, e))?;
        let first_line = if file.data_start > 0 { 2 } else { 1 };
        let mut stream = RecordStream::new(
            path,
            reader,
            (file.data_start, first_line),
            Some(QUOTE),
            self.blocksize,
            self.max_line_bytes,
        );
        let mut batches = Vec::new();
        while let Some(piece) = stream.next_piece()? {
            let at = |row_start: u64| Location {
                path: path.clone(),
                line: piece.line_of(row_start as usize),
            };
            batches.push(self.decode_at(piece.bytes, &at, projection)?);
        }
        // A file changed while it streamed (a short read ends a decoder's stream).
        file.stamp.open(path)?;
        let schema = Arc::new(self.schema.project(projection)?);
        if batches.is_empty() {
            return Ok(RecordBatch::new_empty(schema));
        }
        let rows = batches.iter().map(|b| b.num_rows()).sum();
        if projection.is_empty() {
            let options = RecordBatchOptions::new().with_row_count(Some(rows));
            return Ok(RecordBatch::try_new_with_options(schema, vec![], &options)?);
        }
        Ok(arrow::compute::concat_batches(&schema, &batches)?)
    }

    /// Decodes whole records `bytes`, which start at byte `offset` of `path`.
    pub fn decode(
        &self,
        bytes: &[u8],
        path: &Path,
        offset: u64,
        projection: &[usize],
    ) -> Result<RecordBatch> {
        let at = |row_start: u64| Location {
            path: path.to_path_buf(),
            line: blocks::line_of_offset(path, offset + row_start),
        };
        self.decode_at(bytes, &at, projection)
    }

    /// Decodes whole records `bytes`; `at` gives the place of the record starting at
    /// a byte offset in `bytes` (called on error paths only).
    pub fn decode_at(
        &self,
        bytes: &[u8],
        at: &dyn Fn(u64) -> Location,
        projection: &[usize],
    ) -> Result<RecordBatch> {
        self.decode_hinted(bytes, at, projection, true)
    }

    fn decode_hinted(
        &self,
        bytes: &[u8],
        at: &dyn Fn(u64) -> Location,
        projection: &[usize],
        may_have_quotes: bool,
    ) -> Result<RecordBatch> {
        let ncols = self.schema.fields().len();
        let mut slot_of = vec![None; ncols];
        for (slot, &c) in projection.iter().enumerate() {
            slot_of[c] = Some(slot);
        }
        let fields = tokenize_hinted(
            bytes,
            self.delimiter,
            &slot_of,
            projection.len(),
            self.max_line_bytes,
            may_have_quotes,
        )
        .map_err(|e| tokenize_error(e, at, self.max_line_bytes))?;
        let out_schema = Arc::new(self.schema.project(projection)?);
        let mut columns = Vec::with_capacity(projection.len());
        for (slot, &c) in projection.iter().enumerate() {
            let field = self.schema.field(c);
            let format = self
                .date_formats
                .iter()
                .find(|(i, _)| *i == c)
                .map(|(_, f)| f.as_str());
            let decoded = match format {
                Some(f) => decode_formatted(&fields, bytes, slot, f),
                None => decode_column(&fields, bytes, slot, field.data_type()),
            };
            let column = decoded.map_err(|bad| {
                let row_start = fields.row_starts[bad.row] as u64;
                let range = fields.ranges[slot][bad.row];
                let raw = &fields.bytes(bytes)[range.0 as usize..range.1 as usize];
                let found = String::from_utf8_lossy(raw).into_owned();
                let inferred = !self.declared[c] && format.is_none();
                if inferred && !bad.not_utf8 {
                    // Too narrow a guess, not bad data: widen over the whole block.
                    let mut t = Inferred::of(field.data_type());
                    let data = fields.bytes(bytes);
                    for &(s, e) in &fields.ranges[slot] {
                        t = t.widen(&data[s as usize..e as usize]);
                    }
                    Error::Widen(Box::new(Widening {
                        at: at(row_start),
                        pattern: self.pattern.clone(),
                        column: field.name().clone(),
                        from: field.data_type().clone(),
                        to: t.data_type(),
                        found,
                    }))
                } else if bad.not_utf8 {
                    Error::Malformed {
                        at: at(row_start),
                        reason: format!(
                            "column {:?}: the value is not valid UTF-8: {found:?}",
                            field.name()
                        ),
                    }
                } else {
                    Error::Parse(Box::new(crate::error::ParseError {
                        at: at(row_start),
                        column: field.name().clone(),
                        expected: field.data_type().clone(),
                        found,
                        hint: match format {
                            Some(f) => format!("the column's date format is {f:?}"),
                            None => format!(
                                "declare the column's type, e.g. --dtype {}=string (Rust: .with_dtype({:?}, DataType::Utf8))",
                                field.name(),
                                field.name()
                            ),
                        },
                    }))
                }
            })?;
            columns.push(column);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(fields.rows()));
        Ok(RecordBatch::try_new_with_options(
            out_schema, columns, &options,
        )?)
    }
}

fn tokenize_error(e: TokenizeError, at: &dyn Fn(u64) -> Location, max_line_bytes: u64) -> Error {
    match e {
        TokenizeError::FieldCount {
            row_start,
            expected,
            found,
        } => Error::Malformed {
            at: at(row_start),
            reason: format!("expected {expected} fields (as in the header), found {found}"),
        },
        TokenizeError::Csv { row_start, message } => Error::Malformed {
            at: at(row_start),
            reason: message,
        },
        TokenizeError::TooLong { row_start } => Error::Malformed {
            at: at(row_start),
            reason: blocks::too_long_reason(max_line_bytes),
        },
        TokenizeError::TooLarge(n) => Error::plan(
            "read_csv",
            format!("a block of {n} bytes is too large; use a smaller blocksize"),
        ),
    }
}

/// Reads the header line of `path`: the column names (None for an empty file) and
/// the offset of the first data byte (in the decompressed text).
fn read_header(
    path: &Path,
    compression: Compression,
    delimiter: u8,
    opts: &CsvOptions,
) -> Result<(Option<Vec<String>>, u64)> {
    let (line, data_start) = first_line(path, compression, opts.max_line_bytes)?;
    let line = line.strip_suffix(b"\r").unwrap_or(&line);
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    if line.is_empty() {
        return Ok((None, data_start));
    }
    let header_error = |reason: String| Error::Malformed {
        at: Location {
            path: path.to_path_buf(),
            line: 1,
        },
        reason,
    };
    let text = std::str::from_utf8(line).map_err(|_| {
        header_error(match compression {
            Compression::None => "the header is not valid UTF-8".into(),
            _ => "the header is not valid UTF-8 (after decompression)".into(),
        })
    })?;
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut record = ::csv::StringRecord::new();
    reader
        .read_record(&mut record)
        .map_err(|e| header_error(format!("cannot read the header: {e}")))?;
    Ok((
        Some(record.iter().map(|s| s.trim().to_string()).collect()),
        data_start,
    ))
}

/// The delimiter of a glob whose delimiter was not given: tab for `.tsv` (and
/// `.tsv.gz`, ...), else the candidate among `,`, tab, `;` and `|` that splits the
/// first file's header and first lines into the same number (more than one) of
/// fields, preferring more fields; `,` when none does.
fn sniff_delimiter(paths: &[PathBuf], opts: &CsvOptions) -> Result<u8> {
    let Some(path) = paths.first() else {
        return Ok(b',');
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let stem = name
        .trim_end_matches(".gz")
        .trim_end_matches(".zst")
        .trim_end_matches(".zstd");
    if stem.ends_with(".tsv") || stem.ends_with(".tab") {
        return Ok(b'\t');
    }
    // The first piece of the file (64 KiB, whole records).
    let compression = Compression::of(path);
    let reader = compression.open(path)?;
    let mut stream = RecordStream::new(
        path,
        reader,
        (0, 1),
        Some(QUOTE),
        64 << 10,
        opts.max_line_bytes,
    );
    let Some(piece) = stream.next_piece()? else {
        return Ok(b',');
    };
    let sample = piece
        .bytes
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(piece.bytes);
    let mut best: Option<(usize, u8)> = None;
    for d in [b',', b'\t', b';', b'|'] {
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(d)
            .from_reader(sample);
        let mut widths = Vec::new();
        let mut record = ::csv::ByteRecord::new();
        while widths.len() < 50 {
            match reader.read_byte_record(&mut record) {
                Ok(true) if record.len() == 1 && record[0].is_empty() => {}
                Ok(true) => widths.push(record.len()),
                _ => break,
            }
        }
        let Some(&w) = widths.first() else { continue };
        if w > 1 && widths.iter().all(|&x| x == w) && best.is_none_or(|(bw, _)| w > bw) {
            best = Some((w, d));
        }
    }
    Ok(best.map_or(b',', |(_, d)| d))
}

/// Repeated column names get `.1`, `.2`, ... as pandas does; empty ones `Unnamed: i`.
/// Linear in the number of columns: each name is looked up in a set, and each
/// repeated base remembers the next suffix to try.
fn dedupe_names(names: Vec<String>) -> Vec<String> {
    use std::collections::{HashMap, HashSet};
    let mut taken: HashSet<String> = HashSet::with_capacity(names.len());
    let mut next_suffix: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for (i, n) in names.into_iter().enumerate() {
        let n = if n.is_empty() {
            format!("Unnamed: {i}")
        } else {
            n
        };
        let candidate = if taken.contains(&n) {
            let k = next_suffix.entry(n.clone()).or_insert(1);
            loop {
                let c = format!("{n}.{k}");
                *k += 1;
                if !taken.contains(&c) {
                    break c;
                }
            }
        } else {
            n
        };
        taken.insert(candidate.clone());
        out.push(candidate);
    }
    out
}

/// The declared type of column `name`, if any: `dtypes`, else a timestamp when it
/// is in `parse_dates` or has a date format.
fn is_declared(opts: &CsvOptions, name: &str) -> Option<DataType> {
    if let Some((_, t)) = opts.dtypes.iter().rev().find(|(n, _)| n == name) {
        return Some(t.clone());
    }
    (opts.parse_dates.iter().any(|n| n == name) || opts.date_formats.iter().any(|(n, _)| n == name))
        .then_some(DataType::Timestamp(TimeUnit::Nanosecond, None))
}

fn infer_schema(
    files: &[CsvFile],
    names: &[String],
    delimiter: u8,
    opts: &CsvOptions,
) -> Result<SchemaRef> {
    for (name, _) in &opts.dtypes {
        if !names.contains(name) {
            return Err(unknown(names, name, "dtype"));
        }
    }
    for name in &opts.parse_dates {
        if !names.contains(name) {
            return Err(unknown(names, name, "parse_dates"));
        }
    }
    for (name, _) in &opts.date_formats {
        if !names.contains(name) {
            return Err(unknown(names, name, "date_format"));
        }
    }
    let declared = |name: &str| is_declared(opts, name);
    let to_infer: Vec<usize> = (0..names.len())
        .filter(|&c| declared(&names[c]).is_none())
        .collect();
    let mut inferred = vec![Inferred::Null; names.len()];
    for (name, t) in &opts.widened {
        if let Some(c) = names.iter().position(|n| n == name) {
            inferred[c] = inferred[c].join(Inferred::of(t));
        }
    }
    if !to_infer.is_empty() {
        let mut slot_of = vec![None; names.len()];
        for (slot, &c) in to_infer.iter().enumerate() {
            slot_of[c] = Some(slot);
        }
        let mut widen = |bytes: &[u8], fields: &Fields| {
            let data = fields.bytes(bytes);
            for (slot, &c) in to_infer.iter().enumerate() {
                let mut t = inferred[c];
                for &(s, e) in &fields.ranges[slot] {
                    t = t.widen(&data[s as usize..e as usize]);
                    if t == Inferred::Utf8 {
                        break;
                    }
                }
                inferred[c] = t;
            }
        };
        let tok = |bytes: &[u8]| {
            tokenize(
                bytes,
                delimiter,
                &slot_of,
                to_infer.len(),
                opts.max_line_bytes,
            )
        };
        for fi in sample_files(files.len(), opts.sample_files) {
            let f = &files[fi];
            if f.compression != Compression::None {
                // The first piece of the decompressed text.
                use std::io::Read;
                let mut reader = f.compression.open_stamped(&f.path, &f.stamp)?;
                std::io::copy(&mut (&mut reader).take(f.data_start), &mut std::io::sink())
                    .map_err(|e| Error::io(&f.path, e))?;
                let mut stream = RecordStream::new(
                    &f.path,
                    reader,
                    (f.data_start, 2),
                    Some(QUOTE),
                    opts.sample_bytes,
                    opts.max_line_bytes,
                );
                if let Some(piece) = stream.next_piece()? {
                    let at = |row_start: u64| Location {
                        path: f.path.clone(),
                        line: piece.line_of(row_start as usize),
                    };
                    let fields = tok(piece.bytes)
                        .map_err(|e| tokenize_error(e, &at, opts.max_line_bytes))?;
                    widen(piece.bytes, &fields);
                }
                continue;
            }
            let data = f.size.saturating_sub(f.data_start);
            // The start of the file: its quote state is known.
            let end = f.data_start + data.min(opts.sample_bytes);
            let r = blocks::read_records(
                &f.path,
                Some(&f.stamp),
                f.data_start,
                f.data_start,
                end,
                opts.max_line_bytes,
                Some((QUOTE, false)),
            )?;
            let at = |row_start: u64| Location {
                path: f.path.clone(),
                line: blocks::line_of_offset(&f.path, r.offset + row_start),
            };
            let fields = tok(&r.bytes).map_err(|e| tokenize_error(e, &at, opts.max_line_bytes))?;
            widen(&r.bytes, &fields);
            if data > 2 * opts.sample_bytes {
                // The middle: its quote state is unknown without reading the first
                // half, so try both and keep a reading that tokenizes; a guess, as
                // is all inference (a wrong type widens later).
                let mid = f.data_start + data / 2;
                for inside in [false, true] {
                    let r = blocks::read_records(
                        &f.path,
                        Some(&f.stamp),
                        f.data_start,
                        mid,
                        mid + opts.sample_bytes,
                        opts.max_line_bytes,
                        Some((QUOTE, inside)),
                    );
                    if let Ok(r) = r {
                        if let Ok(fields) = tok(&r.bytes) {
                            widen(&r.bytes, &fields);
                            break;
                        }
                    }
                }
            }
        }
    }
    let fields: Vec<Field> = names
        .iter()
        .enumerate()
        .map(|(c, n)| {
            let t = declared(n).unwrap_or_else(|| inferred[c].data_type());
            Field::new(n, t, true)
        })
        .collect();
    for f in &fields {
        if decoder_type(f.data_type()).is_none() {
            return Err(Error::plan(
                "read_csv",
                format!(
                    "column {:?}: cannot read CSV values as {}; use one of {}",
                    f.name(),
                    f.data_type(),
                    crate::expr::TYPE_NAMES
                ),
            ));
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

fn unknown(names: &[String], name: &str, what: &str) -> Error {
    Error::plan(
        "read_csv",
        format!(
            "{what}: unknown column {name:?}; the columns are: {}",
            names.join(", ")
        ),
    )
}

/// The type a column is decoded as before a final cast to its declared type.
fn decoder_type(t: &DataType) -> Option<DataType> {
    use DataType::*;
    Some(match t {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => Int64,
        Float16 | Float32 | Float64 => Float64,
        Utf8 | LargeUtf8 | Utf8View | Dictionary(..) => Utf8,
        Boolean => Boolean,
        Date32 | Date64 => Date32,
        Timestamp(..) => Timestamp(TimeUnit::Nanosecond, None),
        _ => return None,
    })
}

/// A timestamp column in a `strftime` format (chrono's parser; a date-only format
/// gives midnight). Slower than the ISO fast path, so only used when asked for.
fn decode_formatted(
    fields: &Fields,
    block: &[u8],
    slot: usize,
    format: &str,
) -> Result<ArrayRef, BadValue> {
    let data = fields.bytes(block);
    let has_time = ["%H", "%I", "%M", "%S", "%T", "%R", "%s", "%c"]
        .iter()
        .any(|d| format.contains(d));
    let mut values = Vec::with_capacity(fields.ranges[slot].len());
    let mut nulls = NullBufferBuilder::new(fields.ranges[slot].len());
    for (row, r) in fields.ranges[slot].iter().enumerate() {
        let v = &data[r.0 as usize..r.1 as usize];
        if v.is_empty() || is_na(v) {
            values.push(0);
            nulls.append_null();
            continue;
        }
        let text = std::str::from_utf8(v).map_err(|_| BadValue {
            row,
            not_utf8: true,
        })?;
        let parsed = if has_time {
            chrono::NaiveDateTime::parse_from_str(text, format).ok()
        } else {
            chrono::NaiveDate::parse_from_str(text, format)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        };
        let ns = parsed.and_then(|t| t.and_utc().timestamp_nanos_opt());
        match ns {
            Some(ns) => {
                values.push(ns);
                nulls.append_non_null();
            }
            None => {
                return Err(BadValue {
                    row,
                    not_utf8: false,
                })
            }
        }
    }
    Ok(Arc::new(TimestampNanosecondArray::new(
        values.into(),
        nulls.finish(),
    )))
}

/// A value that did not decode: which row, and whether it was a UTF-8 problem.
struct BadValue {
    row: usize,
    not_utf8: bool,
}

fn decode_column(
    fields: &Fields,
    block: &[u8],
    slot: usize,
    to: &DataType,
) -> Result<ArrayRef, BadValue> {
    let data = fields.bytes(block);
    let ranges = &fields.ranges[slot];
    let value = |r: &(u32, u32)| &data[r.0 as usize..r.1 as usize];
    let bad = |row| BadValue {
        row,
        not_utf8: false,
    };
    let decode_as = decoder_type(to).expect("types were checked when the source was opened");
    let array: ArrayRef = match decode_as {
        DataType::Int64 => {
            let (values, nulls) = typed(ranges, data, whole(parse_i64)).map_err(bad)?;
            Arc::new(Int64Array::new(values.into(), nulls))
        }
        DataType::Float64 => {
            let (values, nulls) = typed(ranges, data, parse_f64_in).map_err(bad)?;
            Arc::new(Float64Array::new(values.into(), nulls))
        }
        DataType::Timestamp(..) => {
            let (values, nulls) = typed(ranges, data, whole(parse_timestamp_ns)).map_err(bad)?;
            Arc::new(TimestampNanosecondArray::new(values.into(), nulls))
        }
        DataType::Date32 => {
            let (values, nulls) = typed(ranges, data, whole(parse_date32)).map_err(bad)?;
            Arc::new(Date32Array::new(values.into(), nulls))
        }
        DataType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(ranges.len());
            for (row, r) in ranges.iter().enumerate() {
                let v = value(r);
                if v.is_empty() || is_na(v) {
                    b.append_null();
                } else {
                    b.append_value(parse_bool(v).ok_or(BadValue {
                        row,
                        not_utf8: false,
                    })?);
                }
            }
            Arc::new(b.finish())
        }
        DataType::Utf8 => Arc::new(decode_utf8(ranges, data)?),
        other => unreachable!("decoder_type gave {other}"),
    };
    to_declared(array, to)
}

/// `array`, as decoded, cast to the column's declared type (a narrower integer or
/// float, a dictionary, ...); a value that does not fit is a [`BadValue`].
fn to_declared(array: ArrayRef, to: &DataType) -> Result<ArrayRef, BadValue> {
    if array.data_type() == to {
        Ok(array)
    } else {
        // A declared narrower type: values that do not fit are errors, not wraps.
        let opts = arrow::compute::CastOptions {
            safe: false,
            ..Default::default()
        };
        arrow::compute::cast_with_options(&array, to, &opts).or_else(|_| {
            let casted = cast(&array, to).map_err(|_| BadValue {
                row: 0,
                not_utf8: false,
            })?;
            let row = (0..array.len())
                .find(|&i| array.is_valid(i) && casted.is_null(i))
                .unwrap_or(0);
            Err(BadValue {
                row,
                not_utf8: false,
            })
        })
    }
}

use arrow::array::Array;

/// A text column: the fields' bytes copied into one values buffer, validated as
/// UTF-8 once for the whole column (Arrow checks the buffer and that every offset
/// falls on a character boundary, which together mean every field is valid), not
/// once per field. Empty fields are null.
fn decode_utf8(ranges: &[(u32, u32)], data: &[u8]) -> Result<arrow::array::StringArray, BadValue> {
    let total: usize = ranges.iter().map(|r| (r.1 - r.0) as usize).sum();
    let too_big = || BadValue {
        row: 0,
        not_utf8: false,
    };
    i32::try_from(total).map_err(|_| too_big())?;
    let mut values = Vec::with_capacity(total);
    let mut offsets = Vec::with_capacity(ranges.len() + 1);
    offsets.push(0i32);
    let mut nulls = NullBufferBuilder::new(ranges.len());
    for r in ranges {
        let v = &data[r.0 as usize..r.1 as usize];
        values.extend_from_slice(v);
        offsets.push(values.len() as i32);
        if v.is_empty() {
            nulls.append_null();
        } else {
            nulls.append_non_null();
        }
    }
    arrow::array::StringArray::try_new(
        arrow::buffer::OffsetBuffer::new(offsets.into()),
        values.into(),
        nulls.finish(),
    )
    .map_err(|_| {
        // Only now look for the field at fault.
        let row = ranges
            .iter()
            .position(|r| std::str::from_utf8(&data[r.0 as usize..r.1 as usize]).is_err())
            .unwrap_or(0);
        BadValue {
            row,
            not_utf8: true,
        }
    })
}

/// One typed loop: parse every field, nulls for empty and NA fields. `parse` gets
/// the data and a field's range (see [`whole`]).
fn typed<T: Default + Copy>(
    ranges: &[(u32, u32)],
    data: &[u8],
    parse: impl Fn(&[u8], (u32, u32)) -> Option<T>,
) -> Result<(Vec<T>, Option<arrow::buffer::NullBuffer>), usize> {
    let mut values = Vec::with_capacity(ranges.len());
    let mut nulls = NullBufferBuilder::new(ranges.len());
    typed_into(ranges, data, parse, &mut values, &mut nulls)?;
    Ok((values, nulls.finish()))
}

/// [`typed`], appending to `values` and `nulls`; `Err(row)` names the field (by its
/// index in `ranges`) that did not parse. Generic in `parse` (not a function
/// pointer), so the parser's fast path is compiled into the loop.
fn typed_into<T: Default + Copy>(
    ranges: &[(u32, u32)],
    data: &[u8],
    parse: impl Fn(&[u8], (u32, u32)) -> Option<T>,
    values: &mut Vec<T>,
    nulls: &mut NullBufferBuilder,
) -> Result<(), usize> {
    values.reserve(ranges.len());
    for (row, &r) in ranges.iter().enumerate() {
        if let Some(x) = parse(data, r) {
            values.push(x);
            nulls.append_non_null();
            continue;
        }
        let v = &data[r.0 as usize..r.1 as usize];
        if !v.is_empty() && !is_na(v) {
            return Err(row);
        }
        values.push(T::default());
        nulls.append_null();
    }
    Ok(())
}

/// A parser of one field's bytes as a parser of a range of the data, for [`typed`].
fn whole<T>(parse: impl Fn(&[u8]) -> Option<T>) -> impl Fn(&[u8], (u32, u32)) -> Option<T> {
    move |data, r| parse(&data[r.0 as usize..r.1 as usize])
}

/// Bytes read at a time by [`CsvSource::read_streamed`]: a piece, its fields and
/// its decoded values stay in a core's cache.
pub(crate) const PIECE_BYTES: usize = 256 << 10;

/// The values of one projected column decoded so far, piece by piece.
enum Sink {
    I64(Vec<i64>),
    F64(Vec<f64>),
    Timestamp(Vec<i64>),
    Date(Vec<i32>),
    Utf8 { values: Vec<u8>, offsets: Vec<i32> },
}

/// One projected column of a streamed read: its values, nulls and declared type.
struct StreamedColumn {
    sink: Sink,
    nulls: NullBufferBuilder,
    to: DataType,
}

impl StreamedColumn {
    /// `None` for the types only the whole-block read decodes (booleans).
    fn new(to: &DataType) -> Option<StreamedColumn> {
        let sink = match decoder_type(to)? {
            DataType::Int64 => Sink::I64(Vec::new()),
            DataType::Float64 => Sink::F64(Vec::new()),
            DataType::Timestamp(..) => Sink::Timestamp(Vec::new()),
            DataType::Date32 => Sink::Date(Vec::new()),
            DataType::Utf8 => Sink::Utf8 {
                values: Vec::new(),
                offsets: vec![0],
            },
            _ => return None,
        };
        Some(StreamedColumn {
            sink,
            nulls: NullBufferBuilder::new(0),
            to: to.clone(),
        })
    }

    /// Makes room for `times` as many fields as `ranges` (of `data`) holds.
    fn reserve(&mut self, ranges: &[(u32, u32)], data: &[u8], times: usize) {
        let n = ranges.len().saturating_mul(times);
        match &mut self.sink {
            Sink::I64(v) | Sink::Timestamp(v) => v.reserve(n),
            Sink::F64(v) => v.reserve(n),
            Sink::Date(v) => v.reserve(n),
            Sink::Utf8 { values, offsets } => {
                let bytes: usize = ranges.iter().map(|r| (r.1 - r.0) as usize).sum();
                values.reserve(
                    bytes
                        .saturating_mul(times)
                        .min(data.len().saturating_mul(times)),
                );
                offsets.reserve(n);
            }
        }
    }

    /// Appends the fields `ranges` of `data`; false when one does not fit.
    fn push(&mut self, ranges: &[(u32, u32)], data: &[u8]) -> bool {
        let nulls = &mut self.nulls;
        match &mut self.sink {
            Sink::I64(v) => typed_into(ranges, data, whole(parse_i64), v, nulls).is_ok(),
            Sink::F64(v) => typed_into(ranges, data, parse_f64_in, v, nulls).is_ok(),
            Sink::Timestamp(v) => {
                typed_into(ranges, data, whole(parse_timestamp_ns), v, nulls).is_ok()
            }
            Sink::Date(v) => typed_into(ranges, data, whole(parse_date32), v, nulls).is_ok(),
            Sink::Utf8 { values, offsets } => {
                offsets.reserve(ranges.len());
                for r in ranges {
                    let v = &data[r.0 as usize..r.1 as usize];
                    values.extend_from_slice(v);
                    let Ok(end) = i32::try_from(values.len()) else {
                        return false;
                    };
                    offsets.push(end);
                    if v.is_empty() {
                        nulls.append_null();
                    } else {
                        nulls.append_non_null();
                    }
                }
                true
            }
        }
    }

    /// The column, as its declared type; `None` when a value does not fit it (or a
    /// text column is not UTF-8).
    fn finish(mut self) -> Option<ArrayRef> {
        let nulls = self.nulls.finish();
        let array: ArrayRef = match self.sink {
            Sink::I64(v) => Arc::new(Int64Array::new(v.into(), nulls)),
            Sink::F64(v) => Arc::new(Float64Array::new(v.into(), nulls)),
            Sink::Timestamp(v) => Arc::new(TimestampNanosecondArray::new(v.into(), nulls)),
            Sink::Date(v) => Arc::new(Date32Array::new(v.into(), nulls)),
            Sink::Utf8 { values, offsets } => Arc::new(
                arrow::array::StringArray::try_new(
                    arrow::buffer::OffsetBuffer::new(offsets.into()),
                    values.into(),
                    nulls,
                )
                .ok()?,
            ),
        };
        to_declared(array, &self.to).ok()
    }
}

/// True for the NA spellings pandas reads as missing.
pub fn is_na(v: &[u8]) -> bool {
    matches!(
        v,
        b"NA"
            | b"N/A"
            | b"NaN"
            | b"nan"
            | b"-nan"
            | b"-NaN"
            | b"null"
            | b"NULL"
            | b"None"
            | b"<NA>"
            | b"#N/A"
            | b"n/a"
            | b"#NA"
            | b"NULL\r"
    )
}

/// A whole number in 64 bits.
pub fn parse_i64(v: &[u8]) -> Option<i64> {
    // The common shape, `-?[0-9]{1,18}`, in one loop (it cannot overflow); the rest
    // (a `+`, more digits, anything odd) as lexical reads it.
    let (negative, digits) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, v),
    };
    if !digits.is_empty() && digits.len() <= 18 {
        let mut x = 0i64;
        for &b in digits {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return lexical_core::parse::<i64>(v).ok();
            }
            x = x * 10 + i64::from(d);
        }
        return Some(if negative { -x } else { x });
    }
    lexical_core::parse::<i64>(v).ok()
}

/// Powers of ten that `f64` holds exactly.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// `b` in each byte of a word: `LANES * b`.
const LANES: u64 = u64::from_le_bytes([1; 8]);

/// The common decimal shape `-?[0-9]+(\.[0-9]+)?` with at most 15 digits, exactly:
/// the digits make an integer below 2^53 and the power of ten is exact, so one
/// division rounds correctly, to the value a full parser gives. `None` for any
/// other shape.
///
/// This one takes numbers of 1 to 8 bytes after the sign (`0.720972`, `-12.5`,
/// `42`), [`short_decimal_16`] those of 9 to 16. `window` holds the bytes after
/// the sign, the first in the lowest byte; only the first `len` are the number's
/// (the rest may be anything). The bytes are looked at together (SWAR): one mask of
/// those that are not digits finds the point, which is squeezed out, and the digits
/// combine in a few multiplications ([`eight_digits`]). No branch depends on a digit
/// or on the sign: a loop over the bytes, with a branch on each, took half again as
/// long (decoding is most of a query's time, and this is most of decoding floats).
#[inline(always)]
fn short_decimal_8(window: u64, len: usize, negative: bool) -> Option<f64> {
    if len.wrapping_sub(1) >= 8 {
        return None;
    }
    // The number's bytes that are not digits.
    let (x, odd) = digit_values(window);
    let odd = odd & (u64::MAX >> (64 - 8 * len));
    let (digits, ndigits, frac) = if odd == 0 {
        (x, len, 0)
    } else {
        // One odd byte, a point with a digit on each side; the digits after it
        // move down a byte to close the gap.
        let k = (odd.trailing_zeros() / 8) as usize;
        if odd & (odd - 1) != 0 || k == 0 || k + 1 >= len || (window >> (8 * k)) as u8 != b'.' {
            return None;
        }
        let below = (1u64 << (8 * k)) - 1;
        ((x & below) | ((x >> 8) & !below), len - 1, len - 1 - k)
    };
    // Right-aligned: whatever followed the number shifts out at the top, and zero
    // digits (leading zeros) come in at the bottom.
    let m = eight_digits(digits << (8 * (8 - ndigits)));
    Some(scaled(m, frac, negative))
}

/// [`short_decimal_8`] for numbers of 9 to 16 bytes after the sign, in two words:
/// `low` is all the number's, `high` holds the rest. At least eight digits, so the
/// first eight (in `low` once the point is out) make one [`eight_digits`].
#[inline(always)]
fn short_decimal_16(low: u64, high: u64, len: usize, negative: bool) -> Option<f64> {
    const POW10_INT: [u64; 8] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000];
    if len.wrapping_sub(9) >= 8 {
        return None;
    }
    let (xl, odd_low) = digit_values(low);
    let (xh, odd_high) = digit_values(high);
    let odd_high = odd_high & (u64::MAX >> (128 - 8 * len));
    let (low_digits, high_digits, ndigits, frac) = if odd_low | odd_high == 0 {
        (xl, xh, len, 0)
    } else if odd_high == 0 {
        // The point in the low word, at `k` (not 0): the high word's first digit
        // moves into the low word's top byte.
        let k = (odd_low.trailing_zeros() / 8) as usize;
        if odd_low & (odd_low - 1) != 0 || k == 0 || (low >> (8 * k)) as u8 != b'.' {
            return None;
        }
        let below = (1u64 << (8 * k)) - 1;
        let l = (xl & below) | ((xl >> 8) & !below) | (xh << 56);
        (l, xh >> 8, len - 1, len - 1 - k)
    } else if odd_low == 0 {
        // The point in the high word, at `8 + k`, with a digit after it.
        let k = (odd_high.trailing_zeros() / 8) as usize;
        if odd_high & (odd_high - 1) != 0 || k + 9 >= len || (high >> (8 * k)) as u8 != b'.' {
            return None;
        }
        let below = (1u64 << (8 * k)) - 1;
        (
            xl,
            (xh & below) | ((xh >> 8) & !below),
            len - 1,
            len - 9 - k,
        )
    } else {
        return None;
    };
    if ndigits > 15 {
        return None;
    }
    // The high word's `ndigits - 8` digits, right-aligned (two shifts: none of
    // them is a shift by 64 when there are none).
    let high = high_digits << (8 * (15 - ndigits)) << 8;
    let m = eight_digits(low_digits) * POW10_INT[ndigits - 8] + eight_digits(high);
    Some(scaled(m, frac, negative))
}

/// The first eight bytes of `bytes` as a word, the first in the lowest byte.
#[inline(always)]
fn word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// A word's bytes as digit values (a digit's byte becomes 0 to 9, any other byte 10
/// or more), and 0x80 in each byte that is not a digit. Exact per byte: with its
/// high bit cleared, a byte plus 0x76 stays below 0x100, so nothing carries.
#[inline(always)]
fn digit_values(w: u64) -> (u64, u64) {
    let x = w ^ (LANES * 0x30);
    (
        x,
        (((x & (LANES * 0x7f)) + LANES * 0x76) | x) & (LANES * 0x80),
    )
}

/// `m / 10^frac`, negated when `negative`. `m` is below 2^53, so it converts
/// exactly, and as a signed integer in one instruction (x86-64 has no unsigned
/// conversion). The quotient is not negative: setting its sign bit negates it (-0
/// too), without a branch on the sign, which random data mispredicts half the time.
#[inline(always)]
fn scaled(m: u64, frac: usize, negative: bool) -> f64 {
    let x = m as i64 as f64 / POW10[frac];
    f64::from_bits(x.to_bits() | u64::from(negative) << 63)
}

/// The number that eight digits make, given as byte values 0 to 9 with the most
/// significant in the lowest byte: neighbours combine into pairs (each below 100,
/// so no byte carries into the next), then two multiplications place the four pairs.
#[inline(always)]
fn eight_digits(v: u64) -> u64 {
    const PAIRS: u64 = 0x0000_00ff_0000_00ff;
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    // Pairs 0 and 2 times 10^6 and 10^2, pairs 1 and 3 times 10^4 and 1; the
    // sum lands in the upper half (the products above 2^64 are dropped).
    (v & PAIRS)
        .wrapping_mul(100 + (1_000_000 << 32))
        .wrapping_add(((v >> 16) & PAIRS).wrapping_mul(1 + (10_000 << 32)))
        >> 32
}

/// A number; `inf`, `-Infinity` and friends too. NaN spellings are NA (null), not NaN.
pub fn parse_f64(v: &[u8]) -> Option<f64> {
    let negative = v.first() == Some(&b'-');
    let s = &v[usize::from(negative)..];
    if s.len() <= 16 {
        let mut window = [0u8; 16];
        window[..s.len()].copy_from_slice(s);
        let short = if s.len() <= 8 {
            short_decimal_8(word(&window), s.len(), negative)
        } else {
            short_decimal_16(word(&window), word(&window[8..]), s.len(), negative)
        };
        if short.is_some() {
            return short;
        }
    }
    parse_f64_general(v)
}

/// [`parse_f64`] of the field `data[r.0..r.1]`, the typed loop's form: the window is
/// loaded straight from `data` when `data` holds it (all fields but the last few of
/// a block), without a copy into a padded buffer.
#[inline(always)]
fn parse_f64_in(data: &[u8], r: (u32, u32)) -> Option<f64> {
    let (from, to) = (r.0 as usize, r.1 as usize);
    let negative = from < to && data[from] == b'-';
    let p = from + usize::from(negative);
    let len = to - p;
    let short = if len <= 8 {
        let Some(w) = data.get(p..p + 8) else {
            return parse_f64(&data[from..to]);
        };
        short_decimal_8(word(w), len, negative)
    } else {
        let Some(w) = data.get(p..p + 16) else {
            return parse_f64(&data[from..to]);
        };
        short_decimal_16(word(w), word(&w[8..]), len, negative)
    };
    match short {
        Some(x) => Some(x),
        None => parse_f64_general(&data[from..to]),
    }
}

/// [`parse_f64`] past the short decimal shape: exponents, long numbers, infinities.
/// Out of line, so the typed loop around the fast path stays small.
#[inline(never)]
fn parse_f64_general(v: &[u8]) -> Option<f64> {
    match lexical_core::parse::<f64>(v) {
        Ok(x) if !x.is_nan() => Some(x),
        Ok(_) => None,
        Err(_) => std::str::from_utf8(v)
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| !x.is_nan()),
    }
}

/// `true` / `false` in the spellings pandas accepts.
pub fn parse_bool(v: &[u8]) -> Option<bool> {
    match v {
        b"true" | b"True" | b"TRUE" => Some(true),
        b"false" | b"False" | b"FALSE" => Some(false),
        _ => None,
    }
}

fn digits<const N: usize>(v: &[u8]) -> Option<u32> {
    let mut x = 0u32;
    for &b in v.get(..N)? {
        if !b.is_ascii_digit() {
            return None;
        }
        x = x * 10 + (b - b'0') as u32;
    }
    Some(x)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

thread_local! {
    /// The last date [`parse_ymd_cached`] parsed on this thread: its ten bytes
    /// (as two words) and its day number.
    static LAST_DATE: std::cell::Cell<Option<(u64, u16, i64)>> = const { std::cell::Cell::new(None) };
}

/// [`parse_ymd`], remembering the last date parsed: dates and timestamps in a
/// column mostly share their date with the row before (a day of per-second rows has one), and
/// comparing ten bytes costs less than parsing them and counting the days (a
/// tenth of the CPU of an hourly resample of per-second rows).
fn parse_ymd_cached(v: &[u8]) -> Option<i64> {
    let (Some(a), Some(b)) = (v.get(..8), v.get(8..10)) else {
        return None;
    };
    let key = (
        u64::from_le_bytes(a.try_into().expect("8 bytes")),
        u16::from_le_bytes(b.try_into().expect("2 bytes")),
    );
    LAST_DATE.with(|last| match last.get() {
        Some((x, y, days)) if (x, y) == key => Some(days),
        _ => {
            let days = parse_ymd(v)?;
            last.set(Some((key.0, key.1, days)));
            Some(days)
        }
    })
}

fn parse_ymd(v: &[u8]) -> Option<i64> {
    if v.len() < 10 || v[4] != b'-' || v[7] != b'-' {
        return None;
    }
    let (y, m, d) = (
        digits::<4>(v)?,
        digits::<2>(&v[5..])?,
        digits::<2>(&v[8..])?,
    );
    let dim = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > dim {
        return None;
    }
    Some(days_from_civil(y as i64, m, d))
}

/// A date `YYYY-MM-DD` as days since the epoch.
pub fn parse_date32(v: &[u8]) -> Option<i32> {
    if v.len() != 10 {
        return None;
    }
    parse_ymd_cached(v).map(|d| d as i32)
}

/// An ISO-8601 timestamp (`2000-01-01`, `2000-01-01 12:00:00`, `2000-01-01T12:00:00.5`,
/// with an optional `Z` or UTC offset) as nanoseconds since the epoch. The common
/// shapes take a fast path; others go through Arrow's parser.
pub fn parse_timestamp_ns(v: &[u8]) -> Option<i64> {
    let fast = || -> Option<i64> {
        let days = parse_ymd_cached(v)?;
        let mut ns = days * 86_400_000_000_000;
        if v.len() == 10 {
            return Some(ns);
        }
        if v.len() < 16 || !(v[10] == b' ' || v[10] == b'T') || v[13] != b':' {
            return None;
        }
        // Seconds may be left out (`2000-01-05 12:30`), as pandas reads it.
        let (h, mi) = (digits::<2>(&v[11..])?, digits::<2>(&v[14..])?);
        let s = match v.get(16) {
            None => 0,
            Some(b':') => digits::<2>(v.get(17..)?)?,
            Some(_) => return None,
        };
        if h > 23 || mi > 59 || s > 60 {
            return None;
        }
        ns += (h as i64 * 3600 + mi as i64 * 60 + s as i64) * 1_000_000_000;
        let mut rest = &v[v.len().min(19)..];
        if let Some(frac) = rest.strip_prefix(b".") {
            let n = frac.iter().take_while(|b| b.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return None;
            }
            let mut f = 0i64;
            for &b in &frac[..n] {
                f = f * 10 + (b - b'0') as i64;
            }
            ns += f * 10i64.pow(9 - n as u32);
            rest = &frac[n..];
        }
        match rest {
            b"" | b"Z" => Some(ns),
            _ => None,
        }
    };
    fast().or_else(|| {
        let s = std::str::from_utf8(v).ok()?;
        arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(s.trim()).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The remembered date is the one the bytes say: dates that alternate, that
    /// differ in one digit, and a bad date after a good one.
    #[test]
    fn timestamps_of_repeated_and_alternating_dates() {
        for v in [
            &b"2000-01-05 00:00:01"[..],
            b"2000-01-05 00:00:02",
            b"2000-01-06 00:00:02",
            b"2000-01-05 23:59:59",
            b"2001-01-05 00:00:00",
            b"2000-02-30 00:00:00",
            b"2000-01-05",
            b"2000-01-0",
        ] {
            let s = std::str::from_utf8(v).unwrap();
            let expected = arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(s).ok();
            assert_eq!(parse_timestamp_ns(v), expected, "{s}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp_ns(b"1970-01-01"), Some(0));
        assert_eq!(
            parse_timestamp_ns(b"1970-01-02 00:00:01"),
            Some(86_401_000_000_000)
        );
        assert_eq!(
            parse_timestamp_ns(b"2000-01-01T00:00:00.5"),
            Some(946_684_800_500_000_000)
        );
        assert_eq!(
            parse_timestamp_ns(b"2000-01-01T00:00:00Z"),
            Some(946_684_800_000_000_000)
        );
        assert_eq!(
            parse_timestamp_ns(b"2000-01-01T01:00:00+01:00"),
            Some(946_684_800_000_000_000)
        );
        assert_eq!(
            parse_timestamp_ns(b"1969-12-31 23:59:59"),
            Some(-1_000_000_000)
        );
        assert_eq!(
            parse_timestamp_ns(b"1970-01-02 00:01"),
            Some(86_460_000_000_000)
        );
        assert_eq!(
            parse_timestamp_ns(b"1970-01-01T00:00:00.123456789"),
            Some(123_456_789)
        );
        assert_eq!(parse_timestamp_ns(b"1970-01-02 00:01x"), None);
        assert_eq!(parse_timestamp_ns(b"2000-02-30"), None);
        assert_eq!(parse_timestamp_ns(b"yesterday"), None);
        assert_eq!(parse_date32(b"2000-03-01"), Some(11017));
    }

    /// The streamed read gives what the whole-block read gives, for any piece size
    /// (lines and the block's ends straddling pieces), block size and projection;
    /// and it gives way (`None`) to the whole read for quotes, blank lines, short
    /// rows and values that do not fit, which the whole read then handles.
    #[test]
    fn streamed_blocks_read_as_whole_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("k,i,f,s\n");
        for r in 0..300u64 {
            let i = (r * 7919 % 1000) as i64 - 500;
            let f = format!("{}.{}", r % 97, r * 31 % 1000);
            let s = "x".repeat((r % 13) as usize);
            let eol = if r % 5 == 0 { "\r\n" } else { "\n" };
            text.push_str(&format!("id{:03},{i},{f},{s}{eol}", r % 17));
        }
        text.push_str("id999,1,2.5,last");
        let path = dir.path().join("a.csv");
        std::fs::write(&path, &text).unwrap();
        let glob = path.to_str().unwrap().to_string();
        let mut streamed_blocks = 0;
        for blocksize in [7u64, 40, 333, 4096, 1 << 20] {
            let opts = CsvOptions {
                blocksize,
                ..Default::default()
            };
            let src = CsvSource::open(&glob, &opts).unwrap();
            for projection in [vec![0, 1, 2, 3], vec![3, 1], vec![2], vec![]] {
                for block in 0..src.blocks.len() {
                    let whole = src.read_whole(block, &projection).unwrap();
                    for piece in [1, 7, 64, 1000, 1 << 20] {
                        let streamed = src.read_streamed(block, &projection, piece);
                        let streamed = streamed.expect("a plain block streams");
                        assert_eq!(
                            streamed, whole,
                            "bs {blocksize} block {block} piece {piece}"
                        );
                        streamed_blocks += 1;
                    }
                }
            }
        }
        assert!(streamed_blocks > 1000, "{streamed_blocks}");
        // Blocks the streamed read gives way on; the whole read still reads them.
        let ints = "1,x\n".repeat(1000);
        for (name, body) in [
            ("q.csv", "a,b\n1,\"x\"\n2,y\n".to_string()),
            ("blank.csv", "a,b\n1,x\n\n2,y\n".to_string()),
            ("short.csv", format!("a,b\n{ints}2\n")),
            ("widen.csv", format!("a,b\n{ints}2.5,y\n")),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, body).unwrap();
            let opts = CsvOptions {
                dtypes: if name == "widen.csv" {
                    vec![]
                } else {
                    vec![("a".into(), DataType::Int64)]
                },
                sample_bytes: 64,
                ..Default::default()
            };
            let src = CsvSource::open(path.to_str().unwrap(), &opts).unwrap();
            assert!(src.read_streamed(0, &[0, 1], 4).is_none(), "{name}");
            let whole = src.read_block(0, &[0, 1]);
            match name {
                "q.csv" | "blank.csv" => assert_eq!(whole.unwrap().num_rows(), 2),
                "short.csv" => {
                    let e = whole.unwrap_err().to_string();
                    assert!(
                        e.contains(":1002") && e.contains("expected 2 fields"),
                        "{e}"
                    );
                }
                _ => assert!(matches!(whole.unwrap_err(), Error::Widen(_))),
            }
        }
    }

    #[test]
    fn short_decimals_parse_as_lexical_does() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 16) as usize + 1;
            let point = (x >> 8) as usize % (digits + 1);
            let mut s = String::new();
            if x >> 20 & 1 == 1 {
                s.push('-');
            }
            for d in 0..digits {
                if d == point && d > 0 {
                    s.push('.');
                }
                s.push((b'0' + ((x >> (24 + 2 * d)) % 10) as u8) as char);
            }
            let want = lexical_core::parse::<f64>(s.as_bytes()).unwrap();
            let got = parse_f64(s.as_bytes()).unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{s}");
            let int = &s[..s.find('.').unwrap_or(s.len())];
            assert_eq!(
                parse_i64(int.as_bytes()),
                lexical_core::parse::<i64>(int.as_bytes()).ok(),
                "{int}"
            );
        }
        for odd in [
            "",
            "-",
            ".5",
            "5.",
            "1e3",
            "+7",
            " 1",
            "1 ",
            "0x1",
            "-.5",
            "99999999999999999999",
        ] {
            assert_eq!(
                parse_i64(odd.as_bytes()),
                lexical_core::parse::<i64>(odd.as_bytes()).ok(),
                "{odd:?}"
            );
        }
        assert_eq!(
            parse_f64(b"-0.0").map(f64::to_bits),
            Some((-0.0f64).to_bits())
        );
    }

    /// The reference for floats: Rust's own parser (correctly rounded) on the text
    /// with the spaces around it trimmed, NaN as null.
    fn std_f64(v: &[u8]) -> Option<f64> {
        std::str::from_utf8(v)
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| !x.is_nan())
    }

    /// Fields for the float parser: numbers of every shape (signs, leading zeros,
    /// points at either end or missing digits, exponents, up to 20 digits on each
    /// side), strings of number bytes in any order, and any bytes.
    fn float_fields() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let alphabet = b"0123456789.-+eE xn\xff\r".to_vec();
        prop_oneof![
            "[-+]?0{0,3}[0-9]{0,20}\\.?[0-9]{0,20}([eE][-+]?[0-9]{1,3})?"
                .prop_map(String::into_bytes),
            "-?[0-9]{1,9}(\\.[0-9]{1,9})?".prop_map(String::into_bytes),
            proptest::collection::vec(proptest::sample::select(alphabet), 0..20),
            proptest::collection::vec(any::<u8>(), 0..20),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        /// `parse_f64` gives what it gave before the SWAR fast path (the general
        /// parser, which reads every shape), bit for bit, and what Rust's parser
        /// gives whenever that parser takes the field.
        #[test]
        fn floats_parse_as_the_reference(v in float_fields()) {
            let got = parse_f64(&v).map(f64::to_bits);
            proptest::prop_assert_eq!(got, parse_f64_general(&v).map(f64::to_bits), "{:?}", String::from_utf8_lossy(&v));
            if let Some(want) = std_f64(&v) {
                proptest::prop_assert_eq!(got, Some(want.to_bits()), "{:?}", String::from_utf8_lossy(&v));
            }
        }

        /// The typed loop's form, which reads the bytes after the field (up to
        /// sixteen past the sign) as part of its window, gives `parse_f64` of the
        /// field whatever those bytes are (digits and points included), and near
        /// the data's end, where there is no window to read.
        #[test]
        fn floats_in_data_parse_as_the_field(
            v in float_fields(),
            before in "[0-9,.-]{0,3}",
            after in proptest::prop_oneof!["[0-9.,-]{0,20}", "[\\x00-\\xff]{0,20}"],
        ) {
            let mut data = before.clone().into_bytes();
            data.extend_from_slice(&v);
            data.extend(after.chars().map(|c| c as u32 as u8));
            let r = (before.len() as u32, (before.len() + v.len()) as u32);
            proptest::prop_assert_eq!(
                parse_f64_in(&data, r).map(f64::to_bits),
                parse_f64(&v).map(f64::to_bits),
                "{:?} in {:?}", String::from_utf8_lossy(&v), String::from_utf8_lossy(&data)
            );
        }
    }

    /// Every length and point position of the short shape (and none), with and
    /// without sign and leading zeros, with digits after the field in the data:
    /// read as Rust reads them, by both forms, and the ones of the shape by the
    /// fast path itself (not by the general parser it falls back to).
    #[test]
    fn short_decimals_of_every_shape() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 1..=18usize {
            // A point before digit `point`; `len` puts it last, `len + 1` leaves it out.
            for point in 0..=len + 1 {
                for _ in 0..200 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let negative = x & 1 == 1;
                    let zeros = if x >> 62 == 0 {
                        (x >> 50) as usize % (len + 1)
                    } else {
                        0
                    };
                    let mut s = String::new();
                    if negative {
                        s.push('-');
                    }
                    for d in 0..len {
                        if d == point {
                            s.push('.');
                        }
                        let digit = if d < zeros {
                            0
                        } else {
                            (x >> (2 * d + 3)) % 10
                        };
                        s.push((b'0' + digit as u8) as char);
                    }
                    if point == len {
                        s.push('.');
                    }
                    let want = std_f64(s.as_bytes()).map(f64::to_bits);
                    assert_eq!(parse_f64(s.as_bytes()).map(f64::to_bits), want, "{s}");
                    let data = format!("{s}9.9,9999999999999999");
                    let r = (0, s.len() as u32);
                    assert_eq!(
                        parse_f64_in(data.as_bytes(), r).map(f64::to_bits),
                        want,
                        "{s}"
                    );
                    let body = &data.as_bytes()[usize::from(negative)..];
                    let n = s.len() - usize::from(negative);
                    let fast = if n <= 8 {
                        short_decimal_8(word(body), n, negative)
                    } else {
                        short_decimal_16(word(body), word(&body[8..]), n, negative)
                    };
                    let of_shape = len <= 15 && (point == len + 1 || (1..len).contains(&point));
                    assert_eq!(fast.map(f64::to_bits), want.filter(|_| of_shape), "{s}");
                }
            }
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_i64(b"-42"), Some(-42));
        assert_eq!(parse_i64(b"4.0"), None);
        assert_eq!(parse_f64(b"1e3"), Some(1000.0));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"nan"), None);
        assert!(is_na(b"nan"));
    }
}
