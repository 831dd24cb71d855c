//! The way out: a bounded buffer of output spans and the task that drains it
//! into the downstream (OTLP/gRPC through `opentelemetry-otlp`) or the
//! embedded store, retrying with backoff while the downstream is away.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_otlp::WithTonicConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use tokio::sync::Notify;

use crate::Error;
use crate::metrics::Counters;
use crate::model::{AttrValue, Attributes, OutKind, OutSpan};
use crate::store::Store;

/// Spans waiting to go out, bounded in count and bytes. A span that does not
/// fit is dropped and counted; nothing already in is ever dropped.
///
/// A push wakes the exporter only when it makes the queue non-empty (to
/// start the delay) or fills a batch, not for every span.
#[derive(Debug)]
pub struct ExportQueue {
    inner: Mutex<QueueInner>,
    notify: Notify,
    max_spans: usize,
    max_bytes: usize,
    /// Queue length at which a push wakes the exporter (its batch size).
    wake_at: AtomicUsize,
}

#[derive(Debug, Default)]
struct QueueInner {
    spans: VecDeque<(OutSpan, usize)>,
    bytes: usize,
    /// When the queue last went from empty to non-empty.
    since: Option<Instant>,
}

impl ExportQueue {
    pub fn new(max_spans: usize, max_bytes: usize) -> ExportQueue {
        ExportQueue {
            inner: Mutex::default(),
            notify: Notify::new(),
            max_spans,
            max_bytes,
            wake_at: AtomicUsize::new(1),
        }
    }

    /// Queues spans; returns how many were dropped for lack of room.
    pub fn push(&self, spans: impl IntoIterator<Item = OutSpan>) -> u64 {
        let mut dropped = 0;
        let wake = {
            let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let before = q.spans.len();
            for s in spans {
                let b = s.approx_bytes();
                if q.spans.len() >= self.max_spans || q.bytes + b > self.max_bytes {
                    dropped += 1;
                    continue;
                }
                q.bytes += b;
                q.spans.push_back((s, b));
            }
            let after = q.spans.len();
            if before == 0 && after > 0 {
                q.since = Some(Instant::now());
            }
            let full = self.wake_at.load(Ordering::Relaxed);
            (before == 0 && after > 0) || (before < full && after >= full)
        };
        if wake {
            self.notify.notify_one();
        }
        dropped
    }

    fn take(&self, n: usize) -> Vec<(OutSpan, usize)> {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let n = n.min(q.spans.len());
        let batch: Vec<_> = q.spans.drain(..n).collect();
        q.bytes -= batch.iter().map(|(_, b)| b).sum::<usize>();
        if q.spans.is_empty() {
            q.since = None;
        }
        batch
    }

    /// Length, and when the queue last became non-empty.
    fn state(&self) -> (usize, Option<Instant>) {
        let q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (q.spans.len(), q.since)
    }

