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

/// Hashes [`SpanKey`]s with a seeded multiply-xor: W3C ids are random
/// already, so SipHash's cost buys little here; the per-process seed keeps
/// collisions from being precomputed.
#[derive(Debug, Clone)]
pub struct KeyHasherBuilder {
    seed: u64,
}

impl Default for KeyHasherBuilder {
    fn default() -> Self {
        use std::hash::BuildHasher;
        KeyHasherBuilder {
            seed: std::collections::hash_map::RandomState::new().hash_one(0x0043_4c54_u64) | 1,
        }
    }
}

impl std::hash::BuildHasher for KeyHasherBuilder {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher { h: self.seed }
    }
}

#[derive(Debug)]
pub struct KeyHasher {
    h: u64,
}

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.h = (self.h ^ x)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
    fn write_u128(&mut self, x: u128) {
        self.write_u64(x as u64);
        self.write_u64((x >> 64) as u64);
    }
    fn finish(&self) -> u64 {
        let h = self.h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^ (h >> 31)
    }
}

const ENTRY_OVERHEAD: usize = std::mem::size_of::<(SpanKey, Entry)>() + 32;

#[derive(Debug)]
pub struct Joiner {
    cfg: JoinConfig,
    entries: HashMap<SpanKey, Entry, KeyHasherBuilder>,
    /// (deadline, key) of entries waiting `max_delay`, in push order (so in
    /// deadline order); stale when the entry's deadline moved.
    queue: VecDeque<(u64, SpanKey)>,
    /// The same for matched entries lingering `linger` (also in order).
    linger: VecDeque<(u64, SpanKey)>,
    bytes: usize,
    stats: JoinStats,
}

