//! The capturing node's own hop: joins captured traces with the kernel's
//! `IOAM6_EVENT_TRACE` events.
//!
//! The agent captures at the packet tap, before the IPv6 stack fills this
//! node's entry; the kernel then multicasts an event with the trace's
//! filled data after its fill (this node's entry first, then every earlier
//! one), but without the packet's addresses or CLT ids. A captured trace
//! and an event belong together when they have the same namespace and trace
//! type and the event's data ends with the captured filled bytes, the
//! difference being exactly one entry (or nothing, when the node found no
//! room). Equal candidates are taken oldest first.
//!
//! Like the collector's join, this is pure and synchronous: time (ns of any
//! monotonic clock) is passed in, every bound is a count, and every outcome
//! is counted. Events usually arrive first (the capture ring hands blocks
//! over every 20 ms); a trace waits for its event at most `window`, then
//! goes out without this node's entry. Events wait ten times as long
//! (memory, not latency), for a capture side that lags.

use std::collections::VecDeque;

use clt_proto::clt_api::CltTrace;
use clt_wire::{NodeRepr, TraceFlags, TraceRepr, TraceType};

use super::convert;

/// What a captured trace is matched on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Key {
    pub namespace: u16,
    /// The 24-bit trace type.
    pub trace_type: u32,
    /// The filled node data as captured (the most recent entry first).
    pub filled: Vec<u8>,
}

/// One trace event, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub namespace: u16,
    /// The 24-bit trace type (the event carries it shifted left by 8, with
    /// the reserved byte below).
    pub trace_type: u32,
    pub data: Vec<u8>,
}

impl Event {
    /// From the event's attributes as the kernel sends them.
    pub fn from_kernel(namespace: u16, type_be32: u32, data: &[u8]) -> Event {
        Event {
            namespace,
            trace_type: type_be32 >> 8,
            data: data.to_vec(),
        }
    }
}

/// The join's counters (since it started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Traces that got this node's entry.
    pub joined: u64,
    /// Traces matched with an event whose node found no room (Overflow).
    pub no_room: u64,
    /// Traces that went out without this node's entry (no event in time,
    /// or too many waiting).
    pub unmatched: u64,
    pub events: u64,
    /// Events no captured trace claimed in time (or too many waiting):
    /// traffic this node processed but did not capture.
    pub events_unmatched: u64,
}

/// Events wait this many windows. A trace's wait is latency, an event's
/// only memory (bounded by count): when the capture side lags (a busy
/// machine, a slow ring block), its events are still there when its traces
/// come.
pub const EVENT_KEEP_WINDOWS: u64 = 10;

#[derive(Debug)]
struct Waiting<T> {
    at: u64,
    item: T,
}

/// The join state; see the module documentation.
#[derive(Debug)]
pub struct SinkJoin {
    window_ns: u64,
    /// How long an event waits: [`EVENT_KEEP_WINDOWS`] windows.
    keep_ns: u64,
    max_waiting: usize,
    traces: VecDeque<Waiting<(Box<CltTrace>, Key)>>,
    events: VecDeque<Waiting<Event>>,
    stats: SinkStats,
}

/// Whether `e` is what this node's kernel raised for a packet whose trace
/// was captured as `k`: the length of this node's entry (0: no room), or
/// `None` if not.
fn matches(k: &Key, e: &Event) -> Option<usize> {
    if k.namespace != e.namespace || k.trace_type != e.trace_type || !e.data.ends_with(&k.filled) {
        return None;
    }
    let own = e.data.len() - k.filled.len();
    if own == 0 {
        return Some(0);
    }
    let len = NodeRepr::entry_len(TraceType::from_bits(e.trace_type), &e.data[..own]).ok()?;
    (len == own).then_some(own)
}

/// `t` with the entry at the start of `data` (this node's) as its most
/// recent hop.
fn add_own_entry(t: &mut CltTrace, trace_type: u32, entry: &[u8]) {
    let Some(ioam) = t.trace.as_mut() else {
        return;
    };
    let ty = TraceType::from_bits(trace_type);
    let own = TraceRepr {
        namespace_id: 0,
        node_len: ty.node_len(),
        flags: TraceFlags::default(),
        remaining_len: 0,
        trace_type: ty,
        reserved: 0,
        node_data: entry,
    };
    if let Some(n) = convert::nodes(&own, 1).pop() {
        ioam.nodes.insert(0, n);
    }
}

impl SinkJoin {
    /// Traces wait at most `window_ns` for their event, events
    /// [`EVENT_KEEP_WINDOWS`] times as long for their trace; at most
    /// `max_waiting` traces and as many events wait.
    pub fn new(window_ns: u64, max_waiting: usize) -> SinkJoin {
        SinkJoin {
            window_ns,
            keep_ns: window_ns.saturating_mul(EVENT_KEEP_WINDOWS),
            max_waiting: max_waiting.max(1),
            traces: VecDeque::new(),
            events: VecDeque::new(),
            stats: SinkStats::default(),
        }
    }

