//! The join of application spans with IOAM traces, by (trace id, span id).
//!
//! Pure and synchronous: time is passed in (`now_ms`, any monotonic clock), so
//! tests drive it. Each key has one entry holding what has arrived so far (the
//! span's times, the traces aggregated per hop) and a deadline:
//!
//! - a trace or a span alone waits up to `max_delay` for the other;
//! - once both are there, the entry lingers `linger` more for further packets
//!   of the same span, then the network span is emitted;
//! - an entry past its deadline with traces but no span is emitted anyway
//!   (parented to the span id it carried: nothing is lost) and counted as
//!   expired unmatched; one with a span but no traces just goes.
//!
//! Memory is bounded by `max_items` entries and `max_bytes` (an estimate);
//! when a new item would cross a bound, the entries closest to their deadline
//! are evicted and counted as dropped.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};

use crate::enrich::{Parent, PathAgg, network_span};
use crate::model::{Attributes, IoamReport, OutSpan, SpanKey};

#[derive(Debug, Clone)]
pub struct JoinConfig {
    pub max_delay_ms: u64,
    pub linger_ms: u64,
    pub max_items: usize,
    pub max_bytes: usize,
    /// Resource of the network spans.
    pub resource: Attributes,
}

impl Default for JoinConfig {
    fn default() -> Self {
        JoinConfig {
            max_delay_ms: 10_000,
            linger_ms: 1_000,
            max_items: 1_000_000,
            max_bytes: 512 << 20,
            resource: vec![("service.name".into(), "clt-network".into())],
        }
    }
}

/// Counters; all monotonic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinStats {
    pub spans_received: u64,
    /// IOAM traces (packets) received, with ids or without.
    pub traces_received: u64,
    pub traces_plain: u64,
    /// Traces joined with their span.
    pub traces_matched: u64,
    /// Spans that got a network span.
    pub spans_enriched: u64,
    /// Spans whose traces never came (most spans carry no IOAM).
    pub spans_without_ioam: u64,
    /// Traces whose span never came within the delay.
    pub traces_expired_unmatched: u64,
    pub spans_dropped: u64,
    pub traces_dropped: u64,
}

#[derive(Debug, Clone, Copy)]
struct SpanTimes {
    start_ns: u64,
    end_ns: u64,
}

#[derive(Debug)]
struct Entry {
    span: Option<SpanTimes>,
    path: Option<PathAgg>,
    deadline: u64,
    bytes: usize,
}

const ENTRY_OVERHEAD: usize = std::mem::size_of::<(SpanKey, Entry)>() + 32;

#[derive(Debug)]
pub struct Joiner {
    cfg: JoinConfig,
    entries: HashMap<SpanKey, Entry>,
    /// (deadline, key) in push order; stale when the entry's deadline moved.
    queue: VecDeque<(u64, SpanKey)>,
    bytes: usize,
    stats: JoinStats,
}

impl Joiner {
    pub fn new(cfg: JoinConfig) -> Joiner {
        Joiner {
            cfg,
            entries: HashMap::new(),
            queue: VecDeque::new(),
            bytes: 0,
            stats: JoinStats::default(),
        }
    }

    pub fn stats(&self) -> JoinStats {
        self.stats
    }

    /// Entries waiting (spans or traces or both).
    pub fn pending(&self) -> usize {
        self.entries.len()
    }

    pub fn pending_bytes(&self) -> usize {
        self.bytes
    }

    /// Records an application span (by key and times). Returns nothing: the
    /// network span comes out of [`Joiner::expire`].
    pub fn insert_span(
        &mut self,
        key: SpanKey,
        start_ns: u64,
        end_ns: u64,
        now_ms: u64,
        out: &mut Vec<OutSpan>,
    ) {
        self.stats.spans_received += 1;
        let times = SpanTimes { start_ns, end_ns };
        let deadline = match self.entries.get_mut(&key) {
            Some(e) => {
                if e.span.is_some() {
                    return; // a duplicate: the first one stands
                }
                e.span = Some(times);
                if let Some(p) = &e.path {
                    self.stats.traces_matched += u64::from(p.packets);
                }
                e.deadline = now_ms + self.cfg.linger_ms;
                e.deadline
            }
            None => {
                self.make_room(ENTRY_OVERHEAD, out);
                let deadline = now_ms + self.cfg.max_delay_ms;
                self.entries.insert(
                    key,
                    Entry {
                        span: Some(times),
                        path: None,
                        deadline,
                        bytes: ENTRY_OVERHEAD,
                    },
                );
                self.bytes += ENTRY_OVERHEAD;
                deadline
            }
        };
        self.queue.push_back((deadline, key));
    }

