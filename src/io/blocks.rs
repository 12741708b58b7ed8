//! Byte-range blocks of files, aligned to record ends when read.
//!
//! A file's data (after its header line) is cut into ranges of `blocksize` bytes. A
//! block owns the records that *start* inside its range: reading skips the partial
//! record at its start (the previous block owns it) and reads past its end to finish
//! its last record. So every record is read exactly once whatever the block size, and
//! blocks can be cut without looking at the data.
//!
//! A record is a line, or for CSV several lines when a quoted field holds line
//! breaks: then a line end ends a record only outside quotes, and where a block's
//! first record starts depends on whether the block starts inside quotes, which the
//! caller says ([`read_records`]; the CSV reader learns it from the parity of the
//! quotes before the block, each block counting its own as it is read).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::stamp::FileStamp;
use crate::error::{Error, Result};

/// A byte range `[start, end)` of file number `file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Index of the file in the source's file list.
    pub file: usize,
    /// First byte of the range.
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
}

/// Cuts `[data_start, size)` into blocks of at most `blocksize` bytes (at least one
/// block per file, so that every file is a partition even when it has no rows).
pub fn split(file: usize, data_start: u64, size: u64, blocksize: u64) -> Vec<Block> {
    let blocksize = blocksize.max(1);
    if size <= data_start {
        return vec![Block {
            file,
            start: data_start,
            end: data_start,
        }];
    }
    let mut out = Vec::with_capacity(((size - data_start) / blocksize + 1) as usize);
    let mut start = data_start;
    while start < size {
        let end = (start + blocksize).min(size);
        out.push(Block { file, start, end });
        start = end;
    }
    out
}

/// Reads the whole lines that start in `[start, end)` of `path`, whose data begins at
/// `data_start`. Returns the bytes and the file offset of the first of them.
pub fn read_lines(path: &Path, data_start: u64, start: u64, end: u64) -> Result<(Vec<u8>, u64)> {
    read_lines_limited(path, data_start, start, end, u64::MAX)
}

/// [`read_lines`], but a line longer than `max_line_bytes` is an error naming the
/// line, so a file with no line ends is not an out-of-memory.
pub fn read_lines_limited(
    path: &Path,
    data_start: u64,
    start: u64,
    end: u64,
    max_line_bytes: u64,
) -> Result<(Vec<u8>, u64)> {
    read_lines_stamped(path, None, data_start, start, end, max_line_bytes)
}

/// [`read_lines_limited`] of a file planned as `stamp`: the file must still match
/// it before and after the read, and must hold every byte the stamp promised, or
/// the read is [`Error::Changed`] naming the file.
pub fn read_lines_stamped(
    path: &Path,
    stamp: Option<&FileStamp>,
    data_start: u64,
    start: u64,
    end: u64,
    max_line_bytes: u64,
) -> Result<(Vec<u8>, u64)> {
    let r = read_records(path, stamp, data_start, start, end, max_line_bytes, None)?;
    Ok((r.bytes, r.offset))
}

/// The whole records of one block, as [`read_records`] returns them.
#[derive(Debug)]
pub struct Records {
    /// The records, each ending in `\n` except perhaps the last of the file.
    pub bytes: Vec<u8>,
    /// The file offset of `bytes[0]`.
    pub offset: u64,
    /// Quote characters in the block's own range `[start, end)`, modulo 2: what a
    /// later block of the file needs to know whether it starts inside a quoted field.
    pub range_quote_parity: bool,
    /// False when `bytes` surely hold no quote character (the tokenizer's fast path
    /// needs no search of its own then).
    pub may_have_quotes: bool,
}