    pub fn stats(&self) -> SinkStats {
        self.stats
    }

    /// The traces and events waiting.
    pub fn waiting(&self) -> (usize, usize) {
        (self.traces.len(), self.events.len())
    }

    /// A captured trace: handed to `out` at once with this node's entry if
    /// its event is here, else kept until its event comes or the window
    /// ends.
    pub fn trace(
        &mut self,
        now: u64,
        mut t: Box<CltTrace>,
        key: Key,
        out: &mut impl FnMut(Box<CltTrace>),
    ) {
        self.expire(now, out);
        let found = self
            .events
            .iter()
            .enumerate()
            .find_map(|(i, w)| matches(&key, &w.item).map(|own| (i, own)));
        if let Some((i, own)) = found {
            if let Some(w) = self.events.remove(i) {
                self.finish(&mut t, &w.item, own);
            }
            out(t);
            return;
        }
        if self.traces.len() >= self.max_waiting {
            if let Some(old) = self.traces.pop_front() {
                self.stats.unmatched += 1;
                out(old.item.0);
            }
        }
        self.traces.push_back(Waiting {
            at: now,
            item: (t, key),
        });
    }

    /// A trace event from the kernel: completes the oldest waiting trace it
    /// matches, or waits for it.
    pub fn event(&mut self, now: u64, e: Event, out: &mut impl FnMut(Box<CltTrace>)) {
        self.stats.events += 1;
        self.expire(now, out);
        let found = self
            .traces
            .iter()
            .enumerate()
            .find_map(|(i, w)| matches(&w.item.1, &e).map(|own| (i, own)));
        if let Some((i, own)) = found {
            if let Some(w) = self.traces.remove(i) {
                let (mut t, _) = w.item;
                self.finish(&mut t, &e, own);
                out(t);
            }
            return;
        }
        if self.events.len() >= self.max_waiting {
            self.events.pop_front();
            self.stats.events_unmatched += 1;
        }
        self.events.push_back(Waiting { at: now, item: e });
    }

    fn finish(&mut self, t: &mut CltTrace, e: &Event, own: usize) {
        if own == 0 {
            self.stats.no_room += 1;
        } else {
            self.stats.joined += 1;
            add_own_entry(t, e.trace_type, &e.data[..own]);
        }
    }

    /// Hands on the traces whose window ended (without this node's entry)
    /// and forgets such events.
    pub fn expire(&mut self, now: u64, out: &mut impl FnMut(Box<CltTrace>)) {
        while self
            .traces
            .front()
            .is_some_and(|w| now.saturating_sub(w.at) >= self.window_ns)
        {
            if let Some(w) = self.traces.pop_front() {
                self.stats.unmatched += 1;
                out(w.item.0);
            }
        }
        while self
            .events
            .front()
            .is_some_and(|w| now.saturating_sub(w.at) >= self.keep_ns)
        {
            self.events.pop_front();
            self.stats.events_unmatched += 1;
        }
    }

    /// Hands on every waiting trace (at shutdown).
    pub fn flush(&mut self, out: &mut impl FnMut(Box<CltTrace>)) {
        self.expire(u64::MAX, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clt_proto::ioam_api::{IoamNode, IoamTrace};

    const T: u32 = 0xc2_0000; // hop limit+node id, interface ids, queue depth

    fn entry(node: u32, hl: u8) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(&(u32::from(hl) << 24 | node).to_be_bytes());
        e.extend_from_slice(&((node * 10) << 16 | (node * 10 + 1)).to_be_bytes());
        e.extend_from_slice(&node.to_be_bytes());
        e
    }

    fn captured(span: u64, filled: &[u8]) -> (Box<CltTrace>, Key) {
        let t = CltTrace {
            trace: Some(IoamTrace {
                span_id: span,
                nodes: vec![IoamNode::default(); filled.len() / 12],
                ..IoamTrace::default()
            }),
            ..CltTrace::default()
        };
        let key = Key {
            namespace: 123,
            trace_type: T,
            filled: filled.to_vec(),
        };
        (Box::new(t), key)
    }

    fn event(own: &[u8], filled: &[u8]) -> Event {
        Event::from_kernel(123, T << 8, &[own, filled].concat())
    }

    fn out(v: &mut Vec<CltTrace>) -> impl FnMut(Box<CltTrace>) + '_ {
        |t| v.push(*t)
    }

