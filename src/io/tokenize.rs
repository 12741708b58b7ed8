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
        return tokenize_plain(block, delimiter, slot_of, nslots, max_line_bytes);
    }
    tokenize_quoted(block, delimiter, slot_of, nslots, max_line_bytes)
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
    let mut pos = 0usize;
    while pos < block.len() {
        let line_end = memchr::memchr(b'\n', &block[pos..]).map_or(block.len(), |i| pos + i);
        if (line_end - pos) as u64 > max_line_bytes {
            return Err(TokenizeError::TooLong {
                row_start: pos as u64,
            });
        }
        let mut end = line_end;
        if end > pos && block[end - 1] == b'\r' {
            end -= 1;
        }
        if end == pos {
            pos = line_end + 1;
            continue;
        }
        let line = &block[pos..end];
        let mut field = 0usize;
        let mut fstart = pos;
        for c in memchr::memchr_iter(delimiter, line) {
            let at = pos + c;
            if let Some(Some(slot)) = slot_of.get(field) {
                ranges[*slot].push((fstart as u32, at as u32));
            }
            field += 1;
            fstart = at + 1;
        }
        if let Some(Some(slot)) = slot_of.get(field) {
            ranges[*slot].push((fstart as u32, end as u32));
        }
        field += 1;
        if field != ncols {
            return Err(TokenizeError::FieldCount {
                row_start: pos as u64,
                expected: ncols,
                found: field,
            });
        }
        row_starts.push(pos as u32);
        pos = line_end + 1;
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
