//! Forwards decoded traces to the collector over the IOAM gRPC API
//! (`IOAMService.Report`), through a bounded buffer.
//!
//! Digest handlers never wait for the collector: [`Forwarder::submit`] puts
//! the trace in the buffer or, when it is full, drops it and counts it. One
//! task drains the buffer in batches, each sent as one Report stream; a batch
//! the collector did not accept is retried, with exponential backoff, until
//! it is (the channel reconnects by itself).

use std::time::Duration;

use clt_proto::ioam_api::IoamTrace;
use clt_proto::ioam_api::ioam_service_client::IoamServiceClient;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Traces sent in one Report stream at most.
pub const MAX_BATCH: usize = 256;

/// The producer side of the forward buffer.
#[derive(Debug, Clone)]
pub struct Forwarder {
    tx: mpsc::Sender<IoamTrace>,
    metrics: Metrics,
}

impl Forwarder {
    /// Starts forwarding to `collector` (`http://host:port` or `host:port`)
    /// with a buffer of `capacity` traces.
    pub fn spawn(
        collector: &str,
        capacity: usize,
        metrics: Metrics,
    ) -> Result<(Forwarder, tokio::task::JoinHandle<()>)> {
        let uri = if collector.contains("://") {
            collector.to_string()
        } else {
            format!("http://{collector}")
        };
        let endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| Error::Address {
                address: uri.clone(),
                reason: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(5));
        let channel = endpoint.connect_lazy();
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let task = tokio::spawn(run(channel, rx, metrics.clone(), uri));
        Ok((Forwarder { tx, metrics }, task))
    }

    /// Queues a trace; returns false (and counts a drop) when the buffer is
    /// full or the forwarder stopped.
    pub fn submit(&self, trace: IoamTrace) -> bool {
        match self.tx.try_send(trace) {
            Ok(()) => true,
            Err(_) => {
                self.metrics.traces_dropped.inc();
                false
            }
        }
    }
}

async fn run(channel: Channel, mut rx: mpsc::Receiver<IoamTrace>, metrics: Metrics, uri: String) {
    let mut client = IoamServiceClient::new(channel);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return; // every Forwarder dropped
        }
        loop {
            let stream = tokio_stream::iter(batch.clone());
            match client.report(stream).await {
                Ok(_) => {
                    metrics.traces_forwarded.inc_by(batch.len() as u64);
                    batch.clear();
                    backoff.reset();
                    break;
                }
                Err(status) => {
                    metrics.collector_errors.inc();
                    let delay = backoff.next_delay();
                    tracing::warn!(collector = %uri, code = ?status.code(), message = %status.message(),
                        retry_in_ms = delay.as_millis() as u64, "report to collector failed");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
