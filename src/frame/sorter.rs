//! Sorting one output partition of a range shuffle under the memory account, the
//! way set_index and sort_values end: pieces are read from the shuffle store one
//! at a time and decoded into a buffer reserved as it grows (each byte once). When
//! the account refuses more ([`try_reserve`]), the buffer is sorted and written
//! back to the shuffle store as a run (one writer of the partition's run space,
//! in chunks of about [`RUN_CHUNK_BYTES`] taken out of the buffer in sorted order,
//! so no sorted copy of the whole buffer is made), and the buffer starts again.
//! With no run written, the buffer is sorted in memory a column at a time (its
//! reservation holds one sorted column); otherwise the runs are merged k ways, one
//! chunk of each run in memory at a time, into output chunks of [`OUTPUT_ROWS`]
//! rows.
//!
//! ```text
//!   pieces(p) ─► decode ─► buffer (reserved) ──refused──► order ─► run r (store, writer r)
//!                              │ end, no runs                          │
//!                              ▼                                       ▼
//!                        sort in memory             k-way merge (a chunk per run) ─► output
//! ```
//!
//! The runs live in the shuffle store (its files, deleted on drop), so there is one
//! on-disk layer for rows that move; a failed run write (disk full) is an error
//! naming the store's folder, and the partition's runs are dropped whatever
//! happens. The answer is still one batch (a task's value is one batch), put
//! together column by column from the output chunks, so the merge holds the
//! output once plus one column's chunks, never the pieces, the decoded batches,
//! their concatenation and a sorted copy at once.

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::SortOptions;
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, Rows, SortField};
use outcore_storage::codec::{decode_batches, encode_batches};
use outcore_storage::measure::{batch_bytes, rows_bytes};
use outcore_storage::shuffle::ShuffleService;

use crate::error::{Error, Result};
use crate::scheduler::{release, reserve, try_reserve, RunContext};

/// Rows of a sorted run are written in chunks of at most this many bytes (Arrow's
/// count), and of an eighth of the run when that is less (a small limit makes
/// small runs), so the merge holds one such chunk per run.
pub const RUN_CHUNK_BYTES: usize = 256 << 10;

/// Rows per output chunk of the merge.
pub const OUTPUT_ROWS: usize = 8192;

/// Where one partition's sorted runs go: a partition of the shuffle store of its
/// own, one writer per run.
pub struct RunSpace<'a> {
    /// The computation (its run counter).
    pub ctx: &'a RunContext,
    /// The store.
    pub store: &'a ShuffleService,
    /// The partition the runs are written to.
    pub partition: usize,
}

/// Sorts the rows of `batches` (of `schema`) by `keys`, as the module says: in
/// memory while the account grants the buffer, through runs in `runs` otherwise.
pub fn sort_pieces(
    batches: impl Iterator<Item = Result<RecordBatch>>,
    schema: &SchemaRef,
    keys: &[(usize, SortOptions)],
    runs: &RunSpace<'_>,
) -> Result<RecordBatch> {
    // Whatever happens, the runs' files go.
    struct DropRuns<'a>(&'a ShuffleService, usize);
    impl Drop for DropRuns<'_> {
        fn drop(&mut self) {
            let _ = self.0.drop_partition(self.1);
        }
    }
    let _guard = DropRuns(runs.store, runs.partition);
    let mut buffer: Vec<RecordBatch> = Vec::new();
    // Reserved for the buffer: what a sort of it works in (see `Work`) and one
    // chunk of a run being written (so that writing a run needs nothing the
    // account might refuse).
    let mut reserved = 0u64;
    let mut work = Work::default();
    // Of it, the room for a run's chunk.
    let mut allowed = 0u64;
    let mut nruns = 0u64;
    // The largest chunk any run was written in.
    let mut chunk_bytes = 0usize;
    for batch in batches {
        let batch = batch?;
        let bytes = batch_bytes(&batch) as u64;
        // A run's chunk is an eighth of the run, at most RUN_CHUNK_BYTES: room
        // for one and its encoding grows with the buffer.
        let needs = |work: &Work, allowed: u64| {
            let grown = (allowed + bytes / 4).min(2 * RUN_CHUNK_BYTES as u64);
            let more = work.with(&batch, bytes, keys);
            (more.bytes() + grown - work.bytes() - allowed, grown, more)
        };
        let (mut need, mut grown, mut more) = needs(&work, allowed);
        if !try_reserve(need)? {
            if !buffer.is_empty() {
                let all = concat_owned(schema, std::mem::take(&mut buffer))?;
                let c = write_run(all, keys, runs, nruns)?;
                chunk_bytes = chunk_bytes.max(c);
                nruns += 1;
                release(reserved);
                reserved = 0;
                (need, grown, more) = needs(&Work::default(), 0);
            }
            if !try_reserve(need)? {
                reserve("sort buffer", need)?;
            }
        }
        reserved += need;
        allowed = grown;
        work = more;
        buffer.push(batch);
    }
    let all = concat_owned(schema, buffer)?;
    if nruns == 0 {
        // In memory: the buffer's reservation holds a sorted column of it.
        return sort_column_by_column(all, keys);
    }
    if all.num_rows() > 0 {
        let c = write_run(all, keys, runs, nruns)?;
        chunk_bytes = chunk_bytes.max(c);
        nruns += 1;
    }
    release(reserved);
    runs.ctx.add_sort_runs(nruns);
    merge_runs(schema, keys, runs, nruns, chunk_bytes)
}

