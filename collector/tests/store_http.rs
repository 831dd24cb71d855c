//! The embedded store (no downstream) fed over OTLP/HTTP, read back as
//! `clt-collector traces` prints it.

// Test helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use clt_collector::server;
use clt_collector::store::{Store, print_traces};
use clt_proto::ioam_api::ioam_service_client::IoamServiceClient;
use clt_proto::ioam_api::{IoamNode, IoamTrace};
use common::loopback_config;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post(addr: std::net::SocketAddr, content_type: &str, body: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_into_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let mut cfg = loopback_config(None, Some(&path));
    cfg.linger_ms = 50;
    let collector = server::start(cfg).await.unwrap();

    let trace_id: u128 = 0x0af7651916cd43dd8448eb211c80319c;
    let span_id: u64 = 0xb7ad6b7169203331;
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: trace_id.to_be_bytes().to_vec(),
                    span_id: span_id.to_be_bytes().to_vec(),
                    name: "GET /login".into(),
                    start_time_unix_nano: 10,
                    end_time_unix_nano: 20,
                    ..Span::default()
                }],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    let resp = post(
        collector.otlp_http,
        "application/x-protobuf",
        &req.encode_to_vec(),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let resp = post(collector.otlp_http, "application/json", b"{}").await;
    assert!(resp.starts_with("HTTP/1.1 415"), "{resp}");
    let resp = post(collector.otlp_http, "application/x-protobuf", &[0xff, 0xff]).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");

    let mut c = IoamServiceClient::connect(format!("http://{}", collector.ioam))
        .await
        .unwrap();
    let t = IoamTrace {
        trace_id_high: (trace_id >> 64) as u64,
        trace_id_low: trace_id as u64,
        span_id,
        namespace_id: 5,
        bit_field: 0x80_0000 << 8,
        nodes: vec![IoamNode {
            hop_limit: 63,
            id: 42,
            ..IoamNode::default()
        }],
    };
    c.report(tokio_stream::iter(vec![t])).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while collector
        .core
        .counters()
        .export_spans_ok
        .load(std::sync::atomic::Ordering::Relaxed)
        < 2
    {
        assert!(tokio::time::Instant::now() < deadline, "not stored in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // While the collector holds the store, it answers GET /traces.
    let mut s = tokio::net::TcpStream::connect(collector.metrics)
        .await
        .unwrap();
    s.write_all(format!("GET /traces?trace={trace_id:032x} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut live = String::new();
    s.read_to_string(&mut live).await.unwrap();
    assert!(live.starts_with("HTTP/1.0 200"), "{live}");
    assert!(live.contains("ioam.hop.0.node_id.last = 42"), "{live}");
    collector.shutdown(Duration::from_secs(2)).await;

    let store = Store::open(&path, 100).unwrap();
    let spans = store.spans(Some(trace_id)).unwrap();
    assert_eq!(spans.len(), 2, "{spans:?}");
    assert!(
        spans
            .iter()
            .any(|s| s.span_id == span_id && s.name == "GET /login")
    );
    let net = spans.iter().find(|s| s.parent_span_id == span_id).unwrap();
    assert_eq!(
        net.attr("ioam.hop.0.node_id.last"),
        Some(&clt_collector::model::AttrValue::Int(42))
    );
    assert!(store.spans(Some(1)).unwrap().is_empty());

    let mut out = Vec::new();
    print_traces(&spans, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("trace 0af7651916cd43dd8448eb211c80319c"),
        "{text}"
    );
    assert!(text.contains("span b7ad6b7169203331 GET /login"), "{text}");
    assert!(text.contains("ioam.hop.0.node_id.last = 42"), "{text}");
    // the network span is printed under its parent (deeper indentation)
    let parent_line = text.lines().position(|l| l.contains("GET /login")).unwrap();
    let child_line = text.lines().position(|l| l.contains("ioam.path")).unwrap();
    assert!(child_line > parent_line);

    // the store keeps only the newest spans
    let small = Store::open(&dir.path().join("small.redb"), 3).unwrap();
    for _ in 0..3 {
        small.append(&spans).unwrap();
    }
    assert_eq!(small.spans(None).unwrap().len(), 3);
}