    /// Records an IOAM trace. Plain ones (no ids) come out at once as spans
    /// of their own in `out`.
    pub fn insert_trace(&mut self, report: &IoamReport, now_ms: u64, out: &mut Vec<OutSpan>) {
        self.stats.traces_received += 1;
        let Some(key) = report.key else {
            self.stats.traces_plain += 1;
            let agg = PathAgg::new(report);
            let trace_id = plain_trace_id(report);
            let span_id = crate::enrich::network_span_id(
                (trace_id as u64) ^ report.capture_time_ns ^ self.stats.traces_plain,
            );
            out.push(network_span(
                &agg,
                Parent::None { trace_id, span_id },
                &self.cfg.resource,
            ));
            return;
        };
        if let Some(e) = self.entries.get_mut(&key) {
            let before = e.path.as_ref().map_or(0, PathAgg::approx_bytes);
            match &mut e.path {
                Some(p) => p.add(report),
                None => e.path = Some(PathAgg::new(report)),
            }
            if e.span.is_some() {
                self.stats.traces_matched += 1;
            }
            let after = e.path.as_ref().map_or(0, PathAgg::approx_bytes);
            e.bytes = e.bytes + after - before;
            self.bytes = self.bytes + after - before;
            return;
        }
        let agg = PathAgg::new(report);
        let bytes = ENTRY_OVERHEAD + agg.approx_bytes();
        self.make_room(bytes, out);
        let deadline = now_ms + self.cfg.max_delay_ms;
        if let MapEntry::Vacant(v) = self.entries.entry(key) {
            v.insert(Entry {
                span: None,
                path: Some(agg),
                deadline,
                bytes,
            });
            self.bytes += bytes;
            self.queue.push_back((deadline, key));
        }
    }

    /// Emits every entry whose deadline is at or before `now_ms`.
    pub fn expire(&mut self, now_ms: u64, out: &mut Vec<OutSpan>) {
        while let Some(&(deadline, key)) = self.queue.front() {
            if deadline > now_ms {
                break;
            }
            self.queue.pop_front();
            self.finish(deadline, key, out);
        }
    }

    /// Emits everything (shutdown).
    pub fn flush(&mut self, out: &mut Vec<OutSpan>) {
        while let Some((deadline, key)) = self.queue.pop_front() {
            self.finish(deadline, key, out);
        }
    }

    fn finish(&mut self, deadline: u64, key: SpanKey, out: &mut Vec<OutSpan>) {
        let MapEntry::Occupied(o) = self.entries.entry(key) else {
            return;
        };
        if o.get().deadline != deadline {
            return; // stale queue item: the entry was extended
        }
        let e = o.remove();
        self.bytes -= e.bytes;
        match (e.span, e.path) {
            (Some(s), Some(p)) => {
                self.stats.spans_enriched += 1;
                let parent = Parent::Matched {
                    key,
                    start_ns: s.start_ns,
                    end_ns: s.end_ns,
                };
                out.push(network_span(&p, parent, &self.cfg.resource));
            }
            (None, Some(p)) => {
                self.stats.traces_expired_unmatched += u64::from(p.packets);
                out.push(network_span(&p, Parent::Unmatched(key), &self.cfg.resource));
            }
            (Some(_), None) => self.stats.spans_without_ioam += 1,
            (None, None) => {}
        }
    }

    /// Evicts the entries nearest their deadline until `incoming` more bytes
    /// and one more entry fit.
    fn make_room(&mut self, incoming: usize, _out: &mut Vec<OutSpan>) {
        while !self.entries.is_empty()
            && (self.entries.len() + 1 > self.cfg.max_items
                || self.bytes + incoming > self.cfg.max_bytes)
        {
            let Some((deadline, key)) = self.queue.pop_front() else {
                break;
            };
            let MapEntry::Occupied(o) = self.entries.entry(key) else {
                continue;
            };
            if o.get().deadline != deadline {
                continue;
            }
            let e = o.remove();
            self.bytes -= e.bytes;
            if e.span.is_some() {
                self.stats.spans_dropped += 1;
            }
            if let Some(p) = e.path {
                self.stats.traces_dropped += u64::from(p.packets);
            }
        }
    }
}

/// A trace id for a plain IOAM trace: stable for a flow (so a flow's packets
/// group in one trace in the backend), random-looking otherwise.
fn plain_trace_id(r: &IoamReport) -> u128 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match &r.flow {
        Some(f) => (f.src, f.dst, f.src_port, f.dst_port, f.protocol).hash(&mut h),
        None => (r.capture_time_ns, r.namespace_id, r.nodes.len()).hash(&mut h),
    }
    let hi = h.finish();
    hi.hash(&mut h);
    let id = (u128::from(hi) << 64) | u128::from(h.finish());
    if id == 0 { 1 } else { id }
}
