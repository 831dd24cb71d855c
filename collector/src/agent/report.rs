//! Reporting to the collector: a bounded buffer and one gRPC client stream,
//! reconnected with backoff while the collector is away.
//!
//! The capturing threads hand traces over in batches (a capture block's, an
//! event drain's): one wakeup of the reporting task per batch, and the
//! batch goes into the stream at once, so that gRPC encodes it into one
//! write.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use clt_proto::clt_api::CltTrace;
use clt_proto::clt_api::clt_ioam_service_client::CltIoamServiceClient;
use tokio::sync::mpsc;

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
    /// 1 when the packets come from the nf_tables log (each with this
    /// node's own entry), 0 when from the AF_PACKET capture.
    pub source_nflog: AtomicU64,
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
    tx: mpsc::Sender<Vec<CltTrace>>,
    /// Traces in the buffer (handed over, not yet taken by the task).
    queued: Arc<AtomicUsize>,
    limit: usize,
    stats: Arc<AgentStats>,
}

impl ReportSender {
    pub fn send(&self, t: CltTrace) {
        self.send_batch(vec![t]);
    }

    /// Hands `batch` to the reporting task, or drops all of it (counted in
    /// `dropped`) when the buffer has no room for it.
    pub fn send_batch(&self, batch: Vec<CltTrace>) {
        let n = batch.len();
        if n == 0 {
            return;
        }
        let before = self.queued.fetch_add(n, Ordering::Relaxed);
        if before + n > self.limit || self.tx.try_send(batch).is_err() {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            self.stats.dropped.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// Starts the reporting task; `buffer` traces wait at most while away.
pub fn start(
    endpoint: String,
    buffer: usize,
    stats: Arc<AgentStats>,
) -> (ReportSender, tokio::task::JoinHandle<()>) {
    let limit = buffer.max(1);
    let (tx, rx) = mpsc::channel(limit);
    let queued = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(run(endpoint, rx, Arc::clone(&queued), Arc::clone(&stats)));
    (
        ReportSender {
            tx,
            queued,
            limit,
            stats,
        },
        task,
    )
}

/// The request stream of one `Report` call: the batches of a channel, one
/// trace at a time; everything a batch holds is ready at once, so the
/// encoder takes all of it in one go.
struct Batches {
    rx: mpsc::Receiver<Vec<CltTrace>>,
    current: std::vec::IntoIter<CltTrace>,
}

impl tokio_stream::Stream for Batches {
    type Item = CltTrace;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<CltTrace>> {
        loop {
            if let Some(t) = self.current.next() {
                return Poll::Ready(Some(t));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(b)) => self.current = b.into_iter(),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

async fn run(
    endpoint: String,
    mut rx: mpsc::Receiver<Vec<CltTrace>>,
    queued: Arc<AtomicUsize>,
    stats: Arc<AgentStats>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut pending: Option<Vec<CltTrace>> = None;
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
        let (stx, srx) = mpsc::channel::<Vec<CltTrace>>(64);
        let batches = Batches {
            rx: srx,
            current: Vec::new().into_iter(),
        };
        let mut call = tokio::spawn(async move { client.report(batches).await });
        let finished = loop {
            let msg = match pending.take() {
                Some(m) => m,
                None => tokio::select! {
                    m = rx.recv() => match m {
                        Some(m) => {
                            queued.fetch_sub(m.len(), Ordering::Relaxed);
                            m
                        }
                        None => break true, // the capture side is gone: finish the stream
                    },
                    r = &mut call => {
                        tracing::warn!(result = ?r.map(|r| r.map(|_| ())), "report stream ended");
                        break false;
                    }
                },
            };
            let n = msg.len() as u64;
            match stx.send(msg).await {
                Ok(()) => {
                    stats.sent.fetch_add(n, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    fn trace(ns: u64) -> CltTrace {
        CltTrace {
            capture_time_unix_nano: ns,
            ..CltTrace::default()
        }
    }

    fn sender(limit: usize) -> (ReportSender, mpsc::Receiver<Vec<CltTrace>>) {
        let (tx, rx) = mpsc::channel(limit);
        let s = ReportSender {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            limit,
            stats: Arc::new(AgentStats::default()),
        };
        (s, rx)
    }

    #[test]
    fn a_batch_without_room_is_dropped_whole_and_counted() {
        let (s, mut rx) = sender(3);
        s.send_batch(vec![trace(1), trace(2)]);
        s.send_batch(vec![trace(3), trace(4)]);
        s.send(trace(5));
        s.send_batch(Vec::new());
        assert_eq!(s.stats.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(s.queued.load(Ordering::Relaxed), 3);
        assert_eq!(rx.try_recv().map(|b| b.len()), Ok(2));
        assert_eq!(rx.try_recv().map(|b| b.len()), Ok(1));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn the_stream_yields_every_batch_in_order() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(vec![trace(1), trace(2)]).await.unwrap();
        tx.send(Vec::new()).await.unwrap();
        tx.send(vec![trace(3)]).await.unwrap();
        drop(tx);
        let got: Vec<u64> = Batches {
            rx,
            current: Vec::new().into_iter(),
        }
        .map(|t| t.capture_time_unix_nano)
        .collect()
        .await;
        assert_eq!(got, [1, 2, 3]);
    }
}