/// `batches` as one batch, put together a column at a time ([`concat_columns`]).
fn concat_owned(schema: &SchemaRef, batches: Vec<RecordBatch>) -> Result<RecordBatch> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut pieces: Vec<Vec<ArrayRef>> =
        vec![Vec::with_capacity(batches.len()); schema.fields().len()];
    for b in batches {
        for (c, column) in b.columns().iter().enumerate() {
            pieces[c].push(column.clone());
        }
    }
    concat_columns(schema, pieces, rows)
}

/// The batch of `rows` rows whose column `i` is `pieces[i]` concatenated, made a
/// column at a time with each column's pieces freed once it is made: the pieces
/// and the whole overlap by one column, not by all of them.
fn concat_columns(
    schema: &SchemaRef,
    mut pieces: Vec<Vec<ArrayRef>>,
    rows: usize,
) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(pieces.len());
    for (i, parts) in pieces.iter_mut().enumerate() {
        let parts = std::mem::take(parts);
        let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
        columns.push(if refs.is_empty() {
            arrow::array::new_empty_array(schema.field(i).data_type())
        } else {
            arrow::compute::concat(&refs)?
        });
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(Error::from)
}

/// `all` sorted by `keys`, a column at a time: each column is taken in order and
/// its unsorted self freed before the next, so the sort holds the rows, their
/// order and one sorted column, not a sorted copy of every column.
fn sort_column_by_column(all: RecordBatch, keys: &[(usize, SortOptions)]) -> Result<RecordBatch> {
    if all.num_rows() < 2 || keys.is_empty() {
        return Ok(all);
    }
    let order = crate::sort::sort_indices_of(&all, keys)?;
    let rows = all.num_rows();
    let (schema, columns, _) = all.into_parts();
    let mut sorted = Vec::with_capacity(columns.len());
    for column in columns {
        sorted.push(arrow::compute::take(column.as_ref(), &order, None)?);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema, sorted, &options).map_err(Error::from)
}

/// What an in-memory sort of the buffered batches works in, at its peak: the
/// batches, and beside them either the order being made ([`order_bytes`]) or,
/// once it is made, the order's indices and one sorted column (taken a column at
/// a time, [`sort_column_by_column`]), whichever is larger. The two never
/// coexist: counting both kept sort and set_index reserving 1.3-1.4x the memory
/// they used.
#[derive(Debug, Clone, Copy, Default)]
struct Work {
    batches: u64,
    order: u64,
    indices: u64,
    /// The sum of each batch's widest column: at least the widest column of
    /// them all, concatenated.
    widest: u64,
}