/// Reads the whole records that start in `[start, end)` of `path`, whose data begins
/// at `data_start`. With a `stamp`, the file must still match it before and after the
/// read and hold every byte it promised (a short read is [`Error::Changed`], never the
/// end of the block). A record ends at a line end outside quotes: with
/// `quoting = Some((quote, inside))`, `quote` opens and closes quoted fields (a
/// doubled quote inside one toggles twice, so parity is all that matters) and
/// `inside` says whether `start` lies inside a quoted field (the parity of the quotes
/// in `[data_start, start)`); with `None`, every line end ends a record.
///
/// Finishing the last record reads on past `end`, but a record longer than
/// `max_line_bytes` is an error naming its file and line, not an allocation.
pub fn read_records(
    path: &Path,
    stamp: Option<&FileStamp>,
    data_start: u64,
    start: u64,
    end: u64,
    max_line_bytes: u64,
    quoting: Option<(u8, bool)>,
) -> Result<Records> {
    if end <= start {
        return Ok(Records {
            bytes: Vec::new(),
            offset: start,
            range_quote_parity: false,
            may_have_quotes: false,
        });
    }
    let io = |e| Error::io(path, e);
    let mut f = match stamp {
        Some(s) => s.open(path)?,
        None => File::open(path).map_err(io)?,
    };
    // Reading one byte before `start` tells whether a record begins exactly at `start`.
    let begin = if start > data_start { start - 1 } else { start };
    f.seek(SeekFrom::Start(begin)).map_err(io)?;
    let mut buf = Vec::with_capacity((end - begin) as usize + 4096);
    (&mut f)
        .take(end - begin)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if let Some(s) = stamp {
        // A short read is a cut file, never the end of the block.
        if (buf.len() as u64) < end - begin {
            return Err(s.short_read(path, begin, end - begin, buf.len() as u64));
        }
    }
    let own = (start - begin) as usize;
    let (quote, inside) = match quoting {
        Some((q, inside)) => (Some(q), inside),
        None => (None, false),
    };
    // One pass over the block: its quote count gives the parity later blocks need
    // and, when zero (the common case), lets every scan below take the plain path.
    let range_quotes = quote.map_or(0, |q| {
        memchr::memchr_iter(q, &buf[own.min(buf.len())..]).count()
    });
    let range_quote_parity = range_quotes % 2 == 1;
    let empty = || Records {
        bytes: Vec::new(),
        offset: start,
        range_quote_parity,
        may_have_quotes: false,
    };
    // Where the first record owned by this block starts.
    let mut skip = 0;
    if begin < start || inside {
        // The state at `begin`: a newline there is a record end only outside quotes.
        let from = if begin < start && buf.first() == Some(&b'\n') && !inside {
            Some(1)
        } else if inside && range_quotes == 0 {
            // Inside a quoted field that does not close in this block.
            None
        } else {
            let scan_from = own.min(buf.len());
            let q = if range_quotes == 0 { None } else { quote };
            record_end(&buf[scan_from..], q, inside)
                .0
                .map(|i| scan_from + i)
        };
        match from {
            // A record starting exactly at `end` belongs to the next block.
            Some(i) if i < buf.len() => skip = i,
            _ => return Ok(empty()),
        }
    }
    // The state at the end of what was read, scanning from a record start.
    // `buf[skip..]` lies within the block's range, so its quotes were counted.
    let in_range = if range_quotes == 0 { None } else { quote };
    let (last_end, mut inside_at_end) = scan_records(&buf[skip..], in_range, false);
    let read_in_range = buf.len();
    let complete =
        buf.len() as u64 != end - begin || (buf.last() == Some(&b'\n') && !inside_at_end);
    if !complete {
        // Finish the last record: read on until a line end outside quotes, or the
        // end of the file.
        let record_start = skip + last_end.unwrap_or(0);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if (buf.len() - record_start) as u64 > max_line_bytes {
                return Err(too_long(path, begin + record_start as u64, max_line_bytes));
            }
            let n = f.read(&mut chunk).map_err(io)?;
            if n == 0 {
                let at = begin + buf.len() as u64;
                if let Some(s) = stamp.filter(|s| at < s.size) {
                    return Err(s.short_read(path, at, (s.size - at).min(chunk.len() as u64), 0));
                }
                break;
            }
            let (found, state) = record_end(&chunk[..n], quote, inside_at_end);
            inside_at_end = state;
            match found {
                Some(i) => {
                    buf.extend_from_slice(&chunk[..i]);
                    break;
                }
                None => buf.extend_from_slice(&chunk[..n]),
            }
        }
        // The length of a line does not count its line end.
        let newline = u64::from(buf.last() == Some(&b'\n'));
        if (buf.len() - record_start) as u64 - newline > max_line_bytes {
            return Err(too_long(path, begin + record_start as u64, max_line_bytes));
        }
    }
    let may_have_quotes = range_quotes > 0
        || quote.is_some_and(|q| memchr::memchr(q, &buf[read_in_range..]).is_some());
    if let Some(s) = stamp {
        s.check(path, &f)?;
    }
    buf.drain(..skip);
    Ok(Records {
        bytes: buf,
        offset: begin + skip as u64,
        range_quote_parity,
        may_have_quotes,
    })
}

/// The error for a record longer than the limit, starting at byte `record_start`.
pub fn too_long(path: &Path, record_start: u64, max_line_bytes: u64) -> Error {
    Error::Malformed {
        at: crate::error::Location {
            path: path.to_path_buf(),
            line: line_of_offset(path, record_start),
        },
        reason: too_long_reason(max_line_bytes),
    }
}