    /// Puts a failed batch back at the front, in order. Always fits: it was
    /// taken from this queue and the bound is checked only on push.
    fn put_back(&self, batch: Vec<(OutSpan, usize)>) {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        q.bytes += batch.iter().map(|(_, b)| b).sum::<usize>();
        if q.since.is_none() && !batch.is_empty() {
            q.since = Some(Instant::now());
        }
        for item in batch.into_iter().rev() {
            q.spans.push_front(item);
        }
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .spans
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

fn to_value(v: &AttrValue) -> Value {
    match v {
        AttrValue::Bool(b) => Value::Bool(*b),
        AttrValue::Int(i) => Value::I64(*i),
        AttrValue::Double(d) => Value::F64(*d),
        AttrValue::Str(s) => Value::String(s.clone().into()),
    }
}

fn to_kvs(a: &Attributes) -> Vec<KeyValue> {
    a.iter()
        .map(|(k, v)| KeyValue::new(k.clone(), to_value(v)))
        .collect()
}

fn time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// Builds the SDK's `SpanData` with the span's own ids.
pub fn to_span_data(s: &OutSpan) -> SpanData {
    let ctx = SpanContext::new(
        TraceId::from_bytes(s.trace_id.to_be_bytes()),
        SpanId::from_bytes(s.span_id.to_be_bytes()),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    let events = s
        .events
        .iter()
        .map(|e| Event::new(e.name.clone(), time(e.time_ns), to_kvs(&e.attributes), 0))
        .collect();
    SpanData {
        span_context: ctx,
        parent_span_id: SpanId::from_bytes(s.parent_span_id.to_be_bytes()),
        parent_span_is_remote: false,
        span_kind: match s.kind {
            OutKind::Server => SpanKind::Server,
            OutKind::Client => SpanKind::Client,
            OutKind::Producer => SpanKind::Producer,
            OutKind::Consumer => SpanKind::Consumer,
            OutKind::Internal | OutKind::Unspecified => SpanKind::Internal,
        },
        name: s.name.clone(),
        start_time: time(s.start_ns),
        end_time: time(s.end_ns),
        attributes: to_kvs(&s.attributes),
        dropped_attributes_count: 0,
        events: {
            let mut ev = SpanEvents::default();
            ev.events = events;
            ev
        },
        links: SpanLinks::default(),
        status: match s.status_code {
            1 => Status::Ok,
            2 => Status::error(s.status_message.clone()),
            _ => Status::Unset,
        },
        instrumentation_scope: InstrumentationScope::builder(s.scope_name.clone())
            .with_version(s.scope_version.clone())
            .build(),
    }
}

/// Where spans go.
#[derive(Debug)]
pub enum Downstream {
    Otlp(OtlpDownstream),
    Store(Arc<Store>),
}

/// OTLP/gRPC exporters over one channel, one per distinct resource (the
/// SDK's exporter carries one resource).
#[derive(Debug)]
pub struct OtlpDownstream {
    channel: tonic::transport::Channel,
    timeout: Duration,
    exporters: HashMap<String, opentelemetry_otlp::SpanExporter>,
}

/// More distinct resources than this share the last exporter built (a
/// safety valve; real deployments have a handful of services).
const MAX_EXPORTERS: usize = 256;

impl OtlpDownstream {
    pub fn new(endpoint: &str, timeout: Duration) -> Result<OtlpDownstream, Error> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| Error::Config(format!("downstream {endpoint}: {e}")))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        Ok(OtlpDownstream {
            channel,
            timeout,
            exporters: HashMap::new(),
        })
    }

    fn exporter(
        &mut self,
        resource: &Attributes,
    ) -> Result<&opentelemetry_otlp::SpanExporter, Error> {
        let key = serde_json::to_string(resource).unwrap_or_default();
        if !self.exporters.contains_key(&key) {
            let mut e = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_channel(self.channel.clone())
                .with_timeout(self.timeout)
                .build()
                .map_err(|e| Error::Export(e.to_string()))?;
            e.set_resource(
                &Resource::builder_empty()
                    .with_attributes(to_kvs(resource))
                    .build(),
            );
            if self.exporters.len() >= MAX_EXPORTERS {
                self.exporters.clear();
            }
            self.exporters.insert(key.clone(), e);
        }
        self.exporters
            .get(&key)
            .ok_or_else(|| Error::Export("no exporter".into()))
    }

    /// Exports a batch; on error returns the spans that did not go.
    /// Exports a batch, one request per resource. A group refused for good
    /// is dropped and counted in `rejected`; at the first retryable failure
    /// that group and the rest come back as `Err` for a retry.
    async fn export(
        &mut self,
        batch: Vec<(OutSpan, usize)>,
        rejected: &mut u64,
    ) -> Result<(), (Error, Vec<(OutSpan, usize)>)> {
        let mut groups: Vec<(Attributes, Vec<(OutSpan, usize)>)> = Vec::new();
        for item in batch {
            match groups.iter_mut().find(|(r, _)| *r == item.0.resource) {
                Some((_, g)) => g.push(item),
                None => groups.push((item.0.resource.clone(), vec![item])),
            }
        }
        let mut failed = Vec::new();
        let mut first_err = None;
        for (resource, group) in groups {
            if first_err.is_some() {
                failed.extend(group);
                continue;
            }
            let data: Vec<SpanData> = group.iter().map(|(s, _)| to_span_data(s)).collect();
            let res = match self.exporter(&resource) {
                Ok(e) => e
                    .export(data)
                    .await
                    .map_err(|e| Error::Export(e.to_string())),
                Err(e) => Err(e),
            };
            match res {
                Ok(()) => {}
                Err(e) if is_permanent(&e.to_string()) => {
                    // Retrying would block everything behind this group.
                    tracing::error!(error = %e, spans = group.len(), "downstream rejected spans; dropped");
                    *rejected += group.len() as u64;
                }
                Err(e) => {
                    first_err = Some(e);
                    failed.extend(group);
                }
            }
        }
        match first_err {
            None => Ok(()),
            Some(e) => Err((e, failed)),
        }
    }
}

/// Whether an export error is permanent (OTLP: only CANCELLED,
/// DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS and
/// RESOURCE_EXHAUSTED are worth retrying). Transport failures (no gRPC code
/// from the peer) are retried.
pub fn is_permanent(message: &str) -> bool {
    const PERMANENT: [&str; 8] = [
        "InvalidArgument",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "FailedPrecondition",
        "Unimplemented",
        "Unauthenticated",
        "Internal",
    ];
    message
        .split("gRPC code: ")
        .nth(1)
        .map(|rest| {
            rest.split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("")
        })
        .is_some_and(|code| PERMANENT.contains(&code))
}

/// When a batch goes out: `batch_size` spans are waiting, or `delay` has
/// passed since the oldest waiting span was queued (like OpenTelemetry's
/// batch span processor: one export, and one store transaction, per batch
/// rather than per wakeup).
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub batch_size: usize,
    pub delay: Duration,
}

