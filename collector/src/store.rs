//! The embedded store: recent output spans in a redb file, for
//! `clt-collector traces` when no downstream is configured.

use std::path::Path;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::Error;
use crate::model::OutSpan;

/// seq -> JSON of an [`OutSpan`].
const SPANS: TableDefinition<u64, &[u8]> = TableDefinition::new("spans");

fn err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

#[derive(Debug)]
pub struct Store {
    db: Database,
    max_spans: usize,
}

impl Store {
    pub fn open(path: &Path, max_spans: usize) -> Result<Store, Error> {
        let db = Database::create(path).map_err(err)?;
        let tx = db.begin_write().map_err(err)?;
        tx.open_table(SPANS).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Store { db, max_spans })
    }

    /// Appends spans and trims the oldest beyond the bound, in one transaction.
    pub fn append(&self, spans: &[OutSpan]) -> Result<(), Error> {
        let tx = self.db.begin_write().map_err(err)?;
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
        tx.commit().map_err(err)
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
