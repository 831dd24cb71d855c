//! The embedded store: recent output spans in a redb file, for
//! `clt-collector traces` when no downstream is configured.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::Error;
use crate::model::OutSpan;

/// seq -> JSON of an [`OutSpan`].
const SPANS: TableDefinition<u64, &[u8]> = TableDefinition::new("spans");

fn err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

/// The store's file. Commits are durable (fsync) at most every
/// `sync_every`; the ones in between are redb's `Durability::None`: visible
/// to readers at once, written to the file, not synced. A crash loses at
/// most the spans of the last `sync_every` and leaves the file at its last
/// durable commit, consistent (redb's commit protocol). Pages freed by the
/// trimming are reused only after a durable commit, which bounds the file's
/// growth between syncs.
#[derive(Debug)]
pub struct Store {
    db: Database,
    max_spans: usize,
    sync_every: Duration,
    last_sync: Mutex<Instant>,
}

impl Store {
    /// Opens the store with every commit durable.
    pub fn open(path: &Path, max_spans: usize) -> Result<Store, Error> {
        Store::open_with_sync(path, max_spans, Duration::ZERO)
    }

    /// Opens the store with a durable commit at most every `sync_every`.
    pub fn open_with_sync(
        path: &Path,
        max_spans: usize,
        sync_every: Duration,
    ) -> Result<Store, Error> {
        let db = Database::create(path).map_err(err)?;
        let tx = db.begin_write().map_err(err)?;
        tx.open_table(SPANS).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Store {
            db,
            max_spans,
            sync_every,
            last_sync: Mutex::new(Instant::now()),
        })
    }

    /// Makes every commit so far durable.
    pub fn sync(&self) -> Result<(), Error> {
        let tx = self.db.begin_write().map_err(err)?;
        tx.commit().map_err(err)?;
        *self.last_sync.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        Ok(())
    }

    /// Appends spans and trims the oldest beyond the bound, in one transaction.
    pub fn append<'a>(&self, spans: impl IntoIterator<Item = &'a OutSpan>) -> Result<(), Error> {
        let mut tx = self.db.begin_write().map_err(err)?;
        let durable = self
            .last_sync
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
            >= self.sync_every;
        if !durable {
            tx.set_durability(Durability::None);
        }
        {
            let mut t = tx.open_table(SPANS).map_err(err)?;
            let first = t.last().map_err(err)?.map_or(0, |(k, _)| k.value() + 1);
            for (seq, s) in (first..).zip(spans) {
                let json = serde_json::to_vec(s).map_err(err)?;
                t.insert(seq, json.as_slice()).map_err(err)?;
            }
            let len = t.len().map_err(err)? as usize;
            for _ in self.max_spans..len {
                if t.pop_first().map_err(err)?.is_none() {
                    break;
                }
            }
        }
        tx.commit().map_err(err)?;
        if durable {
            *self.last_sync.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
        Ok(())
    }

    /// Every stored span, oldest first, optionally of one trace.
    pub fn spans(&self, trace_id: Option<u128>) -> Result<Vec<OutSpan>, Error> {
        let tx = self.db.begin_read().map_err(err)?;
        let t = tx.open_table(SPANS).map_err(err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(err)? {
            let (_, v) = row.map_err(err)?;
            let s: OutSpan = serde_json::from_slice(v.value()).map_err(err)?;
            if trace_id.is_none_or(|t| t == s.trace_id) {
                out.push(s);
            }
        }
        Ok(out)
    }
}

/// Prints spans grouped by trace, parents before children, for a terminal.
pub fn print_traces(spans: &[OutSpan], w: &mut impl std::io::Write) -> std::io::Result<()> {
    let mut traces: Vec<u128> = spans.iter().map(|s| s.trace_id).collect();
    traces.sort_unstable();
    traces.dedup();
    for t in traces {
        writeln!(w, "trace {t:032x}")?;
        let in_trace: Vec<&OutSpan> = spans.iter().filter(|s| s.trace_id == t).collect();
        let ids: std::collections::HashSet<u64> = in_trace.iter().map(|s| s.span_id).collect();
        let roots: Vec<&&OutSpan> = in_trace
            .iter()
            .filter(|s| s.parent_span_id == 0 || !ids.contains(&s.parent_span_id))
            .collect();
        for r in roots {
            print_span(r, &in_trace, 1, w)?;
        }
    }
    Ok(())
}

fn print_span(
    s: &OutSpan,
    all: &[&OutSpan],
    depth: usize,
    w: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let pad = "  ".repeat(depth);
    let ms = s.end_ns.saturating_sub(s.start_ns) as f64 / 1e6;
    writeln!(w, "{pad}span {:016x} {} ({ms:.3} ms)", s.span_id, s.name)?;
    for (k, v) in &s.attributes {
        writeln!(
            w,
            "{pad}  {k} = {}",
            serde_json::to_string(v).unwrap_or_default()
        )?;
    }
    for e in &s.events {
        let attrs: Vec<String> = e
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
            .collect();
        writeln!(w, "{pad}  event {} {}", e.name, attrs.join(" "))?;
    }
    for c in all
        .iter()
        .filter(|c| c.parent_span_id == s.span_id && c.span_id != s.span_id)
    {
        print_span(c, all, depth + 1, w)?;
    }
    Ok(())
}