/// Drains `queue` into `downstream` in batches (see [`BatchPolicy`]) until
/// `stop` is notified and the queue is empty (or, on stop, one last attempt
/// failed). On stop everything waiting goes out at once, and the embedded
/// store makes its last commit durable.
pub async fn run_exporter(
    queue: Arc<ExportQueue>,
    mut downstream: Downstream,
    policy: BatchPolicy,
    counters: Arc<Counters>,
    stop: Arc<Notify>,
) {
    drain(&queue, &mut downstream, policy, &counters, &stop).await;
    if let Downstream::Store(st) = downstream {
        match tokio::task::spawn_blocking(move || st.sync()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "store: last durable commit failed"),
            Err(e) => tracing::error!(error = %e, "store: last durable commit failed"),
        }
    }
}

async fn drain(
    queue: &ExportQueue,
    downstream: &mut Downstream,
    policy: BatchPolicy,
    counters: &Counters,
    stop: &Notify,
) {
    let batch_size = policy.batch_size.max(1);
    queue.wake_at.store(batch_size, Ordering::Relaxed);
    let mut backoff = Duration::from_millis(50);
    let mut stopping = false;
    loop {
        let (len, since) = queue.state();
        if len == 0 {
            if stopping {
                return;
            }
            tokio::select! {
                _ = queue.notify.notified() => {}
                _ = stop.notified() => stopping = true,
            }
            continue;
        }
        let due = since.map_or(Instant::now(), |t| t + policy.delay);
        if !stopping && len < batch_size && Instant::now() < due {
            tokio::select! {
                _ = queue.notify.notified() => {}
                _ = stop.notified() => stopping = true,
                _ = tokio::time::sleep_until(due.into()) => {}
            }
            continue;
        }
        let batch = queue.take(batch_size);
        let n = batch.len() as u64;
        let mut rejected = 0u64;
        let mut lost = 0u64;
        let result = match downstream {
            Downstream::Otlp(d) => d.export(batch, &mut rejected).await,
            Downstream::Store(st) => {
                let st = Arc::clone(st);
                let res = tokio::task::spawn_blocking(move || {
                    let r = st.append(batch.iter().map(|(s, _)| s));
                    (r, batch)
                })
                .await;
                match res {
                    Ok((Ok(()), _)) => Ok(()),
                    Ok((Err(e), batch)) => Err((e, batch)),
                    // The task panicked and took the batch with it.
                    Err(e) => {
                        lost = n;
                        Err((Error::Store(e.to_string()), Vec::new()))
                    }
                }
            }
        };
        if rejected > 0 {
            counters
                .export_spans_rejected
                .fetch_add(rejected, Ordering::Relaxed);
        }
        match result {
            Ok(()) => {
                counters
                    .export_spans_ok
                    .fetch_add(n - rejected, Ordering::Relaxed);
                backoff = Duration::from_millis(50);
            }
            Err((e, failed)) => {
                let ok = n - rejected - lost - failed.len() as u64;
                counters.export_spans_ok.fetch_add(ok, Ordering::Relaxed);
                counters
                    .export_spans_dropped
                    .fetch_add(lost, Ordering::Relaxed);
                counters.export_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "export failed");
                queue.put_back(failed);
                if stopping {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.notified() => stopping = true,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: u64) -> OutSpan {
        OutSpan {
            trace_id: 1,
            span_id: id,
            parent_span_id: 0,
            name: "s".into(),
            kind: OutKind::Server,
            start_ns: 1,
            end_ns: 2,
            attributes: Vec::new(),
            events: Vec::new(),
            status_code: 0,
            status_message: String::new(),
            resource: Vec::new(),
            scope_name: "".into(),
            scope_version: "".into(),
        }
    }

    async fn stored(store: &Store, n: usize) -> usize {
        for _ in 0..200 {
            let have = store.spans(None).map_or(0, |s| s.len());
            if have >= n {
                return have;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        store.spans(None).map_or(0, |s| s.len())
    }

    /// A batch goes out when full or when the delay has passed since its
    /// first span, not on every push; stop flushes what is left.
    #[tokio::test]
    async fn exporter_batches_until_full_or_delayed_and_flushes_on_stop() {
        for (delay, first_alone) in [
            (Duration::from_secs(3600), false),
            (Duration::from_millis(100), true),
        ] {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = Arc::new(
                Store::open_with_sync(&dir.path().join("s.redb"), 100, Duration::from_secs(3600))
                    .expect("store"),
            );
            let queue = Arc::new(ExportQueue::new(100, 1 << 20));
            let stop = Arc::new(Notify::new());
            let counters = Arc::new(Counters::default());
            let task = tokio::spawn(run_exporter(
                Arc::clone(&queue),
                Downstream::Store(Arc::clone(&store)),
                BatchPolicy {
                    batch_size: 3,
                    delay,
                },
                Arc::clone(&counters),
                Arc::clone(&stop),
            ));
            queue.push([span(1)]);
            if first_alone {
                // The delay sends the lone span.
                assert_eq!(stored(&store, 1).await, 1);
            } else {
                tokio::time::sleep(Duration::from_millis(300)).await;
                assert_eq!(stored(&store, 0).await, 0, "one span waits for its batch");
            }
            queue.push([span(2), span(3)]);
            assert_eq!(stored(&store, 3).await, 3);
            queue.push([span(4)]);
            stop.notify_one();
            task.await.expect("exporter");
            assert_eq!(store.spans(None).expect("read").len(), 4);
            assert_eq!(counters.export_spans_ok.load(Ordering::Relaxed), 4);
            assert!(queue.is_empty());
        }
    }

    #[test]
    fn permanent_errors_follow_otlp() {
        assert!(is_permanent(
            "export: TonicTracesClient export failed with gRPC code: InvalidArgument"
        ));
        assert!(is_permanent("x gRPC code: Unimplemented: detail"));
        assert!(!is_permanent(
            "x gRPC code: Unavailable: connection refused"
        ));
        assert!(!is_permanent("x gRPC code: ResourceExhausted"));
        assert!(!is_permanent("x gRPC code: DeadlineExceeded"));
        assert!(!is_permanent("transport error"));
    }
}