    #[test]
    fn an_event_first_completes_the_trace_at_once() {
        let mut j = SinkJoin::new(100, 16);
        let mut got = Vec::new();
        let before = [entry(2, 63), entry(1, 64)].concat();
        j.event(0, event(&entry(3, 62), &before), &mut out(&mut got));
        assert!(got.is_empty());
        let (t, k) = captured(7, &before);
        j.trace(5, t, k, &mut out(&mut got));
        assert_eq!(got.len(), 1);
        let nodes = &got[0].trace.as_ref().unwrap().nodes;
        assert_eq!(nodes.len(), 3);
        assert_eq!(
            (
                nodes[0].id,
                nodes[0].hop_limit,
                nodes[0].ingress_id,
                nodes[0].egress_id
            ),
            (3, 62, 30, 31)
        );
        assert_eq!(nodes[0].queue_depth, 3);
        assert_eq!(j.stats().joined, 1);
        assert_eq!(j.waiting(), (0, 0));
    }

    #[test]
    fn a_trace_first_waits_for_its_event_and_equal_ones_go_in_order() {
        let mut j = SinkJoin::new(100, 16);
        let mut got = Vec::new();
        let before = entry(1, 64);
        for span in [1, 2] {
            let (t, k) = captured(span, &before);
            j.trace(0, t, k, &mut out(&mut got));
        }
        assert!(got.is_empty());
        j.event(10, event(&entry(3, 63), &before), &mut out(&mut got));
        j.event(11, event(&entry(3, 62), &before), &mut out(&mut got));
        let spans: Vec<_> = got
            .iter()
            .map(|t| t.trace.as_ref().unwrap().span_id)
            .collect();
        assert_eq!(spans, [1, 2]);
        assert_eq!(got[1].trace.as_ref().unwrap().nodes[0].hop_limit, 62);
    }

    #[test]
    fn other_traces_namespaces_and_types_do_not_match() {
        let mut j = SinkJoin::new(100, 16);
        let mut got = Vec::new();
        let (t, k) = captured(1, &entry(1, 64));
        j.trace(0, t, k, &mut out(&mut got));
        // Different earlier entries, namespace, type; an own part that is not
        // one entry.
        j.event(1, event(&entry(3, 63), &entry(9, 64)), &mut out(&mut got));
        j.event(
            1,
            Event::from_kernel(124, T << 8, &[entry(3, 63), entry(1, 64)].concat()),
            &mut out(&mut got),
        );
        j.event(
            1,
            Event::from_kernel(123, 0x80_0000 << 8, &[entry(3, 63), entry(1, 64)].concat()),
            &mut out(&mut got),
        );
        j.event(
            1,
            event(&entry(3, 63)[..8], &entry(1, 64)),
            &mut out(&mut got),
        );
        assert!(got.is_empty());
        assert_eq!(j.waiting(), (1, 4));
        // The window ends: the trace goes out as captured; the events stay
        // ten windows.
        j.expire(101, &mut out(&mut got));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].trace.as_ref().unwrap().nodes.len(), 1);
        assert_eq!(j.waiting(), (0, 4));
        j.expire(1_001, &mut out(&mut got));
        assert_eq!(j.waiting(), (0, 0));
        let s = j.stats();
        assert_eq!(
            (s.joined, s.unmatched, s.events, s.events_unmatched),
            (0, 1, 4, 4)
        );
    }

    #[test]
    fn no_room_matches_without_an_entry_and_bounds_hold() {
        let mut j = SinkJoin::new(1_000, 2);
        let mut got = Vec::new();
        let full = [entry(2, 63), entry(1, 64)].concat();
        let (t, k) = captured(1, &full);
        j.trace(0, t, k, &mut out(&mut got));
        j.event(1, event(&[], &full), &mut out(&mut got));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].trace.as_ref().unwrap().nodes.len(), 2);
        assert_eq!(j.stats().no_room, 1);
        // At most two traces wait: the third pushes the oldest out.
        got.clear();
        for span in 1..=3 {
            let (t, k) = captured(span, &entry(span as u32, 64));
            j.trace(2, t, k, &mut out(&mut got));
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].trace.as_ref().unwrap().span_id, 1);
        for n in 0..3 {
            j.event(
                3,
                event(&entry(5, 1), &entry(90 + n, 1)),
                &mut out(&mut got),
            );
        }
        assert_eq!(j.waiting(), (2, 2));
        j.flush(&mut out(&mut got));
        assert_eq!(got.len(), 3);
        let s = j.stats();
        assert_eq!((s.unmatched, s.events_unmatched), (3, 3));
    }

    #[test]
    fn a_lagging_capture_still_finds_its_event() {
        let mut j = SinkJoin::new(100, 16);
        let mut got = Vec::new();
        let before = entry(1, 64);
        j.event(0, event(&entry(3, 63), &before), &mut out(&mut got));
        // The capture comes five windows later.
        let (t, k) = captured(1, &before);
        j.trace(500, t, k, &mut out(&mut got));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].trace.as_ref().unwrap().nodes.len(), 2);
        assert_eq!(j.stats().joined, 1);
    }
}
