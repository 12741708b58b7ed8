//! Compressed inputs (`.gz`, `.zst`): a file is one partition, and its text streams
//! through the decoder in pieces of about `blocksize` bytes cut at record ends, so
//! no file is ever decompressed whole in memory. CSV and JSON-lines readers decode
//! each piece as it comes; a piece knows the line it starts at, so errors name the
//! line in the decompressed text.
//!
//! gzip and zstd streams cannot be cut without decoding what comes before, so a
//! compressed file is not split into several partitions: N pieces would decode the
//! file's start N times.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::blocks::{scan_records, too_long_reason};
use super::stamp::FileStamp;
use crate::error::{Error, Location, Result};

/// How a file is compressed, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain text: cut into blocks.
    None,
    /// gzip: one partition.
    Gzip,
    /// zstd: one partition.
    Zstd,
}

impl Compression {
    /// The compression a file name says (`.gz`, `.zst`, `.zstd`).
    pub fn of(path: &Path) -> Compression {
        match path.extension().and_then(|e| e.to_str()) {
            Some("gz") => Compression::Gzip,
            Some("zst" | "zstd") => Compression::Zstd,
            _ => Compression::None,
        }
    }

    /// `path` opened through its decoder (plain files buffered).
    pub fn open(self, path: &Path) -> Result<Box<dyn Read + Send>> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        self.wrap(path, file)
    }

    /// Opens `path` checked against its planned `stamp` (a changed file is
    /// [`Error::Changed`]); call [`FileStamp::open`] again after the last piece to catch
    /// a change made while streaming.
    pub fn open_stamped(self, path: &Path, stamp: &FileStamp) -> Result<Box<dyn Read + Send>> {
        self.wrap(path, stamp.open(path)?)
    }

    /// Wraps an open `file` of `path` in this compression's decoder.
    fn wrap(self, path: &Path, file: File) -> Result<Box<dyn Read + Send>> {
        let io = |e| Error::io(path, e);
        Ok(match self {
            Compression::None => Box::new(BufReader::with_capacity(1 << 20, file)),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
                BufReader::with_capacity(1 << 20, file),
            )),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(file).map_err(io)?),
        })
    }
}

/// One piece of a streamed file: whole records.
pub struct Piece<'a> {
    /// The records.
    pub bytes: &'a [u8],
    /// Offset of `bytes[0]` in the decompressed text.
    pub offset: u64,
    /// 1-based line number of `bytes[0]` in the decompressed text.
    pub line: u64,
}

impl Piece<'_> {
    /// The 1-based line of `at`, an offset in this piece (error paths only).
    pub fn line_of(&self, at: usize) -> u64 {
        let at = at.min(self.bytes.len());
        self.line + memchr::memchr_iter(b'\n', &self.bytes[..at]).count() as u64
    }
}

/// Reads a stream of records in pieces of about `piece_bytes`, each cut after a
/// record end (a line end outside quotes when `quote` is set).
pub struct RecordStream<'p> {
    path: &'p Path,
    reader: Box<dyn Read + Send>,
    quote: Option<u8>,
    piece_bytes: usize,
    max_line_bytes: u64,
    buf: Vec<u8>,
    /// Bytes of `buf` handed out by the last `next_piece`, dropped by the next call.
    handed: usize,
    offset: u64,
    line: u64,
    eof: bool,
}

