//! The collector over real gRPC on loopback: OTLP from the OpenTelemetry SDK,
//! IOAM traces from tonic clients (both public API variants and CLT's own),
//! export to a real OTLP/gRPC receiver; and the error statuses.

// Test helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use clt_collector::server;
use clt_proto::clt_api::CltTrace;
use clt_proto::clt_api::clt_ioam_service_client::CltIoamServiceClient;
use clt_proto::ioam_api::ioam_service_client::IoamServiceClient;
use clt_proto::ioam_api::{IoamNode, IoamTrace, legacy};
use common::{Receiver, loopback_config};
use opentelemetry::trace::{Span as _, Tracer, TracerProvider as _};

const TRACE_TYPE: u32 = 0xf2_0000; // node id, interface ids, timestamps, queue depth

fn nodes(base: u32) -> Vec<IoamNode> {
    // carried last hop first: node 3, node 2, node 1
    (1..=3)
        .rev()
        .map(|id| IoamNode {
            hop_limit: 65 - id,
            id,
            ingress_id: id * 10,
            egress_id: id * 10 + 1,
            timestamp_secs: 1_700_000_000 + id,
            timestamp_frac: 1_000 * id,
            queue_depth: base + id,
            ..IoamNode::default()
        })
        .collect()
}

fn legacy_path() -> tonic::codegen::http::uri::PathAndQuery {
    tonic::codegen::http::uri::PathAndQuery::from_static("/ioam_api.IOAMService/Report")
}

/// Sends old-variant messages on the shared method path.
async fn send_legacy(
    addr: std::net::SocketAddr,
    msgs: Vec<legacy::IoamTrace>,
) -> Result<(), tonic::Status> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut g = tonic::client::Grpc::new(ch);
    g.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<legacy::IoamTrace, ()>::default();
    g.client_streaming(
        tonic::Request::new(tokio_stream::iter(msgs)),
        legacy_path(),
        codec,
    )
    .await
    .map(|_| ())
}

/// Raw bytes as one message.
#[derive(Debug, Default, Clone)]
struct RawCodec;
#[derive(Debug, Default)]
struct RawEnc;
#[derive(Debug, Default)]
struct RawDec;
impl tonic::codec::Encoder for RawEnc {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}
impl tonic::codec::Decoder for RawDec {
    type Item = ();
    type Error = tonic::Status;
    fn decode(&mut self, _: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        Ok(Some(()))
    }
}
impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawEnc;
    type Decoder = RawDec;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> RawDec {
        RawDec
    }
}

