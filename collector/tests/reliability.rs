//! Downstream outages and floods: nothing lost within the bounds, and what
//! does not fit is counted.

// Test helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use clt_collector::server;
use clt_proto::ioam_api::ioam_service_client::IoamServiceClient;
use clt_proto::ioam_api::{IoamNode, IoamTrace};
use common::{Receiver, free_port, loopback_config};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

fn trace_id(i: u64) -> u128 {
    (0x5eed_u128 << 96) | u128::from(i)
}

fn request(range: std::ops::Range<u64>) -> ExportTraceServiceRequest {
    let spans = range
        .map(|i| Span {
            trace_id: trace_id(i).to_be_bytes().to_vec(),
            span_id: (i + 1).to_be_bytes().to_vec(),
            name: format!("req {i}"),
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 2_000,
            ..Span::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("load".into())),
                    }),
                    ..KeyValue::default()
                }],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

fn ioam(i: u64, span: u64) -> IoamTrace {
    let t = trace_id(i);
    IoamTrace {
        trace_id_high: (t >> 64) as u64,
        trace_id_low: t as u64,
        span_id: span,
        namespace_id: 1,
        bit_field: 0x80_0000 << 8,
        nodes: vec![
            IoamNode {
                hop_limit: 63,
                id: 2,
                ..IoamNode::default()
            },
            IoamNode {
                hop_limit: 64,
                id: 1,
                ..IoamNode::default()
            },
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_down_under_load_then_back_loses_nothing() {
    const N: u64 = 3_000;
    let down = free_port();
    let mut cfg = loopback_config(Some(down), None);
    cfg.max_delay_ms = 300;
    cfg.linger_ms = 50;
    cfg.export_queue_max_spans = 2 * N as usize + 100;
    cfg.max_pending_items = 10_000;
    let collector = server::start(cfg).await.unwrap();

    let mut otlp = TraceServiceClient::connect(format!("http://{}", collector.otlp_grpc))
        .await
        .unwrap();
    let mut ioamc = IoamServiceClient::connect(format!("http://{}", collector.ioam))
        .await
        .unwrap();
    for chunk in 0..(N / 500) {
        let r = chunk * 500..(chunk + 1) * 500;
        ioamc
            .report(tokio_stream::iter(
                r.clone().map(|i| ioam(i, i + 1)).collect::<Vec<_>>(),
            ))
            .await
            .unwrap();
        otlp.export(request(r)).await.unwrap();
    }
    // Everything is joined and waiting for the downstream, which is down.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while collector.core.join_stats().spans_enriched < N {
        assert!(
            tokio::time::Instant::now() < deadline,
            "join did not finish: {:?}",
            collector.core.join_stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while collector
        .core
        .counters()
        .export_failures
        .load(std::sync::atomic::Ordering::Relaxed)
        < 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the exporter must have tried and failed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(collector.core.export_queue_len() <= 2 * N as usize + 100);
    assert!(collector.core.export_queue_len() > 0);

    // The downstream comes back on the same port.
    let receiver = Receiver::default();
    let (_a, _h) = receiver.serve(down).await;
    let got = receiver
        .wait_for(30, "every span", |s| s.len() >= 2 * N as usize)
        .await;
    let app: HashSet<(u128, u64)> = got
        .iter()
        .filter(|r| r.service == "load")
        .map(|r| (r.trace_id(), r.span_id()))
        .collect();
    let net: HashSet<(u128, u64)> = got
        .iter()
        .filter(|r| r.service == "clt-network")
        .map(|r| (r.trace_id(), r.parent_id()))
        .collect();
    let want: HashSet<(u128, u64)> = (0..N).map(|i| (trace_id(i), i + 1)).collect();
    assert_eq!(app, want, "application spans by id");
    assert_eq!(net, want, "network spans by parent id");
    assert_eq!(got.len(), 2 * N as usize, "no duplicates");
    let dropped = collector
        .core
        .counters()
        .export_spans_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(dropped, 0);
    collector.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_buffer_full_drops_and_counts() {
    let down = free_port();
    let mut cfg = loopback_config(Some(down), None);
    cfg.export_queue_max_spans = 100;
    let collector = server::start(cfg).await.unwrap();
    let mut otlp = TraceServiceClient::connect(format!("http://{}", collector.otlp_grpc))
        .await
        .unwrap();
    otlp.export(request(0..500)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dropped = collector
        .core
        .counters()
        .export_spans_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    let queued = collector.core.export_queue_len() as u64;
    assert!(queued <= 100, "{queued}");
    // what is not queued or in the one batch in flight was dropped and counted
    assert!(
        dropped >= 400 - 100 && dropped + queued <= 500,
        "dropped {dropped} queued {queued}"
    );
    collector.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_unmatched_traces_stays_under_the_bound() {
    const N: u64 = 20_000;
    const BOUND: usize = 1_000;
    let receiver = Receiver::default();
    let (raddr, _h) = receiver.serve("127.0.0.1:0".parse().unwrap()).await;
    let mut cfg = loopback_config(Some(raddr), None);
    cfg.max_pending_items = BOUND;
    cfg.max_delay_ms = 60_000; // nothing expires during the test
    let collector = server::start(cfg).await.unwrap();
    let mut c = IoamServiceClient::connect(format!("http://{}", collector.ioam))
        .await
        .unwrap();
    for chunk in 0..(N / 1_000) {
        let msgs: Vec<_> = (chunk * 1_000..(chunk + 1) * 1_000)
            .map(|i| ioam(i, 7))
            .collect();
        c.report(tokio_stream::iter(msgs)).await.unwrap();
        let text = collector.core.metrics_text();
        let pending: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("clt_collector_pending_items "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(pending <= BOUND, "{pending}");
    }
    let st = collector.core.join_stats();
    assert_eq!(st.traces_received, N);
    assert_eq!(st.traces_dropped, N - BOUND as u64);
    assert_eq!(st.traces_matched, 0);
    collector.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_spans_are_dropped_and_do_not_block_the_rest() {
    let receiver = Receiver {
        refuse_name: Some("poison".into()),
        ..Receiver::default()
    };
    let (raddr, _h) = receiver.serve("127.0.0.1:0".parse().unwrap()).await;
    let collector = server::start(loopback_config(Some(raddr), None))
        .await
        .unwrap();
    let mut otlp = TraceServiceClient::connect(format!("http://{}", collector.otlp_grpc))
        .await
        .unwrap();
    let mut poison = request(0..1);
    poison.resource_spans[0].scope_spans[0].spans[0].name = "poison".into();
    if let Some(r) = poison.resource_spans[0].resource.as_mut() {
        r.attributes[0].value = Some(AnyValue {
            value: Some(any_value::Value::StringValue("bad".into())),
        });
    }
    otlp.export(poison).await.unwrap();
    otlp.export(request(1..11)).await.unwrap();
    let got = receiver
        .wait_for(10, "the ten good spans", |s| s.len() >= 10)
        .await;
    assert!(got.iter().all(|r| r.span.name != "poison"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while collector
        .core
        .counters()
        .export_spans_rejected
        .load(std::sync::atomic::Ordering::Relaxed)
        != 1
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refused span must be counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    collector.shutdown(Duration::from_millis(200)).await;
}