impl Work {
    /// The work once `batch` (of `bytes`) is buffered too.
    fn with(&self, batch: &RecordBatch, bytes: u64, keys: &[(usize, SortOptions)]) -> Work {
        let widest = batch
            .columns()
            .iter()
            .map(|c| rows_bytes(c.as_ref()) as u64)
            .max()
            .unwrap_or(0);
        Work {
            batches: self.batches + bytes,
            order: self.order + order_bytes(batch, keys),
            indices: self.indices + 4 * batch.num_rows() as u64,
            widest: self.widest + widest,
        }
    }

    fn bytes(&self) -> u64 {
        self.batches + self.order.max(self.indices + self.widest)
    }
}

/// Bytes a sort of `batch`'s rows by `keys` works in beside them: the order (an
/// index per row, and the key and index pairs sorted to make it: 24 bytes a row
/// for one key), and for several keys their row encoding and 48-byte prefixes.
fn order_bytes(batch: &RecordBatch, keys: &[(usize, SortOptions)]) -> u64 {
    let rows = batch.num_rows() as u64;
    if keys.len() > 1 {
        let encoded: u64 = keys
            .iter()
            .map(|&(i, _)| rows_bytes(batch.column(i).as_ref()) as u64)
            .sum();
        rows * 48 + encoded
    } else {
        rows * 24
    }
}

/// Sorts `all` and appends it to the store as run `run`, in chunks taken out of
/// it one at a time by the sorted order (no sorted copy of the whole run), then
/// writes them to disk; returns the chunks' size in bytes.
fn write_run(
    all: RecordBatch,
    keys: &[(usize, SortOptions)],
    runs: &RunSpace<'_>,
    run: u64,
) -> Result<usize> {
    let rows = all.num_rows();
    let bytes = batch_bytes(&all).max(1);
    let chunk_bytes = (bytes / 8).clamp(16 << 10, RUN_CHUNK_BYTES);
    let chunk = (rows * chunk_bytes / bytes).clamp(64, rows.max(64));
    // The order and one chunk (and its encoding) beside the rows are in the
    // buffer's reservation.
    let order = crate::sort::sort_indices_of(&all, keys)?;
    let schema = all.schema();
    let mut out = Vec::new();
    let mut start = 0;
    while start < rows {
        let len = chunk.min(rows - start);
        let piece = arrow::compute::take_record_batch(&all, &order.slice(start, len))?;
        out.clear();
        encode_batches(&schema, &[piece], &mut out)?;
        runs.ctx
            .charge_run_write(runs.store.dir(), out.len() as u64)?;
        runs.store.append(runs.partition, run, &out)?;
        start += len;
    }
    drop(order);
    drop(all);
    runs.store.flush_partition(runs.partition)?;
    Ok(chunk_bytes.min(bytes))
}

/// One run being merged: its current chunk, that chunk's keys in row format, and
/// the position in it.
struct Cursor<'a> {
    pieces: outcore_storage::shuffle::Pieces<'a>,
    batch: RecordBatch,
    rows: Rows,
    at: usize,
    /// Index of `batch` in the merge's sources.
    source: usize,
}

fn next_chunk(
    pieces: &mut outcore_storage::shuffle::Pieces<'_>,
    converter: &RowConverter,
    keys: &[(usize, SortOptions)],
) -> Result<Option<(RecordBatch, Rows)>> {
    loop {
        let Some(bytes) = pieces.next() else {
            return Ok(None);
        };
        let (schema, batches) = decode_batches(&bytes?)?;
        let batch = arrow::compute::concat_batches(&schema, &batches)?;
        if batch.num_rows() == 0 {
            continue;
        }
        let columns: Vec<ArrayRef> = keys.iter().map(|&(i, _)| batch.column(i).clone()).collect();
        let rows = converter.convert_columns(&columns)?;
        return Ok(Some((batch, rows)));
    }
}

