//! Splitting a block of CSV bytes into rows and fields, keeping only the fields of
//! projected columns. Tokenising is cheap next to typed decoding, but it still sees
//! every byte, so the common case (no quote character anywhere in the block) takes a
//! memchr fast path; a block with quotes goes through the `csv` crate, which handles
//! quoting and escapes, and its unquoted field bytes are copied into an arena.
//!
//! A block always starts at a record start: [`super::blocks::read_records`] resolves
//! where quoted fields that hold line breaks begin and end, so quotes here are
//! balanced except in a file whose last quote is left open.

/// The projected fields of a block's rows: for each projected column, one `(start,
/// end)` range per row into [`Fields::bytes`].
pub struct Fields {
    /// Bytes the ranges point into when the quoted path copied fields; empty otherwise
    /// (then ranges point into the block itself).
    arena: Vec<u8>,
    /// Offset in the block where each row starts (for error positions).
    pub row_starts: Vec<u32>,
    /// Per projected column, per row: the field's byte range.
    pub ranges: Vec<Vec<(u32, u32)>>,
}

impl Fields {
    /// No rows, `nslots` projected columns.
    pub fn empty(nslots: usize) -> Fields {
        Fields {
            arena: Vec::new(),
            row_starts: Vec::new(),
            ranges: (0..nslots).map(|_| Vec::new()).collect(),
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.row_starts.len()
    }

    /// The bytes the ranges index: the arena if fields were copied, else the block.
    pub fn bytes<'a>(&'a self, block: &'a [u8]) -> &'a [u8] {
        if self.arena.is_empty() {
            block
        } else {
            &self.arena
        }
    }
}

/// Why a block could not be split into fields.
#[derive(Debug)]
pub enum TokenizeError {
    /// A row has the wrong number of fields.
    FieldCount {
        /// Offset of the row's start in the block.
        row_start: u64,
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
    /// The csv crate rejected the bytes (such as a quote left open).
    Csv {
        /// Offset in the block where the bad record starts.
        row_start: u64,
        /// What the csv crate said.
        message: String,
    },
    /// A block too large to index with 32-bit offsets.
    TooLarge(usize),
    /// A record (a line, or several when a quoted field holds line breaks) longer
    /// than the limit.
    TooLong {
        /// Offset in the block where the record starts.
        row_start: u64,
    },
}

/// Splits `block` (whole records, as [`super::blocks::read_records`] cuts them) into
/// rows. `slot_of[c]` is the projected slot of column `c`, or `None` when the column
/// is not read. Blank lines are skipped. A record longer than `max_line_bytes`
/// (not counting its final line end) is an error, whatever the block size.
pub fn tokenize(
    block: &[u8],
    delimiter: u8,
    slot_of: &[Option<usize>],
    nslots: usize,
    max_line_bytes: u64,
) -> Result<Fields, TokenizeError> {
    tokenize_hinted(block, delimiter, slot_of, nslots, max_line_bytes, true)
}

/// [`tokenize`], told whether `block` may hold a quote (false skips the search: the
/// reader counted the block's quotes already).
pub fn tokenize_hinted(
    block: &[u8],
    delimiter: u8,
    slot_of: &[Option<usize>],
    nslots: usize,
    max_line_bytes: u64,
    may_have_quotes: bool,
) -> Result<Fields, TokenizeError> {
    if block.len() >= u32::MAX as usize {
        return Err(TokenizeError::TooLarge(block.len()));
    }
    if !may_have_quotes || memchr::memchr(b'"', block).is_none() {
        let mut fields = Fields::empty(nslots);
        if tokenize_regular(block, delimiter, slot_of, max_line_bytes, &mut fields) {
            return Ok(fields);
        }
        return tokenize_plain(block, delimiter, slot_of, nslots, max_line_bytes);
    }
    tokenize_quoted(block, delimiter, slot_of, nslots, max_line_bytes)
}

/// Bytes per classified chunk: one bit per byte in a `u64` mask.
const CHUNK: usize = 64;

const LO: u64 = 0x0101_0101_0101_0101;
const HI7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// 0x80 in each byte of `w` that is zero, 0 elsewhere (exact: no false positives
/// from borrows, unlike the shorter `(w - LO) & !w & HI`).
#[inline(always)]
fn zero_bytes(w: u64) -> u64 {
    !(((w & HI7).wrapping_add(HI7)) | w | HI7)
}

/// The 0x80 flags of `flags` (one per byte) gathered into 8 bits, byte `j` to bit `j`
/// (the products land on distinct bits, so nothing carries).
#[inline(always)]
fn gather(flags: u64) -> u64 {
    ((flags >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// [`classify`] of the chunk of `block` at `base`; the last, short chunk is padded
/// in `tail` and the padding's bits dropped.
#[inline(always)]
fn chunk_mask(block: &[u8], base: usize, delims: u64, tail: &mut [u8; CHUNK]) -> u64 {
    match block.get(base..base + CHUNK) {
        Some(chunk) => classify(chunk.try_into().expect("64 bytes"), delims),
        None => {
            let n = block.len() - base;
            tail[..n].copy_from_slice(&block[base..]);
            classify(tail, delims) & ((1u64 << n) - 1)
        }
    }
}

/// Classifies a 64-byte chunk: bit `i` of the result is set when `chunk[i]` is the
/// delimiter or a line end. Eight 8-byte words compared at once (SWAR): safe,
/// portable code that does in ~2 instructions per byte what a `memchr` call per
/// field spent on its set-up.
#[inline(always)]
fn classify(chunk: &[u8; CHUNK], delims: u64) -> u64 {
    const NEWLINES: u64 = LO * b'\n' as u64;
    let mut mask = 0u64;
    for (k, word) in chunk.chunks_exact(8).enumerate() {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let hits = zero_bytes(w ^ delims) | zero_bytes(w ^ NEWLINES);
        mask |= gather(hits) << (8 * k);
    }
    mask
}

/// The fast path for unquoted blocks whose rows all have the header's number of
/// fields and no blank line (every generated or exported file): writes the
/// projected fields of `block` into `out` (cleared first) and returns true, or
/// returns false, leaving `out` in no particular state, when the block is anything
/// else (a blank line, a short or long row, a line over `max_line_bytes`), so the
/// caller can run the general [`tokenize_plain`], which says what is wrong.
///
/// It does not look at what a boundary is while walking: every delimiter or line
/// end ends the next field, and each `ncols`-th boundary must be a line end (one
/// load, always true, so always predicted). The rows are then right exactly when
/// the block has no other line end, which one count of its line ends (memchr's,
/// vectorised) tells. No branch depends on the data but the end of a row, and a
/// skipped field costs one store.
pub fn tokenize_regular(
    block: &[u8],
    delimiter: u8,
    slot_of: &[Option<usize>],
    max_line_bytes: u64,
    out: &mut Fields,
) -> bool {
    let ncols = slot_of.len();
    if ncols == 0 || block.len() >= u32::MAX as usize {
        return false;
    }
    // (column, slot) of the projected columns, in column order.
    let proj: Vec<(usize, usize)> = slot_of
        .iter()
        .enumerate()
        .filter_map(|(c, s)| s.map(|s| (c, s)))
        .collect();
    out.arena.clear();
    out.row_starts.clear();
    for r in &mut out.ranges {
        r.clear();
    }
    let guess = block.len() / 32 + 1;
    out.row_starts.reserve(guess);
    for &(_, s) in &proj {
        out.ranges[s].reserve(guess);
    }
    // `ends[f]`: where field `f` of the current row ends; `ends[ncols]` is the
    // row's end without a `\r`.
    let mut ends = vec![0u32; ncols + 1];
    let mut field = 0usize;
    let mut row_start = 0usize;
    let mut rows_ended = 0usize;
    let delims = LO * delimiter as u64;
    let last = ncols - 1;
    let mut base = 0usize;
    let mut tail = [0u8; CHUNK];
    while base < block.len() {
        let mut mask = chunk_mask(block, base, delims, &mut tail);
        while mask != 0 {
            let at = base + mask.trailing_zeros() as usize;
            mask &= mask - 1;
            ends[field] = at as u32;
            if field < last {
                field += 1;
                continue;
            }
            // The row's last field: this must be its line end.
            if block[at] != b'\n' || (at - row_start) as u64 > max_line_bytes {
                return false;
            }
            let end = if at > row_start && block[at - 1] == b'\r' {
                at - 1
            } else {
                at
            };
            if end == row_start {
                // A blank line (only one column could take it for a row).
                return false;
            }
            ends[ncols] = end as u32;
            push_row(out, &proj, &ends, row_start);
            rows_ended += 1;
            row_start = at + 1;
            field = 0;
        }
        base += CHUNK;
        if (base.min(block.len()).saturating_sub(row_start)) as u64 > max_line_bytes {
            return false;
        }
    }
    if memchr::memchr_iter(b'\n', block).count() != rows_ended {
        // A line end in the middle of a row: a short row or a blank line.
        return false;
    }
    if row_start < block.len() {
        // The last line has no line end: it must have every field, and be no blank.
        let at = block.len();
        if field != last || (at - row_start) as u64 > max_line_bytes {
            return false;
        }
        let end = if block[at - 1] == b'\r' { at - 1 } else { at };
        if end == row_start {
            return false;
        }
        ends[last] = at as u32;
        ends[ncols] = end as u32;
        push_row(out, &proj, &ends, row_start);
    }
    true
}

/// Appends one row's projected fields to `out`: `ends[f]` is where field `f` ends,
/// `ends[ncols]` the row's end without its `\r`, and the row starts at `row_start`.
#[inline(always)]
fn push_row(out: &mut Fields, proj: &[(usize, usize)], ends: &[u32], row_start: usize) {
    let ncols = ends.len() - 1;
    for &(c, s) in proj {
        let from = if c == 0 {
            row_start as u32
        } else {
            ends[c - 1] + 1
        };
        let to = ends[if c == ncols - 1 { ncols } else { c }];
        out.ranges[s].push((from, to));
    }
    out.row_starts.push(row_start as u32);
}

fn tokenize_plain(
    block: &[u8],
    delimiter: u8,
    slot_of: &[Option<usize>],
    nslots: usize,
    max_line_bytes: u64,
) -> Result<Fields, TokenizeError> {
    let ncols = slot_of.len();
    // A rough row count sizes the vectors once.
    let guess = block.len() / 32 + 1;
    let mut ranges: Vec<Vec<(u32, u32)>> = (0..nslots).map(|_| Vec::with_capacity(guess)).collect();
    let mut row_starts = Vec::with_capacity(guess);
    let delims = LO * delimiter as u64;
    // The state of the walk: where the current row and field start, which field
    // this is. Each set bit of a chunk's mask ends a field (delimiter) or a row.
    let mut row_start = 0usize;
    let mut fstart = 0usize;
    let mut field = 0usize;
    let mut end_row = |at: usize,
                       row_start: &mut usize,
                       fstart: usize,
                       field: usize,
                       ranges: &mut Vec<Vec<(u32, u32)>>|
     -> Result<(), TokenizeError> {
        // `at` is the line end (or the block's end); the row is `row_start..at`.
        if (at - *row_start) as u64 > max_line_bytes {
            return Err(TokenizeError::TooLong {
                row_start: *row_start as u64,
            });
        }
        let mut end = at;
        if end > *row_start && block[end - 1] == b'\r' {
            end -= 1;
        }
        if end == *row_start {
            // A blank line (nothing was pushed: a blank line has no delimiter).
            *row_start = at + 1;
            return Ok(());
        }
        if let Some(Some(slot)) = slot_of.get(field) {
            ranges[*slot].push((fstart as u32, end as u32));
        }
        if field + 1 != ncols {
            return Err(TokenizeError::FieldCount {
                row_start: *row_start as u64,
                expected: ncols,
                found: field + 1,
            });
        }
        row_starts.push(*row_start as u32);
        *row_start = at + 1;
        Ok(())
    };
    let mut base = 0usize;
    let mut tail = [0u8; CHUNK];
    while base < block.len() {
        let mut mask = chunk_mask(block, base, delims, &mut tail);
        while mask != 0 {
            let at = base + mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if block[at] == b'\n' {
                end_row(at, &mut row_start, fstart, field, &mut ranges)?;
                fstart = at + 1;
                field = 0;
            } else {
                if let Some(Some(slot)) = slot_of.get(field) {
                    ranges[*slot].push((fstart as u32, at as u32));
                }
                field += 1;
                fstart = at + 1;
            }
        }
        base += CHUNK;
        // The line that started at `row_start` has no end before `base`: when it
        // is already too long, stop before scanning the rest of it.
        if (base.min(block.len()).saturating_sub(row_start)) as u64 > max_line_bytes {
            return Err(TokenizeError::TooLong {
                row_start: row_start as u64,
            });
        }
    }
    if row_start < block.len() {
        // The last line has no line end.
        end_row(block.len(), &mut row_start, fstart, field, &mut ranges)?;
    }
    Ok(Fields {
        arena: Vec::new(),
        row_starts,
        ranges,
    })
}

fn tokenize_quoted(
    block: &[u8],
    delimiter: u8,
    slot_of: &[Option<usize>],
    nslots: usize,
    max_line_bytes: u64,
) -> Result<Fields, TokenizeError> {
    let ncols = slot_of.len();
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(block);
    let mut record = ::csv::ByteRecord::new();
    let mut arena = Vec::with_capacity(block.len() / 2);
    let mut ranges: Vec<Vec<(u32, u32)>> = (0..nslots).map(|_| Vec::new()).collect();
    let mut row_starts = Vec::new();
    loop {
        let row_start = reader.position().byte();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(TokenizeError::Csv {
                    row_start: e.position().map_or(row_start, |p| p.byte()),
                    message: e.to_string(),
                })
            }
        }
        let mut row_start = record.position().map_or(row_start, |p| p.byte());
        // After a CRLF the csv crate's position is at the `\n`: the record starts
        // past it (this keeps line numbers right).
        while matches!(block.get(row_start as usize), Some(b'\n' | b'\r')) {
            row_start += 1;
        }
        let after = reader.position().byte();
        let ends_in_newline = after > 0 && block.get(after as usize - 1) == Some(&b'\n');
        if after - row_start - u64::from(ends_in_newline) > max_line_bytes {
            return Err(TokenizeError::TooLong { row_start });
        }
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        if record.len() != ncols {
            return Err(TokenizeError::FieldCount {
                row_start,
                expected: ncols,
                found: record.len(),
            });
        }
        for (c, slot) in slot_of.iter().enumerate() {
            if let Some(slot) = slot {
                let mut f = &record[c];
                if c + 1 == ncols && f.last() == Some(&b'\r') {
                    f = &f[..f.len() - 1];
                }
                let s = arena.len() as u32;
                arena.extend_from_slice(f);
                ranges[*slot].push((s, arena.len() as u32));
            }
        }
        row_starts.push(row_start as u32);
    }
    // An arena that happens to be empty would be mistaken for "point into the block";
    // one padding byte keeps the two cases apart (no range reaches it).
    arena.push(0);
    Ok(Fields {
        arena,
        row_starts,
        ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(block: &str, ncols: usize, proj: &[usize]) -> Vec<Vec<String>> {
        let mut slot_of = vec![None; ncols];
        for (s, &c) in proj.iter().enumerate() {
            slot_of[c] = Some(s);
        }
        let f = tokenize(block.as_bytes(), b',', &slot_of, proj.len(), u64::MAX).unwrap();
        let bytes = f.bytes(block.as_bytes());
        f.ranges
            .iter()
            .map(|r| {
                r.iter()
                    .map(|&(s, e)| {
                        String::from_utf8(bytes[s as usize..e as usize].to_vec()).unwrap()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn plain_and_quoted_agree() {
        let plain = "1,a,x\r\n\n2,,y\n3,c,z";
        let quoted = "1,\"a\",x\r\n\n2,\"\",y\n3,c,\"z\"";
        assert_eq!(
            fields(plain, 3, &[2, 1]),
            vec![vec!["x", "y", "z"], vec!["a", "", "c"]]
        );
        assert_eq!(fields(quoted, 3, &[2, 1]), fields(plain, 3, &[2, 1]));
        assert_eq!(fields("1,\"a,b\"\"c\"\n", 2, &[1]), vec![vec!["a,b\"c"]]);
    }

    #[test]
    fn wrong_field_count() {
        let err = tokenize(b"1,2\n3\n", b',', &[Some(0), None], 1, u64::MAX)
            .err()
            .unwrap();
        assert!(matches!(
            err,
            TokenizeError::FieldCount {
                row_start: 4,
                expected: 2,
                found: 1
            }
        ));
        let err = tokenize(b"1,2\n\"3\",4,5\n", b',', &[Some(0), None], 1, u64::MAX)
            .err()
            .unwrap();
        assert!(matches!(
            err,
            TokenizeError::FieldCount {
                row_start: 4,
                expected: 2,
                found: 3
            }
        ));
    }
}