async fn send_raw(addr: std::net::SocketAddr, msg: Vec<u8>) -> tonic::Status {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut g = tonic::client::Grpc::new(ch);
    g.ready().await.unwrap();
    g.client_streaming(
        tonic::Request::new(tokio_stream::iter(vec![msg])),
        legacy_path(),
        RawCodec,
    )
    .await
    .expect_err("the collector must reject it")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_spans_and_ioam_traces_are_joined_and_exported() {
    let receiver = Receiver::default();
    let (raddr, _rh) = receiver.serve("127.0.0.1:0".parse().unwrap()).await;
    let collector = server::start(loopback_config(Some(raddr), None))
        .await
        .unwrap();

    // The application: the OpenTelemetry SDK exporting over OTLP/gRPC.
    let provider = common::sdk_provider(collector.otlp_grpc, "login-app");
    let tracer = provider.tracer("login");
    let mut span = tracer.start("GET /login");
    let ctx = span.span_context().clone();
    span.end();
    let p = provider.clone();
    tokio::task::spawn_blocking(move || p.force_flush())
        .await
        .unwrap()
        .unwrap();
    let trace_id = u128::from_be_bytes(ctx.trace_id().to_bytes());
    let span_id = u64::from_be_bytes(ctx.span_id().to_bytes());

    // Two packets of that request through the public API (with ids).
    let mut c = IoamServiceClient::connect(format!("http://{}", collector.ioam))
        .await
        .unwrap();
    let with_ids = |queue| IoamTrace {
        trace_id_high: (trace_id >> 64) as u64,
        trace_id_low: trace_id as u64,
        span_id,
        namespace_id: 123,
        bit_field: TRACE_TYPE << 8,
        nodes: nodes(queue),
    };
    c.report(tokio_stream::iter(vec![with_ids(5), with_ids(50)]))
        .await
        .unwrap();

    // A plain trace through the legacy variant, one through CLT's API with a flow.
    send_legacy(
        collector.ioam,
        vec![legacy::IoamTrace {
            namespace_id: 7,
            bit_field: TRACE_TYPE << 8,
            nodes: nodes(0),
        }],
    )
    .await
    .unwrap();
    let mut clt = CltIoamServiceClient::connect(format!("http://{}", collector.ioam))
        .await
        .unwrap();
    let flow = CltTrace {
        trace: Some(IoamTrace {
            namespace_id: 8,
            bit_field: TRACE_TYPE << 8,
            nodes: nodes(1),
            ..IoamTrace::default()
        }),
        src_addr: "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
            .to_vec(),
        dst_addr: "2001:db8::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
            .to_vec(),
        src_port: 40000,
        dst_port: 443,
        protocol: 6,
        capture_time_unix_nano: 1,
        reporter: "sink".into(),
        interface: "eth0".into(),
    };
    clt.report(tokio_stream::iter(vec![flow])).await.unwrap();

    let got = receiver
        .wait_for(15, "app span, network span and two plain spans", |s| {
            s.iter().any(|r| r.span_id() == span_id)
                && s.iter().any(|r| r.parent_id() == span_id)
                && s.iter()
                    .filter(|r| r.int("ioam.namespace").is_some_and(|n| n == 7 || n == 8))
                    .count()
                    == 2
        })
        .await;

    let app = got.iter().find(|r| r.span_id() == span_id).unwrap();
    assert_eq!(
        (app.service.as_str(), app.span.name.as_str()),
        ("login-app", "GET /login")
    );
    assert_eq!(app.trace_id(), trace_id);

    let net = got.iter().find(|r| r.parent_id() == span_id).unwrap();
    assert_eq!(net.trace_id(), trace_id);
    assert_eq!(net.service, "clt-network");
    assert_eq!(net.int("ioam.namespace"), Some(123));
    assert_eq!(net.int("ioam.trace_type"), Some(i64::from(TRACE_TYPE)));
    assert_eq!(net.int("ioam.packets"), Some(2));
    assert_eq!(net.int("ioam.hop.count"), Some(3));
    for hop in 0..3i64 {
        let id = hop + 1; // path order: node 1 first
        let a = |f: &str| net.int(&format!("ioam.hop.{hop}.{f}"));
        assert_eq!(a("node_id.last"), Some(id));
        assert_eq!(a("hop_limit.last"), Some(65 - id));
        assert_eq!(a("ingress_if_id.last"), Some(id * 10));
        assert_eq!(a("egress_if_id.last"), Some(id * 10 + 1));
        assert_eq!(a("timestamp_secs.last"), Some(1_700_000_000 + id));
        assert_eq!(a("timestamp_frac.last"), Some(1_000 * id));
        assert_eq!(a("queue_depth.min"), Some(5 + id));
        assert_eq!(a("queue_depth.max"), Some(50 + id));
        assert_eq!(a("queue_depth.last"), Some(50 + id));
        assert_eq!(a("packets"), Some(2));
        let ev = &net.span.events[hop as usize];
        assert_eq!(ev.name, "ioam.hop");
        assert_eq!(
            common::attr_int(&ev.attributes, "ioam.hop.index"),
            Some(hop)
        );
        assert_eq!(common::attr_int(&ev.attributes, "ioam.node_id"), Some(id));
        // event time = the hop's timestamp (fraction in microseconds)
        let t = (1_700_000_000 + id as u64) * 1_000_000_000 + 1_000 * id as u64 * 1_000;
        assert_eq!(ev.time_unix_nano, t);
    }

    let plain = got
        .iter()
        .find(|r| r.int("ioam.namespace") == Some(8))
        .unwrap();
    assert_eq!(plain.parent_id(), 0);
    assert_eq!(plain.str("source.address").as_deref(), Some("2001:db8::1"));
    assert_eq!(
        plain.str("destination.address").as_deref(),
        Some("2001:db8::2")
    );
    assert_eq!(plain.int("destination.port"), Some(443));
    assert_eq!(plain.str("network.transport").as_deref(), Some("tcp"));
    assert_eq!(plain.str("clt.reporter").as_deref(), Some("sink/eth0"));
    let old = got
        .iter()
        .find(|r| r.int("ioam.namespace") == Some(7))
        .unwrap();
    assert_eq!(old.int("ioam.hop.1.node_id.last"), Some(2));

    let st = collector.core.join_stats();
    assert_eq!(
        (st.traces_matched, st.spans_enriched, st.traces_plain),
        (2, 1, 2)
    );
    let metrics = reqwest_metrics(collector.metrics).await;
    assert!(
        metrics.contains("clt_collector_spans_enriched_total 1"),
        "{metrics}"
    );
    let _ = provider.shutdown();
    collector.shutdown(Duration::from_secs(2)).await;
}

/// GET /metrics over a plain TCP stream (HTTP/1.0 keeps it simple).
async fn reqwest_metrics(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_messages_get_the_right_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = loopback_config(None, Some(&dir.path().join("s.redb")));
    cfg.max_message_bytes = 16 * 1024;
    let collector = server::start(cfg).await.unwrap();

    let mut c = IoamServiceClient::connect(format!("http://{}", collector.ioam))
        .await
        .unwrap();
    let huge = IoamTrace {
        trace_id_high: 1,
        span_id: 1,
        nodes: vec![IoamNode {
            namespace_data: vec![7; 64 * 1024],
            ..IoamNode::default()
        }],
        ..IoamTrace::default()
    };
    let st = c.report(tokio_stream::iter(vec![huge])).await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::ResourceExhausted, "{st:?}");

    // the same over OTLP (unary)
    let mut otlp = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
        format!("http://{}", collector.otlp_grpc),
    )
    .await
    .unwrap();
    let big = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: vec![opentelemetry_proto::tonic::trace::v1::ResourceSpans {
            schema_url: "x".repeat(64 * 1024),
            ..Default::default()
        }],
    };
    let st = otlp.export(big).await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::ResourceExhausted, "{st:?}");
    let st = otlp
        .export(
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
                resource_spans: vec![opentelemetry_proto::tonic::trace::v1::ResourceSpans {
                    scope_spans: vec![opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                        spans: vec![opentelemetry_proto::tonic::trace::v1::Span {
                            trace_id: vec![1; 16],
                            span_id: vec![2; 8],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            },
        )
        .await;
    assert!(st.is_ok(), "a normal request still goes through: {st:?}");

    // field 1 as fixed64 (new variant) and field 3 as bytes (old variant)
    let mut mixed = vec![0x09, 1, 0, 0, 0, 0, 0, 0, 0];
    mixed.extend([0x1a, 0]);
    let st = send_raw(collector.ioam, mixed).await;
    assert_eq!(st.code(), tonic::Code::InvalidArgument, "{st:?}");
    let st = send_raw(collector.ioam, vec![0x32, 0x10, 1]).await; // truncated nodes
    assert_eq!(st.code(), tonic::Code::InvalidArgument, "{st:?}");
    assert_eq!(
        collector
            .core
            .counters()
            .ioam_messages_invalid
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    // a well-formed stream still works afterwards
    c.report(tokio_stream::iter(vec![IoamTrace {
        namespace_id: 1,
        ..IoamTrace::default()
    }]))
    .await
    .unwrap();
    collector.shutdown(Duration::from_secs(2)).await;
}
