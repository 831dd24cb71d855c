//! The agent's reporting: traces wait in a bounded buffer while the
//! collector is away, go out once it is there, and what does not fit is
//! counted.

// Test helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clt_collector::agent::report::{AgentStats, start};
use clt_collector::server;
use clt_proto::clt_api::CltTrace;
use clt_proto::ioam_api::IoamTrace;
use common::{free_port, loopback_config};

fn trace(i: u64) -> CltTrace {
    CltTrace {
        trace: Some(IoamTrace {
            trace_id_low: i + 1,
            span_id: i + 1,
            namespace_id: 9,
            ..IoamTrace::default()
        }),
        ..CltTrace::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_while_the_collector_is_away_then_delivered() {
    let addr = free_port();
    let stats = Arc::new(AgentStats::default());
    let (tx, _task) = start(format!("http://{addr}"), 100, Arc::clone(&stats));
    for i in 0..150 {
        tx.send(trace(i));
    }
    // 100 fit in the buffer; the reporter may hold one more while it waits
    let dropped = stats.dropped.load(Ordering::Relaxed);
    assert!((49..=50).contains(&dropped), "dropped {dropped}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stats.sent.load(Ordering::Relaxed), 0);

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = loopback_config(None, Some(&dir.path().join("s.redb")));
    cfg.ioam_listen = addr;
    let collector = server::start(cfg).await.unwrap();
    let want = 150 - dropped;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while collector.core.join_stats().traces_received < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "received {} of {want}",
            collector.core.join_stats().traces_received
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // and traces sent after the reconnection go straight through
    tx.send(trace(1_000));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while collector.core.join_stats().traces_received < want + 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the live trace did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(collector.core.join_stats().traces_received, want + 1);
    collector.shutdown(Duration::from_millis(200)).await;
}