impl<'p> RecordStream<'p> {
    /// A stream over `reader`, whose first byte is at `offset` and line `line` of
    /// `path`'s decompressed text.
    pub fn new(
        path: &'p Path,
        reader: Box<dyn Read + Send>,
        (offset, line): (u64, u64),
        quote: Option<u8>,
        piece_bytes: u64,
        max_line_bytes: u64,
    ) -> RecordStream<'p> {
        RecordStream {
            path,
            reader,
            quote,
            piece_bytes: piece_bytes.clamp(1, 1 << 30) as usize,
            max_line_bytes,
            buf: Vec::new(),
            handed: 0,
            offset,
            line,
            eof: false,
        }
    }

    fn read_more(&mut self, want: usize) -> Result<()> {
        let before = self.buf.len();
        (&mut self.reader)
            .take(want as u64)
            .read_to_end(&mut self.buf)
            .map_err(|e| Error::io(self.path, e))?;
        if self.buf.len() == before {
            self.eof = true;
        }
        Ok(())
    }

    /// The next piece, or `None` at the end of the stream.
    pub fn next_piece(&mut self) -> Result<Option<Piece<'_>>> {
        if self.handed > 0 {
            let handed = &self.buf[..self.handed];
            self.line += memchr::memchr_iter(b'\n', handed).count() as u64;
            self.offset += self.handed as u64;
            self.buf.drain(..self.handed);
            self.handed = 0;
        }
        // Fill to the piece size, then on until a record ends in what was read.
        while !self.eof && self.buf.len() < self.piece_bytes {
            let want = (self.piece_bytes - self.buf.len()).max(64 << 10);
            self.read_more(want)?;
        }
        // The piece starts at a record start, outside quotes; the scan goes on from
        // where it stopped as more is read, so a long record is scanned once.
        let (mut last, mut inside) = scan_records(&self.buf, self.quote, false);
        let mut scanned = self.buf.len();
        while last.is_none() && !self.eof {
            if self.buf.len() as u64 > self.max_line_bytes {
                return Err(Error::Malformed {
                    at: Location {
                        path: self.path.to_path_buf(),
                        line: self.line,
                    },
                    reason: too_long_reason(self.max_line_bytes),
                });
            }
            self.read_more(64 << 10)?;
            let (l, i) = scan_records(&self.buf[scanned..], self.quote, inside);
            last = l.map(|e| scanned + e);
            inside = i;
            scanned = self.buf.len();
        }
        let cut = if self.eof {
            self.buf.len()
        } else {
            last.unwrap_or(self.buf.len())
        };
        if cut == 0 {
            return Ok(None);
        }
        self.handed = cut;
        Ok(Some(Piece {
            bytes: &self.buf[..cut],
            offset: self.offset,
            line: self.line,
        }))
    }
}

/// The first line of `path`'s decompressed text (without its line end) and the
/// offset just past it; at most `max_line_bytes` are read looking for it.
pub fn first_line(path: &Path, c: Compression, max_line_bytes: u64) -> Result<(Vec<u8>, u64)> {
    let mut reader = c.open(path)?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = reader.read(&mut chunk).map_err(|e| Error::io(path, e))?;
        let before = buf.len();
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = memchr::memchr(b'\n', &buf[before..]) {
            let end = before + i;
            buf.truncate(end);
            return Ok((buf, end as u64 + 1));
        }
        if n == 0 {
            let len = buf.len() as u64;
            return Ok((buf, len));
        }
        if buf.len() as u64 > max_line_bytes {
            return Err(Error::Malformed {
                at: Location {
                    path: path.to_path_buf(),
                    line: 1,
                },
                reason: too_long_reason(max_line_bytes),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &[u8], quote: Option<u8>, size: u64) -> Vec<(Vec<u8>, u64, u64)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        std::fs::write(&path, text).unwrap();
        let reader = Compression::None.open(&path).unwrap();
        let mut s = RecordStream::new(&path, reader, (0, 1), quote, size, u64::MAX);
        let mut out = Vec::new();
        while let Some(p) = s.next_piece().unwrap() {
            out.push((p.bytes.to_vec(), p.offset, p.line));
        }
        out
    }

    /// Pieces cut at record ends only, carry their offsets and lines, and together
    /// are the whole text, for every piece size.
    #[test]
    fn pieces_cover_the_text_at_record_ends() {
        let text = b"a,b\n1,\"x\ny\"\n2,z\r\n\n3,\"\"\"q\"\"\"\n4,w";
        for size in 1..40 {
            let got = pieces(text, Some(b'"'), size);
            let mut all = Vec::new();
            for (bytes, offset, line) in &got {
                assert_eq!(*offset as usize, all.len());
                assert_eq!(*line, 1 + memchr::memchr_iter(b'\n', &all).count() as u64);
                all.extend_from_slice(bytes);
                let (last, inside) = scan_records(bytes, Some(b'"'), false);
                assert!(!inside, "size {size}: piece ends inside quotes");
                assert!(last == Some(bytes.len()) || all.len() == text.len());
            }
            assert_eq!(all, text, "size {size}");
        }
    }
}
