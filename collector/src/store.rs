//! The embedded store: recent output spans in a redb file, for
//! `clt-collector traces` when no downstream is configured.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::Error;
use crate::model::OutSpan;

/// seq -> JSON of an [`OutSpan`], LZ4-compressed (block format, size
/// prepended). The network spans' JSON repeats its attribute names a lot:
/// compressed, a span writes a fraction of the pages, and redb's cost grows
/// with the bytes (the join bench's store lines). Files written before, with
/// a table `spans` of plain JSON, read as empty.
const SPANS: TableDefinition<u64, &[u8]> = TableDefinition::new("spans.json.lz4");

/// Largest span JSON accepted when reading back (a corrupt size prefix must
/// not allocate gigabytes).
const MAX_SPAN_JSON: usize = 64 << 20;

fn decode(v: &[u8]) -> Result<OutSpan, Error> {
    let size = v
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| err("stored span shorter than its size prefix"))?;
    if size as usize > MAX_SPAN_JSON {
        return Err(err(format!("stored span of {size} bytes")));
    }
    let json = lz4_flex::decompress_size_prepended(v).map_err(err)?;
    serde_json::from_slice(&json).map_err(err)
}

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
            let mut json = Vec::new();
            for (seq, s) in (first..).zip(spans) {
                json.clear();
                serde_json::to_writer(&mut json, s).map_err(err)?;
                let packed = lz4_flex::compress_prepend_size(&json);
                t.insert(seq, packed.as_slice()).map_err(err)?;
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
            let s = decode(v.value())?;
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

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn corrupt_rows_are_errors_not_allocations() {
        assert!(decode(&[1, 0]).is_err());
        assert!(decode(&[0xff, 0xff, 0xff, 0x7f, 0]).is_err());
        let packed = lz4_flex::compress_prepend_size(b"{\"not\": \"a span\"}");
        assert!(decode(&packed).is_err());
    }
}
