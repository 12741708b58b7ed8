//! Reading bags: `read_text` (a record per line) and `read_json` (a record per
//! JSON line) over a [`LinesSource`]. Each read task parses its block and runs the
//! bag's per-record steps at once, so an error from a step (a `pluck` without a
//! default) names the file and line of the record.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value as J;

use super::extract;
use super::project::{parse_projected, Need};
use super::{apply_rest, layer_name, push_record, split_stages, Bag, LowerCtx, Source, Stage};
use crate::error::{Error, Location, Result};
use crate::graph::{FnOperator, Graph, Key, Layer, Task, Value};
use crate::io::json::{
    bad_json, line_head, lines, LinesOptions, LinesSource, DEFAULT_MAX_LINE_BYTES,
};
use crate::session::Session;

/// What to do with a line that is not valid JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Fail with the file, line and the line's first bytes (the default).
    #[default]
    Raise,
    /// Skip the line and count it ([`BagStats::skipped_lines`](super::BagStats)).
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadKind {
    Text,
    Json,
}

pub(crate) struct ReadSpec {
    source: LinesSource,
    kind: ReadKind,
    on_error: OnError,
    /// Lines skipped over every computation of this source.
    pub(crate) skipped_total: AtomicU64,
}

/// Options for [`Session::read_json`] and [`Session::read_text`]; `load` opens the
/// files.
#[must_use]
pub struct BagReadBuilder {
    session: Session,
    pattern: String,
    kind: ReadKind,
    options: LinesOptions,
    on_error: OnError,
}

impl BagReadBuilder {
    pub(crate) fn new(session: Session, pattern: String, kind: ReadKind) -> Self {
        BagReadBuilder {
            options: LinesOptions {
                blocksize: session.blocksize(),
                max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            },
            session,
            pattern,
            kind,
            on_error: OnError::Raise,
        }
    }

    /// Bytes per partition of uncompressed files (down to a few bytes, for tests).
    pub fn with_blocksize(mut self, bytes: u64) -> Self {
        self.options.blocksize = bytes;
        self
    }

    /// The longest line accepted (default 64 MiB); a longer line is an error.
    pub fn with_max_line_bytes(mut self, bytes: u64) -> Self {
        self.options.max_line_bytes = bytes;
        self
    }

    /// What to do with lines that are not valid JSON (default: fail).
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.on_error = on_error;
        self
    }

    /// Expands the glob and cuts blocks; reads no data.
    pub fn load(self) -> Result<Bag> {
        let op = match self.kind {
            ReadKind::Text => "read_text",
            ReadKind::Json => "read_json",
        };
        let source = LinesSource::open(op, &self.pattern, &self.options)?;
        Ok(Bag {
            session: self.session,
            npartitions: source.blocks.len(),
            source: Source::Read(Arc::new(ReadSpec {
                source,
                kind: self.kind,
                on_error: self.on_error,
                skipped_total: AtomicU64::new(0),
            })),
            stages: Vec::new(),
            split_out: None,
            fields: super::project::Fields::default(),
        })
    }
}

pub(crate) fn lower(
    spec: &Arc<ReadSpec>,
    stages: Arc<[Stage]>,
    only: Option<Arc<Need>>,
    graph: &mut Graph,
    ctx: &LowerCtx,
) -> Vec<Key> {
    let op = match spec.kind {
        ReadKind::Text => "read-text",
        ReadKind::Json => "read-json",
    };
    let name = layer_name(op);
    let tasks: Vec<Task> = (0..spec.source.blocks.len())
        .map(|i| {
            let (spec, stages, only) = (spec.clone(), stages.clone(), only.clone());
            let (run, skipped) = (ctx.run.clone(), ctx.skipped.clone());
            Task {
                key: Key::new(&name, i),
                deps: vec![],
                op: FnOperator::new(op, move |_: &[Arc<Value>]| {
                    let (records, bad, bytes) = read_block(&spec, i, &stages, only.as_deref())?;
                    run.add_bytes_read(bytes);
                    skipped.fetch_add(bad, Ordering::Relaxed);
                    spec.skipped_total.fetch_add(bad, Ordering::Relaxed);
                    Ok(Value::Records(records))
                }),
            }
        })
        .collect();
    let keys = tasks.iter().map(|t| t.key.clone()).collect();
    graph.add_layer(Layer { name, tasks });
    keys
}

/// Parses block `i` and applies `stages`; returns the records, the lines skipped and
/// the bytes read.
fn read_block(
    spec: &ReadSpec,
    i: usize,
    stages: &[Stage],
    only: Option<&Need>,
) -> Result<(Vec<J>, u64, u64)> {
    let source = &spec.source;
    let (prefix, rest) = split_stages(stages);
    let mut out = Vec::new();
    let mut skipped = 0u64;
    // Leading plucks and flattens are done by the parser when it can.
    let fast = match spec.kind {
        ReadKind::Json => extract::plan(prefix),
        ReadKind::Text => None,
    };
    let mut reached = Vec::new();
    let mut bytes = 0u64;
    source.for_each_piece(i, |block| {
        bytes += block.bytes.len() as u64;
        let wrap = |at: usize, line: &[u8], e: Error| Error::Malformed {
            at: Location {
                path: block.path.to_path_buf(),
                line: source.line_number(&block, at),
            },
            // A step's error names the record's file and line (and the line's start).
            reason: format!("{e}\n  the line starts {:?}", line_head(line)),
        };
        for (at, line) in lines(&block.bytes) {
            if line.len() as u64 > source.max_line_bytes {
                return Err(source.too_long(&block, at));
            }
            if let Some((walk, covered)) = &fast {
                reached.clear();
                match extract::extract(line, walk, &mut reached) {
                    Ok(true) => {
                        for v in reached.drain(..) {
                            push_record(&prefix[*covered..], v, &mut out)
                                .map_err(|e| wrap(at, line, e))?;
                        }
                        continue;
                    }
                    // The walk missed: parse whole below, for exact defaults and errors.
                    Ok(false) => {}
                    Err(_) if spec.on_error == OnError::Skip => {
                        skipped += 1;
                        continue;
                    }
                    Err(e) => return Err(bad_json(source, &block, at, line, &e.to_string())),
                }
            }
            let record = match spec.kind {
                ReadKind::Json => match only.map_or_else(
                    || serde_json::from_slice::<J>(line),
                    |f| parse_projected(line, f),
                ) {
                    Ok(r) => r,
                    Err(_) if spec.on_error == OnError::Skip => {
                        skipped += 1;
                        continue;
                    }
                    Err(e) => return Err(bad_json(source, &block, at, line, &e.to_string())),
                },
                ReadKind::Text => match std::str::from_utf8(line) {
                    Ok(s) => J::String(s.to_string()),
                    Err(_) if spec.on_error == OnError::Skip => {
                        skipped += 1;
                        continue;
                    }
                    Err(e) => {
                        return Err(Error::Malformed {
                            at: Location {
                                path: block.path.to_path_buf(),
                                line: source.line_number(&block, at),
                            },
                            reason: format!("not UTF-8 text ({e})"),
                        })
                    }
                },
            };
            push_record(prefix, record, &mut out).map_err(|e| wrap(at, line, e))?;
        }
        Ok(true)
    })?;
    Ok((apply_rest(rest, out)?, skipped, bytes))
}
