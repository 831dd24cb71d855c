//! Reporting to the collector: a bounded buffer and one gRPC client stream,
//! reconnected with backoff while the collector is away.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clt_proto::clt_api::CltTrace;
use clt_proto::clt_api::clt_ioam_service_client::CltIoamServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// The agent's counters.
#[derive(Debug, Default)]
pub struct AgentStats {
    pub packets: AtomicU64,
    pub traces: AtomicU64,
    pub malformed: AtomicU64,
    pub without_trace: AtomicU64,
    /// Dropped because the buffer was full (the collector away too long).
    pub dropped: AtomicU64,
    pub sent: AtomicU64,
    pub reconnects: AtomicU64,
    pub kernel_drops: AtomicU64,
    /// 1 when the node's trace events are not listened to (unavailable or
    /// failed): traces are reported as captured, without its own entry.
    pub own_hop_unavailable: AtomicU64,
    /// Traces reported with this node's own entry (from its trace event).
    pub own_hop_joined: AtomicU64,
    /// Traces whose event said this node found no room (Overflow).
    pub own_hop_no_room: AtomicU64,
    /// Traces reported without this node's entry: no event in time.
    pub own_hop_unmatched: AtomicU64,
    /// Trace events received.
    pub own_hop_events: AtomicU64,
    /// Events no captured trace claimed (traffic this node processed on
    /// an interface the agent does not capture on).
    pub own_hop_events_unmatched: AtomicU64,
    /// Events the kernel dropped (receive-buffer overruns).
    pub own_hop_events_lost: AtomicU64,
    pub own_hop_events_malformed: AtomicU64,
}

/// The capture side's handle: never blocks.
#[derive(Debug, Clone)]
pub struct ReportSender {
    tx: mpsc::Sender<CltTrace>,
    stats: Arc<AgentStats>,
}

impl ReportSender {
    pub fn send(&self, t: CltTrace) {
        if self.tx.try_send(t).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts the reporting task; `buffer` traces wait at most while away.
pub fn start(
    endpoint: String,
    buffer: usize,
    stats: Arc<AgentStats>,
) -> (ReportSender, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(buffer.max(1));
    let task = tokio::spawn(run(endpoint, rx, Arc::clone(&stats)));
    (ReportSender { tx, stats }, task)
}

async fn run(endpoint: String, mut rx: mpsc::Receiver<CltTrace>, stats: Arc<AgentStats>) {
    let mut backoff = Duration::from_millis(100);
    let mut pending: Option<CltTrace> = None;
    loop {
        let mut client = match CltIoamServiceClient::connect(endpoint.clone()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%endpoint, error = %e, retry_in_ms = backoff.as_millis() as u64, "collector unreachable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        tracing::info!(%endpoint, "reporting to collector");
        let (stx, srx) = mpsc::channel::<CltTrace>(64);
        let mut call = tokio::spawn(async move { client.report(ReceiverStream::new(srx)).await });
        let finished = loop {
            let msg = match pending.take() {
                Some(m) => m,
                None => tokio::select! {
                    m = rx.recv() => match m {
                        Some(m) => m,
                        None => break true, // the capture side is gone: finish the stream
                    },
                    r = &mut call => {
                        tracing::warn!(result = ?r.map(|r| r.map(|_| ())), "report stream ended");
                        break false;
                    }
                },
            };
            match stx.send(msg).await {
                Ok(()) => {
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::SendError(m)) => {
                    pending = Some(m);
                    break false;
                }
            }
        };
        drop(stx);
        if finished {
            let _ = call.await;
            return;
        }
        call.abort();
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff).await;
    }
}
