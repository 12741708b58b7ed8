//! Byte-range blocks of files, aligned to line ends when read.
//!
//! A file's data (after its header line) is cut into ranges of `blocksize` bytes. A
//! block owns the lines that *start* inside its range: reading skips the partial line
//! at its start (the previous block owns it) and reads past its end to finish its
//! last line. So every line is read exactly once whatever the block size, and blocks
//! can be cut without looking at the data.

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

/// [`read_lines`], but finishing the last line reads at most `max_line_bytes` past
/// the block's end: a file with no line ends is an error naming the line, not an
/// out-of-memory.
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
    if end <= start {
        return Ok((Vec::new(), start));
    }
    let io = |e| Error::io(path, e);
    let mut f = match stamp {
        Some(s) => s.open(path)?,
        None => File::open(path).map_err(io)?,
    };
    // Reading one byte before `start` tells whether a line begins exactly at `start`.
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
    let mut skip = 0;
    if begin < start {
        match memchr::memchr(b'\n', &buf) {
            Some(i) => skip = i + 1,
            None => return Ok((Vec::new(), start)),
        }
        if skip == buf.len() {
            return Ok((Vec::new(), start));
        }
    }
    if buf.last() != Some(&b'\n') && buf.len() as u64 == end - begin {
        // Finish the last line: read on until its newline or the end of the file.
        let mut chunk = vec![0u8; 64 * 1024];
        let mut past_end = 0u64;
        loop {
            if past_end > max_line_bytes {
                let line_start = begin
                    + skip as u64
                    + memchr::memrchr(b'\n', &buf[skip..]).map_or(0, |i| i as u64 + 1);
                return Err(Error::Malformed {
                    at: crate::error::Location {
                        path: path.to_path_buf(),
                        line: line_of_offset(path, line_start),
                    },
                    reason: format!(
                        "a line is longer than the limit of {} bytes; raise the limit (max_line_bytes) if the file really has such lines",
                        max_line_bytes
                    ),
                });
            }
            let n = f.read(&mut chunk).map_err(io)?;
            if n == 0 {
                let at = end + past_end;
                if let Some(s) = stamp.filter(|s| at < s.size) {
                    return Err(s.short_read(path, at, (s.size - at).min(chunk.len() as u64), 0));
                }
                break;
            }
            if let Some(i) = memchr::memchr(b'\n', &chunk[..n]) {
                buf.extend_from_slice(&chunk[..=i]);
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            past_end += n as u64;
        }
    }
    if let Some(s) = stamp {
        s.check(path, &f)?;
    }
    buf.drain(..skip);
    Ok((buf, begin + skip as u64))
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
}