impl Joiner {
    pub fn new(cfg: JoinConfig) -> Joiner {
        Joiner {
            cfg,
            entries: HashMap::default(),
            queue: VecDeque::new(),
            linger: VecDeque::new(),
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
                self.linger.push_back((e.deadline, key));
                return;
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
        while let Some((deadline, key)) = self.pop_earliest(Some(now_ms)) {
            self.finish(deadline, key, out);
        }
    }

    /// Pops the earlier of the two queues' fronts (if due by `limit`).
    fn pop_earliest(&mut self, limit: Option<u64>) -> Option<(u64, SpanKey)> {
        let q = self.queue.front().map(|x| x.0);
        let l = self.linger.front().map(|x| x.0);
        let from_queue = match (q, l) {
            (Some(q), Some(l)) => q <= l,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let front = if from_queue {
            self.queue.front()
        } else {
            self.linger.front()
        };
        if limit.is_some_and(|lim| front.is_some_and(|f| f.0 > lim)) {
            return None;
        }
        if from_queue {
            self.queue.pop_front()
        } else {
            self.linger.pop_front()
        }
    }

    /// Emits everything (shutdown).
    pub fn flush(&mut self, out: &mut Vec<OutSpan>) {
        while let Some((deadline, key)) = self.pop_earliest(None) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttrValue;
    use clt_proto::ioam_api::IoamNode;

    const TYPE: u32 = 0xc2_0000; // hop limit + node id, interface ids, queue depth

    fn key(n: u64) -> SpanKey {
        SpanKey::new(0xabc0_0000_0000_0000_0000_0000_0000_0000 | u128::from(n), n).unwrap()
    }

    /// A 3-hop path; the packet carries the last hop first.
    fn report(k: Option<SpanKey>, queue: u32) -> IoamReport {
        let node = |id: u32| IoamNode {
            hop_limit: 64 - id,
            id,
            ingress_id: id * 10,
            egress_id: id * 10 + 1,
            queue_depth: queue + id,
            ..IoamNode::default()
        };
        IoamReport {
            key: k,
            namespace_id: 123,
            trace_type: TYPE,
            nodes: vec![node(3), node(2), node(1)],
            flow: None,
            capture_time_ns: 1_000,
            reporter: "sink".into(),
        }
    }

    fn cfg() -> JoinConfig {
        JoinConfig {
            max_delay_ms: 1_000,
            linger_ms: 100,
            ..JoinConfig::default()
        }
    }

    fn int(s: &OutSpan, name: &str) -> i64 {
        match s.attr(name) {
            Some(AttrValue::Int(i)) => *i,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn trace_then_span_joins_and_aggregates() {
        let mut j = Joiner::new(cfg());
        let mut out = Vec::new();
        j.insert_trace(&report(Some(key(1)), 5), 0, &mut out);
        j.insert_trace(&report(Some(key(1)), 9), 10, &mut out);
        j.insert_span(key(1), 100, 200, 500, &mut out);
        assert!(out.is_empty());
        j.expire(599, &mut out);
        assert!(out.is_empty(), "linger not over yet");
        j.expire(600, &mut out);
        assert_eq!(out.len(), 1);
        let s = &out[0];
        assert_eq!(
            (s.trace_id, s.parent_span_id),
            (key(1).trace_id, key(1).span_id)
        );
        assert_ne!(s.span_id, key(1).span_id);
        assert_eq!(int(s, "ioam.packets"), 2);
        assert_eq!(int(s, "ioam.hop.count"), 3);
        // path order: hop 0 is node 1
        assert_eq!(int(s, "ioam.hop.0.node_id.last"), 1);
        assert_eq!(int(s, "ioam.hop.2.node_id.last"), 3);
        assert_eq!(int(s, "ioam.hop.2.ingress_if_id.last"), 30);
        assert_eq!(int(s, "ioam.hop.0.queue_depth.min"), 6);
        assert_eq!(int(s, "ioam.hop.0.queue_depth.max"), 10);
        assert_eq!(int(s, "ioam.hop.0.queue_depth.last"), 10);
        assert_eq!(s.events.len(), 3);
        assert_eq!(
            s.events[1].attributes[0],
            ("ioam.hop.index".into(), AttrValue::Int(1))
        );
        assert_eq!(
            (s.start_ns, s.end_ns),
            (100, 200),
            "no timestamps: the span's times"
        );
        let st = j.stats();
        assert_eq!(
            (st.traces_matched, st.spans_enriched, j.pending()),
            (2, 1, 0)
        );
    }

    #[test]
    fn span_then_trace_joins() {
        let mut j = Joiner::new(cfg());
        let mut out = Vec::new();
        j.insert_span(key(2), 1, 2, 0, &mut out);
        j.insert_trace(&report(Some(key(2)), 0), 900, &mut out);
        j.expire(999, &mut out);
        assert!(out.is_empty());
        j.expire(1_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(j.stats().traces_matched, 1);
        assert_eq!(out[0].attr("clt.matched"), Some(&AttrValue::Bool(true)));
    }

    #[test]
    fn too_late_is_unmatched_but_not_lost() {
        let mut j = Joiner::new(cfg());
        let mut out = Vec::new();
        j.insert_trace(&report(Some(key(3)), 0), 0, &mut out);
        j.expire(1_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].attr("clt.matched"), Some(&AttrValue::Bool(false)));
        assert_eq!(out[0].parent_span_id, key(3).span_id);
        j.insert_span(key(3), 1, 2, 1_001, &mut out);
        j.expire(5_000, &mut out);
        let st = j.stats();
        assert_eq!(
            (
                st.traces_expired_unmatched,
                st.spans_without_ioam,
                st.traces_matched
            ),
            (1, 1, 0)
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn plain_traces_go_out_at_once() {
        let mut j = Joiner::new(cfg());
        let mut out = Vec::new();
        j.insert_trace(&report(None, 0), 0, &mut out);
        j.insert_trace(&report(None, 0), 0, &mut out);
        assert_eq!(out.len(), 2);
        assert_ne!(out[0].span_id, out[1].span_id);
        assert_eq!(out[0].parent_span_id, 0);
        assert_eq!((j.pending(), j.stats().traces_plain), (0, 2));
    }

    #[test]
    fn bounds_evict_oldest_and_count() {
        let mut j = Joiner::new(JoinConfig {
            max_items: 100,
            ..cfg()
        });
        let mut out = Vec::new();
        for i in 1..=1_000 {
            j.insert_trace(&report(Some(key(i)), 0), i, &mut out);
            assert!(j.pending() <= 100);
        }
        assert_eq!(j.stats().traces_dropped, 900);
        // the newest survived
        j.insert_span(key(1_000), 1, 2, 1_000, &mut out);
        j.flush(&mut out);
        assert_eq!(j.stats().spans_enriched, 1);

        let mut j = Joiner::new(JoinConfig {
            max_bytes: 64 * 1024,
            ..cfg()
        });
        for i in 1..=10_000 {
            j.insert_trace(&report(Some(key(i)), 0), i, &mut out);
            assert!(j.pending_bytes() <= 64 * 1024);
        }
        assert!(j.stats().traces_dropped > 9_000);
    }

    #[test]
    fn duplicate_span_is_ignored_and_mismatched_trace_counted() {
        let mut j = Joiner::new(cfg());
        let mut out = Vec::new();
        j.insert_span(key(4), 1, 2, 0, &mut out);
        j.insert_span(key(4), 1, 2, 0, &mut out);
        let mut other = report(Some(key(4)), 0);
        j.insert_trace(&report(Some(key(4)), 0), 1, &mut out);
        other.namespace_id = 7;
        j.insert_trace(&other, 2, &mut out);
        j.flush(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(int(&out[0], "ioam.packets"), 1);
        assert_eq!(int(&out[0], "ioam.packets.mismatched"), 1);
    }
}