/// Merges runs `0..nruns` of the run space k ways into one batch.
fn merge_runs(
    schema: &SchemaRef,
    keys: &[(usize, SortOptions)],
    runs: &RunSpace<'_>,
    nruns: u64,
    chunk_bytes: usize,
) -> Result<RecordBatch> {
    let fields = keys
        .iter()
        .map(|&(i, o)| SortField::new_with_options(schema.field(i).data_type().clone(), o))
        .collect();
    let converter = RowConverter::new(fields)?;
    // One chunk per run and its keys, and as many waiting to be put out.
    reserve("sort merge", nruns * 3 * chunk_bytes as u64)?;
    let mut sources: Vec<RecordBatch> = Vec::new();
    let mut cursors: Vec<Cursor<'_>> = Vec::new();
    for run in 0..nruns {
        let mut pieces = runs.store.pieces_of(runs.partition, run)?;
        if let Some((batch, rows)) = next_chunk(&mut pieces, &converter, keys)? {
            sources.push(batch.clone());
            cursors.push(Cursor {
                pieces,
                batch,
                rows,
                at: 0,
                source: sources.len() - 1,
            });
        }
    }
    // A binary heap of cursor numbers, smallest current key on top; ties go to
    // the earlier run, so equal keys keep their runs' order.
    let before = |cursors: &[Cursor<'_>], a: usize, b: usize| {
        let (x, y) = (&cursors[a], &cursors[b]);
        (x.rows.row(x.at), a) < (y.rows.row(y.at), b)
    };
    let sift_down = |heap: &mut [usize], cursors: &[Cursor<'_>], mut i: usize| loop {
        let (l, r) = (2 * i + 1, 2 * i + 2);
        let mut m = i;
        if l < heap.len() && before(cursors, heap[l], heap[m]) {
            m = l;
        }
        if r < heap.len() && before(cursors, heap[r], heap[m]) {
            m = r;
        }
        if m == i {
            break;
        }
        heap.swap(i, m);
        i = m;
    };
    let mut heap: Vec<usize> = (0..cursors.len()).collect();
    for i in (0..heap.len() / 2).rev() {
        sift_down(&mut heap, &cursors, i);
    }
    let live = cursors.len();
    let mut pending: Vec<(usize, usize)> = Vec::with_capacity(OUTPUT_ROWS);
    let mut chunks: Vec<Vec<ArrayRef>> = vec![Vec::new(); schema.fields().len()];
    let mut total = 0usize;
    while let Some(&c) = heap.first() {
        let cursor = &mut cursors[c];
        pending.push((cursor.source, cursor.at));
        total += 1;
        cursor.at += 1;
        if cursor.at == cursor.batch.num_rows() {
            match next_chunk(&mut cursor.pieces, &converter, keys)? {
                Some((batch, rows)) => {
                    // The old chunk stays a source while pending rows name it.
                    sources.push(batch.clone());
                    cursor.batch = batch;
                    cursor.rows = rows;
                    cursor.at = 0;
                    cursor.source = sources.len() - 1;
                }
                None => {
                    let last = heap.len() - 1;
                    heap.swap(0, last);
                    heap.pop();
                }
            }
        }
        sift_down(&mut heap, &cursors, 0);
        if pending.len() >= OUTPUT_ROWS || sources.len() > 2 * live {
            put_out(&mut pending, &sources, &mut chunks)?;
            // Only the live cursors' chunks stay sources.
            sources.clear();
            for &c in &heap {
                sources.push(cursors[c].batch.clone());
                cursors[c].source = sources.len() - 1;
            }
        }
    }
    put_out(&mut pending, &sources, &mut chunks)?;
    drop(cursors);
    drop(sources);
    concat_columns(schema, chunks, total)
}

/// Appends the `pending` rows (source, row) to the output chunks, reserving them.
fn put_out(
    pending: &mut Vec<(usize, usize)>,
    sources: &[RecordBatch],
    chunks: &mut [Vec<ArrayRef>],
) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut bytes = 0u64;
    for (c, column) in chunks.iter_mut().enumerate() {
        let arrays: Vec<&dyn Array> = sources.iter().map(|b| b.column(c).as_ref()).collect();
        let out = arrow::compute::interleave(&arrays, pending)?;
        bytes += outcore_storage::measure::array_bytes(out.as_ref()) as u64;
        column.push(out);
    }
    pending.clear();
    reserve("sort output", bytes)
}
