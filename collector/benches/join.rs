//! Correlation rate and memory of the join, on one core. Prints rates and a
//! ratio against a baseline in the same process (a bare HashMap insert and
//! remove of the same keys), and the peak RSS with 1 M pending items. Then
//! the embedded store's cost per enriched span: one durable transaction per
//! 10 spans (the exporter woke per push: at the login demo's 200 requests/s
//! the 50 ms expiry tick emits about 10) against batches of 200 (its 500 ms
//! delay: 100 login and 100 network spans) with a durable commit at most
//! every 5 s (the defaults, `docs/collector.md`).
//!
//! `cargo bench -p clt-collector --bench join`

use std::hint::black_box;
use std::time::{Duration, Instant};

use clt_collector::join::{JoinConfig, Joiner};
use clt_collector::model::{IoamReport, OutSpan, SpanKey};
use clt_collector::store::Store;
use clt_proto::ioam_api::IoamNode;

fn key(i: u64) -> SpanKey {
    SpanKey::new((0xfeed_u128 << 64) | u128::from(i + 1), i + 1).expect("non-zero")
}

fn report(i: u64) -> IoamReport {
    let node = |id: u32| IoamNode {
        hop_limit: 64 - id,
        id,
        ingress_id: id,
        egress_id: id + 1,
        timestamp_secs: 1_700_000_000,
        timestamp_frac: (i % 1_000_000) as u32,
        queue_depth: (i % 100) as u32,
        ..IoamNode::default()
    };
    IoamReport {
        key: Some(key(i)),
        namespace_id: 123,
        trace_type: 0xf2_0000,
        nodes: vec![node(3), node(2), node(1)],
        flow: None,
        capture_time_ns: 1,
        reporter: String::new(),
    }
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    const N: u64 = 1_000_000;
    let reports: Vec<IoamReport> = (0..N).map(report).collect();

    // Baseline: the same keys into a bare HashMap and out again.
    let t = Instant::now();
    let mut m = std::collections::HashMap::new();
    for i in 0..N {
        m.insert(key(i), i);
    }
    for i in 0..N {
        black_box(m.remove(&key(i)));
    }
    let base = t.elapsed().as_secs_f64();
    drop(m);

    // Join: every trace first (they wait), then every span, then expiry
    // emits N enriched network spans.
    let mut j = Joiner::new(JoinConfig {
        max_items: 2 * N as usize,
        max_bytes: usize::MAX,
        ..JoinConfig::default()
    });
    let mut out = Vec::with_capacity(16_384);
    let rss0 = rss_kib("VmRSS:");
    let t = Instant::now();
    for r in &reports {
        j.insert_trace(r, 0, &mut out);
    }
    let t_traces = t.elapsed().as_secs_f64();
    let pending = j.pending();
    let pending_bytes = j.pending_bytes();
    let rss_pending = rss_kib("VmRSS:");
    // Spans arrive in batches (as OTLP requests do); after each, the due
    // entries are emitted and handed on (here: counted and dropped, as the
    // export queue would take them).
    let t2 = Instant::now();
    let mut emitted = 0u64;
    let mut sample: Vec<OutSpan> = Vec::new();
    for batch in 0..(N / 10_000) {
        for i in batch * 10_000..(batch + 1) * 10_000 {
            j.insert_span(key(i), 1, 2, batch, &mut out);
        }
        j.expire(batch + JoinConfig::default().linger_ms, &mut out);
        emitted += out.len() as u64;
        if sample.len() < STORE_SPANS {
            sample.append(&mut out);
        }
        out.clear();
    }
    j.flush(&mut out);
    emitted += out.len() as u64;
    let t_spans = t2.elapsed().as_secs_f64();
    let total = t.elapsed().as_secs_f64();
    assert_eq!(emitted, N, "every span enriched");
    assert_eq!(j.stats().traces_matched, N);

    println!("join bench, {N} traces (3 hops each) and {N} spans, one core");
    println!(
        "  traces in (pending):     {:>12.0} traces/s",
        N as f64 / t_traces
    );
    println!(
        "  spans in + emit:         {:>12.0} spans/s",
        N as f64 / t_spans
    );
    println!(
        "  joined end to end:       {:>12.0} traces/s (with their spans)",
        N as f64 / total
    );
    println!(
        "  baseline hashmap in+out: {:>12.0} keys/s",
        N as f64 / base
    );
    println!("  ratio join/baseline time: {:.1}x", total / base);
    println!(
        "  1M pending: {pending} items, {:.0} MiB estimated, RSS +{:.0} MiB (peak RSS {:.0} MiB)",
        pending_bytes as f64 / 1048576.0,
        (rss_pending.saturating_sub(rss0)) as f64 / 1024.0,
        rss_kib("VmHWM:") as f64 / 1024.0
    );
    sample.truncate(STORE_SPANS);
    store_bench(&sample);
}

const STORE_SPANS: usize = 4_000;

/// Seconds to append `spans` to a fresh store in batches of `batch`.
fn store_run(spans: &[OutSpan], batch: usize, sync: Duration) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_with_sync(&dir.path().join("s.redb"), 100_000, sync).expect("store");
    let t = Instant::now();
    for chunk in spans.chunks(batch) {
        store.append(chunk).expect("append");
    }
    store.sync().expect("sync");
    t.elapsed().as_secs_f64()
}

fn store_bench(spans: &[OutSpan]) {
    let n = spans.len() as f64;
    let before = store_run(spans, 10, Duration::ZERO);
    let durable = store_run(spans, 200, Duration::ZERO);
    let after = store_run(spans, 200, Duration::from_secs(5));
    let t = Instant::now();
    let jsons: Vec<Vec<u8>> = spans
        .iter()
        .map(|s| serde_json::to_vec(s).unwrap_or_default())
        .collect();
    let json = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let packed: usize = jsons
        .iter()
        .map(|j| lz4_flex::compress_prepend_size(j).len())
        .sum();
    let lz4 = t.elapsed().as_secs_f64();
    let bytes: usize = jsons.iter().map(Vec::len).sum();
    println!("store bench, {} enriched network spans", spans.len());
    println!(
        "  JSON: {:.1} us/span, {:.0} bytes; LZ4: {:.1} us/span, {:.0} bytes stored",
        json / n * 1e6,
        bytes as f64 / n,
        lz4 / n * 1e6,
        packed as f64 / n
    );
    println!(
        "  batches of 10, every commit durable:   {:>8.1} us/span",
        before / n * 1e6
    );
    println!(
        "  batches of 200, every commit durable:  {:>8.1} us/span",
        durable / n * 1e6
    );
    println!(
        "  batches of 200, durable every 5 s:     {:>8.1} us/span",
        after / n * 1e6
    );
    println!("  ratio before/after: {:.1}x", before / after);
}
