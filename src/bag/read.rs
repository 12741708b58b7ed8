//! Reading bags: `read_text` (a record per line) and `read_json` (a record per
//! JSON line) over a [`LinesSource`]. Each read task parses its block and runs the
//! bag's per-record steps at once, so an error from a step (a `pluck` without a
//! default) names the file and line of the record.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value as J;

use super::extract;
use super::project::{parse_projected, pruned, Need};
use super::{apply_rest, layer_name, push_record, split_stages, Bag, LowerCtx, Source, Stage};
use crate::error::{Error, Location, Result};
use crate::graph::{FnOperator, Graph, Key, Layer, Task, Value};
use crate::io::json::BlockBytes;
use crate::io::json::{
    bad_json, line_head, lines, LinesOptions, LinesSource, DEFAULT_MAX_LINE_BYTES,
};
use crate::session::Session;

/// A step's error on one record, naming the record's file and line (and the line's
/// start).
fn malformed(
    source: &LinesSource,
    block: &BlockBytes<'_>,
    at: usize,
    line: &[u8],
    e: Error,
) -> Error {
    Error::Malformed {
        at: Location {
            path: block.path.to_path_buf(),
            line: source.line_number(block, at),
        },
        reason: format!("{e}\n  the line starts {:?}", line_head(line)),
    }
}

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
    if let Some(shared) = &ctx.shared {
        if spec.kind == ReadKind::Json {
            return shared.consume(spec, stages, only, graph);
        }
    }
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
    // Leading plucks and flattens, or a `values_at`, are done by the parser when
    // it can.
    let fast = match spec.kind {
        ReadKind::Json => extract::shortcut(prefix),
        ReadKind::Text => None,
    };
    // A leading select of what the parse already built only (the projection is
    // that select's) would walk each record to remove nothing: skipped.
    let skip = match (prefix.first(), only) {
        (Some(Stage::Select(Some(n))), Some(o)) if **n == *o && spec.kind == ReadKind::Json => 1,
        _ => 0,
    };
    let mut reached = Vec::new();
    let mut bytes = 0u64;
    source.for_each_piece(i, |block| {
        bytes += block.bytes.len() as u64;
        let wrap = |at: usize, line: &[u8], e: Error| malformed(source, &block, at, line, e);
        for (at, line) in lines(&block.bytes) {
            if line.len() as u64 > source.max_line_bytes {
                return Err(source.too_long(&block, at));
            }
            if let Some((walk, covered)) = &fast {
                reached.clear();
                match walk.walk(line, &mut reached) {
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
            push_record(&prefix[skip..], record, &mut out).map_err(|e| wrap(at, line, e))?;
        }
        Ok(true)
    })?;
    Ok((apply_rest(rest, out)?, skipped, bytes))
}

/// One read of a JSON-lines source that feeds several bags of one computation
/// ([`super::compute_all`]): each line is parsed once (building the union of what
/// the consumers read) and run through every consumer's steps in the same task.
/// The task's output holds what each consumer's steps made of the block (a count's
/// nulls, a pluck's values), never the parsed records themselves, and a small
/// `shared-select` task per consumer and block hands each its part.
///
/// Lowering registers consumers ([`SharedReads::consume`]) and gives them the keys
/// of their select tasks at once; the read layers are added by
/// [`SharedReads::finish`], when every consumer is known.
#[derive(Default)]
pub(crate) struct SharedReads {
    groups: Mutex<Vec<SharedGroup>>,
}

struct SharedGroup {
    spec: Arc<ReadSpec>,
    name: Arc<str>,
    consumers: Vec<(Arc<[Stage]>, Option<Arc<Need>>)>,
}

/// What the consumers of one shared read together need parsed: `None` for whole
/// records.
fn union_need(consumers: &[(Arc<[Stage]>, Option<Arc<Need>>)]) -> Option<Need> {
    let mut all = Need::default();
    for (_, only) in consumers {
        all.merge(only.as_deref()?);
    }
    Some(all)
}

impl SharedReads {
    /// Registers a consumer of `spec` with its steps and projection; returns the
    /// keys of its partitions.
    fn consume(
        &self,
        spec: &Arc<ReadSpec>,
        stages: Arc<[Stage]>,
        only: Option<Arc<Need>>,
        graph: &mut Graph,
    ) -> Vec<Key> {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let g = match groups.iter().position(|g| Arc::ptr_eq(&g.spec, spec)) {
            Some(g) => g,
            None => {
                groups.push(SharedGroup {
                    spec: spec.clone(),
                    name: layer_name("read-json-shared"),
                    consumers: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let group = &mut groups[g];
        let k = group.consumers.len();
        group.consumers.push((stages, only));
        let inputs: Vec<Key> = (0..spec.source.blocks.len())
            .map(|i| Key::new(&group.name, i))
            .collect();
        drop(groups);
        super::per_partition(
            graph,
            "shared-select",
            &inputs,
            Arc::new(move |_, v| match v {
                Value::Pieces(parts) => match parts.get(k) {
                    Some(Value::Records(r)) => Ok(Value::Records(r.clone())),
                    _ => Err(Error::Internal(format!("a shared read has no part {k}"))),
                },
                other => Err(Error::Internal(format!(
                    "a shared read gave {}",
                    other.kind()
                ))),
            }),
        )
    }

    /// Adds the read layer of every source registered so far.
    pub(crate) fn finish(&self, graph: &mut Graph, ctx: &LowerCtx) {
        let groups = std::mem::take(&mut *self.groups.lock().unwrap_or_else(|p| p.into_inner()));
        for group in groups {
            let need = union_need(&group.consumers).map(Arc::new);
            let consumers: Arc<[(Arc<[Stage]>, Option<Arc<Need>>)]> = group.consumers.into();
            let tasks: Vec<Task> = (0..group.spec.source.blocks.len())
                .map(|i| {
                    let (spec, consumers, need) =
                        (group.spec.clone(), consumers.clone(), need.clone());
                    let (run, skipped) = (ctx.run.clone(), ctx.skipped.clone());
                    Task {
                        key: Key::new(&group.name, i),
                        deps: vec![],
                        op: FnOperator::new("read-json-shared", move |_: &[Arc<Value>]| {
                            let (parts, bad, bytes) =
                                read_block_shared(&spec, i, &consumers, need.as_deref())?;
                            run.add_bytes_read(bytes);
                            skipped.fetch_add(bad, Ordering::Relaxed);
                            spec.skipped_total.fetch_add(bad, Ordering::Relaxed);
                            Ok(Value::Pieces(
                                parts.into_iter().map(Value::Records).collect(),
                            ))
                        }),
                    }
                })
                .collect();
            graph.add_layer(Layer {
                name: group.name,
                tasks,
            });
        }
    }
}

/// Parses block `i` once and runs every consumer's steps on each record; returns
/// each consumer's records, the lines skipped and the bytes read.
fn read_block_shared(
    spec: &ReadSpec,
    i: usize,
    consumers: &[(Arc<[Stage]>, Option<Arc<Need>>)],
    need: Option<&Need>,
) -> Result<(Vec<Vec<J>>, u64, u64)> {
    let source = &spec.source;
    let splits: Vec<(&[Stage], &[Stage])> =
        consumers.iter().map(|(s, _)| split_stages(s)).collect();
    let mut outs: Vec<Vec<J>> = consumers.iter().map(|_| Vec::new()).collect();
    let mut skipped = 0u64;
    let mut bytes = 0u64;
    source.for_each_piece(i, |block| {
        bytes += block.bytes.len() as u64;
        let wrap = |at: usize, line: &[u8], e: Error| malformed(source, &block, at, line, e);
        for (at, line) in lines(&block.bytes) {
            if line.len() as u64 > source.max_line_bytes {
                return Err(source.too_long(&block, at));
            }
            let mut record = match need.map_or_else(
                || serde_json::from_slice::<J>(line),
                |f| parse_projected(line, f),
            ) {
                Ok(r) => r,
                Err(_) if spec.on_error == OnError::Skip => {
                    skipped += 1;
                    continue;
                }
                Err(e) => return Err(bad_json(source, &block, at, line, &e.to_string())),
            };
            let last = splits.len() - 1;
            for (k, (prefix, _)) in splits.iter().enumerate() {
                let out = &mut outs[k];
                // A leading pluck or filter reads the record in place, so only what
                // it keeps is copied.
                let from = match prefix.first() {
                    Some(Stage::Pluck(p)) => match p.path.get(&record) {
                        Some(v) => {
                            push_record(&prefix[1..], v.into_owned(), out)
                                .map_err(|e| wrap(at, line, e))?;
                            continue;
                        }
                        // The default, or the error naming the path, below.
                        None => 0,
                    },
                    Some(Stage::Discard) => {
                        push_record(&prefix[1..], J::Null, out).map_err(|e| wrap(at, line, e))?;
                        continue;
                    }
                    Some(Stage::Select(Some(n))) => {
                        push_record(&prefix[1..], pruned(&record, n), out)
                            .map_err(|e| wrap(at, line, e))?;
                        continue;
                    }
                    Some(Stage::Filter(f)) => {
                        if !f(&record).map_err(|e| wrap(at, line, e))? {
                            continue;
                        }
                        1
                    }
                    _ => 0,
                };
                // The last consumer takes the record itself.
                let r = if k == last {
                    std::mem::take(&mut record)
                } else {
                    record.clone()
                };
                push_record(&prefix[from..], r, out).map_err(|e| wrap(at, line, e))?;
            }
        }
        Ok(true)
    })?;
    let mut parts = Vec::with_capacity(outs.len());
    for ((_, rest), out) in splits.iter().zip(outs) {
        parts.push(apply_rest(rest, out)?);
    }
    Ok((parts, skipped, bytes))
}