/// Why a line is refused when it is longer than `max_line_bytes`.
pub fn too_long_reason(max_line_bytes: u64) -> String {
    format!(
        "a line is longer than the limit of {max_line_bytes} bytes (is a quote left open?)\n  \
         hint: raise the limit with --max-line-bytes (Rust: .with_max_line_bytes(..)) if the file really has such lines"
    )
}

/// Scans `bytes`, which start in quote state `inside`, for the first line end outside
/// quotes; returns the offset just past it (if any) and the state where the scan
/// stopped.
pub fn record_end(bytes: &[u8], quote: Option<u8>, mut inside: bool) -> (Option<usize>, bool) {
    let Some(q) = quote else {
        return (memchr::memchr(b'\n', bytes).map(|i| i + 1), false);
    };
    for i in memchr::memchr2_iter(q, b'\n', bytes) {
        if bytes[i] == q {
            inside = !inside;
        } else if !inside {
            return (Some(i + 1), false);
        }
    }
    (None, inside)
}

/// Scans `bytes`, which start in quote state `inside`, for the last line end outside
/// quotes; returns the offset just past it (if any) and whether the end of `bytes`
/// lies inside quotes.
pub fn scan_records(bytes: &[u8], quote: Option<u8>, mut inside: bool) -> (Option<usize>, bool) {
    let q = match quote {
        Some(q) if inside || memchr::memchr(q, bytes).is_some() => q,
        // No quotes: every line end ends a record.
        _ => return (memchr::memrchr(b'\n', bytes).map(|i| i + 1), false),
    };
    let mut last = None;
    for i in memchr::memchr2_iter(q, b'\n', bytes) {
        if bytes[i] == q {
            inside = !inside;
        } else if !inside {
            last = Some(i + 1);
        }
    }
    (last, inside)
}

/// The 1-based line number of byte `offset` of `path`: one more than the newlines
/// before it. Only error paths call this, so the happy path never counts lines.
pub fn line_of_offset(path: &Path, offset: u64) -> u64 {
    let Ok(f) = File::open(path) else { return 0 };
    let mut reader = std::io::BufReader::with_capacity(1 << 20, f.take(offset));
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 1u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64,
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Whatever the block size, the blocks together read every line exactly once.
    #[test]
    fn every_line_read_once_for_any_blocksize() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        let body = "a,b\n1,22\n333,4\n\n5,666666\n7,8";
        std::fs::File::create(&path)
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let data_start = 4;
        for bs in 1..40 {
            let mut all = Vec::new();
            for b in split(0, data_start, body.len() as u64, bs) {
                let (bytes, at) = read_lines(&path, data_start, b.start, b.end).unwrap();
                if !bytes.is_empty() {
                    assert_eq!(
                        &body.as_bytes()[at as usize..at as usize + bytes.len()],
                        &bytes[..]
                    );
                }
                all.extend(bytes);
            }
            assert_eq!(
                String::from_utf8(all).unwrap(),
                &body[4..],
                "blocksize {bs}"
            );
        }
        assert_eq!(line_of_offset(&path, 0), 1);
        assert_eq!(line_of_offset(&path, 9), 3);
    }

    /// With quoting, told the quote state at each block's start, the blocks together
    /// read every record exactly once, each block starting at a record start, and a
    /// record longer than the limit is an error naming the line it starts on.
    #[test]
    fn every_record_read_once_with_quoted_line_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.csv");
        let body = "a,b\n1,\"x\ny\"\n\"\"\"q\"\"\",2\r\n3,\"\n\n\"\n4,z";
        std::fs::write(&path, body).unwrap();
        let starts = [4usize, 12, 23, 30];
        for bs in 1..40 {
            let mut all = Vec::new();
            for b in split(0, 4, body.len() as u64, bs) {
                let inside = body.as_bytes()[4..b.start as usize]
                    .iter()
                    .filter(|&&c| c == b'"')
                    .count()
                    % 2
                    == 1;
                let r = read_records(
                    &path,
                    None,
                    4,
                    b.start,
                    b.end,
                    u64::MAX,
                    Some((b'"', inside)),
                )
                .unwrap();
                if !r.bytes.is_empty() {
                    assert!(
                        starts.contains(&(r.offset as usize)),
                        "bs {bs}: {}",
                        r.offset
                    );
                }
                all.extend(r.bytes);
            }
            assert_eq!(
                String::from_utf8(all).unwrap(),
                &body[4..],
                "blocksize {bs}"
            );
        }
        let err = read_records(&path, None, 4, 4, 6, 5, Some((b'"', false))).unwrap_err();
        assert!(
            err.to_string()
                .contains("q.csv:2: a line is longer than the limit of 5 bytes"),
            "{err}"
        );
    }
}
