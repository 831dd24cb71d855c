//! Prometheus text exposition of the collector's counters.
//!
//! Written by hand rather than with a metrics crate: every value already
//! lives in [`JoinStats`] or an atomic, and the text format for a dozen
//! counters is a few lines.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::join::JoinStats;

/// Counters outside the join.
#[derive(Debug, Default)]
pub struct Counters {
    pub otlp_requests: AtomicU64,
    pub ioam_streams: AtomicU64,
    pub ioam_messages_invalid: AtomicU64,
    pub export_spans_ok: AtomicU64,
    pub export_spans_dropped: AtomicU64,
    pub export_failures: AtomicU64,
    /// Spans the downstream refused for good (a non-retryable status).
    pub export_spans_rejected: AtomicU64,
    pub store_spans: AtomicU64,
}

#[derive(Debug)]
pub struct Snapshot<'a> {
    pub join: JoinStats,
    pub pending_items: usize,
    pub pending_bytes: usize,
    pub export_queue_spans: usize,
    pub export_queue_bytes: usize,
    pub counters: &'a Counters,
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP clt_collector_{name} {help}");
    let _ = writeln!(out, "# TYPE clt_collector_{name} {kind}");
    let _ = writeln!(out, "clt_collector_{name} {value}");
}

pub fn render(s: &Snapshot<'_>) -> String {
    let mut o = String::new();
    let j = &s.join;
    let c = s.counters;
    let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
    metric(
        &mut o,
        "spans_received_total",
        "counter",
        "application spans received over otlp",
        j.spans_received,
    );
    metric(
        &mut o,
        "ioam_traces_received_total",
        "counter",
        "ioam traces received",
        j.traces_received,
    );
    metric(
        &mut o,
        "ioam_traces_plain_total",
        "counter",
        "ioam traces without clt ids",
        j.traces_plain,
    );
    metric(
        &mut o,
        "ioam_traces_matched_total",
        "counter",
        "ioam traces joined with their span",
        j.traces_matched,
    );
    metric(
        &mut o,
        "spans_enriched_total",
        "counter",
        "spans that got a network span",
        j.spans_enriched,
    );
    metric(
        &mut o,
        "spans_without_ioam_total",
        "counter",
        "spans whose ioam traces never came",
        j.spans_without_ioam,
    );
    metric(
        &mut o,
        "ioam_traces_expired_unmatched_total",
        "counter",
        "ioam traces whose span never came",
        j.traces_expired_unmatched,
    );
    metric(
        &mut o,
        "spans_dropped_total",
        "counter",
        "pending spans evicted by the memory bound",
        j.spans_dropped,
    );
    metric(
        &mut o,
        "ioam_traces_dropped_total",
        "counter",
        "pending ioam traces evicted by the memory bound",
        j.traces_dropped,
    );
    metric(
        &mut o,
        "pending_items",
        "gauge",
        "entries waiting in the join",
        s.pending_items as u64,
    );
    metric(
        &mut o,
        "pending_bytes",
        "gauge",
        "estimated bytes waiting in the join",
        s.pending_bytes as u64,
    );
    metric(
        &mut o,
        "export_queue_spans",
        "gauge",
        "spans waiting for the downstream",
        s.export_queue_spans as u64,
    );
    metric(
        &mut o,
        "export_queue_bytes",
        "gauge",
        "estimated bytes waiting for the downstream",
        s.export_queue_bytes as u64,
    );
    metric(
        &mut o,
        "otlp_requests_total",
        "counter",
        "otlp export requests received",
        ld(&c.otlp_requests),
    );
    metric(
        &mut o,
        "ioam_streams_total",
        "counter",
        "ioam report streams received",
        ld(&c.ioam_streams),
    );
    metric(
        &mut o,
        "ioam_messages_invalid_total",
        "counter",
        "ioam messages rejected as malformed",
        ld(&c.ioam_messages_invalid),
    );
    metric(
        &mut o,
        "exported_spans_total",
        "counter",
        "spans the downstream or store accepted",
        ld(&c.export_spans_ok),
    );
    metric(
        &mut o,
        "export_dropped_spans_total",
        "counter",
        "spans dropped because the export buffer was full",
        ld(&c.export_spans_dropped),
    );
    metric(
        &mut o,
        "export_failures_total",
        "counter",
        "failed export attempts (retried)",
        ld(&c.export_failures),
    );
    o
}
